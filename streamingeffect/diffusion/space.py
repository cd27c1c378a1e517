"""What the flow models: the residual (target - source) or the target latent itself.

Every conversion between a target latent and the diffusion model's space lives here, so the teacher's
loss, the distillation pairs and the inference pipeline cannot disagree about it.
"""

from __future__ import annotations

import torch


def to_diffusion_space(target: torch.Tensor, source: torch.Tensor, residual: bool) -> torch.Tensor:
    """A target latent -> what the flow models: target - source when ``residual``, else the target."""
    return target - source if residual else target


def from_diffusion_space(x0: torch.Tensor, source: torch.Tensor, residual: bool) -> torch.Tensor:
    """The flow's clean sample -> the target latent."""
    return x0 + source if residual else x0


def base_latent(source: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    """What the model edits: the source latent, moved by the flow prior where there is one (a model
    with a prior predicts the correction on top of it)."""
    return source if prior is None else source + prior
