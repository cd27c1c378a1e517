"""Autoencoder objective: L1 + LPIPS reconstruction, plus a small pull of the latents towards zero."""

from __future__ import annotations

import torch

from streamingeffect.models.autoencoder import FrameAutoencoder
from streamingeffect.models.lpips import LPIPS


def reconstruction_loss(
    autoencoder: FrameAutoencoder,
    lpips: LPIPS,
    frames: torch.Tensor,
    lpips_weight: float = 0.5,
    latent_weight: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, float]]:
    """frames [B, 3, H, W] in [-1, 1] -> (loss, metrics)."""
    recon, latents = autoencoder(frames)
    l1 = (recon - frames).abs().mean()
    perceptual = lpips(recon.float(), frames.float()).mean()
    latent_l2 = latents.float().pow(2).mean()
    loss = l1 + lpips_weight * perceptual + latent_weight * latent_l2
    metrics = {
        "l1": l1.detach().item(),
        "lpips": perceptual.detach().item(),
        "latent_rms": latent_l2.detach().sqrt().item(),
    }
    return loss, metrics
