"""Colour edits and grades: hair and clothing recolour, clothing patterns, per-region looks, thermal,
night vision, duotone and x-ray.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from streamingeffect.effects.base import Effect, register
from streamingeffect.effects.draw import (
    add_light,
    blend,
    blur,
    colorize,
    contrast,
    edge_band,
    feather,
    gradient_map,
    gray3,
    grid,
    luminance,
    mask_bbox,
    mask_centroid,
    power,
    radial,
    recolor,
    rgb,
    saturate,
    scale_channels,
    solid,
    stripes,
    to_float,
    to_uint8,
    unit,
    weigh,
)
from streamingeffect.effects.families.common import RegionFilter, has_region, not_skin
from streamingeffect.effects.landmarks import (
    POSE_LEFT_SHOULDER,
    POSE_RIGHT_SHOULDER,
    PointSmoother,
    face_geometry,
    pose_point,
)
from streamingeffect.parsing.types import FrameParts


class RegionRecolor(Effect):
    """Recolour one region (hair, clothing) in Lab; an optional second colour makes a vertical ombre."""

    defaults: ClassVar[dict[str, Any]] = {"color": (255, 80, 170), "color2": None, "strength": 0.9}
    lightness = 0.8

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = parts.regions.get(self.region).astype(np.float32, copy=False)
        if not has_region(mask):
            return frame.copy()
        p = self.params
        image = to_float(frame)
        soft = feather(mask, 0.8 * unit(frame)) * np.sqrt(mask.clip(0, 1))
        away_from_skin = not_skin(image, parts)
        if away_from_skin is not None:
            soft = soft * feather(away_from_skin, 0.6 * unit(frame))
        if p["color2"] is None:
            return to_uint8(recolor(image, soft, p["color"], p["strength"], self.lightness))
        box = mask_bbox(mask)
        top, bottom = (box[1], box[3]) if box else (0, frame.shape[0])
        t = np.clip((np.arange(frame.shape[0], dtype=np.float32) - top) / max(bottom - top, 1), 0, 1)[:, None]
        first = recolor(image, soft * (1 - t), p["color"], p["strength"], self.lightness)
        return to_uint8(recolor(first, soft * t, p["color2"], p["strength"], self.lightness))


@register
class HairRecolor(RegionRecolor):
    """Dyed hair: any colour (pink, blue, platinum...) keeping the strands' shading; optional ombre."""

    family = "hair_recolor"
    region = "hair"
    defaults: ClassVar[dict[str, Any]] = {"color": (255, 80, 170), "color2": None, "strength": 0.9}


@register
class ClothingRecolor(RegionRecolor):
    """The top / shirt recoloured, folds and shading kept."""

    family = "clothing_recolor"
    region = "torso"
    defaults: ClassVar[dict[str, Any]] = {"color": (220, 30, 40), "color2": None, "strength": 0.9}
    lightness = 0.85


CLOTHING_PATTERNS = ("stripes", "polka_dots", "checker", "zigzag", "diagonal")


@register
class ClothingPattern(Effect):
    """A printed pattern on the clothing (stripes, polka dots, checker, zigzag, diagonal stripes).

    The pattern is anchored to the torso (position and shoulder tilt, smoothed) so it moves with the body
    instead of sliding over it, and the cloth's own shading is kept.
    """

    family = "clothing_pattern"
    region = "torso"
    defaults: ClassVar[dict[str, Any]] = {
        "pattern": "stripes",
        "color": (255, 255, 255),
        "color2": (20, 40, 120),
        "scale": 1.0,
        "strength": 0.95,
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["pattern"] not in CLOTHING_PATTERNS:
            raise ValueError(f"clothing_pattern: unknown pattern {self.params['pattern']!r}")
        self.anchor = PointSmoother(min_alpha=0.25)

    def _frame_of_reference(self, parts: FrameParts, mask: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Pattern origin [2], angle (radians) and period (pixels)."""
        left, right = pose_point(parts, POSE_LEFT_SHOULDER), pose_point(parts, POSE_RIGHT_SHOULDER)
        angle = 0.0
        if left is not None and right is not None:
            d = left - right
            angle = float(np.clip(np.arctan2(d[1], d[0]), -0.5, 0.5))
        face = face_geometry(parts.face)
        period = (0.55 * face.scale if face is not None else 0.07 * min(mask.shape)) * self.params["scale"]
        centre = mask_centroid(mask)
        state = self.anchor.update(np.array([[centre[0], centre[1], angle]]), scale=max(period, 1.0))
        return state[0, :2], float(state[0, 2]), max(period, 3.0)

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = parts.regions.torso.astype(np.float32, copy=False)
        if not has_region(mask):
            return frame.copy()
        origin, angle, period = self._frame_of_reference(parts, mask)
        image = to_float(frame)
        weight = feather(mask, 0.8 * unit(frame))
        away_from_skin = not_skin(image, parts)
        if away_from_skin is not None:
            weight = weight * feather(away_from_skin, 0.6 * unit(frame))
        box = mask_bbox(weight, 0.01)
        if box is None:
            return frame.copy()
        x0, y0, x1, y1 = box  # all the per-pixel work happens inside the clothing's box
        xs, ys = grid(frame.shape)
        dx, dy = xs[y0:y1, x0:x1] - origin[0], ys[y0:y1, x0:x1] - origin[1]
        c, s = np.cos(angle), np.sin(angle)
        ink = self._pattern(dx * c + dy * s, -dx * s + dy * c, period)
        crop, w = image[y0:y1, x0:x1], weight[y0:y1, x0:x1]
        cloth = blend(solid(crop.shape, self.params["color2"]), rgb(self.params["color"]), ink)
        lum = luminance(crop)
        mean = float((lum * w).sum() / (w.sum() + 1e-6))
        shading = np.clip(0.45 + 0.65 * lum / max(mean, 0.02), 0.25, 1.5)
        image[y0:y1, x0:x1] = blend(crop, np.clip(weigh(cloth, shading), 0, 1), w * self.params["strength"])
        return to_uint8(image)

    def _pattern(self, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
        """[H, W] in [0, 1]: 1 where the pattern's first colour is printed."""
        soft = 1.2 / period
        pattern = self.params["pattern"]
        if pattern == "stripes":
            return stripes(v, period, 0.5, soft)
        if pattern == "diagonal":
            return stripes(u + v, period * 1.2, 0.5, soft)
        if pattern == "zigzag":
            return stripes(v + np.abs((u / period) % 2.0 - 1.0) * period * 0.8, period, 0.45, soft)
        if pattern == "checker":
            a = stripes(u, 2 * period, 0.5, soft) * 2 - 1
            b = stripes(v, 2 * period, 0.5, soft) * 2 - 1
            return np.clip(0.5 - 0.5 * a * b, 0, 1)
        # polka dots on a staggered grid
        row = np.floor(v / period)
        du = (u / period + 0.5 * (row % 2)) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        return np.clip((0.3 - np.sqrt(du**2 + dv**2)) * period / 1.2, 0, 1)


def grade(image: np.ndarray, look: str) -> np.ndarray:
    """Apply a named colour look to a float image."""
    lum = luminance(image)
    if look == "warm":
        return np.clip(scale_channels(image, (1.12, 1.0, 0.78), (0.04, 0.01, 0.0)), 0, 1)
    if look == "cool":
        return np.clip(scale_channels(image, (0.8, 0.97, 1.18), (0.0, 0.01, 0.05)), 0, 1)
    if look == "teal_orange":
        shadows, highlights = rgb((0, 128, 128)) - 0.5, rgb((255, 150, 50)) - 0.5
        toned = image + colorize(1 - lum, shadows * 255, 0.5) + colorize(lum, highlights * 255, 0.45)
        return contrast(saturate(np.clip(toned, 0, 1), 1.25), 1.1)
    if look == "sepia":
        return gradient_map(contrast(lum, 1.1), [(20, 10, 0), (160, 110, 60), (255, 235, 200)])
    if look == "noir":
        return contrast(gray3(image), 1.5)
    if look == "vivid":
        return contrast(saturate(image, 1.9), 1.12)
    if look == "pastel":
        return np.clip(scale_channels(saturate(image, 0.55), (0.7,) * 3, rgb((255, 215, 230)) * 0.32), 0, 1)
    if look == "matrix":
        return np.clip(scale_channels(gray3(image), (0.45, 1.15, 0.5), (0.0, 0.05, 0.0)), 0, 1)
    if look == "vintage":
        return np.clip(scale_channels(saturate(image, 0.6), (0.886, 0.82, 0.672), (0.108, 0.1, 0.082)), 0, 1)
    if look == "cyberpunk":
        tones = gradient_map(lum, [(255, 0, 170), (0, 220, 255)])
        return np.clip(contrast(gray3(image), 1.2) * tones * 1.25, 0, 1)
    if look == "golden_hour":
        return np.clip(
            scale_channels(
                contrast(scale_channels(image, (1.2, 1.02, 0.7)), 1.05), (1, 1, 1), rgb((40, 20, 0))
            ),
            0,
            1,
        )
    if look == "bleach":
        return contrast(saturate(image, 0.35), 1.35)
    raise ValueError(f"unknown colour look {look!r}")


GRADE_LOOKS = (
    "warm",
    "cool",
    "teal_orange",
    "sepia",
    "noir",
    "vivid",
    "pastel",
    "matrix",
    "vintage",
    "cyberpunk",
    "golden_hour",
    "bleach",
)


@register
class ColorGrade(RegionFilter):
    """A colour look (warm, cool, teal & orange, sepia, noir...) on one region: the person, the background,
    or the whole scene."""

    family = "color_grade"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"look": "teal_orange", "target": "scene", "amount": 1.0}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["look"] not in GRADE_LOOKS:
            raise ValueError(f"color_grade: unknown look {self.params['look']!r}")

    def stylize(self, image: np.ndarray, parts: FrameParts) -> np.ndarray:
        graded = grade(image, self.params["look"])
        return image + (graded - image) * self.params["amount"]


@register
class Duotone(RegionFilter):
    """Two-colour poster look: shadows in one colour, highlights in another."""

    family = "duotone"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"dark": (40, 20, 120), "light": (255, 90, 160), "target": "scene"}

    def stylize(self, image: np.ndarray, parts: FrameParts) -> np.ndarray:
        lum = contrast(luminance(image), 1.25)
        return gradient_map(lum, [self.params["dark"], self.params["light"]])


THERMAL_PALETTES = {
    "ironbow": (
        (0, 0, 20),
        (40, 0, 110),
        (150, 0, 150),
        (230, 60, 40),
        (255, 160, 0),
        (255, 240, 120),
        (255, 255, 255),
    ),
    "rainbow": (
        (0, 0, 140),
        (0, 120, 255),
        (0, 230, 200),
        (120, 255, 0),
        (255, 230, 0),
        (255, 80, 0),
        (255, 0, 0),
    ),
    "white_hot": ((0, 0, 0), (90, 90, 90), (200, 200, 200), (255, 255, 255)),
}


@register
class Thermal(Effect):
    """Thermal-camera false colour: the warm person glows yellow-white against a cold blue scene."""

    family = "thermal"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"palette": "ironbow"}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        if self.params["palette"] not in THERMAL_PALETTES:
            raise ValueError(f"thermal: unknown palette {self.params['palette']!r}")
        u = unit(frame)
        image = to_float(frame)
        body = blur(parts.person.astype(np.float32), 4 * u)
        skin = blur(np.maximum(parts.regions.face, parts.regions.hands).astype(np.float32), 3 * u)
        heat = 0.18 + 0.25 * luminance(image) + 0.35 * body + 0.22 * skin
        heat = blur(heat, 1.5 * u)
        return to_uint8(gradient_map(np.clip(heat, 0, 1), THERMAL_PALETTES[self.params["palette"]]))


@register
class NightVision(Effect):
    """Night-vision goggles: green phosphor image, amplified noise, scanlines and a binocular mask."""

    family = "night_vision"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"binocular": True, "noise": 0.08}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        lum = power(np.clip(luminance(to_float(frame)) * 1.5, 0, 1), 0.8)
        lum = lum + self.rng.normal(0, self.params["noise"], lum.shape).astype(np.float32)
        lum *= 0.85 + 0.15 * (np.arange(h) % 2 == 0)[:, None]
        green = gradient_map(
            np.clip(lum, 0, 1), [(0, 10, 0), (20, 110, 20), (120, 255, 110), (230, 255, 220)]
        )
        if self.params["binocular"]:
            r = 0.36 * w if w < 1.6 * h else 0.62 * h
            left = radial(frame.shape, (w / 2 - 0.55 * r, h / 2), r, r)
            right = radial(frame.shape, (w / 2 + 0.55 * r, h / 2), r, r)
            inside = np.clip((1.0 - np.minimum(left, right)) / 0.06, 0, 1)
        else:
            inside = np.clip((1.25 - radial(frame.shape, (w / 2, h / 2), w / 2, h / 2)) / 0.4, 0, 1)
        return to_uint8(weigh(green, inside))


@register
class XRay(Effect):
    """X-ray scan: the person turns into a glowing inverted negative in blue, the background goes dark."""

    family = "xray"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"color": (120, 200, 255)}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = parts.person.astype(np.float32, copy=False)
        if not has_region(mask):
            return frame.copy()
        u = unit(frame)
        image = to_float(frame)
        negative = 1.0 - contrast(luminance(image), 1.3)
        person = colorize(negative, self.params["color"]) * 1.1 + colorize(negative**3, (255, 255, 255), 0.4)
        background = gray3(image) * 0.12
        out = blend(background, np.clip(person, 0, 1), feather(mask, u))
        return to_uint8(
            add_light(out, colorize(blur(edge_band(mask, 2 * u), 3 * u), self.params["color"], 1.5))
        )
