"""Light drawn around the person's silhouette: neon outlines, auras, flames, ink and sticker borders."""

from __future__ import annotations

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
    edge_band,
    erode,
    expand,
    feather,
    gradient_map,
    grid,
    hue_rgb,
    luminance,
    mask_centroid,
    outer_band,
    periodic_noise,
    power,
    rgb,
    saturate,
    screen,
    to_float,
    to_uint8,
    unit,
    weigh,
)
from streamingeffect.effects.families.common import has_region
from streamingeffect.parsing.types import FrameParts

FLAME_PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "fire": ((0, 0, 0), (190, 20, 0), (255, 110, 0), (255, 210, 60), (255, 255, 230)),
    "blue": ((0, 0, 0), (10, 30, 190), (0, 150, 255), (140, 230, 255), (240, 255, 255)),
    "green": ((0, 0, 0), (0, 110, 20), (30, 230, 60), (190, 255, 140), (245, 255, 235)),
    "purple": ((0, 0, 0), (90, 0, 150), (190, 50, 255), (255, 160, 255), (255, 240, 255)),
    "gold": ((0, 0, 0), (120, 70, 0), (230, 160, 20), (255, 230, 120), (255, 255, 240)),
}


def person_mask(parts: FrameParts) -> np.ndarray:
    return parts.person.astype(np.float32, copy=False)


def pulse(time: float, amount: float, hz: float = 1.2) -> float:
    return 1.0 + amount * float(np.sin(2.0 * np.pi * hz * time))


def angle_hue(mask: np.ndarray, time: float, speed: float) -> np.ndarray:
    """[H, W] hue (degrees) that goes round the person's centre and rotates over time (rainbow rims)."""
    centre = mask_centroid(mask)
    xs, ys = grid(mask.shape)
    cx, cy = centre if centre is not None else (mask.shape[1] / 2, mask.shape[0] / 2)
    return cv2.phase(xs - np.float32(cx), ys - np.float32(cy), angleInDegrees=True) + speed * time


def rising_heat(mask: np.ndarray, length: float, u: float) -> np.ndarray:
    """[H, W] heat that rises from the silhouette edge: the edge smeared upwards with an exponential tail."""
    source = np.clip(dilate(mask, 2 * u) - erode(mask, 5 * u), 0.0, 1.0)
    n = max(3, int(length))
    kernel = np.exp(-3.0 * np.arange(n, dtype=np.float32) / n)[:, None] / (4.0 * u)
    # anchor (0, 0): each pixel gathers the heat of the pixels below it, so the heat rises.
    return cv2.filter2D(source, -1, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)


def scrolled_turbulence(fine: np.ndarray, coarse: np.ndarray, step: float) -> np.ndarray:
    """Two tileable noises scrolling upwards at different speeds: flickering flame / smoke texture."""
    return 0.55 * np.roll(fine, -int(step * 1.6), axis=0) + 0.45 * np.roll(coarse, -int(step), axis=0)


@register
class NeonOutline(Effect):
    """A bright neon tube traced along the silhouette with a wide coloured glow; optional rainbow cycling."""

    family = "neon_outline"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (0, 255, 255),
        "width": 3.0,
        "glow": 7.0,
        "intensity": 1.0,
        "rainbow": False,
        "pulse": 0.2,
        "darken": 0.35,
    }

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        image = to_float(frame)
        band = feather(edge_band(mask, p["width"] * u), 0.6 * u)
        halo_band = blur(band, p["glow"] * u)
        if p["rainbow"]:
            color = hue_rgb(angle_hue(mask, parts.time, 180.0))
            halo = weigh(color, halo_band * 2.2)
            core = weigh(color * 0.45 + 0.65, band)
        else:
            halo = colorize(halo_band, p["color"], 2.2)
            core = colorize(band, rgb(p["color"]) * 0.45 * 255 + 0.65 * 255)  # tube centre burns almost white
        strength = p["intensity"] * pulse(parts.time, p["pulse"])
        base = weigh(image, 1.0 - p["darken"] * (1.0 - feather(mask, 2 * u)))
        return to_uint8(add_light(base, (halo + core) * strength))


@register
class GlowAura(Effect):
    """A wide soft aura of coloured light radiating from the body, shimmering slowly."""

    family = "glow_aura"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (255, 200, 80),
        "radius": 16.0,
        "intensity": 1.0,
        "pulse": 0.2,
        "darken": 0.3,
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.noise: np.ndarray | None = None

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        if self.noise is None or self.noise.shape != mask.shape:
            self.noise = periodic_noise(self.rng, mask.shape, 10 * u)
        image = to_float(frame)
        spread = np.clip(blur(dilate(mask, p["radius"] * 0.35 * u), p["radius"] * u) * 1.7, 0.0, 1.0)
        shimmer = 0.65 + 0.7 * np.roll(self.noise, -int(parts.index * 2 * u), axis=0)
        aura = spread * (1.0 - 0.85 * mask) * shimmer + 0.5 * edge_band(mask, 2 * u)
        aura = np.clip(aura * p["intensity"] * pulse(parts.time, p["pulse"], 0.8), 0.0, 1.0)
        base = weigh(image, 1.0 - p["darken"] * (1.0 - mask))
        # Tint towards the colour (visible on white walls) and add light on top (visible on dark ones).
        tinted = blend(base, rgb(p["color"]), aura * 0.75)
        return to_uint8(screen(tinted, colorize(aura, p["color"], 0.6)))


@register
class FireAura(Effect):
    """Flames licking up from the silhouette: the edge smeared upwards, broken up by rising noise."""

    family = "fire_aura"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"palette": "fire", "height": 60.0, "intensity": 1.0, "speed": 3.0}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["palette"] not in FLAME_PALETTES:
            raise ValueError(f"fire_aura: unknown palette {self.params['palette']!r}")
        self.noise: tuple[np.ndarray, np.ndarray] | None = None

    def _noise(self, shape: tuple[int, int], u: float) -> tuple[np.ndarray, np.ndarray]:
        if self.noise is None or self.noise[0].shape != shape:
            self.noise = (periodic_noise(self.rng, shape, 3.5 * u), periodic_noise(self.rng, shape, 9 * u))
        return self.noise

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        fine, coarse = self._noise(mask.shape, u)
        heat = rising_heat(mask, p["height"] * u, u)
        turb = scrolled_turbulence(fine, coarse, parts.index * p["speed"] * u)
        flame = power(np.clip(heat * (turb * 1.9 - 0.45), 0.0, 1.0), 1.15)
        flame *= 1.0 - 0.75 * erode(mask, 4 * u)
        flame = np.clip(flame * p["intensity"], 0.0, 1.0)
        colors = gradient_map(flame, FLAME_PALETTES[p["palette"]][1:])  # red .. white, no black end
        image = weigh(to_float(frame), 1.0 - 0.4 * (1.0 - mask))
        # Opaque-ish flames (readable on bright walls) plus their light spilling around them.
        out = blend(image, colors, np.clip(flame * 1.8, 0.0, 1.0))
        return to_uint8(screen(out, blur(weigh(colors, flame), 3 * u) * 0.8))


@register
class ComicOutline(Effect):
    """Comic-book inking: a thick contour around the person, inked inner edges and punchier colours."""

    family = "comic_outline"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (0, 0, 0),
        "width": 5.0,
        "inner_lines": True,
        "saturation": 1.3,
    }

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        image = to_float(frame)
        styled = blend(image, saturate(image, p["saturation"]), feather(mask, 0.8 * u))
        ink = feather(edge_band(mask, p["width"] * u), 0.5 * u)
        if p["inner_lines"]:
            gray = cv2.GaussianBlur((luminance(image) * 255).astype(np.uint8), (0, 0), 1.0 * u)
            edges = cv2.Canny(gray, 40, 100).astype(np.float32) / 255.0
            edges = dilate(edges, 0.6 * u) * erode(mask, 3 * u)
            ink = np.maximum(ink, feather(edges, 0.5) * 0.9)
        return to_uint8(blend(styled, rgb(p["color"]), ink))


@register
class Cutout(Effect):
    """Sticker cut-out look: a thick border around the person and a drop shadow on the background."""

    family = "cutout"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"color": (255, 255, 255), "width": 7.0, "shadow": 0.6}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        image = to_float(frame)
        border = feather(dilate(mask, p["width"] * u), 0.8 * u)
        offset = np.float32([[1, 0, 6 * u], [0, 1, 6 * u]])
        shadow = cv2.warpAffine(blur(border, 3 * u), offset, (mask.shape[1], mask.shape[0]))
        out = weigh(image, 1.0 - p["shadow"] * shadow * (1.0 - border))
        out = blend(out, rgb(p["color"]), border * (1.0 - mask))
        return to_uint8(out)


@register
class Silhouette(Effect):
    """The person becomes a flat shape (solid colour or a vertical gradient) with a bright rim."""

    family = "silhouette"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (10, 10, 10),
        "color2": None,
        "rim": (255, 255, 255),
        "rim_width": 2.0,
    }

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        image = to_float(frame)
        h = mask.shape[0]
        if p["color2"] is not None:
            rows = np.repeat(np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None], mask.shape[1], axis=1)
            fill = gradient_map(rows, [p["color"], p["color2"]])
        else:
            fill = rgb(p["color"])
        out = blend(image, fill, feather(mask, 0.8 * u))
        rim = edge_band(mask, p["rim_width"] * u)
        return to_uint8(add_light(out, colorize(blur(rim, 1.5 * u) * 1.5, p["rim"])))


@register
class NeonEdges(Effect):
    """Tron look: the picture goes dark and every edge of the person lights up as glowing neon lines."""

    family = "neon_edges"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (255, 40, 200),
        "darken": 0.8,
        "glow": 3.0,
        "target": "person",
    }

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts) if self.params["target"] == "person" else np.ones(parts.size, np.float32)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        image = to_float(frame)
        gray = cv2.GaussianBlur(frame, (0, 0), 0.8 * u)
        edges = cv2.Canny(cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY), 30, 90).astype(np.float32) / 255.0
        edges = np.maximum(edges * dilate(mask, 2 * u), edge_band(mask, 2 * u))
        lines = dilate(edges, 0.4 * u) if u >= 1.5 else edges
        light = colorize(lines, p["color"], 1.0) + colorize(blur(lines, p["glow"] * u), p["color"], 2.5)
        light += expand(lines * 0.5)
        return to_uint8(add_light(image * (1.0 - p["darken"]), light))


@register
class ForceField(Effect):
    """Several concentric coloured rings echoing the silhouette outwards, like a force field."""

    family = "force_field"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"color": (80, 160, 255), "rings": 4, "spacing": 11.0, "speed": 1.0}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = person_mask(parts)
        if not has_region(mask):
            return frame.copy()
        p, u = self.params, unit(frame)
        image = to_float(frame)
        dist = cv2.distanceTransform((mask < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        period = p["spacing"] * u
        phase = (dist / period - parts.index * 0.08 * p["speed"]) % 1.0
        rings = np.clip(1.6 - np.abs(phase - 0.5) * 7.0, 0.0, 1.0)
        reach = np.clip(1.0 - dist / (period * p["rings"]), 0.0, 1.0) * (dist > 0)
        field = np.clip(rings * (0.35 + 0.65 * reach) * (reach > 0) + 0.3 * reach**3, 0.0, 1.0)
        base = weigh(image, 0.75 + 0.25 * mask)
        out = blend(base, rgb(p["color"]), field * 0.8)
        light = colorize(blur(field, 2 * u), p["color"], 0.5) + colorize(
            outer_band(mask, 1.5 * u), (255,) * 3, 0.8
        )
        return to_uint8(add_light(out, light))
