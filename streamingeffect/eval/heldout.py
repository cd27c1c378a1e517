"""Held-out frames at their own resolution, parsed live, and the renderer's ground truth on them.

Every benchmark that scores the pipeline's output reads its frames through here, so all of them score
at the input's full resolution against the same targets.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamingeffect.data.people import Person
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


def frames_of(frames: np.ndarray, name: str, fps: float) -> HeldoutFrames:
    """Frames in memory [F, H, W, 3] (a pseudo-video), parsed live in order."""
    parser = LiveParser()
    parses = [parser(frame, landmarks=True, index=i, time=i / fps) for i, frame in enumerate(frames)]
    parser.close()
    return HeldoutFrames(name, frames, parses, fps)


def person_frames(person: Person, count: int, side: int = 512, seed: int = 0) -> HeldoutFrames:
    """``count`` frames of a held-out person: their first clip at its own size (played forward and
    back when it is shorter), or a pseudo-video of their photo at ``side`` x ``side`` (a smooth camera
    path and small non-rigid motion, as the training corpus makes them from photos)."""
    from streamingeffect.data.pseudo_video import CLIP_CAMERA, pseudo_video
    from streamingeffect.data.stills import load_still, prepare_still
    from streamingeffect.io import probe, read_frames

    video = next((f for f in person.files if f.kind == "video"), None)
    if video is not None:
        everything = np.stack([f.image for f in read_frames(video.path, stop=count)])
        cycle = list(range(len(everything))) + list(range(len(everything) - 2, 0, -1))
        frames = everything[[cycle[i % len(cycle)] for i in range(count)]]
        return frames_of(frames, f"{person.id} ({video.path.name})", probe(video.path).fps)
    photo = person.files[0]
    still = load_still(
        prepare_still(photo.path, photo.box, Path(tempfile.gettempdir()) / "streamingeffect-stills")
    )
    frames, _ = pseudo_video(
        still.image, still.parse, count, side, np.random.default_rng(seed), CLIP_CAMERA, still.focus
    )
    return frames_of(frames, f"{person.id} ({photo.path.name}, pseudo-video)", CLIP_CAMERA.fps)


def render_target(category_id: str, clip: HeldoutFrames, seed: int = 0) -> np.ndarray:
    """The renderer's edit of every frame at full resolution [F, H, W, 3], in order."""
    effect = make_effect(get_category(category_id), seed, clip.frames.shape[1:3])
    return np.stack(
        [effect.render(f, p.parts_at_frame_size()) for f, p in zip(clip.frames, clip.parses, strict=True)]
    )


def edit_mask(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """[F, H, W] bool: where the ground truth differs from the source (grown by 2 pixels)."""
    return dilate(changed_pixels(target, source), 2)
