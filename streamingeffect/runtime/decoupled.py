"""DecoupledStream: the effect at the camera's rate, the model at its own (Design v2, principle 4).

    stream = DecoupledStream.from_pretrained("default")
    stream.set_effect("neon_outline_cyan")         # the same interface as EffectStream
    stream.warmup((720, 1280))
    for frame in camera:
        (out,) = stream.push(frame)                  # answered at once, every frame
    stream.close()

Two paths run side by side, as Deep Feature Flow runs its heavy network on keyframes only and
carries the result by flow to the frames between:

- **Per frame, at the input's rate** (the caller's thread): person segmentation at a small size
  (``segment_every``-th frames; the others reuse the newest mask), low-resolution flow from this
  frame to the frame the newest model edit was made on, that edit's change and gate warped along the
  flow at the model's resolution (`pipeline.carry`), the keyframe prior carried to this frame when the
  model takes one (only the keys the worker found on its frame's scene, along the worker's flow from
  its frame to each key composed with this frame's flow to the worker's frame: no optical flow per
  key here; for an edit on the face, the worker's face fix moved along this frame's flow), guided
  upsampling and compositing inside the box where the gate is open. It never waits for the model:
  each push returns its frame.
- **The model worker, at its own rate** (a thread): takes the newest frame, runs the causal student
  exactly as `EffectStream` does (parse with landmarks where the effect needs them, the face mesh
  where the keyframe's edit lies on the face, the catalog keyframe, encode, the rollout with its KV
  cache, delta decode, gate) and publishes the result; the per-frame path picks it up at its next
  frame. A prior model takes a catalog effect as its keyframe: the first one is drawn on the
  per-frame path and shown at once, and until the model's first edit the keyframe prior alone is
  shown (the worker publishes it as soon as it has drawn or prepared one); with no keyframe, frames
  pass through until then.

Threads are split on purpose (`ThreadPlan`): the model worker's torch runs on one thread (two torch
threads on a loaded 2-core machine made a 40 ms step take seconds: OpenMP spin-waits fighting the
per-frame path), OpenCV on one, and the interpreter hands the GIL over every 0.1 ms so the
per-frame thread is not held up by the worker's Python.

For evaluation and tests the worker can instead run synchronously on every k-th frame with a lag of
k frames (``refresh_every``): the same schedule as a worker that needs k frame times per refresh,
deterministic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamingeffect.effects import Category, make_effect
from streamingeffect.io.images import I420Image, Picture, picture_size, to_rgb
from streamingeffect.parsing.live import LiveParse, LiveParser
from streamingeffect.pipeline import EffectRequest, EffectRequestError, ModelBundle
from streamingeffect.pipeline.carry import (
    EditCarrier,
    FrameView,
    PriorCarrier,
    compose_flows,
    composite,
    warp_edit,
)
from streamingeffect.pipeline.flow_prior import warp_by_flow
from streamingeffect.pipeline.fused import load_kernels
from streamingeffect.precision import CallChoice, measured_choice
from streamingeffect.runtime.refresher import (
    MODEL_STAGES,
    DecoupledOptions,
    Job,
    ModelEdit,
    Refresher,
    ThreadPlan,
    draw_keyframe,
    drawn_person,
    lower_priority,
    still_flows,
)
from streamingeffect.runtime.stream import StreamError

__all__ = ["RATES", "DecoupledOptions", "DecoupledStream", "ModelEdit", "ThreadPlan", "draw_keyframe"]

log = logging.getLogger(__name__)

RATES = ("decoupled", "every-frame")
FRAME_STAGES = ("segment", "flow", "warp", "prior", "composite")  # the per-frame path
# Scope regions the per-frame person mask gives; the others need landmarks, which only the model
# worker computes: their scope is carried from the model's frame by flow.
PERSON_REGIONS = ("person", "background", "scene")


def _precision_figures(choice: CallChoice) -> dict[str, Any]:
    """A timed precision choice as stats figures (the times nan where it was not timed)."""
    return {"chosen": "bf16" if choice.bf16 else "fp32", "fp32_ms": choice.fp32_ms, "bf16_ms": choice.bf16_ms}


def _moved_keeps(
    keeps: tuple[np.ndarray | None, ...] | None, flow: np.ndarray
) -> tuple[np.ndarray | None, ...] | None:
    """The keys' keep maps on the model's frame, moved to this frame along ``flow`` (this frame -> the
    model's, at the flow's size)."""
    if keeps is None:
        return None
    return tuple(None if keep is None else warp_by_flow(keep, flow, flow.shape[:2]) for keep in keeps)


class _Inbox:
    """A slot of size one for the model worker: the newest frame wins."""

    def __init__(self) -> None:
        self._job: tuple[Job, ...] | None = None
        self._ready = threading.Condition()
        self.replaced = 0

    def put(self, jobs: tuple[Job, ...] | None) -> None:
        with self._ready:
            if self._job is not None:
                self.replaced += 1
            self._job = jobs
            self._ready.notify()

    def take(self, timeout: float) -> tuple[Job, ...] | None:
        with self._ready:
            if self._job is None:
                self._ready.wait(timeout)
            jobs, self._job = self._job, None
            return jobs

    def clear(self) -> None:
        with self._ready:
            self._job = None


@dataclass
class _FrameStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    restarts: int = 0
    edited: int = 0  # outputs that carry the effect (a keyframe prior or a model edit)
    first_output_ms: float | None = None
    first_edit_ms: float | None = None  # the first output with the effect (the keyframe prior, or more)
    first_model_ms: float | None = None  # the first output with a model edit
    started: float | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    edit_age: deque[int] = field(
        default_factory=lambda: deque(maxlen=10_000)
    )  # frames since the edit's frame
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FRAME_STAGES, 0.0))


class _Stage:
    def __init__(self, stats: _FrameStats, stage: str):
        self.stats, self.stage = stats, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.stats.stage_s[self.stage] += time.perf_counter() - self.start


class DecoupledStream:
    """The two-rate runtime (see the module docstring); `EffectStream`'s public interface."""

    engine = "model"
    rate = "decoupled"

    def __init__(self, bundle: ModelBundle, options: DecoupledOptions | None = None):
        options = options or DecoupledOptions()
        if options.autoencoder is not None:
            bundle = bundle.with_distilled(options.autoencoder)
        self.bundle, self.options = bundle, options
        if options.channels_last:
            bundle.autoencoder.to(memory_format=torch.channels_last)
        self._refresher = Refresher(bundle, options.stream, options.carry, options.prior_pixels)
        self._parser = LiveParser(options.parse_side)
        self._carrier = EditCarrier(options.carry)
        self._prior = PriorCarrier(
            EditCarrier(options.carry), options.stream.editor.flow, options.prior_pixels
        )
        self._stats = _FrameStats()
        self._request: EffectRequest | None = None  # what the per-frame path scopes by
        self._keyframe_set = False
        self._generation = 0
        self._index = 0
        self._size: tuple[int, int] | None = None
        self._recent: deque[Job] = deque(maxlen=bundle.net.config.chunk_frames)
        self._published: ModelEdit | None = None  # the newest edit (written by the worker)
        self._scheduled: deque[tuple[int, ModelEdit]] = deque()  # synchronous mode: (shown from, edit)
        self._last: tuple[Picture, LiveParse] | None = None
        self._person_scope: tuple[LiveParse, EffectRequest, np.ndarray] | None = None  # (parse, for, it)
        self._model_lock = threading.Lock()  # a refresh, or a control change: one at a time
        self._publish_lock = threading.Lock()  # the newest result: written by both threads
        self._instant: Category | None = None  # a catalog effect whose first keyframe this thread draws
        self._drawn: tuple[int, np.ndarray, np.ndarray] | None = None  # (generation, frame, that keyframe)
        self._error: BaseException | None = None
        self._inbox = _Inbox()
        self._delivered = threading.Event()  # set by the worker after each refresh (or failure)
        self._closing = threading.Event()
        self._worker: threading.Thread | None = None
        self._restore: Callable[[], None] | None = None
        self._refresh_ms: deque[float] = deque(maxlen=10_000)
        self._refresh_times: deque[float] = deque(maxlen=10_000)

    @classmethod
    def from_pretrained(
        cls, name: str | Path = "default", options: DecoupledOptions | None = None, **stream_options: Any
    ) -> DecoupledStream:
        """The bundled default student ("default"), or a checkpoint folder; ``stream_options`` are
        `StreamOptions` fields for the model worker."""
        base = options or DecoupledOptions()
        return cls(ModelBundle.load(name), replace(base, stream=replace(base.stream, **stream_options)))

    @property
    def threaded(self) -> bool:
        return self.options.refresh_every is None

    # ------------------------------------------------------------------------------------- control

    def set_effect(self, id_or_prompt: str) -> None:
        """A catalog effect id or a free-text prompt; takes hold at the next model refresh."""
        try:
            request = EffectRequest.parse(id_or_prompt)
        except EffectRequestError as error:
            raise StreamError(str(error)) from error
        with self._model_lock:
            self._refresher.set_effect(id_or_prompt)
            self._request = request
            self._new_generation()
        # A prior model shows a catalog keyframe as the effect: drawn on this thread for the first frame.
        self._instant = request.category if self.bundle.net.config.prior and self.threaded else None

    def set_keyframe(self, source_frame: Any, edited_frame: Any) -> None:
        """An edited frame (and the frame it was edited from) becomes the reference."""
        with self._model_lock:
            self._refresher.set_keyframe(source_frame, edited_frame)
            self._keyframe_set = True
            self._instant = None  # a painted keyframe wins over the catalog's
            if self._request is None:
                self._request = EffectRequest.keyframe_only()
            self._new_generation()

    def clear_keyframe(self) -> None:
        with self._model_lock:
            self._refresher.clear_keyframe()
            self._keyframe_set = False
            self._new_generation()

    def _new_generation(self) -> None:
        """Edits made before a change of effect or keyframe are not shown any more."""
        self._generation += 1
        self._published = None
        self._scheduled.clear()
        self._inbox.clear()

    def note_dropped(self, count: int = 1) -> None:
        """Frames the caller's pacer dropped before they reached the stream (for the stats)."""
        self._stats.dropped += count

    def warmup(self, size: tuple[int, int] = (256, 256)) -> None:
        """Load everything a first frame needs (MediaPipe graphs, text features, kernels, the precision
        benchmark, the catalog renderer) at ``size`` (height, width) through both paths — the model's
        on the worker thread itself — then start clean. The frames are blank with a drawn person, so
        the renderer and the scope draw something."""
        if self._request is None:
            raise StreamError("set an effect (or keyframe) before warming up")
        self._start_worker()  # the thread plan first: precision is measured at the worker's threads
        measured_choice(self.bundle.matmul_shape)
        self.bundle.autoencoder_choice()
        load_kernels()  # the blank frames below may leave the gate shut, and the kernels unloaded
        blank = np.full((*size, 3), 127, np.uint8)
        with self._model_lock:
            self._refresher.warmup(size)
        self._parser(blank, False)
        parse = drawn_person(size, self.options.parse_side)
        # Both kinds of frame a stream may be pushed (a video's I420 planes need even sides).
        planar = [I420Image.from_rgb(blank)] if size[0] % 2 == 0 and size[1] % 2 == 0 else []
        for index in range(2):
            view = self._carrier.view(blank)
            job = Job(index, blank, parse, view, time.perf_counter(), self._generation)
            if self._instant is not None:
                # The first frame's keyframe is drawn on this thread: its large buffers too, twice (the
                # allocator keeps them from the second time on). A fresh 720p buffer's first touch took
                # 4 ms, and up to 90 on this virtual machine.
                self._draw_instant(self._instant, job)
            made = self._refresh_now((job,) * self.bundle.net.config.chunk_frames)
            for picture in [blank, *planar]:
                self._compose(picture, view, parse, replace(made, index=-1), 0)
        with self._model_lock:
            self._refresher.reset()
            self._refresher._stats = type(self._refresher._stats)()
        self.reset()
        self._stats = _FrameStats()
        self._refresh_ms.clear()
        self._refresh_times.clear()

    def _refresh_now(self, jobs: tuple[Job, ...]) -> ModelEdit:
        """A refresh of ``jobs``, waited for: on the worker thread when there is one."""
        if self._worker is None:
            with self._model_lock:
                return self._timed_refresh(jobs)
        self._delivered.clear()
        self._inbox.put(jobs)
        if not self._delivered.wait(timeout=300):
            raise StreamError("the model worker did not answer within 5 minutes")
        if self._error is not None:
            error, self._error = self._error, None
            raise StreamError(f"the model worker failed: {type(error).__name__}: {error}") from error
        assert self._published is not None
        return self._published

    # ------------------------------------------------------------------------------------- frames

    def push(self, frame: Any) -> list[Picture]:
        """Add a frame; returns its output at once (one frame in, one frame out). I420 planes
        (`I420Image`, as a video decodes) are answered in I420 planes, anything else in RGB."""
        if self._request is None:
            raise StreamError("nothing to apply: call set_effect(id or prompt) or set_keyframe(...) first")
        if self._error is not None:
            error, self._error = self._error, None
            raise StreamError(f"the model worker failed: {type(error).__name__}: {error}") from error
        now = time.perf_counter()
        if self._stats.started is None:
            self._stats.started = now
            self._start_worker()
        image = self._as_frame(frame)
        size = picture_size(image)
        if self._size is not None and size != self._size:
            self._restart(size)
        self._size = size
        index = self._index
        self._index += 1
        self._stats.frames_in += 1
        with _Stage(self._stats, "segment"):
            parse = self._segment(image, index)
        with _Stage(self._stats, "flow"):
            view = self._carrier.view(image)
        self._last = (image, parse)
        job = Job(index, image, parse, view, now, self._generation)
        self._recent.append(job)
        if self._instant is not None and self._shown() is None:
            # Drawn before the worker gets the frame, so that its first refresh does not compete with
            # the first frame for the cores (and takes this drawing instead of making its own).
            self._instant_keyframe(job)
        made = self._schedule(job)
        output = self._compose(image, view, parse, made, index)
        self._record(now, made, index)
        return [output]

    def flush(self) -> list[np.ndarray]:
        return []  # every frame was answered when it was pushed

    def reset(self) -> None:
        """Start a new stream (same effect and keyframe)."""
        with self._model_lock:
            self._refresher.reset()
            self._published = None
            self._scheduled.clear()
            self._inbox.clear()
        self._parser.reset()
        self._recent.clear()
        self._index, self._size, self._last = 0, None, None

    def close(self) -> None:
        self._closing.set()
        self._inbox.put(None)
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None
        self._refresher.close()
        self._parser.close()
        if self._restore is not None:
            self._restore()
            self._restore = None

    def __enter__(self) -> DecoupledStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def last_parsed(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(the last pushed frame [H, W, 3] uint8, its person mask [H, W] float in 0..1), or None."""
        if self._last is None:
            return None
        image, parse = self._last
        return to_rgb(image), parse.region_at_frame_size("person")

    def stats(self) -> dict[str, Any]:
        """`EffectStream.stats`' figures for the per-frame path, and the model worker's: refreshes per
        second, time per refresh and per model stage, the edit's age in frames."""
        s = self._stats
        elapsed = (time.perf_counter() - s.started) if s.started else 0.0
        latencies = np.array(list(s.latencies_ms))
        model = self._refresher.model_stats()
        refreshes = len(self._refresh_times)
        frame_total = sum(s.stage_s.values())
        model_stage = {k: float(v) for k, v in model["stage_ms_per_frame"].items() if k in MODEL_STAGES}
        model_total_ms = sum(model_stage.values()) * refreshes
        cpu_total = frame_total * 1000 + model_total_ms or 1.0
        shares = {k: 1000 * v / cpu_total for k, v in s.stage_s.items()}
        shares |= {f"model {k}": v * refreshes / cpu_total for k, v in model_stage.items()}
        refresh_ms = np.array(list(self._refresh_ms))
        return {
            "rate": self.rate,
            "frames_in": s.frames_in,
            "frames_out": s.frames_out,
            "dropped": s.dropped,
            "restarts": s.restarts,
            "sink_updates": model["sink_updates"],
            "fps": s.frames_out / elapsed if elapsed > 0 else 0.0,
            # The first output that carries the effect: a catalog keyframe's prior, or the model's edit.
            "first_frame_ms": s.first_edit_ms,
            "first_model_edit_ms": s.first_model_ms,
            "first_output_ms": s.first_output_ms,
            "latency_p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "latency_p95_ms": float(np.percentile(latencies, 95)) if len(latencies) else float("nan"),
            "edited_share": s.edited / s.frames_out if s.frames_out else 0.0,
            # The current effect's (or keyframe's) model edit has arrived: outputs carry it.
            "effect_ready": self._published is not None and self._published.generation == self._generation,
            "edit_age_frames": float(np.mean(s.edit_age)) if s.edit_age else float("nan"),
            "refreshes": refreshes,
            "refreshes_per_s": refreshes / elapsed if elapsed > 0 else 0.0,
            "refresh_ms_p50": float(np.percentile(refresh_ms, 50)) if len(refresh_ms) else float("nan"),
            "stage_ms_per_frame": {k: 1000 * v / max(1, s.frames_out) for k, v in s.stage_s.items()},
            "model_ms_per_refresh": model_stage,
            "autoencoder": None if self.bundle.autoencoder_dir is None else self.bundle.autoencoder_dir.name,
            "autoencoder_precision": _precision_figures(self.bundle.autoencoder_choice()),
            "stage_share": shares,
            "effect": self._request.label if self._request else None,
            "keyframe": self._keyframe_set,
            "anchored": self._refresher._anchor is not None,
            "mask_cache": self.options.stream.mask_cache,
            "tokens_reused": model["tokens_reused"],
            "steps": len(self._refresher.times),
            "cache_tokens": self._refresher._cache.tokens(),
        }

    # ------------------------------------------------------------------------------------- internals

    def _start_worker(self) -> None:
        if not self.threaded or self._worker is not None:
            return
        self._restore = self.options.threads.apply()
        self._worker = threading.Thread(target=self._work, name="model-worker", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        """The model worker: the newest frame, a refresh, publish; again."""
        lower_priority(self.options.threads.worker_nice)
        while not self._closing.is_set():
            jobs = self._inbox.take(timeout=0.5)
            if jobs is None or self._closing.is_set():
                continue
            with self._model_lock:
                if jobs[-1].generation != self._generation:
                    continue  # made for an effect that was switched away meanwhile
                drawn, self._drawn = self._drawn, None
                if drawn is not None and drawn[0] == self._generation:
                    self._refresher.take_drawn_keyframe(drawn[1], drawn[2])  # here, not on a frame's time
                try:
                    made = self._timed_refresh(jobs, self._publish_prior)
                except Exception as error:  # handed to the caller at the next push
                    log.exception("the model worker failed")
                    self._error = error
                    self._delivered.set()
                    continue
                with self._publish_lock:
                    self._published = made
                self._delivered.set()

    def _publish_prior(self, made: ModelEdit) -> None:
        """An early result (the keyframe prior alone): shown only until the effect has a model edit."""
        with self._publish_lock:
            current = self._published
            if current is None or current.generation != made.generation:
                self._published = made

    def _timed_refresh(
        self, jobs: tuple[Job, ...], early: Callable[[ModelEdit], None] | None = None
    ) -> ModelEdit:
        start = time.perf_counter()
        made = self._refresher.refresh(jobs, early)
        self._refresh_ms.append(1000 * (made.made_at - start))
        self._refresh_times.append(made.made_at)
        return made

    def _jobs(self) -> tuple[Job, ...]:
        """The newest frames for a refresh: a chunk's worth (the oldest repeated at the start)."""
        frames = list(self._recent)
        need = self.bundle.net.config.chunk_frames
        return tuple([frames[0]] * (need - len(frames)) + frames)

    def _schedule(self, job: Job) -> ModelEdit | None:
        """Hand the frame to the model (threaded: the worker's slot; synchronous: a refresh every k
        frames, shown ``refresh_lag`` frames later) -> the edit to show on this frame, if any."""
        if self.threaded:
            self._inbox.put(self._jobs())
            return self._shown()
        every = self.options.refresh_every or 1
        lag = every if self.options.refresh_lag is None else self.options.refresh_lag
        if job.index % every == 0:
            with self._model_lock:
                made = self._timed_refresh(self._jobs())
            first = self._published is None and not self._scheduled
            self._scheduled.append((job.index if first else job.index + lag, made))
        while self._scheduled and self._scheduled[0][0] <= job.index:
            self._published = self._scheduled.popleft()[1]
        return self._published

    def _shown(self) -> ModelEdit | None:
        """The newest result of the current effect and keyframe (threaded mode), if any."""
        made = self._published
        return made if made is not None and made.generation == self._generation else None

    def _instant_keyframe(self, job: Job) -> None:
        """The catalog effect's keyframe drawn on this frame, here (a few tens of ms, once per effect,
        instead of a frame time or more while the worker gets to it), and published until the worker's
        first result; nothing while the effect's anchor is not in view (tried again next frame). The
        worker's next refresh takes the drawing as its keyframe (for an effect drawn from the person's
        mask alone: one that needs landmarks is drawn again by the worker, with them)."""
        assert self._instant is not None and self._request is not None
        drawn = self._draw_instant(self._instant, job)
        if drawn is None:
            return
        self._instant = None
        edited, change = drawn
        keys = ((job.image, change, 1.0),)
        self._publish_prior(self._refresher._prior_only(job, job.parse, keys, still_flows(job.view)))
        if not self._request.needs_landmarks:
            self._drawn = (job.generation, job.image, edited)  # the worker's to take (`_work`)

    def _draw_instant(self, category: Category, job: Job) -> tuple[np.ndarray, np.ndarray] | None:
        """(the frame with the catalog keyframe drawn on it, its change [H, W, 3] float32), or None when
        the drawing changed nothing."""
        size = self._refresher._drawing_size(job.image.shape[:2])
        edited, changed = draw_keyframe(
            make_effect(category, self.options.stream.seed, size), job.image, job.parse
        )
        return (edited, cv2.subtract(edited, job.image, dtype=cv2.CV_32F)) if changed else None

    def _segment(self, image: Picture, index: int) -> LiveParse:
        """This frame's person parse, or on the frames between segmentations the newest one."""
        if (
            self._last is not None
            and index % self.options.segment_every
            and picture_size(self._last[0]) == picture_size(image)
        ):
            return self._last[1]
        return self._parser(image, False, index=index)

    def _compose(
        self, image: Picture, view: FrameView, parse: LiveParse, made: ModelEdit | None, index: int
    ) -> Picture:
        """This frame's output: the newest edit carried here by flow, at full resolution."""
        if made is None or made.view.size != view.size:
            return image.copy()  # no edit yet (or one of another size): the frame passes through
        request = self._request or EffectRequest.keyframe_only()
        person = parse.person if request.follows_person else None
        flow, edit, scope = None, None, np.zeros((1, 1), np.float32)
        # This frame -> the model's frame: carries the edit, and the priors by composing with their flows.
        if made.index != index and (made.edit is not None or made.prior_flows is not None):
            with _Stage(self._stats, "flow"):
                flow = self._carrier.flow(view, made.view, person)
        if made.edit is not None:  # else the keyframe prior alone (before the model's first edit)
            with _Stage(self._stats, "warp"):
                edit = made.edit if flow is None else warp_edit(made.edit, flow, view)
                scope = self._scope(request, parse, made, flow)
        with _Stage(self._stats, "prior"):
            prior = None
            if made.priors:  # the keys the worker checked on its frame (no backward flow here)
                flows = made.prior_flows
                keeps = made.prior_keeps if flows is not None else None  # they go with the worker's flows
                if flows is not None and flow is not None:
                    flows = tuple(compose_flows(flow, later) for later in flows)
                    keeps = _moved_keeps(keeps, flow)
                prior = self._prior.carry(view, made.priors, person, request.prior_reach, False, flows, keeps)
        with _Stage(self._stats, "composite"):
            return composite(image, edit, scope, self.options.stream.editor.guided, prior)

    def _scope(
        self, request: EffectRequest, parse: LiveParse, made: ModelEdit, flow: np.ndarray | None
    ) -> np.ndarray:
        """Where the effect may act on this frame, at parse resolution: from this frame's person mask,
        or (for regions that need landmarks) the model frame's scope carried here by flow."""
        if request.scope.region in PERSON_REGIONS:
            # The frames between segmentations share their parse, and so their scope (~1 ms at 720p).
            cached = self._person_scope
            if cached is None or cached[0] is not parse or cached[1] is not request:
                cached = (parse, request, request.scope.mask(parse.parts.regions))
                self._person_scope = cached
            return cached[2]
        if flow is None:
            return made.scope
        return warp_by_flow(made.scope, flow, made.scope.shape[:2])

    def _record(self, pushed_at: float, made: ModelEdit | None, index: int) -> None:
        s = self._stats
        done = time.perf_counter()
        s.latencies_ms.append(1000 * (done - pushed_at))
        s.frames_out += 1
        if s.first_output_ms is None and s.started is not None:
            s.first_output_ms = 1000 * (done - s.started)
        if made is not None:
            s.edited += 1
            s.edit_age.append(index - made.index)
            if s.first_edit_ms is None and s.started is not None:
                s.first_edit_ms = 1000 * (done - s.started)
            if s.first_model_ms is None and s.started is not None and made.edit is not None:
                s.first_model_ms = 1000 * (done - s.started)

    def _restart(self, size: tuple[int, int]) -> None:
        log.warning("frame size changed from %s to %s: restarting the stream", self._size, size)
        self._stats.restarts += 1
        with self._model_lock:
            self._refresher._restart(size)
            self._new_generation()
        self.reset()

    def _as_frame(self, frame: Any) -> Picture:
        try:
            image = frame if isinstance(frame, I420Image) else to_rgb(frame)
        except (TypeError, ValueError) as error:
            raise StreamError(f"bad frame: {error}") from error
        height, width = picture_size(image)
        if min(height, width) < 16:
            raise StreamError(f"bad frame: {width}x{height} is too small (16x16 at least)")
        return image
