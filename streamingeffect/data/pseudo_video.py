"""Photos as video (VIVID-10M trains on images and clips together): a still becomes a short clip
through a smooth random camera path and a small non-rigid sway of the person.

The camera path goes from one random view to another (pan, zoom, roll, perspective), eased so it
starts and stops gently, with a little handheld shake on top. The non-rigid part is a smooth random
displacement field that oscillates over the clip, weighted by the person's mask so the background
stays rigid while the person sways. Every output pixel samples the photo through one backward map,
and the person mask and the landmarks go through the same map, so the masks stay aligned with the
moved frames by construction (tests/test_people.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from streamingeffect.parsing.types import ClipParse

PRESAMPLE = 1.5  # the photo is first shrunk to about this many source pixels per output pixel


@dataclass(frozen=True)
class CameraConfig:
    """Ranges of the random camera path; lengths are shares of the output side."""

    person_fill: tuple[float, float] = (0.35, 1.0)  # the person's extent as a share of the frame
    position: float = 0.15  # how far the person's centre may sit from the frame's centre
    pan: float = 0.06  # drift of the view between the first and the last frame
    zoom: tuple[float, float] = (0.9, 1.12)  # zoom at the last frame relative to the first
    roll: float = 4.0  # degrees, at either end of the path
    perspective: float = 0.025  # corner jitter (a tilted camera)
    shake: float = 0.003  # handheld shake
    sway: float = 0.012  # non-rigid displacement of the person
    fps: float = 25.0


CLIP_CAMERA = CameraConfig()
# The far reference of a photo: a view of the same person far from the clip's (another framing, a
# stronger roll), standing in for the seconds-apart frame a real clip gives.
FAR_CAMERA = CameraConfig(position=0.2, pan=0.0, zoom=(1.0, 1.0), roll=12.0, perspective=0.05, sway=0.02)


@dataclass(frozen=True)
class _View:
    centre: np.ndarray  # [2] source pixels
    side: float  # source pixels
    roll: float  # degrees
    corners: np.ndarray  # [4, 2] perspective jitter in source pixels


def person_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of mask > 127 (uint8) or > 0.5 (float), None when empty."""
    on = mask > (127 if mask.dtype == np.uint8 else 0.5)
    rows, cols = np.nonzero(on.any(axis=1))[0], np.nonzero(on.any(axis=0))[0]
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def _first_view(
    shape: tuple[int, int],
    box: tuple[float, float, float, float],
    rng: np.random.Generator,
    cam: CameraConfig,
) -> _View:
    height, width = shape
    extent = max(box[2] - box[0], box[3] - box[1])
    side = min(extent / rng.uniform(*cam.person_fill), float(min(height, width)))
    # A view shorter than the person keeps the head in frame (the top of the box), not the knees.
    middle = np.array([(box[0] + box[2]) / 2, min((box[1] + box[3]) / 2, box[1] + 0.45 * side)])
    centre = middle - rng.uniform(-cam.position, cam.position, 2) * side
    half = side / 2
    centre = np.clip(centre, [half, half], [width - half, height - half])
    return _View(
        centre, side, rng.uniform(-cam.roll, cam.roll), rng.uniform(-1, 1, (4, 2)) * cam.perspective * side
    )


def _last_view(first: _View, rng: np.random.Generator, cam: CameraConfig) -> _View:
    side = first.side / rng.uniform(*cam.zoom)
    centre = first.centre + rng.uniform(-cam.pan, cam.pan, 2) * first.side
    corners = rng.uniform(-1, 1, (4, 2)) * cam.perspective * first.side
    return _View(centre, side, rng.uniform(-cam.roll, cam.roll), corners)


def _quad(view: _View) -> np.ndarray:
    """[4, 2] source corners of the view (clockwise from top-left)."""
    angle = np.deg2rad(view.roll)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * view.side / 2
    return view.centre + unit @ rotation.T + view.corners


def _fit(view: _View, shape: tuple[int, int]) -> _View:
    """Shift, then if need be shrink, the view until its corners lie inside the photo, so no frame
    shows the smeared border a camera looking past the picture's edge would give."""
    height, width = shape
    for _ in range(8):
        quad = _quad(view)
        low, high = quad.min(axis=0), quad.max(axis=0)
        limit = np.array([width - 1, height - 1], np.float64)
        shift = np.maximum(0, -low) - np.maximum(0, high - limit)
        if not shift.any():
            return view
        span = high - low
        if (span > limit).any():  # too big to fit anywhere: shrink around the centre
            factor = float(np.min(limit / span)) * 0.98
            view = _View(view.centre, view.side * factor, view.roll, view.corners * factor)
            continue
        view = _View(view.centre + shift, view.side, view.roll, view.corners)
    return view


def _homography(view: _View, size: int) -> np.ndarray:
    """3x3 map from output pixels to source pixels for one view."""
    source = _quad(view)
    output = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64) - 0.5
    return cv2.getPerspectiveTransform(output.astype(np.float32), source.astype(np.float32)).astype(
        np.float64
    )


def _blend(a: _View, b: _View, w: float, shake: np.ndarray) -> _View:
    return _View(
        a.centre * (1 - w) + b.centre * w + shake,
        a.side * (1 - w) + b.side * w,
        a.roll * (1 - w) + b.roll * w,
        a.corners * (1 - w) + b.corners * w,
    )


def _project(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    return (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]) / w, (
        matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]
    ) / w


class _Sway:
    """A smooth random displacement field [2, S, S] (output pixels) that oscillates over the clip."""

    def __init__(self, size: int, rng: np.random.Generator, amplitude: float):
        self.size, self.amplitude = size, amplitude * size
        self.fields = rng.normal(0, 1, (2, 2, 4, 4)).astype(np.float32)  # [cos/sin, xy, 4, 4]
        self.phase = rng.uniform(0, 2 * np.pi)
        self.cycles = rng.uniform(0.5, 1.5)

    def at(self, t: float, weight: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi * self.cycles * t + self.phase
        coarse = self.fields[0] * np.cos(angle) + self.fields[1] * np.sin(angle)  # [2, 4, 4]
        full = np.stack(
            [cv2.resize(c, (self.size, self.size), interpolation=cv2.INTER_CUBIC) for c in coarse]
        )
        return full * self.amplitude * weight[None]


def _points_to_output(
    points: np.ndarray, inverse: np.ndarray, displacement: np.ndarray, scale: float
) -> np.ndarray:
    """Source landmark rows [N, >=2] -> output pixels: the inverse homography, then the inverse of the
    sway (p + d(p) = rigid position, solved by a few fixed-point steps on the smooth field)."""
    out = points.astype(np.float32).copy()
    finite = np.isfinite(points[:, :2]).all(axis=1)
    if not finite.any():
        return out
    x, y = _project(inverse, points[finite, 0] * scale, points[finite, 1] * scale)
    rigid = np.stack([x, y], axis=1)
    moved = rigid.copy()
    for _ in range(4):
        coords = [
            moved[:, 1].clip(0, displacement.shape[1] - 1),
            moved[:, 0].clip(0, displacement.shape[2] - 1),
        ]
        d = np.stack([map_coordinates(displacement[k], coords, order=1) for k in range(2)], axis=1)
        moved = rigid - d
    out[finite, :2] = moved
    return out


def pseudo_video(
    image: np.ndarray,
    parse: ClipParse,
    frames: int,
    size: int,
    rng: np.random.Generator,
    camera: CameraConfig = CLIP_CAMERA,
    focus: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, ClipParse]:
    """A photo [H, W, 3] and its one-frame parse at the same size -> frames [F, S, S, 3] uint8 and the
    parse of those frames at S x S (person mask and landmarks moved with the pixels). ``focus`` is the
    box (x0, y0, x1, y1, pixels) of the person to frame; by default the box of the whole person mask."""
    if parse.size != image.shape[:2]:
        raise ValueError(
            f"the photo is {image.shape[:2]} but its parse is {parse.size}; parse it at its size"
        )
    height, width = parse.size
    box = focus or person_box(parse.person[0]) or (0.0, 0.0, float(width), float(height))
    first = _fit(_first_view(parse.size, box, rng, camera), parse.size)
    last = _fit(_last_view(first, rng, camera), parse.size)
    # Shrink the photo once so each output pixel samples about PRESAMPLE source pixels (no aliasing).
    scale = min(1.0, PRESAMPLE * size / max(first.side, last.side))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    person = parse.person[0]
    small_person = (
        cv2.resize(person, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        if scale < 1
        else person
    )
    sway = _Sway(size, rng, camera.sway)
    shake_phase = rng.uniform(0, 2 * np.pi, (2, 2))
    grid_x, grid_y = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    rgb = np.empty((frames, size, size, 3), np.uint8)
    masks = np.empty((frames, size, size), np.uint8)
    face = np.empty((frames, *parse.face.shape[1:]), np.float32)
    hands = np.empty((frames, *parse.hands.shape[1:]), np.float32)
    pose = np.empty((frames, *parse.pose.shape[1:]), np.float32)
    for k in range(frames):
        t = k / max(1, frames - 1)
        ease = t * t * (3 - 2 * t)
        shake = camera.shake * first.side * np.sin(2 * np.pi * np.array([2.0, 3.1]) * t + shake_phase[0])
        view = _blend(first, last, ease, shake)
        to_source = np.diag([scale, scale, 1.0]) @ _homography(view, size)
        rigid_person = cv2.warpPerspective(
            small_person, to_source, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        ).astype(np.float32)
        weight = cv2.GaussianBlur(rigid_person / 255.0, (0, 0), size / 16)
        displacement = sway.at(t, weight)  # [2, S, S]
        map_x, map_y = _project(to_source, grid_x + displacement[0], grid_y + displacement[1])
        map_x, map_y = map_x.astype(np.float32), map_y.astype(np.float32)
        rgb[k] = cv2.remap(small, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        masks[k] = cv2.remap(small_person, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        inverse = np.linalg.inv(to_source)
        face[k] = _points_to_output(parse.face[0], inverse, displacement, scale)
        hands[k] = np.stack([_points_to_output(h, inverse, displacement, scale) for h in parse.hands[0]])
        pose[k] = _points_to_output(parse.pose[0], inverse, displacement, scale)
    return rgb, ClipParse(masks, face, hands, pose, camera.fps)
