"""Particle effects: sparkles from the hands, light trails, confetti, leaves, hearts, bokeh, smoke, fireflies.

Particles are spawned from the effect's seeded generator, persist, move and die, so consecutive frames
are coherent. Effects that fill the frame are pre-warmed on the first frame, so frame 0 already shows them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from typing import Any, ClassVar

import cv2
import numpy as np

from streamingeffect.effects.base import Effect, register
from streamingeffect.effects.draw import (
    Canvas,
    add_light,
    blend,
    blur,
    colorize,
    ellipse_pts,
    feather,
    heart_pts,
    hue_rgb,
    mask_bbox,
    mask_centroid,
    periodic_noise,
    rgb,
    scale_channels,
    splat,
    splat1,
    star_kernel,
    to_float,
    to_uint8,
    unit,
    weigh,
)
from streamingeffect.effects.families.outline_glow import rising_heat, scrolled_turbulence
from streamingeffect.effects.landmarks import INDEX_TIP, FaceTracker, emitter_points, hand_points
from streamingeffect.effects.particle_system import Particles
from streamingeffect.parsing.types import FrameParts

PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "party": ((255, 60, 90), (255, 200, 30), (40, 190, 255), (110, 230, 80), (190, 80, 255), (255, 130, 200)),
    "gold": ((255, 215, 0), (235, 175, 40), (255, 240, 150), (205, 160, 50)),
    "silver": ((235, 235, 245), (190, 195, 210), (255, 255, 255), (160, 170, 190)),
    "pastel": ((255, 180, 200), (180, 220, 255), (200, 255, 200), (255, 240, 170), (220, 190, 255)),
    "love": ((255, 40, 80), (255, 90, 150), (230, 20, 60), (255, 150, 190)),
    "pink": ((255, 120, 190), (255, 170, 215), (250, 80, 160)),
    "rainbow": ((255, 50, 50), (255, 160, 0), (255, 235, 0), (60, 210, 60), (40, 140, 255), (160, 70, 255)),
    "sakura": ((255, 190, 210), (255, 170, 200), (250, 215, 225), (240, 150, 185)),
    "autumn": ((230, 90, 20), (200, 50, 20), (245, 160, 30), (170, 80, 30), (240, 200, 60)),
    "warm": ((255, 190, 90), (255, 150, 60), (255, 220, 150), (255, 120, 80)),
    "cool": ((90, 170, 255), (140, 120, 255), (100, 230, 255), (200, 220, 255)),
    "green": ((170, 255, 110), (220, 255, 140), (140, 240, 90)),
}


def palette_colors(name: str) -> np.ndarray:
    if name not in PALETTES:
        raise ValueError(f"unknown palette {name!r}; known: {', '.join(PALETTES)}")
    return np.array(PALETTES[name], np.float32) / 255.0


def area_factor(shape: tuple[int, ...]) -> float:
    """Frame area relative to 256x256, so particle counts follow the frame size."""
    return shape[0] * shape[1] / 65536.0


@register
class HandSparkles(Effect):
    """Twinkling star sparkles spraying from the fingertips (or the shoulders and head when no hand shows)."""

    family = "hand_sparkles"
    region = "hands"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (255, 215, 110),
        "rainbow": False,
        "rate": 5,
        "size": 1.0,
        "gravity": 0.05,
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.particles = Particles(700)

    def _spawn(self, parts: FrameParts, u: float) -> None:
        p = self.params
        emitters = emitter_points(parts)
        if len(emitters) == 0:
            return
        from_hands = len(hand_points(parts)) > 0
        per = p["rate"] if from_hands else 3 * p["rate"]
        n = per * len(emitters)
        jitter = (3.0 if from_hands else 9.0) * u
        pos = np.repeat(emitters, per, axis=0) + self.rng.normal(0, jitter, (n, 2))
        angle = self.rng.uniform(0, 2 * np.pi, n)
        speed = self.rng.uniform(0.4, 2.2, n) * u
        vel = np.stack([np.cos(angle) * speed, np.sin(angle) * speed - 0.7 * u], axis=1)
        if p["rainbow"]:
            color = hue_rgb(self.rng.uniform(0, 360, n), 0.55)
        else:
            color = rgb(p["color"]) * 0.8 + self.rng.uniform(0.0, 0.2, (n, 1))
        self.particles.spawn(
            pos,
            vel,
            life=self.rng.uniform(12, 30, n),
            size=self.rng.uniform(0.5, 1.3, n),
            color=color,
            phase=self.rng.uniform(0, 2 * np.pi, n),
        )

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        self.particles.step(gravity=(0.0, self.params["gravity"] * u), drag=0.04)
        self._spawn(parts, u)
        ps = self.particles
        if len(ps) == 0:
            return frame.copy()
        twinkle = 0.55 + 0.45 * np.sin(ps.phase + ps.age * 0.9)
        dots = splat(frame.shape, ps.pos, ps.color * (ps.fade() * twinkle * ps.size)[:, None])
        stars = cv2.filter2D(dots, -1, star_kernel(round(5 * u * self.params["size"])))
        light = 1.3 * stars + 10.0 * blur(dots, 3.0 * u)
        return to_uint8(add_light(to_float(frame), light))


@register
class LightTrails(Effect):
    """Glowing orbs leaving long light trails: following the index fingertips, else orbiting the head."""

    family = "light_trails"
    region = "hands"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (60, 200, 255),
        "rainbow": False,
        "orbs": 2,
        "length": 18,
        "width": 3.0,
        "orbit": 1.7,
        "speed": 0.16,
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.history: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=int(self.params["length"]))
        self.tracker = FaceTracker()
        self.phase = float(self.rng.uniform(0, 2 * np.pi))

    def _heads(self, parts: FrameParts) -> tuple[np.ndarray, np.ndarray] | None:
        """Current orb positions [N, 2] and depth [N] (negative = behind the person)."""
        tips = hand_points(parts, (INDEX_TIP,))
        if len(tips):
            return tips, np.ones(len(tips))
        face = self.tracker.update(parts.face)
        if face is not None:
            centre, radius = face.center, self.params["orbit"] * face.scale
        else:
            centre = mask_centroid(parts.person)
            if centre is None:
                return None
            radius = 0.25 * min(parts.size)
        n = int(self.params["orbs"])
        theta = self.phase + self.params["speed"] * parts.index + 2 * np.pi * np.arange(n) / n
        tilt = 0.25
        x, y = radius * np.cos(theta), 0.35 * radius * np.sin(theta)
        pos = np.stack([x * np.cos(tilt) - y * np.sin(tilt), x * np.sin(tilt) + y * np.cos(tilt)], axis=1)
        return centre + pos, np.sin(theta)

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        heads = self._heads(parts)
        if heads is not None:
            if self.history and len(self.history[-1][0]) != len(heads[0]):
                self.history.clear()  # anchors changed (a hand appeared): start new trails
            self.history.append(heads)
        elif self.history:
            self.history.popleft()  # no anchor: let the trail run out
        if len(self.history) < 1:
            return frame.copy()
        front = np.zeros((*frame.shape[:2], 3), np.uint8)
        back = np.zeros_like(front)
        n = len(heads[0]) if heads is not None else len(self.history[-1][0])
        colors = self._colors(n, parts.time)
        segments = list(self.history)
        for k in range(len(segments) - 1):
            (a, _), (b, depth) = segments[k], segments[k + 1]
            fade = (k + 1) / len(segments)
            thick = max(1, round(self.params["width"] * u * (0.3 + 0.7 * fade)))
            for i in range(min(n, len(a), len(b))):
                layer = front if depth[i] >= 0 else back
                col = tuple(float(c) for c in colors[i] * 255 * fade)
                cv2.line(layer, _fx(a[i]), _fx(b[i]), col, thick, cv2.LINE_AA, 4)
        pos, depth = segments[-1]
        for i in range(min(n, len(pos))):
            layer = front if depth[i] >= 0 else back
            cv2.circle(
                layer,
                _fx(pos[i]),
                round(self.params["width"] * u * 1.6 * 16),
                (255, 255, 255),
                -1,
                cv2.LINE_AA,
                4,
            )
        core = to_float(front) + weigh(to_float(back), 1.0 - feather(parts.person, u))
        tint = np.max(colors, axis=0)
        light = core + blur(core, 4 * u) * 2.5 + scale_channels(blur(core, 10 * u), tint * 1.5)
        return to_uint8(add_light(to_float(frame), light))

    def _colors(self, n: int, time: float) -> np.ndarray:
        if self.params["rainbow"]:
            return hue_rgb(time * 90.0 + np.arange(n) * 360.0 / max(n, 1), 0.8)
        return np.repeat(rgb(self.params["color"])[None], n, axis=0)


def _fx(point: np.ndarray) -> tuple[int, int]:
    """Pixel point -> cv2 fixed-point (shift=4) integer coordinates."""
    return round(float(point[0]) * 16), round(float(point[1]) * 16)


class FallingShapes(Effect):
    """Shapes that drift down the whole frame with sway and spin (confetti, petals, leaves)."""

    region = "scene"
    fall_speed = (1.2, 2.4)  # px per frame at 256
    sway = 0.6
    per_frame = 3.0  # spawn rate at density 1 on a 256x256 frame

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.particles = Particles(400)
        self.colors = palette_colors(self.params["palette"])
        self.started = False

    def _spawn(self, n: int, shape: tuple[int, ...], u: float, y_range: tuple[float, float]) -> None:
        w = shape[1]
        pos = np.stack([self.rng.uniform(-10 * u, w + 10 * u, n), self.rng.uniform(*y_range, n)], axis=1)
        vel = np.stack([np.zeros(n), self.rng.uniform(*self.fall_speed, n) * u], axis=1)
        color = self.colors[self.rng.integers(0, len(self.colors), n)]
        self.particles.spawn(
            pos,
            vel,
            life=np.full(n, 1e9),
            size=self.rng.uniform(0.7, 1.3, n),
            color=color,
            phase=self.rng.uniform(0, 2 * np.pi, n),
            angle=self.rng.uniform(0, 2 * np.pi, n),
            spin=self.rng.uniform(-0.15, 0.15, n),
        )

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        h, w = frame.shape[:2]
        rate = self.params["density"] * area_factor(frame.shape)
        if not self.started:  # pre-warm: a screen full of shapes at every height
            self.started = True
            self._spawn(int(rate * self.per_frame * h / (1.8 * u)), frame.shape, u, (-10 * u, h))
        ps = self.particles
        ps.vel[:, 0] = self.sway * u * np.sin(ps.phase + ps.age * 0.12)
        ps.step()
        ps.cull_outside(frame.shape, 20 * u)
        self._spawn(int(self.rng.poisson(rate * self.per_frame)), frame.shape, u, (-15 * u, -5 * u))
        canvas = Canvas(h, w)
        flip = ps.phase + ps.age * 0.2
        self.draw_shapes(canvas, ps, flip, ps.size * self.params["size"] * u)
        return canvas.over_uint8(frame)

    @abstractmethod
    def draw_shapes(self, canvas: Canvas, ps: Particles, flip: np.ndarray, size: np.ndarray) -> None:
        """Draw every particle (outlines built for all particles at once)."""


def oriented(pos: np.ndarray, angle: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Per-particle shapes [N, P, 2]: local outlines [N, P, 2] rotated by ``angle`` [N], moved to ``pos``."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y = local[..., 0], local[..., 1]
    return np.stack([pos[:, 0:1] + x * c - y * s, pos[:, 1:2] + x * s + y * c], axis=-1)


@register
class Confetti(FallingShapes):
    """Colourful paper confetti tumbling down over the whole picture."""

    family = "confetti"
    defaults: ClassVar[dict[str, Any]] = {"palette": "party", "density": 1.0, "size": 1.0}

    def draw_shapes(self, canvas: Canvas, ps: Particles, flip: np.ndarray, size: np.ndarray) -> None:
        tumble = np.abs(np.cos(flip))  # the paper turns: its apparent height breathes
        half_w, half_h = 3.2 * size, 2.0 * size * np.maximum(tumble, 0.15)
        corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        local = corners[None] * np.stack([half_w, half_h], axis=1)[:, None, :]
        canvas.fill_many(oriented(ps.pos, ps.angle, local), ps.color * 255 * (0.55 + 0.45 * tumble)[:, None])


@register
class FallingLeaves(FallingShapes):
    """Petals or leaves drifting down with a slow sway (cherry blossom, autumn, golden)."""

    family = "falling_leaves"
    defaults: ClassVar[dict[str, Any]] = {"palette": "sakura", "density": 1.0, "size": 1.0}
    fall_speed = (0.8, 1.6)
    sway = 1.2
    per_frame = 1.6

    def draw_shapes(self, canvas: Canvas, ps: Particles, flip: np.ndarray, size: np.ndarray) -> None:
        tumble = 0.35 + 0.65 * np.abs(np.cos(flip * 0.6))
        t = np.linspace(0, np.pi, 9)
        petal = self.params["palette"] == "sakura"
        width, length = (4.5, 5.0) if petal else (3.5, 7.0)
        half_x = width * size[:, None] * np.sin(t)[None] * tumble[:, None]
        half_y = -length * size[:, None] * np.cos(t)[None]
        half = np.stack([half_x, half_y], axis=-1)  # [N, 9, 2] one side of the outline
        local = np.concatenate([half, half[:, ::-1] * np.array([-1.0, 1.0])], axis=1)
        if petal:
            local[:, 0, 1] += 1.5 * size  # the notch at the petal's tip
        colors = ps.color * 255 * (0.7 + 0.3 * tumble)[:, None]
        canvas.fill_many(oriented(ps.pos, ps.angle, local), colors)
        if not petal and len(ps):  # one midrib per leaf, drawn in a single call
            rib = np.stack([np.zeros((len(ps), 2)), np.zeros((len(ps), 2))], axis=1)
            rib[:, 0, 1], rib[:, 1, 1] = -6 * size, 6 * size
            ribs = np.round(oriented(ps.pos, ps.angle, rib) * 16).astype(np.int32)
            cv2.polylines(canvas.rgba, list(ribs), False, (110, 50, 15, 255), 1, cv2.LINE_AA, 4)


@register
class FloatingHearts(Effect):
    """Glossy hearts floating up around the person, swaying and fading out near the top."""

    family = "floating_hearts"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"palette": "love", "rate": 0.5, "size": 1.0}
    heart = heart_pts(0, 0, 1.0)
    gloss = ellipse_pts(-0.22, -0.12, 0.12, 0.07, 12)

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.particles = Particles(80)
        self.colors = palette_colors(self.params["palette"])
        self.started = False

    def _spawn(self, n: int, u: float, ys: tuple[float, float], xs) -> None:
        if n <= 0:
            return
        pos = np.stack([self.rng.uniform(*xs, n), self.rng.uniform(*ys, n)], axis=1)
        speed = self.rng.uniform(0.8, 1.8, n) * u
        vel = np.stack([np.zeros(n), -speed], axis=1)
        life = (ys[1] + 30 * u) / speed + 10
        self.particles.spawn(
            pos,
            vel,
            life=life,
            size=self.rng.uniform(0.7, 1.4, n),
            color=self.colors[self.rng.integers(0, len(self.colors), n)],
            phase=self.rng.uniform(0, 2 * np.pi, n),
            angle=self.rng.uniform(-0.3, 0.3, n),
        )

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        h, w = frame.shape[:2]
        box = mask_bbox(parts.person)
        xs = (box[0] - 20 * u, box[2] + 20 * u) if box else (0.0, float(w))
        rate = self.params["rate"] * np.sqrt(area_factor(frame.shape))
        if not self.started:
            self.started = True
            self._spawn(int(rate * h / (1.3 * u)), u, (0.0, float(h)), xs)
        ps = self.particles
        ps.vel[:, 0] = 0.5 * u * np.sin(ps.phase + ps.age * 0.1)
        ps.step()
        ps.cull_outside(frame.shape, 30 * u)
        self._spawn(int(self.rng.poisson(rate)), u, (h + 8 * u, h + 12 * u), xs)
        if len(ps) == 0:
            return frame.copy()
        canvas = Canvas(h, w)
        opacity = np.clip(ps.pos[:, 1] / (0.25 * h), 0.0, 1.0)  # fade out near the top
        scale = 14 * u * ps.size * self.params["size"] * np.minimum(1.0, 0.4 + ps.age / 15)
        for template, colors, alpha in (
            (self.heart, ps.color * 255, opacity),
            (self.gloss, np.full((len(ps), 3), 255.0), 0.7 * opacity),
        ):
            local = template[None] * scale[:, None, None]
            canvas.fill_many(oriented(ps.pos, ps.angle, local), colors, alpha)
        return canvas.over_uint8(frame)


@register
class Bokeh(Effect):
    """Out-of-focus city-light discs drifting in a softly blurred background."""

    family = "bokeh"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"palette": "warm", "count": 22, "size": 1.0, "blur": 3.0}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.colors = palette_colors(self.params["palette"])
        self.discs: tuple[np.ndarray, ...] | None = None

    def _init(self, shape: tuple[int, ...], u: float) -> None:
        h, w = shape[:2]
        n = max(4, int(self.params["count"] * area_factor(shape)))
        pos = np.stack([self.rng.uniform(0, w, n), self.rng.uniform(0, h, n)], axis=1)
        vel = self.rng.normal(0, 0.25 * u, (n, 2))
        radius = self.rng.uniform(5, 17, n) * u * self.params["size"]
        color = self.colors[self.rng.integers(0, len(self.colors), n)]
        self.discs = (pos, vel, radius, color, self.rng.uniform(0, 2 * np.pi, n))

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        h, w = frame.shape[:2]
        if self.discs is None:
            self._init(frame.shape, u)
        pos, vel, radius, color, phase = self.discs
        pos += vel
        pos %= (w, h)
        layer = np.zeros((h, w, 3), np.uint8)
        bright = 0.55 + 0.25 * np.sin(phase + parts.time * 2.0)
        for i in np.argsort(radius)[::-1]:
            c = tuple(float(v) for v in color[i] * 255 * bright[i])
            r = round(radius[i] * 16)
            cv2.circle(layer, _fx(pos[i]), r, tuple(v * 0.75 for v in c), -1, cv2.LINE_AA, 4)
            cv2.circle(layer, _fx(pos[i]), r, c, max(1, round(1.2 * u)), cv2.LINE_AA, 4)
        image = to_float(frame)
        background = blur(image, self.params["blur"] * u) * 0.6
        lit = 1.0 - (1.0 - background) * (1.0 - blur(to_float(layer), 0.8 * u))
        return to_uint8(blend(lit, image, feather(parts.person, 1.2 * u)))


@register
class Smoke(Effect):
    """Wisps of smoke curling up from the head and shoulders and thinning out as they climb."""

    family = "smoke"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "color": (140, 140, 150),
        "height": 110.0,
        "density": 1.0,
        "speed": 1.5,
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.noise: tuple[np.ndarray, np.ndarray] | None = None

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = parts.person.astype(np.float32, copy=False)
        if not mask.max() > 0.5:
            return frame.copy()
        u = unit(frame)
        if self.noise is None or self.noise[0].shape != mask.shape:
            self.noise = (
                periodic_noise(self.rng, mask.shape, 4 * u),
                periodic_noise(self.rng, mask.shape, 12 * u),
            )
        p = self.params
        heat = blur(rising_heat(mask, p["height"] * u, u), 3 * u)
        turb = scrolled_turbulence(*self.noise, parts.index * p["speed"] * u)
        alpha = np.clip(heat * (turb * 2.2 - 0.55) * 1.4 * p["density"], 0.0, 0.85) * (1.0 - 0.9 * mask)
        image = to_float(frame)
        smoke = colorize(0.75 + 0.5 * turb, p["color"])  # light and dark wisps
        return to_uint8(blend(image, smoke, alpha))


@register
class Fireflies(Effect):
    """Glowing fireflies wandering and blinking in a dimmed background behind the person."""

    family = "fireflies"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"color": (200, 255, 110), "count": 34, "dim": 0.6}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.state: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        h, w = frame.shape[:2]
        if self.state is None:
            n = max(3, int(self.params["count"] * area_factor(frame.shape)))
            pos = np.stack([self.rng.uniform(0, w, n), self.rng.uniform(0, h, n)], axis=1)
            self.state = (pos, self.rng.normal(0, 0.4 * u, (n, 2)), self.rng.uniform(0, 2 * np.pi, n))
        pos, vel, phase = self.state
        vel += self.rng.normal(0, 0.12 * u, vel.shape)
        vel *= 0.94
        pos += vel
        pos %= (w, h)
        blink = np.clip(np.sin(phase + parts.time * 3.0) * 1.2 + 0.3, 0.05, 1.0)
        dots = splat1(frame.shape, pos, blink)
        light = colorize(blur(dots, 1.5 * u) * 14.0 + blur(dots, 6.0 * u) * 45.0, self.params["color"])
        image = to_float(frame)
        behind = 1.0 - feather(parts.person, u)
        dimmed = scale_channels(weigh(image, 1.0 - self.params["dim"] * behind), (0.85, 0.9, 1.0))
        return to_uint8(add_light(dimmed, weigh(light, behind)))
