"""Whether bf16 autocast pays off on a device: measured at start-up, never assumed from a flag list.

On GPUs it does. On CPUs it depends on the instructions and on the shapes: on an AVX2-only CPU bf16
matmul is emulated (measured on a 2-core AMD EPYC: 0.6 GFLOP/s in bf16 against 41 in fp32, so
autocast would make everything ~60x slower), and even with AVX512-BF16 (a 2-core Xeon, 2026-12) a
tiny model's matmuls ran at 31-36 GFLOP/s in bf16 against 80-96 in fp32. So the choice is a
micro-benchmark of the caller's matmul shape in both precisions, made once per process and shape
(`measured_choice`), and bf16 is used only where it is clearly faster.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# (rows, inner, outer) of the default measurement: a transformer's token projection at width 192
# (the tiny models), 256 tokens. Callers with a model pass its own shape.
DEFAULT_SHAPE = (256, 192, 576)
BF16_MARGIN = 1.2  # bf16 must be this much faster than fp32 to be chosen (noise must not flip it)


@dataclass(frozen=True)
class PrecisionChoice:
    """The outcome of the start-up micro-benchmark for one matmul shape."""

    bf16: bool  # autocast to bf16
    shape: tuple[int, int, int]
    fp32_gflops: float
    bf16_gflops: float
    threads: int

    def describe(self) -> str:
        chosen = "bf16" if self.bf16 else "fp32"
        return (
            f"{chosen} (measured at start-up on a {self.shape[0]}x{self.shape[1]} @ "
            f"{self.shape[1]}x{self.shape[2]} matmul, {self.threads} thread(s): fp32 "
            f"{self.fp32_gflops:.0f} GFLOP/s, bf16 {self.bf16_gflops:.0f} GFLOP/s)"
        )


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether the CPU advertises native bf16 instructions (reported, never used to decide)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def _gflops(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """Best-of-``repeats`` throughput of a @ b in GFLOP/s (after a warm-up call)."""
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9


def _measure(shape: tuple[int, int, int], threads: int, repeats: int = 5) -> PrecisionChoice:
    rows, inner, outer = shape
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator)
    b = torch.randn(inner, outer, generator=generator)
    fp32, bf16 = 0.0, 0.0
    for _ in range(2):  # interleaved: a slow spell of a shared machine does not land on one side only
        fp32 = max(fp32, _gflops(a, b, repeats))
        bf16 = max(bf16, _gflops(a.bfloat16(), b.bfloat16(), repeats))
    return PrecisionChoice(bf16 > BF16_MARGIN * fp32, shape, fp32, bf16, threads)


@lru_cache(maxsize=16)
def _cached_choice(shape: tuple[int, int, int], threads: int) -> PrecisionChoice:
    return _measure(shape, threads)


def measured_choice(shape: tuple[int, int, int] | None = None) -> PrecisionChoice:
    """bf16 or fp32 on this CPU for matmuls of ``shape`` (rows, inner, outer), measured once per process,
    shape and torch thread count (a few tens of milliseconds)."""
    return _cached_choice(tuple(shape or DEFAULT_SHAPE), torch.get_num_threads())  # type: ignore[arg-type]


def bf16_is_fast(device: torch.device | str, shape: tuple[int, int, int] | None = None) -> bool:
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    return kind == "cpu" and measured_choice(shape).bf16


def autocast(
    device: torch.device | str, enabled: bool | None = None, shape: tuple[int, int, int] | None = None
) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast where it is measured to be fast for matmuls of ``shape`` (or as forced by
    ``enabled``); a no-op context otherwise."""
    use = bf16_is_fast(device, shape) if enabled is None else enabled
    kind = torch.device(device).type
    return torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=use)


@dataclass(frozen=True)
class CallChoice:
    """The outcome of timing one model call both ways at start-up (`timed_choice`)."""

    bf16: bool  # autocast to bf16
    what: str  # the call, as a report names it
    fp32_ms: float  # best time a call (nan: not timed, fp32 without asking)
    bf16_ms: float

    def describe(self) -> str:
        chosen = "bf16" if self.bf16 else "fp32"
        if self.fp32_ms != self.fp32_ms:  # nan
            return f"{chosen} ({self.what}: not timed)"
        timed = f"fp32 {self.fp32_ms:.1f} ms, bf16 {self.bf16_ms:.1f} ms"
        return f"{chosen} ({self.what} timed at start-up: {timed})"


def untimed(what: str) -> CallChoice:
    """fp32 for ``what``, not timed (bf16 not native here, or not a CPU)."""
    return CallChoice(False, what, float("nan"), float("nan"))


def _best_ms(run: Callable[[], object], bf16: bool, repeats: int) -> float:
    best = float("inf")
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
    return 1000 * best


def timed_choice(what: str, run: Callable[[], object], repeats: int = 5) -> CallChoice:
    """bf16 autocast or fp32 for one model call on the CPU, by timing ``run`` both ways (warmed up,
    interleaved, best of ``repeats``): convolutions gain from bf16 where a tiny transformer's many
    small ops do not, so a matmul's speed does not settle it. Timed only where the matmul benchmark
    finds bf16 native (`measured_choice`; emulated, a call would take ~60x as long), and bf16 is
    chosen only when BF16_MARGIN faster."""
    if not measured_choice().bf16:
        return untimed(what)
    fp32, bf16 = float("inf"), float("inf")
    for _ in range(2):
        fp32 = min(fp32, _best_ms(run, False, repeats))
        bf16 = min(bf16, _best_ms(run, True, repeats))
    return CallChoice(bf16 * BF16_MARGIN < fp32, what, fp32, bf16)


def cpu_flags_summary() -> str:
    """The CPU flags that bear on precision, as a benchmark states them (e.g. "avx2, avx512_bf16")."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "CPU flags unknown"
    named = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return "CPU flags: " + (", ".join(named) if named else "none of avx2/avx512/amx")


def machine_summary() -> str:
    """The machine as a benchmark report names it: "2 CPU cores (x86_64; CPU flags: avx2, avx512f)"."""
    return f"{os.cpu_count()} CPU cores ({platform.machine()}; {cpu_flags_summary()})"
