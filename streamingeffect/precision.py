"""Whether bf16 autocast pays off on a device.

On GPUs it does. On CPUs only with native bf16 matmul instructions (AVX512-BF16 or AMX): on an
AVX2-only CPU, bf16 matmul is emulated — measured here on a 2-core AMD EPYC (AVX2): 0.6 GFLOP/s in
bf16 against 41 in fp32 — so autocast would make everything ~60x slower.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def bf16_is_fast(device: torch.device | str) -> bool:
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16())


def autocast(
    device: torch.device | str, enabled: bool | None = None
) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast where it is fast (or as forced by ``enabled``); a no-op context otherwise."""
    use = bf16_is_fast(device) if enabled is None else enabled
    kind = torch.device(device).type
    return torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=use)


def cpu_flags_summary() -> str:
    """The CPU flags that decide precision, as a benchmark states them (e.g. "avx2, avx512_bf16")."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "CPU flags unknown"
    named = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return "CPU flags: " + (", ".join(named) if named else "none of avx2/avx512/amx")
