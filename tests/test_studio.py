"""The studio's server with the bundled student, over real HTTP and WebSocket on localhost: effect
search, session limit and idle timeout, bad requests, capture + keyframe upload, recording, and a
broken session that does not disturb another one. The browser test is in test_studio_browser.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the studio needs the aiortc package")
pytest.importorskip("fastapi", reason="the studio needs FastAPI")

from studio_helpers import (
    call,
    decode_data_url,
    multipart,
    png_bytes,
    running_studio,
    serving,
)
from websockets.sync.client import connect

from streamingeffect.io import bundled_clips, probe, read_frames
from streamingeffect.io.images import decode_image, encode_image
from streamingeffect.pipeline import ModelBundle
from streamingeffect.studio.server import create_app, find_effects
from streamingeffect.studio.session import StudioConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> ModelBundle:
    return ModelBundle.load("student")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    clip = next(c.path for c in bundled_clips() if c.name == "single_face")
    return [cv2.resize(f.image, (320, 180), interpolation=cv2.INTER_AREA) for f in read_frames(clip, stop=24)]


@pytest.fixture(scope="module")
def studio(model: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The model on every frame: each answer carries the effect (the decoupled default shows it once its
    # first refresh lands: test_the_decoupled_studio_answers_every_frame_and_the_effect_arrives).
    config = StudioConfig(
        max_sessions=2, max_upload_bytes=512 * 1024, reconnect_grace_s=1.0, rate="every-frame"
    )
    config.recordings_dir = tmp_path_factory.mktemp("recordings")
    with running_studio(config, model) as base:
        yield base


def _jpeg(image: np.ndarray) -> bytes:
    return encode_image(image, ".jpg", quality=95)


def _session(base: str, effect: str = "neon_outline_cyan") -> str:
    status, body = call(base, "POST", "/api/sessions", {"effect": effect})
    assert status == 201, body
    return body["session"]


def _stream(socket, frames: list[np.ndarray], count: int) -> list[np.ndarray]:
    """Send frames one at a time, each after the previous answer: ``count`` processed frames."""
    outputs = []
    for i in range(count):
        socket.send(_jpeg(frames[i % len(frames)]))
        message = socket.recv(timeout=60)
        assert isinstance(message, bytes), message
        outputs.append(decode_image(message))
    return outputs


def test_effect_search_finds_by_id_and_by_words() -> None:
    assert find_effects("", 5)[0].id == "neon_outline_cyan"  # featured first
    assert all("neon" in c.id for c in find_effects("neon", 5))
    assert any(c.id.startswith("hand_sparkles") for c in find_effects("sparkles from the hands", 8))
    assert find_effects("zzzz qqqq", 5) == []


def test_session_limit_unknown_session_and_bad_requests(studio: str) -> None:
    first, second = _session(studio), _session(studio)
    try:
        _check_limits_and_bad_requests(studio, first)
    finally:  # a failure here must not leave the module's studio full for the next tests
        deleted = [call(studio, "DELETE", f"/api/sessions/{session}")[0] for session in (first, second)]
    assert deleted == [204, 204]
    assert call(studio, "GET", "/api/info")[1]["sessions"] == 0
    assert call(studio, "GET", f"/api/sessions/{first}/stats")[0] == 404


def _check_limits_and_bad_requests(studio: str, first: str) -> None:
    status, body = call(studio, "POST", "/api/sessions", {})
    assert status == 503 and "full" in body["error"]
    status, body = call(studio, "GET", "/api/sessions/nope/stats")
    assert status == 404 and "reload" in body["error"]

    status, body = call(studio, "POST", f"/api/sessions/{first}/effect", {"effect": "neon_outline_cyann"})
    assert status == 400 and "neon_outline_cyan" in body["error"]  # says what was meant
    status, body = call(studio, "POST", f"/api/sessions/{first}/effect", {"effect": "   "})
    assert status == 400 and "empty prompt" in body["error"]
    status, body = call(
        studio,
        "POST",
        f"/api/sessions/{first}/effect",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and "malformed" in body["error"]
    status, body = call(studio, "POST", f"/api/sessions/{first}/effect", {"effect": "a glowing purple aura"})
    # A prompt close to a catalog description is served as that effect, and says so.
    assert status == 200 and body["effect"] == "prompt: a glowing purple aura (as glow_aura_purple)"
    status, body = call(studio, "POST", f"/api/sessions/{first}/capture")
    assert status == 409 and "no camera frame" in body["error"]
    data, headers = multipart("image", "edit.png", png_bytes(np.zeros((8, 8, 3), np.uint8)), "image/png")
    status, body = call(studio, "POST", f"/api/sessions/{first}/keyframe", data=data, headers=headers)
    assert status == 409 and "capture" in body["error"]
    status, body = call(studio, "POST", f"/api/sessions/{first}/recording", {"action": "pause"})
    assert status == 400
    garbage = {"sdp": "v=0 garbage", "type": "offer"}
    status, body = call(studio, "POST", f"/api/sessions/{first}/offer", garbage)
    assert status == 400 and "WebRTC" in body["error"]
    assert call(studio, "GET", f"/api/sessions/{first}/stats")[1]["transport"] is None  # left as it was


def test_websocket_stream_capture_keyframe_and_recording(studio: str, frames: list[np.ndarray]) -> None:
    session = _session(studio)
    with connect(studio.replace("http", "ws") + f"/api/sessions/{session}/ws") as socket:
        outputs = _stream(socket, frames, 6)
        assert all(o.shape == frames[0].shape for o in outputs)
        assert np.abs(outputs[-1].astype(int) - frames[5]).mean() > 2  # the effect is there

        socket.send(b"not a jpeg")  # a broken frame is reported and skipped; the stream goes on
        error = json.loads(socket.recv(timeout=30))
        assert error["type"] == "error" and "JPEG" in error["error"]
        _stream(socket, frames, 2)

        status, captured = call(studio, "POST", f"/api/sessions/{session}/capture")
        assert status == 200 and (captured["width"], captured["height"]) == (320, 180)
        source, person = decode_data_url(captured["image"]), decode_data_url(captured["mask"])[..., 0]
        assert source.shape == frames[0].shape and 0.05 < (person > 127).mean() < 0.9

        for content, kind, expected in (
            (b"hello, not an image", "text/plain", 415),
            (np.random.default_rng(0).bytes(600 * 1024), "image/png", 413),
        ):
            data, headers = multipart("image", "edit", content, kind)
            status, body = call(
                studio, "POST", f"/api/sessions/{session}/keyframe", data=data, headers=headers
            )
            assert status == expected and body["error"], body

        edited = source.copy()
        edited[person > 127] = (40, 220, 60)  # the person painted green
        data, headers = multipart("image", "edit.png", png_bytes(edited), "image/png")
        status, body = call(studio, "POST", f"/api/sessions/{session}/keyframe", data=data, headers=headers)
        assert status == 200 and body == {"keyframe": True}

        assert call(studio, "POST", f"/api/sessions/{session}/recording", {"action": "start"})[0] == 200
        after = _stream(socket, frames, 6)
        status, stopped = call(studio, "POST", f"/api/sessions/{session}/recording", {"action": "stop"})
        assert status == 200 and stopped["frames"] >= 6

        status, stats = call(studio, "GET", f"/api/sessions/{session}/stats")
        assert stats["keyframe"] and stats["transport"] == "websocket" and stats["frames_out"] >= 14
        assert stats["error"] is None
        inside = person > 127
        green = [o[inside].astype(float) for o in (outputs[-1], after[-1])]
        greenness = [g[:, 1].mean() - (g[:, 0].mean() + g[:, 2].mean()) / 2 for g in green]
        assert greenness[1] > greenness[0] + 5, greenness  # the keyframe's edit took hold

        status, video = call(studio, "GET", stopped["url"])
        assert status == 200 and video[4:8] == b"ftyp"
    deadline = time.monotonic() + 10  # with the socket closed and no new one, the session ends
    while call(studio, "GET", "/api/info")[1]["sessions"]:
        assert time.monotonic() < deadline, "the disconnected session was not closed"
        time.sleep(0.2)
    assert call(studio, "GET", f"/api/sessions/{session}/stats")[0] == 404


def test_the_decoupled_studio_answers_every_frame_and_the_effect_arrives(
    model: ModelBundle, frames: list[np.ndarray], tmp_path: Path
) -> None:
    """The default studio (decoupled rates): frames at a camera's pace are all answered and carry the
    effect (the catalog keyframe at once, then the model's refreshed edits)."""
    with running_studio(StudioConfig(recordings_dir=tmp_path), model) as base:
        session = _session(base)
        with connect(base.replace("http", "ws") + f"/api/sessions/{session}/ws") as socket:
            edited = 0
            for index in range(240):  # up to 8 s of camera frames
                frame = frames[index % len(frames)]
                (out,) = _stream(socket, [frame], 1)
                edited += int(np.abs(out.astype(int) - frame).mean() > 2)  # (JPEG both ways: ~1)
                ask = edited >= 3 and index % 10 == 0  # the effect shows: has a model edit landed too?
                if ask and call(base, "GET", f"/api/sessions/{session}/stats")[1]["refreshes"] >= 1:
                    break
                time.sleep(1 / 30)
            stats = call(base, "GET", f"/api/sessions/{session}/stats")[1]
    assert edited >= 3, "the effect never reached the output"
    assert stats["rate"] == "decoupled" and stats["refreshes"] >= 1 and stats["error"] is None


def test_a_failing_session_does_not_disturb_another(
    model: ModelBundle, frames: list[np.ndarray], tmp_path: Path
) -> None:
    app = create_app(StudioConfig(recordings_dir=tmp_path), model=model)
    with serving(app) as base:
        broken, healthy = _session(base), _session(base)
        with (
            connect(base.replace("http", "ws") + f"/api/sessions/{broken}/ws") as first,
            connect(base.replace("http", "ws") + f"/api/sessions/{healthy}/ws") as second,
        ):
            _stream(first, frames, 2)
            app.state.manager.sessions[broken].submit("not a frame")  # fails inside the worker
            deadline = time.monotonic() + 30
            while call(base, "GET", f"/api/sessions/{broken}/stats")[1]["error"] is None:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert len(_stream(second, frames, 3)) == 3
            assert len(_stream(first, frames, 2)) == 2  # and the broken one recovers on good frames


def test_idle_sessions_are_closed(model: ModelBundle, tmp_path: Path) -> None:
    with running_studio(StudioConfig(idle_timeout_s=1.0, recordings_dir=tmp_path), model) as base:
        session = _session(base)
        deadline = time.monotonic() + 15
        while call(base, "GET", "/api/info")[1]["sessions"]:
            assert time.monotonic() < deadline, "the idle session was not closed"
            time.sleep(0.3)
        assert call(base, "GET", f"/api/sessions/{session}/stats")[0] == 404


def test_recording_is_a_playable_video(studio: str, frames: list[np.ndarray], tmp_path: Path) -> None:
    session = _session(studio)
    with connect(studio.replace("http", "ws") + f"/api/sessions/{session}/ws") as socket:
        call(studio, "POST", f"/api/sessions/{session}/recording", {"action": "start"})
        _stream(socket, frames, 4)
        time.sleep(0.5)
        _, stopped = call(studio, "POST", f"/api/sessions/{session}/recording", {"action": "stop"})
        _, video = call(studio, "GET", stopped["url"])
    path = tmp_path / "recording.mp4"
    path.write_bytes(video)
    info = probe(path)
    assert (info.width, info.height) == (320, 180) and info.num_frames == stopped["frames"]
    assert abs(info.duration - stopped["seconds"]) < 0.2  # plays in real time


def test_serve_refuses_a_missing_model_clearly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from streamingeffect.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing-here"), "--port", "0"]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
