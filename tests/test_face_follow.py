"""An edit on the face keeps to the face mesh's geometry (`pipeline.face_follow`)."""

from __future__ import annotations

import cv2
import numpy as np

from streamingeffect.parsing.indices import FACE_OVAL
from streamingeffect.pipeline.face_follow import FaceFollower, correct, face_key

SIZE = (120, 160)  # height, width


def _face(
    centre: tuple[float, float] = (80.0, 60.0), radius: tuple[float, float] = (30.0, 40.0)
) -> np.ndarray:
    """[478, 2] landmarks: the oval's points on an ellipse, the others inside it."""
    rng = np.random.default_rng(0)
    points = np.zeros((478, 2))
    angle = rng.uniform(0, 2 * np.pi, 478)
    reach = 0.8 * np.sqrt(rng.uniform(0, 1, 478))
    points[:] = np.stack([np.cos(angle), np.sin(angle)], axis=1) * reach[:, None]
    oval = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    points[list(FACE_OVAL)] = np.stack([np.cos(oval), np.sin(oval)], axis=1)
    return points * radius + centre


def _paint(face: np.ndarray, value: float = 150.0) -> np.ndarray:
    """A solid change [H, W, 3] over the face oval."""
    change = np.zeros((*SIZE, 3), np.float32)
    cv2.fillPoly(change, [np.round(face[list(FACE_OVAL)]).astype(np.int32)], (value, -value, value))
    return change


def test_with_the_keyframes_own_face_and_no_motion_the_carry_is_unchanged() -> None:
    face = _face()
    change = _paint(face)
    key = face_key(face, change)
    assert key is not None
    zero = np.zeros((*SIZE, 2), np.float32)
    assert np.allclose(correct(change.copy(), key, zero, face), change, atol=1e-2)


def test_paint_that_flow_left_past_a_shrunken_face_is_taken_off() -> None:
    """The face got smaller (the person stepped back) while the flow stood still: the flow's carry
    covers the old oval; the mesh keeps the paint on the new one."""
    key_face, face_now = _face(), _face(radius=(25.0, 33.0))
    change = _paint(key_face)
    key = face_key(key_face, change)
    assert key is not None
    zero = np.zeros((*SIZE, 2), np.float32)
    corrected = correct(change.copy(), key, zero, face_now)
    now = np.abs(_paint(face_now)).max(axis=-1) > 0
    before = np.abs(change).max(axis=-1) > 0
    spilled = before & ~cv2.dilate(now.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert spilled.sum() > 500  # the ring the flow's carry got wrong
    assert np.abs(corrected[spilled]).max(axis=-1).mean() < 0.1 * 150
    inner = cv2.erode(now.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.allclose(corrected[inner], change[inner], atol=1.0)  # the face itself keeps its paint


def test_paint_the_flow_lost_on_a_grown_face_is_filled_in() -> None:
    key_face, face_now = _face(radius=(25.0, 33.0)), _face()
    change = _paint(key_face)
    key = face_key(key_face, change)
    assert key is not None
    zero = np.zeros((*SIZE, 2), np.float32)
    corrected = correct(change.copy(), key, zero, face_now)
    now = cv2.erode((np.abs(_paint(face_now)).max(axis=-1) > 0).astype(np.uint8), np.ones((5, 5), np.uint8))
    missing = now.astype(bool) & (np.abs(change).max(axis=-1) == 0)
    assert missing.sum() > 500
    assert np.abs(corrected[missing] - (150.0, -150.0, 150.0)).max() < 15


def test_an_edit_off_the_face_or_without_a_face_is_left_to_flow() -> None:
    face = _face()
    ring = np.zeros((*SIZE, 3), np.float32)
    cv2.ellipse(ring, (80, 60), (55, 58), 0, 0, 360, (0, 200, 0), 6)  # an outline around the head
    assert face_key(face, ring) is None
    assert face_key(None, _paint(face)) is None
    assert face_key(face, np.zeros((*SIZE, 3), np.float32)) is None


def test_the_follower_finds_a_keyframes_face_once() -> None:
    calls: list[int] = []

    def detect(frame: np.ndarray) -> np.ndarray:
        calls.append(1)
        return _face()

    follower = FaceFollower(detect)
    source = np.zeros((*SIZE, 3), np.uint8)
    change = _paint(_face())
    assert follower.prepare(source, change) is not None
    assert follower.prepare(source, change) is follower.key(change)
    assert len(calls) == 1
    assert follower.key(change.copy()) is None  # another keyframe was never prepared
