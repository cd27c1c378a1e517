"""An edit on the face keeps to the face mesh's geometry (`pipeline.face_follow`)."""

from __future__ import annotations

import cv2
import numpy as np

from streamingeffect.parsing.indices import FACE_OVAL, LIPS_INNER
from streamingeffect.pipeline.face_follow import FaceFollower, correct, face_key

SIZE = (120, 160)  # height, width


def _face(
    centre: tuple[float, float] = (80.0, 60.0),
    radius: tuple[float, float] = (30.0, 40.0),
    mouth_open: float = 0.0,
) -> np.ndarray:
    """[478, 2] landmarks: the oval's points on an ellipse, the inner lip line on a small one below
    the centre (``mouth_open``: its half-height, a share of the face's; 0: a closed mouth), the
    others inside the oval."""
    rng = np.random.default_rng(0)
    points = np.zeros((478, 2))
    angle = rng.uniform(0, 2 * np.pi, 478)
    reach = 0.8 * np.sqrt(rng.uniform(0, 1, 478))
    points[:] = np.stack([np.cos(angle), np.sin(angle)], axis=1) * reach[:, None]
    oval = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    points[list(FACE_OVAL)] = np.stack([np.cos(oval), np.sin(oval)], axis=1)
    lips = np.pi - np.linspace(0, 2 * np.pi, len(LIPS_INNER), endpoint=False)  # a ring, as MediaPipe's
    points[list(LIPS_INNER)] = np.stack([0.3 * np.cos(lips), 0.45 + mouth_open * np.sin(lips)], axis=1)
    return points * radius + centre


def _paint(face: np.ndarray, value: float = 150.0) -> np.ndarray:
    """A solid change [H, W, 3] over the face oval."""
    change = np.zeros((*SIZE, 3), np.float32)
    cv2.fillPoly(change, [np.round(face[list(FACE_OVAL)]).astype(np.int32)], (value, -value, value))
    return change


def _carried_still(key_face: np.ndarray, face_now: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keyframe's paint over ``key_face``, and its carry by a still flow onto a frame whose face is
    ``face_now``, corrected by the mesh."""
    change = _paint(key_face)
    key = face_key(key_face, change)
    assert key is not None
    zero = np.zeros((*SIZE, 2), np.float32)
    return change, correct(change.copy(), key, zero, face_now)


def test_with_the_keyframes_own_face_and_no_motion_the_carry_is_unchanged() -> None:
    face = _face()
    change, corrected = _carried_still(face, face)
    assert np.allclose(corrected, change, atol=1e-2)


def test_paint_that_flow_left_past_a_shrunken_face_is_taken_off() -> None:
    """The face got smaller (the person stepped back) while the flow stood still: the flow's carry
    covers the old oval; the mesh keeps the paint on the new one."""
    face_now = _face(radius=(25.0, 33.0))
    change, corrected = _carried_still(_face(), face_now)
    now = np.abs(_paint(face_now)).max(axis=-1) > 0
    before = np.abs(change).max(axis=-1) > 0
    spilled = before & ~cv2.dilate(now.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert spilled.sum() > 500  # the ring the flow's carry got wrong
    assert np.abs(corrected[spilled]).max(axis=-1).mean() < 0.1 * 150
    inner = cv2.erode(now.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.allclose(corrected[inner], change[inner], atol=1.0)  # the face itself keeps its paint


def test_paint_the_flow_lost_on_a_grown_face_is_filled_in() -> None:
    face_now = _face()
    change, corrected = _carried_still(_face(radius=(25.0, 33.0)), face_now)
    now = cv2.erode((np.abs(_paint(face_now)).max(axis=-1) > 0).astype(np.uint8), np.ones((5, 5), np.uint8))
    missing = now.astype(bool) & (np.abs(change).max(axis=-1) == 0)
    assert missing.sum() > 500
    assert np.abs(corrected[missing] - (150.0, -150.0, 150.0)).max() < 15


def _opening(face: np.ndarray) -> np.ndarray:
    """[H, W] bool inside the inner lip line, shrunk by 2 pixels (what the mouth's edge leaves alone)."""
    mask = np.zeros(SIZE, np.uint8)
    cv2.fillPoly(mask, [np.round(face[list(LIPS_INNER)]).astype(np.int32)], 1)
    return cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)


def test_teeth_a_closed_mouth_never_showed_get_no_paint() -> None:
    """The keyframe's paint covers a closed mouth; on a frame whose mouth opened (the flow stood
    still, as it does over the lip line's texture) the paint leaves the opening and stays on the face."""
    face_now = _face(mouth_open=0.15)
    change, corrected = _carried_still(_face(), face_now)
    opening = _opening(face_now)
    assert opening.sum() > 50
    assert np.abs(corrected[opening]).max() < 0.1 * 150
    face = cv2.erode((np.abs(change).max(axis=-1) > 0).astype(np.uint8), np.ones((9, 9), np.uint8))
    rest = face.astype(bool) & ~cv2.dilate(opening.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.allclose(corrected[rest], change[rest], atol=1.0)


def test_paint_inside_an_open_mouth_the_keyframe_showed_stays() -> None:
    """A keyframe painted over an open mouth (teeth included): the same opening keeps its paint."""
    face = _face(mouth_open=0.15)
    change, corrected = _carried_still(face, face)
    opening = _opening(face)
    assert np.allclose(corrected[opening], change[opening], atol=1.0)


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
