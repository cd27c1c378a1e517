"""`streamingeffect bench autoencoders`: an autoencoder distilled into another's latent space
(`train autoencoder --distill-from`) against that one, where the live worker uses it: the model's
128 px window on held-out people, plain and with catalog effects drawn by the renderer.

Measured for each: how closely the distilled encoder gives the teacher's latents (SNR), how closely
its decoder draws the teacher's pictures of the teacher's latents (PSNR), and of the change the
runtime adds to the frame, ``decode(edited) - decode(source)`` (PSNR inside the effect); the round
trip against the pixels; and the worker's encode and decode time (two frames at a time, channels-last,
one thread), alternated between the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from streamingeffect.data.dataset import to_signed
from streamingeffect.data.people import heldout_people
from streamingeffect.eval.heldout import person_frames, render_target
from streamingeffect.models.autoencoder import FrameAutoencoder, distilled_from, load_autoencoder
from streamingeffect.models.checkpoint import weights_digest
from streamingeffect.pipeline.edit import person_window
from streamingeffect.precision import machine_summary

CATEGORIES = ("neon_outline_cyan", "glow_aura_gold", "hair_recolor_pink", "face_paint_blue")
WINDOW = 128  # the bundled models' window (`TaskConfig.resolution`), where the worker encodes


@dataclass(frozen=True)
class Windows:
    """The model's windows of held-out frames [N, 3, R, R] in [-1, 1], and of the same frames with a
    catalog effect drawn ([M, 3, R, R] each, the sources repeated per effect)."""

    plain: torch.Tensor
    sources: torch.Tensor
    edited: torch.Tensor


def heldout_windows(frames: int, resolution: int, categories: tuple[str, ...]) -> Windows:
    plain, sources, edited = [], [], []
    for person in heldout_people():
        clip = person_frames(person, frames)
        windows = [person_window(p.person, p.frame_size) for p in clip.parses]
        cut = [w.cut(f, resolution) for w, f in zip(windows, clip.frames, strict=True)]
        plain += cut
        for category in categories:
            target = render_target(category, clip)
            sources += cut
            edited += [w.cut(t, resolution) for w, t in zip(windows, target, strict=True)]
    return Windows(*(to_signed(np.stack(x)) for x in (plain, sources, edited)))


def _psnr(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """PSNR in dB of pictures in [-1, 1] (peak-to-peak 2), over ``where`` [N, 1, R, R] when given."""
    error = (a - b).pow(2)
    if where is not None:
        error = error[where.expand_as(error)]
    return float(10 * torch.log10(4 / error.mean().clamp_min(1e-12)))


def _chunked(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 32) -> torch.Tensor:
    return torch.cat([run(part) for part in x.split(size)])


@torch.no_grad()
def agreement(student: FrameAutoencoder, teacher: FrameAutoencoder, windows: Windows) -> dict[str, float]:
    """The student against the teacher on the windows (see the module doc)."""
    latents, own = _chunked(teacher.encode, windows.plain), _chunked(student.encode, windows.plain)
    noise = (own - latents).pow(2).mean()
    pictures, drawn = _chunked(teacher.decode, latents), _chunked(student.decode, latents)
    source_latents = _chunked(teacher.encode, windows.sources)
    edited_latents = _chunked(teacher.encode, windows.edited)
    change = _chunked(teacher.decode, edited_latents) - _chunked(teacher.decode, source_latents)
    drawn_change = _chunked(student.decode, edited_latents) - _chunked(student.decode, source_latents)
    inside = (windows.edited - windows.sources).abs().amax(dim=1, keepdim=True) > 4 / 255
    return {
        "latent_snr": float(10 * torch.log10(latents.pow(2).mean() / noise.clamp_min(1e-12))),
        "decode_psnr": _psnr(drawn, pictures),
        "change_psnr": _psnr(drawn_change, change, inside),
        "round_trip": _psnr(_chunked(student.decode, own).clamp(-1, 1), windows.plain),
        "teacher_round_trip": _psnr(pictures.clamp(-1, 1), windows.plain),
    }


def _ms(run: Callable[[], torch.Tensor], repeats: int = 10) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return 1000 * (time.perf_counter() - start) / repeats


@torch.no_grad()
def worker_ms(models: dict[str, FrameAutoencoder], resolution: int, rounds: int = 5) -> dict[str, tuple]:
    """Median (encode, decode) ms of two frames at once per model, as the live worker runs them
    (channels-last, the caller's threads), the models alternated round by round."""
    x = torch.rand(2, 3, resolution, resolution) * 2 - 1
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in models}
    for model in models.values():
        model.to(memory_format=torch.channels_last)
    for _ in range(rounds):
        for name, model in models.items():
            z = model.encode(x)
            times[name][0].append(_ms(partial(model.encode, x)))
            times[name][1].append(_ms(partial(model.decode, z)))
    return {name: (float(np.median(e)), float(np.median(d))) for name, (e, d) in times.items()}


def run_distilled_benchmark(
    student_dir: Path, teacher_dir: Path, frames: int, report: Path | None, command: str
) -> str:
    from streamingeffect.docs import replace_section

    if distilled_from(student_dir) != weights_digest(teacher_dir):
        raise ValueError(f"{student_dir} was not distilled from {teacher_dir} (another latent space)")
    student, teacher = load_autoencoder(student_dir), load_autoencoder(teacher_dir)
    resolution = WINDOW
    windows = heldout_windows(frames, resolution, CATEGORIES)
    scores = agreement(student, teacher, windows)
    speed = worker_ms({"teacher": teacher, "student": student}, resolution)
    count = lambda model: sum(p.numel() for p in model.parameters()) / 1e6  # noqa: E731
    people = len(heldout_people())
    lines = [
        "## Autoencoders: the live worker's distilled autoencoder against the models' own",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}, torch {torch.get_num_threads()} thread(s). The model's "
        f"{resolution} px window on the person in {frames} frames of each of the {people} held-out people "
        f"({len(windows.plain)} windows), and the same with "
        + ", ".join(f"`{c}`" for c in CATEGORIES)
        + " drawn by the renderer. Latent SNR: the teacher's latents against the student's error; "
        "decode: the student's picture of the teacher's latents against the teacher's; change: "
        "`decode(edited) - decode(source)` of the teacher's latents, inside the effect; round trip: "
        "against the pixels. Time: two windows at once, channels-last, alternated.",
        "",
        "| autoencoder | parameters | latent SNR (dB) | decode (dB) | change (dB) | round trip (dB) "
        "| encode ms | decode ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| `{teacher_dir.name}` (the models' own) | {count(teacher):.2f} M | - | - | - | "
        f"{scores['teacher_round_trip']:.2f} | {speed['teacher'][0]:.1f} | {speed['teacher'][1]:.1f} |",
        f"| `{student_dir.name}` (distilled) | {count(student):.2f} M | {scores['latent_snr']:.1f} | "
        f"{scores['decode_psnr']:.2f} | {scores['change_psnr']:.2f} | {scores['round_trip']:.2f} | "
        f"{speed['student'][0]:.1f} | {speed['student'][1]:.1f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if report is not None:
        replace_section(report, "autoencoders", text)
    return text
