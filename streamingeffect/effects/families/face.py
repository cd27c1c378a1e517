"""Edits that restyle the face itself: face paint, lipstick, eyeshadow, blush, glowing eyes, skin smoothing.

Masks come from the (smoothed) face mesh, so the makeup sticks to the lips and lids without jitter, and
nothing outside the face changes.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import cv2
import numpy as np

from streamingeffect.effects.base import Effect, register
from streamingeffect.effects.draw import (
    add_light,
    blend,
    blur,
    colorize,
    dilate,
    ellipse_pts,
    feather,
    grid,
    luminance,
    mask_bbox,
    recolor,
    rgb,
    solid,
    stripes,
    to_float,
    to_uint8,
    weigh,
)
from streamingeffect.effects.families.common import polygon_mask
from streamingeffect.effects.landmarks import (
    FACE_OVAL,
    LEFT_BROW,
    LEFT_EYE,
    LEFT_IRIS,
    LEFT_UPPER_LID,
    LIPS_INNER,
    LIPS_OUTER,
    RIGHT_BROW,
    RIGHT_EYE,
    RIGHT_IRIS,
    RIGHT_UPPER_LID,
    FaceGeometry,
    FaceTracker,
)
from streamingeffect.parsing.types import FrameParts


def contour(face: FaceGeometry, indices: tuple[int, ...]) -> np.ndarray:
    return face.points[list(indices)]


def eyes_mask(shape: tuple[int, ...], face: FaceGeometry, grow: float) -> np.ndarray:
    """[H, W] both eye openings, grown by ``grow`` pixels."""
    mask = np.maximum(
        polygon_mask(shape, [contour(face, RIGHT_EYE)]), polygon_mask(shape, [contour(face, LEFT_EYE)])
    )
    return dilate(mask, grow)


def lips_mask(shape: tuple[int, ...], face: FaceGeometry) -> np.ndarray:
    """[H, W] the lips (outer lip line minus the mouth opening)."""
    return polygon_mask(shape, [contour(face, LIPS_OUTER), contour(face, LIPS_INNER)])


def skin_mask(shape: tuple[int, ...], face: FaceGeometry) -> np.ndarray:
    """[H, W] the face oval without the eyes and the open mouth."""
    oval = polygon_mask(shape, [contour(face, FACE_OVAL)])
    holes = np.maximum(
        eyes_mask(shape, face, 0.04 * face.scale), polygon_mask(shape, [contour(face, LIPS_INNER)])
    )
    return np.clip(oval - holes, 0.0, 1.0)


def eyeshadow_mask(shape: tuple[int, ...], face: FaceGeometry, height: float) -> np.ndarray:
    """[H, W] the lids between each upper lash line and ``height`` of the way up to the brow."""
    out = np.zeros(shape[:2], np.float32)
    for lid_ids, brow_ids, eye_ids in (
        (RIGHT_UPPER_LID, RIGHT_BROW, RIGHT_EYE),
        (LEFT_UPPER_LID, LEFT_BROW, LEFT_EYE),
    ):
        lid = contour(face, lid_ids)
        brow = contour(face, brow_ids)
        t_lid, t_brow = np.linspace(0, 1, len(lid)), np.linspace(0, 1, len(brow))
        brow_at_lid = np.stack([np.interp(t_lid, t_brow, brow[:, k]) for k in range(2)], axis=1)
        top = lid + (brow_at_lid - lid) * height
        out = np.maximum(out, polygon_mask(shape, [np.concatenate([lid, top[::-1]])]))
        out = np.clip(
            out - dilate(polygon_mask(shape, [contour(face, eye_ids)]), 0.02 * face.scale), 0.0, 1.0
        )
    return out


class FaceEdit(Effect):
    """A face-local edit driven by the smoothed face mesh; unchanged frame when no face is found."""

    region = "face"

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.tracker = FaceTracker()

    @abstractmethod
    def edit(self, image: np.ndarray, face: FaceGeometry, parts: FrameParts) -> np.ndarray:
        """float [H, W, 3] -> edited float image."""

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        face = self.tracker.update(parts.face)
        if face is None:
            return frame.copy()
        return to_uint8(self.edit(to_float(frame), face, parts))


@register
class Lipstick(FaceEdit):
    """Lipstick: the lips recoloured, keeping their shading and gloss."""

    family = "lipstick"
    defaults: ClassVar[dict[str, Any]] = {"color": (200, 15, 45), "strength": 0.85}

    def edit(self, image: np.ndarray, face: FaceGeometry, parts: FrameParts) -> np.ndarray:
        mask = feather(lips_mask(image.shape, face), 0.03 * face.scale)
        return recolor(
            image, mask, self.params["color"], self.params["strength"], lightness=0.55, texture=1.0
        )


@register
class Eyeshadow(FaceEdit):
    """Coloured eyeshadow on both upper lids, blended softly towards the brows."""

    family = "eyeshadow"
    defaults: ClassVar[dict[str, Any]] = {"color": (130, 40, 170), "strength": 0.8, "height": 0.65}

    def edit(self, image: np.ndarray, face: FaceGeometry, parts: FrameParts) -> np.ndarray:
        mask = feather(eyeshadow_mask(image.shape, face, self.params["height"]), 0.07 * face.scale)
        return recolor(image, mask, self.params["color"], self.params["strength"], lightness=0.5, texture=1.0)


@register
class Blush(FaceEdit):
    """Soft blush on the cheekbones."""

    family = "blush"
    defaults: ClassVar[dict[str, Any]] = {"color": (245, 90, 120), "strength": 0.55}

    def edit(self, image: np.ndarray, face: FaceGeometry, parts: FrameParts) -> np.ndarray:
        spots = [face.to_px(ellipse_pts(side * 0.72, 0.6, 0.3, 0.2, 24)) for side in (-1, 1)]
        mask = polygon_mask(image.shape, spots[:1]) + polygon_mask(image.shape, spots[1:])
        mask = feather(mask, 0.12 * face.scale) * skin_mask(image.shape, face)
        return recolor(
            image, mask, self.params["color"], self.params["strength"], lightness=0.25, texture=1.0
        )


@register
class GlowingEyes(FaceEdit):
    """Supernatural glowing irises with a coloured halo around each eye."""

    family = "glowing_eyes"
    defaults: ClassVar[dict[str, Any]] = {"color": (255, 40, 20), "intensity": 1.0}

    def edit(self, image: np.ndarray, face: FaceGeometry, parts: FrameParts) -> np.ndarray:
        pts = face.points
        radius = max(
            1.0, float(np.mean(np.hypot(*(pts[RIGHT_IRIS + 1 : RIGHT_IRIS + 5] - pts[RIGHT_IRIS]).T)))
        )
        radius = min(max(radius, 0.08 * face.scale), 0.16 * face.scale)
        dots = np.zeros(image.shape[:2], np.float32)
        for centre in (pts[RIGHT_IRIS], pts[LEFT_IRIS]):
            cv2.circle(
                dots,
                (round(centre[0] * 16), round(centre[1] * 16)),
                round(radius * 16),
                1.0,
                -1,
                cv2.LINE_AA,
                4,
            )
        dots *= dilate(
            eyes_mask(image.shape, face, 0.0), 0.02 * face.scale
        )  # irises only where the eye is open
        flicker = 1.0 + 0.15 * np.sin(parts.time * 9.0)
        strength = self.params["intensity"] * flicker
        color = self.params["color"]
        light = colorize(dots, (255, 255, 255), 0.6) + colorize(dots, color, 0.8)
        light += colorize(blur(dots, 0.8 * radius), color, 3.0 * strength)
        light += colorize(blur(dots, 2.5 * radius), color, 4.0 * strength)
        return add_light(image, light)


@register
class SkinSmoothing(FaceEdit):
    """Beauty filter: skin smoothed with an edge-preserving filter, slightly brightened and warmed."""

    family = "skin_smoothing"
    defaults: ClassVar[dict[str, Any]] = {"strength": 0.8, "brighten": 0.06}

    def edit(self, image: np.ndarray, face: FaceGeometry, parts: FrameParts) -> np.ndarray:
        mask = skin_mask(image.shape, face)
        box = mask_bbox(mask, 0.01)
        if box is None:
            return image
        x0, y0, x1, y1 = box
        crop = to_uint8(image[y0:y1, x0:x1])
        d = int(np.clip(0.1 * face.scale, 5, 9)) | 1
        smooth = cv2.bilateralFilter(crop, d, 40 + 30 * self.params["strength"], d)
        smooth = cv2.bilateralFilter(smooth, 5, 30, 5)
        result = to_float(smooth) * np.array([1.0, 0.99, 0.97], np.float32) + self.params["brighten"]
        weight = feather(mask, 0.06 * face.scale)[y0:y1, x0:x1] * self.params["strength"]
        out = image.copy()
        out[y0:y1, x0:x1] = blend(image[y0:y1, x0:x1], np.clip(result, 0, 1), weight)
        return out


FACE_PAINT_STYLES = ("solid", "half", "tiger", "skull", "clown", "zombie")


@register
class FacePaint(FaceEdit):
    """Face paint following the face: solid colour, half face, tiger, skull, clown or zombie make-up."""

    family = "face_paint"
    defaults: ClassVar[dict[str, Any]] = {"style": "solid", "color": (40, 110, 230), "opacity": 0.9}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["style"] not in FACE_PAINT_STYLES:
            raise ValueError(f"face_paint: unknown style {self.params['style']!r}")

    def edit(self, image: np.ndarray, face: FaceGeometry, parts: FrameParts) -> np.ndarray:
        mask = feather(skin_mask(image.shape, face), 0.03 * face.scale)
        box = mask_bbox(mask, 0.01)
        if box is None:
            return image
        x0, y0, x1, y1 = box
        crop, weight = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        xs, ys = grid(image.shape)
        dx, dy = xs[y0:y1, x0:x1] - face.center[0], ys[y0:y1, x0:x1] - face.center[1]
        u = ((dx * face.right[0] + dy * face.right[1]) / face.scale).astype(np.float32)
        v = ((dx * face.down[0] + dy * face.down[1]) / face.scale).astype(np.float32)
        paint, coverage = self._pattern(u, v)
        lum = luminance(crop)
        mean = float((lum * weight).sum() / (weight.sum() + 1e-6))
        shading = np.clip(0.35 + 0.75 * lum / max(mean, 1e-3), 0.2, 1.4)
        out = image.copy()
        painted = np.clip(weigh(paint, shading), 0, 1)
        out[y0:y1, x0:x1] = blend(crop, painted, weight * coverage * self.params["opacity"])
        return out

    def _pattern(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Paint colour [h, w, 3] and coverage [h, w] in face-local coordinates (u across, v down)."""
        style = self.params["style"]
        ones = np.ones_like(u)
        color = solid(u.shape, self.params["color"])
        if style == "solid":
            return color, ones
        if style == "half":
            return color, np.clip(0.5 - u / 0.04, 0.0, 1.0)
        if style == "zombie":
            paint = solid(u.shape, (150, 175, 125))
            sockets = soft_ellipses(u, v, [(-0.47, 0.02), (0.47, 0.02)], 0.34, 0.26)
            return blend(paint, rgb((70, 40, 80)), sockets * 0.85), ones
        white = solid(u.shape, (250, 250, 250))
        black = rgb((15, 15, 15))
        if style == "tiger":
            paint = solid(u.shape, (245, 130, 25))
            muzzle = soft_ellipses(u, v, [(0.0, 1.1)], 0.6, 0.55)
            paint = blend(paint, rgb((250, 250, 245)), muzzle)
            sides = np.clip((np.abs(u) - 0.45) / 0.1, 0, 1) * stripes(
                v + 0.3 * np.sin(2.5 * u), 0.34, 0.32, 0.06
            )
            brow = np.clip((-0.5 - v) / 0.1, 0, 1) * stripes(u + 0.12 * np.sin(6 * v), 0.3, 0.3, 0.06)
            brow *= np.clip((0.55 - np.abs(u)) / 0.1, 0, 1)
            nose = np.clip(1.0 - (np.abs(u) / 0.16 + np.abs(v - 0.66) / 0.1), 0, 1) * 4
            return blend(paint, black, np.clip(sides + brow + nose, 0, 1)), ones
        if style == "skull":
            sockets = soft_ellipses(u, v, [(-0.47, 0.03), (0.47, 0.03)], 0.33, 0.3)
            nose = np.clip((0.22 - np.abs(u) * 1.4 - np.abs(v - 0.66) * 1.2) / 0.03, 0, 1)
            teeth = (np.abs(u) < 0.45) * (np.abs(v - 1.13) < 0.14) * stripes(u, 0.13, 0.22, 0.04)
            grin = np.clip(1.0 - np.abs(v - 1.13) / 0.025, 0, 1) * (np.abs(u) < 0.55)
            return blend(white, black, np.clip(sockets + nose + teeth + grin, 0, 1)), ones
        # clown: white base, red nose and wide red mouth, blue diamonds through the eyes
        paint = white
        mouth = soft_ellipses(u, v, [(0.0, 1.13)], 0.58, 0.24)
        nose = soft_ellipses(u, v, [(0.0, 0.68)], 0.17, 0.15)
        paint = blend(paint, rgb((225, 20, 30)), np.clip(mouth + nose, 0, 1))
        diamonds = sum(
            np.clip((1.0 - np.abs(u - x) / 0.15 - np.abs(v) / 0.5) / 0.08, 0, 1) for x in (-0.47, 0.47)
        )
        return blend(paint, rgb((40, 80, 220)), np.clip(diamonds, 0, 1)), ones


def soft_ellipses(u: np.ndarray, v: np.ndarray, centres: list[tuple[float, float]], ru: float, rv: float):
    """Union of soft-edged ellipses in face-local coordinates -> [h, w] in [0, 1]."""
    out = np.zeros_like(u)
    for cu, cv in centres:
        d = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
        out = np.maximum(out, np.clip((1.0 - d) / 0.12, 0.0, 1.0))
    return out
