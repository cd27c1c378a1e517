"""Turn a category and a parsed source window into one training triplet (source, target, edit mask).

"effect" categories keep the rendered frames as the target; the edit mask is where they differ.
"edit" categories confine the change to a VIVID-augmented mask of their region (add / modify), or
swap the roles (remove: the rendered add is the source, the original footage the target).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.effects import Category, make_effect
from streamingeffect.parsing.augment import AugmentKind, augment, random_augmentation
from streamingeffect.parsing.types import FrameParts

CHANGE_THRESHOLD = 10  # max channel difference (of 255) that counts as a changed pixel
MIN_CHANGED = 0.002  # an effect must visibly change at least this share of the clip's pixels


class SkipSample(Exception):
    """This category cannot be rendered on this window (e.g. its anchor is not in view)."""


@dataclass
class Triplet:
    """One rendered sample at render resolution. Frames [F, H, W, 3] uint8, masks [F, H, W]."""

    source: np.ndarray
    target: np.ndarray
    edit_mask: np.ndarray  # bool: where the target may differ from the source
    augmentation: AugmentKind | None  # the VIVID augmentation used for edit samples


def render_frames(category: Category, frames: np.ndarray, parts: list[FrameParts], seed: int) -> np.ndarray:
    """Render the category's family on [F, H, W, 3] frames -> [F, H, W, 3], in order (effects keep state)."""
    height, width = frames.shape[1:3]
    effect = make_effect(category, seed, (height, width))
    return np.stack([effect.render(frame, part) for frame, part in zip(frames, parts, strict=True)])


def changed_pixels(a: np.ndarray, b: np.ndarray, threshold: int = CHANGE_THRESHOLD) -> np.ndarray:
    """[F, H, W, 3] x2 -> [F, H, W] bool where any channel differs by more than ``threshold``."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > threshold).any(axis=-1)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in mask]).astype(bool)


def render_triplet(category: Category, frames: np.ndarray, parts: list[FrameParts], seed: int) -> Triplet:
    """Render one sample; raise SkipSample when the effect is invisible or its mask is unusable."""
    rendered = render_frames(category, frames, parts, seed)
    changed = changed_pixels(rendered, frames)
    if changed.mean() < MIN_CHANGED:
        raise SkipSample(f"{category.id} changes {changed.mean():.2%} of pixels here (anchor not in view?)")
    if category.kind == "effect":
        return Triplet(frames, rendered, dilate(changed, 2), None)

    region = (
        np.stack([p.regions.get(category.region) > 0.5 for p in parts]) if category.region != "scene" else 0
    )
    rng = np.random.default_rng([seed, 1])
    chosen = random_augmentation(changed | region, rng)
    if chosen is None:
        raise SkipSample(f"{category.id}: no augmented {category.region} mask within the area limits")
    augmentation, mask = chosen
    edited = np.where(mask[..., None], rendered, frames)
    if category.op == "remove":
        return Triplet(edited, frames.copy(), mask, augmentation)
    return Triplet(frames, edited, mask, augmentation)


@dataclass
class ReferenceFrame:
    """One reference pair at render resolution: [S, S, 3] uint8 frames and [S, S] bool edit mask."""

    source: np.ndarray
    target: np.ndarray
    edit_mask: np.ndarray
    changed: float  # share of pixels the effect changed on this frame


def render_reference(
    category: Category, frame: np.ndarray, part: FrameParts, seed: int, augmentation: AugmentKind | None
) -> ReferenceFrame:
    """The category's edit of a single frame far from the sample's window (the long reference).

    A fresh effect with the sample's seed renders it, so it shows the same look; edit categories
    confine the change to the frame's own region mask, augmented the way the sample's masks were.
    """
    rendered = render_frames(category, frame[None], [part], seed)
    changed = changed_pixels(rendered, frame[None])
    share = float(changed.mean())
    if category.kind == "effect":
        return ReferenceFrame(frame, rendered[0], dilate(changed, 2)[0], share)
    region = part.regions.get(category.region)[None] > 0.5 if category.region != "scene" else False
    mask = augment(changed | region, augmentation or "none", np.random.default_rng([seed, 1]))[0]
    edited = np.where(mask[..., None], rendered[0], frame)
    if category.op == "remove":
        return ReferenceFrame(edited, frame.copy(), mask, share)
    return ReferenceFrame(frame, edited, mask, share)


def render_video(
    video: Path,
    category: Category,
    output: Path,
    seed: int = 0,
    max_frames: int | None = None,
    cache_dir: Path | None = None,
    window: int = 48,
    progress: bool = True,
) -> int:
    """Render the ground-truth effect over a whole video at its own size; returns frames written.

    The clip is parsed once (cached), then handled window by window so memory stays bounded. A
    "remove" category shows the object it takes away (what its samples use as the source).
    """
    from tqdm import tqdm

    from streamingeffect.io import VideoWriter, probe, read_frames
    from streamingeffect.parsing.masks import full_frame, window_parts
    from streamingeffect.parsing.mediapipe_parser import parse_clip

    info = probe(video)
    parse = parse_clip(video, cache_dir, progress=progress)
    total = parse.num_frames if max_frames is None else min(max_frames, parse.num_frames)
    effect = make_effect(category, seed, (info.height, info.width))
    crop = full_frame(parse)
    frames = read_frames(video, stop=total)
    written = 0
    with (
        VideoWriter(output, fps=info.fps) as writer,
        tqdm(total=total, desc=category.id, disable=not progress) as bar,
    ):
        for first in range(0, total, window):
            indices = list(range(first, min(total, first + window)))
            parts = window_parts(
                parse, indices, crop, (info.height, info.width), parse.fps, first_index=first
            )
            for part in parts:
                writer.write(effect.render(next(frames).image, part))
                written += 1
                bar.update()
    return written


def render_keyframe(image: np.ndarray, category: Category | str, seed: int = 0) -> np.ndarray:
    """The renderer's edit of one RGB frame [H, W, 3] at its own size: a keyframe a person could have
    painted, for demos and keyframe-propagation benchmarks."""
    from streamingeffect.parsing.masks import full_frame, window_parts
    from streamingeffect.parsing.mediapipe_parser import HumanParser
    from streamingeffect.parsing.types import ClipParse

    with HumanParser(video_mode=False) as parser:
        person = parser.person_mask(image)
        face, hands, pose = parser.landmarks(image)
    parse = ClipParse(person[None], face[None], hands[None], pose[None], 25.0)
    (part,) = window_parts(parse, [0], full_frame(parse), image.shape[:2], parse.fps)
    return make_effect(category, seed, image.shape[:2]).render(image, part)
