"""EffectStream: live frames of a person in, the same frames with the effect out, a chunk at a time.

    stream = EffectStream.from_pretrained("default")
    stream.set_effect("neon_outline_cyan")          # or a free prompt, or set_keyframe(src, edited)
    for frame in frames:                              # RGB uint8 [H, W, 3], PIL images, av.VideoFrames
        for out in stream.push(frame):                # answered in order, at the input's size
            show(out)
    rest = stream.flush()

Per frame: MediaPipe parsing (person mask, and landmarks when the effect's region needs them) ->
the square around the person at the model's resolution -> latent -> the causal student's rollout
with its KV cache (the reference or prompt is the cache's sink) -> decode -> pasted back (for local
edits only inside the region: outside it the output is the source, exactly). A new effect or
keyframe replaces the sink and takes hold at the next chunk; the stream keeps going.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamingeffect.effects import UnknownEffectError, get_category
from streamingeffect.generate import (
    EffectModel,
    crop_to_latent_mask,
    crop_to_model,
    paste_crop,
    resolve_model,
)
from streamingeffect.io.images import to_rgb
from streamingeffect.models.dit import EffectCondition, Reference, TextCondition
from streamingeffect.models.token_reuse import TokenReuse
from streamingeffect.objectives.teacher import from_diffusion_space, to_diffusion_space
from streamingeffect.parsing.live import LiveParser
from streamingeffect.rollout import new_cache, rollout

log = logging.getLogger(__name__)

STAGES = ("parse", "encode", "transformer", "decode", "composite")
WHOLE_PERSON_REGIONS = ("person", "scene", "background")


class StreamError(ValueError):
    """Bad input to a stream (frame, keyframe, effect): one clear message."""


@dataclass(frozen=True)
class StreamOptions:
    steps: int | None = None  # denoising steps per chunk (default: the student's own)
    parse_side: int = 256  # MediaPipe sees frames at most this large (speed)
    mask_smoothing: float = 0.6  # causal EMA of the person probability (steadier masks)
    anchor: bool = True  # without a keyframe, the first output becomes the reference (StreamingT2V)
    mask_cache: bool = True  # LiveEdit: reuse unchanged tokens outside the edit region
    cache_threshold: float = 0.15  # mean |change| of a token's source latent that counts as a change
    cache_dilation: int = 1  # tokens around the edit region that are always recomputed
    seed: int = 0


@dataclass(frozen=True)
class EffectRequest:
    """What the stream applies: a text (catalog description or prompt) and the region it lives in."""

    text: str | None
    region: str  # a region of RegionMasks; local edits are composited inside it
    local: bool  # an "edit" category: outside the region the output is the source
    label: str

    @classmethod
    def parse(cls, id_or_prompt: str) -> EffectRequest:
        """A catalog id, or a free prompt (anything with a space in it, or not id-like)."""
        text = id_or_prompt.strip()
        if not text:
            raise StreamError("empty prompt: describe the effect, e.g. 'a glowing cyan neon outline'")
        try:
            category = get_category(text)
        except UnknownEffectError:
            if " " not in text and "_" in text:  # meant as an id: say which ids are close
                raise
            return cls(text, "person", False, f"prompt: {text}")
        local = category.kind == "edit" and category.region not in WHOLE_PERSON_REGIONS
        return cls(category.descriptions[0], category.region if local else "person", local, category.id)


@dataclass
class _Frame:
    """A frame on its way through the stream."""

    image: np.ndarray  # [H, W, 3] uint8
    pushed_at: float
    region: np.ndarray  # [H, W] float mask the model is given (edit region or person)
    latent: torch.Tensor  # [C, h, w] source latent of the crop


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


class EffectStream:
    """The streaming runtime around a causal student (see the module docstring)."""

    def __init__(self, model: EffectModel, options: StreamOptions = StreamOptions()):
        if not model.is_student:
            raise StreamError(
                "EffectStream needs a causal student (kind 'student'); a teacher samples whole "
                "windows, use `streamingeffect generate` for it"
            )
        self.model, self.options = model, options
        self.times = model.student_times(options.steps or model.trained_steps)
        self._stats = StreamStats()
        self._effect: EffectRequest | None = None
        self._keyframe: tuple[np.ndarray, np.ndarray] | None = None
        self._reference: Reference | None = None  # the encoded keyframe
        self._anchor: Reference | None = None  # the first output of a text-only effect
        self._text_cache: dict[str, TextCondition] = {}
        self._cache = new_cache(model.net)
        self._reuse = TokenReuse()
        self._previous_source: torch.Tensor | None = None
        self._sink_stale = True
        self._pending: list[_Frame] = []
        self._size: tuple[int, int] | None = None  # (height, width) fixed by the first frame
        self._crop: tuple[int, int, int] | None = None  # (x0, y0, side) in frame pixels
        self._live = LiveParser(options.parse_side, options.mask_smoothing)
        side = model.resolution // model.autoencoder.config.downsample
        self._noise_shape = (1, model.net.config.chunk_frames, model.net.config.latent_channels, side, side)
        self._generator = torch.Generator().manual_seed(options.seed)  # a stream is reproducible
        self._noise: torch.Tensor | None = None  # the last chunk's (see _chunk_noise)
        self._last_parsed: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_pretrained(cls, name: str | Path = "default", **options: Any) -> EffectStream:
        """The bundled default student ("default"), or a checkpoint folder."""
        path = resolve_model("student" if str(name) == "default" else str(name))
        return cls(EffectModel.load(path), StreamOptions(**options))

    # ------------------------------------------------------------------------------------- control

    def set_effect(self, id_or_prompt: str) -> None:
        """A catalog effect id or a free-text prompt; takes hold at the next chunk."""
        self._effect = EffectRequest.parse(id_or_prompt)
        self._switch()

    def set_keyframe(self, source_frame: Any, edited_frame: Any) -> None:
        """An edited frame (and the frame it was edited from) becomes the reference: the sink."""
        source, edited = (
            self._as_frame(source_frame, "keyframe source"),
            self._as_frame(edited_frame, "keyframe"),
        )
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
        self._keyframe = (source, edited)
        self._reference = None
        self._switch()

    def clear_keyframe(self) -> None:
        self._keyframe, self._reference = None, None
        self._switch()

    def _switch(self) -> None:
        """A new sink at the next chunk; the window's chunks (made under the old effect) are dropped so
        the new one takes hold at once instead of being pulled back by them."""
        self._sink_stale = True
        self._anchor = None
        self._cache.clear_window()
        self._reuse.clear()

    def warmup(self, size: tuple[int, int] = (256, 256)) -> None:
        """Load everything a first frame needs (MediaPipe graphs, text features, kernels) on a blank
        frame, then start clean: an app does this while it opens the camera."""
        if self._effect is None and self._keyframe is None:
            raise StreamError("set an effect (or keyframe) before warming up")
        blank = np.full((*size, 3), 127, np.uint8)
        keyframe, self._keyframe = self._keyframe, None
        effect = self._effect
        if effect is None:
            self._effect = EffectRequest(None, "person", False, "warm-up")
        self.push(blank)
        self.flush()
        self._effect, self._keyframe = effect, keyframe
        self.reset()
        self._stats = StreamStats()

    def note_dropped(self, count: int = 1) -> None:
        """Frames the caller's pacer dropped before they reached the stream (for the stats)."""
        self._stats.dropped += count

    # ------------------------------------------------------------------------------------- frames

    def push(self, frame: Any) -> list[np.ndarray]:
        """Add a frame; returns the output frames that are ready (a whole chunk at a time)."""
        if self._effect is None and self._keyframe is None:
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
        if len(self._pending) < self.model.net.config.chunk_frames:
            return earlier
        return earlier + self._run_chunk()

    def flush(self) -> list[np.ndarray]:
        """Finish a partial chunk (padded with its last frame); returns its frames."""
        if not self._pending:
            return []
        real = len(self._pending)
        while len(self._pending) < self.model.net.config.chunk_frames:
            self._pending.append(self._pending[-1])
        return self._run_chunk(real)

    def reset(self) -> None:
        """Start a new stream (same effect and keyframe)."""
        self._cache.reset()
        self._reuse.clear()
        self._previous_source = None
        self._pending.clear()
        self._size, self._crop, self._reference = None, None, None
        self._live.reset()
        self._anchor = None
        self._sink_stale = True
        self._generator.manual_seed(self.options.seed)
        self._noise = None

    def close(self) -> None:
        self._live.close()

    def __enter__(self) -> EffectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counts, fps, latency p50/p95, first-frame latency, time per stage, the mask cache's reuse."""
        return {
            **self._stats.summary(),
            "effect": self._effect.label if self._effect else None,
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
        if self._keyframe is not None:
            log.warning("the keyframe was made at the old size and is dropped")
            self._keyframe = None
        self._stats.restarts += 1
        self.reset()

    def _parse(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (the mask the model is given: the effect's region or the person, the person) [H, W] float."""
        effect = self._effect
        local = effect is not None and effect.local
        parsed = self._live.parse(image, landmarks=local)
        return parsed.mask(effect.region if local else "person"), parsed.mask("person")  # type: ignore[union-attr]

    def _choose_crop(self, person: np.ndarray) -> tuple[int, int, int]:
        from streamingeffect.parsing.masks import person_crop

        box = person_crop(person[None].astype(np.float32))
        return box.x0, box.y0, box.width

    def _prepare(self, image: np.ndarray, now: float) -> _Frame:
        with _Timer(self._stats, "parse"):
            region, person = self._parse(image)
        self._last_parsed = (image, person)
        if self._size is None:  # the first frame fixes the size and the square around the person
            self._size = image.shape[:2]
            self._crop = self._choose_crop(person)
        with _Timer(self._stats, "encode"):
            latent = self.model.autoencoder.encode(
                crop_to_model(image[None], self._crop, self.model.resolution)
            )[0]
        return _Frame(image, now, region, latent)

    def _text(self) -> TextCondition | None:
        effect = self._effect
        if effect is None or not effect.text:
            return None
        if effect.text not in self._text_cache:
            from streamingeffect.models.text import TextEncoder

            features = TextEncoder().encode([effect.text])
            self._text_cache[effect.text] = TextCondition(
                features.tokens, features.mask, features.pooled, torch.ones(1, dtype=torch.bool)
            )
        return self._text_cache[effect.text]

    def _latent_mask(self, region: np.ndarray) -> torch.Tensor:
        side = self.model.resolution // self.model.autoencoder.config.downsample
        return crop_to_latent_mask(region[None], self._crop, side)  # type: ignore[arg-type]

    def _reference_for(self, frame: _Frame) -> Reference | None:
        if self._keyframe is None:
            return self._anchor
        if self._reference is None:
            source, edited = self._keyframe
            ae, residual = self.model.autoencoder, self.model.net.config.predict_residual
            pair = ae.encode(crop_to_model(np.stack([source, edited]), self._crop, self.model.resolution))
            # The keyframe's mask: the region of the frame it enters with (it is a frame of this stream).
            self._reference = Reference(
                pair[:1],
                to_diffusion_space(pair[1:], pair[:1], residual),
                self._latent_mask(frame.region),
                torch.ones(1, dtype=torch.bool),
            )
        return self._reference

    def _active_positions(self, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[Fc, gh, gw] bool: token positions to recompute: near the edit region, or changed."""
        patch, d = self.model.net.config.patch, self.options.cache_dilation
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
        patch = self.model.net.config.patch
        keep = ~active.repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # [Fc, h, w]
        self._noise = torch.where(keep[None, :, None], previous, fresh)
        return self._noise

    def _run_chunk(self, real: int | None = None) -> list[np.ndarray]:
        """Generate the pending chunk; returns the outputs of its first ``real`` frames (all by default)."""
        frames, self._pending = self._pending, []
        net, ae = self.model.net, self.model.autoencoder
        residual = net.config.predict_residual
        with torch.no_grad(), _Timer(self._stats, "transformer"):
            source = torch.stack([f.latent for f in frames])[None]  # [1, Fc, C, h, w]
            mask = torch.cat([self._latent_mask(f.region) for f in frames])[None]  # [1, Fc, 1, h, w]
            cond = EffectCondition(source, mask, self._reference_for(frames[0]), self._text())
            if self._sink_stale:
                net.prefill(cond, self._cache)
                self._sink_stale = False
                self._stats.sink_updates += 1
            active = self._active_positions(source, mask)
            reuse = None
            if self.options.mask_cache:
                self._reuse.active = active
                reuse = self._reuse
            self._previous_source = source
            noise = self._chunk_noise(active)
            x0 = rollout(net, cond, noise, self.times, self._cache, reuse=reuse)
            if self.options.anchor and self._keyframe is None and self._anchor is None:
                # Long-term memory (StreamingT2V's anchor frame): the first result of a text-only effect
                # becomes the reference, so later frames keep its look instead of drifting.
                self._anchor = Reference(
                    source[:, 0], x0[:, 0].float(), mask[:, 0], torch.ones(1, dtype=torch.bool)
                )
                self._sink_stale = True
        with torch.no_grad(), _Timer(self._stats, "decode"):
            pixels = ae.decode(from_diffusion_space(x0.float(), source, residual)[0]).clamp(-1, 1)
            crops = ((pixels.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
        outputs = []
        with _Timer(self._stats, "composite"):
            side = self._crop[2]  # type: ignore[index]
            local = self._effect is not None and self._effect.local
            for frame, crop in zip(frames, crops, strict=True):
                big = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
                outputs.append(paste_crop(frame.image, big, self._crop, frame.region if local else None))  # type: ignore[arg-type]
        done = time.perf_counter()
        outputs = outputs[:real]
        for frame in frames[: len(outputs)]:
            self._stats.latencies_ms.append(1000 * (done - frame.pushed_at))
        if self._stats.first_frame_ms is None and self._stats.started is not None:
            self._stats.first_frame_ms = 1000 * (done - self._stats.started)
        self._stats.frames_out += len(outputs)
        return outputs
