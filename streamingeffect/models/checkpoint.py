"""Checkpoints: safetensors weights with their config beside them, written atomically.

DIR/model.safetensors   weights (EMA weights when the run keeps an EMA)
DIR/config.json         {"kind": ..., "model": <model config>, "train": <train config>, "step": N}
DIR/state.pt            optimizer, raw (non-EMA) weights, step, RNG — only what --resume needs
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE = "state.pt"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or does not fit the model it is loaded into."""


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    os.replace(tmp, path)


def save_weights(directory: Path, weights: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    _atomic(directory / WEIGHTS, lambda p: save_file(tensors, str(p)))
    _atomic(directory / CONFIG, lambda p: p.write_text(json.dumps(config, indent=1, sort_keys=True)))


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise CheckpointError(f"{directory}: no {CONFIG}; not a StreamingEffect checkpoint folder")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"{path}: unreadable config ({error})") from error


def weights_digest(directory: Path) -> str:
    """The SHA-1 of a checkpoint's weights file (hex): which trained weights these are. Kept per file
    version (path, inode, size, change time), so that each new stream does not hash the bundle again
    (6 MB, 20 ms)."""
    path = (Path(directory) / WEIGHTS).resolve()
    stat = path.stat()
    return _file_digest(str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, inode: int, size: int, modified_ns: int) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS
    if not path.exists():
        raise CheckpointError(f"{directory}: no {WEIGHTS}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: truncated or corrupt weights file ({error})") from error


def load_into(model: nn.Module, weights: dict[str, torch.Tensor], source: Path | str) -> None:
    """Strict load with a message that names what does not fit (a checkpoint of another config)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        details = []
        if wrong:
            k = wrong[0]
            details.append(
                f"{len(wrong)} tensors of another shape (e.g. {k}: {tuple(weights[k].shape)} "
                f"in the file, {tuple(expected[k].shape)} in the model)"
            )
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"{source}: weights do not match the model config: {'; '.join(details)}")
    model.load_state_dict(weights)


def save_state(directory: Path, state: dict[str, Any]) -> None:
    _atomic(directory / STATE, lambda p: torch.save(state, p))


def load_state(directory: Path) -> dict[str, Any] | None:
    path = directory / STATE
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: unreadable training state ({error})") from error
