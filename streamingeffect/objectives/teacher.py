"""Teacher objective: flow matching on target latents, conditioned on source, mask, reference and text.

Condition dropout makes one network serve every way of asking (the seed paper's reference dropout
0.5 with a random target frame as the reference): per sample, text only, reference only, both, or
neither (the unconditional branch for classifier-free guidance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamingeffect.diffusion import flow
from streamingeffect.diffusion.space import base_latent, to_diffusion_space
from streamingeffect.models.dit import EffectCondition, Reference, TextCondition

# Shares of the condition modes during teacher training: reference dropout is 0.5 overall.
MODE_SHARES = {"text": 0.45, "reference": 0.15, "both": 0.35, "none": 0.05}


@dataclass
class LatentBatch:
    """A batch of clips in latent space (scaled latents; masks at latent resolution)."""

    source: torch.Tensor  # [B, F, C, h, w]
    target: torch.Tensor  # [B, F, C, h, w]
    mask: torch.Tensor  # [B, F, 1, h, w] what the model is given (edit region or person)
    edit: torch.Tensor  # [B, F, 1, h, w] where the target differs (for loss weighting and metrics)
    ref_source: torch.Tensor  # [B, C, h, w]
    ref_target: torch.Tensor  # [B, C, h, w]
    ref_mask: torch.Tensor  # [B, 1, h, w]
    text_tokens: torch.Tensor  # [B, L, 384]
    text_mask: torch.Tensor  # [B, L] bool
    text_pooled: torch.Tensor  # [B, 384]
    prior: torch.Tensor  # [B, F, C, h, w] the reference's change carried to each frame by flow (latent)
    confidence: torch.Tensor  # [B, F, 1, h, w] the flow's confidence (0 where data has no prior)

    def to(self, device: torch.device) -> LatentBatch:
        return LatentBatch(**{k: v.to(device) for k, v in vars(self).items()})


def condition(
    batch: LatentBatch,
    keep_reference: torch.Tensor,
    keep_text: torch.Tensor,
    residual: bool,
    prior: bool = False,
) -> EffectCondition:
    """The model's condition for a batch; ``prior``: the model takes the flow prior (where the reference
    is dropped there is nothing to carry, so its prior is zero too)."""
    reference = Reference(
        source=batch.ref_source,
        target=to_diffusion_space(batch.ref_target, batch.ref_source, residual),
        mask=batch.ref_mask,
        keep=keep_reference,
    )
    text = TextCondition(batch.text_tokens, batch.text_mask, batch.text_pooled, keep_text)
    cond = EffectCondition(source=batch.source, mask=batch.mask, reference=reference, text=text)
    if prior:
        kept = keep_reference.to(batch.prior.dtype).view(-1, 1, 1, 1, 1)
        cond.prior, cond.confidence = batch.prior * kept, batch.confidence * kept
    return cond


def sample_modes(
    batch: int, generator: torch.Generator | None = None, shares: dict[str, float] = MODE_SHARES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (keep_reference, keep_text) drawn from ``shares`` (keys as MODE_SHARES)."""
    modes = torch.multinomial(
        torch.tensor(list(shares.values())), batch, replacement=True, generator=generator
    )
    names = list(shares)
    keep_reference = torch.tensor([names[m] in ("reference", "both") for m in modes])
    keep_text = torch.tensor([names[m] in ("text", "both") for m in modes])
    return keep_reference, keep_text


def teacher_loss(
    net: torch.nn.Module,
    batch: LatentBatch,
    shift: float,
    residual: bool,
    mask_weight: float = 1.0,
    prior: bool = False,
    x0_loss: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Flow-matching MSE on the velocity (or, ``x0_loss``, on the clean sample read off it, for models
    that predict x0: the velocity's error there grows as 1/t); pixels inside the edit region weigh
    (1 + mask_weight)x. ``prior``: the model takes the flow prior and models the correction to it."""
    size = batch.source.shape[0]
    keep_reference, keep_text = (m.to(batch.source.device) for m in sample_modes(size))
    cond = condition(batch, keep_reference, keep_text, residual, prior)
    x0 = to_diffusion_space(batch.target, base_latent(cond.source, cond.prior), residual)
    noise = torch.randn_like(x0)
    t = flow.training_times((size, 1), shift).to(x0.device).expand(-1, x0.shape[1])  # one t per clip
    x_t = flow.interpolate(x0, noise, t)
    predicted = net(x_t, t, cond).float()
    if x0_loss:
        error = (flow.x0_from_velocity(x_t, predicted, t) - x0.float()).pow(2)
    else:
        error = (predicted - flow.velocity(x0, noise).float()).pow(2)
    weight = 1.0 + mask_weight * batch.edit
    loss = (error * weight).mean()
    inside, error = batch.edit.expand_as(error), error.detach()
    metrics = {
        "mse_inside": float((error * inside).sum() / inside.sum().clamp_min(1)),
        "mse_outside": float((error * (1 - inside)).sum() / (1 - inside).sum().clamp_min(1)),
    }
    return loss, metrics
