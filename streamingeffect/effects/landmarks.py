"""Named MediaPipe landmark indices, face geometry (position, eye-line angle, scale) and jitter smoothing.

Face indices refer to the 478-point face mesh with iris refinement. "Right" and "left" are the subject's:
the subject's right eye (33 / 133 / iris 468) is on the image left for an unmirrored frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamingeffect.effects.draw import mask_top, place

# Index constants live with the parser; re-exported here because every effect reaches them as `lm.*`.
from streamingeffect.parsing.indices import *
from streamingeffect.parsing.types import FrameParts

FACE_SCALE_PER_HEIGHT = 0.37  # typical inter-ocular distance / forehead-to-chin distance


@dataclass(frozen=True)
class FaceGeometry:
    """Where the face is, how it is rotated in the image plane and how big it is (all in pixels).

    ``scale`` is about the inter-ocular distance but stays stable when the head turns (yaw shrinks the eye
    distance, pitch shrinks the face height; the larger of the two estimates is used).
    """

    points: np.ndarray  # [478, 2]
    center: np.ndarray  # [2] midpoint between the eye centres
    angle: float  # eye-line angle in radians, 0 when level, positive clockwise on screen
    scale: float

    @property
    def right(self) -> np.ndarray:
        """Unit vector along the eye line, towards the image right for a frontal face."""
        return np.array([np.cos(self.angle), np.sin(self.angle)])

    @property
    def down(self) -> np.ndarray:
        """Unit vector from forehead towards chin."""
        return np.array([-np.sin(self.angle), np.cos(self.angle)])

    def pt(self, index: int) -> np.ndarray:
        return self.points[index]

    def local(self, point: np.ndarray) -> np.ndarray:
        """Pixel point -> face-local units (x along the eyes, y down the face, 1 unit = scale)."""
        d = np.asarray(point, np.float64) - self.center
        return np.array([d @ self.right, d @ self.down]) / self.scale

    def to_px(self, points: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
        """Face-local points [N, 2] (1 unit = scale) around ``origin`` (default: eye centre) -> pixels."""
        return place(points, self.center if origin is None else origin, self.scale, self.angle)

    @property
    def head_top(self) -> np.ndarray:
        """Estimated top of the skull (the forehead landmark sits near the hairline, the skull goes on)."""
        up = self.center - self.pt(FOREHEAD)
        reach = max(float(np.hypot(*up)), 0.9 * self.scale)
        return self.center - self.down * reach * 2.0

    @property
    def brow_line(self) -> np.ndarray:
        """Point just above the forehead landmark, where hats and headbands rest."""
        return self.pt(FOREHEAD) - self.down * 0.15 * self.scale


def face_geometry(face: np.ndarray | None) -> FaceGeometry | None:
    """Geometry of a [478, 2] face mesh, or None if it is missing, non-finite or degenerate."""
    if face is None or face.shape[0] < 478 or not np.isfinite(face[:, :2]).all():
        return None
    pts = face[:, :2].astype(np.float64)
    # Eye-corner midpoints, not the irises: the irises move with gaze, the sticker must not.
    right_eye = (pts[RIGHT_EYE_OUTER] + pts[RIGHT_EYE_INNER]) / 2.0
    left_eye = (pts[LEFT_EYE_OUTER] + pts[LEFT_EYE_INNER]) / 2.0
    eye_vec = left_eye - right_eye
    iod = float(np.hypot(*eye_vec))
    height = float(np.hypot(*(pts[CHIN] - pts[FOREHEAD])))
    scale = max(iod, FACE_SCALE_PER_HEIGHT * height)
    if scale < 2.0:
        return None
    angle = float(np.arctan2(eye_vec[1], eye_vec[0])) if iod > 0.5 else 0.0
    return FaceGeometry(points=pts, center=(right_eye + left_eye) / 2.0, angle=angle, scale=scale)


def eye_line_angle(face: np.ndarray) -> float:
    """Angle (radians) of the line from the subject's right iris to the left iris."""
    d = face[LEFT_IRIS] - face[RIGHT_IRIS]
    return float(np.arctan2(d[1], d[0]))


def inter_ocular_distance(face: np.ndarray) -> float:
    return float(np.hypot(*(face[LEFT_IRIS] - face[RIGHT_IRIS])))


# ---------------------------------------------------------------- hands and pose


def _inside(points: np.ndarray, shape: tuple[int, ...], margin: float = 0.1) -> np.ndarray:
    h, w = shape[:2]
    mx, my = w * margin, h * margin
    return (
        np.isfinite(points).all(axis=1)
        & (points[:, 0] > -mx)
        & (points[:, 0] < w + mx)
        & (points[:, 1] > -my)
        & (points[:, 1] < h + my)
    )


def hand_points(parts: FrameParts, indices: tuple[int, ...] = FINGERTIPS) -> np.ndarray:
    """[N, 2] chosen landmarks of every visible hand (empty [0, 2] when no hand is in view)."""
    chosen = [hand[list(indices), :2] for hand in parts.hands if hand is not None and len(hand) >= 21]
    if not chosen:
        return np.zeros((0, 2), np.float32)
    pts = np.concatenate(chosen).astype(np.float32)
    return pts[_inside(pts, parts.size)]


def pose_point(parts: FrameParts, index: int, min_visibility: float = 0.5) -> np.ndarray | None:
    """[2] pose landmark if it is visible and inside (or near) the frame, else None."""
    pose = parts.pose
    if pose is None or index >= len(pose):
        return None
    p = pose[index]
    vis = p[2] if len(p) > 2 else 1.0
    if not np.isfinite(p[:2]).all() or not vis >= min_visibility:
        return None
    return p[:2].astype(np.float32) if _inside(p[None, :2], parts.size)[0] else None


def head_top_point(parts: FrameParts) -> np.ndarray | None:
    """Top of the head from the face mesh, else from the person mask."""
    geo = face_geometry(parts.face)
    if geo is not None:
        return geo.head_top.astype(np.float32)
    return mask_top(parts.person)


def body_anchor_points(parts: FrameParts) -> np.ndarray:
    """Emitter positions when no hands are visible: the shoulders and the top of the head. [N, 2]."""
    pts = [pose_point(parts, i) for i in (POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER)]
    pts.append(head_top_point(parts))
    found = [p for p in pts if p is not None]
    return np.array(found, np.float32).reshape(-1, 2)


def emitter_points(parts: FrameParts) -> np.ndarray:
    """Fingertips of the visible hands, falling back to shoulders and head top. [N, 2]."""
    tips = hand_points(parts)
    return tips if len(tips) else body_anchor_points(parts)


# ---------------------------------------------------------------- temporal smoothing


class PointSmoother:
    """Speed-adaptive EMA over a landmark array, in the spirit of the One-Euro filter.

    When the points barely move the filter averages heavily (kills detector jitter); when they move fast
    alpha goes up so stickers do not lag behind the head. After ``max_gap`` missing frames it restarts.
    """

    def __init__(
        self, min_alpha: float = 0.25, gain: float = 8.0, noise_floor: float = 0.04, max_gap: int = 5
    ):
        self.min_alpha = min_alpha
        self.gain = gain
        self.noise_floor = noise_floor  # per-frame change (in units of scale) still treated as jitter
        self.max_gap = max_gap
        self.state: np.ndarray | None = None
        self.missing = 0

    def update(self, points: np.ndarray | None, scale: float | None = None) -> np.ndarray | None:
        """Smoothed copy of ``points`` [N, D]; None (and the state is kept) when the points are absent."""
        if points is None or not np.isfinite(points).all():
            self.missing += 1
            if self.missing > self.max_gap:
                self.state = None
            return None
        pts = np.asarray(points, np.float64)
        if self.state is None or self.state.shape != pts.shape or self.missing > self.max_gap:
            self.state = pts.copy()
        else:
            if scale is None:
                scale = float(np.ptp(pts[:, 0]) + np.ptp(pts[:, 1])) / 2.0 if pts.ndim == 2 else 1.0
            speed = float(np.abs(pts - self.state).mean()) / max(scale, 1e-3)
            alpha = float(
                np.clip(self.min_alpha + self.gain * (speed - self.noise_floor), self.min_alpha, 1.0)
            )
            self.state = self.state + alpha * (pts - self.state)
        self.missing = 0
        return self.state.copy()


class FaceTracker:
    """Smoothed face geometry across frames (stickers must not jitter)."""

    def __init__(self, min_alpha: float = 0.25):
        self.smoother = PointSmoother(min_alpha=min_alpha)

    def update(self, face: np.ndarray | None) -> FaceGeometry | None:
        raw = face_geometry(face)
        if raw is None:
            self.smoother.update(None)
            return None
        return face_geometry(self.smoother.update(raw.points, raw.scale))
