"""Scene and background effects: blur, procedural replacement, desaturation, spotlight, vignette, mirror,
old film and digital rain."""

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
    expand,
    feather,
    gradient_map,
    gray3,
    grid,
    hue_rgb,
    luminance,
    mask_centroid,
    power,
    radial,
    rgb,
    scale_channels,
    solid,
    stripes,
    to_float,
    to_uint8,
    unit,
    weigh,
)
from streamingeffect.effects.landmarks import face_geometry
from streamingeffect.parsing.types import FrameParts


def person_alpha(parts: FrameParts, u: float) -> np.ndarray:
    """[H, W, 1] feathered person matte for putting the person back over a new background."""
    return feather(parts.person.astype(np.float32), 1.0 * u)


@register
class BackgroundBlur(Effect):
    """Portrait mode: the background blurred, the person kept sharp."""

    family = "background_blur"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"sigma": 9.0}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        image = to_float(frame)
        person = feather(parts.person.astype(np.float32), 1.0 * u)
        # Blur a copy where the person is dimmed out, so the person's colours do not halo into the background.
        weight = 1.0 - person
        sigma = self.params["sigma"] * u
        # A small share of the plain blur keeps the division stable where the background is tiny.
        blurred = blur(weigh(image, weight) + image * 0.02, sigma)
        norm = expand(blur(weight, sigma) + 0.02)
        return to_uint8(blend(np.clip(blurred / norm, 0, 1), image, person))


BACKDROP_STYLES = (
    "gradient",
    "sunset",
    "stripes",
    "checker",
    "synthwave",
    "starfield",
    "rays",
    "dots",
    "green_screen",
    "studio",
    "rainbow",
)


@register
class BackgroundReplace(Effect):
    """The background replaced by a procedural backdrop: gradient, sunset, stripes, checkerboard,
    synthwave grid, starfield, sunburst rays, dots, green screen, studio grey or rainbow."""

    family = "background_replace"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {
        "style": "gradient",
        "color": (255, 90, 150),
        "color2": (60, 40, 200),
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        if self.params["style"] not in BACKDROP_STYLES:
            raise ValueError(f"background_replace: unknown style {self.params['style']!r}")
        self.stars: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.static: dict[tuple[int, ...], np.ndarray] = {}  # cached still parts of a backdrop, per size

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        backdrop = self.backdrop(frame.shape, parts.time, parts.index, u)
        return to_uint8(blend(backdrop, to_float(frame), person_alpha(parts, u)))

    def backdrop(self, shape: tuple[int, ...], time: float, index: int, u: float) -> np.ndarray:
        """[H, W, 3] float backdrop for this frame."""
        h, w = shape[:2]
        xs, ys = grid(shape)
        c1 = rgb(self.params["color"])
        style = self.params["style"]
        if style in ("gradient", "sunset", "green_screen", "studio"):  # still backdrops: computed once
            if shape[:2] not in self.static:
                self.static[shape[:2]] = self._still(shape, xs, ys)
            return self.static[shape[:2]]
        if style == "rainbow":
            return hue_rgb(ys / max(h, 1) * 300.0 + time * 40.0, 0.75)
        if style == "stripes":
            return blend(
                solid(shape, self.params["color2"]),
                c1,
                stripes(xs + ys + index * 1.5 * u, 28 * u, 0.5, 1.5 / (28 * u)),
            )
        if style == "checker":
            a = stripes(xs + index * u, 40 * u, 0.5, 0.04) * 2 - 1
            b = stripes(ys, 40 * u, 0.5, 0.04) * 2 - 1
            return blend(solid(shape, self.params["color2"]), c1, np.clip(0.5 - 0.5 * a * b, 0, 1))
        if style == "dots":
            cell = 26 * u
            du = (xs / cell) % 1.0 - 0.5
            dv = ((ys + index * u) / cell) % 1.0 - 0.5
            return blend(
                solid(shape, self.params["color2"]), c1, np.clip((0.3 - np.sqrt(du**2 + dv**2)) * cell, 0, 1)
            )
        if style == "rays":
            angle = cv2.phase(xs - w * 0.5, ys - h * 0.45, angleInDegrees=True) + time * 25.0
            return blend(solid(shape, self.params["color2"]), c1, stripes(angle, 30.0, 0.5, 0.05))
        if style == "starfield":
            return self._starfield(shape, time, u)
        return self._synthwave(shape, index, u)

    def _still(self, shape: tuple[int, ...], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        h, w = shape[:2]
        style = self.params["style"]
        if style == "gradient":
            return gradient_map(
                xs / max(w - 1, 1) * 0.35 + ys / max(h - 1, 1) * 0.65,
                [self.params["color"], self.params["color2"]],
            )
        if style == "sunset":
            sky = gradient_map(
                ys / max(h - 1, 1), [(40, 20, 90), (200, 60, 120), (255, 140, 60), (255, 210, 120)]
            )
            sun = np.clip(
                (1.0 - radial(shape, (w * 0.5, h * 0.75), 0.22 * min(h, w), 0.22 * min(h, w))) * 8, 0, 1
            )
            return blend(sky, rgb((255, 240, 170)), sun)
        if style == "green_screen":
            return solid(shape, (0, 177, 64))
        if style == "studio":
            d = radial(shape, (w * 0.5, h * 0.4), w * 0.8, h * 0.8)
            return colorize(np.clip(0.78 - 0.45 * d, 0.1, 1.0), (235, 235, 240))
        raise ValueError(style)

    def _starfield(self, shape: tuple[int, ...], time: float, u: float) -> np.ndarray:
        h, w = shape[:2]
        if self.stars is None or len(self.stars[0]) == 0:
            n = max(20, int(0.004 * h * w))
            self.stars = (
                np.stack([self.rng.uniform(0, w, n), self.rng.uniform(0, h, n)], 1),
                self.rng.uniform(0.3, 1.0, n),
                self.rng.uniform(0, 2 * np.pi, n),
            )
        pos, bright, phase = self.stars
        sky = gradient_map(grid(shape)[1] / max(h - 1, 1), [(5, 5, 25), (20, 10, 50), (40, 20, 70)])
        level = bright * (0.6 + 0.4 * np.sin(phase + time * 3.0))
        dots = np.zeros((h, w), np.float32)
        xi, yi = np.clip(pos[:, 0].astype(int), 0, w - 1), np.clip(pos[:, 1].astype(int), 0, h - 1)
        dots[yi, xi] = level
        stars = np.maximum(dots, blur(dots, 1.2 * u) * 6)
        return np.clip(sky + colorize(stars, (255, 250, 230)), 0, 1)

    def _synthwave(self, shape: tuple[int, ...], index: int, u: float) -> np.ndarray:
        h, w = shape[:2]
        xs, ys = grid(shape)
        horizon = 0.6 * h
        if shape[:2] not in self.static:  # sky, striped sun and dark floor do not move: build them once
            sky = gradient_map(np.clip(ys / horizon, 0, 1), [(20, 0, 50), (120, 20, 120), (255, 90, 120)])
            sun_r = 0.2 * min(h, w)
            sun = (radial(shape, (w / 2, horizon - 0.3 * sun_r), sun_r, sun_r) < 1) & (ys < horizon)
            cuts = stripes(ys, 0.12 * sun_r, 0.25, 0.2) * (ys > horizon - 0.6 * sun_r)
            sun_color = gradient_map(
                np.clip((ys - horizon + 1.3 * sun_r) / (1.3 * sun_r), 0, 1), [(255, 230, 90), (255, 60, 140)]
            )
            sky = blend(sky, sun_color, (sun & (cuts < 0.5)).astype(np.float32))
            self.static[shape[:2]] = blend(sky, rgb((20, 0, 40)), (ys > horizon).astype(np.float32))
        below = ys > horizon
        depth = np.maximum(ys - horizon, 1.0)
        floor_z = h * 0.5 / depth  # perspective: rows nearer the horizon are farther away
        lines_z = stripes(floor_z + index * 0.05, 1.0, 0.08, 0.5 / np.maximum(floor_z, 1))
        lines_x = stripes((xs - w / 2) / depth * h * 0.3, 0.45 * h * 0.3, 0.08, 0.08)
        grid_lines = np.clip(lines_z + lines_x, 0, 1) * below
        return blend(self.static[shape[:2]], rgb((255, 60, 220)), grid_lines)


@register
class BackgroundDesaturate(Effect):
    """Colour pop: the background goes black-and-white (optionally darker), the person stays in colour."""

    family = "background_desaturate"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"amount": 1.0, "darken": 0.15, "tone": None}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        image = to_float(frame)
        p = self.params
        gray = gray3(image)
        if p["tone"] is not None:
            gray = scale_channels(gray, rgb(p["tone"]) * 1.2)
        background = blend(image, np.clip(gray, 0, 1), p["amount"]) * (1.0 - p["darken"])
        return to_uint8(blend(background, image, person_alpha(parts, u)))


@register
class Spotlight(Effect):
    """A stage spotlight on the person: the scene falls into darkness outside a soft, slowly swaying beam."""

    family = "spotlight"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (255, 240, 200),
        "ambient": 0.18,
        "size": 1.0,
        "beam": True,
    }

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        p = self.params
        face = face_geometry(parts.face)
        if face is not None:
            centre = face.center + face.down * 0.8 * face.scale
        else:
            found = mask_centroid(parts.person)
            centre = found if found is not None else np.array([w / 2, h / 2])
        centre = centre + np.array([np.sin(parts.time * 1.3) * 6 * u, np.cos(parts.time * 0.9) * 3 * u])
        radius = 0.38 * min(h, w) * p["size"]
        d = radial(frame.shape, centre, radius, radius * 1.15)
        spot = power(np.clip((1.15 - d) / 0.35, 0, 1), 1.5)
        if p["beam"]:  # the cone of light coming down from above
            xs, ys = grid(frame.shape)
            half = radius * (0.35 + 0.65 * np.clip(ys / max(centre[1], 1), 0, 1))
            cone = np.clip(1.0 - np.abs(xs - centre[0]) / np.maximum(half, 1), 0, 1) * (ys < centre[1])
            spot = np.maximum(spot, 0.35 * cone)
        light = p["ambient"] + colorize(spot, p["color"], (1.0 - p["ambient"]) * 1.15)
        return to_uint8(np.clip(to_float(frame) * light, 0, 1))


@register
class Vignette(Effect):
    """Heavy vignette: the corners fade to a colour (black, white or tinted)."""

    family = "vignette"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"color": (0, 0, 0), "strength": 0.9, "size": 1.0}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        d = radial(
            frame.shape, (w / 2, h / 2), 0.72 * w * self.params["size"], 0.72 * h * self.params["size"]
        )
        fade = power(np.clip((d - 0.3) / 0.65, 0, 1), 1.2) * self.params["strength"]
        return to_uint8(blend(to_float(frame), rgb(self.params["color"]), fade))


@register
class Mirror(Effect):
    """Mirror world: one half reflected onto the other (left, right, top, bottom) or a 4-way kaleidoscope."""

    family = "mirror"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"mode": "left"}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        mode = self.params["mode"]
        out = frame.copy()
        if mode in ("left", "quad"):
            half = w // 2
            out[:, w - half :] = out[:, :half][:, ::-1]
        elif mode == "right":
            half = w // 2
            out[:, :half] = out[:, w - half :][:, ::-1]
        if mode in ("top", "quad"):
            half = h // 2
            out[h - half :] = out[:half][::-1]
        elif mode == "bottom":
            half = h // 2
            out[:half] = out[h - half :][::-1]
        if mode not in ("left", "right", "top", "bottom", "quad"):
            raise ValueError(f"mirror: unknown mode {mode!r}")
        return out


@register
class FilmGrain(Effect):
    """Old film: sepia or black-and-white, grain, flicker, scratches, dust and a dark vignette."""

    family = "film_grain"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"tone": "sepia", "grain": 0.045, "scratches": True}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.scratches: list[list[float]] = []  # [x, frames left, darkness]

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        p = self.params
        lum = contrast(luminance(to_float(frame)), 1.15)
        lum *= 1.0 + self.rng.normal(0, 0.04)  # exposure flicker
        grain = blur(self.rng.normal(0, p["grain"], (h, w)).astype(np.float32), 0.5 * u)
        lum = np.clip(lum + grain, 0, 1)
        if p["scratches"]:
            if self.rng.random() < 0.3:
                self.scratches.append([float(self.rng.uniform(0, w)), float(self.rng.integers(3, 12)), 0.5])
            for s in self.scratches:
                s[0] += self.rng.normal(0, 0.8 * u)
                x = int(np.clip(s[0], 0, w - 1))
                lum[:, x : x + max(1, int(u))] *= s[2]
                s[1] -= 1
            self.scratches = [s for s in self.scratches if s[1] > 0]
            for _ in range(self.rng.poisson(4)):  # dust specks
                cx, cy = int(self.rng.integers(0, w)), int(self.rng.integers(0, h))
                cv2.circle(lum, (cx, cy), max(1, int(self.rng.uniform(0.5, 2.0) * u)), 0.05, -1)
        fade = np.clip((radial(frame.shape, (w / 2, h / 2), 0.7 * w, 0.7 * h) - 0.5) / 0.5, 0, 1)
        lum *= 1.0 - 0.7 * fade
        if p["tone"] == "sepia":
            return to_uint8(gradient_map(lum, [(25, 15, 5), (140, 100, 60), (245, 225, 185)]))
        if p["tone"] == "bw":
            return to_uint8(expand(lum))
        raise ValueError(f"film_grain: unknown tone {p['tone']!r}")


_GLYPHS = "0123456789ABCDEFZXKMHT$#@&%*+=<>"


@register
class DigitalRain(Effect):
    """Matrix-style digital rain: columns of glowing glyphs falling behind the person."""

    family = "digital_rain"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"color": (60, 255, 100), "cell": 8.0, "dim": 0.88}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.state: dict[str, np.ndarray] | None = None

    def _setup(self, shape: tuple[int, ...], u: float) -> dict[str, np.ndarray]:
        h, w = shape[:2]
        cell = max(4, round(self.params["cell"] * u))
        rows, cols = h // cell + 1, w // cell + 1
        atlas = np.zeros((len(_GLYPHS), cell, cell), np.float32)
        for i, ch in enumerate(_GLYPHS):  # glyphs drawn once, mirrored like the film's
            img = np.zeros((cell * 2, cell * 2), np.uint8)
            cv2.putText(
                img, ch, (cell // 3, int(cell * 1.6)), cv2.FONT_HERSHEY_PLAIN, cell / 9.0, 255, 1, cv2.LINE_AA
            )
            atlas[i] = cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA)[:, ::-1] / 255.0
        return {
            "atlas": atlas,
            "glyphs": self.rng.integers(0, len(_GLYPHS), (rows, cols)),
            "head": self.rng.uniform(0, rows * 1.3, cols),
            "speed": self.rng.uniform(0.3, 0.8, cols),
            "length": self.rng.uniform(8, 24, cols),
        }

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        if self.state is None or self.state["atlas"].shape[1] != max(4, round(self.params["cell"] * u)):
            self.state = self._setup(frame.shape, u)
        st = self.state
        rows, cols = st["glyphs"].shape
        cell = st["atlas"].shape[1]
        st["head"] += st["speed"]
        st["head"][st["head"] - st["length"] > rows] = -self.rng.uniform(0, rows / 2)
        flips = self.rng.random((rows, cols)) < 0.05
        st["glyphs"][flips] = self.rng.integers(0, len(_GLYPHS), int(flips.sum()))
        behind = st["head"][None, :] - np.arange(rows)[:, None]  # rows behind each column's head
        bright = np.where(
            (behind >= 0) & (behind < st["length"][None, :]), 1.0 - behind / st["length"][None, :], 0
        )
        tiles = st["atlas"][st["glyphs"]] * bright[..., None, None]  # [rows, cols, cell, cell]
        field = tiles.transpose(0, 2, 1, 3).reshape(rows * cell, cols * cell)[:h, :w]
        heads = (np.abs(behind) < 0.5).astype(np.float32)
        head_tiles = (st["atlas"][st["glyphs"]] * heads[..., None, None]).transpose(0, 2, 1, 3)
        head_field = head_tiles.reshape(rows * cell, cols * cell)[:h, :w]
        light = colorize(field, self.params["color"]) + expand(head_field * 0.8)
        light = light + blur(light, 2 * u) * 0.8
        image = to_float(frame)
        background = np.clip(image * (1.0 - self.params["dim"]) + light, 0, 1)
        return to_uint8(blend(background, image, person_alpha(parts, u)))
