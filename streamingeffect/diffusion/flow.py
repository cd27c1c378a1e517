"""Rectified-flow schedule: interpolation, the conversions between x0 / velocity / noise, time shift.

Convention (as Wan and SD3): x_t = (1 - t) x0 + t noise, t in [0, 1], t = 1 is pure noise, and the
network predicts the velocity v = noise - x0 (so x0 = x_t - t v). All conversions live here.
"""

from __future__ import annotations

import torch


def expand_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t [B] or [B, F] -> broadcastable against x [B, F, ...]."""
    return t.reshape(*t.shape, *([1] * (x.dim() - t.dim())))


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (1 - expand_time(t, x0)) * x0 + expand_time(t, x0) * noise


def velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x_t - expand_time(t, x_t) * v


def noise_from_velocity(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x_t + (1 - expand_time(t, x_t)) * v


def velocity_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Undefined at t = 0 (any velocity fits); callers keep t > 0."""
    return (x_t - x0) / expand_time(t, x_t)


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Spend more of the schedule at high noise when shift > 1: t' = s t / (1 + (s - 1) t)."""
    return shift * t / (1 + (shift - 1) * t)


def sampling_times(steps: int, shift: float, device: torch.device | None = None) -> torch.Tensor:
    """[steps + 1] times from 1 down to 0 on the shifted schedule."""
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, device=device), shift)


def training_times(
    shape: tuple[int, ...], shift: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random training times: logit-normal (mass in the middle, as SD3), then shifted."""
    u = torch.sigmoid(torch.randn(shape, generator=generator))
    return shift_time(u, shift)
