"""`streamingeffect run`: a source, a live stream (the learned model's EffectStream or the renderer's
RenderStream), sinks, a pacer for live input, an optional control API, a status line."""

from __future__ import annotations

import itertools
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamingeffect.io import SourceError
from streamingeffect.io.images import Picture, picture_size
from streamingeffect.io.live import NetworkPush, OutputError, PushSettings, VirtualCamera
from streamingeffect.io.outputs import InterruptShield, PartialFile, close_all, refuse_inputs_as_output
from streamingeffect.io.video import Frame, PlanarFrame
from streamingeffect.runtime.decoupled import RATES, DecoupledOptions, DecoupledStream
from streamingeffect.runtime.endpoints import (
    FrameSource,
    MjpegPreview,
    Mp4Sink,
    StdoutSink,
    open_source,
    realtime,
)
from streamingeffect.runtime.pacer import LatestFramePacer
from streamingeffect.runtime.render_stream import LiveStream, RenderOptions, RenderStream
from streamingeffect.runtime.stream import EffectStream

ENGINES = ("model", "render")
log = logging.getLogger(__name__)
# A live file output: libx264 at its fastest, with x264's zerolatency settings (no B-frames, no
# look-ahead) on one thread: measured 3.4 ms a 720p frame on this CPU; sliced threads took 7.3-7.8 ms
# of CPU a frame against 5.6-5.8 on one thread in the same slow hour, and no less wall time. An RGB
# frame's colour conversion is OpenCV's (`io.video.yuv420_frame`: 1.3 ms at 720p against 5.2).
LIVE_MP4: dict[str, Any] = {
    "preset": "ultrafast",
    "x264_params": "bframes=0:rc-lookahead=0:sync-lookahead=0:threads=1",
    "fast_yuv": True,
}


class Sink(Protocol):
    def write(self, image: Picture, index: int | None = None) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunConfig:
    input: str = "sample"
    effect: str | None = None
    prompt: str | None = None
    keyframe: Path | None = None
    keyframe_source: Path | None = None
    output: Path | None = None
    preview_port: int | None = None
    raw_stdout: bool = False
    size: tuple[int, int] | None = None  # (width, height)
    steps: int | None = None
    model: str = "default"
    realtime: bool = False  # pace a file like a live camera (frames drop when compute falls behind)
    max_frames: int | None = None
    mask_cache: bool = True
    stats_json: Path | None = None
    status: bool = True  # the live status line and the printed summary
    live_outputs: tuple[str, ...] = ()  # "virtualcam[:DEVICE]", "rtmp://...", "srt://...", "udp://..."
    virtualcam_backend: str | None = None  # a pyvirtualcam backend name (default: whichever works)
    push: PushSettings = field(default_factory=PushSettings)
    control_port: int | None = None  # serve the live control API on 127.0.0.1:PORT
    engine: str = "model"  # "model": the learned student; "render": the procedural renderer
    # "decoupled": the per-frame path at the input's rate, the model refreshing at its own
    # (DecoupledStream); "every-frame": the model on every frame (EffectStream)
    rate: str = "decoupled"


def run(config: RunConfig) -> dict[str, Any]:
    """Stream the input through the effect into the sinks; returns (and prints) the JSON summary."""
    from streamingeffect.io import load_image

    if config.effect is None and config.prompt is None and config.keyframe is None:
        raise ValueError("give --effect ID, --prompt TEXT or --keyframe EDITED.png")
    if (
        config.output is None
        and config.preview_port is None
        and not config.raw_stdout
        and not config.live_outputs
    ):
        raise ValueError(
            "nowhere to send the frames: give --output OUT.mp4|virtualcam|rtmp://..., --preview-port "
            "or --raw-stdout"
        )
    _check_engine(config)
    _refuse_overwriting_inputs(config)
    keyframe = load_image(config.keyframe) if config.keyframe else None
    keyframe_source = load_image(config.keyframe_source) if config.keyframe_source else None
    source = open_source(config.input, config.size, config.max_frames)
    size = _first_frame_size(source)
    sinks: list[Sink] = _open_live_outputs(config, source, size)  # no camera, no server: fails now
    # A live output (a camera, a server) takes frames at the input's rate: files are paced as a camera.
    live_rate = bool(config.live_outputs) and not source.live
    paced = source.live or config.realtime or live_rate
    stream = _prepare_stream(config, source.fps, size, sinks, paced)
    output = PartialFile(config.output) if config.output is not None else None  # renamed when complete
    if output is not None:
        audio = source.path if source.has_audio else None
        if paced:  # encoded behind the stream, on its own thread: a live frame never waits for x264
            sinks.append(BackgroundSink(Mp4Sink(output.partial, source.fps, audio, **LIVE_MP4)))
        else:
            sinks.append(Mp4Sink(output.partial, source.fps, audio))
    if config.preview_port is not None:
        preview = MjpegPreview(config.preview_port)
        print(f"preview: {preview.url}", file=sys.stderr)
        sinks.append(preview)
    if config.raw_stdout:
        sinks.append(StdoutSink())
    frames: Iterable[Frame | PlanarFrame] = source.frames
    pacer = None
    arrivals = _Arrivals()
    if paced:
        pacer = LatestFramePacer(
            arrivals.stamp(realtime(source.frames) if config.realtime or live_rate else source.frames),
            on_drop=lambda _: stream.note_dropped(),
        )
        frames = pacer
    pushed: deque[int] = deque()
    status = _Status(stream, enabled=config.status)
    interrupted = False
    lock = threading.Lock()  # the control API's requests and the loop take turns on the stream
    control = None
    open_sinks, failures = list(sinks), []
    shield = InterruptShield()  # a Ctrl-C while the output is finished is noted, not obeyed
    failure: BaseException | None = None
    started = time.perf_counter()
    try:
        control = _start_control(config, stream, lock)
        try:
            for frame in frames:
                with lock:
                    if keyframe is not None:  # the keyframe enters with the first frame
                        stream.set_keyframe(
                            keyframe_source if keyframe_source is not None else frame.image, keyframe
                        )
                        keyframe = None
                    pushed.append(frame.index)
                    outputs = stream.push(frame.picture)  # a decoded video's planes as they are
                _emit(outputs, pushed, open_sinks, failures, arrivals)
                if failures:  # a live output broke off: end the run, finishing the other outputs
                    break
                status.update()
        except KeyboardInterrupt:
            interrupted = True
        with shield, lock:
            _flush(stream, pushed, open_sinks, failures, interrupted, arrivals)
    except BaseException as error:
        failure = error
        raise
    finally:
        closers = [control.close] if control is not None else []
        closers += [pacer.close] if pacer is not None else []
        with shield:
            _finish([*closers, *(sink.close for sink in sinks), stream.close], output, failure)
        status.done()
    interrupted = interrupted or shield.caught > 0
    wall = time.perf_counter() - started
    stats = stream.stats()
    summary = {
        "input": source.name,
        "fps_in": source.fps,
        "engine": config.engine,
        "paced": paced,
        "interrupted": interrupted,
        **stats,
        "outputs": _outputs_summary(sinks),
        "error": str(failures[0]) if failures else None,
        # End to end: reading and decoding the input, the stream, encoding and writing the output.
        "wall_s": wall,
        "end_to_end_fps": stats["frames_out"] / wall if wall > 0 else 0.0,
        "peak_rss_mb": _peak_rss_mb(),
        **arrivals.summary(stats["frames_out"], stats["dropped"]),
    }
    text = json.dumps(summary, indent=2)
    if config.status:
        print(text, file=sys.stderr if config.raw_stdout else sys.stdout)
    if config.stats_json is not None:
        config.stats_json.write_text(text + "\n")
    if failures:
        raise failures[0]
    return summary


def _refuse_overwriting_inputs(config: RunConfig) -> None:
    """Refuse an output that is a file this run reads, before anything is loaded or written."""
    inputs = [Path(config.input), config.keyframe, config.keyframe_source]
    for output, flag in ((config.output, "--output"), (config.stats_json, "--stats-json")):
        if output is not None:
            refuse_inputs_as_output(output, inputs, flag)


def _flush(
    stream: LiveStream,
    pushed: deque[int],
    sinks: list[Sink],
    failures: list[OutputError],
    interrupted: bool,
    arrivals: _Arrivals,
) -> None:
    """The frames still inside the stream; after a Ctrl-C (which may have cut a push short) a
    failing flush only costs those frames, never the file."""
    try:
        _emit(stream.flush(), pushed, sinks, failures, arrivals)
    except Exception as error:
        if not interrupted:
            raise
        log.warning("the last frames were lost after the interruption: %s", error)


def _finish(closers: list[Any], output: PartialFile | None, failure: BaseException | None) -> None:
    """Close everything (the first error wins), then move the finished file into place, or remove
    it when the run failed: a half-written video never appears under the output's name. (A live
    output that broke off ends the run cleanly: the file is still committed.)"""
    try:
        close_all(closers, failure)
    except BaseException:
        if output is not None:
            output.discard()
        raise
    if output is not None:
        if failure is None:
            output.commit()
        else:
            output.discard()


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BackgroundSink:
    """A sink written on its own thread behind a short queue; when the queue is full the oldest waiting
    frame is dropped (an mp4 holds the previous frame in its slot). Errors surface at the next write
    or at close."""

    def __init__(self, sink: Sink, depth: int = 4):
        self.sink, self.dropped = sink, 0
        self._queue: deque[tuple[Picture, int | None] | None] = deque()
        self._depth = depth
        self._ready = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="sink-writer", daemon=True)
        self._thread.start()

    def write(self, image: Picture, index: int | None = None) -> None:
        self._raise()
        with self._ready:
            if len(self._queue) >= self._depth:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((image, index))
            self._ready.notify()

    def _drain(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                item = self._queue.popleft()
            if item is None:
                return
            try:
                self.sink.write(*item)
            except BaseException as error:  # kept for the caller
                self._error = error
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        with self._ready:
            self._queue.append(None)
            self._ready.notify()
        self._thread.join()
        self.sink.close()
        self._raise()


class _Arrivals:
    """When each frame of a paced source arrived (its release by the camera clock, on the reader
    thread), and how long until its output was handed to the sinks."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self.offered = 0

    def stamp(self, frames: Iterable[Frame | PlanarFrame]) -> Iterable[Frame | PlanarFrame]:
        for frame in frames:
            self.times[frame.index] = time.perf_counter()
            self.offered += 1
            yield frame

    def answered(self, index: int) -> None:
        arrived = self.times.pop(index, None)
        if arrived is not None:
            self.latencies_ms.append(1000 * (time.perf_counter() - arrived))
        if len(self.times) > 1000:  # dropped frames never answer: forget the oldest
            for old in sorted(self.times)[:500]:
                del self.times[old]

    def summary(self, frames_out: int, dropped: int) -> dict[str, Any]:
        """Paced runs: the share of the frames offered that were answered, and latency from arrival."""
        if not self.offered:
            return {}
        latencies = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {
            "frames_offered": self.offered,
            "answered_share": frames_out / self.offered,
            "arrival_latency_p50_ms": float(np.percentile(latencies, 50)),
            "arrival_latency_p95_ms": float(np.percentile(latencies, 95)),
        }


def _emit(
    outputs: list[Picture],
    pushed: deque[int],
    sinks: list[Sink],
    failures: list[OutputError],
    arrivals: _Arrivals | None = None,
) -> None:
    """Each output to every sink; a live output that fails leaves ``sinks`` (its error is kept)."""
    for image in outputs:
        index = pushed.popleft()
        if arrivals is not None:
            arrivals.answered(index)
        for sink in list(sinks):
            try:
                sink.write(image, index)
            except OutputError as error:
                failures.append(error)
                sinks.remove(sink)


# ------------------------------------------------------------------ engines, live outputs, control


def split_outputs(targets: Sequence[str]) -> tuple[Path | None, tuple[str, ...]]:
    """``--output`` values -> (the mp4 file, if any; the live outputs: virtualcam and stream URLs)."""
    live = tuple(t for t in targets if t == "virtualcam" or t.startswith("virtualcam:") or "://" in t)
    files = [t for t in targets if t not in live]
    if len(files) > 1:
        raise ValueError(f"one file output at most (got {', '.join(files)}); live outputs may be added")
    return (Path(files[0]) if files else None), live


def _check_engine(config: RunConfig) -> None:
    if config.engine not in ENGINES:
        raise ValueError(f"unknown engine {config.engine!r}: use one of {', '.join(ENGINES)}")
    if config.rate not in RATES:
        raise ValueError(f"unknown rate {config.rate!r}: use one of {', '.join(RATES)}")
    if config.engine == "render" and (config.keyframe or config.prompt):
        raise ValueError(
            "--engine render draws catalog effects (--effect ID); keyframes and prompts need --engine model"
        )


# A file processed as fast as it goes (not paced): the model refreshes synchronously on every third
# frame and its edit is used from that frame on, so every frame carries the effect from the first one
# and the output does not depend on the machine's speed; every frame is segmented.
FILE_RATE = DecoupledOptions(refresh_every=3, refresh_lag=0, segment_every=1)


def _prepare_stream(
    config: RunConfig, fps: float, size: tuple[int, int], sinks: list[Sink], paced: bool
) -> LiveStream:
    """The engine's stream with the effect set and warmed up at the input's size; if that fails, the
    live outputs already open are closed."""
    try:
        stream: LiveStream
        if config.engine == "render":
            stream = RenderStream(RenderOptions(fps=fps))
        elif config.rate == "decoupled":
            stream = DecoupledStream.from_pretrained(
                config.model,
                None if paced else FILE_RATE,
                steps=config.steps,
                mask_cache=config.mask_cache,
            )
        else:
            stream = EffectStream.from_pretrained(
                config.model, steps=config.steps, mask_cache=config.mask_cache
            )
        if config.effect or config.prompt:
            stream.set_effect(config.effect or config.prompt or "")
            stream.warmup(size[::-1])
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return stream


def _first_frame_size(source: FrameSource) -> tuple[int, int]:
    """(width, height) of the source's first frame, which stays at the front of ``source.frames``."""
    first = next(source.frames, None)
    if first is None:
        raise SourceError(f"{source.name}: no frames")
    source.frames = itertools.chain([first], source.frames)
    height, width = picture_size(first.picture)
    return width, height


def _open_live_outputs(config: RunConfig, source: FrameSource, size: tuple[int, int]) -> list[Sink]:
    """The virtual camera and network pushes, opened at once so a missing one fails before the model
    loads; on a failure the ones already open are closed."""
    sinks: list[Sink] = []
    try:
        for target in config.live_outputs:
            if target == "virtualcam" or target.startswith("virtualcam:"):
                device = target.partition(":")[2] or None
                sinks.append(VirtualCamera(size, source.fps, device, config.virtualcam_backend))
            else:
                audio = source.path if source.has_audio else None
                sinks.append(NetworkPush(target, source.fps, size, audio, config.push))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


def _outputs_summary(sinks: list[Sink]) -> list[dict[str, Any]]:
    """Frames each live output took (and dropped, for a network push that fell behind)."""
    summary: list[dict[str, Any]] = []
    for sink in sinks:
        if isinstance(sink, VirtualCamera):
            summary.append({"output": f"virtualcam:{sink.device}", "frames": sink.frames})
        elif isinstance(sink, NetworkPush):
            summary.append({"output": sink.label, "frames": sink.frames, "dropped": sink.dropped})
    return summary


def _start_control(config: RunConfig, stream: LiveStream, lock: threading.Lock) -> Any:
    if config.control_port is None:
        return None
    from streamingeffect.runtime.control import ControlServer

    control = ControlServer(stream, lock, config.control_port)
    print(f"control: {control.url} (streamingeffect ctl --port {control.port} ...)", file=sys.stderr)
    return control


class _Status:
    """A one-line live status on stderr: frames, fps, latency, dropped."""

    def __init__(self, stream: LiveStream, enabled: bool, every: float = 0.5):
        self.stream, self.enabled, self.every = stream, enabled and sys.stderr.isatty(), every
        self._last = 0.0

    def update(self) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self._last < self.every:
            return
        self._last = now
        s = self.stream.stats()
        print(
            f"\rframes {s['frames_out']}  {s['fps']:.1f} fps  latency p50 {s['latency_p50_ms']:.0f} ms  "
            f"dropped {s['dropped']}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def done(self) -> None:
        if self.enabled:
            print(file=sys.stderr)
