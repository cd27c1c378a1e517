"""Diversity augmentation of a sample's source frames, applied before the effect is rendered (so the
target is the renderer's answer to the augmented source, never a recoloured copy of another target):

- the segmented person copied onto another background: a scene or texture from the registry's
  background pictures (shipped in installed packages), a plain colour or a colour gradient;
- colour and lighting jitter: brightness, contrast, saturation, a small hue turn, white balance,
  gamma and a soft directional light, the same on every frame of the sample.

Scale and position (a person from small in the frame up to filling it) are the camera's business:
see pseudo_video.CameraConfig for photos and build.jittered_crop for clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.io import ImageError, load_image


@dataclass(frozen=True)
class SceneConfig:
    background: float = 0.35  # probability that the person is put on another background
    jitter: float = 0.8  # probability of colour and lighting jitter
    brightness: float = 0.25  # gain in [1 - b, 1 + b]
    contrast: float = 0.25
    saturation: float = 0.4
    hue: float = 8.0  # degrees
    white_balance: float = 0.1  # per-channel gain spread
    gamma: float = 0.25
    light: float = 0.3  # strength of a soft light gradient across the frame


DEFAULT_SCENE = SceneConfig()


@dataclass
class SceneChoice:
    """What was drawn for one sample, so its far reference gets the very same treatment."""

    background: np.ndarray | None  # [S, S, 3] uint8 or None (keep the real background)
    background_name: str
    gains: np.ndarray  # [3] white balance x brightness
    contrast: float
    saturation: float
    hue: float
    gamma: float
    light: np.ndarray  # [S, S] multiplicative light field

    def describe(self) -> dict[str, object]:
        return {
            "background": self.background_name,
            "gains": [round(float(g), 3) for g in self.gains],
            "contrast": round(self.contrast, 3),
            "saturation": round(self.saturation, 3),
            "hue": round(self.hue, 2),
            "gamma": round(self.gamma, 3),
        }


@lru_cache(maxsize=64)
def _picture(path: str) -> np.ndarray | None:
    try:
        return load_image(Path(path))
    except ImageError:
        return None


def _random_background(
    size: int, backgrounds: tuple[tuple[str, str], ...], rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """A scene crop (two draws in three, when pictures are available), a plain colour or a gradient."""
    kind = rng.random()
    if backgrounds and kind < 0.66:
        name, path = backgrounds[int(rng.integers(len(backgrounds)))]
        picture = _picture(path)
        if picture is not None:
            height, width = picture.shape[:2]
            side = int(min(height, width) * rng.uniform(0.5, 1.0))
            y0, x0 = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
            crop = picture[y0 : y0 + side, x0 : x0 + side]
            return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), name
    colour_a, colour_b = rng.integers(0, 256, (2, 3))
    if kind < 0.83:
        return np.broadcast_to(colour_a.astype(np.uint8), (size, size, 3)).copy(), "plain colour"
    ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    gradient = colour_a * (1 - ramp) + colour_b * ramp
    return np.broadcast_to(gradient, (size, size, 3)).astype(np.uint8).copy(), "gradient"


def draw_scene(
    size: int, config: SceneConfig, backgrounds: tuple[tuple[str, str], ...], rng: np.random.Generator
) -> SceneChoice:
    """Draw one sample's treatment; ``backgrounds`` are (name, path) of background pictures."""
    background, name = (None, "original")
    if rng.random() < config.background:
        background, name = _random_background(size, backgrounds, rng)
    jitter = rng.random() < config.jitter
    if not jitter:
        return SceneChoice(
            background, name, np.ones(3), 1.0, 1.0, 0.0, 1.0, np.ones((size, size), np.float32)
        )

    def spread(amount: float) -> float:
        return float(rng.uniform(1 - amount, 1 + amount))

    gains = spread(config.brightness) * rng.uniform(1 - config.white_balance, 1 + config.white_balance, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    x, y = np.meshgrid(ramp, ramp)
    light = 1 + config.light * rng.uniform(0, 1) * (np.cos(angle) * x + np.sin(angle) * y)
    return SceneChoice(
        background,
        name,
        gains,
        spread(config.contrast),
        spread(config.saturation),
        float(rng.uniform(-config.hue, config.hue)),
        spread(config.gamma),
        light.astype(np.float32),
    )


def apply_scene(frames: np.ndarray, person: np.ndarray, choice: SceneChoice) -> np.ndarray:
    """frames [F, S, S, 3] uint8, person [F, S, S] soft mask in [0, 1] -> augmented frames [F, S, S, 3]."""
    out = frames.astype(np.float32)
    if choice.background is not None:
        alpha = person[..., None].astype(np.float32)
        out = out * alpha + choice.background.astype(np.float32)[None] * (1 - alpha)
    out /= 255.0
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * choice.contrast + mean
    out = out * choice.gains * choice.light[None, :, :, None]
    gray = out.mean(axis=-1, keepdims=True)
    out = gray + (out - gray) * choice.saturation
    out = np.clip(out, 0, 1) ** choice.gamma
    result = (out * 255 + 0.5).astype(np.uint8)
    if choice.hue:
        shift = round(choice.hue / 2)  # OpenCV's 8-bit hue runs 0..179
        for k, frame in enumerate(result):
            hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            result[k] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return result
