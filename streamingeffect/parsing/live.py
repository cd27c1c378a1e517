"""Live human parsing for streams: one frame at a time, causal.

The person probability goes through the same EMA rule as the offline masks (`masks.ema_update`, the
same weight on the newest frame), run forward only because a stream cannot look ahead, then the same
per-frame clean-up. Landmarks (face, hands, pose) are only computed when asked for: a whole-person
effect needs the person mask alone, and that is the cheap part.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamingeffect.io.images import Picture, picture_size, rgb_at
from streamingeffect.parsing.masks import PERSON_EMA_WEIGHT, clean_person, ema_update, region_masks
from streamingeffect.parsing.mediapipe_parser import HumanParser
from streamingeffect.parsing.types import FrameParts


@dataclass(frozen=True)
class LiveParse:
    """One frame's parse at parse resolution (``parts``), and how that maps to the frame."""

    parts: FrameParts  # regions and landmarks at parse resolution, in parse pixels
    frame_size: tuple[int, int]  # (height, width) of the frame itself

    @property
    def person(self) -> np.ndarray:
        return self.parts.regions.person

    def region_at_frame_size(self, name: str) -> np.ndarray:
        """A region mask [H, W] float at the frame's own size (bilinear)."""
        height, width = self.frame_size
        return cv2.resize(self.parts.regions.get(name), (width, height), interpolation=cv2.INTER_LINEAR)

    def face_at_frame_size(self) -> np.ndarray | None:
        """The face mesh [P, 2] in the frame's own pixels, or None (none found, or not looked for)."""
        if self.parts.face is None:
            return None
        height, width = self.frame_size
        parse_h, parse_w = self.parts.size
        return self.parts.face * np.array([width / parse_w, height / parse_h], np.float32)

    def parts_at_frame_size(self) -> FrameParts:
        """The same parse at the frame's own size (what the effect renderer draws on)."""
        height, width = self.frame_size
        parse_h, parse_w = self.parts.size
        scale = np.array([width / parse_w, height / parse_h], np.float32)
        regions = type(self.parts.regions)(
            **{
                name: cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
                for name, mask in vars(self.parts.regions).items()
            }
        )
        pose = self.parts.pose
        if pose is not None:
            pose = np.concatenate([pose[:, :2] * scale, pose[:, 2:]], axis=1)
        return FrameParts(
            index=self.parts.index,
            time=self.parts.time,
            regions=regions,
            face=None if self.parts.face is None else self.parts.face * scale,
            hands=[h * scale for h in self.parts.hands],
            pose=pose,
        )


LANDMARKS_NONE, LANDMARKS_FACE, LANDMARKS_ALL = 0, 1, 2  # what `LiveParser` finds beside the person


class LiveParser:
    """Frames in, `LiveParse` out, with the person mask's temporal state kept between frames."""

    def __init__(self, max_side: int = 256, weight: float = PERSON_EMA_WEIGHT):
        self.max_side, self.weight = max_side, weight
        self._parser: HumanParser | None = None  # made on first use (MediaPipe graphs take a moment)
        self._level = LANDMARKS_NONE
        self._state: np.ndarray | None = None

    def __call__(
        self, image: Picture, landmarks: bool, index: int = 0, time: float = 0.0, face: bool = False
    ) -> LiveParse:
        """image [H, W, 3] uint8 RGB (or its I420 planes) -> its parse; ``landmarks`` also finds face,
        hands and pose, ``face`` the face mesh alone (an edit that follows the face)."""
        height, width = picture_size(image)
        scale = min(1.0, self.max_side / max(height, width))
        small = rgb_at(image, (round(width * scale), round(height * scale)))
        parser = self._graphs(LANDMARKS_ALL if landmarks else LANDMARKS_FACE if face else LANDMARKS_NONE)
        probability = parser.person_mask(small).astype(np.float32) / 255
        if self._state is None or self._state.shape != probability.shape:
            self._state = probability
        self._state = ema_update(self._state, probability, self.weight)
        person = clean_person(self._state)
        face_points = hands = pose = None
        if landmarks or face:
            face_pts, hand_pts, pose_pts = parser.landmarks(small)
            face_points = face_pts[:, :2] if np.isfinite(face_pts).all() else None
            hands = [h[:, :2] for h in hand_pts if np.isfinite(h).all()]
            pose = (
                np.concatenate([pose_pts[:, :2], pose_pts[:, 3:4]], 1)
                if np.isfinite(pose_pts).all()
                else None
            )
        regions = region_masks(person, face_points, hands or [], pose)
        parts = FrameParts(
            index=index, time=time, regions=regions, face=face_points, hands=hands or [], pose=pose
        )
        return LiveParse(parts, (height, width))

    def _graphs(self, level: int) -> HumanParser:
        """MediaPipe's graphs for at least this level of landmarks (made again for a higher one)."""
        if self._parser is None or level > self._level:
            self.close()
            self._parser = HumanParser(
                video_mode=True,
                hands=level >= LANDMARKS_ALL,
                pose=level >= LANDMARKS_ALL,
                face=level >= LANDMARKS_FACE,
            )
            self._level = level
        return self._parser

    def reset(self) -> None:
        """Forget the temporal state (a new stream, or a new frame size)."""
        self._state = None

    def close(self) -> None:
        if self._parser is not None:
            self._parser.close()
            self._parser = None


class FaceFinder:
    """The face mesh of single frames (a keyframe), found at the size `LiveParser` parses at and given
    in the frame's own pixels -> [P, 2] float32, or None without a face."""

    def __init__(self, max_side: int = 256):
        self.max_side = max_side
        self._parser: HumanParser | None = None  # made on first use

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small_w, small_h = round(width * scale), round(height * scale)
        if self._parser is None:
            self._parser = HumanParser(video_mode=False, hands=False, pose=False, face=True)
        face = self._parser.landmarks(rgb_at(image, (small_w, small_h)))[0][:, :2]
        if not np.isfinite(face).all():
            return None
        return face * np.array([width / small_w, height / small_h], np.float32)

    def close(self) -> None:
        if self._parser is not None:
            self._parser.close()
            self._parser = None
