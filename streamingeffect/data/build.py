"""Dataset build: source videos -> parsed clips -> planned samples -> WebDataset shards + manifest.json.

The build is a pure function of its config and the source files:
1. sources: every clip is probed and parsed once (parse cache in OUT/cache), unusable clips are
   recorded with their reason;
2. plan: sample i's clip, window, speed, category and seed follow from (seed, i) alone;
3. shards: shard j holds samples [j * shard_size, (j + 1) * shard_size) and is written atomically
   with a summary beside it. A rerun skips finished shards, so an interrupted build resumes without
   duplicating or losing samples, and a finished one is left as it is (idempotent);
4. manifest: counts per category, kind and op, the provenance of every source, every skip.

Engines map the per-clip and per-shard work: "local" (a process pool) or "ray" (Ray Data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import cv2
import numpy as np

from streamingeffect import __version__
from streamingeffect.data.render import SkipSample, render_triplet
from streamingeffect.data.shards import Sample, empty_landmarks, encode_sample, write_shard
from streamingeffect.effects import Category, catalog, get_category
from streamingeffect.io import VideoError, probe, read_frames, resolve_sources
from streamingeffect.parsing.masks import CropBox, person_crop, window_parts
from streamingeffect.parsing.mediapipe_parser import cache_path, file_fingerprint, load_parse, parse_clip
from streamingeffect.parsing.types import ClipParse

Engine = Literal["local", "ray"]
MANIFEST_VERSION = 1
MIN_SIDE = 64  # source videos smaller than this (short side, pixels) are skipped as too small
MIN_PERSON = 0.02  # a usable frame shows a person on at least this share of its area
MAX_ATTEMPTS = 6  # categories tried per sample before it is recorded as skipped
SPEEDS = (1, 1, 2)  # frame steps drawn per sample: natural speed twice as often as double speed

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BuildConfig:
    sources: str
    out: Path
    samples: int
    frames: int = 16
    size: int = 256
    seed: int = 0
    shard_size: int = 8
    crf: int = 12
    parse_max_side: int = 512
    categories: tuple[str, ...] = ()  # empty: the whole catalog
    parse_cache: Path | None = None  # where clip parses are cached; default OUT/cache/parse

    def __post_init__(self) -> None:
        if self.samples < 1 or self.frames < 1 or self.shard_size < 1:
            raise ValueError("--samples, --frames and --shard-size must be at least 1")
        if self.size < 32 or self.size % 8:
            raise ValueError(f"--size must be a multiple of 8 and at least 32, got {self.size}")

    @property
    def parse_dir(self) -> Path:
        return self.parse_cache or self.out / "cache" / "parse"

    def content_key(self) -> str:
        """Hash of everything that decides shard contents (not where they go)."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("out", "sources", "parse_cache")}
        return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class SourceClip:
    """A source video as the build sees it; ``status`` is "used" or "skipped" (with ``reason``)."""

    path: str
    provenance: str
    fingerprint: str = ""
    status: str = "used"
    reason: str = ""
    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    parse_cache: str = ""
    valid_starts: int = 0  # windows of the configured length with a person in every frame


@dataclass(frozen=True)
class SampleSpec:
    index: int
    clip: int  # index into the used clips
    start: int
    step: int
    seed: int
    categories: tuple[str, ...]  # the planned category first, then fallbacks
    reference_index: int

    @property
    def key(self) -> str:
        return f"sample{self.index:07d}"


@dataclass
class ShardSummary:
    name: str
    content_key: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- sources


def prepare_source(path: Path, provenance: str, config: BuildConfig) -> SourceClip:
    """Probe and parse one source video; a clip that cannot serve comes back skipped with its reason."""
    clip = SourceClip(str(path), provenance)
    try:
        clip.fingerprint = file_fingerprint(path) if path.is_file() else path.name
        info = probe(path)
        clip.num_frames, clip.fps, clip.width, clip.height = (
            info.num_frames or 0,
            info.fps,
            info.width,
            info.height,
        )
        if min(info.width, info.height) < MIN_SIDE:
            return _skip(clip, f"too small: {info.width}x{info.height} (short side under {MIN_SIDE} px)")
        cache = cache_path(config.parse_dir, path, config.parse_max_side)
        parse = parse_clip(path, cache.parent, config.parse_max_side)
        clip.parse_cache = str(cache)
        clip.num_frames = parse.num_frames
    except VideoError as error:
        return _skip(clip, str(error))
    if parse.num_frames < config.frames:
        return _skip(clip, f"too short: {parse.num_frames} frames, a sample needs {config.frames}")
    clip.valid_starts = len(valid_starts(parse, config.frames, 1))
    if clip.valid_starts == 0:
        return _skip(clip, "no person in view in any window of the sample length")
    return clip


def _skip(clip: SourceClip, reason: str) -> SourceClip:
    clip.status, clip.reason = "skipped", reason
    return clip


def valid_starts(parse: ClipParse, frames: int, step: int) -> np.ndarray:
    """Start frames whose window (``frames`` frames, every ``step``-th) shows a person throughout."""
    present = parse.person_coverage() >= MIN_PERSON
    span = (frames - 1) * step + 1
    if parse.num_frames < span:
        return np.zeros(0, int)
    starts = np.arange(parse.num_frames - span + 1)
    ok = np.ones(starts.size, bool)
    for k in range(frames):
        ok &= present[starts + k * step]
    return starts[ok]


# ----------------------------------------------------------------------------------------- plan


def plan_samples(
    config: BuildConfig,
    clips: Sequence[SourceClip],
    parses: Sequence[ClipParse],
    categories: Sequence[Category],
) -> list[SampleSpec]:
    """Deterministic plan: sample i depends on (seed, i) and the used clips only.

    Categories are dealt from a seeded permutation of the catalog, so every category appears before
    any appears twice; the fallbacks are the next ones in the same deal.
    """
    order = np.random.default_rng([config.seed, 0]).permutation(len(categories))
    specs = []
    for index in range(config.samples):
        rng = np.random.default_rng([config.seed, 1, index])
        clip_index = int(rng.integers(len(clips)))
        step = int(rng.choice(SPEEDS))
        starts = valid_starts(parses[clip_index], config.frames, step)
        if starts.size == 0:
            step = 1
            starts = valid_starts(parses[clip_index], config.frames, 1)
        fallbacks = tuple(
            categories[int(order[(index + k * 7919) % len(categories)])].id for k in range(MAX_ATTEMPTS)
        )
        specs.append(
            SampleSpec(
                index=index,
                clip=clip_index,
                start=int(rng.choice(starts)),
                step=step,
                seed=int(rng.integers(2**31)),
                categories=fallbacks,
                reference_index=int(rng.integers(config.frames)),
            )
        )
    return specs


# ----------------------------------------------------------------------------------------- samples


def load_window(
    clip: SourceClip, parse: ClipParse, spec: SampleSpec, config: BuildConfig
) -> tuple[np.ndarray, list[Any], CropBox]:
    """Decode the spec's frames, crop a square around the person, resize to S -> frames, parts, crop."""
    indices = [spec.start + k * spec.step for k in range(config.frames)]
    crop = person_crop(parse.person[indices])
    full_crop = crop.scaled(clip.width / parse.size[1], clip.height / parse.size[0])
    rows, cols = full_crop.to_slices()
    frames = [
        cv2.resize(frame.image[rows, cols], (config.size, config.size), interpolation=cv2.INTER_AREA)
        for frame in read_frames(Path(clip.path), start=indices[0], stop=indices[-1] + 1, step=spec.step)
    ]
    if len(frames) != config.frames:
        raise VideoError(f"{clip.path}: decoded {len(frames)} of {config.frames} frames at {indices[0]}")
    fps = parse.fps / spec.step
    parts = window_parts(parse, indices, crop, (config.size, config.size), fps)
    return np.stack(frames), parts, crop


def build_sample(
    clip: SourceClip, parse: ClipParse, spec: SampleSpec, config: BuildConfig
) -> tuple[Sample | None, list[str]]:
    """Render the spec, trying its categories in order. Returns the sample (or None) and skip reasons."""
    frames, parts, crop = load_window(clip, parse, spec, config)
    reasons = []
    for attempt, category_id in enumerate(spec.categories):
        category = get_category(category_id)
        try:
            triplet = render_triplet(category, frames, parts, spec.seed + attempt)
        except SkipSample as skip:
            reasons.append(str(skip))
            continue
        face, hands, pose = _landmarks(parts, config.frames)
        reference_index = spec.reference_index
        text = category.descriptions[
            int(np.random.default_rng([spec.seed, 2]).integers(len(category.descriptions)))
        ]
        meta = {
            "key": spec.key,
            "category": category.id,
            "family": category.family,
            "kind": category.kind,
            "op": category.op,
            "region": category.region,
            "text": text,
            "descriptions": list(category.descriptions),
            "reference_index": reference_index,
            "frames": config.frames,
            "size": config.size,
            "fps": parse.fps / spec.step,
            "mask_augmentation": triplet.augmentation,
            "edit_area": float(triplet.edit_mask.mean()),
            "seed": spec.seed + attempt,
            "source": {
                "path": clip.path,
                "provenance": clip.provenance,
                "fingerprint": clip.fingerprint,
                "start": spec.start,
                "step": spec.step,
                "crop_xywh_parse": [crop.x0, crop.y0, crop.width, crop.height],
            },
            "parse": {
                "face_frames": int(sum(p.face is not None for p in parts)),
                "hand_counts": [len(p.hands) for p in parts],
                "pose_frames": int(sum(p.pose is not None for p in parts)),
                "person_area": [round(float(p.person.mean()), 4) for p in parts],
            },
        }
        sample = Sample(
            key=spec.key,
            source=triplet.source,
            target=triplet.target,
            edit_mask=triplet.edit_mask,
            person=np.stack([np.round(p.person * 255) for p in parts]).astype(np.uint8),
            reference=triplet.target[reference_index],
            reference_source=triplet.source[reference_index],
            face=face,
            hands=hands,
            pose=pose,
            meta=meta,
        )
        return sample, reasons
    return None, reasons


def _landmarks(parts: list[Any], frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    face, hands, pose = empty_landmarks(frames)
    for k, part in enumerate(parts):
        if part.face is not None:
            face[k] = part.face
        for slot, hand in enumerate(part.hands[: hands.shape[1]]):
            hands[k, slot] = hand
        if part.pose is not None:
            pose[k] = part.pose
    return face, hands, pose


# ----------------------------------------------------------------------------------------- shards


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def shard_is_done(config: BuildConfig, index: int) -> bool:
    summary = config.out / "shards" / f"{shard_name(index)}.json"
    tar = summary.with_suffix(".tar")
    if not (summary.exists() and tar.exists()):
        return False
    try:
        return json.loads(summary.read_text())["content_key"] == config.content_key()
    except (ValueError, KeyError):
        return False


def build_shard(
    config: BuildConfig, clips: Sequence[SourceClip], specs: Sequence[SampleSpec], index: int
) -> ShardSummary:
    """Render and write one shard (tar, then its summary json: the json marks it finished)."""
    parses: dict[int, ClipParse] = {}
    summary = ShardSummary(shard_name(index), config.content_key())
    encoded = []
    for spec in specs:
        clip = clips[spec.clip]
        if spec.clip not in parses:
            parses[spec.clip] = load_parse(Path(clip.parse_cache))
        try:
            sample, reasons = build_sample(clip, parses[spec.clip], spec, config)
        except VideoError as error:
            sample, reasons = None, [str(error)]
        if sample is None:
            summary.skipped.append({"key": spec.key, "index": spec.index, "reasons": reasons})
            continue
        encoded.append((sample.key, encode_sample(sample, fps=sample.meta["fps"], crf=config.crf)))
        summary.samples.append(
            {
                k: sample.meta[k]
                for k in ("key", "category", "family", "kind", "op", "region", "mask_augmentation")
            }
            | {"clip": clip.path, "retries": len(reasons)}
        )
    shards = config.out / "shards"
    write_shard(shards / f"{summary.name}.tar", encoded)
    tmp = shards / f"{summary.name}.json.partial"
    tmp.write_text(json.dumps(asdict(summary), indent=1, sort_keys=True))
    tmp.replace(shards / f"{summary.name}.json")
    return summary


# ----------------------------------------------------------------------------------------- engines


def _call(job: tuple[Callable[..., R], tuple[Any, ...]]) -> R:
    function, args = job
    return function(*args)


def run_jobs(
    engine: Engine,
    function: Callable[..., R],
    jobs: Iterable[tuple[Any, ...]],
    workers: int,
    description: str,
    progress: bool = True,
) -> list[R]:
    """Map ``function`` over argument tuples with the chosen engine; results in job order."""
    jobs = list(jobs)
    if not jobs:
        return []
    if engine == "ray":
        from streamingeffect.data.ray_engine import run_ray

        return run_ray(function, jobs, workers, progress)
    if engine != "local":
        raise ValueError(f"unknown engine {engine!r}; use local or ray")
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=description, unit="job", disable=not progress)
    if workers <= 1:
        results = []
        for args in jobs:
            results.append(function(*args))
            bar.update()
        bar.close()
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # "spawn": MediaPipe's graphs and threads do not survive a fork.
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        results = []
        for result in pool.map(_call, [(function, args) for args in jobs]):
            results.append(result)
            bar.update()
    bar.close()
    return results


# ----------------------------------------------------------------------------------------- build


@dataclass
class BuildReport:
    manifest: dict[str, Any]
    seconds: float
    shards_built: int
    shards_reused: int

    @property
    def samples(self) -> int:
        return int(self.manifest["counts"]["total"])


def build_dataset(
    config: BuildConfig, engine: Engine = "local", workers: int = 2, progress: bool = True
) -> BuildReport:
    """Run the whole build (resuming where a previous run stopped); writes OUT/manifest.json."""
    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    categories = _categories(config)
    sources = resolve_sources(config.sources)
    clips = run_jobs(
        engine,
        prepare_source,
        [(path, provenance, config) for path, provenance in sources],
        workers,
        "parse sources",
        progress,
    )
    used = [c for c in clips if c.status == "used"]
    if not used:
        reasons = "; ".join(f"{Path(c.path).name}: {c.reason}" for c in clips)
        raise VideoError(f"no usable source clip ({reasons})")
    parses = [load_parse(Path(c.parse_cache)) for c in used]
    specs = plan_samples(config, used, parses, categories)
    del parses
    groups = [specs[i : i + config.shard_size] for i in range(0, len(specs), config.shard_size)]
    todo = [j for j in range(len(groups)) if not shard_is_done(config, j)]
    run_jobs(
        engine, build_shard, [(config, used, groups[j], j) for j in todo], workers, "build shards", progress
    )
    manifest = write_manifest(config, clips, len(groups), engine)
    return BuildReport(manifest, time.perf_counter() - started, len(todo), len(groups) - len(todo))


def _categories(config: BuildConfig) -> list[Category]:
    if config.categories:
        return [get_category(c) for c in config.categories]
    return list(catalog())


def write_manifest(
    config: BuildConfig, clips: Sequence[SourceClip], num_shards: int, engine: str
) -> dict[str, Any]:
    """Aggregate the shard summaries into OUT/manifest.json (written atomically)."""
    summaries = [
        json.loads((config.out / "shards" / f"{shard_name(j)}.json").read_text()) for j in range(num_shards)
    ]
    samples = [s for summary in summaries for s in summary["samples"]]
    manifest = {
        "format": "streamingeffect-videoeffect",
        "version": MANIFEST_VERSION,
        "streamingeffect": __version__,
        "config": {k: v for k, v in asdict(config).items() if k not in ("out", "parse_cache")}
        | {"content_key": config.content_key()},
        "engine": engine,
        "counts": {
            "total": len(samples),
            "requested": config.samples,
            "skipped": sum(len(s["skipped"]) for s in summaries),
            "per_kind": dict(sorted(Counter(s["kind"] for s in samples).items())),
            "per_op": dict(sorted(Counter(s["op"] or "none" for s in samples).items())),
            "per_category": dict(sorted(Counter(s["category"] for s in samples).items())),
            "per_augmentation": dict(
                sorted(Counter(s["mask_augmentation"] or "none" for s in samples).items())
            ),
        },
        "sources": [asdict(c) | {"samples": sum(s["clip"] == c.path for s in samples)} for c in clips],
        "skipped_samples": [skip for s in summaries for skip in s["skipped"]],
        "shards": [
            {
                "name": f"shards/{s['name']}.tar",
                "samples": len(s["samples"]),
                "keys": [x["key"] for x in s["samples"]],
            }
            for s in summaries
        ],
    }
    for source in manifest["sources"]:
        source.pop("parse_cache", None)
    tmp = config.out / "manifest.json.partial"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(config.out / "manifest.json")
    return manifest
