"""The studio attacked as a hostile client would, on a live server in its own process: decompression
bombs on the upload and the WebSocket, huge and chunked bodies, uploads to missing sessions,
cross-site requests, foreign Host names, the access token, and one error shape for every refusal."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the studio needs the aiortc package")
pytest.importorskip("fastapi", reason="the studio needs FastAPI")

from live_studio import LiveStudio, jpeg_bomb, live_studio, png_bomb, raw_request, status_of
from studio_helpers import call, multipart, png_bytes, serving
from websockets.sync.client import ClientConnection, connect

from streamingeffect.io import bundled_clips, read_frames
from streamingeffect.io.images import decode_image, encode_image
from streamingeffect.pipeline import ModelBundle
from streamingeffect.studio.server import create_app, secured, studio_url
from streamingeffect.studio.session import StudioConfig, StudioError, normalize_frame

pytestmark = pytest.mark.slow
MB = 2**20


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStudio]:
    with live_studio(tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    clip = next(c.path for c in bundled_clips() if c.name == "single_face")
    return [cv2.resize(f.image, (320, 180), interpolation=cv2.INTER_AREA) for f in read_frames(clip, stop=8)]


@pytest.fixture(scope="module")
def model() -> ModelBundle:
    return ModelBundle.load("student")


def _session(base: str) -> str:
    status, body = call(base, "POST", "/api/sessions", {})
    assert status == 201, body
    return body["session"]


def _ws(base: str, session: str, **options: object) -> ClientConnection:
    return connect(base.replace("http", "ws") + f"/api/sessions/{session}/ws", **options)  # type: ignore[arg-type]


def _stream(socket: ClientConnection, frames: list[np.ndarray], count: int) -> None:
    for i in range(count):
        socket.send(encode_image(frames[i % len(frames)], ".jpg", quality=90))
        assert isinstance(socket.recv(timeout=60), bytes)


@contextlib.contextmanager
def _opened(base: str) -> Iterator[str]:
    """A session, deleted afterwards whatever happens (the studio holds two)."""
    session = _session(base)
    try:
        yield session
    finally:
        call(base, "DELETE", f"/api/sessions/{session}")


@contextlib.contextmanager
def _captured(studio: LiveStudio, frames: list[np.ndarray]) -> Iterator[str]:
    """A session that has streamed and captured a frame: ready for a keyframe upload."""
    with _opened(studio.base) as session, _ws(studio.base, session) as socket:
        _stream(socket, frames, 2)
        assert call(studio.base, "POST", f"/api/sessions/{session}/capture")[0] == 200
        yield session


# ------------------------------------------------------------------------------------ decompression bombs


def test_bomb_uploads_are_refused_before_decoding(studio: LiveStudio, frames: list[np.ndarray]) -> None:
    with _captured(studio, frames) as session:
        bomb = png_bomb(13000, 13000)
        assert len(bomb) < 1 * MB  # 507 MB of pixels in a file of about half a megabyte
        data, headers = multipart("image", "bomb.png", bomb, "image/png")
        answers: list[tuple[int, object]] = []

        def upload() -> None:
            answers.append(
                call(studio.base, "POST", f"/api/sessions/{session}/keyframe", data=data, headers=headers)
            )

        with studio.peak_growth() as growth:
            uploads = [threading.Thread(target=upload) for _ in range(2)]  # two at once
            for thread in uploads:
                thread.start()
            for thread in uploads:
                thread.join()
        for status, body in answers:
            assert status == 413 and "13000x13000" in body["error"], body  # type: ignore[index]
        print(f"two 13000x13000 PNG uploads at once: peak RSS growth {growth[0] / MB:.1f} MB")
        assert growth[0] < 50 * MB


def test_bomb_frames_on_the_websocket_are_refused(studio: LiveStudio, frames: list[np.ndarray]) -> None:
    with _opened(studio.base) as session, _ws(studio.base, session) as socket:
        _stream(socket, frames, 2)
        bomb = jpeg_bomb(18000, 18000)
        with studio.peak_growth() as growth:
            socket.send(bomb)
            error = json.loads(socket.recv(timeout=30))
        assert error["type"] == "error" and "too many pixels" in error["error"], error
        print(f"an 18000x18000 JPEG frame ({len(bomb)} bytes): peak RSS growth {growth[0] / MB:.1f} MB")
        assert growth[0] < 50 * MB
        _stream(socket, frames, 2)  # the stream goes on


def test_an_oversized_webrtc_frame_is_refused_before_conversion() -> None:
    frame = av.VideoFrame(4000, 3000, "yuv420p")
    with pytest.raises(StudioError, match="4000x3000"):
        normalize_frame(frame, None, max_pixels=1920 * 1080)


# ------------------------------------------------------------------------------------ bodies


def _upload_head(port: int, path: str, length: int | None, boundary: str = "b") -> str:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1:{port}\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\n{size}\n"
    )


IMAGE_PART = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'


def _megabytes(count: int) -> Iterator[bytes]:
    """A well-formed start of an image part, then ``count`` megabytes of its content."""
    yield IMAGE_PART
    block = b"\0" * MB
    for _ in range(count):
        yield block


def test_a_1gb_upload_is_refused_at_once_without_touching_disk(
    studio: LiveStudio, frames: list[np.ndarray]
) -> None:
    with _captured(studio, frames) as session:
        written = studio.written()
        started = time.perf_counter()
        head = _upload_head(studio.port, f"/api/sessions/{session}/keyframe", 1024 * MB)
        answer, sent = raw_request(studio.port, head, _megabytes(1024), timeout=30)
        seconds = time.perf_counter() - started
        grew = studio.written() - written
        print(
            f"1 GB upload: refused after {seconds:.3f} s, {sent / MB:.1f} MB sent, {grew / MB:.2f} MB written"
        )
        assert status_of(answer) == 413 and b"1024.0 MB" in answer, answer[:300]
        assert sent < 64 * MB and grew < 10 * MB  # answered while the body was still coming


def test_an_upload_is_checked_against_its_session_before_its_body_is_read(
    studio: LiveStudio, frames: list[np.ndarray]
) -> None:
    with _opened(studio.base) as fresh:  # exists, but has captured nothing
        for path, expected in (
            ("/api/sessions/nope/keyframe", 404),
            (f"/api/sessions/{fresh}/keyframe", 409),
        ):
            head = _upload_head(studio.port, path, 4 * MB)
            answer, _ = raw_request(studio.port, head, iter([b"--b\r\n"]), timeout=15)  # then silence
            assert status_of(answer) == expected, answer[:300]
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]


def test_chunked_bodies_are_capped_while_they_stream(studio: LiveStudio, frames: list[np.ndarray]) -> None:
    with _captured(studio, frames) as session:
        written = studio.written()

        def chunks() -> Iterator[bytes]:
            for block in _megabytes(64):
                yield f"{len(block):x}\r\n".encode() + block + b"\r\n"

        head = _upload_head(studio.port, f"/api/sessions/{session}/keyframe", None)
        answer, _ = raw_request(studio.port, head, chunks(), timeout=30)
        assert status_of(answer) == 413, answer[:300]
        assert studio.written() - written < 10 * MB
        json_head = (
            f"POST /api/sessions/{session}/effect HTTP/1.1\nHost: 127.0.0.1:{studio.port}\n"
            "Content-Type: application/json\nTransfer-Encoding: chunked\n"
        )
        prompt = json.dumps({"effect": "x" * 200_000}).encode()
        answer, _ = raw_request(
            studio.port, json_head, iter([f"{len(prompt):x}\r\n".encode() + prompt + b"\r\n0\r\n\r\n"])
        )
        assert status_of(answer) == 413, answer[:300]


# ------------------------------------------------------------------------------------ origin, host, token


def test_cross_site_requests_are_refused(studio: LiveStudio, frames: list[np.ndarray]) -> None:
    before = call(studio.base, "GET", "/api/info")[1]["sessions"]
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        status, body = call(studio.base, "POST", "/api/sessions", data=b"", headers=headers)
        assert status == 403 and "site" in body["error"], (headers, body)
    assert call(studio.base, "GET", "/api/info")[1]["sessions"] == before  # nobody was locked out
    own = {"Origin": studio.base}
    status, body = call(studio.base, "POST", "/api/sessions", data=b"", headers=own)
    assert status == 201, body
    session = body["session"]
    with pytest.raises(Exception, match="403"):
        _ws(studio.base, session, origin="http://evil.example", open_timeout=10)
    with _ws(studio.base, session, origin=studio.base) as socket:
        _stream(socket, frames, 1)
    assert call(studio.base, "DELETE", f"/api/sessions/{session}", headers=own)[0] == 204


def test_foreign_host_names_are_refused(studio: LiveStudio) -> None:
    for path in ("/", "/api/info"):
        status, body = call(studio.base, "GET", path, headers={"Host": f"rebound.example:{studio.port}"})
        assert status == 400 and "rebound.example" in body["error"], body
    assert call(studio.base, "GET", "/api/info", headers={"Host": f"localhost:{studio.port}"})[0] == 200


def test_the_access_token_guards_every_api_call_and_the_websocket(model: ModelBundle, tmp_path: Path) -> None:
    config = StudioConfig(recordings_dir=tmp_path, token="s3cret-token")
    with serving(create_app(config, model=model)) as base:
        assert call(base, "GET", "/api/info")[0] == 401
        assert call(base, "GET", "/")[0] == 401
        assert call(base, "GET", "/api/info", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(base, "GET", "/static/studio.js")[0] == 200  # the page's code is no secret
        status, body = call(
            base, "POST", "/api/sessions", {}, headers={"Authorization": "Bearer s3cret-token"}
        )
        assert status == 201, body
        with pytest.raises(Exception, match="403"):
            _ws(base, body["session"], open_timeout=10)
        answer, _ = raw_request(
            int(base.rsplit(":", 1)[1]), f"GET /?token=s3cret-token&transport=ws HTTP/1.1\nHost: {base[7:]}\n"
        )
        assert status_of(answer) == 303 and b"location: /?transport=ws" in answer.lower()
        cookie = next(
            line.split(b":", 1)[1].split(b";")[0].strip().decode()
            for line in answer.split(b"\r\n")
            if line.lower().startswith(b"set-cookie:")
        )
        assert call(base, "GET", "/", headers={"Cookie": cookie})[0] == 200  # the page, then its calls
        assert call(base, "GET", "/api/info", headers={"Cookie": cookie})[0] == 200
        with _ws(base, body["session"], additional_headers={"Cookie": cookie}) as socket:
            socket.send(b"not a jpeg")
            assert json.loads(socket.recv(timeout=30))["type"] == "error"


def test_a_studio_reachable_from_other_machines_gets_a_token() -> None:
    lan = secured(StudioConfig(), "192.168.1.20")
    assert lan.token and len(lan.token) >= 24 and lan.allowed_hosts and "192.168.1.20" in lan.allowed_hosts
    assert lan.token in studio_url(lan, "192.168.1.20", 7860, tls=False)
    everywhere = secured(StudioConfig(), "0.0.0.0")
    assert everywhere.token and everywhere.allowed_hosts is None  # any name; the token protects
    assert "studio.example" in (secured(StudioConfig(), "0.0.0.0", ["studio.example"]).allowed_hosts or ())
    local = secured(StudioConfig(), "127.0.0.1")
    assert local.token is None and studio_url(local, "127.0.0.1", 7860, tls=True) == "https://localhost:7860"


# ------------------------------------------------------------------------------------ one error shape


def test_every_refusal_is_one_json_error(studio: LiveStudio) -> None:
    with _opened(studio.base) as session:
        json_type = {"Content-Type": "application/json"}
        cases = [
            ("GET", "/no/such/page", None, None, 404),
            ("GET", "/static/missing.js", None, None, 404),
            ("DELETE", "/api/info", None, None, 405),
            ("PUT", f"/api/sessions/{session}/effect", b"{}", json_type, 405),
            ("POST", f"/api/sessions/{session}/effect", b"{not json", json_type, 400),
            ("POST", f"/api/sessions/{session}/effect", b'{"effect": 5}', json_type, 422),
            ("POST", f"/api/sessions/{session}/effect", b"[]", json_type, 422),
            ("POST", "/api/sessions", b'{"effect": "x', json_type, 400),
            ("GET", "/api/effects?limit=many", None, None, 422),
            ("GET", "/api/effects?q=" + "a" * 1000, None, None, 422),
            (
                "POST",
                f"/api/sessions/{session}/effect",
                json.dumps({"effect": "glow " * 400}).encode(),
                json_type,
                400,
            ),
            ("POST", "/api/sessions", json.dumps({"effect": "glow " * 400}).encode(), json_type, 400),
            ("POST", f"/api/sessions/{session}/offer", b'{"sdp": 1}', json_type, 422),
            (
                "POST",
                f"/api/sessions/{session}/recording",
                json.dumps({"action": "stop"}).encode(),
                json_type,
                409,
            ),
            ("POST", f"/api/sessions/{session}/keyframe", b"plain", {"Content-Type": "text/plain"}, 409),
            ("GET", "/api/sessions/nope/stats", None, None, 404),
        ]
        for method, path, data, headers, expected in cases:
            status, body = call(studio.base, method, path, data=data, headers=headers)
            assert status == expected and isinstance(body, dict) and set(body) == {"error"}, (
                method,
                path,
                status,
                body,
            )
            assert isinstance(body["error"], str) and body["error"], (method, path, body)
        assert (
            "characters" in call(studio.base, "POST", "/api/sessions", {"effect": "glow " * 400})[1]["error"]
        )


def test_a_recording_without_frames_is_409_and_delete_still_closes_everything(
    model: ModelBundle, tmp_path: Path
) -> None:
    app = create_app(StudioConfig(recordings_dir=tmp_path), model=model)
    with serving(app) as base:
        session = _session(base)
        assert call(base, "POST", f"/api/sessions/{session}/recording", {"action": "start"})[0] == 200
        status, body = call(base, "POST", f"/api/sessions/{session}/recording", {"action": "stop"})
        assert status == 409 and "nothing was saved" in body["error"], body
        assert call(base, "POST", f"/api/sessions/{session}/recording", {"action": "stop"})[0] == 409

        assert call(base, "POST", f"/api/sessions/{session}/recording", {"action": "start"})[0] == 200
        studio_session = app.state.manager.sessions[session]
        closed = []
        original = studio_session.stream.close
        studio_session.stream.close = lambda: (closed.append(True), original())  # type: ignore[method-assign]
        assert call(base, "DELETE", f"/api/sessions/{session}")[0] == 204  # recording nothing: still closes
        assert closed == [True] and call(base, "GET", "/api/info")[1]["sessions"] == 0
        assert list(tmp_path.iterdir()) == []  # no empty video left behind


def test_a_normal_keyframe_upload_still_works(studio: LiveStudio, frames: list[np.ndarray]) -> None:
    with _captured(studio, frames) as session:
        data, headers = multipart("image", "edit.png", png_bytes(frames[0]), "image/png")
        status, body = call(
            studio.base, "POST", f"/api/sessions/{session}/keyframe", data=data, headers=headers
        )
        assert status == 200 and body == {"keyframe": True}
        assert decode_image(encode_image(frames[0])) is not None
