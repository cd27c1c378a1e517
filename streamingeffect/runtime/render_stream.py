"""RenderStream (`run --engine render`): catalog effects drawn live by the procedural renderer.

The same public interface as `EffectStream`, but no model: each frame is parsed (MediaPipe: the
person, face, hands and pose, kept steady across frames) and the effect's family draws on it, exactly
as the data engine renders ground truth, one frame in and one frame out. Free prompts and keyframes
need the learned model (`--engine model`), and are refused with a clear error.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from streamingeffect.effects import Category, Effect, UnknownEffectError, get_category, make_effect
from streamingeffect.io.images import Picture, to_rgb
from streamingeffect.parsing.live import LiveParser
from streamingeffect.runtime.stream import StreamError

STAGES = ("parse", "render")
# Families that draw from the person mask (or the frame) alone. They skip MediaPipe's face, hand and pose
# models, most of a frame's parsing (measured at 256x144 on the 2-core CPU, shared at the time: pose 48
# ms, hands 23, face 13, the person mask 6); every other family gets all landmarks.
# tests/test_live_outputs.py checks that each of these renders the same with and without landmarks.
MASK_ONLY_FAMILIES = frozenset(
    {
        "background_blur", "background_desaturate", "background_replace", "bokeh", "block_glitch",
        "cartoon", "color_grade", "comic_outline", "confetti", "cutout", "digital_rain", "duotone",
        "echo_trails", "falling_leaves", "film_grain", "fire_aura", "fireflies", "floating_hearts", "fog",
        "force_field", "glow_aura", "halftone", "hologram", "lightning", "mirror", "neon_edges",
        "neon_outline", "night_vision", "pop_art", "rain", "silhouette", "sketch", "smoke", "snow",
        "statue", "vhs", "vignette", "xray",
    }
)  # fmt: skip


class LiveStream(Protocol):
    """What both engines offer (`EffectStream`, `RenderStream`): what `run` and its control API use."""

    def set_effect(self, id_or_prompt: str) -> None: ...

    def set_keyframe(self, source_frame: Any, edited_frame: Any) -> None: ...

    def clear_keyframe(self) -> None: ...

    def push(self, frame: Any) -> list[Picture]: ...  # I420 planes in: `DecoupledStream` answers in them

    def flush(self) -> list[Picture]: ...

    def stats(self) -> dict[str, Any]: ...

    def warmup(self, size: tuple[int, int] = (256, 256)) -> None: ...

    def note_dropped(self, count: int = 1) -> None: ...

    def last_parsed(self) -> tuple[np.ndarray, np.ndarray] | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RenderOptions:
    fps: float = 30.0  # the clock effects animate on: frame slot / fps (dropped frames count)
    parse_side: int = 256  # MediaPipe sees frames at most this large (speed)
    seed: int = 0  # particles, glitches: the same seed, the same draw


@dataclass
class _Stats:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    restarts: int = 0
    first_frame_ms: float | None = None
    started: float | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


class RenderStream:
    """Live frames in, the catalog effect drawn on them out (see the module docstring)."""

    engine = "render"

    def __init__(self, options: RenderOptions = RenderOptions()):
        self.options = options
        self._category: Category | None = None
        self._effect: Effect | None = None  # the family's renderer for the current size
        self._size: tuple[int, int] | None = None
        self._live = LiveParser(options.parse_side)
        self._slot = 0  # frame slots since the start: pushed and dropped frames
        self._last_parsed: tuple[np.ndarray, np.ndarray] | None = None
        self._stats = _Stats()

    # ------------------------------------------------------------------------------------- control

    def set_effect(self, id_or_prompt: str) -> None:
        """A catalog effect id; takes hold at the next frame (the family starts afresh)."""
        text = id_or_prompt.strip()
        if not text:
            raise StreamError("empty effect: give a catalog id, e.g. neon_outline_cyan")
        try:
            category = get_category(text)
        except UnknownEffectError:
            if " " in text:
                raise StreamError(
                    "the render engine draws catalog effects only; free prompts need the learned model "
                    "(--engine model)"
                ) from None
            raise
        if category.op == "remove":
            raise StreamError(
                f"{category.id} removes an object, which the renderer cannot do on live video; "
                "use --engine model"
            )
        self._category, self._effect = category, None

    def set_keyframe(self, source_frame: Any, edited_frame: Any) -> None:
        raise StreamError(
            "keyframes need the learned model (--engine model); the renderer draws catalog effects"
        )

    def clear_keyframe(self) -> None:
        """Nothing to clear: the render engine never holds a keyframe."""

    def warmup(self, size: tuple[int, int] = (256, 256)) -> None:
        """Load MediaPipe's graphs on a blank frame of ``size`` (height, width), then start clean."""
        if self._category is None:
            raise StreamError("set an effect before warming up")
        self.push(np.full((*size, 3), 127, np.uint8))
        self.reset()
        self._stats = _Stats()

    def note_dropped(self, count: int = 1) -> None:
        """Frames the caller's pacer dropped: counted, and the effects' clock moves on over them."""
        self._stats.dropped += count
        self._slot += count

    # ------------------------------------------------------------------------------------- frames

    def push(self, frame: Any) -> list[np.ndarray]:
        """Add a frame; returns its output (one frame in, one out)."""
        if self._category is None:
            raise StreamError("nothing to apply: call set_effect(id) first")
        now = time.perf_counter()
        if self._stats.started is None:
            self._stats.started = now
        image = self._as_frame(frame)
        if self._size is not None and image.shape[:2] != self._size:
            self._stats.restarts += 1
            self.reset()
        self._size = image.shape[:2]
        self._stats.frames_in += 1
        start = time.perf_counter()
        landmarks = self._category.family not in MASK_ONLY_FAMILIES
        parsed = self._live(image, landmarks, index=self._slot, time=self._slot / self.options.fps)
        parts = parsed.parts_at_frame_size()
        self._last_parsed = (image, parts.person)
        rendered = time.perf_counter()
        if self._effect is None:
            self._effect = make_effect(self._category, self.options.seed, image.shape[:2])
        output = self._effect.render(image, parts)
        done = time.perf_counter()
        self._stats.stage_s["parse"] += rendered - start
        self._stats.stage_s["render"] += done - rendered
        self._slot += 1
        self._record(now, done)
        return [output]

    def flush(self) -> list[np.ndarray]:
        return []  # every frame was answered when it was pushed

    def reset(self) -> None:
        """Start a new stream (same effect)."""
        self._effect, self._size, self._slot, self._last_parsed = None, None, 0, None
        self._live.reset()

    def close(self) -> None:
        self._live.close()

    def __enter__(self) -> RenderStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counts, fps, latency p50/p95, first-frame latency and time per stage, as EffectStream's."""
        s = self._stats
        elapsed = (time.perf_counter() - s.started) if s.started else 0.0
        latencies = np.array(list(s.latencies_ms))
        total = sum(s.stage_s.values()) or 1.0
        return {
            "engine": self.engine,
            "frames_in": s.frames_in,
            "frames_out": s.frames_out,
            "dropped": s.dropped,
            "restarts": s.restarts,
            "fps": s.frames_out / elapsed if elapsed > 0 else 0.0,
            "first_frame_ms": s.first_frame_ms,
            "latency_p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "latency_p95_ms": float(np.percentile(latencies, 95)) if len(latencies) else float("nan"),
            "stage_share": {k: v / total for k, v in s.stage_s.items()},
            "stage_ms_per_frame": {k: 1000 * v / max(1, s.frames_out) for k, v in s.stage_s.items()},
            "effect": self._category.id if self._category else None,
            "keyframe": False,
        }

    def last_parsed(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(the last pushed frame [H, W, 3] uint8, its person mask [H, W] float 0..1), or None."""
        return self._last_parsed

    # ------------------------------------------------------------------------------------- internals

    def _as_frame(self, frame: Any) -> np.ndarray:
        try:
            image = to_rgb(frame)
        except (TypeError, ValueError) as error:
            raise StreamError(f"bad frame: {error}") from error
        if min(image.shape[:2]) < 16:
            raise StreamError(f"bad frame: {image.shape[1]}x{image.shape[0]} is too small (16x16 at least)")
        return image

    def _record(self, pushed_at: float, done: float) -> None:
        s = self._stats
        s.latencies_ms.append(1000 * (done - pushed_at))
        if s.first_frame_ms is None and s.started is not None:
            s.first_frame_ms = 1000 * (done - s.started)
        s.frames_out += 1
