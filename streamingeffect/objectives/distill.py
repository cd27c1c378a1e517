"""Distillation objectives: teacher ODE trajectories, ODE regression, DMD (generator and critic).

Everything is in diffusion space (the residual target - source when the model predicts residuals)
and uses flow.py's convention x_t = (1 - t) x0 + t noise, velocity = noise - x0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamingeffect.diffusion import flow
from streamingeffect.diffusion.sampler import NO_GUIDANCE, Guidance, guided_velocity
from streamingeffect.models.dit import EffectCondition, EffectTransformer
from streamingeffect.models.kv_cache import KVCache
from streamingeffect.rollout import rollout


@torch.no_grad()
def teacher_trajectory(
    teacher: EffectTransformer,
    cond: EffectCondition,
    noise: torch.Tensor,
    student_times: torch.Tensor,
    steps: int,
    shift: float,
    guidance: Guidance = NO_GUIDANCE,
) -> torch.Tensor:
    """Euler-integrate the teacher's ODE from ``noise`` [B, F, C, h, w] in ``steps`` steps and keep
    the states at the student's times plus the end -> [B, S + 1, F, C, h, w] (index S: x0).

    The student's times must lie on the teacher's grid (e.g. 48 teacher steps for 4 student steps).
    """
    grid = flow.sampling_times(steps, shift)
    picks = [int(torch.argmin((grid - t).abs())) for t in student_times.tolist()]
    if any(abs(float(grid[i]) - t) > 1e-5 for i, t in zip(picks, student_times.tolist(), strict=True)):
        raise ValueError(
            f"{steps} teacher steps do not pass through the student's times "
            f"{[round(t, 4) for t in student_times.tolist()]}; use a multiple of the student steps"
        )
    states, x = {}, noise
    for i in range(steps):
        if i in picks:
            states[i] = x
        t = grid[i].expand(noise.shape[:2])
        x = x + (grid[i + 1] - grid[i]) * guided_velocity(teacher, x, t, cond, guidance)
    return torch.stack([states[i] for i in picks] + [x], dim=1)


@dataclass(frozen=True)
class StudentOutputs:
    x0: torch.Tensor  # [B, F, C, h, w] the student's clean estimate (diffusion space)
    exit_steps: list[int]  # per chunk


def ode_regression_loss(
    student: EffectTransformer,
    cond: EffectCondition,
    trajectory: torch.Tensor,
    times: torch.Tensor,
    edit: torch.Tensor,
    mask_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """CausVid's ODE initialisation: from the teacher's state at a random student time (one per
    sample), the causal student predicts the teacher's clean result, chunk by chunk, with the earlier
    chunks' teacher results in its KV cache (gradients through the cache writes too).

    trajectory [B, S + 1, F, C, h, w]; edit [B, F, 1, h, w] weighs the edit region (1 + mask_weight)x.
    """
    batch, steps = trajectory.shape[0], trajectory.shape[1] - 1
    pick = torch.randint(steps, (batch,), generator=generator).to(trajectory.device)
    start = trajectory[torch.arange(batch), pick]  # [B, F, C, h, w]
    target = trajectory[:, -1]
    cache = KVCache()  # a training clip fits the window: keep everything
    x0 = rollout(student, cond, start, times[pick][None], cache, context=target, write_grad=True)
    error = (x0.float() - target.float()).pow(2)
    loss = (error * (1 + mask_weight * edit)).mean()
    return loss, {"mse_x0": float(error.detach().mean())}


def self_forcing_rollout(
    student: EffectTransformer,
    cond: EffectCondition,
    noise: torch.Tensor,
    times: torch.Tensor,
    context: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StudentOutputs:
    """Self-Forcing: the student generates the clip with its own KV cache (or, with ``context``, with
    given clean latents in it); each chunk stops at a random step, whose forward keeps gradients."""
    chunks = -(-noise.shape[1] // student.config.chunk_frames)
    exits = torch.randint(len(times), (chunks,), generator=generator).tolist()
    x0 = rollout(student, cond, noise, times, KVCache(), exit_steps=exits, context=context)
    return StudentOutputs(x0, exits)


def dmd_loss(
    x: torch.Tensor,
    cond: EffectCondition,
    teacher: EffectTransformer,
    critic: EffectTransformer,
    shift: float,
    guidance: Guidance = NO_GUIDANCE,
    t_range: tuple[float, float] = (0.02, 0.98),
) -> tuple[torch.Tensor, dict[str, float]]:
    """Distribution matching distillation on generated x [B, F, C, h, w] (gradients flow into x).

    1. Noise x to a random time t.  2. Real score: the frozen teacher's x0 (with guidance); fake
    score: the critic's x0.  3. DMD eq. 7: grad = (fake - real) / mean|x - real| (per sample).
    4. loss = 0.5 ||x - sg(x - grad)||^2, whose gradient with respect to x is grad (up to the mean).
    """
    batch = x.shape[0]
    with torch.no_grad():
        low, high = t_range
        t = flow.shift_time(low + (high - low) * torch.rand(batch, 1, device=x.device), shift)
        t = t.expand(-1, x.shape[1])
        noise = torch.randn_like(x)
        x_t = flow.interpolate(x.detach(), noise, t)
        real = flow.x0_from_velocity(x_t, guided_velocity(teacher, x_t, t, cond, guidance), t)
        fake = flow.x0_from_velocity(x_t, critic(x_t, t, cond).float(), t)
        scale = (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
        grad = (fake - real) / scale
    loss = 0.5 * (x.float() - (x.detach() - grad).float()).pow(2).mean()
    return loss, {"dmd_grad": float(grad.abs().mean()), "real_fake_gap": float((fake - real).abs().mean())}


def critic_loss(
    critic: EffectTransformer, x: torch.Tensor, cond: EffectCondition, shift: float
) -> torch.Tensor:
    """The fake score learns the generator's current distribution by flow matching on its samples (on
    the clean sample read off the velocity for a critic that predicts x0, as its teacher trained)."""
    x = x.detach()
    noise = torch.randn_like(x)
    t = flow.training_times((x.shape[0], 1), shift).to(x.device).expand(-1, x.shape[1])
    x_t = flow.interpolate(x, noise, t)
    predicted = critic(x_t, t, cond).float()
    if critic.config.predict == "x0":
        return (flow.x0_from_velocity(x_t, predicted, t) - x.float()).pow(2).mean()
    return (predicted - flow.velocity(x, noise)).pow(2).mean()
