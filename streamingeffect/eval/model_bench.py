"""Model benchmarks: autoencoder quality and speed, teacher forward time, teacher quality by condition.

Everything runs on held-out data: clips (and the people in them) that no model trained on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from streamingeffect.data.dataset import shard_paths, to_signed
from streamingeffect.data.shards import read_shard
from streamingeffect.eval.metrics import masked_lpips, psnr
from streamingeffect.io import read_frames
from streamingeffect.models.autoencoder import FrameAutoencoder
from streamingeffect.models.dit import EffectCondition, TextCondition
from streamingeffect.models.lpips import LPIPS
from streamingeffect.pipeline import ModelBundle, Sampling
from streamingeffect.precision import autocast, machine_summary

MODES = {"text only": (False, True), "reference only": (True, False), "text + reference": (True, True)}


def _median_ms(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@dataclass
class AutoencoderReport:
    frames: int
    psnr: float
    lpips: float
    encode_ms: float
    decode_ms: float

    @property
    def frames_per_s(self) -> float:
        return 1000.0 / (self.encode_ms + self.decode_ms)


@torch.no_grad()
def autoencoder_report(
    ae: FrameAutoencoder, clip: Path, size: int = 256, max_frames: int = 64
) -> AutoencoderReport:
    """Reconstruction of a held-out clip (centre square, resized to ``size``) and per-frame speed."""
    lpips = LPIPS()
    scores_psnr, scores_lpips, count = [], [], 0
    for frame in read_frames(clip, stop=max_frames):
        h, w = frame.image.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        square = cv2.resize(
            frame.image[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA
        )
        x = to_signed(square[None])
        recon = ae.decode(ae.encode(x)).clamp(-1, 1)
        scores_psnr.append(psnr(recon, x))
        scores_lpips.append(masked_lpips(lpips, recon, x))
        count += 1
    x = torch.zeros(1, 3, size, size)
    z = ae.encode(x)
    return AutoencoderReport(
        frames=count,
        psnr=float(np.mean(scores_psnr)),
        lpips=float(np.mean(scores_lpips)),
        encode_ms=_median_ms(lambda: ae.encode(x)),
        decode_ms=_median_ms(lambda: ae.decode(z)),
    )


@torch.no_grad()
def teacher_forward_ms(model: ModelBundle, resolution: int = 256) -> float:
    """One forward pass of the transformer, batch 1, one training window of frames (bf16 where fast)."""
    net, channels, frames = model.net, model.net.config.latent_channels, model.task.frames
    size = resolution // model.autoencoder.config.downsample
    x = torch.randn(1, frames, channels, size, size)
    cond = EffectCondition(torch.randn_like(x), torch.ones(1, frames, 1, size, size))
    with autocast(x.device):
        return _median_ms(lambda: net(x, torch.rand(1, frames), cond))


@dataclass
class QualityRow:
    mode: str
    samples: int
    psnr_inside: float
    lpips_inside: float
    psnr_outside: float


@torch.no_grad()
def teacher_quality(
    model: ModelBundle, data: Path, steps: int, limit: int = 16, seed: int = 0
) -> list[QualityRow]:
    """Teacher outputs against the renderer's ground truth on held-out samples, per condition mode."""
    from streamingeffect.models.text import TextEncoder

    lpips, encoder = LPIPS(), TextEncoder()
    res, frames, side = model.resolution, model.task.frames, model.latent_side
    scores: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in MODES}
    samples = [s for shard in shard_paths(data) for s in read_shard(shard)][:limit]
    for index, sample in enumerate(samples):

        def prepare(array: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
            return np.stack([cv2.resize(f, (res, res), interpolation=interpolation) for f in array[:frames]])

        source, target = to_signed(prepare(sample.source)), to_signed(prepare(sample.target))
        edit = torch.from_numpy(prepare(sample.edit_mask.astype(np.uint8), cv2.INTER_NEAREST)).float()[
            :, None
        ]
        kind_mask = (
            sample.edit_mask if sample.meta["kind"] == "edit" else sample.person.astype(np.float32) / 255
        )
        latent_mask = torch.from_numpy(
            np.stack(
                [
                    cv2.resize(m.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
                    for m in kind_mask[:frames]
                ]
            )
        )[None, :, None]
        z_source = model.encode(source)
        ref_pixels = to_signed(prepare(np.stack([sample.reference_source, sample.reference])))
        ref_mask = latent_mask[0, min(int(sample.meta["reference_index"]), frames - 1)]
        encoded = model.reference(ref_pixels[0], ref_pixels[1], ref_mask)
        features = encoder.encode([sample.meta["text"]])
        for mode, (use_ref, use_text) in MODES.items():
            reference = replace(encoded, keep=torch.tensor([use_ref]))
            text = TextCondition(features.tokens, features.mask, features.pooled, torch.tensor([use_text]))
            cond = EffectCondition(z_source, latent_mask, reference, text)
            noise = torch.randn(z_source.shape, generator=torch.Generator().manual_seed(seed + index))
            out = model.decode_target(model.denoise(cond, noise, Sampling(steps)), z_source)
            scores[mode].append(
                (psnr(out, target, edit), masked_lpips(lpips, out, target, edit), psnr(out, target, 1 - edit))
            )
    rows = []
    for mode, values in scores.items():
        array = np.array(values, dtype=np.float64)
        means = np.nanmean(array, axis=0)
        rows.append(QualityRow(mode, len(values), *map(float, means)))
    return rows


def run_model_benchmark(
    autoencoder_dir: Path,
    teacher_dir: Path | None,
    heldout_clip: Path,
    heldout_data: Path | None,
    steps: int,
    limit: int,
    report: Path | None,
    command: str,
) -> str:
    """Measure, print and (optionally) record the autoencoder and teacher figures as markdown."""

    from streamingeffect.docs import replace_section
    from streamingeffect.models.autoencoder import load_autoencoder
    from streamingeffect.precision import cpu_has_native_bf16

    lines = [
        "## Models: autoencoder and teacher",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}, "
        f"{'bf16 autocast' if cpu_has_native_bf16() else 'fp32 (no native bf16 on this CPU)'}. "
        f"Held-out clip: `{heldout_clip.name}` (a person no model trained on).",
        "",
    ]
    ae = load_autoencoder(autoencoder_dir)
    ae_report = autoencoder_report(ae, heldout_clip)
    lines += [
        "| autoencoder | frames | PSNR (dB) | LPIPS | encode ms | decode ms | frames/s (enc+dec) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {autoencoder_dir} | {ae_report.frames} | {ae_report.psnr:.2f} | {ae_report.lpips:.4f} | "
        f"{ae_report.encode_ms:.1f} | {ae_report.decode_ms:.1f} | {ae_report.frames_per_s:.1f} |",
        "",
        "Autoencoder at 256x256, batch 1; PSNR and LPIPS (AlexNet) over the clip's centre square.",
        "",
    ]
    if teacher_dir is not None:
        model = ModelBundle.load(teacher_dir)
        forward = teacher_forward_ms(model, 256)
        lines += [
            f"Teacher forward at 256x256 ({model.task.frames} frames + the reference, batch 1): "
            f"{forward:.1f} ms.",
            "",
        ]
        if heldout_data is not None:
            rows = teacher_quality(model, heldout_data, steps, limit)
            lines += [
                f"Teacher quality at {model.resolution}x{model.resolution}, {steps} Euler steps, against the "
                f"renderer's ground truth on {rows[0].samples} held-out samples (`{heldout_data}`):",
                "",
                "| condition | PSNR inside mask (dB) | LPIPS inside mask | PSNR outside mask (dB) |",
                "|---|---:|---:|---:|",
            ]
            lines += [
                f"| {r.mode} | {r.psnr_inside:.2f} | {r.lpips_inside:.4f} | {r.psnr_outside:.2f} |"
                for r in rows
            ]
    text = "\n".join(lines) + "\n"
    print(text)
    if report is not None:
        replace_section(report, "models", text)
    return text
