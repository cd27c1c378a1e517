"""Synthetic head-and-shoulders frames with plausible MediaPipe-style landmarks, for fast tests.

``make_parts`` draws a person (head ellipse, neck, torso) and places the 478-point face mesh so that the
named indices used by the renderer (eyes, irises, lips, nose, forehead, chin, cheeks, brows, face oval) sit
where they would on a real frontal face; the remaining mesh points fill the face ellipse.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamingeffect.effects import landmarks as lm
from streamingeffect.parsing.types import FACE_POINTS, HAND_POINTS, POSE_POINTS, FrameParts, RegionMasks


def _ring(n: int, start_deg: float, step_sign: float) -> np.ndarray:
    """[n] angles in radians around a closed contour, from ``start_deg`` in the given screen direction."""
    return np.radians(start_deg + step_sign * np.arange(n) * 360.0 / n)


def face_mesh(cx: float, cy: float, width: float, height: float, angle_deg: float = 0.0) -> np.ndarray:
    """[478, 2] face landmarks for a face of ``width`` (cheek to cheek) and ``height`` (forehead to chin)."""
    half_w, half_h = width / 2.0, height / 2.0
    # Local coordinates: u in [-1, 1] across the face (image left to right), v in [-1, 1] forehead to chin.
    uv = np.zeros((FACE_POINTS, 2))
    golden = np.arange(FACE_POINTS) * 2.39996  # fill the face evenly (sunflower layout)
    rad = np.sqrt((np.arange(FACE_POINTS) + 0.5) / FACE_POINTS) * 0.9
    uv[:] = np.stack([rad * np.cos(golden), rad * np.sin(golden)], axis=1)

    def put(indices: tuple[int, ...], u: np.ndarray, v: np.ndarray) -> None:
        uv[list(indices)] = np.stack([u, v], axis=1)

    t = _ring(len(lm.FACE_OVAL), -90.0, +1.0)
    put(lm.FACE_OVAL, np.cos(t), np.sin(t))
    for contour, (cu, cv, ru, rv) in (
        (lm.LIPS_OUTER, (0, 0.55, 0.34, 0.12)),
        (lm.LIPS_INNER, (0, 0.55, 0.26, 0.03)),
    ):
        t = _ring(len(contour), 180.0, -1.0)
        put(contour, cu + ru * np.cos(t), cv + rv * np.sin(t))
    eye_u, eye_v, eye_ru, eye_rv = 0.42, -0.24, 0.17, 0.06
    t = _ring(len(lm.RIGHT_EYE), 180.0, -1.0)
    put(lm.RIGHT_EYE, -eye_u + eye_ru * np.cos(t), eye_v + eye_rv * np.sin(t))
    t = _ring(len(lm.LEFT_EYE), 0.0, +1.0)
    put(lm.LEFT_EYE, eye_u + eye_ru * np.cos(t), eye_v + eye_rv * np.sin(t))
    for centre, sign in ((lm.RIGHT_IRIS, -1), (lm.LEFT_IRIS, 1)):
        ring = _ring(4, 0.0, 1.0)
        put((centre,), np.array([sign * eye_u]), np.array([eye_v]))
        put(
            tuple(range(centre + 1, centre + 5)),
            sign * eye_u + 0.06 * np.cos(ring),
            eye_v + 0.05 * np.sin(ring),
        )
    brow = np.linspace(0.64, 0.18, 5)
    put(lm.RIGHT_BROW, -brow, -0.42 - 0.04 * np.sin(np.linspace(0, np.pi, 5)))
    put(lm.LEFT_BROW, brow, -0.42 - 0.04 * np.sin(np.linspace(0, np.pi, 5)))
    put((lm.NOSE_TIP, 2, lm.NOSE_BRIDGE, 6), np.zeros(4), np.array([0.25, 0.33, -0.24, -0.1]))
    put((lm.RIGHT_CHEEKBONE, lm.LEFT_CHEEKBONE), np.array([-0.5, 0.5]), np.array([0.2, 0.2]))

    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    local = uv * np.array([half_w, half_h])
    rotated = local @ np.array([[c, -s], [s, c]]).T
    return (rotated + np.array([cx, cy])).astype(np.float32)


def _ellipse_mask(h: int, w: int, center, axes, angle: float = 0.0) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(
        mask, (round(center[0]), round(center[1])), (round(axes[0]), round(axes[1])), angle, 0, 360, 1, -1
    )
    return mask.astype(np.float32)


def hand_landmarks(cx: float, cy: float, size: float) -> np.ndarray:
    """[21, 2] an open hand: wrist at the bottom, five fingers fanning upwards."""
    pts = [np.array([cx, cy + size])]
    for finger in range(5):
        ang = np.radians(-150 + finger * 30)
        for joint in range(1, 5):
            r = size * (0.35 + 0.2 * joint)
            pts.append(np.array([cx + r * np.cos(ang), cy + size * 0.6 + r * np.sin(ang)]))
    return np.array(pts, np.float32)[:HAND_POINTS]


def make_parts(
    height: int = 256,
    width: int = 256,
    index: int = 0,
    *,
    face: bool = True,
    hands: bool = False,
    pose: bool = True,
    person: bool = True,
    shift: tuple[float, float] = (0.0, 0.0),
    angle_deg: float = 0.0,
    fps: float = 25.0,
) -> FrameParts:
    """A head-and-shoulders person centred in the frame (moved by ``shift`` px), with the chosen anchors."""
    h, w = height, width
    s = min(h, w)
    cx, cy = w / 2 + shift[0], h * 0.38 + shift[1]
    fw, fh = 0.34 * s, 0.44 * s
    zeros = np.zeros((h, w), np.float32)
    if not person:
        regions = RegionMasks(zeros, zeros, zeros, zeros, zeros, np.ones((h, w), np.float32))
        return FrameParts(index=index, time=index / fps, regions=regions)

    face_m = _ellipse_mask(h, w, (cx, cy), (fw / 2, fh / 2), angle_deg)
    head = _ellipse_mask(h, w, (cx, cy - 0.08 * fh), (fw / 2 * 1.12, fh / 2 * 1.2), angle_deg)
    neck = _ellipse_mask(h, w, (cx, cy + 0.6 * fh), (fw * 0.25, fh * 0.3))
    torso = _ellipse_mask(h, w, (cx, cy + 1.45 * fh), (fw * 1.35, fh * 0.85))
    ys = np.arange(h, dtype=np.float32)[:, None]
    hair = np.clip(head - face_m, 0, 1) * (ys < cy).astype(np.float32)
    hands_m = zeros.copy()
    hand_list: list[np.ndarray] = []
    if hands:
        hand = hand_landmarks(cx + 0.75 * fw, cy + 0.9 * fh, 0.22 * s)
        hand_list.append(hand)
        for p in hand:
            cv2.circle(hands_m, (round(p[0]), round(p[1])), max(1, round(0.03 * s)), 1.0, -1)
    person_m = np.clip(head + neck + torso + hands_m, 0, 1)
    torso_m = np.clip(torso - hands_m, 0, 1)
    soft = [cv2.GaussianBlur(m, (0, 0), 0.8) for m in (person_m, face_m, hair, hands_m, torso_m)]
    regions = RegionMasks(*soft, background=1.0 - soft[0])

    mesh = face_mesh(cx, cy, fw, fh, angle_deg) if face else None
    pose_arr = None
    if pose:
        pose_arr = np.zeros((POSE_POINTS, 3), np.float32)
        pose_arr[:, :2] = (cx, cy)
        pose_arr[lm.POSE_NOSE] = (cx, cy + 0.12 * fh, 0.99)
        pose_arr[lm.POSE_LEFT_SHOULDER] = (cx + 0.95 * fw, cy + 1.05 * fh, 0.95)
        pose_arr[lm.POSE_RIGHT_SHOULDER] = (cx - 0.95 * fw, cy + 1.05 * fh, 0.95)
    return FrameParts(
        index=index, time=index / fps, regions=regions, face=mesh, hands=hand_list, pose=pose_arr
    )


def make_frame(parts: FrameParts, seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8 RGB picture matching ``parts``: textured backdrop, skin, hair, shirt."""
    h, w = parts.size
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[...] = np.stack([90 + 60 * xs / w, 120 + 40 * ys / h, 150 - 30 * xs / w], axis=2)
    regions = parts.regions
    for mask, color in (
        (regions.torso, (40, 70, 160)),
        (regions.face, (222, 172, 140)),
        (regions.hair, (60, 40, 30)),
    ):
        img += (np.array(color, np.float32) - img) * mask[..., None]
    neck = np.clip(regions.person - regions.torso - regions.face - regions.hair - regions.hands, 0, 1)
    img += (np.array((205, 155, 125), np.float32) - img) * neck[..., None]
    img += (np.array((230, 180, 150), np.float32) - img) * regions.hands[..., None]
    if parts.face is not None:
        for contour, color in (
            (lm.LIPS_OUTER, (170, 70, 80)),
            (lm.RIGHT_EYE, (250, 250, 250)),
            (lm.LEFT_EYE, (250,) * 3),
        ):
            cv2.fillPoly(img, [np.round(parts.face[list(contour)]).astype(np.int32)], color)
        for iris in (lm.RIGHT_IRIS, lm.LEFT_IRIS):
            x, y = parts.face[iris]
            cv2.circle(img, (round(x), round(y)), max(1, round(0.012 * min(h, w))), (60, 40, 20), -1)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_clip(
    num_frames: int, height: int = 256, width: int = 256, **kwargs
) -> list[tuple[np.ndarray, FrameParts]]:
    """A short clip where the person sways sideways and nods a little (for temporal tests)."""
    clip = []
    for i in range(num_frames):
        shift = (0.04 * width * np.sin(i * 0.5), 0.01 * height * np.cos(i * 0.7))
        parts = make_parts(height, width, i, shift=shift, angle_deg=6 * np.sin(i * 0.3), **kwargs)
        clip.append((make_frame(parts, seed=i), parts))
    return clip
