"""A seeded fuzz of the live studio on loopback: malformed requests, headers, JSON, multipart, SDP
and WebSocket frames, while a healthy session streams. Bounded in count and time. Nothing may answer
5xx, memory stays flat, and the healthy session keeps streaming. The soak test (10 minutes of a
stream with session churn, flat memory) is here too, behind the `soak` marker."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the studio needs the aiortc package")
pytest.importorskip("fastapi", reason="the studio needs FastAPI")

from live_studio import LiveStudio, jpeg_bomb, live_studio, png_header
from studio_helpers import call, multipart, png_bytes
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamingeffect.io import bundled_clips, read_frames
from streamingeffect.io.images import encode_image

pytestmark = pytest.mark.slow
MB = 2**20
SEED = 20261201
FUZZ_REQUESTS, FUZZ_SECONDS = 300, 40.0
# RFC 9110 header grammar. The HTTP parser answers a header outside it with 400 and closes the
# connection at once; a client still sending its body then may get a reset instead of the 400.
HEADER_NAME = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]*")
CLOSED_AFTER_MALFORMED = -1  # what `send` reports for that reset
SDP = """v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 {fingerprint}
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
a=rtpmap:96 VP8/90000
""".format(fingerprint=":".join(["AB"] * 32))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    clip = next(c.path for c in bundled_clips() if c.name == "single_face")
    return [cv2.resize(f.image, (320, 180), interpolation=cv2.INTER_AREA) for f in read_frames(clip, stop=8)]


class HealthyStream:
    """A session streaming JPEG frames over its WebSocket, one after each answer, in a thread."""

    def __init__(self, base: str, frames: list[np.ndarray], pause: float = 0.1):
        self.base, self.frames, self.pause = base, frames, pause
        status, body = call(base, "POST", "/api/sessions", {})
        assert status == 201, body
        self.session: str = body["session"]
        self.outputs: list[float] = []  # when each processed frame came back
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with connect(self.base.replace("http", "ws") + f"/api/sessions/{self.session}/ws") as ws:
                index = 0
                while not self._stop.is_set():
                    ws.send(encode_image(self.frames[index % len(self.frames)], ".jpg", quality=90))
                    answer = ws.recv(timeout=60)
                    if isinstance(answer, bytes):
                        self.outputs.append(time.monotonic())
                    else:
                        self.errors.append(answer)
                    index += 1
                    time.sleep(self.pause)
        except Exception as error:  # the assertion below reports it
            self.errors.append(f"{type(error).__name__}: {error}")

    def __enter__(self) -> HealthyStream:
        self._thread.start()
        self.wait_for(3)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)
        call(self.base, "DELETE", f"/api/sessions/{self.session}")

    def wait_for(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outputs) < count:
            assert not self.errors and time.monotonic() < deadline, self.errors or "the stream stalled"
            time.sleep(0.1)


# ------------------------------------------------------------------------------------ what the fuzz sends


def random_text(rng: random.Random, longest: int = 64) -> str:
    alphabet = "abc xyz_-./%?&=#{}[]\"'\\\x00\x07\t\n é漢🙂\u202e"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(longest)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "null", "bool"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return random_text(rng)
    if kind == "int":
        return rng.choice([0, -1, 2**63, -(2**70), rng.randrange(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.5, 1e308, -1e-308, float(rng.random())])
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["effect", "action", "sdp", "type", random_text(rng, 8)]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_image(rng: random.Random, frames: list[np.ndarray]) -> bytes:
    frame = frames[rng.randrange(len(frames))]
    choice = rng.randrange(7)
    if choice == 0:
        return encode_image(frame, ".jpg")
    if choice == 1:
        return png_bytes(frame)[: rng.randrange(8, 4000)]  # truncated
    if choice == 2:
        return png_header(20000, 20000)  # claims 400 megapixels
    if choice == 3:
        return jpeg_bomb(rng.choice([9000, 30000, 65000]), rng.choice([9000, 65000]))
    if choice == 4:
        return rng.randbytes(rng.randrange(0, 5000))
    if choice == 5:
        return b"GIF89a" + rng.randbytes(100)
    return encode_image(cv2.resize(frame, (rng.randrange(1, 64), rng.randrange(1, 64))), ".jpg")


def random_sdp(rng: random.Random) -> str:
    lines = SDP.splitlines()
    for _ in range(rng.randrange(1, 6)):
        action = rng.randrange(4)
        index = rng.randrange(len(lines))
        if action == 0:
            del lines[index]
        elif action == 1:
            lines.insert(index, lines[rng.randrange(len(lines))])
        elif action == 2:
            lines[index] = lines[index][: rng.randrange(len(lines[index]) + 1)] + random_text(rng, 12)
        else:
            lines[index] = random_text(rng, 40)
    return "\r\n".join(lines) + "\r\n"


def malformed(headers: dict[str, str]) -> bool:
    """Whether a header breaks the HTTP grammar (then a reset connection is a fair answer)."""
    return any(
        not HEADER_NAME.fullmatch(name) or not HEADER_VALUE.fullmatch(value)
        for name, value in headers.items()
    )


class Fuzzer:
    """Sends one random hostile request at a time and records any answer that is a server error."""

    def __init__(self, studio: LiveStudio, frames: list[np.ndarray], seed: int):
        self.studio, self.frames, self.rng = studio, frames, random.Random(seed)
        self.session: str | None = None  # the fuzzer's own session; the healthy one is never named
        self.failures: list[str] = []
        self.statuses: dict[int, int] = {}

    def own_session(self) -> str:
        if (
            self.session is None
            or call(self.studio.base, "GET", f"/api/sessions/{self.session}/stats")[0] != 200
        ):
            status, body = call(self.studio.base, "POST", "/api/sessions", {})
            assert status == 201, body
            self.session = body["session"]
        return self.session

    def note(self, what: str, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500 or status == 0:
            self.failures.append(f"{what} -> {status}")

    def step(self) -> None:
        actions: list[Callable[[], None]] = [
            self.http,
            self.http,
            self.http,
            self.offer,
            self.websocket,
            self.raw,
        ]
        self.rng.choice(actions)()

    def path(self) -> str:
        rng = self.rng
        session = rng.choice([self.own_session(), "nope", "", "..%2F..", random_text(rng, 20), "a" * 300])
        tail = rng.choice(["effect", "capture", "keyframe", "stats", "recording", "offer", "close", "ws", ""])
        return rng.choice(
            [
                "/",
                "/api/info",
                f"/api/effects?q={random_text(rng, 30)}&limit={rng.choice(['5', '-3', 'x', '99999999999'])}",
                "/api/sessions",
                f"/api/sessions/{session}/{tail}",
                f"/api/sessions/{session}/recordings/{random_text(rng, 12)}",
                f"/static/{rng.choice(['studio.js', '../server.py', '%2e%2e/x', random_text(rng, 10)])}",
                "/" + random_text(rng, 40),
            ]
        )

    def body(self) -> tuple[bytes | None, dict[str, str]]:
        rng = self.rng
        choice = rng.randrange(6)
        if choice == 0:
            return None, {}
        if choice == 1:
            return json.dumps(random_json(rng)).encode(), {"Content-Type": "application/json"}
        if choice == 2:
            return rng.randbytes(rng.randrange(2000)), {
                "Content-Type": rng.choice(["application/json", "text/plain"])
            }
        if choice == 3:
            field = rng.choice(["image", "file", ""])
            return multipart(field, random_text(rng, 10) or "x", random_image(rng, self.frames), "image/png")
        if choice == 4:
            return b'{"effect": "' + b"x" * rng.randrange(1000) + b'"', {"Content-Type": "application/json"}
        effect = rng.choice(["neon_outline_cyan", "a " * rng.randrange(400), random_text(rng, 100), ""])
        return json.dumps({"effect": effect, "action": rng.choice(["start", "stop", "x"])}).encode(), {
            "Content-Type": "application/json"
        }

    def http(self) -> None:
        rng = self.rng
        method = rng.choice(["GET", "POST", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"])
        path = self.path()
        data, headers = self.body()
        if rng.random() < 0.3:
            headers["Origin"] = rng.choice([self.studio.base, "null", "http://evil.example", "file://"])
        if rng.random() < 0.1:
            headers["Host"] = rng.choice(["evil.example", f"localhost:{self.studio.port}", "[::1]", ""])
        if rng.random() < 0.1:
            headers[random_text(rng, 10).strip() or "X-Y"] = random_text(rng, 30)
        status = self.send(method, path, data, headers)
        if status == CLOSED_AFTER_MALFORMED:  # allowed, if the server is still there to answer
            status = 400 if call(self.studio.base, "GET", "/api/info")[0] == 200 else 0
        self.note(f"{method} {path[:60]!r}", status)
        if status == 201 and path == "/api/sessions":  # a session the fuzz made by chance: let it go
            with contextlib.suppress(Exception):
                call(self.studio.base, "DELETE", f"/api/sessions/{self.created}")

    def send(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.studio.port, timeout=60)
        try:
            connection.putrequest(method, path.replace(" ", "%20"), skip_host="Host" in headers)
            for name, value in headers.items():
                with contextlib.suppress(ValueError):  # http.client refuses some header bytes itself
                    connection.putheader(name, value.encode("utf-8", "replace"))
            if data is not None:
                connection.putheader("Content-Length", str(len(data)))
            connection.endheaders(data)
            response = connection.getresponse()
            payload = response.read()
            self.created = ""
            if response.status == 201 and payload:
                self.created = json.loads(payload).get("session", "")
            return response.status
        except (http.client.InvalidURL, ValueError, UnicodeEncodeError):
            return 400  # the client could not even send it
        except OSError:
            return CLOSED_AFTER_MALFORMED if malformed(headers) else 0
        finally:
            connection.close()

    def offer(self) -> None:
        session = self.own_session()
        body = {"sdp": random_sdp(self.rng), "type": self.rng.choice(["offer", "offer", "answer", ""])}
        status, _ = call(self.studio.base, "POST", f"/api/sessions/{session}/offer", body)
        self.note("offer", status)

    def websocket(self) -> None:
        rng = self.rng
        session = self.own_session()
        try:
            with connect(self.studio.base.replace("http", "ws") + f"/api/sessions/{session}/ws") as ws:
                for _ in range(rng.randrange(1, 6)):
                    if rng.random() < 0.2:
                        ws.send(random_text(rng, 200))
                    else:
                        ws.send(random_image(rng, self.frames))
                    with contextlib.suppress(TimeoutError):
                        ws.recv(timeout=0.3)  # an answer may come later: it is not waited for
            self.note("websocket", 101)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            self.note(f"websocket closed {code}", 500 if code in (1006, 1011) else 101)

    def raw(self) -> None:
        rng = self.rng
        garbage = rng.choice(
            [
                rng.randbytes(rng.randrange(1, 300)),
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
                b"POST /api/sessions/nope/effect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                b"POST /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n",
            ]
        )
        address = ("127.0.0.1", self.studio.port)
        with socket.create_connection(address, timeout=1) as connection, contextlib.suppress(OSError):
            connection.sendall(garbage)
            answer = connection.recv(200)
            if answer.startswith(b"HTTP/"):
                self.note("raw", int(answer.split(b" ", 2)[1]))


def test_fuzzing_the_live_studio_finds_no_server_error_and_leaves_a_healthy_stream(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    # Room for the fuzzer's own session and the ones it opens by chance, so "full" (503) never happens.
    with (
        live_studio(tmp_path, "--max-sessions", "4") as studio,
        HealthyStream(studio.base, frames) as healthy,
    ):
        rss_before = studio.rss()
        fuzzer = Fuzzer(studio, frames, SEED)
        started, sent = time.monotonic(), 0
        while sent < FUZZ_REQUESTS and time.monotonic() - started < FUZZ_SECONDS:
            fuzzer.step()
            sent += 1
        fuzzed = time.monotonic()
        healthy.wait_for(len(healthy.outputs) + 3)  # still streaming after the fuzz
        rss_after = studio.rss()
        during = sum(started <= t <= fuzzed for t in healthy.outputs)
        print(
            f"fuzz: {sent} requests in {fuzzed - started:.1f} s, statuses {sorted(fuzzer.statuses.items())}; "
            f"healthy stream: {during} frames meanwhile; RSS {rss_before / MB:.0f} -> {rss_after / MB:.0f} MB"
        )
        assert fuzzer.failures == [], fuzzer.failures
        assert healthy.errors == [] and during >= 3
        assert rss_after - rss_before < 150 * MB
        status, stats = call(studio.base, "GET", f"/api/sessions/{healthy.session}/stats")
        assert status == 200 and stats["error"] is None


@pytest.mark.soak
def test_soak_ten_minutes_of_streaming_with_session_churn_keeps_memory_flat(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    minutes = 10.0
    with live_studio(tmp_path) as studio, HealthyStream(studio.base, frames, pause=0.05) as healthy:
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        churned = 0
        while time.monotonic() - started < minutes * 60:
            status, body = call(studio.base, "POST", "/api/sessions", {})  # a tab opens, streams, closes
            assert status == 201, body
            session = body["session"]
            with connect(studio.base.replace("http", "ws") + f"/api/sessions/{session}/ws") as ws:
                call(studio.base, "POST", f"/api/sessions/{session}/recording", {"action": "start"})
                for index in range(10):
                    ws.send(encode_image(frames[index % len(frames)], ".jpg"))
                    assert isinstance(ws.recv(timeout=60), bytes)
                call(studio.base, "POST", f"/api/sessions/{session}/recording", {"action": "stop"})
            assert call(studio.base, "DELETE", f"/api/sessions/{session}")[0] == 204
            churned += 1
            samples.append((time.monotonic() - started, studio.rss()))
        healthy.wait_for(len(healthy.outputs) + 3)
    warm = [rss for t, rss in samples if t > 60]  # after the first minute (allocator pools filled)
    growth = max(warm[len(warm) // 2 :]) - warm[0]
    frames_out = len(healthy.outputs)
    print(f"soak: {churned} sessions churned, {frames_out} healthy frames, RSS growth {growth / MB:.0f} MB")
    assert healthy.errors == [] and growth < 100 * MB
