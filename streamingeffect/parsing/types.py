"""Typed results of human parsing, shared by the mask code, the effect renderer and the data engine.

Coordinates are pixels of the frame they belong to (x to the right, y down). Missing detections are
NaN in the clip-level arrays and ``None`` / empty in the per-frame view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# MediaPipe landmark counts (face mesh with iris refinement, hands, pose).
FACE_POINTS = 478
HAND_POINTS = 21
POSE_POINTS = 33
MAX_HANDS = 2

REGION_NAMES = ("person", "face", "hair", "hands", "torso", "background")


@dataclass
class ClipParse:
    """Parsing of a whole clip at ``height x width`` (the parse resolution), cached per clip.

    person: [F, H, W] uint8, 0..255 soft person probability (raw, before temporal smoothing)
    face:   [F, 478, 3] float32 pixel x, y and relative depth z; NaN where no face
    hands:  [F, 2, 21, 3] float32; slot 0 = the image-left hand, slot 1 = the other; NaN where absent
    pose:   [F, 33, 4] float32 x, y, z, visibility; NaN where no pose
    """

    person: np.ndarray
    face: np.ndarray
    hands: np.ndarray
    pose: np.ndarray
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.person.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the parse resolution."""
        return int(self.person.shape[1]), int(self.person.shape[2])

    def person_coverage(self) -> np.ndarray:
        """[F] share of each frame covered by the person (probability > 0.5)."""
        return (self.person > 127).mean(axis=(1, 2))


@dataclass
class RegionMasks:
    """Soft masks in [0, 1], float32 [H, W], for one frame at render resolution."""

    person: np.ndarray
    face: np.ndarray
    hair: np.ndarray
    hands: np.ndarray
    torso: np.ndarray
    background: np.ndarray

    def get(self, name: str) -> np.ndarray:
        if name not in REGION_NAMES:
            raise KeyError(f"unknown region {name!r}; known: {', '.join(REGION_NAMES)}")
        return getattr(self, name)


@dataclass
class FrameParts:
    """Everything an effect may anchor to on one frame (render resolution, pixel coordinates)."""

    index: int  # frame index inside the clip being rendered, from 0
    time: float  # seconds since the first rendered frame
    regions: RegionMasks
    face: np.ndarray | None = None  # [478, 2] x, y
    hands: list[np.ndarray] = field(default_factory=list)  # each [21, 2] x, y
    pose: np.ndarray | None = None  # [33, 3] x, y, visibility

    @property
    def person(self) -> np.ndarray:
        return self.regions.person

    @property
    def size(self) -> tuple[int, int]:
        return int(self.regions.person.shape[0]), int(self.regions.person.shape[1])
