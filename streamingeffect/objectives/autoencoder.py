"""Autoencoder objectives: L1 + LPIPS reconstruction, plus a small pull of the latents towards zero; and
the distillation of a trained autoencoder into a smaller one that keeps its latent space."""

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


def distillation_loss(
    student: FrameAutoencoder,
    teacher: FrameAutoencoder,
    lpips: LPIPS,
    frames: torch.Tensor,
    lpips_weight: float = 0.25,
) -> tuple[torch.Tensor, dict[str, float]]:
    """A smaller autoencoder in the teacher's latent space, so that every model trained on the teacher's
    latents runs on it unchanged: its encoder matches the teacher's latents and its decoder the teacher's
    pictures of them. The runtime adds ``decode(target) - decode(source)`` to the frame, so that
    difference is matched too. frames [2B, 3, H, W] in [-1, 1]: B sources, then their B targets."""
    with torch.no_grad():
        latents = teacher.encode(frames)
        pictures = teacher.decode(latents)
    # Through forward (DDP syncs gradients there): the teacher's latents decoded, the ones the effect
    # models were trained on.
    decoded, encoded = student(frames, latents)
    half = frames.shape[0] // 2
    latent_error = (encoded - latents).pow(2).mean()  # scaled latents: unit variance
    picture_error = (decoded - pictures).abs().mean()
    change_error = ((decoded[half:] - decoded[:half]) - (pictures[half:] - pictures[:half])).abs().mean()
    perceptual = lpips(decoded.float(), pictures.float()).mean()
    loss = latent_error + picture_error + change_error + lpips_weight * perceptual
    metrics = {
        "latent_mse": latent_error.detach().item(),
        "l1": picture_error.detach().item(),
        "change_l1": change_error.detach().item(),
        "lpips": perceptual.detach().item(),
    }
    return loss, metrics
