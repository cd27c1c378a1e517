"""A tiny valid dataset folder (manifest.json + shards/*.tar) made without MediaPipe or real video.

Frames are smooth colour gradients with a moving ellipse standing in for the person; the target is
the source with the ellipse recoloured, so the edit mask is the ellipse. Fast: well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.data.shards import Sample, empty_landmarks, encode_sample, write_shard
from streamingeffect.effects import get_category

CATEGORY = "neon_outline_cyan"
FPS = 12.0


def synthetic_sample(index: int, frames: int = 4, size: int = 32) -> Sample:
    """One sample: gradient background, an ellipse drifting right, recoloured in the target."""
    category = get_category(CATEGORY)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(ramp, ramp)
    source = np.empty((frames, size, size, 3), np.uint8)
    target = np.empty_like(source)
    person = np.zeros((frames, size, size), np.uint8)
    for f in range(frames):
        phase = 0.3 * f + 0.7 * index
        background = np.stack(
            [
                60 + 120 * x,
                60 + 100 * y,
                80 + 60 * (0.5 + 0.5 * np.sin(2 * np.pi * (x + y) / 2 + phase)),
            ],
            axis=-1,
        )
        centre = (round(size * (0.4 + 0.05 * f)), round(size * 0.55))
        axes = (max(2, size // 5), max(3, size // 3))
        cv2.ellipse(person[f], centre, axes, 0, 0, 360, 255, -1)
        inside = person[f][..., None] > 0
        frame = np.where(inside, background * 0.6 + np.array([150, 90, 70]) * 0.4, background)
        source[f] = np.clip(frame, 0, 255).astype(np.uint8)
        recoloured = np.where(inside, frame[..., ::-1] * 0.5 + np.array([0, 120, 120]), frame)
        target[f] = np.clip(recoloured, 0, 255).astype(np.uint8)
    edit_mask = person > 0
    reference_index = frames // 2
    face, hands, pose = empty_landmarks(frames)
    key = f"synthetic{index:06d}"
    meta = {
        "key": key,
        "category": category.id,
        "family": category.family,
        "kind": category.kind,
        "op": category.op,
        "region": category.region,
        "text": category.descriptions[index % len(category.descriptions)],
        "descriptions": list(category.descriptions),
        "reference_index": reference_index,
        "frames": frames,
        "size": size,
        "fps": FPS,
        "mask_augmentation": None,
        "edit_area": float(edit_mask.mean()),
        "seed": index,
        "source": {"path": "synthetic", "provenance": "synthetic", "fingerprint": "", "start": 0, "step": 1},
    }
    return Sample(
        key=key,
        source=source,
        target=target,
        edit_mask=edit_mask,
        person=person,
        reference=target[reference_index],
        reference_source=source[reference_index],
        face=face,
        hands=hands,
        pose=pose,
        meta=meta,
    )


def tiny_dataset(root: Path, samples: int = 4, frames: int = 4, size: int = 32, shards: int = 2) -> Path:
    """Write ``samples`` synthetic samples in ``shards`` tars plus a manifest.json under ``root``."""
    root = Path(root)
    shards = max(1, min(shards, samples))
    entries = []
    for j in range(shards):
        picked = [synthetic_sample(i, frames, size) for i in range(j, samples, shards)]
        name = f"shards/shard-{j:05d}.tar"
        write_shard(root / name, [(s.key, encode_sample(s, fps=FPS, crf=0)) for s in picked])
        entries.append({"name": name, "samples": len(picked), "keys": [s.key for s in picked]})
    manifest = {
        "format": "streamingeffect-videoeffect",
        "engine": "synthetic",
        "config": {"frames": frames, "size": size, "samples": samples},
        "counts": {"total": samples, "requested": samples, "skipped": 0},
        "shards": entries,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return root
