"""Studio sessions: one browser tab = one live stream on its own worker thread (`DecoupledStream` by
default: every camera frame answered at the camera's rate, the model refreshing the edit on its own
thread; `EffectStream` with ``rate="every-frame"``).

Frames arrive from the transport (WebRTC or WebSocket) at the camera's pace and wait in a slot of
size one: when the model is busy and a newer frame comes, the waiting one is dropped and counted
("newest wins", as the `run` pacer does), so a slow machine never builds a queue. The worker pushes
the freshest frame into the stream and hands every output to the session's listeners (the
transport's sender, the recorder). A failure inside one session is recorded on it and never
reaches another session or the server.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streamingeffect.io import VideoError
from streamingeffect.io.images import to_rgb
from streamingeffect.pipeline import ModelBundle
from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream
from streamingeffect.runtime.endpoints import Mp4Sink
from streamingeffect.runtime.render_stream import LiveStream
from streamingeffect.runtime.stream import EffectStream, StreamOptions

log = logging.getLogger(__name__)

MAX_SIDE = 640  # camera frames are scaled down to this long side: the model sees a crop anyway


class StudioError(Exception):
    """A request the studio refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class StudioConfig:
    model: str = "default"
    max_sessions: int = 2  # a 2-core machine runs ~6 fps for one person; more would starve all
    idle_timeout_s: float = 60.0  # no frame and no request for this long: the session is closed
    reconnect_grace_s: float = 10.0  # a session whose transport closed waits this long for another
    default_effect: str = "neon_outline_cyan"
    steps: int | None = None
    ice: str = "loopback"  # "loopback": WebRTC over 127.0.0.1 only (the studio is local); "all"
    max_upload_bytes: int = 8 * 1024 * 1024
    max_body_bytes: int = 64 * 1024  # a JSON request (effect, WebRTC offer, recording)
    max_image_pixels: int = 3840 * 2160  # an upload or a camera frame; checked before decoding
    max_prompt_chars: int = 500
    allowed_hosts: tuple[str, ...] | None = ("localhost", "127.0.0.1", "::1")  # None: any Host
    token: str | None = None  # the access token a non-loopback --host requires
    recordings_dir: Path | None = None  # default: a temporary folder removed at shutdown
    record_fps: float = 15.0
    rate: str = "decoupled"  # or "every-frame": the model on every frame it takes (`run --rate`)


class Recorder:
    """The processed frames as an mp4 at a fixed rate: each frame goes into the slot of the moment it
    was made and the previous one is held until then (as `run`'s Mp4Sink does for dropped frames),
    so the file plays in real time whatever rate the model reached."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.started = time.perf_counter()
        self._sink = Mp4Sink(path, fps, crf=23, preset="veryfast")  # fast: it runs on the worker
        self._size: tuple[int, int] | None = None

    def add(self, frame: np.ndarray) -> None:
        if self._size is None:
            self._size = frame.shape[:2]
        elif frame.shape[:2] != self._size:  # the stream restarted at another size: keep the file's
            frame = cv2.resize(frame, self._size[::-1], interpolation=cv2.INTER_AREA)
        self._sink.write(frame, index=round((time.perf_counter() - self.started) * self.fps))

    @property
    def written(self) -> int:
        return self._sink.frames

    @property
    def seconds(self) -> float:
        return self.written / self.fps

    def close(self) -> None:
        self._sink.close()


def normalize_frame(frame: Any, size: tuple[int, int] | None, max_pixels: int | None = None) -> np.ndarray:
    """An RGB uint8 frame at ``size`` (height, width), or at most MAX_SIDE on its long side when the
    session has no size yet. A camera that changes resolution mid-stream (WebRTC adapts it under load)
    would otherwise restart the stream and drop the keyframe."""
    if (
        isinstance(frame, av.VideoFrame)
        and max_pixels is not None
        and frame.width * frame.height > max_pixels
    ):
        raise StudioError(f"a {frame.width}x{frame.height} camera frame is larger than the studio takes", 413)
    image = frame.to_ndarray(format="rgb24") if isinstance(frame, av.VideoFrame) else to_rgb(frame)
    height, width = image.shape[:2]
    if size is None:
        scale = min(1.0, MAX_SIDE / max(height, width))
        size = (round(height * scale) // 2 * 2, round(width * scale) // 2 * 2)
    if (height, width) != size:
        image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    return image


def open_stream(model: ModelBundle, config: StudioConfig) -> LiveStream:
    """A session's stream at the configured rate."""
    options = StreamOptions(steps=config.steps)
    if config.rate == "decoupled":
        return DecoupledStream(model, DecoupledOptions(stream=options))
    return EffectStream(model, options)


@dataclass
class _Inbox:
    """A slot of size one: the newest frame wins."""

    frame: Any = None
    dropped: int = 0
    ready: threading.Condition = field(default_factory=threading.Condition)

    def put(self, frame: Any) -> None:
        with self.ready:
            if self.frame is not None:
                self.dropped += 1
            self.frame = frame
            self.ready.notify()

    def take(self, timeout: float) -> Any:
        with self.ready:
            if self.frame is None:
                self.ready.wait(timeout)
            frame, self.frame = self.frame, None
            return frame


class StudioSession:
    """A browser tab's stream, its worker thread, its listeners and its recordings."""

    def __init__(self, session_id: str, model: ModelBundle, config: StudioConfig, folder: Path):
        self.id, self.config, self.folder = session_id, config, folder
        self.stream = open_stream(model, config)
        self.transport: str | None = None  # "webrtc" or "websocket" while one is connected
        self.detached_at: float | None = None  # when the last transport closed
        self.error: str | None = None  # the last processing error, shown on the page
        self.last_seen = time.monotonic()
        self.closed = False
        self.peer: Any = None  # the aiortc RTCPeerConnection, when WebRTC is used
        self.captured: np.ndarray | None = None  # the frame a keyframe will be edited from
        self.recordings: dict[str, Path] = {}
        self._recorder: Recorder | None = None
        self._recorder_lock = threading.Lock()  # the worker writes while a request may stop it
        self._listeners: list[Callable[[np.ndarray], None]] = []
        self._size: tuple[int, int] | None = None
        self._inbox = _Inbox()
        self._lock = threading.RLock()  # the stream is used by the worker and by control requests
        self._stats: dict[str, Any] = self.stream.stats()
        self._worker = threading.Thread(target=self._work, name=f"studio-{session_id}", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------------------------ frames in

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def attach(self, transport: str) -> None:
        self.transport, self.detached_at = transport, None
        self.touch()

    def detach(self, transport: str) -> None:
        """The ``transport`` connection closed; the page may reconnect (the WebSocket fallback after a
        failed WebRTC attempt, a dropped socket) within the grace time, else the session closes."""
        if self.transport == transport:
            self.transport, self.detached_at = None, time.monotonic()

    def submit(self, frame: Any) -> None:
        """A camera frame (av.VideoFrame, array or PIL image): converted by the worker, only if kept."""
        self.touch()
        self._inbox.put(frame)

    def add_listener(self, listener: Callable[[np.ndarray], None]) -> Callable[[], None]:
        """``listener(frame)`` is called from the worker thread with every output; returns its remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _work(self) -> None:
        while not self.closed:
            frame = self._inbox.take(timeout=0.5)
            if frame is None or self.closed:
                continue
            try:
                image = normalize_frame(frame, self._size, self.config.max_image_pixels)
                self._size = image.shape[:2]
                with self._lock:
                    outputs = self.stream.push(image)
                    self._stats = self.stream.stats()
                self._deliver(outputs)
                self.error = None
            except Exception as error:  # one session's failure stays in that session
                log.exception("session %s: frame failed", self.id)
                self.error = f"{type(error).__name__}: {error}"

    def _deliver(self, outputs: list[np.ndarray]) -> None:
        for output in outputs:
            for listener in list(self._listeners):
                listener(output)
            with self._recorder_lock:
                if self._recorder is not None:
                    self._recorder.add(output)

    # ------------------------------------------------------------------------------------ control

    def set_effect(self, id_or_prompt: str) -> str:
        with self._lock:
            self.stream.set_effect(id_or_prompt)
            self._stats = self.stream.stats()
            return str(self._stats["effect"])

    def capture(self) -> tuple[np.ndarray, np.ndarray]:
        """The latest frame the stream saw and its person mask; it becomes the keyframe's source."""
        with self._lock:
            parsed = self.stream.last_parsed()
        if parsed is None:
            raise StudioError("no camera frame has reached the studio yet; wait for the video", 409)
        image, person = parsed
        self.captured = image
        return image, person

    def require_capture(self) -> np.ndarray:
        """The captured frame a keyframe edit belongs to; 409 before any upload is read without one."""
        if self.captured is None:
            raise StudioError("capture a keyframe first: its edit needs the frame it was made from", 409)
        return self.captured

    def set_keyframe(self, edited: np.ndarray) -> None:
        source = self.require_capture()
        height, width = source.shape[:2]
        if edited.shape[:2] != (height, width):
            aspect, expected = edited.shape[1] / edited.shape[0], width / height
            if abs(aspect / expected - 1) > 0.03:
                raise StudioError(
                    f"the edited image is {edited.shape[1]}x{edited.shape[0]} but the captured frame is "
                    f"{width}x{height}: edit the captured frame (same shape)"
                )
            edited = cv2.resize(edited, (width, height), interpolation=cv2.INTER_AREA)
        with self._lock:
            self.stream.set_keyframe(source, edited)
            self._stats = self.stream.stats()

    def clear_keyframe(self) -> None:
        with self._lock:
            self.stream.clear_keyframe()
            self._stats = self.stream.stats()

    def start_recording(self) -> None:
        with self._recorder_lock:
            if self._recorder is None:
                name = f"studio-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}.mp4"
                self._recorder = Recorder(self.folder / name, self.config.record_fps)

    def stop_recording(self) -> tuple[str, Recorder] | None:
        with self._recorder_lock:
            recorder, self._recorder = self._recorder, None
            if recorder is None:
                return None
            try:
                recorder.close()
            except VideoError as error:
                if recorder.written:
                    raise
                raise StudioError(
                    "the recording stopped before any processed frame arrived, so nothing was saved; "
                    "start it again once the video plays",
                    409,
                ) from error
        self.recordings[recorder.path.name] = recorder.path
        return recorder.path.name, recorder

    def stats(self) -> dict[str, Any]:
        """The figures after the last chunk, the drops before the stream, the transport and errors."""
        stats = dict(self._stats)
        stats["dropped"] = stats.get("dropped", 0) + self._inbox.dropped
        recorder = self._recorder
        stats.update(
            transport=self.transport,
            recording=recorder is not None,
            recording_seconds=recorder.seconds if recorder else 0.0,
            error=self.error,
        )
        for key in ("latency_p50_ms", "latency_p95_ms"):
            if stats.get(key) is not None and not np.isfinite(stats[key]):
                stats[key] = None  # no frame out yet: JSON has no NaN
        return stats

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._inbox.put(None)
        self._worker.join(timeout=10)
        try:
            self.stop_recording()
        except StudioError as error:  # an empty recording is dropped; the stream closes regardless
            log.info("session %s: %s", self.id, error)
        except Exception:
            log.exception("session %s: finishing its recording failed", self.id)
        finally:
            self.stream.close()


class SessionManager:
    """Creates, finds and closes sessions; one shared model, a limit, an idle timeout."""

    def __init__(self, model: ModelBundle, config: StudioConfig):
        self.model, self.config = model, config
        self.sessions: dict[str, StudioSession] = {}
        self._own_folder = config.recordings_dir is None
        self.folder = config.recordings_dir or Path(tempfile.mkdtemp(prefix="streamingeffect-studio-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def create(self, effect: str | None = None) -> StudioSession:
        with self._lock:
            if len(self.sessions) >= self.config.max_sessions:
                raise StudioError(
                    f"the studio is full: {len(self.sessions)} of {self.config.max_sessions} sessions are "
                    "running; close another tab or try again in a minute",
                    503,
                )
            session = StudioSession(secrets.token_urlsafe(12), self.model, self.config, self.folder)
            self.sessions[session.id] = session
        try:
            session.set_effect(effect or self.config.default_effect)
        except Exception:
            self.close(session.id)
            raise
        log.info("session %s opened (%d running)", session.id, len(self.sessions))
        return session

    def get(self, session_id: str) -> StudioSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise StudioError("no such session: it was closed or timed out; reload the page", 404)
        session.touch()
        return session

    def close(self, session_id: str) -> None:
        with self._lock:
            session = self.sessions.pop(session_id, None)
        if session is not None:
            session.close()
            log.info("session %s closed (%d running)", session_id, len(self.sessions))

    def idle(self) -> list[str]:
        """Sessions that saw neither a frame nor a request within the idle timeout, or whose
        connection closed longer than the grace time ago."""
        now, config = time.monotonic(), self.config
        return [
            s.id
            for s in list(self.sessions.values())
            if now - s.last_seen > config.idle_timeout_s
            or (s.detached_at is not None and now - s.detached_at > config.reconnect_grace_s)
        ]

    def shutdown(self) -> None:
        for session_id in list(self.sessions):
            self.close(session_id)
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
