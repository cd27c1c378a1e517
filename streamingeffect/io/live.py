"""Live outputs: a virtual camera (pyvirtualcam) and a network push (RTMP, SRT, UDP, TCP through PyAV).

Both take RGB frames one at a time, at a size fixed when they open (frames of another size, after a
stream restarted, are scaled to it), and fail at once with an `OutputError` that says what to do
when there is no virtual camera or no server to reach.

The push encodes H.264 for low latency (x264 ``zerolatency``: no B-frames, no look-ahead; a keyframe
every 2 s, as streaming services ask) and passes the input's sound through as AAC. Encoding and
sending run on their own thread behind a short queue, so a slow network never stalls the effect: when
the queue is full the oldest waiting frame is dropped (and counted), and a server that stops taking
data for ``stall_s`` ends the push with a clear error instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np

from streamingeffect.io.images import I420Image, Picture, rgb_at
from streamingeffect.io.video import yuv420_frame

log = logging.getLogger(__name__)

PUSH_FORMATS = {"rtmp": "flv", "rtmps": "flv", "srt": "mpegts", "udp": "mpegts", "tcp": "mpegts"}
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
MS = Fraction(1, 1000)  # the push's clock: frame times in milliseconds


class OutputError(RuntimeError):
    """A live output cannot open or broke off; the message says what to do."""


def public_url(url: str) -> str:
    """``url`` without its secrets, for messages: an RTMP stream key is the last path segment, SRT puts
    its passphrase and stream id in the query."""
    parts = urlsplit(url)
    segments = parts.path.strip("/").split("/")
    path = "/".join([*segments[:-1], "***"]) if len(segments) > 1 else parts.path.strip("/")
    return f"{parts.scheme}://{parts.netloc}" + (f"/{path}" if path else "") + ("?***" if parts.query else "")


# ------------------------------------------------------------------------------------ virtual camera


def _virtual_camera_help() -> str:
    system = platform.system()
    if system == "Linux":
        return (
            "install v4l2loopback and load it: sudo apt install v4l2loopback-dkms && sudo modprobe "
            "v4l2loopback devices=1 exclusive_caps=1 card_label=StreamingEffect"
        )
    return (
        "install OBS Studio (28 or newer), start its virtual camera once (Start Virtual Camera) and stop "
        "it again, then run this again"
    )


class VirtualCamera:
    """Frames to a virtual webcam that Zoom, Meet, OBS or a browser can pick (pyvirtualcam).

    ``backend`` names a pyvirtualcam backend ("v4l2loopback", "obs", "unitycapture", or one a program
    registered with ``pyvirtualcam.register_backend``); None tries every backend there is.
    """

    def __init__(
        self, size: tuple[int, int], fps: float, device: str | None = None, backend: str | None = None
    ):
        try:
            import pyvirtualcam
        except ImportError as error:
            raise OutputError(
                "--output virtualcam needs the pyvirtualcam package: pip install pyvirtualcam"
            ) from error
        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(pyvirtualcam.camera.BACKENDS) or "none"
            raise OutputError(f"no virtual camera backend {backend!r} (here: {known})")
        self.size, self.frames = size, 0
        try:
            self._camera = pyvirtualcam.Camera(
                size[0], size[1], fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device, backend=backend
            )
        except (RuntimeError, ValueError, OSError) as error:
            cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise OutputError(f"no virtual camera: {cause}. To get one, {_virtual_camera_help()}") from error
        self.device = self._camera.device
        log.info("virtual camera %s (%s), %dx%d", self.device, self._camera.backend, *size)

    def write(self, image: Picture, index: int | None = None) -> None:
        self._camera.send(np.ascontiguousarray(rgb_at(image, self.size)))  # at the size it opened with
        self.frames += 1

    def close(self) -> None:
        self._camera.close()


# -------------------------------------------------------------------------------------- network push


@dataclass(frozen=True)
class PushSettings:
    bitrate_kbps: int = 2500  # video; Twitch suggests 2500-6000 for 720p
    keyframe_s: float = 2.0  # a keyframe this often: services ask for 2 s, and a viewer joins within it
    preset: str = "veryfast"  # x264 speed/quality trade-off
    audio_kbps: int = 128
    stall_s: float = 10.0  # a server that takes no data for this long has dropped the stream
    queue_frames: int = 8  # frames waiting for the sender before the oldest is dropped


class _Relay:
    """A system ffmpeg that forwards our MPEG-TS to a protocol PyAV's own FFmpeg was built without
    (SRT: the PyAV wheels have no libsrt). It copies the packets; nothing is encoded twice."""

    def __init__(self, url: str, fmt: str):
        binary = shutil.which("ffmpeg")
        scheme = url.split("://")[0]
        if binary is None or scheme not in _ffmpeg_protocols(binary):
            raise OutputError(
                f"PyAV's FFmpeg has no {scheme}:// support and no system ffmpeg with it was found: install "
                f"ffmpeg (e.g. apt install ffmpeg) or push with rtmp:// or udp:// instead"
            )
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (ffmpeg writes to it while it runs)
        command = [binary, "-hide_banner", "-nostdin", "-loglevel", "error"]
        # A short probe, so packets are forwarded as they come rather than after seconds of input.
        command += ["-probesize", "32768", "-analyzeduration", "500000"]
        command += ["-f", fmt, "-i", "pipe:0", "-c", "copy", "-f", fmt, url]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self._log, bufsize=0)
        assert self.process.stdin is not None
        self.stdin = self.process.stdin

    def failure(self) -> str:
        """ffmpeg's last complaint, if it has stopped."""
        if self.process.poll() is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"ffmpeg exited with {self.process.returncode}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _ffmpeg_protocols(binary: str) -> set[str]:
    result = subprocess.run(
        [binary, "-hide_banner", "-protocols"], capture_output=True, text=True, timeout=10
    )
    return {line.strip() for line in result.stdout.splitlines()}


def _check_host(url: str) -> None:
    """The host must resolve: FFmpeg's own failure would only say "Input/output error". (No trial
    connection: a single-client listener such as ``ffmpeg -listen 1`` would take it as its client.)"""
    parts = urlsplit(url)
    if not parts.hostname:
        raise OutputError(f"{public_url(url)}: no host in the URL")
    try:
        socket.getaddrinfo(parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme.lower()))
    except (OSError, UnicodeError) as error:
        raise OutputError(f"{public_url(url)}: unknown host {parts.hostname!r} ({error})") from error


class NetworkPush:
    """The processed stream pushed to ``url`` (rtmp://, rtmps://, srt://, udp://, tcp://), see above.

    ``size`` is (width, height); ``audio_from`` a file whose first audio track goes along as AAC.
    Frame ``index`` is the input's frame slot: timestamps follow it, so dropped slots leave gaps in
    time rather than shifting the video against the sound.
    """

    def __init__(
        self,
        url: str,
        fps: float,
        size: tuple[int, int],
        audio_from: Path | None = None,
        settings: PushSettings = PushSettings(),
    ):
        scheme = url.split("://")[0].lower()
        if "://" not in url or scheme not in PUSH_FORMATS:
            raise OutputError(f"{url}: push to rtmp://, rtmps://, srt://, udp:// or tcp://")
        self.url, self.fps, self.settings = url, fps, settings
        self.label = public_url(url)  # for messages and summaries: no stream key
        self.size = (size[0] // 2 * 2, size[1] // 2 * 2)  # H.264 4:2:0 wants even sides
        self.frames = 0  # sent
        self.dropped = 0  # dropped here because the network fell behind
        self._format = PUSH_FORMATS[scheme]
        self._audio_from = audio_from
        self._relay: _Relay | None = None
        self._container: Any = None
        self._audio_input: Any = None
        _check_host(url)
        self._open()
        self._queue: queue.Queue[tuple[Picture, int] | None] = queue.Queue(settings.queue_frames)
        self._error: BaseException | None = None
        self._busy_since: float | None = None  # when the sender began its current frame
        self._last_pts = -1
        self._sender = threading.Thread(target=self._send_loop, name="network-push", daemon=True)
        self._sender.start()

    # -------------------------------------------------------------------------------- opening

    def _open(self) -> None:
        """Open the container and connect (FFmpeg writes the header now): fails at once."""
        try:
            self._build(self.url)
            self._start()
        except av.error.ProtocolNotFoundError:
            self._discard()
            self._relay = _Relay(self.url, self._format)
            self._build(self._relay.stdin)
            self._start()

    def _build(self, target: Any) -> None:
        # Every packet leaves at once (low latency); into a relay's pipe in TS-sized writes.
        options = {"flush_packets": "1"}
        if self._format == "flv":
            options["flvflags"] = "no_duration_filesize"
        self._container = av.open(
            target, "w", format=self._format, container_options=options, buffer_size=1316 * 8
        )
        gop = max(1, round(self.settings.keyframe_s * self.fps))
        kbps = self.settings.bitrate_kbps
        video = self._container.add_stream(
            "libx264",
            rate=Fraction(self.fps).limit_denominator(1001),
            options={
                "preset": self.settings.preset,
                "tune": "zerolatency",
                "g": str(gop),
                "keyint_min": str(gop),
                "bf": "0",
                "maxrate": f"{kbps}k",
                "bufsize": f"{2 * kbps}k",
            },
        )
        video.width, video.height, video.pix_fmt = *self.size, "yuv420p"
        video.bit_rate = kbps * 1000
        video.codec_context.time_base = MS
        self._video = video
        self._audio: Any = None
        self._audio_frames: Iterator[av.AudioFrame] | None = None
        self._audio_input: Any = None
        self._pending_audio: av.AudioFrame | None = None
        if self._audio_from is not None:
            self._audio_input = av.open(str(self._audio_from))
            source = self._audio_input.streams.audio[0]
            self._audio = self._container.add_stream("aac", rate=source.rate or 44100)
            self._audio.bit_rate = self.settings.audio_kbps * 1000
            self._audio_frames = self._audio_input.decode(source)

    def _start(self) -> None:
        try:
            self._container.start_encoding()
        except av.error.ProtocolNotFoundError:
            raise
        except (av.error.FFmpegError, OSError) as error:
            self._discard()
            raise OutputError(f"{self.label}: cannot start the stream: {self._reason(error)}") from error

    def _discard(self) -> None:
        for closable in (self._container, self._audio_input):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        if self._relay is not None:
            self._relay.close()

    def _reason(self, error: BaseException) -> str:
        """What went wrong, in FFmpeg's (or the relay's) words, with the URL's secrets masked."""
        failure = self._relay.failure() if self._relay is not None else ""
        return (failure or str(error) or type(error).__name__).replace(self.url, self.label)

    # -------------------------------------------------------------------------------- frames

    def write(self, image: Picture, index: int | None = None) -> None:
        """Queue a frame; raises OutputError once the push has failed (the run then ends)."""
        self._raise_if_failed()
        slot = self.frames + self.dropped + self._queue.qsize() if index is None else index
        width, height = self.size
        same_planes = isinstance(image, I420Image) and image.size == (height, width)
        item = (image if same_planes else np.ascontiguousarray(rgb_at(image, self.size)), slot)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()  # the oldest waiting frame gives way: live, not a backlog
                    self.dropped += 1

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise OutputError(
                f"{self.label}: the stream broke off after {self.frames} frames: {self._reason(self._error)}"
            ) from self._error
        if self._stalled():
            raise OutputError(
                f"{self.label}: the server has taken no data for {self.settings.stall_s:.0f} s; "
                "giving up the stream"
            )

    def _stalled(self) -> bool:
        busy = self._busy_since
        return busy is not None and time.monotonic() - busy > self.settings.stall_s

    def _send_loop(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                self._busy_since = time.monotonic()
                self._send(*item)
                self._busy_since = None
            self._finish()
        except BaseException as error:  # handed to the writer, which ends the run with it
            self._error = error
        finally:
            self._busy_since = None

    def _send(self, image: Picture, slot: int) -> None:
        if isinstance(image, I420Image):  # a video's planes, at the push's size: encoded as they are
            frame = av.VideoFrame.from_ndarray(image.planes, format="yuv420p")
        else:
            frame = yuv420_frame(image)  # even sides: `write` brought it to self.size
        pts = max(round(slot * 1000 / self.fps), self._last_pts + 1)  # strictly increasing
        frame.pts, frame.time_base, self._last_pts = pts, MS, pts
        self._container.mux(self._video.encode(frame))
        self._send_audio(until=pts / 1000)
        self.frames += 1

    def _send_audio(self, until: float | None) -> None:
        """The input's sound up to ``until`` seconds (None: to the end of the video sent)."""
        if self._audio_frames is None:
            return
        limit = until if until is not None else self._last_pts / 1000 + 1 / self.fps
        while True:
            frame = self._pending_audio or next(self._audio_frames, None)
            if frame is None:
                self._audio_frames = None
                return
            if frame.time is not None and frame.time > limit:
                self._pending_audio = frame  # comes with a later video frame
                return
            self._pending_audio = None
            frame.pts = None  # the encoder numbers samples from 0, as the video's clock starts at 0
            self._container.mux(self._audio.encode(frame))

    def _finish(self) -> None:
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            self._send_audio(until=None)
            self._container.mux(self._audio.encode(None))
        self._container.close()

    def close(self) -> None:
        """Send what is queued, end the stream and disconnect; never raises for a broken stream (the
        error was raised by ``write``), so other outputs still close."""
        if self._error is None and not self._stalled():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=self.settings.stall_s)
            self._sender.join(timeout=self.settings.stall_s)
        if self._sender.is_alive():  # blocked in the network: closing under it would crash
            log.warning("%s: the server did not take the end of the stream", self.label)
            return
        if self._error is not None:
            self._discard()
            return
        if self._audio_input is not None:
            self._audio_input.close()
        if self._relay is not None:
            self._relay.close()
