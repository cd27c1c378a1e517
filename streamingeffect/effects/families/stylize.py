"""Stylisation of the person (or the face / whole scene): cartoon, pixelate, sketch, pop art, halftone,
metal statue."""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from streamingeffect.effects.base import Effect, register
from streamingeffect.effects.draw import (
    blend,
    blur,
    colorize,
    contrast,
    dilate,
    expand,
    gradient_map,
    grid,
    hsv_to_rgb,
    luminance,
    mask_bbox,
    power,
    rgb,
    rgb_to_hsv,
    saturate,
    solid,
    to_float,
    to_uint8,
    unit,
    weigh,
)
from streamingeffect.effects.families.common import RegionFilter, has_region, region_mask
from streamingeffect.parsing.types import FrameParts


def crop_box(mask: np.ndarray, pad: int) -> tuple[int, int, int, int] | None:
    """Bounding box of the mask grown by ``pad`` pixels and clipped to the frame."""
    box = mask_bbox(mask, 0.05)
    if box is None:
        return None
    h, w = mask.shape
    return max(0, box[0] - pad), max(0, box[1] - pad), min(w, box[2] + pad), min(h, box[3] + pad)


class CroppedFilter(RegionFilter):
    """A RegionFilter that only computes its (costly) stylisation inside the target's bounding box."""

    def stylize(self, image: np.ndarray, parts: FrameParts) -> np.ndarray:
        box = crop_box(self.target_mask(parts), round(6 * unit(image)))
        if box is None:
            return image
        x0, y0, x1, y1 = box
        out = image.copy()
        out[y0:y1, x0:x1] = self.stylize_crop(image[y0:y1, x0:x1])
        return out

    def stylize_crop(self, crop: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register
class Cartoon(CroppedFilter):
    """Toon shading: flattened colour areas, fewer tones and bold dark ink lines."""

    family = "cartoon"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"levels": 5, "line": 1.0, "saturation": 1.25, "target": "person"}

    def stylize_crop(self, crop: np.ndarray) -> np.ndarray:
        h, w = crop.shape[:2]
        u = min(h, w) / 256.0
        img8 = to_uint8(crop)
        small = cv2.resize(img8, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
        for _ in range(2):
            small = cv2.bilateralFilter(small, 5, 40, 5)
        flat = to_float(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
        levels = self.params["levels"]
        hsv = rgb_to_hsv(flat)
        hsv[..., 2] = np.minimum(np.ceil(hsv[..., 2] * levels) / levels, 1.0)  # banded, slightly lifted
        hsv[..., 1] = np.clip(hsv[..., 1] * self.params["saturation"], 0, 1)
        toon = hsv_to_rgb(hsv)
        gray = cv2.medianBlur(cv2.cvtColor(img8, cv2.COLOR_RGB2GRAY), 5)
        block = max(3, int(9 * max(u, 0.5)) | 1)
        lines = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, 5)
        ink = 1.0 - lines.astype(np.float32) / 255.0
        if self.params["line"] > 1.0:
            ink = dilate(ink, self.params["line"] - 1.0)
        return weigh(toon, 1.0 - 0.9 * ink)


@register
class Pixelate(Effect):
    """Big mosaic blocks over the target (the whole person or just the face), with a blocky edge."""

    family = "pixelate"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"block": 10.0, "target": "person"}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = region_mask(parts, self.params["target"])
        if self.params["target"] == "face":
            mask = np.maximum(mask, dilate(mask, 3 * unit(frame)))
        if not has_region(mask):
            return frame.copy()
        h, w = frame.shape[:2]
        block = max(2, round(self.params["block"] * unit(frame)))
        sw, sh = max(1, w // block), max(1, h // block)
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA)
        blocks = cv2.resize(small, (sw * block, sh * block), interpolation=cv2.INTER_NEAREST)
        coarse = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA) > 0.35
        coarse = cv2.resize(
            coarse.astype(np.uint8), (sw * block, sh * block), interpolation=cv2.INTER_NEAREST
        )
        out = frame.copy()
        ch, cw = min(h, sh * block), min(w, sw * block)
        sel = coarse[:ch, :cw].astype(bool)
        out[:ch, :cw][sel] = blocks[:ch, :cw][sel]
        return out


@register
class Sketch(CroppedFilter):
    """Pencil sketch on paper (graphite, coloured pencil or heavy charcoal)."""

    family = "sketch"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"style": "pencil", "target": "person"}

    def stylize_crop(self, crop: np.ndarray) -> np.ndarray:
        u = min(crop.shape[:2]) / 256.0
        style = self.params["style"]
        gray = luminance(crop)
        soft = blur(1.0 - gray, 5.0 * max(u, 0.4))
        dodge = np.clip(gray / np.maximum(1.0 - soft, 1e-3), 0, 1)  # colour dodge: only the edges stay dark
        dodge = power(dodge, 3.0 if style == "charcoal" else 1.6)
        sketch = colorize(dodge, (250, 246, 236))
        if style == "color_pencil":
            return np.clip(sketch * (0.55 + 0.7 * saturate(crop, 1.4)), 0, 1)
        return sketch


POP_PALETTES = {
    "warhol": ((30, 20, 60), (230, 30, 120), (255, 210, 0), (255, 250, 235)),
    "cyan": ((10, 30, 80), (0, 160, 220), (120, 240, 255), (255, 255, 255)),
    "sunset": ((60, 10, 40), (240, 60, 50), (255, 170, 40), (255, 240, 190)),
    "mint": ((20, 50, 40), (40, 180, 130), (200, 255, 120), (250, 255, 240)),
}
POP_BACKGROUNDS = {
    "warhol": (0, 190, 255),
    "cyan": (255, 60, 140),
    "sunset": (40, 40, 160),
    "mint": (255, 90, 90),
}


@register
class PopArt(RegionFilter):
    """Warhol-style pop art: the person in four flat poster colours on a bold plain background."""

    family = "pop_art"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"palette": "warhol"}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["palette"] not in POP_PALETTES:
            raise ValueError(f"pop_art: unknown palette {self.params['palette']!r}")

    def target_mask(self, parts: FrameParts) -> np.ndarray:
        return (
            np.ones(parts.size, np.float32) if has_region(parts.person) else np.zeros(parts.size, np.float32)
        )

    def stylize(self, image: np.ndarray, parts: FrameParts) -> np.ndarray:
        lum = contrast(luminance(blur(image, 0.8 * unit(image))), 1.3)
        levels = np.clip(np.floor(lum * 4), 0, 3) / 3.0  # four flat tones
        colors = POP_PALETTES[self.params["palette"]]
        person = gradient_map(levels, colors)
        return blend(solid(image.shape, POP_BACKGROUNDS[self.params["palette"]]), person, parts.person)


@register
class Halftone(RegionFilter):
    """Comic halftone print: the picture rebuilt from ink dots on a rotated grid."""

    family = "halftone"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "cell": 6.0,
        "ink": (20, 20, 30),
        "paper": (250, 245, 230),
        "color": False,
        "target": "person",
    }

    def stylize(self, image: np.ndarray, parts: FrameParts) -> np.ndarray:
        cell = max(3.0, self.params["cell"] * unit(image))
        xs, ys = grid(image.shape)
        c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
        gu, gv = (xs * c + ys * s) / cell, (-xs * s + ys * c) / cell
        du, dv = gu - np.floor(gu) - 0.5, gv - np.floor(gv) - 0.5
        dist = np.sqrt(du**2 + dv**2) * cell
        tone = blur(image, 0.45 * cell)  # about the cell's average colour
        darkness = 1.0 - contrast(luminance(tone), 1.5)
        radius = 0.68 * cell * power(np.clip(darkness, 0, 1), 0.75)
        dots = np.clip(radius - dist + 0.5, 0, 1)
        ink = saturate(tone, 1.6) * 0.8 if self.params["color"] else rgb(self.params["ink"])
        return blend(solid(image.shape, self.params["paper"]), ink, dots)


STATUE_MATERIALS = {
    "gold": ((50, 30, 0), (170, 110, 10), (245, 195, 60), (255, 245, 190)),
    "silver": ((25, 28, 35), (110, 115, 130), (200, 205, 215), (255, 255, 255)),
    "bronze": ((40, 20, 5), (140, 80, 35), (210, 140, 80), (250, 215, 170)),
    "marble": ((90, 90, 95), (175, 175, 180), (228, 226, 222), (255, 255, 252)),
    "jade": ((5, 40, 25), (30, 120, 80), (110, 200, 150), (220, 255, 235)),
}


@register
class Statue(CroppedFilter):
    """The person turned into a polished statue of gold, silver, bronze, marble or jade."""

    family = "statue"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"material": "gold", "target": "person"}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["material"] not in STATUE_MATERIALS:
            raise ValueError(f"statue: unknown material {self.params['material']!r}")

    def stylize_crop(self, crop: np.ndarray) -> np.ndarray:
        u = min(crop.shape[:2]) / 256.0
        lum = luminance(blur(crop, 0.7 * max(u, 0.4)))
        detail = lum - blur(lum, 6 * max(u, 0.4))  # local contrast reads as polished relief
        lum = contrast(np.clip(lum + 1.5 * detail, 0, 1), 1.6)
        metal = gradient_map(lum, STATUE_MATERIALS[self.params["material"]])
        shine = np.clip((lum - 0.65) / 0.35, 0, 1) ** 2  # specular glints on the highlights
        return np.clip(metal + expand(shine * 0.6), 0, 1)
