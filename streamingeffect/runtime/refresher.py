"""The model worker's side of the two-rate runtime (`DecoupledStream`): one model refresh at a time.

`Refresher` runs the causal student exactly as `EffectStream` does, on the newest frames the per-frame
path hands it (`Job`), and returns its edit at the model's resolution with what carries it to later
frames (`ModelEdit`), on `DecoupledStream`'s model worker thread (or, on the synchronous schedule, on
the caller's). The options both paths share (`DecoupledOptions`) live here too.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamingeffect.effects import Category, Effect, make_effect
from streamingeffect.io.images import Picture, to_rgb
from streamingeffect.parsing.live import LiveParse
from streamingeffect.parsing.masks import region_masks
from streamingeffect.parsing.types import FrameParts
from streamingeffect.pipeline import (
    EditorOptions,
    EffectRequest,
    FrameEditor,
    ModelBundle,
    PreparedFrame,
    face_follow,
)
from streamingeffect.pipeline.bundle import DISTILLED_AUTOENCODER
from streamingeffect.pipeline.carry import (
    CarriedPrior,
    CarrySettings,
    EditCarrier,
    FrameView,
    PriorCarrier,
    confidence_on_window,
    mask_box,
    prior_on_window,
    union,
)
from streamingeffect.pipeline.edit import LowResEdit, Window, channel_peak, gray
from streamingeffect.runtime.stream import EffectStream, StreamOptions, _Timer

log = logging.getLogger(__name__)

KEYFRAME_OVERSAMPLING = 3  # a catalog keyframe for a model without prior: window >= 3x the model's size
MODEL_STAGES = ("parse", "encode", "transformer", "decode")  # one model refresh (EffectStream's)
# The face's keep map (`face_follow.FaceFix`) the per-frame path moves to later frames is blurred by this
# many flow pixels: it also holds the skin's fine texture, where the mesh and the flow sample the
# keyframe's cover a little apart, and that texture lands off the carried change once moved. On the
# quick suite's face-paint clips at a refresh every 3rd frame (held-out people; PSNR in the edit, text /
# keyframe set): 25.80 / 25.74 dB moved sharp, 26.19 / 26.14 blurred by 4, 26.29 / 26.26 with no face
# geometry in the live path; on the long keyframe set (10 s of pose change) 28.04, 27.42 and 25.30.
MOVED_KEEP_BLUR = 4.0


@dataclass(frozen=True)
class ThreadPlan:
    """How the two paths share the cores (process-wide settings, restored when the stream closes)."""

    model_threads: int = 1  # torch intra-op threads (only the model worker runs torch)
    opencv_threads: int = 1  # OpenCV's pool (the per-frame path): the model has the other core
    switch_interval_s: float = 0.0001  # GIL hand-over: the worker's Python does not hold up a frame
    # The worker's OS priority below the per-frame path's (Linux nice, per thread): when the cores are
    # short, the model refreshes less often rather than frames going unanswered.
    worker_nice: int = 5

    def apply(self) -> Callable[[], None]:
        """Apply the plan; returns what restores the settings found once every stream that applied it
        has called its restore (a studio runs several streams in one process)."""
        with _PLANS_LOCK:
            if not _PLANS_ACTIVE:
                _PLANS_BEFORE[:] = [torch.get_num_threads(), cv2.getNumThreads(), sys.getswitchinterval()]
            _PLANS_ACTIVE.append(self)
            torch.set_num_threads(self.model_threads)
            cv2.setNumThreads(self.opencv_threads)
            sys.setswitchinterval(self.switch_interval_s)
        done = threading.Event()

        def restore() -> None:
            with _PLANS_LOCK:
                if done.is_set():
                    return
                done.set()
                _PLANS_ACTIVE.remove(self)
                if not _PLANS_ACTIVE:
                    threads, opencv, interval = _PLANS_BEFORE
                    torch.set_num_threads(int(threads))
                    cv2.setNumThreads(int(opencv))
                    sys.setswitchinterval(float(interval))

        return restore


_PLANS_LOCK = threading.Lock()
_PLANS_ACTIVE: list[ThreadPlan] = []
_PLANS_BEFORE: list[float] = []


def worker_stream_options() -> StreamOptions:
    # The cache write folded into the last denoising pass (one pass fewer per refresh): on the quick
    # suite's sets at a refresh every 3rd frame it moved PSNR in the edit by +0.16 / -0.06 dB (text /
    # keyframe) and outside it by -0.50 / +0.54 dB (`streamingeffect bench rates`, docs/BENCHMARKS.md).
    return StreamOptions(fold_cache_write=True)


@dataclass(frozen=True)
class DecoupledOptions:
    stream: StreamOptions = field(default_factory=worker_stream_options)  # how the worker runs the student
    # None: the worker refreshes on its own thread whenever it is free. k: synchronously on every k-th
    # frame, shown ``refresh_lag`` frames later (default k), as a worker needing k frame times would.
    refresh_every: int | None = None
    refresh_lag: int | None = None
    parse_side: int = 256  # the per-frame segmentation's input size (long side)
    # Person segmentation on every k-th frame; the frames between reuse the newest mask, one frame
    # old (the mask's temporal smoothing lags more than that). At 720p it took 6-8 ms of the frame's 33.
    segment_every: int = 2
    carry: CarrySettings = field(default_factory=CarrySettings)
    threads: ThreadPlan = field(default_factory=ThreadPlan)
    channels_last: bool = True  # the autoencoder's convolutions in channels-last layout (~30% faster here)
    # The model worker encodes and decodes with this autoencoder when it was distilled into the model's
    # latent space (`ModelBundle.with_distilled`; the bundled nano for the bundled models), else with the
    # model's own. None: always the model's own.
    autoencoder: Path | None = DISTILLED_AUTOENCODER
    # The keyframe prior is carried (and a catalog keyframe drawn) at a resolution of at most this many
    # pixels (640x360's; None: the frame's own). At 720p on this CPU the composite with the prior took
    # 11.6 ms carried at 640x360, 21.3 at 960x540; against carrying at 720p itself the output differs
    # by 46.5 dB PSNR (neon_outline_cyan), 48.1 (glow_aura_gold), 59.6 (face_paint_blue).
    prior_pixels: float | None = 640 * 360

    def __post_init__(self) -> None:
        if self.segment_every < 1:
            raise ValueError(f"segment_every must be >= 1, got {self.segment_every}")
        if self.refresh_every is not None and self.refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, got {self.refresh_every}")
        if self.refresh_lag is not None and (self.refresh_every is None or self.refresh_lag < 0):
            raise ValueError("refresh_lag goes with refresh_every, and is >= 0")


@dataclass(frozen=True)
class Job:
    """A frame on its way to the model worker, with what the per-frame path already computed."""

    index: int
    picture: Picture  # as pushed: RGB, or I420 planes
    parse: LiveParse
    view: FrameView
    pushed_at: float
    generation: int

    @property
    def image(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB (planes converted once, by the first thread that asks)."""
        return to_rgb(self.picture)


PriorKey = tuple[np.ndarray, np.ndarray, float]  # a keyframe's source, its change, its weight


@dataclass(frozen=True)
class ModelEdit:
    """One model refresh: the edit of one frame at the model's resolution, and what carries it on."""

    edit: LowResEdit | None  # None: the keyframe prior alone, published before the model's first edit
    view: FrameView  # the frame's gray views (flow to later frames starts here)
    scope: np.ndarray  # [h, w] the effect's scope on that frame at parse resolution
    priors: tuple[PriorKey, ...]  # the keyframes it came from
    # Each prior's flow from this frame to its keyframe at the flow's size (spread for anchored effects):
    # the per-frame path composes its flow to this frame with them instead of running DIS per key.
    # None: not known (the per-frame path runs its own).
    prior_flows: tuple[np.ndarray, ...] | None
    # Each prior's share that stays at each pixel of this frame [fh, fw] (the face's geometry,
    # `face_follow`; None: all of it); None: all of every prior.
    prior_keeps: tuple[np.ndarray | None, ...] | None
    index: int
    generation: int
    made_at: float


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux threads have their own; elsewhere, or
    without permission, nothing happens)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + nice)
    except OSError:
        log.debug("could not lower the model worker's priority")


def drawn_person(size: tuple[int, int], parse_side: int) -> LiveParse:
    """A parse of a frame of ``size`` with an upright ellipse for a person (warming up the drawing)."""
    height, width = size
    scale = min(1.0, parse_side / max(height, width))
    shape = (round(height * scale), round(width * scale))
    person = np.zeros(shape, np.float32)
    centre = (shape[1] // 2, shape[0] * 2 // 3)
    cv2.ellipse(person, centre, (max(1, shape[1] // 6), max(1, shape[0] // 2)), 0, 0, 360, 1.0, -1)
    regions = region_masks(person, None, [], None)
    return LiveParse(FrameParts(index=0, time=0.0, regions=regions), size)


class WorkerEditor(FrameEditor):
    """`FrameEditor` for the model worker, which never composites at full resolution: a frame's masks
    stay at the parse's resolution."""

    def _masks(self, parse: LiveParse, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """The model's mask cut from the parse's resolution, and the scope left there (the worker never
        composites at full resolution; its gate cuts the scope with `Window.cut_at`): at 720p the two
        masks brought to the frame's size and cut took ~5 ms of a refresh."""
        frame_size = parse.frame_size
        model_mask = parse.parts.regions.get(self.request.model_region)
        mask = window.cut_at(model_mask, frame_size, self.bundle.latent_side)
        return mask, self.request.scope.mask(parse.parts.regions)


class CarryingEditor(WorkerEditor):
    """`WorkerEditor` whose flow prior is carried as the per-frame path carries it (`PriorCarrier`, at up
    to ``prior_pixels``) instead of `FlowPrior` at full resolution, and only onto the model's window
    (`prior_on_window`): the model sees the prior at its own resolution, so ``frame.prior`` stays
    None (the full-resolution prior is the per-frame path's). Measured at 720p: `FlowPrior` took 46 ms
    a frame; the whole frame's composite with the prior carried at 960x540, 17; the window's, 5-6. An
    edit on the face keeps to the frame's face mesh (`_follow_face`), and the frame says how, for the
    per-frame path to carry on."""

    def __init__(
        self, bundle: ModelBundle, options: EditorOptions, carry: CarrySettings, prior_pixels: float | None
    ):
        super().__init__(bundle, EffectRequest.keyframe_only(), options)
        self.carrier = PriorCarrier(EditCarrier(carry), options.flow, prior_pixels)

    def _add_prior(self, frame: PreparedFrame) -> np.ndarray | None:
        frame.prior_keys = self._next_prior_keys(frame.image.shape)
        if not frame.prior_keys:
            return None
        anchor = frame.parse.person if self.request.follows_person else None
        view = frame.view if frame.view is not None else self.carrier.carrier.view(frame.image)
        carried = self.carrier.carry(view, frame.prior_keys, anchor, self.request.prior_reach)
        # The per-frame path carries only the keys this frame could carry (not across a scene cut).
        frame.prior_keys = () if carried is None else tuple(frame.prior_keys[i] for i in carried.used)
        frame.prior_flows = () if carried is None else tuple(key[1] for key in carried.keys)
        if carried is None or carried.confidence is None:
            return None
        carried = self._follow_face(frame, carried)
        resolution, side = self.bundle.resolution, self.bundle.latent_side
        cut = prior_on_window(frame.image, carried, frame.window, resolution, frame.cut)
        confidence = confidence_on_window(carried.confidence, frame.image.shape[:2], frame.window, resolution)
        frame.confidence = torch.from_numpy(
            cv2.resize(confidence, (side, side), interpolation=cv2.INTER_AREA)
        )[None]
        frame.doubt = 1.0 - confidence  # [R, R]
        frame.guide = gray(cut)
        return cut

    def _follow_face(self, frame: PreparedFrame, carried: CarriedPrior) -> CarriedPrior:
        """The keys whose edit lies on the face, kept to the frame's face mesh (`face_follow`): each
        key's carry scaled by the fix's keep, and the fixes' fills added as one more key made on this
        frame (zero flow). ``frame``'s prior keys, flows and keeps say the same for the per-frame path,
        which carries them on from this frame."""
        face, faces = frame.parse.face_at_frame_size(), self.flow.faces
        if face is None or faces is None or not self._follows_face:
            return carried
        keys, keeps, fill = list(carried.keys), [], None
        for position, (change, flow, keep, weight) in enumerate(carried.keys):
            key = faces.key(frame.prior_keys[position][1])
            found = None if key is None else face_follow.fix(key, flow, face, frame.image.shape[:2])
            keeps.append(None if found is None else cv2.GaussianBlur(found.keep, (0, 0), MOVED_KEEP_BLUR))
            if found is None:
                continue
            keys[position] = (change, flow, keep * found.keep, weight)
            fill = weight * found.fill if fill is None else fill + weight * found.fill
        frame.prior_keeps = tuple(keeps)
        carried = replace(carried, keys=keys)
        return carried if fill is None else self._with_fill(frame, carried, fill)

    @staticmethod
    def _with_fill(frame: PreparedFrame, carried: CarriedPrior, fill: np.ndarray) -> CarriedPrior:
        """``carried`` with the face's fill [fh, fw, C] (made on this frame) as one more key with zero
        flow; ``frame``'s prior keys, flows and keeps with it."""
        size = carried.keys[0][0].shape[:2]
        support = mask_box(channel_peak(fill), size)  # at the flow's size: a quarter of the pixels
        fill = cv2.resize(fill, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)  # the carrying grid
        still = np.zeros_like(carried.keys[0][1])
        frame.prior_keys += ((frame.image, fill, 1.0),)
        frame.prior_flows = (*(frame.prior_flows or ()), still)
        frame.prior_keeps = (*(frame.prior_keeps or ()), None)
        box = carried.box
        if support is not None:
            box = support if box is None else union(box, support)
        keys = [*carried.keys, (fill, still, np.ones(still.shape[:2], np.float32), 1.0)]
        return replace(carried, keys=keys, box=box)


def still_flows(view: FrameView) -> tuple[np.ndarray]:
    """The flow from a frame to a keyframe drawn on that frame: zero (one key)."""
    return (np.zeros((*view.small.shape, 2), np.float32),)


def draw_keyframe(renderer: Effect, image: np.ndarray, parse: LiveParse) -> tuple[np.ndarray, bool]:
    """A catalog effect drawn on ``image`` [H, W, 3] at the renderer's size, its change brought back to
    the frame's size -> (the edited frame [H, W, 3] uint8, whether the drawing changed anything)."""
    size = (renderer.height, renderer.width)
    small = image if size == image.shape[:2] else cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    drawn = renderer.render(small, LiveParse(parse.parts, size).parts_at_frame_size())
    changed = not np.array_equal(drawn, small)
    if small is image:
        return drawn, changed
    change = cv2.resize(
        cv2.subtract(drawn, small, dtype=cv2.CV_16S), image.shape[1::-1], interpolation=cv2.INTER_LINEAR
    )
    return cv2.add(image, change, dtype=cv2.CV_8U), changed  # saturated


class Refresher(EffectStream):
    """`EffectStream`'s model path, one refresh at a time, returning the edit at the model's resolution
    instead of a composited frame (so the student runs exactly as in the every-frame stream)."""

    def __init__(
        self, bundle: ModelBundle, options: StreamOptions, carry: CarrySettings, prior_pixels: float | None
    ):
        super().__init__(bundle, options)
        self.prior_pixels = prior_pixels
        self._editor.close()
        self._editor = (
            CarryingEditor(bundle, options.editor, carry, prior_pixels)
            if bundle.net.config.prior
            else WorkerEditor(bundle, EffectRequest.keyframe_only(), options.editor)
        )

    def _draw_catalog(
        self, category: Category, image: np.ndarray, parse: LiveParse
    ) -> tuple[np.ndarray, bool]:
        """`EffectStream._draw_catalog` at `_drawing_size` (with a prior, the size the per-frame path
        carries it at; without, the model's window's): the renderer's sizes follow the frame's, and at
        720p a full-size drawing took 58 ms, the longest step before a stream's first edit."""
        size = self._drawing_size(image.shape[:2])
        if self._renderer is None or (self._renderer.height, self._renderer.width) != size:
            self._renderer = make_effect(category, self.options.seed, size)
        return draw_keyframe(self._renderer, image, parse)

    def take_drawn_keyframe(self, image: np.ndarray, edited: np.ndarray) -> None:
        """The catalog effect's keyframe, drawn on ``image`` elsewhere at `_drawing_size` (the per-frame
        path's first frame): the next refresh uses it instead of drawing its own."""
        self._install_catalog_keyframe(image, edited, True)

    def _drawing_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The catalog keyframe's drawing size: with a prior, the size the per-frame path carries it at
        (``prior_pixels``); without, small enough that the model's window still holds
        KEYFRAME_OVERSAMPLING x its pixels."""
        height, width = size
        if self.bundle.net.config.prior:
            if self.prior_pixels is None:
                return size
            scale = min(1.0, (self.prior_pixels / (height * width)) ** 0.5)
        else:
            scale = min(1.0, KEYFRAME_OVERSAMPLING * self.bundle.resolution / min(height, width))
        return max(16, round(height * scale)), max(16, round(width * scale))

    def refresh(self, jobs: tuple[Job, ...], early: Callable[[ModelEdit], None] | None = None) -> ModelEdit:
        """The newest frames (one per chunk frame, the last is the one the edit is for) -> its edit.
        ``early``: handed the keyframe prior alone before the model runs: a catalog keyframe as soon as
        it is drawn on the frame, any keyframe once the frames are prepared (the first frames of an
        effect then carry it sooner)."""
        for job in jobs:
            if self._stats.started is None:
                self._stats.started = job.pushed_at
            self._stats.frames_in += 1
            self._pending.append(self._prepare_parsed(job, early))
        prepared = self._pending[-1]
        if early is not None and prepared.prior_keys:
            flows, keeps = prepared.prior_flows, prepared.prior_keeps
            early(self._prior_only(jobs[-1], prepared.parse, prepared.prior_keys, flows, keeps))
        frames, lows = self._model_chunk()
        frame = frames[-1]
        low = self._editor.doubted(frame, lows[-1])  # as `FrameEditor.apply` does
        self._stats.frames_out += 1
        window, size = frame.window, low.shape[0]
        gate = self.options.editor.gate(low, window.cut_at(frame.scope, frame.image.shape[:2], size))
        return ModelEdit(
            edit=LowResEdit(window, low, gate, frame.guide),
            view=jobs[-1].view,
            scope=frame.scope,  # at parse resolution (`WorkerEditor`)
            priors=frame.prior_keys,
            prior_flows=frame.prior_flows,
            prior_keeps=frame.prior_keeps,
            index=jobs[-1].index,
            generation=jobs[-1].generation,
            made_at=time.perf_counter(),
        )

    def _prior_only(
        self,
        job: Job,
        parse: LiveParse,
        priors: tuple[PriorKey, ...],
        flows: tuple[np.ndarray, ...] | None,
        keeps: tuple[np.ndarray | None, ...] | None = None,
    ) -> ModelEdit:
        """The keyframe prior of ``job``'s frame with no model edit (shown until the model's first)."""
        return ModelEdit(
            edit=None,
            view=job.view,
            scope=self._editor.request.scope.mask(parse.parts.regions),
            priors=priors,
            prior_flows=flows,
            prior_keeps=keeps,
            index=job.index,
            generation=job.generation,
            made_at=time.perf_counter(),
        )

    def _prepare_parsed(self, job: Job, early: Callable[[ModelEdit], None] | None = None) -> PreparedFrame:
        """`EffectStream._prepare` with the per-frame path's parse where it suffices (no landmarks)."""
        with _Timer(self._stats, "parse"):
            parse = self._editor.parse(job.image) if self._editor.needs_landmarks else job.parse
            self._refresh_catalog_keyframe(job.image, parse)
        keyframe = self._editor.keyframe if self._editor.uses_prior else None
        if early is not None and keyframe is not None and keyframe[0] is job.image:  # drawn just now
            early(self._prior_only(job, parse, ((*keyframe, 1.0),), still_flows(job.view)))
        with _Timer(self._stats, "encode"):
            frame = self._editor.prepare(job.image, job.pushed_at, parse, job.view)
        if self._size is None:
            self._size = job.image.shape[:2]
        return frame

    def request(self) -> EffectRequest:
        return self._editor.request

    def model_stats(self) -> dict[str, Any]:
        return self._stats.summary() | {"tokens_reused": round(self._reuse.reuse_share, 4)}
