"""Weather behind the person: rain, snow, lightning storm and drifting fog."""

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
    edge_band,
    feather,
    periodic_noise,
    rgb,
    scale_channels,
    splat1,
    to_float,
    to_uint8,
    unit,
    weigh,
)
from streamingeffect.effects.families.particles import area_factor
from streamingeffect.parsing.types import FrameParts


def behind_person(parts: FrameParts, u: float) -> np.ndarray:
    """[H, W] 1 on the background, 0 on the person (feathered)."""
    return 1.0 - feather(parts.person.astype(np.float32), 0.8 * u)


@register
class Rain(Effect):
    """Rain streaking down behind the person, with a darker, cooler, stormy background."""

    family = "rain"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"density": 1.0, "wind": 12.0, "speed": 1.0, "darken": 0.3}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.drops: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        p = self.params
        tilt = np.radians(p["wind"])
        if self.drops is None:
            n = max(10, int(260 * p["density"] * area_factor(frame.shape)))
            pos = np.stack([self.rng.uniform(-0.3 * w, w, n), self.rng.uniform(0, h, n)], axis=1)
            self.drops = (pos, self.rng.uniform(7, 12, n) * u * p["speed"], self.rng.uniform(0.35, 1.0, n))
        pos, speed, bright = self.drops
        pos += np.stack([np.sin(tilt) * speed, np.cos(tilt) * speed], axis=1)
        fallen = pos[:, 1] > h + 5 * u
        pos[fallen, 1] -= h + 20 * u
        pos[fallen, 0] = self.rng.uniform(-0.3 * w, w, int(fallen.sum()))
        # Each drop is a short anti-aliased line along its motion; three brightness groups, one call each.
        length = 16 * u * speed / speed.mean()
        tail = pos - np.stack([np.sin(tilt) * length, np.cos(tilt) * length], axis=1)
        segments = np.round(np.stack([tail, pos], axis=1) * 16).astype(np.int32)
        layer = np.zeros((h, w), np.uint8)
        for lo, hi, level in ((0.0, 0.55, 110), (0.55, 0.8, 170), (0.8, 1.01, 240)):
            group = segments[(bright >= lo) & (bright < hi)]
            if len(group):
                cv2.polylines(layer, list(group), False, level, max(1, round(u)), cv2.LINE_AA, 4)
        light = colorize(layer.astype(np.float32) / 255.0, (210, 220, 240), 0.9)
        behind = behind_person(parts, u)
        image = to_float(frame)
        stormy = scale_channels(weigh(image, 1.0 - p["darken"] * behind), (0.9, 0.95, 1.05))
        return to_uint8(add_light(stormy, weigh(light, behind)))


@register
class Snow(Effect):
    """Snowflakes of several sizes drifting down behind the person, with a cold hazy background."""

    family = "snow"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"density": 1.0, "size": 1.0, "wind": 0.3}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.flakes: tuple[np.ndarray, ...] | None = None

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        p = self.params
        if self.flakes is None:
            n = max(10, int(160 * p["density"] * area_factor(frame.shape)))
            pos = np.stack([self.rng.uniform(0, w, n), self.rng.uniform(0, h, n)], axis=1)
            big = self.rng.random(n) < 0.35
            self.flakes = (pos, self.rng.uniform(0.6, 1.6, n) * u, big, self.rng.uniform(0, 2 * np.pi, n))
        pos, fall, big, phase = self.flakes
        phase += 0.07
        pos[:, 0] += (np.sin(phase) * 0.6 + p["wind"]) * u * (1 + big)
        pos[:, 1] += fall * (1 + 0.6 * big)
        wrapped = pos[:, 1] > h + 4 * u
        pos[wrapped, 1] = -4 * u
        pos[wrapped, 0] = self.rng.uniform(0, w, int(wrapped.sum()))
        pos[:, 0] %= w
        small_dots = splat1(frame.shape, pos[~big], np.ones(int((~big).sum())))
        big_dots = splat1(frame.shape, pos[big], np.ones(int(big.sum())))
        s = p["size"] * u
        flakes = blur(small_dots, 0.7 * s) * 5.0 * s**2 + blur(big_dots, 1.4 * s) * 16.0 * s**2
        behind = behind_person(parts, u)
        image = to_float(frame)
        cold = scale_channels(image, (0.75, 0.81, 0.89), (0.08, 0.08, 0.08))
        cold = blend(image, cold, behind)
        flake_light = np.clip(flakes, 0, 1) * behind
        return to_uint8(blend(cold, np.ones(3, np.float32), flake_light))


FLASH_PATTERN = (1.0, 0.45, 0.9, 0.6, 0.8, 0.4, 0.25, 0.12)  # a strike flickers for a few frames


@register
class Lightning(Effect):
    """A thunderstorm behind the person: dark sky, branching lightning bolts and white flashes."""

    family = "lightning"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"color": (170, 190, 255), "frequency": 1.0, "darken": 0.55}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.bolt: list[np.ndarray] = []
        self.age = 0
        self.next_strike = 0  # strike on the first frame so a single frame shows the effect

    def _new_bolt(self, h: int, w: int) -> list[np.ndarray]:
        """Main bolt plus a couple of branches, by midpoint displacement."""
        start = np.array([self.rng.uniform(0.1, 0.9) * w, -2.0])
        end = np.array([start[0] + self.rng.normal(0, 0.2 * w), self.rng.uniform(0.65, 1.0) * h])
        main = self._jagged(start, end, 5)
        branches = [main]
        for _ in range(int(self.rng.integers(1, 4))):
            k = int(self.rng.integers(len(main) // 5, 3 * len(main) // 4))
            tip = main[k] + np.array([self.rng.normal(0, 0.25 * w), self.rng.uniform(0.1, 0.3) * h])
            branches.append(self._jagged(main[k], tip, 4))
        return branches

    def _jagged(self, a: np.ndarray, b: np.ndarray, depth: int) -> np.ndarray:
        pts = np.array([a, b], np.float64)
        for level in range(depth):
            mids = (pts[:-1] + pts[1:]) / 2
            seg = pts[1:] - pts[:-1]
            normal = np.stack([-seg[:, 1], seg[:, 0]], axis=1)
            mids += normal * self.rng.normal(0, 0.22 / (1 + 0.3 * level), (len(mids), 1))
            merged = np.empty((len(pts) + len(mids), 2))
            merged[0::2], merged[1::2] = pts, mids
            pts = merged
        return pts

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        p = self.params
        if parts.index >= self.next_strike and not self.bolt:
            self.bolt, self.age = self._new_bolt(h, w), 0
            self.next_strike = parts.index + int(self.rng.integers(9, 18) / max(p["frequency"], 0.1))
        behind = behind_person(parts, u)
        image = to_float(frame)
        storm = scale_channels(weigh(image, 1.0 - p["darken"] * behind), (0.8, 0.85, 1.0))
        if not self.bolt:
            return to_uint8(storm)
        flash = FLASH_PATTERN[min(self.age, len(FLASH_PATTERN) - 1)]
        layer = np.zeros((h, w), np.uint8)
        for i, line in enumerate(self.bolt):
            thick = max(1, round((2.2 if i == 0 else 1.2) * u))
            cv2.polylines(layer, [np.round(line * 16).astype(np.int32)], False, 255, thick, cv2.LINE_AA, 4)
        core = layer.astype(np.float32) / 255.0
        light = colorize(core, (255, 255, 255)) + colorize(blur(core, 3 * u), p["color"], 3.0)
        light += colorize(blur(core, 14 * u), p["color"], 6.0)
        sky = colorize(np.ones((h, w), np.float32), p["color"], 0.35 * flash)  # the whole sky lights up
        out = add_light(storm, weigh(light * flash + sky, behind))
        rim = colorize(blur(edge_band(parts.person.astype(np.float32), 2 * u), 2 * u), p["color"], flash)
        out = add_light(out, rim)
        self.age += 1
        if self.age >= len(FLASH_PATTERN):
            self.bolt = []
        return to_uint8(out)


@register
class Fog(Effect):
    """Thick fog drifting sideways behind the person (white mist, green toxic haze, purple smoke...)."""

    family = "fog"
    region = "background"
    defaults: ClassVar[dict[str, Any]] = {"color": (190, 196, 212), "density": 1.0, "speed": 1.0}

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.noise: tuple[np.ndarray, np.ndarray] | None = None

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        if self.noise is None or self.noise[0].shape != (h, w):
            self.noise = (periodic_noise(self.rng, (h, w), 22 * u), periodic_noise(self.rng, (h, w), 8 * u))
        step = parts.index * self.params["speed"] * u
        coarse = np.roll(self.noise[0], int(step * 1.0), axis=1)
        fine = np.roll(self.noise[1], -int(step * 1.7), axis=1)
        rows = np.linspace(0.7, 1.1, h, dtype=np.float32)[:, None]  # denser lower down
        fog = np.clip((0.65 * coarse + 0.35 * fine) * 1.6 - 0.35, 0, 1) * rows * self.params["density"]
        behind = behind_person(parts, u)
        alpha = np.clip(fog * (behind + 0.15 * (1 - behind)), 0, 0.95)
        image = to_float(frame)
        return to_uint8(blend(image, rgb(self.params["color"]), alpha))
