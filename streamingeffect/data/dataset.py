"""Streaming training data: a PyTorch IterableDataset over the shards of one or more builds.

Shards are split between DataLoader workers and distributed ranks; samples are shuffled in a
bounded buffer, so memory does not grow with the dataset. Each sample is cut to the requested
length and size with augmentation (a square crop around the person, a horizontal flip, a speed
change), applied identically to the source, target, masks and reference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from streamingeffect.data.shards import Sample, read_shard
from streamingeffect.effects import catalog


def shard_paths(roots: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shards of one or more build folders (their manifest.json lists them) or explicit .tar files."""
    items = [roots] if isinstance(roots, str | Path) else list(roots)
    paths: list[Path] = []
    for item in map(Path, items):
        if item.suffix == ".tar":
            paths.append(item)
            continue
        manifest = item / "manifest.json"
        if not manifest.exists():
            raise FileNotFoundError(f"{item}: no manifest.json; build one with `streamingeffect data build`")
        paths += [
            item / shard["name"] for shard in json.loads(manifest.read_text())["shards"] if shard["samples"]
        ]
    if not paths:
        raise FileNotFoundError(f"no shards with samples under {items}")
    return paths


@dataclass(frozen=True)
class Augment:
    crop_scale: tuple[float, float] = (0.75, 1.0)  # side of the square crop, as a share of the frame
    flip: float = 0.5  # probability of a horizontal flip
    speeds: tuple[int, ...] = (1, 1, 2)  # frame steps to draw from, where the clip is long enough


NO_AUGMENT = Augment(crop_scale=(1.0, 1.0), flip=0.0, speeds=(1,))


class EffectClipDataset(IterableDataset):
    """Yields dicts of tensors:

    source, target   [F, 3, S, S] float32 in [-1, 1]
    edit_mask        [F, 1, S, S] float32 {0, 1}
    person           [F, 1, S, S] float32 in [0, 1]
    reference, reference_source  [3, S, S] float32 in [-1, 1]
    reference_far, reference_far_source  [3, S, S] the long reference (whole frame, flipped with the
        clip; the near pair for samples built without one, see has_far_reference)
    category (int index into the catalog), kind (0 effect, 1 edit), text (str), key (str)
    """

    def __init__(
        self,
        roots: str | Path | Sequence[str | Path],
        size: int = 128,
        frames: int = 8,
        augment: Augment = Augment(),
        shuffle_buffer: int = 64,
        seed: int = 0,
        repeat: bool = False,
    ):
        super().__init__()
        self.shards = shard_paths(roots)
        self.size, self.frames, self.augment = size, frames, augment
        self.shuffle_buffer, self.seed, self.repeat = shuffle_buffer, seed, repeat
        self.category_index = {c.id: i for i, c in enumerate(catalog())}
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently each epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    def _my_shards(self, rng: np.random.Generator) -> list[Path]:
        """This rank's and worker's share of the shards; ``rng`` must be the same on every rank."""
        rank, world = _distributed_rank()
        worker_id, workers = _worker()
        order = [self.shards[i] for i in rng.permutation(len(self.shards))]
        mine = order[rank::world][worker_id::workers]
        return mine or order[(rank * workers + worker_id) % len(order) :][:1]

    def __iter__(self) -> Iterator[dict[str, object]]:
        epoch = self.epoch
        rank, _ = _distributed_rank()
        worker_id, _ = _worker()
        while True:
            # One shard order for all ranks and workers, but each draws its own crops and flips.
            shards = self._my_shards(np.random.default_rng([self.seed, epoch]))
            rng = np.random.default_rng([self.seed, epoch, rank, worker_id])
            yield from self._shuffled(self._samples(shards), rng)
            if not self.repeat:
                return
            epoch += 1

    def _samples(self, shards: list[Path]) -> Iterator[Sample]:
        for shard in shards:
            yield from read_shard(shard)

    def _shuffled(self, samples: Iterator[Sample], rng: np.random.Generator) -> Iterator[dict[str, object]]:
        buffer: list[Sample] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                yield self.to_item(buffer.pop(int(rng.integers(len(buffer)))), rng)
        while buffer:
            yield self.to_item(buffer.pop(int(rng.integers(len(buffer)))), rng)

    def to_item(self, sample: Sample, rng: np.random.Generator) -> dict[str, object]:
        """Cut, crop, flip and convert one sample."""
        if sample.num_frames < self.frames:
            raise ValueError(
                f"{sample.key} has {sample.num_frames} frames but {self.frames} were requested;"
                " rebuild the data with more --frames"
            )
        steps = [s for s in self.augment.speeds if (self.frames - 1) * s + 1 <= sample.num_frames] or [1]
        step = int(rng.choice(steps))
        start = int(rng.integers(sample.num_frames - (self.frames - 1) * step))
        picked = slice(start, start + (self.frames - 1) * step + 1, step)
        crop = self._crop_box(sample.person[picked], rng)
        flip = bool(rng.random() < self.augment.flip)

        def frames(array: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
            return np.stack([self._warp(f, crop, flip, interpolation) for f in array[picked]])

        meta = sample.meta
        return {
            "source": to_signed(frames(sample.source)),
            "target": to_signed(frames(sample.target)),
            "edit_mask": torch.from_numpy(frames(sample.edit_mask.astype(np.uint8), cv2.INTER_NEAREST))
            .float()
            .unsqueeze(1),
            "person": torch.from_numpy(frames(sample.person)).float().div(255).unsqueeze(1),
            "reference": to_signed(self._warp(sample.reference, crop, flip)[None])[0],
            "reference_source": to_signed(self._warp(sample.reference_source, crop, flip)[None])[0],
            **self._far_items(sample, flip),
            "category": self.category_index.get(meta["category"], -1),
            "kind": int(meta["kind"] == "edit"),
            "text": meta["text"],
            "key": sample.key,
        }

    def _far_items(self, sample: Sample, flip: bool) -> dict[str, object]:
        """The long reference, resized whole: it frames the person its own way, so the window's crop
        does not apply to it."""
        target = sample.reference_far if sample.reference_far is not None else sample.reference
        source = (
            sample.reference_far_source
            if sample.reference_far_source is not None
            else sample.reference_source
        )
        whole = (0, 0, min(target.shape[:2]))
        return {
            "reference_far": to_signed(self._warp(target, whole, flip)[None])[0],
            "reference_far_source": to_signed(self._warp(source, whole, flip)[None])[0],
            "has_far_reference": sample.has_far_reference,
        }

    def _crop_box(self, person: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
        """A random square (x0, y0, side) that keeps the person's centre inside it."""
        height, width = person.shape[1:3]
        side = max(8, round(min(height, width) * rng.uniform(*self.augment.crop_scale)))
        weights = person.mean(axis=0).astype(np.float64)
        total = weights.sum()
        cy = (weights.sum(axis=1) * np.arange(height)).sum() / total if total > 0 else height / 2
        cx = (weights.sum(axis=0) * np.arange(width)).sum() / total if total > 0 else width / 2
        x0 = int(np.clip(rng.uniform(cx - side, cx), 0, width - side))
        y0 = int(np.clip(rng.uniform(cy - side, cy), 0, height - side))
        return x0, y0, side

    def _warp(
        self, image: np.ndarray, crop: tuple[int, int, int], flip: bool, interpolation: int = cv2.INTER_AREA
    ) -> np.ndarray:
        x0, y0, side = crop
        out = cv2.resize(
            image[y0 : y0 + side, x0 : x0 + side], (self.size, self.size), interpolation=interpolation
        )
        return out[:, ::-1] if flip else out


def to_signed(frames: np.ndarray) -> torch.Tensor:
    """[F, H, W, 3] uint8 -> [F, 3, H, W] float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _worker() -> tuple[int, int]:
    worker = get_worker_info()
    return (worker.id, worker.num_workers) if worker else (0, 1)
