"""EffectStream: live frames of a person in, the same frames with the effect out, a chunk at a time.

    stream = EffectStream.from_pretrained("default")
    stream.set_effect("neon_outline_cyan")          # or a free prompt, or set_keyframe(src, edited)
    for frame in frames:                              # RGB uint8 [H, W, 3], PIL images, av.VideoFrames
        for out in stream.push(frame):                # answered in order, at the input's size
            show(out)
    rest = stream.flush()

Per frame the pipeline's `FrameEditor` parses the frame, cuts the model's window and encodes it; per
chunk the causal student denoises with its KV cache (the reference or prompt is the cache's sink);
the result is a delta decode, gated by the effect's scope and brought to full resolution by a guided
filter: the output is the source wherever the effect does not act, bit for bit. A new effect or
keyframe replaces the sink and takes hold at the next chunk; the stream keeps going.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamingeffect.diffusion.space import base_latent
from streamingeffect.effects import Category, Effect, make_effect
from streamingeffect.io.images import to_rgb
from streamingeffect.models.dit import Reference, TextCondition
from streamingeffect.models.kv_cache import KVCache
from streamingeffect.models.token_reuse import TokenReuse
from streamingeffect.parsing.live import LiveParse
from streamingeffect.pipeline import (
    EditorOptions,
    EffectRequest,
    EffectRequestError,
    FrameEditor,
    ModelBundle,
    PreparedFrame,
    Sampling,
    text_condition,
)
from streamingeffect.rollout import new_cache

log = logging.getLogger(__name__)

STAGES = ("parse", "encode", "transformer", "decode", "composite")


class StreamError(ValueError):
    """Bad input to a stream (frame, keyframe, effect): one clear message."""


@dataclass(frozen=True)
class StreamOptions:
    steps: int | None = None  # denoising steps per chunk (default: the shipped sampling)
    start: float | None = None  # 1: from pure noise; below 1: from the source noised to this time
    anchor: bool = True  # without a keyframe, the first output becomes the reference (StreamingT2V)
    mask_cache: bool = True  # LiveEdit: reuse unchanged tokens outside the edit region
    cache_threshold: float = 0.15  # mean |change| of a token's source latent that counts as a change
    cache_dilation: int = 1  # tokens around the edit region that are always recomputed
    window_chunks: int | None = None  # the KV cache's window (default: the student's; 0: no context)
    recompute_window: bool = False  # no KV cache: every chunk regenerates its window (a baseline)
    fold_cache_write: bool = False  # the last denoising pass writes the KV cache (one pass fewer)
    # Every effect can be a keyframe (VIVID's KIVE): a catalog effect's keyframe is drawn by the
    # procedural renderer on a live frame and refreshed on a fresh one every ``keyframe_every`` frames.
    catalog_keyframes: bool = True
    keyframe_every: int = 90
    crossfade: int = 8  # frames over which a refreshed keyframe's prior replaces the old one's
    # Any other prompt gets its keyframe from this teacher, made in the background from a live frame;
    # the stream shows the student's text-only result until it is ready. "" turns it off.
    teacher: str = "teacher"
    teacher_waits: bool = False  # offline: make that keyframe on the first frame before answering it
    seed: int = 0
    editor: EditorOptions = field(default_factory=EditorOptions)


@dataclass
class StreamStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    restarts: int = 0
    sink_updates: int = 0
    first_frame_ms: float | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # the recent ones
    stage_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    started: float | None = None

    def summary(self) -> dict[str, Any]:
        elapsed = (time.perf_counter() - self.started) if self.started else 0.0
        latencies = np.array(list(self.latencies_ms))
        total_stage = sum(self.stage_s.values()) or 1.0
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "restarts": self.restarts,
            "sink_updates": self.sink_updates,
            "fps": self.frames_out / elapsed if elapsed > 0 else 0.0,
            "first_frame_ms": self.first_frame_ms,
            "latency_p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "latency_p95_ms": float(np.percentile(latencies, 95)) if len(latencies) else float("nan"),
            "stage_share": {k: self.stage_s[k] / total_stage for k in STAGES},
            "stage_ms_per_frame": {k: 1000 * self.stage_s[k] / max(1, self.frames_out) for k in STAGES},
        }


class _Timer:
    def __init__(self, stats: StreamStats, stage: str):
        self.record, self.stage = stats, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.record.stage_s[self.stage] += time.perf_counter() - self.start


@lru_cache(maxsize=2)
def _teacher_bundle(name: str) -> ModelBundle:
    return ModelBundle.load(name)


def _make_teacher_keyframe(teacher: str, image: np.ndarray, request: EffectRequest) -> np.ndarray:
    from streamingeffect.pipeline.keyframes import teacher_keyframe

    torch.set_num_threads(1)  # beside the stream: one core each
    return teacher_keyframe(_teacher_bundle(teacher), image, request)


class EffectStream:
    """The streaming runtime around a causal student (see the module docstring)."""

    def __init__(self, bundle: ModelBundle, options: StreamOptions = StreamOptions()):
        if not bundle.is_student:
            raise StreamError(
                "EffectStream needs a causal student (kind 'student'); a teacher samples whole "
                "windows, use `streamingeffect generate` for it"
            )
        self.bundle, self.options = bundle, options
        default = bundle.default_sampling()
        self.sampling = Sampling(options.steps or default.steps, options.start or default.start)
        self.times = bundle.times(self.sampling)
        self._stats = StreamStats()
        self._request: EffectRequest | None = None
        self._editor = FrameEditor(bundle, EffectRequest.keyframe_only(), options.editor)
        self._keyframe: tuple[np.ndarray, np.ndarray] | None = None
        self._reference: Reference | None = None  # the encoded keyframe
        self._renderer: Effect | None = None  # draws a catalog effect's keyframes
        self._teacher_job: Future[np.ndarray] | None = None  # a keyframe the teacher is making
        self._teacher_source: np.ndarray | None = None  # the frame it edits
        self._teacher_due = False  # the next frame goes to the teacher
        self._workers: ThreadPoolExecutor | None = None
        self._since_keyframe = 0  # frames since the catalog keyframe was drawn
        self._empty_keyframe = True  # the last catalog keyframe changed nothing (its anchor not in view)
        self._anchor: Reference | None = None  # the first output of a text-only effect
        self._text: TextCondition | None = None
        window = bundle.net.config.window_chunks if options.window_chunks is None else options.window_chunks
        self._cache = KVCache(window)
        # A stream without a KV cache regenerates its window each chunk: the window's frames and noises.
        self._recent: deque[tuple[list[PreparedFrame], torch.Tensor]] = deque(maxlen=window)
        self._reuse = TokenReuse()
        self._previous_source: torch.Tensor | None = None
        self._sink_stale = True
        self._pending: list[PreparedFrame] = []
        self._size: tuple[int, int] | None = None  # (height, width) fixed by the first frame
        side = bundle.latent_side
        self._noise_shape = (1, bundle.net.config.chunk_frames, bundle.net.config.latent_channels, side, side)
        self._generator = torch.Generator().manual_seed(options.seed)  # a stream is reproducible
        self._noise: torch.Tensor | None = None  # the last chunk's (see _chunk_noise)
        self._last_parsed: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_pretrained(cls, name: str | Path = "default", **options: Any) -> EffectStream:
        """The bundled default student ("default"), or a checkpoint folder."""
        return cls(ModelBundle.load(name), StreamOptions(**options))

    @property
    def chunk_frames(self) -> int:
        return self.bundle.net.config.chunk_frames

    # ------------------------------------------------------------------------------------- control

    def set_effect(self, id_or_prompt: str) -> None:
        """A catalog effect id or a free-text prompt; takes hold at the next chunk."""
        try:
            self._request = EffectRequest.parse(id_or_prompt)
        except EffectRequestError as error:
            raise StreamError(str(error)) from error
        self._text = text_condition(self._request.text)
        self._editor.set_request(self._request)
        self._renderer = None
        self._teacher_job, self._teacher_due = None, False  # a keyframe for the old effect is dropped
        category = self._request.category
        if self.options.catalog_keyframes and category is not None and category.op != "remove":
            self._renderer = make_effect(category, self.options.seed, (1, 1))  # sized at the first frame
            self._set_keyframe(None)
        elif category is None and self.options.teacher:
            self._set_keyframe(None)
            self._teacher_due = True
        self._switch()

    def set_keyframe(self, source_frame: Any, edited_frame: Any) -> None:
        """An edited frame (and the frame it was edited from) becomes the reference: the sink."""
        source = self._as_frame(source_frame, "keyframe source")
        edited = self._as_frame(edited_frame, "keyframe")
        if source.shape != edited.shape:
            raise StreamError(
                f"the keyframe is {edited.shape[1]}x{edited.shape[0]} but its source frame is "
                f"{source.shape[1]}x{source.shape[0]}"
            )
        if self._size is not None and source.shape[:2] != self._size:
            raise StreamError(
                f"the keyframe is {source.shape[1]}x{source.shape[0]} but the stream is "
                f"{self._size[1]}x{self._size[0]}; edit a frame of this stream"
            )
        self._renderer = None  # a painted keyframe wins over the catalog's own
        self._teacher_job, self._teacher_due = None, False
        self._set_keyframe((source, edited))
        self._switch()

    def clear_keyframe(self) -> None:
        self._set_keyframe(None)
        self._switch()

    def _set_keyframe(self, keyframe: tuple[np.ndarray, np.ndarray] | None, crossfade: int = 0) -> None:
        self._keyframe, self._reference = keyframe, None
        self._editor.set_keyframe(*(keyframe or (None, None)), crossfade=crossfade)
        self._sink_stale = True

    def _teacher_keyframe(self, image: np.ndarray) -> None:
        """Start the teacher on this frame when a free prompt awaits its keyframe; take the keyframe
        when it is ready (the per-frame path never waits for it)."""
        if self._teacher_due and self._request is not None:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(1, thread_name_prefix="teacher-keyframe")
            self._teacher_source = image
            self._teacher_job = self._workers.submit(
                _make_teacher_keyframe, self.options.teacher, image, self._request
            )
            self._teacher_due = False
            if self.options.teacher_waits:
                wait([self._teacher_job])
        job = self._teacher_job
        if job is not None and job.done():
            self._teacher_job = None
            try:
                edited = job.result()
            except Exception as error:  # a missing or broken teacher: the text-only path goes on
                log.warning("no teacher keyframe for this prompt: %s", error)
                return
            if self._teacher_source is not None and self._teacher_source.shape == edited.shape:
                self._set_keyframe((self._teacher_source, edited))

    def _refresh_catalog_keyframe(self, image: np.ndarray, parse: LiveParse) -> None:
        """Draw the catalog effect on this frame as the new keyframe when it is due: at the start, every
        ``keyframe_every`` frames (re-anchoring long streams, as StreamingT2V's anchor frame does), and
        while the last one changed nothing (its anchor was not in view). The sink is replaced; the
        window's chunks stay, so the look carries over without a jump."""
        if self._renderer is None or self._request is None or self._request.category is None:
            return
        due = self._keyframe is None or self._empty_keyframe
        if not due and self._since_keyframe < self.options.keyframe_every:
            self._since_keyframe += 1
            return
        edited, changed = self._draw_catalog(self._request.category, image, parse)
        self._install_catalog_keyframe(image, edited, changed, 0 if due else self.options.crossfade)

    def _draw_catalog(
        self, category: Category, image: np.ndarray, parse: LiveParse
    ) -> tuple[np.ndarray, bool]:
        """The catalog effect drawn on ``image`` at the frame's size -> (the edited frame, whether the
        drawing changed anything)."""
        assert self._renderer is not None
        if (self._renderer.height, self._renderer.width) != image.shape[:2]:
            self._renderer = make_effect(category, self.options.seed, image.shape[:2])
        edited = self._renderer.render(image, parse.parts_at_frame_size())
        return edited, not np.array_equal(edited, image)

    def _install_catalog_keyframe(
        self, image: np.ndarray, edited: np.ndarray, changed: bool, fade: int = 0
    ) -> None:
        """A catalog keyframe becomes the sink (cross-faded over ``fade`` frames); the count to the next
        one starts again. One that changed nothing (its anchor not in view) is drawn again next frame."""
        self._empty_keyframe = not changed
        self._set_keyframe((image, edited), fade)
        self._since_keyframe = 1

    def _switch(self) -> None:
        """A new sink at the next chunk; the window's chunks (made under the old effect) are dropped so
        the new one takes hold at once instead of being pulled back by them."""
        self._sink_stale = True
        self._anchor = None
        self._cache.clear_window()
        self._recent.clear()
        self._reuse.clear()

    def warmup(self, size: tuple[int, int] = (256, 256)) -> None:
        """Load everything a first frame needs (MediaPipe graphs, text features, kernels) on a blank
        frame, then start clean: an app does this while it opens the camera."""
        if self._request is None and self._keyframe is None:
            raise StreamError("set an effect (or keyframe) before warming up")
        keyframe, blank = self._keyframe, np.full((*size, 3), 127, np.uint8)
        if self._renderer is None:
            self._set_keyframe((blank, blank))  # the keyframe's machinery at the blank frame's size
        self.push(blank)
        self.flush()
        self.reset()
        if self._renderer is None:
            self._set_keyframe(keyframe)
        self._stats = StreamStats()

    def note_dropped(self, count: int = 1) -> None:
        """Frames the caller's pacer dropped before they reached the stream (for the stats)."""
        self._stats.dropped += count

    # ------------------------------------------------------------------------------------- frames

    def push(self, frame: Any) -> list[np.ndarray]:
        """Add a frame; returns the output frames that are ready (a whole chunk at a time)."""
        if self._request is None and self._keyframe is None:
            raise StreamError("nothing to apply: call set_effect(id or prompt) or set_keyframe(...) first")
        now = time.perf_counter()
        if self._stats.started is None:
            self._stats.started = now
        image = self._as_frame(frame, "frame")
        earlier: list[np.ndarray] = []
        if self._size is not None and image.shape[:2] != self._size:
            earlier = self.flush()  # frames of the old size are still answered
            self._restart(image.shape[:2])
        self._stats.frames_in += 1
        self._pending.append(self._prepare(image, now))
        if len(self._pending) < self.chunk_frames:
            return earlier
        return earlier + self._run_chunk()

    def flush(self) -> list[np.ndarray]:
        """Finish a partial chunk (padded with its last frame); returns its frames."""
        if not self._pending:
            return []
        real = len(self._pending)
        while len(self._pending) < self.chunk_frames:
            self._pending.append(self._pending[-1])
        return self._run_chunk(real)

    def reset(self) -> None:
        """Start a new stream (same effect and keyframe)."""
        self._cache.reset()
        self._recent.clear()
        self._reuse.clear()
        self._editor.reset()
        self._previous_source = None
        self._pending.clear()
        self._size, self._reference, self._anchor = None, None, None
        if self._renderer is not None:
            self._set_keyframe(None)  # drawn again on the new stream's first frame
        self._sink_stale = True
        self._generator.manual_seed(self.options.seed)
        self._noise = None

    def close(self) -> None:
        self._editor.close()
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._workers = None

    def __enter__(self) -> EffectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counts, fps, latency p50/p95, first-frame latency, time per stage, the mask cache's reuse."""
        return {
            **self._stats.summary(),
            "effect": self._request.label if self._request else None,
            "keyframe": self._keyframe is not None,
            "anchored": self._anchor is not None,
            "mask_cache": self.options.mask_cache,
            "tokens_reused": round(self._reuse.reuse_share, 4),
            "steps": len(self.times),
            "cache_tokens": self._cache.tokens(),
        }

    def last_parsed(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(the last pushed frame [H, W, 3] uint8, its person mask [H, W] float in 0..1), or None: what
        an app shows a person who captures a keyframe to edit."""
        return self._last_parsed

    # ------------------------------------------------------------------------------------- internals

    def _as_frame(self, frame: Any, name: str) -> np.ndarray:
        try:
            image = to_rgb(frame)
        except (TypeError, ValueError) as error:
            raise StreamError(f"bad {name}: {error}") from error
        if min(image.shape[:2]) < 16:
            raise StreamError(f"bad {name}: {image.shape[1]}x{image.shape[0]} is too small (16x16 at least)")
        return image

    def _restart(self, size: tuple[int, int]) -> None:
        """The frame size changed mid-stream: start over at the new size (the keyframe no longer fits)."""
        log.warning("frame size changed from %s to %s: restarting the stream", self._size, size)
        if self._keyframe is not None and self._renderer is None:
            log.warning("the keyframe was made at the old size and is dropped")
        self._set_keyframe(None)
        self._stats.restarts += 1
        self.reset()

    def _prepare(self, image: np.ndarray, now: float) -> PreparedFrame:
        with _Timer(self._stats, "parse"):
            parse = self._editor.parse(image)
            self._refresh_catalog_keyframe(image, parse)
            self._teacher_keyframe(image)
        with _Timer(self._stats, "encode"):
            frame = self._editor.prepare(image, now, parse)
        self._last_parsed = (image, parse.region_at_frame_size("person"))
        if self._size is None:
            self._size = image.shape[:2]
        return frame

    def _reference_for(self, frame: PreparedFrame) -> Reference | None:
        if self._keyframe is None:
            return self._anchor
        if self._reference is None:
            self._reference = self._editor.reference(*self._keyframe, frame)
        return self._reference

    def _active_positions(self, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[Fc, gh, gw] bool: token positions to recompute: near the edit region, or changed."""
        patch, d = self.bundle.net.config.patch, self.options.cache_dilation
        region = torch.nn.functional.max_pool2d(mask[0], patch)  # [Fc, 1, gh, gw]
        region = torch.nn.functional.max_pool2d(region, 2 * d + 1, stride=1, padding=d) > 0.05
        previous = self._previous_source
        if previous is None or previous.shape != source.shape:
            return torch.ones_like(region[:, 0])
        change = (source - previous).abs().mean(dim=2)[0][:, None]  # [Fc, 1, h, w]
        moved = torch.nn.functional.avg_pool2d(change, patch) > self.options.cache_threshold
        return (region | moved)[:, 0]

    def _chunk_noise(self, active: torch.Tensor) -> torch.Tensor:
        """[1, Fc, C, h, w]: fresh noise at the active positions (the edit region and whatever changed),
        the previous chunk's noise elsewhere. Fresh noise is what the student was trained on: with one
        noise for the whole stream it reads its own noise pattern back from the cache and collapses into
        a mosaic within a few frames (measured on the sample clip). Keeping it at static positions
        outside the edit makes a recomputed static token the same computation as the reused one, so the
        mask cache changes little; the policy does not depend on whether the cache is on."""
        fresh = torch.randn(self._noise_shape, generator=self._generator)
        previous = self._noise
        if previous is None:
            self._noise = fresh
            return fresh
        patch = self.bundle.net.config.patch
        keep = ~active.repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # [Fc, h, w]
        self._noise = torch.where(keep[None, :, None], previous, fresh)
        return self._noise

    def _denoise(self, frames: list[PreparedFrame], noise: torch.Tensor, reuse: TokenReuse | None) -> Any:
        """The chunk's condition and its clean sample x0 [1, Fc, C, h, w] (diffusion space)."""
        cond = self._editor.condition(frames, self._reference_for(frames[0]), self._text)
        if self.options.recompute_window:
            return cond, self._recompute(frames, noise)
        if self._sink_stale:
            self.bundle.net.prefill(cond, self._cache)
            self._sink_stale = False
            self._stats.sink_updates += 1
        return cond, self.bundle.denoise(
            cond, noise, self.sampling, self._cache, reuse, fold_write=self.options.fold_cache_write
        )

    def _recompute(self, frames: list[PreparedFrame], noise: torch.Tensor) -> torch.Tensor:
        """A student without a KV cache: a fresh cache, the window's earlier chunks generated again from
        their own noise, then this chunk."""
        self._recent.append((frames, noise))
        everything = [f for chunk, _ in self._recent for f in chunk]
        cond = self._editor.condition(everything, self._reference_for(frames[0]), self._text)
        noises = torch.cat([n for _, n in self._recent], dim=1)
        cache = new_cache(self.bundle.net, unbounded=True)
        self.bundle.net.prefill(cond, cache)
        return self.bundle.denoise(cond, noises, self.sampling, cache)[:, -len(frames) :]

    def _run_chunk(self, real: int | None = None) -> list[np.ndarray]:
        """Generate the pending chunk; returns the outputs of its first ``real`` frames (all by default)."""
        frames, lows = self._model_chunk()
        with _Timer(self._stats, "composite"):
            outputs = [self._editor.apply(frame, low) for frame, low in zip(frames, lows, strict=True)]
        done = time.perf_counter()
        outputs = outputs[:real]
        for frame in frames[: len(outputs)]:
            self._stats.latencies_ms.append(1000 * (done - frame.pushed_at))
        if self._stats.first_frame_ms is None and self._stats.started is not None:
            self._stats.first_frame_ms = 1000 * (done - self._stats.started)
        self._stats.frames_out += len(outputs)
        return outputs

    def _model_chunk(self) -> tuple[list[PreparedFrame], np.ndarray]:
        """The pending chunk through the model: its frames and their changes at the model's resolution
        [Fc, R, R, 3] (in units of full scale), before the gate and full resolution."""
        frames, self._pending = self._pending, []
        with torch.no_grad(), _Timer(self._stats, "transformer"):
            source = torch.stack([f.latent for f in frames])[None]  # [1, Fc, C, h, w]
            mask = torch.stack([f.mask for f in frames])[None]  # [1, Fc, 1, h, w]
            active = self._active_positions(source, mask)
            reuse = None
            if self.options.mask_cache and not self.options.recompute_window:
                self._reuse.active = active
                reuse = self._reuse
            self._previous_source = source
            cond, x0 = self._denoise(frames, self._chunk_noise(active), reuse)
            if self.options.anchor and self._keyframe is None and self._anchor is None:
                # Long-term memory (StreamingT2V's anchor frame): the first result of a text-only effect
                # becomes the reference, so later frames keep its look instead of drifting.
                self._anchor = Reference(
                    source[:, 0], x0[:, 0].float(), mask[:, 0], torch.ones(1, dtype=torch.bool)
                )
                self._sink_stale = True
        with torch.no_grad(), _Timer(self._stats, "decode"):
            change = self.bundle.decode_edit(x0, base_latent(cond.source, cond.prior))
            lows = (change / 2).permute(0, 2, 3, 1).numpy()
        return frames, lows
