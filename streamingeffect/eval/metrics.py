"""Metrics used by the benchmarks: PSNR (optionally inside / outside a mask), masked LPIPS, warp error.

Images are float tensors [N, 3, H, W] in [-1, 1]; masks [N, 1, H, W] in {0, 1}; videos for the warp
error are uint8 [F, H, W, 3].
"""

from __future__ import annotations

import math

import cv2
import numpy as np
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


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from gray uint8 frame a to b -> [H, W, 2] (dx, dy) pixels."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(a, b, None)


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def _sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image sampled at p + flow(p) for every pixel p (bilinear, border replicated)."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def warp_error(outputs: np.ndarray, sources: np.ndarray) -> float:
    """Temporal consistency as StreamV2V measures it: flow on the *source* frames, output frame i
    warped onto frame i + 1, mean absolute difference (0-255 scale) over pixels that pass a
    forward-backward occlusion check. outputs, sources: [F, H, W, 3] uint8. 0 for a static output of a
    static source; lower is steadier."""
    if len(outputs) != len(sources) or len(outputs) < 2:
        raise ValueError("warp error needs at least two frames, as many outputs as sources")
    errors, weights = 0.0, 0.0
    for i in range(len(outputs) - 1):
        a, b = _gray(sources[i]), _gray(sources[i + 1])
        backward = _flow(b, a)  # from frame i + 1 to frame i
        forward = _flow(a, b)
        # Non-occluded: going back to frame i then forward again lands where it started.
        round_trip = backward + _sample(forward, backward)
        bound = 0.01 * ((backward**2).sum(-1) + (_sample(forward, backward) ** 2).sum(-1)) + 0.5
        valid = ((round_trip**2).sum(-1) < bound).astype(np.float64)
        warped = _sample(outputs[i].astype(np.float32), backward)
        difference = np.abs(outputs[i + 1].astype(np.float32) - warped).mean(-1)
        errors += float((difference * valid).sum())
        weights += float(valid.sum())
    return errors / max(weights, 1.0)
