"""Block-causal rollout: the student generates a clip chunk by chunk with its KV cache.

    rollout(net, cond, start [B, F, C, h, w], times, cache) -> x0 [B, F, C, h, w]

Per chunk (CausVid, Self-Forcing): denoise from ``start`` through the few student times (Euler steps,
x0 read off the velocity), then write the chunk's clean latents into the cache with a pass at t = 0.
Training uses the same loop: Self-Forcing keeps gradients on one randomly chosen exit step per chunk
(``exit_steps``); ODE init starts from a point of the teacher's trajectory and writes the teacher's
clean latents (``context``) instead of the student's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from streamingeffect.diffusion import flow
from streamingeffect.models.dit import EffectCondition, EffectTransformer
from streamingeffect.models.kv_cache import KVCache
from streamingeffect.models.token_reuse import TokenReuse


@dataclass(frozen=True)
class StudentSchedule:
    """The student's denoising times, descending from 1 (pure noise); 0 (clean) is implied."""

    times: tuple[float, ...]

    @classmethod
    def uniform(cls, steps: int, shift: float) -> StudentSchedule:
        """``steps`` times on the shifted schedule, e.g. 4 steps, shift 3: 1, .9, .75, .5 (CausVid's
        1000/750/500/250 spaced the same way before the shift)."""
        if steps < 1:
            raise ValueError(f"the student needs at least one step, got {steps}")
        return cls(tuple(float(t) for t in flow.sampling_times(steps, shift)[:-1]))

    def tensor(self, device: torch.device | None = None) -> torch.Tensor:
        return torch.tensor(self.times, device=device)


def new_cache(net: EffectTransformer, unbounded: bool = False) -> KVCache:
    """An empty cache sized by the model's config (or keeping everything, for training on short clips)."""
    return KVCache(None if unbounded else net.config.window_chunks)


def chunk_condition(cond: EffectCondition, start: int, stop: int) -> EffectCondition:
    """The condition of frames [start, stop): source, mask and prior sliced, reference and text shared."""

    def part(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[:, start:stop]

    return replace(
        cond,
        source=cond.source[:, start:stop],
        mask=cond.mask[:, start:stop],
        prior=part(cond.prior),
        confidence=part(cond.confidence),
    )


def _frame_times(t: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
    """A time (scalar, or one per batch item [B]) -> [B, F]."""
    return (t.reshape(-1, 1) if t.dim() else t.reshape(1, 1)).expand(batch, frames)


def denoise_chunk(
    net: EffectTransformer,
    cache: KVCache,
    cond: EffectCondition,
    start: torch.Tensor,
    times: torch.Tensor,
    exit_step: int | None = None,
    reuse: TokenReuse | None = None,
    write: bool = False,
) -> torch.Tensor:
    """start [B, Fc, C, h, w] at times[0] -> x0 [B, Fc, C, h, w].

    times: [S] shared, or [S, B] per batch item. ``exit_step`` stops early and returns that step's x0
    estimate; only that step's forward keeps gradients (Self-Forcing's gradient truncation).
    ``write``: the last pass also appends the chunk's keys/values to the cache (those of its input at
    the last time, not of the clean chunk at t = 0): one forward fewer per chunk (`rollout`'s
    ``fold_write``).
    """
    grad = torch.is_grad_enabled()
    last = len(times) - 1 if exit_step is None else exit_step
    x, (batch, frames) = start, start.shape[:2]
    for step in range(last + 1):
        t = _frame_times(times[step], batch, frames)
        with torch.set_grad_enabled(grad and step == last):
            velocity = net(
                x,
                t,
                cond,
                cache=cache,
                update_cache=write and step == last,
                reuse=reuse,
                reuse_key=f"step{step}",
            ).float()
        if step == last:
            return flow.x0_from_velocity(x, velocity, t)
        t_next = _frame_times(times[step + 1], batch, frames)
        x = x + flow.expand_time(t_next - t, x) * velocity  # Euler: the ODE step to the next student time
    raise AssertionError("unreachable")


def write_chunk(
    net: EffectTransformer,
    cache: KVCache,
    cond: EffectCondition,
    clean: torch.Tensor,
    reuse: TokenReuse | None = None,
) -> None:
    """Append the clean chunk's keys/values: a forward at t = 0 (CausVid)."""
    zeros = torch.zeros(clean.shape[:2], device=clean.device)
    net(clean, zeros, cond, cache=cache, update_cache=True, reuse=reuse, reuse_key="write")


def rollout(
    net: EffectTransformer,
    cond: EffectCondition,
    start: torch.Tensor,
    times: torch.Tensor,
    cache: KVCache,
    chunk_frames: int | None = None,
    exit_steps: list[int] | None = None,
    context: torch.Tensor | None = None,
    write_grad: bool = False,
    reuse: TokenReuse | None = None,
    fold_write: bool = False,
) -> torch.Tensor:
    """Generate every frame of ``start`` [B, F, C, h, w] chunk by chunk -> x0 [B, F, C, h, w].

    The reference enters the cache first unless it already holds a sink. ``context`` [B, F, C, h, w]:
    clean latents written to the cache instead of the generated ones (teacher forcing); ``write_grad``
    keeps gradients through those writes (else they run without, as Self-Forcing does). ``reuse``:
    the mask cache (inference), whose ``active`` positions the caller sets per chunk. ``fold_write``
    (inference): no separate pass at t = 0; the last denoising pass writes the cache.
    """
    if fold_write and (context is not None or exit_steps is not None):
        raise ValueError("fold_write is for inference: the written keys are the last pass's own")
    chunk = chunk_frames or net.config.chunk_frames
    frames = start.shape[1]
    if exit_steps is not None and len(exit_steps) != -(-frames // chunk):
        raise ValueError(f"need one exit step per chunk ({-(-frames // chunk)}), got {len(exit_steps)}")
    if not cache.has_sink:
        net.prefill(cond, cache)
    outputs = []
    for index, first in enumerate(range(0, frames, chunk)):
        part = chunk_condition(cond, first, first + chunk)
        exit_step = None if exit_steps is None else exit_steps[index]
        x0 = denoise_chunk(
            net, cache, part, start[:, first : first + chunk], times, exit_step, reuse, write=fold_write
        )
        outputs.append(x0)
        if fold_write:
            continue
        clean = x0 if context is None else context[:, first : first + chunk]
        with torch.set_grad_enabled(torch.is_grad_enabled() and write_grad):
            write_chunk(net, cache, part, clean if write_grad else clean.detach(), reuse)
    return torch.cat(outputs, dim=1)
