"""`streamingeffect run`: a source, an EffectStream, sinks, a pacer for live input, a status line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamingeffect.io.outputs import InterruptShield, PartialFile, close_all, refuse_inputs_as_output
from streamingeffect.io.video import Frame
from streamingeffect.runtime.endpoints import MjpegPreview, Mp4Sink, StdoutSink, open_source, realtime
from streamingeffect.runtime.pacer import LatestFramePacer
from streamingeffect.runtime.stream import EffectStream

log = logging.getLogger(__name__)


class Sink(Protocol):
    def write(self, image: np.ndarray, index: int | None = None) -> None: ...

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


def run(config: RunConfig) -> dict[str, Any]:
    """Stream the input through the effect into the sinks; returns (and prints) the JSON summary."""
    from streamingeffect.io import load_image

    if config.effect is None and config.prompt is None and config.keyframe is None:
        raise ValueError("give --effect ID, --prompt TEXT or --keyframe EDITED.png")
    if config.output is None and config.preview_port is None and not config.raw_stdout:
        raise ValueError("nowhere to send the frames: give --output OUT.mp4, --preview-port or --raw-stdout")
    _refuse_overwriting_inputs(config)
    keyframe = load_image(config.keyframe) if config.keyframe else None
    keyframe_source = load_image(config.keyframe_source) if config.keyframe_source else None
    stream = EffectStream.from_pretrained(config.model, steps=config.steps, mask_cache=config.mask_cache)
    if config.effect or config.prompt:
        stream.set_effect(config.effect or config.prompt or "")
    source = open_source(config.input, config.size, config.max_frames)
    if config.effect or config.prompt:
        stream.warmup(config.size[::-1] if config.size else (256, 256))
    sinks: list[Sink] = []
    output = PartialFile(config.output) if config.output is not None else None  # renamed when complete
    if output is not None:
        sinks.append(Mp4Sink(output.partial, source.fps, source.path if source.has_audio else None))
    if config.preview_port is not None:
        preview = MjpegPreview(config.preview_port)
        print(f"preview: {preview.url}", file=sys.stderr)
        sinks.append(preview)
    if config.raw_stdout:
        sinks.append(StdoutSink())
    paced = source.live or config.realtime
    frames: Iterable[Frame] = source.frames
    pacer = None
    if paced:
        pacer = LatestFramePacer(
            realtime(source.frames) if config.realtime else source.frames,
            on_drop=lambda _: stream.note_dropped(),
        )
        frames = pacer
    pushed: deque[int] = deque()
    status = _Status(stream, enabled=config.status)
    interrupted = False
    shield = InterruptShield()  # a Ctrl-C while the output is finished is noted, not obeyed
    failure: BaseException | None = None
    started = time.perf_counter()
    try:
        try:
            for frame in frames:
                if keyframe is not None:  # the keyframe enters with the first frame
                    stream.set_keyframe(
                        keyframe_source if keyframe_source is not None else frame.image, keyframe
                    )
                    keyframe = None
                pushed.append(frame.index)
                _emit(stream.push(frame.image), pushed, sinks)
                status.update()
        except KeyboardInterrupt:
            interrupted = True
        with shield:
            _flush(stream, pushed, sinks, interrupted)
    except BaseException as error:
        failure = error
        raise
    finally:
        closers = [pacer.close] if pacer is not None else []
        with shield:
            _finish([*closers, *(sink.close for sink in sinks), stream.close], output, failure)
        status.done()
    interrupted = interrupted or shield.caught > 0
    wall = time.perf_counter() - started
    stats = stream.stats()
    summary = {
        "input": source.name,
        "fps_in": source.fps,
        "paced": paced,
        "interrupted": interrupted,
        **stats,
        # End to end: reading and decoding the input, the stream, encoding and writing the output.
        "wall_s": wall,
        "end_to_end_fps": stats["frames_out"] / wall if wall > 0 else 0.0,
        "peak_rss_mb": _peak_rss_mb(),
    }
    text = json.dumps(summary, indent=2)
    if config.status:
        print(text, file=sys.stderr if config.raw_stdout else sys.stdout)
    if config.stats_json is not None:
        config.stats_json.write_text(text + "\n")
    return summary


def _refuse_overwriting_inputs(config: RunConfig) -> None:
    """Refuse an output that is a file this run reads, before anything is loaded or written."""
    inputs = [Path(config.input), config.keyframe, config.keyframe_source]
    for output, flag in ((config.output, "--output"), (config.stats_json, "--stats-json")):
        if output is not None:
            refuse_inputs_as_output(output, inputs, flag)


def _flush(stream: EffectStream, pushed: deque[int], sinks: list[Sink], interrupted: bool) -> None:
    """The frames still inside the stream; after a Ctrl-C (which may have cut a push short) a
    failing flush only costs those frames, never the file."""
    try:
        _emit(stream.flush(), pushed, sinks)
    except Exception as error:
        if not interrupted:
            raise
        log.warning("the last frames were lost after the interruption: %s", error)


def _finish(closers: list[Any], output: PartialFile | None, failure: BaseException | None) -> None:
    """Close everything (the first error wins), then move the finished file into place, or remove
    it when the run failed: a half-written video never appears under the output's name."""
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


def _emit(outputs: list[np.ndarray], pushed: deque[int], sinks: list[Sink]) -> None:
    for image in outputs:
        index = pushed.popleft()
        for sink in sinks:
            sink.write(image, index)


class _Status:
    """A one-line live status on stderr: frames, fps, latency, dropped."""

    def __init__(self, stream: EffectStream, enabled: bool, every: float = 0.5):
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
