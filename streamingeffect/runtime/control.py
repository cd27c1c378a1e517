"""Live control of a running `streamingeffect run` over a small HTTP API on this machine only.

    streamingeffect run --input webcam --effect neon_outline_cyan --output virtualcam --control-port 7870
    streamingeffect ctl set-effect glow_aura_gold          # or: curl -X POST localhost:7870/effect ...

    GET    /stats             the stream's figures (JSON)
    POST   /effect            {"effect": "glow_aura_gold"} or {"prompt": "a glowing cyan outline"}
    GET    /frame             the latest frame the stream saw (PNG); it becomes the next keyframe's source
    POST   /keyframe/source   a PNG/JPEG/WebP body: the frame a keyframe was edited from
    POST   /keyframe          a PNG/JPEG/WebP body: the edited frame, which becomes the stream's reference
    DELETE /keyframe          back to the effect alone

The server binds to 127.0.0.1 and refuses requests whose Host or Origin is not this machine (a web
page the streamer has open cannot drive it). A bad request (an unknown effect, a body that is not an
image) gets a 4xx with ``{"error": message}`` and the stream goes on.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from streamingeffect.io.images import decode_image, encode_image, load_image

log = logging.getLogger(__name__)

DEFAULT_CONTROL_PORT = 7870
MAX_IMAGE_BYTES = 16 * 1024 * 1024
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


class ControlError(RuntimeError):
    """A control request failed; the message says why (and, with no server, how to start one)."""


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ControlServer:
    """Serves the API above for ``stream`` (an EffectStream or RenderStream); every call on the stream
    holds ``lock``, which the run's loop holds while it pushes a frame."""

    def __init__(self, stream: Any, lock: threading.Lock, port: int = DEFAULT_CONTROL_PORT):
        self.stream, self.lock = stream, lock
        self._source: np.ndarray | None = None  # the frame the next keyframe was edited from
        routes: dict[tuple[str, str], Callable[[bytes, str], tuple[int, Any]]] = {
            ("GET", "/"): self._index,
            ("GET", "/stats"): self._stats,
            ("POST", "/effect"): self._effect,
            ("GET", "/frame"): self._frame,
            ("POST", "/keyframe/source"): self._keyframe_source,
            ("POST", "/keyframe"): self._keyframe,
            ("DELETE", "/keyframe"): self._clear,
        }
        handler = _handler_class(routes, self._allowed_hosts)
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as error:
            raise ControlError(f"control port {port}: {error.strerror or error}") from error
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        threading.Thread(target=self._server.serve_forever, name="control-api", daemon=True).start()

    def _allowed_hosts(self) -> set[str]:
        return {f"{name}:{self.port}" for name in LOCAL_NAMES}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------------------------- routes

    def _index(self, body: bytes, kind: str) -> tuple[int, Any]:
        return 200, {"routes": ["GET /stats", "POST /effect", "GET /frame", "POST /keyframe/source",
                                "POST /keyframe", "DELETE /keyframe"]}  # fmt: skip

    def _stats(self, body: bytes, kind: str) -> tuple[int, Any]:
        with self.lock:
            stats = self.stream.stats()
        return 200, {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in stats.items()
        }

    def _effect(self, body: bytes, kind: str) -> tuple[int, Any]:
        request = _json_body(body, kind)
        text = request.get("effect") if "effect" in request else request.get("prompt")
        if not isinstance(text, str) or len(request) != 1:
            raise _Refused(400, 'send {"effect": "<catalog id>"} or {"prompt": "<text>"}')
        try:
            with self.lock:
                self.stream.set_effect(text)
                effect = self.stream.stats()["effect"]
        except ValueError as error:  # StreamError, UnknownEffectError: bad input, the stream goes on
            raise _Refused(400, str(error)) from error
        return 200, {"effect": effect}

    def _frame(self, body: bytes, kind: str) -> tuple[int, Any]:
        with self.lock:
            parsed = self.stream.last_parsed()
        if parsed is None:
            raise _Refused(409, "no frame has reached the stream yet")
        self._source = parsed[0]
        return 200, encode_image(parsed[0], ".png")

    def _keyframe_source(self, body: bytes, kind: str) -> tuple[int, Any]:
        self._source = _image_body(body)
        return 200, {"source": list(self._source.shape[1::-1])}

    def _keyframe(self, body: bytes, kind: str) -> tuple[int, Any]:
        edited = _image_body(body)
        if self._source is None:
            raise _Refused(409, "no source frame: GET /frame (or POST /keyframe/source) before the keyframe")
        try:
            with self.lock:
                self.stream.set_keyframe(self._source, edited)
        except ValueError as error:  # StreamError
            raise _Refused(400, str(error)) from error
        return 200, {"keyframe": True}

    def _clear(self, body: bytes, kind: str) -> tuple[int, Any]:
        with self.lock:
            self.stream.clear_keyframe()
        return 200, {"keyframe": False}


def _json_body(body: bytes, kind: str) -> dict[str, Any]:
    # Only JSON: a web page cannot send it to another origin without a preflight, which we never answer.
    if not kind.startswith("application/json"):
        raise _Refused(415, "send JSON (Content-Type: application/json)")
    try:
        request = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _Refused(400, f"malformed JSON: {error}") from error
    if not isinstance(request, dict):
        raise _Refused(400, "send a JSON object")
    return request


def _image_body(body: bytes) -> np.ndarray:
    if not body:
        raise _Refused(400, "the body is empty: send the image file's bytes")
    image = decode_image(body)
    if image is None:
        raise _Refused(415, "the body is not an image: send a PNG, JPEG or WebP file")
    return image


def _handler_class(
    routes: dict[tuple[str, str], Callable[[bytes, str], tuple[int, Any]]],
    allowed_hosts: Callable[[], set[str]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            try:
                self._check_origin()
                route = routes.get((method, self.path.split("?")[0].rstrip("/") or "/"))
                if route is None:
                    raise _Refused(404, f"no route {method} {self.path}; GET / lists them")
                status, payload = route(self._body(), self.headers.get("Content-Type", ""))
            except _Refused as refused:
                status, payload = refused.status, {"error": str(refused)}
            except Exception as error:  # a bug must not end the stream: say so and go on
                log.exception("control request %s %s failed", method, self.path)
                status, payload = 500, {"error": f"{type(error).__name__}: {error}"}
            self._reply(status, payload)

        def _check_origin(self) -> None:
            if self.headers.get("Host", "") not in allowed_hosts():
                raise _Refused(403, "only requests to 127.0.0.1 or localhost are served")
            origin = self.headers.get("Origin")
            if origin is not None and origin.split("://")[-1] not in allowed_hosts():
                raise _Refused(403, f"requests from web pages ({origin}) are refused")

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_IMAGE_BYTES:
                raise _Refused(413, f"the body is {length / 2**20:.1f} MB; the limit is 16 MB")
            return self.rfile.read(length) if length > 0 else b""

        def _reply(self, status: int, payload: Any) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "image/png" if isinstance(payload, bytes) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, *args: object) -> None:
            return

    return Handler


# ------------------------------------------------------------------------------------------ client


class ControlClient:
    """Calls a running stream's control API (what `streamingeffect ctl` does)."""

    def __init__(self, port: int = DEFAULT_CONTROL_PORT, timeout: float = 30.0):
        self.base, self.port, self.timeout = f"http://127.0.0.1:{port}", port, timeout

    def set_effect(self, effect: str) -> dict[str, Any]:
        return self._call("POST", "/effect", json.dumps({"effect": effect}).encode(), "application/json")

    def set_prompt(self, prompt: str) -> dict[str, Any]:
        return self._call("POST", "/effect", json.dumps({"prompt": prompt}).encode(), "application/json")

    def set_keyframe(self, edited: Path, source: Path | None = None) -> dict[str, Any]:
        """``edited`` becomes the reference; its source is ``source``, or else the frame last saved by
        `save_frame` (the one it was edited from)."""
        if source is not None:
            self._call("POST", "/keyframe/source", _image_file(source), "application/octet-stream")
        return self._call("POST", "/keyframe", _image_file(edited), "application/octet-stream")

    def clear_keyframe(self) -> dict[str, Any]:
        return self._call("DELETE", "/keyframe")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def save_frame(self, path: Path) -> Path:
        """The stream's latest frame as an image file to edit (it becomes the keyframe's source)."""
        path.write_bytes(self._request("GET", "/frame"))
        return path

    def _call(self, method: str, route: str, data: bytes | None = None, kind: str = "") -> dict[str, Any]:
        return json.loads(self._request(method, route, data, kind))

    def _request(self, method: str, route: str, data: bytes | None = None, kind: str = "") -> bytes:
        request = urllib.request.Request(self.base + route, data=data, method=method)
        if kind:
            request.add_header("Content-Type", kind)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise ControlError(_error_message(error)) from error
        except urllib.error.URLError as error:
            raise ControlError(
                f"nothing answers on {self.base} ({error.reason}): start the stream with "
                f"`streamingeffect run ... --control-port {self.port}`"
            ) from error


def _image_file(path: Path) -> bytes:
    load_image(path)  # a clear error for a missing or broken file, before anything is sent
    return path.read_bytes()


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.code}: {error.reason}"
