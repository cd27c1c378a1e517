"""Photos as sources: the framed picture of one person and its parse, cached like a clip's parse.

A photo with several people is framed around the one a sample is about (the registry's box, grown
so the shoulders and some scene stay in view), so the face and pose MediaPipe finds are that
person's. The framed picture is kept at up to STILL_MAX_SIDE pixels and parsed at that same size,
so pixels and landmarks share one coordinate system (what pseudo_video expects).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.io import load_image
from streamingeffect.parsing.mediapipe_parser import PARSE_VERSION, HumanParser, file_fingerprint
from streamingeffect.parsing.types import ClipParse

STILL_MAX_SIDE = 768
BOX_MARGIN = 0.3  # the person's box grows by this share of its size on every side


@dataclass
class Still:
    image: np.ndarray  # [H, W, 3] uint8, the framed photo
    parse: ClipParse  # one frame at H x W
    focus: tuple[float, float, float, float] | None  # the person's box (x0, y0, x1, y1) in its pixels


def frame_box(shape: tuple[int, int], box: tuple[float, float, float, float] | None) -> tuple[slice, slice]:
    """Rows and columns of the photo to keep: a square around the box (shares of the picture), grown by
    BOX_MARGIN and clipped to the picture, or the whole picture when there is no box."""
    height, width = shape
    if box is None:
        return slice(0, height), slice(0, width)
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    half = max(x1 - x0, y1 - y0) * (0.5 + BOX_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cols = slice(max(0, round(cx - half)), min(width, round(cx + half)))
    rows = slice(max(0, round(cy - half)), min(height, round(cy + half)))
    return rows, cols


def _focus_in_frame(
    shape: tuple[int, int], box: tuple[float, float, float, float], rows: slice, cols: slice, scale: float
) -> tuple[float, float, float, float]:
    height, width = shape
    return (
        (box[0] * width - cols.start) * scale,
        (box[1] * height - rows.start) * scale,
        (box[2] * width - cols.start) * scale,
        (box[3] * height - rows.start) * scale,
    )


def still_cache_path(cache_dir: Path, path: Path, box: tuple[float, float, float, float] | None) -> Path:
    framing = hashlib.sha1(repr(box).encode()).hexdigest()[:8]
    return (
        cache_dir
        / f"{path.stem}-{file_fingerprint(path)}-{framing}-still{STILL_MAX_SIDE}-v{PARSE_VERSION}.npz"
    )


def parse_still(image: np.ndarray, focus: tuple[float, float, float, float] | None = None) -> ClipParse:
    """One photo [H, W, 3] -> its parse (one frame) at the photo's size, MediaPipe in still-image mode.
    The person mask covers everyone; face, hands and pose are looked for inside ``focus`` (pixels,
    grown a little) so they belong to the person the sample is about, not to a bigger face beside them."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = focus or (0, 0, width, height)
    grow_x, grow_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    rows = slice(max(0, round(y0 - grow_y)), min(height, round(y1 + grow_y)))
    cols = slice(max(0, round(x0 - grow_x)), min(width, round(x1 + grow_x)))
    with HumanParser(video_mode=False) as parser:
        person = parser.person_mask(image)
        face, hands, pose = parser.landmarks(np.ascontiguousarray(image[rows, cols]))
    offset = np.array([cols.start, rows.start], np.float32)
    for points in (face, hands, pose):
        points[..., :2] += offset  # NaN stays NaN
    return ClipParse(person[None], face[None], hands[None], pose[None], 25.0)


def prepare_still(path: Path, box: tuple[float, float, float, float] | None, cache_dir: Path) -> Path:
    """Frame, shrink and parse the photo once; returns the cache file (reused when present).
    Raises ImageError when the file cannot be decoded."""
    cached = still_cache_path(cache_dir, path, box)
    if cached.exists():
        return cached
    photo = load_image(path)
    rows, cols = frame_box(photo.shape[:2], box)
    framed = photo[rows, cols]
    scale = min(1.0, STILL_MAX_SIDE / max(framed.shape[:2]))
    if scale < 1:
        framed = cv2.resize(framed, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    framed = np.ascontiguousarray(framed)
    focus_box = None if box is None else _focus_in_frame(photo.shape[:2], box, rows, cols, scale)
    parse = parse_still(framed, focus_box)
    focus = np.full(4, np.nan) if focus_box is None else np.array(focus_box)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        image=framed,
        focus=focus,
        person=parse.person,
        face=parse.face,
        hands=parse.hands,
        pose=parse.pose,
        fps=parse.fps,
    )
    tmp.replace(cached)
    return cached


def load_still(cached: Path) -> Still:
    with np.load(cached) as data:
        parse = ClipParse(data["person"], data["face"], data["hands"], data["pose"], float(data["fps"]))
        focus = data["focus"]
        return Still(data["image"], parse, None if np.isnan(focus).any() else tuple(float(v) for v in focus))
