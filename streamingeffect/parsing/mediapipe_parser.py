"""Human parsing with MediaPipe 0.10.21 `solutions` (the models ship inside the wheel, no download).

One `HumanParser` runs selfie segmentation, face mesh (with iris refinement), hands and pose
(model_complexity=1) on RGB frames. `parse_clip` parses a whole clip once and caches the result
next to the build, keyed by the file's content fingerprint and the parse settings.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from streamingeffect.parsing.types import FACE_POINTS, HAND_POINTS, MAX_HANDS, POSE_POINTS, ClipParse

PARSE_VERSION = 1  # bump when the parse output changes, so caches are rebuilt
DEFAULT_MAX_SIDE = 512

log = logging.getLogger(__name__)


def _quiet_mediapipe() -> None:
    # MediaPipe's C++ side logs through glog/absl to stderr; keep the CLI readable.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class HumanParser:
    """Per-frame person mask, face mesh, hands and pose. Use as a context manager (frees graphs).

    ``video_mode`` lets MediaPipe track between consecutive frames (faster, steadier); turn it off
    when frames are unrelated.
    """

    def __init__(self, video_mode: bool = True, hands: bool = True, pose: bool = True, face: bool = True):
        _quiet_mediapipe()
        import mediapipe as mp  # imported lazily: it takes a second and most commands never parse

        solutions = mp.solutions
        static = not video_mode
        self._segmenter = solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
        self._face = (
            solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=True)
            if face
            else None
        )
        self._hands = (
            solutions.hands.Hands(static_image_mode=static, max_num_hands=MAX_HANDS, model_complexity=0)
            if hands
            else None
        )
        self._pose = solutions.pose.Pose(static_image_mode=static, model_complexity=1) if pose else None

    def __enter__(self) -> HumanParser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for graph in (self._segmenter, self._face, self._hands, self._pose):
            if graph is not None:
                graph.close()

    def person_mask(self, frame: np.ndarray) -> np.ndarray:
        """frame [H, W, 3] uint8 RGB -> [H, W] uint8 person probability 0..255."""
        result = self._segmenter.process(frame)
        return np.clip(result.segmentation_mask * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def landmarks(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """frame [H, W, 3] -> face [478, 3], hands [2, 21, 3], pose [33, 4] in pixels, NaN where absent."""
        height, width = frame.shape[:2]
        scale = np.array([width, height, width], np.float32)
        face = np.full((FACE_POINTS, 3), np.nan, np.float32)
        hands = np.full((MAX_HANDS, HAND_POINTS, 3), np.nan, np.float32)
        pose = np.full((POSE_POINTS, 4), np.nan, np.float32)
        if self._face is not None:
            found = self._face.process(frame).multi_face_landmarks
            if found:
                face[:] = _points(found[0].landmark) * scale
        if self._hands is not None:
            found = self._hands.process(frame).multi_hand_landmarks or []
            detected = sorted(
                (_points(h.landmark) * scale for h in found), key=lambda p: float(p[:, 0].mean())
            )
            for slot, points in enumerate(detected[:MAX_HANDS]):
                hands[slot] = points
        if self._pose is not None:
            found = self._pose.process(frame).pose_landmarks
            if found:
                raw = np.array([[p.x, p.y, p.z, p.visibility] for p in found.landmark], np.float32)
                pose[:] = raw * np.array([width, height, width, 1.0], np.float32)
        return face, hands, pose


def _points(landmarks: Iterable[Any]) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in landmarks], np.float32)


def parse_size(height: int, width: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(height, width) at which a clip is parsed: the source size, shrunk so its long side <= max_side."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def file_fingerprint(path: Path) -> str:
    """Content fingerprint (size + first and last MiB) so a renamed copy reuses its cache."""
    digest = hashlib.sha1()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def cache_path(cache_dir: Path, video: Path, max_side: int) -> Path:
    key = f"{file_fingerprint(video) if video.is_file() else _folder_key(video)}-s{max_side}-v{PARSE_VERSION}"
    return cache_dir / f"{video.stem}-{key}.npz"


def _folder_key(folder: Path) -> str:
    names = sorted(p.name + str(p.stat().st_size) for p in folder.iterdir() if p.is_file())
    return hashlib.sha1("|".join(names).encode()).hexdigest()[:16]


def parse_clip(
    video: Path,
    cache_dir: Path | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    progress: bool = False,
) -> ClipParse:
    """Parse every frame of ``video`` at parse_size; reuse ``cache_dir``'s copy when present."""
    from streamingeffect.io import probe, read_frames

    cached = cache_path(cache_dir, video, max_side) if cache_dir is not None else None
    if cached is not None and cached.exists():
        try:
            return load_parse(cached)
        except (OSError, ValueError, KeyError) as error:  # a torn cache file from an interrupted run
            log.warning("re-parsing %s: cache %s unreadable (%s)", video, cached, error)
    info = probe(video)
    height, width = parse_size(info.height, info.width, max_side)
    person, faces, hands, poses = [], [], [], []
    frames = read_frames(video, size=(width, height))
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=info.num_frames, desc=f"parse {video.name}", unit="frame", leave=False)
    with HumanParser() as parser:
        for frame in frames:
            person.append(parser.person_mask(frame.image))
            face, hand, pose = parser.landmarks(frame.image)
            faces.append(face)
            hands.append(hand)
            poses.append(pose)
    if not person:
        from streamingeffect.io import VideoError

        raise VideoError(f"{video}: no frames to parse")
    result = ClipParse(np.stack(person), np.stack(faces), np.stack(hands), np.stack(poses), info.fps)
    if cached is not None:
        save_parse(cached, result)
    return result


def save_parse(path: Path, parse: ClipParse) -> None:
    """Atomic write (temp file then rename) so an interrupted build never leaves a torn cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp, person=parse.person, face=parse.face, hands=parse.hands, pose=parse.pose, fps=parse.fps
    )
    tmp.replace(path)


def load_parse(path: Path) -> ClipParse:
    with np.load(path) as data:
        return ClipParse(data["person"], data["face"], data["hands"], data["pose"], float(data["fps"]))
