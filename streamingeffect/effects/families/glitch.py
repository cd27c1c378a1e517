"""Digital and analogue glitches: RGB split, block glitch, hologram, echo ghosts, VHS tape."""

from __future__ import annotations

from collections import deque
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
    expand,
    feather,
    hue_rgb,
    luminance,
    rgb,
    scale_channels,
    to_float,
    to_uint8,
    unit,
)
from streamingeffect.effects.families.common import has_region
from streamingeffect.parsing.types import FrameParts


def shift_image(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate by a sub-pixel offset, repeating the border."""
    h, w = image.shape[:2]
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@register
class RgbSplit(Effect):
    """Chromatic split: red and blue channels pulled apart, wobbling and jumping now and then."""

    family = "rgb_split"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"amount": 7.0, "target": "scene", "jitter": 0.3}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        u = unit(frame)
        p = self.params
        wobble = 0.65 + 0.35 * np.sin(parts.time * 7.0)
        jump = self.rng.random() < p["jitter"]
        offset = p["amount"] * u * (wobble + (self.rng.uniform(0.5, 1.5) if jump else 0.0))
        vertical = offset * 0.3 * np.sin(parts.time * 3.0)
        split = frame.copy()
        split[..., 0] = shift_image(frame[..., 0], -offset, -vertical)
        split[..., 2] = shift_image(frame[..., 2], offset, vertical)
        if p["target"] == "scene":
            return split
        mask = parts.regions.get(p["target"]).astype(np.float32)
        if not has_region(mask):
            return frame.copy()
        reach = feather(dilate(mask, offset * 1.2 + 2), u)
        return to_uint8(blend(to_float(frame), to_float(split), reach))


@register
class BlockGlitch(Effect):
    """Datamosh-style glitch: horizontal slices torn sideways, displaced blocks, colour-swapped bands."""

    family = "block_glitch"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"intensity": 1.0}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        rng, k = self.rng, self.params["intensity"]
        out = frame.copy()
        for _ in range(rng.poisson(5 * k) + 1):  # torn horizontal slices
            y = int(rng.integers(0, h))
            band = int(rng.integers(2, max(3, int(22 * u))))
            out[y : y + band] = np.roll(out[y : y + band], int(rng.normal(0, 24 * u * k)), axis=1)
        for _ in range(rng.poisson(3 * k)):  # displaced rectangular blocks
            bw, bh = int(rng.integers(8, 50) * u) + 1, int(rng.integers(4, 24) * u) + 1
            x, y = int(rng.integers(0, max(1, w - bw))), int(rng.integers(0, max(1, h - bh)))
            sx = int(np.clip(x + rng.normal(0, 30 * u), 0, max(0, w - bw)))
            sy = int(np.clip(y + rng.normal(0, 10 * u), 0, max(0, h - bh)))
            out[y : y + bh, x : x + bw] = frame[sy : sy + bh, sx : sx + bw]
        for _ in range(rng.poisson(2 * k)):  # colour-channel swapped / inverted bands
            y = int(rng.integers(0, h))
            band = int(rng.integers(2, max(3, int(14 * u))))
            region = out[y : y + band]
            out[y : y + band] = 255 - region if rng.random() < 0.3 else region[..., rng.permutation(3)]
        shift = int(3 * u * k) + 1
        out[..., 0] = np.roll(out[..., 0], shift, axis=1)
        return out


@register
class Hologram(Effect):
    """The person as a flickering sci-fi hologram: cyan tint, moving scanlines, glitchy lines, glow."""

    family = "hologram"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {"color": (60, 220, 255), "lines": 4.0, "opacity": 0.85}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = parts.person.astype(np.float32, copy=False)
        if not has_region(mask):
            return frame.copy()
        h = frame.shape[0]
        u = unit(frame)
        p = self.params
        image = to_float(frame)
        period = max(2.0, p["lines"] * u)
        rows = np.arange(h, dtype=np.float32)
        scan = 0.55 + 0.45 * np.sin(2 * np.pi * (rows / period - parts.index * 0.15))
        band = ((rows - parts.index * 3 * u) % (h * 0.6)) < 10 * u  # a brighter band rolling down
        lum = luminance(image)
        holo = colorize((0.25 + 0.95 * lum) * (scan + 0.5 * band)[:, None], p["color"])
        offsets = np.where(self.rng.random(h) < 0.04, self.rng.normal(0, 6 * u, h), 0.0).astype(int)
        for y in np.flatnonzero(offsets):  # a few horizontally torn lines
            holo[y] = np.roll(holo[y], offsets[y], axis=0)
        flicker = p["opacity"] * (0.85 + 0.15 * self.rng.random())
        alpha = feather(mask, u) * flicker
        background = image * 0.55
        out = blend(background, np.clip(holo + background * 0.3, 0, 1), alpha)
        rim = colorize(blur(edge_band(mask, 2 * u), 3 * u), p["color"], 1.2)
        return to_uint8(add_light(out, rim))


@register
class EchoTrails(Effect):
    """Ghost copies of the person from previous frames trailing behind them, fading and tinted."""

    family = "echo_trails"
    region = "person"
    defaults: ClassVar[dict[str, Any]] = {
        "count": 4,
        "delay": 3,
        "drift": 7.0,
        "direction": 180.0,
        "rainbow": False,
        "tint": (120, 80, 255),
    }

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.history: deque[tuple[np.ndarray, np.ndarray]] = deque(
            maxlen=int(self.params["count"]) * int(self.params["delay"]) + 1
        )

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = parts.person.astype(np.float32, copy=False)
        image = to_float(frame)
        self.history.append((image, mask))
        u = unit(frame)
        p = self.params
        out = image.copy()
        current = feather(mask, u)
        angle = np.radians(p["direction"])
        count, delay = int(p["count"]), int(p["delay"])
        behind = 1.0 - current
        for k in range(count, 0, -1):  # farthest ghost first
            index = len(self.history) - 1 - k * delay
            past = self.history[max(0, index)]
            # Ghosts also drift sideways, so the echo reads even when the person keeps still.
            dx, dy = np.cos(angle) * p["drift"] * u * k, np.sin(angle) * p["drift"] * u * k
            ghost, ghost_mask = (_shift(a, round(dx), round(dy)) for a in past)
            tint = hue_rgb(parts.time * 60 + k * 70, 0.9) if p["rainbow"] else rgb(p["tint"])
            colored = cv2.transform(ghost, ghost_color_matrix(tint))
            opacity = 0.75 * (1.0 - (k - 1) / count)
            out = blend(out, np.clip(colored, 0, 1), ghost_mask * opacity * behind)
        return to_uint8(out)


def ghost_color_matrix(tint: np.ndarray) -> np.ndarray:
    """3x4 colour matrix: a mostly-grey, half-bright copy of the image plus 0.6 of the tint colour."""
    gray = np.tile(np.array([0.299, 0.587, 0.114], np.float32), (3, 1))
    matrix = np.zeros((3, 4), np.float32)
    matrix[:, :3] = 0.5 * (0.3 * np.eye(3, dtype=np.float32) + 0.7 * gray)
    matrix[:, 3] = np.asarray(tint, np.float32) * 0.6
    return matrix


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by whole pixels, filling the uncovered border with zeros."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@register
class Vhs(Effect):
    """Worn VHS tape: colour bleeding, soft picture, scanlines, noise, a rolling tracking band, PLAY text."""

    family = "vhs"
    region = "scene"
    defaults: ClassVar[dict[str, Any]] = {"noise": 0.035, "bleed": 4.0, "text": True}

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        h, w = frame.shape[:2]
        u = unit(frame)
        p = self.params
        ycc = cv2.cvtColor(frame, cv2.COLOR_RGB2YCrCb).astype(np.float32)
        k = max(1, int(p["bleed"] * u * 2)) | 1
        ycc[..., 0] = cv2.GaussianBlur(ycc[..., 0], (3, 1), 0)
        ycc[..., 1:] = cv2.blur(ycc[..., 1:], (k * 2 + 1, 1))  # chroma smears horizontally
        ycc[..., 1:] = np.roll(ycc[..., 1:], int(p["bleed"] * u), axis=1)
        ycc[..., 1:] = 128 + (ycc[..., 1:] - 128) * 1.2
        image = (
            cv2.cvtColor(np.clip(ycc, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB).astype(np.float32) / 255
        )
        image *= (0.82 + 0.18 * (np.arange(h) % 2 == 0))[:, None, None]
        noise = self.rng.normal(0, p["noise"], (h, w)).astype(np.float32)
        image += expand(cv2.blur(noise, (max(1, int(3 * u)), 1)) * 1.6)  # tape noise streaks sideways
        top = int((parts.index * 4 * u) % (h * 1.3)) - int(0.15 * h)  # tracking band rolling down
        band = slice(max(0, top), max(0, min(h, top + int(14 * u) + 1)))
        if band.stop > band.start:
            rows = image[band]
            image[band] = np.roll(
                rows, int(self.rng.integers(3, 10) * u), axis=1
            ) * 0.7 + 0.3 * self.rng.random((*rows.shape[:2], 1)).astype(np.float32)
        out = to_uint8(np.clip(scale_channels(image, (1.05, 1.0, 0.92)), 0, 1))
        if p["text"]:
            draw_osd(out, "PLAY", u, parts.index)
        return out


def draw_osd(image: np.ndarray, text: str, u: float, index: int) -> None:
    """On-screen display of a camcorder: a play triangle and text in the top-left corner (in place)."""
    scale = 0.55 * u
    x, y = int(10 * u), int(26 * u)
    thickness = max(1, int(2 * u))
    cv2.putText(
        image,
        text,
        (x + int(18 * u), y),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    tri = np.array([[x, y - int(13 * u)], [x, y], [x + int(12 * u), y - int(6.5 * u)]], np.int32)
    cv2.fillPoly(image, [tri], (255, 255, 255), cv2.LINE_AA)
    seconds = index // 25
    stamp = f"0:{seconds // 60:02d}:{seconds % 60:02d}"
    cv2.putText(
        image,
        stamp,
        (x, image.shape[0] - int(12 * u)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
