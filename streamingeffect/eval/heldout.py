"""Held-out frames at their own resolution, parsed live, and the renderer's ground truth on them.

Every benchmark that scores the pipeline's output reads its frames through here, so all of them score
at the input's full resolution against the same targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamingeffect.data.render import changed_pixels, dilate
from streamingeffect.effects import get_category, make_effect
from streamingeffect.parsing.live import LiveParse, LiveParser


@dataclass
class HeldoutFrames:
    """Frames of a held-out clip at its own resolution with their live parses."""

    name: str
    frames: np.ndarray  # [F, H, W, 3] uint8
    parses: list[LiveParse]
    fps: float


def load_heldout_frames(path: Path, count: int, stride: int = 1, start: int = 0) -> HeldoutFrames:
    """``count`` frames of a clip (every ``stride``-th from ``start``) at its own size, parsed live in
    order (the parse a stream of those frames would see)."""
    from streamingeffect.io import probe, read_frames

    fps = probe(path).fps
    frames = [f.image for f in read_frames(path, start=start, stop=start + count * stride, step=stride)]
    if not frames:
        raise ValueError(f"{path}: no frames from {start}")
    parser = LiveParser()
    parses = [parser(frame, landmarks=True, index=i, time=i * stride / fps) for i, frame in enumerate(frames)]
    parser.close()
    return HeldoutFrames(path.name, np.stack(frames), parses, fps / stride)


def render_target(category_id: str, clip: HeldoutFrames, seed: int = 0) -> np.ndarray:
    """The renderer's edit of every frame at full resolution [F, H, W, 3], in order."""
    effect = make_effect(get_category(category_id), seed, clip.frames.shape[1:3])
    return np.stack(
        [effect.render(f, p.parts_at_frame_size()) for f, p in zip(clip.frames, clip.parses, strict=True)]
    )


def edit_mask(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """[F, H, W] bool: where the ground truth differs from the source (grown by 2 pixels)."""
    return dilate(changed_pixels(target, source), 2)
