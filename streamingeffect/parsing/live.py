"""Parsing a live stream one frame at a time (the clip parser sees whole clips; a camera gives one frame).

MediaPipe runs on the frame shrunk to ``parse_side`` (speed); the person probability is smoothed by a
causal EMA across frames (no future frames live), then cleaned as `stabilize_person` cleans a clip.
Both live engines use it: the learned model's stream (the mask it is given) and the procedural
renderer's stream (every region and landmark an effect anchors to).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from streamingeffect.parsing.masks import region_masks, stabilize_person
from streamingeffect.parsing.types import FrameParts, RegionMasks


@dataclass
class LiveParse:
    """One frame's parse at the parse resolution ``person.shape`` (the frame shrunk to parse_side)."""

    person: np.ndarray  # [h, w] float32 0..1, the stable person mask
    frame_size: tuple[int, int]  # (H, W) of the frame itself
    face: np.ndarray | None = None  # [478, 2] x, y in parse pixels; None without landmarks or face
    hands: list[np.ndarray] = field(default_factory=list)  # each [21, 2]
    pose: np.ndarray | None = None  # [33, 3] x, y, visibility

    def regions(self) -> RegionMasks:
        return region_masks(self.person, self.face, self.hands, self.pose)

    def mask(self, region: str) -> np.ndarray:
        """[H, W] float mask of one region at the frame's size ("person" needs no landmarks)."""
        small = self.person if region == "person" else self.regions().get(region)
        height, width = self.frame_size
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)

    def frame_parts(self, index: int, time: float) -> FrameParts:
        """Everything an effect anchors to, at the frame's size (what the renderer draws on)."""
        height, width = self.frame_size
        scale = np.array([width / self.person.shape[1], height / self.person.shape[0]], np.float32)
        person = self.mask("person")
        face = self.face * scale if self.face is not None else None
        hands = [hand * scale for hand in self.hands]
        pose = None
        if self.pose is not None:
            pose = np.concatenate([self.pose[:, :2] * scale, self.pose[:, 2:3]], axis=1)
        regions = region_masks(person, face, hands, pose)
        return FrameParts(index=index, time=time, regions=regions, face=face, hands=hands, pose=pose)


class LiveParser:
    """MediaPipe on live frames with a person mask kept steady across them; ``close`` frees the graphs."""

    def __init__(self, parse_side: int = 256, smoothing: float = 0.6):
        self.parse_side, self.smoothing = parse_side, smoothing
        self._parser: Any = None
        self._landmarks = False
        self._state: np.ndarray | None = None  # the EMA of the person probability

    def parse(self, image: np.ndarray, landmarks: bool) -> LiveParse:
        """image [H, W, 3] uint8 RGB; ``landmarks`` adds face, hands and pose (slower)."""
        from streamingeffect.parsing.mediapipe_parser import HumanParser

        height, width = image.shape[:2]
        scale = min(1.0, self.parse_side / max(height, width))
        small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        if self._parser is None or (landmarks and not self._landmarks):
            if self._parser is not None:
                self._parser.close()
            self._parser = HumanParser(video_mode=True, hands=landmarks, pose=landmarks, face=landmarks)
            self._landmarks = landmarks
        probability = self._parser.person_mask(small).astype(np.float32) / 255
        if self._state is None or self._state.shape != probability.shape:
            self._state = probability
        self._state = self.smoothing * self._state + (1 - self.smoothing) * probability
        parsed = LiveParse(stabilize_person(self._state[None])[0], (height, width))
        if landmarks:
            face, hands, pose = self._parser.landmarks(small)
            parsed.face = face[:, :2] if np.isfinite(face).all() else None
            parsed.hands = [h[:, :2] for h in hands if np.isfinite(h).all()]
            parsed.pose = np.concatenate([pose[:, :2], pose[:, 3:4]], 1) if np.isfinite(pose).all() else None
        return parsed

    def reset(self) -> None:
        """A new stream: forget the mask's history (the graphs stay loaded)."""
        self._state = None

    def close(self) -> None:
        if self._parser is not None:
            self._parser.close()
            self._parser = None
