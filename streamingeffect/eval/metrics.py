"""Image metrics used by the benchmarks: PSNR (optionally inside / outside a mask) and masked LPIPS.

Images are float tensors [N, 3, H, W] in [-1, 1]; masks [N, 1, H, W] in {0, 1}.
"""

from __future__ import annotations

import math

import torch

from streamingeffect.models.lpips import LPIPS


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB on the [0, 1] scale over all pixels, or only where ``mask`` is 1 (inf if identical)."""
    error = ((a.float() - b.float()) / 2).pow(2)
    if mask is not None:
        weight = mask.float().expand_as(error)
        if weight.sum() == 0:
            return float("nan")
        mse = float((error * weight).sum() / weight.sum())
    else:
        mse = float(error.mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def masked_lpips(lpips: LPIPS, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean LPIPS distance map over the mask (or the whole image)."""
    with torch.no_grad():
        distance = lpips.distance_map(a.float(), b.float())
    if mask is None:
        return float(distance.mean())
    weight = mask.float()
    return float((distance * weight).sum() / weight.sum().clamp_min(1)) if weight.sum() > 0 else float("nan")
