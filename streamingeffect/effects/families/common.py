"""Base classes shared by several families: face-anchored stickers and effects with a target region."""

from __future__ import annotations

from abc import abstractmethod

import cv2
import numpy as np

from streamingeffect.effects.base import Effect
from streamingeffect.effects.draw import (
    Canvas,
    add_light,
    blend,
    blur,
    colorize,
    feather,
    rgb_to_lab,
    to_float,
    to_uint8,
)
from streamingeffect.effects.landmarks import FaceGeometry, FaceTracker
from streamingeffect.parsing.types import REGION_NAMES, FrameParts


def region_mask(parts: FrameParts, target: str) -> np.ndarray:
    """[H, W] soft mask of a region name, or all ones for "scene"."""
    if target == "scene":
        return np.ones(parts.size, np.float32)
    if target not in REGION_NAMES:
        raise ValueError(f"unknown target region {target!r}")
    return parts.regions.get(target).astype(np.float32, copy=False)


def has_region(mask: np.ndarray, min_pixels: int = 4) -> bool:
    return int(np.count_nonzero(mask > 0.5)) >= min_pixels


def polygon_mask(shape: tuple[int, ...], contours: list[np.ndarray]) -> np.ndarray:
    """[H, W] float mask of filled pixel contours (anti-aliased, even-odd: later contours can cut holes)."""
    mask = np.zeros(shape[:2], np.uint8)
    ok = [np.round(np.asarray(c) * 16).astype(np.int32).reshape(-1, 1, 2) for c in contours if len(c) >= 3]
    if ok:
        cv2.fillPoly(mask, ok, 255, cv2.LINE_AA, 4)
    return mask.astype(np.float32) * np.float32(1.0 / 255.0)


def not_skin(image: np.ndarray, parts: FrameParts) -> np.ndarray | None:
    """[H, W] in [0, 1]: how unlike the face's skin each pixel is (None when no face is visible).

    Region masks from parsing are coarse (a hair mask can include the forehead, a torso mask the neck);
    hair and clothing edits use this to leave skin alone.
    """
    face = parts.regions.face > 0.5
    if int(face.sum()) < 20:
        return None
    lab = rgb_to_lab(image)
    ref = np.median(lab[face], axis=0)
    diff = lab - ref
    dist = np.sqrt(diff[..., 1] ** 2 + diff[..., 2] ** 2 + (0.5 * diff[..., 0]) ** 2)
    return np.clip((dist - 8.0) / 14.0, 0.0, 1.0)


class RegionFilter(Effect):
    """An effect that restyles the frame inside a soft target region (``target`` param) and leaves the rest.

    Subclasses implement ``stylize(image, parts)`` on the float frame; the result is blended through the
    feathered target mask. With an empty region the frame comes back unchanged.
    """

    region = "person"
    feather_px = 1.0

    @abstractmethod
    def stylize(self, image: np.ndarray, parts: FrameParts) -> np.ndarray:
        """float [H, W, 3] -> restyled float [H, W, 3] (only pixels inside the target are used)."""

    def target_mask(self, parts: FrameParts) -> np.ndarray:
        return region_mask(parts, self.params.get("target", self.region))

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        mask = self.target_mask(parts)
        if not has_region(mask):
            return frame.copy()
        image = to_float(frame)
        styled = self.stylize(image, parts)
        alpha = feather(mask, self.feather_px * min(frame.shape[:2]) / 256.0)
        return to_uint8(blend(image, styled, alpha))


class FaceSticker(Effect):
    """An accessory drawn from face landmarks, moving, rotating and scaling with the head, without jitter.

    When the face is missing the frame is returned unchanged. After each ``render``, ``coverage`` [H, W]
    holds the sticker's opacity, so a data builder can add it to the region's edit mask.
    """

    region = "face"

    def __init__(self, params, seed, size):
        super().__init__(params, seed, size)
        self.tracker = FaceTracker()
        self.coverage: np.ndarray | None = None

    @abstractmethod
    def draw(self, canvas: Canvas, face: FaceGeometry, parts: FrameParts) -> None:
        """Draw the sticker onto ``canvas`` (pixel coordinates)."""

    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        face = self.tracker.update(parts.face)
        canvas = Canvas(*frame.shape[:2])
        if face is not None:
            self.draw(canvas, face, parts)
        # Where the sticker landed, for callers that build the edit mask (a hat reaches above the hair).
        self.coverage = canvas.alpha
        return canvas.over_uint8(frame) if face is None else self.composite(frame, canvas, face)

    def composite(self, frame: np.ndarray, canvas: Canvas, face: FaceGeometry) -> np.ndarray:
        """Put the drawn sticker over the frame (override for glows)."""
        return canvas.over_uint8(frame)


def over_with_glow(frame: np.ndarray, canvas: Canvas, color, sigma: float, strength: float) -> np.ndarray:
    """Composite a sticker plus a coloured glow spread around it (halos, glowing horns)."""
    image = to_float(frame)
    light = colorize(blur(canvas.alpha, sigma), color, strength)
    return to_uint8(canvas.over(add_light(image, light)))
