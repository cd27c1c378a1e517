"""Distillation benchmark: the teacher at 50 and 4 steps against the causal students, on held-out clips.

Every method gets the same held-out samples, conditions and noise seeds. Quality against the
renderer's ground truth (PSNR and LPIPS inside the edit mask, PSNR outside, warp error), speed per
frame and first-frame latency (encode + transformer + decode, batch 1, this machine), and a long
synthetic stream through the student's KV cache for memory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from streamingeffect.data.dataset import shard_paths, to_signed
from streamingeffect.data.shards import Sample, read_shard
from streamingeffect.eval.metrics import masked_lpips, psnr, warp_error
from streamingeffect.models.dit import EffectCondition, Reference, TextCondition
from streamingeffect.models.lpips import LPIPS
from streamingeffect.pipeline import ModelBundle, Sampling
from streamingeffect.precision import machine_summary
from streamingeffect.rollout import new_cache, rollout

MODES = {"text + reference": (True, True), "text only": (False, True)}


@dataclass
class HeldoutClip:
    """One held-out sample at the models' resolution: pixels for metrics, masks, conditions."""

    source: np.ndarray  # [F, R, R, 3] uint8
    target: torch.Tensor  # [F, 3, R, R] in [-1, 1]
    edit: torch.Tensor  # [F, 1, R, R] {0, 1}
    latent_mask: torch.Tensor  # [1, F, 1, h, w]
    ref_pixels: torch.Tensor  # [2, 3, R, R] reference source, edited reference
    ref_mask: torch.Tensor  # [1, 1, h, w]
    text: str


def _resize(frames: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in frames])


def heldout_clip(sample: Sample, resolution: int, factor: int, frames: int) -> HeldoutClip:
    latent = resolution // factor
    region = sample.edit_mask if sample.meta["kind"] == "edit" else sample.person.astype(np.float32) / 255
    masks = _resize(region[:frames].astype(np.float32), latent)
    ref_index = min(int(sample.meta["reference_index"]), frames - 1)
    edit = _resize(sample.edit_mask[:frames].astype(np.uint8), resolution, cv2.INTER_NEAREST)
    return HeldoutClip(
        source=_resize(sample.source[:frames], resolution),
        target=to_signed(_resize(sample.target[:frames], resolution)),
        edit=torch.from_numpy(edit).float()[:, None],
        latent_mask=torch.from_numpy(masks)[None, :, None],
        ref_pixels=to_signed(_resize(np.stack([sample.reference_source, sample.reference]), resolution)),
        ref_mask=torch.from_numpy(masks[ref_index])[None, None],
        text=sample.meta["text"],
    )


def load_heldout(data: Path, resolution: int, factor: int, frames: int, limit: int) -> list[HeldoutClip]:
    samples = [s for shard in shard_paths(data) for s in read_shard(shard) if s.num_frames >= frames]
    if not samples:
        raise ValueError(f"{data}: no held-out samples with at least {frames} frames")
    return [heldout_clip(s, resolution, factor, frames) for s in samples[:limit]]


@dataclass
class Method:
    """One row of the table: a model and how it samples."""

    name: str
    model: ModelBundle
    steps: int
    window_chunks: int | None = None  # a student's KV window, if not its own (0: per frame, no context)
    recompute_window: bool = False  # a student without a KV cache: every chunk recomputes its window


@dataclass
class Result:
    psnr_inside: float
    lpips_inside: float
    psnr_outside: float
    warp: float
    ms_per_frame: float
    first_frame_ms: float


@torch.no_grad()
def run_method(
    method: Method, clip: HeldoutClip, cond_keep: tuple[bool, bool], features: object, seed: int
) -> tuple[np.ndarray, torch.Tensor, float, float]:
    """-> (output uint8 [F, R, R, 3], output pixels [F, 3, R, R], total seconds, first-frame seconds).

    Frames are encoded, generated and decoded window by window (teacher) or chunk by chunk (student),
    as a stream would; the clock starts before the first encode.
    """
    bundle = method.model
    frames = clip.source.shape[0]
    noise = torch.randn(
        1,
        frames,
        bundle.net.config.latent_channels,
        *clip.latent_mask.shape[-2:],
        generator=torch.Generator().manual_seed(seed),
    )
    use_ref, use_text = cond_keep
    cache = new_cache(bundle.net) if bundle.is_student else None
    if cache is not None and method.window_chunks is not None:
        cache.window_chunks = method.window_chunks
    window = bundle.window_frames
    outputs, first = [], 0.0
    sources: list[torch.Tensor] = []  # every encoded source chunk so far, for recompute_window
    start = time.perf_counter()
    reference = replace(
        bundle.reference(clip.ref_pixels[0], clip.ref_pixels[1], clip.ref_mask[0]),
        keep=torch.tensor([use_ref]),
    )
    tokens, mask, pooled = features  # type: ignore[misc]
    text = TextCondition(tokens, mask, pooled, torch.tensor([use_text]))
    sampling = Sampling(method.steps)
    for begin in range(0, frames, window):
        stop = min(frames, begin + window)
        z_source = bundle.encode(to_signed(clip.source[begin:stop]))
        if method.recompute_window:
            sources.append(z_source)
            x0 = _recompute_window(
                method, torch.cat(sources, 1), clip.latent_mask[:, :stop], noise, reference, text
            )
        else:
            cond = EffectCondition(z_source, clip.latent_mask[:, begin:stop], reference, text)
            x0 = bundle.denoise(cond, noise[:, begin:stop], sampling, cache)
        pixels = bundle.decode_target(x0, z_source)
        if not outputs:
            first = time.perf_counter() - start
        outputs.append(pixels)
    total = time.perf_counter() - start
    out = torch.cat(outputs)
    as_uint8 = ((out.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    return as_uint8, out, total, first


def _recompute_window(
    method: Method,
    sources: torch.Tensor,
    masks: torch.Tensor,
    noise: torch.Tensor,
    reference: Reference,
    text: TextCondition,
) -> torch.Tensor:
    """The last chunk of ``sources`` [1, F, C, h, w] as a student without a KV cache makes it: a fresh
    cache, and the window's earlier chunks generated again from their noise first."""
    bundle = method.model
    chunk, frames = bundle.net.config.chunk_frames, sources.shape[1]
    first = max(0, frames - chunk * (bundle.net.config.window_chunks + 1))
    cond = EffectCondition(sources[:, first:], masks[:, first:], reference, text)
    x0 = bundle.denoise(cond, noise[:, first:frames], Sampling(method.steps), new_cache(bundle.net))
    return x0[:, -chunk:]


def evaluate(methods: list[Method], clips: list[HeldoutClip], mode: str) -> dict[str, Result]:
    from tqdm import tqdm

    from streamingeffect.models.text import TextEncoder

    lpips, encoder = LPIPS(), TextEncoder()
    features = {c.text: encoder.encode([c.text]) for c in clips}
    results = {}
    for method in methods:
        rows = []
        for index, clip in enumerate(tqdm(clips, desc=f"{method.name} ({mode})", unit="clip")):
            f = features[clip.text]
            video, pixels, total, first = run_method(
                method, clip, MODES[mode], (f.tokens, f.mask, f.pooled), seed=index
            )
            rows.append(
                (
                    psnr(pixels, clip.target, clip.edit),
                    masked_lpips(lpips, pixels, clip.target, clip.edit),
                    psnr(pixels, clip.target, 1 - clip.edit),
                    warp_error(video, clip.source),
                    1000 * total / len(video),
                    1000 * first,
                )
            )
        results[method.name] = Result(*map(float, np.nanmean(np.array(rows, dtype=np.float64), axis=0)))
    return results


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class StreamMemory:
    frames: int
    steps: int
    rss_mb: list[tuple[int, float]]  # (frames streamed, resident MB)
    cache_tokens: int
    cache_mb: float
    seconds: float


@torch.no_grad()
def stream_memory(model: ModelBundle, frames: int, steps: int, every: int = 500) -> StreamMemory:
    """Stream ``frames`` latent frames (a slowly drifting synthetic source) through the student's
    rollout with one KV cache, sampling the process's resident memory every ``every`` frames."""
    from tqdm import tqdm

    config = model.net.config
    size = model.latent_side
    generator = torch.Generator().manual_seed(0)
    shape = (1, config.chunk_frames, config.latent_channels, size, size)
    source = torch.randn(shape, generator=generator)
    mask = torch.ones(1, config.chunk_frames, 1, size, size)
    ref = Reference(source[:, 0], torch.zeros_like(source[:, 0]), mask[:, 0], torch.ones(1, dtype=torch.bool))
    cache = new_cache(model.net)
    times = model.times(Sampling(steps))
    samples: list[tuple[int, float]] = []
    start = time.perf_counter()
    for index in tqdm(range(0, frames, config.chunk_frames), desc="stream memory", unit="chunk"):
        source = 0.98 * source + 0.2 * torch.randn(shape, generator=generator)  # the scene keeps changing
        cond = EffectCondition(source, mask, ref)
        rollout(model.net, cond, torch.randn(shape, generator=generator), times, cache)
        if index % every == 0 or index + config.chunk_frames >= frames:
            samples.append((index + config.chunk_frames, _rss_mb()))
    return StreamMemory(
        frames, steps, samples, cache.tokens(), cache.nbytes() / 2**20, time.perf_counter() - start
    )


def run_distill_benchmark(
    teacher_dir: Path,
    students: list[tuple[str, Path, list[int]]],
    heldout_data: Path,
    limit: int,
    frames: int,
    teacher_steps: tuple[int, ...],
    stream_frames: int,
    report: Path | None,
    command: str,
) -> str:
    """Measure, print and (optionally) record the teacher/student table and the long-stream memory."""

    from streamingeffect.docs import replace_section

    torch.manual_seed(0)
    teacher = ModelBundle.load(teacher_dir)
    methods = [Method(f"teacher, {s} steps", teacher, s) for s in teacher_steps]
    loaded = []
    for name, path, steps in students:
        model = ModelBundle.load(path)
        loaded.append(model)
        methods += [Method(f"{name}, {s} step{'s' if s > 1 else ''}", model, s) for s in steps]
    factor = teacher.autoencoder.config.downsample
    if frames % teacher.task.frames:
        raise ValueError(f"--frames must be a multiple of the teacher's window ({teacher.task.frames})")
    clips = load_heldout(heldout_data, teacher.resolution, factor, frames, limit)
    lines = [
        "## Distillation: teacher and causal students",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}, fp32, batch 1, "
        f"{torch.get_num_threads()} threads. Held-out data: `{heldout_data}` ({len(clips)} samples of a "
        f"person no model trained on, {frames} frames each at {teacher.resolution}x{teacher.resolution}).",
        "",
        "Quality against the renderer's ground truth; warp error: output frame i warped onto i + 1 along "
        "DIS flow of the source frames, mean |difference| (0-255) over non-occluded pixels. Time per frame "
        "and first-frame latency include encoding and decoding (the autoencoder is shared by all rows); "
        f"the teacher answers a window of {teacher.task.frames} frames at once, the students one chunk of "
        f"{loaded[0].net.config.chunk_frames if loaded else 1} frame(s) at a time with the KV cache.",
        "",
    ]
    for mode in MODES:
        results = evaluate(methods, clips, mode)
        base = results[methods[0].name]
        lines += [
            f"**{mode}**",
            "",
            "| method | PSNR in mask (dB) | LPIPS in mask | PSNR outside (dB) | warp error | ms / frame | "
            "speed-up | first frame (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in results.items():
            speedup = base.ms_per_frame / r.ms_per_frame
            lines.append(
                f"| {name} | {r.psnr_inside:.2f} | {r.lpips_inside:.4f} | {r.psnr_outside:.2f} | "
                f"{r.warp:.2f} | {r.ms_per_frame:.1f} | {speedup:.1f}x | {r.first_frame_ms:.1f} |"
            )
        lines.append("")
    if stream_frames and loaded:
        student = loaded[-1]
        memory = stream_memory(student, stream_frames, len(student.task.student_times))
        rss = [mb for _, mb in memory.rss_mb][1:] or [float("nan")]
        lines += [
            f"Long stream: {memory.frames} latent frames through `{students[-1][1]}` "
            f"({memory.steps} steps, window {student.net.config.window_chunks} chunks + the sink) in "
            f"{memory.seconds:.0f} s; KV cache {memory.cache_tokens} tokens per layer, "
            f"{memory.cache_mb:.2f} MB. "
            f"Resident memory (MB) by frames streamed: "
            + ", ".join(f"{n}: {mb:.0f}" for n, mb in memory.rss_mb)
            + f". After the first sample it stays within {max(rss) - min(rss):.1f} MB.",
            "",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if report is not None:
        replace_section(report, "distill", text)
    return text
