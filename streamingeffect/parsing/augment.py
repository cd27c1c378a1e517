"""VIVID-10M mask augmentation: expand, convex hull, box, hull+expand, box+expand.

Exact entity masks leak the shape of the edit; the augmented ones make the model fill a looser
region. Every augmented mask contains the mask it came from. Masks too small or too large for a
useful edit are filtered out.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

AugmentKind = Literal["none", "expand", "hull", "box", "hull_expand", "box_expand"]
AUGMENT_KINDS: tuple[AugmentKind, ...] = ("none", "expand", "hull", "box", "hull_expand", "box_expand")

MIN_AREA = 0.005  # share of the frame, averaged over frames where the mask is present
MAX_AREA = 0.6


def expand(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate each frame of [F, H, W] bool by a disc of ``radius`` pixels (keeps the shape)."""
    if radius <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in mask]).astype(bool)


def hull(mask: np.ndarray) -> np.ndarray:
    """Per-frame convex hull of all mask pixels."""
    out = np.zeros_like(mask, dtype=bool)
    for i, frame in enumerate(mask):
        points = cv2.findNonZero(frame.astype(np.uint8))
        if points is not None:
            filled = np.zeros(frame.shape, np.uint8)
            cv2.fillConvexPoly(filled, cv2.convexHull(points), 1)
            out[i] = filled.astype(bool) | frame
    return out


def box(mask: np.ndarray) -> np.ndarray:
    """Per-frame axis-aligned bounding box of the mask."""
    out = np.zeros_like(mask, dtype=bool)
    for i, frame in enumerate(mask):
        rows = np.nonzero(frame.any(axis=1))[0]
        cols = np.nonzero(frame.any(axis=0))[0]
        if rows.size:
            out[i, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    return out


def expand_radius(mask: np.ndarray, rng: np.random.Generator) -> int:
    """A random radius of 5-20% of the mask's typical extent (sqrt of its mean area), at least 2 px."""
    area = float(mask.sum(axis=(1, 2)).mean())
    return max(2, round(np.sqrt(area) * rng.uniform(0.05, 0.2)))


def augment(mask: np.ndarray, kind: AugmentKind, rng: np.random.Generator) -> np.ndarray:
    """[F, H, W] bool -> [F, H, W] bool, a superset of ``mask``."""
    mask = mask.astype(bool)
    if kind == "none":
        return mask.copy()
    if kind == "expand":
        return expand(mask, expand_radius(mask, rng))
    if kind == "hull":
        return hull(mask)
    if kind == "box":
        return box(mask)
    if kind == "hull_expand":
        return expand(hull(mask), expand_radius(mask, rng))
    if kind == "box_expand":
        return box(expand(mask, expand_radius(mask, rng)))
    raise ValueError(f"unknown mask augmentation {kind!r}; known: {', '.join(AUGMENT_KINDS)}")


def mean_area(mask: np.ndarray) -> float:
    """Share of the frame the mask covers, averaged over all frames."""
    return float(mask.mean())


def area_ok(mask: np.ndarray, min_area: float = MIN_AREA, max_area: float = MAX_AREA) -> bool:
    return min_area <= mean_area(mask) <= max_area


def random_augmentation(
    mask: np.ndarray, rng: np.random.Generator, min_area: float = MIN_AREA, max_area: float = MAX_AREA
) -> tuple[AugmentKind, np.ndarray] | None:
    """Try the six kinds in random order; return the first whose area passes the filter, else None."""
    for index in rng.permutation(len(AUGMENT_KINDS)):
        kind = AUGMENT_KINDS[int(index)]
        candidate = augment(mask, kind, rng)
        if area_ok(candidate, min_area, max_area):
            return kind, candidate
    return None
