"""Dataset build: clips and photos of people -> planned samples -> WebDataset shards + manifest.json.

The build is a pure function of its config and the source files:
1. sources: every clip is probed and parsed once and every photo framed and parsed once (parse cache in
   OUT/cache); unusable ones, files of held-out people (by registry entry or perceptual hash) and
   duplicates are recorded with their reason;
2. plan: sample i's source kind (photo or clip, at ``image_ratio``), person, file, window, speed,
   far reference, category and seed follow from (seed, i) alone;
3. shards: shard j holds samples [j * shard_size, (j + 1) * shard_size) and is written atomically
   with a summary beside it. A rerun skips finished shards, so an interrupted build resumes without
   duplicating or losing samples, and a finished one is left as it is (idempotent);
4. manifest: counts per category, kind, op and person, the people per split with their files, the
   provenance of every source, every skip.

Engines map the per-source and per-shard work: "local" (a process pool) or "ray" (Ray Data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import cv2
import numpy as np

from streamingeffect import __version__
from streamingeffect.data.people import REGISTRY_PATH, Registry, Split, load_registry, locate_background
from streamingeffect.data.phash import file_hashes, from_hex, shows_same_footage, to_hex
from streamingeffect.data.pseudo_video import CLIP_CAMERA, FAR_CAMERA, CameraConfig, pseudo_video
from streamingeffect.data.render import SkipSample, render_reference, render_triplet
from streamingeffect.data.scene import DEFAULT_SCENE, SceneConfig, apply_scene, draw_scene
from streamingeffect.data.shards import Sample, empty_landmarks, encode_sample, write_shard
from streamingeffect.data.stills import Still, load_still, prepare_still
from streamingeffect.effects import Category, catalog, get_category
from streamingeffect.io import ImageError, SourceError, VideoError, probe, read_frames, resolve_sources
from streamingeffect.parsing.masks import CropBox, full_frame, person_crop, window_parts
from streamingeffect.parsing.mediapipe_parser import cache_path, file_fingerprint, load_parse, parse_clip
from streamingeffect.parsing.types import ClipParse, FrameParts

Engine = Literal["local", "ray"]
SourceKind = Literal["video", "image"]
MANIFEST_VERSION = 2
MIN_SIDE = 64  # source videos smaller than this (short side, pixels) are skipped as too small
MIN_PERSON = 0.02  # a usable frame shows a person on at least this share of its area
MIN_PERSON_PIXELS = 48  # a photo's person must be at least this tall (pixels) to parse usefully
MAX_ATTEMPTS = 6  # categories tried per sample before it is recorded as skipped
SPEEDS = (1, 1, 2)  # frame steps drawn per sample: natural speed twice as often as double speed
# Photos per clip sample, chosen by measurement (scripts/measure_mix.py; docs/DATA.md, "Images and
# clips"): flow propagation from the long reference misses as much on photo samples as on clip samples
# (22.7 vs 22.3 dB), so each person gets about the same share: 19 photo people to 2 clip people.
IMAGE_RATIO = 9.0
FAR_SECONDS = 1.5  # the long reference lies at least this far from the sample's window, where it can
FAR_CANDIDATES = 8  # far frames compared per sample; the one whose pose differs most is kept

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BuildConfig:
    sources: str  # "corpus" (the person registry), "bundled" (three sample clips) or a path
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
    split: Split = "train"  # "test" builds the benchmark sets from the held-out people
    image_ratio: float = IMAGE_RATIO  # photo samples per clip sample, when both kinds are available
    augment: bool = True  # backgrounds, colour jitter and clip zoom (training split only)
    clip_zoom: tuple[float, float] = (0.5, 1.0)  # crop side of clips as a share of the largest square
    far_seconds: float = FAR_SECONDS
    camera: CameraConfig = CLIP_CAMERA
    scene: SceneConfig = DEFAULT_SCENE
    registry: Path = REGISTRY_PATH  # the person registry (tests point it at a small one)

    def __post_init__(self) -> None:
        if self.samples < 1 or self.frames < 1 or self.shard_size < 1:
            raise ValueError("--samples, --frames and --shard-size must be at least 1")
        if self.size < 32 or self.size % 8:
            raise ValueError(f"--size must be a multiple of 8 and at least 32, got {self.size}")
        if self.split not in ("train", "test"):
            raise ValueError(f"--split must be train or test, got {self.split!r}")
        if self.image_ratio < 0:
            raise ValueError(f"--image-ratio must be 0 or more, got {self.image_ratio}")

    @property
    def parse_dir(self) -> Path:
        return self.parse_cache or self.out / "cache" / "parse"

    @property
    def augmenting(self) -> bool:
        """Benchmark sets (the test split) show people as they are."""
        return self.augment and self.split == "train"

    def content_key(self) -> str:
        """Hash of everything that decides shard contents (not where they go), the registry included."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("out", "sources", "parse_cache")}
        fields["registry"] = hashlib.sha1(self.registry.read_bytes()).hexdigest()[:12]
        return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class SourceClip:
    """A source (a clip, or one person in a photo) as the build sees it; ``status`` is "used" or
    "skipped" (with ``reason``)."""

    path: str
    provenance: str
    kind: SourceKind = "video"
    file_id: str = ""  # the registry's id of the file, "" for files the registry does not know
    person: str = ""  # who the samples are about (a photo's focus person; a clip's first person)
    people: list[str] = field(default_factory=list)  # everyone the file shows
    split: str = "train"
    licence: str = ""
    focus: list[float] | None = None  # the person's box in a photo with several people
    fingerprint: str = ""
    status: str = "used"
    reason: str = ""
    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    parse_cache: str = ""
    valid_starts: int = 0  # windows of the configured length with a person in every frame
    phash: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SampleSpec:
    index: int
    clip: int  # index into the used sources
    start: int
    step: int
    seed: int
    categories: tuple[str, ...]  # the planned category first, then fallbacks
    reference_index: int
    far_index: int = -1  # a clip's long-reference frame; -1 for photos (another camera view instead)

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


def corpus_sources(registry: Registry, split: Split) -> tuple[list[SourceClip], list[SourceClip]]:
    """The registry's files of ``split`` as sources (one per person for photos), and the files whose
    package is missing (skipped, saying how to install it)."""
    sources, missing = [], []
    for entry in registry.files:
        if registry.file_split(entry) != split:
            continue
        try:
            path, version = entry.ref.locate()
        except SourceError as error:
            missing.append(SourceClip(entry.ref.path, entry.id, status="skipped", reason=str(error)))
            continue
        provenance = f"{entry.ref.package} {version}, {entry.ref.path}: {entry.origin}"
        common = dict(
            path=str(path),
            provenance=provenance,
            kind=entry.kind,
            file_id=entry.id,
            split=split,
            people=list(entry.person_ids),
            licence=entry.licence,
        )
        if entry.kind == "video" or not entry.people:
            person = entry.people[0].person if entry.people else ""
            sources.append(SourceClip(person=person, **common))  # type: ignore[arg-type]
            continue
        for appearance in entry.people:
            focus = list(appearance.box) if appearance.box else None
            sources.append(SourceClip(person=appearance.person, focus=focus, **common))  # type: ignore[arg-type]
    return sources, missing


def listed_sources(spec: str, registry: Registry) -> list[SourceClip]:
    """Sources from "bundled" or a path; files the registry knows get its people, others are their own
    person ("file:<name>")."""
    known = {}
    for entry in registry.files:
        try:
            known[entry.ref.locate()[0].resolve()] = entry
        except SourceError:
            continue
    out = []
    for path, provenance in resolve_sources(spec):
        entry = known.get(path.resolve())
        if entry is None:
            out.append(
                SourceClip(str(path), provenance, person=f"file:{path.stem}", people=[f"file:{path.stem}"])
            )
            continue
        out.append(
            SourceClip(
                str(path),
                provenance,
                file_id=entry.id,
                person=entry.person_ids[0] if entry.people else "",
                people=list(entry.person_ids),
                split=registry.file_split(entry),
                licence=entry.licence,
            )
        )
    return out


def prepare_source(source: SourceClip, config: BuildConfig) -> SourceClip:
    """Probe and parse one source (hashing it for the held-out guard); one that cannot serve comes back
    skipped with its reason."""
    path = Path(source.path)
    try:
        source.fingerprint = file_fingerprint(path) if path.is_file() else path.name
        if source.kind == "image":
            return _prepare_image(source, config)
        info = probe(path)
        source.num_frames, source.fps, source.width, source.height = (
            info.num_frames or 0,
            info.fps,
            info.width,
            info.height,
        )
        if min(info.width, info.height) < MIN_SIDE:
            return _skip(source, f"too small: {info.width}x{info.height} (short side under {MIN_SIDE} px)")
        source.phash = to_hex(file_hashes(path))
        if heldout_reason(source, load_registry(config.registry), config.split):
            return source  # guard_sources records why; no need to parse footage that will not be used
        cache = cache_path(config.parse_dir, path, config.parse_max_side)
        parse = parse_clip(path, cache.parent, config.parse_max_side)
        source.parse_cache = str(cache)
        source.num_frames = parse.num_frames
    except (VideoError, ImageError) as error:
        return _skip(source, str(error))
    if parse.num_frames < config.frames:
        return _skip(source, f"too short: {parse.num_frames} frames, a sample needs {config.frames}")
    source.valid_starts = len(valid_starts(parse, config.frames, 1))
    if source.valid_starts == 0:
        return _skip(source, "no person in view in any window of the sample length (or too small to parse)")
    return source


def _prepare_image(source: SourceClip, config: BuildConfig) -> SourceClip:
    path = Path(source.path)
    source.phash = to_hex(file_hashes(path))
    if heldout_reason(source, load_registry(config.registry), config.split):
        return source  # guard_sources records why
    focus = tuple(source.focus) if source.focus else None
    cache = prepare_still(path, focus, config.parse_dir)  # type: ignore[arg-type]
    still = load_still(cache)
    source.parse_cache, source.num_frames, source.fps = str(cache), 1, CLIP_CAMERA.fps
    source.height, source.width = still.image.shape[:2]
    on = still.parse.person[0] > 127
    if on.mean() < 0.002:
        return _skip(source, "no person in the photo")
    rows = np.nonzero(on.any(axis=1))[0]
    if on.mean() < MIN_PERSON or rows[-1] - rows[0] + 1 < MIN_PERSON_PIXELS:
        return _skip(
            source,
            f"person too small to parse: {on.mean():.1%} of the picture, {rows[-1] - rows[0] + 1} px tall",
        )
    source.valid_starts = 1
    return source


def _skip(clip: SourceClip, reason: str) -> SourceClip:
    clip.status, clip.reason = "skipped", reason
    return clip


def heldout_reason(source: SourceClip, registry: Registry, split: Split) -> str:
    """Why a training source shows a held-out person ("" when it does not): its registry entry is in the
    test split, or its perceptual hashes match a held-out file's (the same footage under another name,
    re-encoded or resized)."""
    if split != "train":
        return ""
    if source.split == "test":
        return f"held out: {source.file_id} shows {', '.join(source.people)} (test split)"
    hashes = from_hex(source.phash)
    match = next((f for f, ref in registry.heldout_hashes() if shows_same_footage(hashes, ref)), None)
    if match is None:
        return ""
    return f"held out: looks like {match.id} (perceptual hash), which shows {', '.join(match.person_ids)}"


def guard_sources(sources: Sequence[SourceClip], registry: Registry, split: Split) -> None:
    """Skip, in place, training sources that show a held-out person (see heldout_reason) and
    duplicates of earlier sources: another file with the same content fingerprint or matching hashes,
    or the same person of the same file listed twice."""
    kept: list[SourceClip] = []
    for source in sources:
        if source.status != "used":
            continue
        reason = heldout_reason(source, registry, split)
        if reason:
            _skip(source, reason)
            continue
        twin = next((k for k in kept if _same_file(source, k, from_hex(source.phash))), None)
        if twin is not None:
            _skip(source, f"duplicate of {twin.path}")
            continue
        kept.append(source)


def _same_file(source: SourceClip, other: SourceClip, hashes: list[int]) -> bool:
    if source.path == other.path:
        return source.focus == other.focus  # the same person in the same file twice
    if source.fingerprint == other.fingerprint:
        return True
    return source.kind == other.kind and shows_same_footage(hashes, from_hex(other.phash), bits=4)


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


def pose_descriptor(parse: ClipParse, index: int) -> np.ndarray:
    """A few numbers that change with pose: where the person is and how big, where the face is, which
    way it turns (nose against the face's centre) and how open the mouth is; zeros where absent."""
    height, width = parse.size
    on = parse.person[index] > 127
    out = np.zeros(8, np.float32)
    if on.any():
        ys, xs = np.nonzero(on)
        out[:3] = xs.mean() / width, ys.mean() / height, np.sqrt(on.mean())
    face = parse.face[index]
    if np.isfinite(face).all():
        centre = face[:, :2].mean(axis=0)
        span = float(np.ptp(face[:, 0])) + 1e-6
        out[3:5] = centre / np.array([width, height])
        out[5:7] = (face[1, :2] - centre) / span * 4  # nose tip offset: head turn and nod
        out[7] = abs(face[14, 1] - face[13, 1]) / span * 4  # lips apart
    return out


def far_frame(parse: ClipParse, window: list[int], seconds: float, rng: np.random.Generator) -> int:
    """A frame at least ``seconds`` from the window (or as far as the clip allows) with a person in view,
    picked among a few random candidates for the pose most unlike the window's."""
    present = np.nonzero(parse.person_coverage() >= MIN_PERSON)[0]
    gap = np.maximum(window[0] - present, present - window[-1]) / parse.fps
    far = present[gap >= seconds]
    if far.size == 0:
        far = present[gap >= gap.max()] if gap.max() > 0 else np.array([window[-1]])
    picks = rng.choice(far, size=min(FAR_CANDIDATES, far.size), replace=False)
    mean = np.mean([pose_descriptor(parse, i) for i in window[:: max(1, len(window) // 4)]], axis=0)
    return int(max(picks, key=lambda i: float(np.linalg.norm(pose_descriptor(parse, int(i)) - mean))))


def plan_samples(
    config: BuildConfig,
    clips: Sequence[SourceClip],
    parses: Sequence[ClipParse | None],
    categories: Sequence[Category],
) -> list[SampleSpec]:
    """Deterministic plan: sample i depends on (seed, i) and the used sources only.

    The kind (photo or clip) is drawn at ``image_ratio``, then a person of that kind uniformly, then
    one of that person's sources. Categories are dealt from a seeded permutation of the catalog, so
    every category appears before any appears twice; the fallbacks are the next ones in the same deal.
    """
    order = np.random.default_rng([config.seed, 0]).permutation(len(categories))
    by_kind: dict[str, dict[str, list[int]]] = {"video": {}, "image": {}}
    for i, clip in enumerate(clips):
        by_kind[clip.kind].setdefault(clip.person or clip.path, []).append(i)
    kinds = [k for k in ("video", "image") if by_kind[k]]
    image_share = config.image_ratio / (config.image_ratio + 1)
    specs = []
    for index in range(config.samples):
        rng = np.random.default_rng([config.seed, 1, index])
        kind = kinds[0] if len(kinds) == 1 else ("image" if rng.random() < image_share else "video")
        people = sorted(by_kind[kind])
        choices = by_kind[kind][people[int(rng.integers(len(people)))]]
        clip_index = choices[int(rng.integers(len(choices)))]
        step, start, far = 1, 0, -1
        parse = parses[clip_index]
        if parse is not None:
            step = int(rng.choice(SPEEDS))
            starts = valid_starts(parse, config.frames, step)
            if starts.size == 0:
                step = 1
                starts = valid_starts(parse, config.frames, 1)
            start = int(rng.choice(starts))
            window = [start + k * step for k in range(config.frames)]
            far = far_frame(parse, window, config.far_seconds, rng)
        fallbacks = tuple(
            categories[int(order[(index + k * 7919) % len(categories)])].id for k in range(MAX_ATTEMPTS)
        )
        specs.append(
            SampleSpec(
                index=index,
                clip=clip_index,
                start=start,
                step=step,
                seed=int(rng.integers(2**31)),
                categories=fallbacks,
                reference_index=int(rng.integers(config.frames)),
                far_index=far,
            )
        )
    return specs


# ----------------------------------------------------------------------------------------- samples


@dataclass
class Window:
    """A sample's source frames before rendering, and its far reference frame, all at S x S."""

    frames: np.ndarray  # [F, S, S, 3]
    parts: list[FrameParts]
    far: np.ndarray  # [S, S, 3]
    far_part: FrameParts
    fps: float
    far_info: dict[str, Any]
    crop: list[int]  # a clip's crop (x, y, w, h at parse size); [] for photos


def jittered_crop(person: np.ndarray, rng: np.random.Generator, zoom: tuple[float, float]) -> CropBox:
    """A square around the person: half the time the largest one, otherwise smaller (down to
    ``zoom[0]`` of it, so the person fills more of the frame), placed at random with the person's
    centre inside and the head in view."""
    base = person_crop(person)
    if rng.random() < 0.5 or zoom[0] >= 1:
        return base
    _, height, width = person.shape
    side = max(16, round(base.width * rng.uniform(*zoom)))
    on = (person > 127).any(axis=0)
    ys, xs = np.nonzero(on)
    if ys.size == 0:
        return base
    cx, cy = xs.mean(), min(ys.mean(), ys.min() + 0.45 * side)
    x0 = int(np.clip(round(cx - side * rng.uniform(0.3, 0.7)), 0, width - side))
    y0 = int(np.clip(round(cy - side * rng.uniform(0.3, 0.7)), 0, height - side))
    return CropBox(x0, y0, side, side)


def _crop_frames(images: Iterable[np.ndarray], crop: CropBox, size: int) -> list[np.ndarray]:
    rows, cols = crop.to_slices()
    return [cv2.resize(image[rows, cols], (size, size), interpolation=cv2.INTER_AREA) for image in images]


def load_clip_window(clip: SourceClip, parse: ClipParse, spec: SampleSpec, config: BuildConfig) -> Window:
    """Decode the spec's frames and its far frame, crop squares around the person, resize to S."""
    indices = [spec.start + k * spec.step for k in range(config.frames)]
    rng = np.random.default_rng([spec.seed, 3])
    zoom = config.clip_zoom if config.augmenting else (1.0, 1.0)
    crop = jittered_crop(parse.person[indices], rng, zoom)
    scale = (clip.width / parse.size[1], clip.height / parse.size[0])
    path = Path(clip.path)
    frames = _crop_frames(
        (f.image for f in read_frames(path, start=indices[0], stop=indices[-1] + 1, step=spec.step)),
        crop.scaled(*scale),
        config.size,
    )
    if len(frames) != config.frames:
        raise VideoError(f"{clip.path}: decoded {len(frames)} of {config.frames} frames at {indices[0]}")
    fps = parse.fps / spec.step
    size = (config.size, config.size)
    parts = window_parts(parse, indices, crop, size, fps)
    far_crop = jittered_crop(parse.person[[spec.far_index]], rng, zoom)
    (far,) = _crop_frames(
        (f.image for f in read_frames(path, start=spec.far_index, stop=spec.far_index + 1)),
        far_crop.scaled(*scale),
        config.size,
    )
    (far_part,) = window_parts(parse, [spec.far_index], far_crop, size, fps)
    seconds = min(abs(spec.far_index - indices[0]), abs(spec.far_index - indices[-1])) / parse.fps
    info = {"kind": "clip frame", "frame": spec.far_index, "seconds": round(seconds, 3)}
    return Window(
        np.stack(frames), parts, far, far_part, fps, info, [crop.x0, crop.y0, crop.width, crop.height]
    )


def load_photo_window(still: Still, spec: SampleSpec, config: BuildConfig) -> Window:
    """A pseudo-video of the photo along a random camera path, and a far view of it for the long reference."""
    size = (config.size, config.size)
    rng = np.random.default_rng([spec.seed, 4])
    camera = config.camera
    frames, parse = pseudo_video(
        still.image, still.parse, config.frames, config.size, rng, camera, still.focus
    )
    parts = window_parts(parse, list(range(config.frames)), full_frame(parse), size, parse.fps)
    far_frames, far_parse = pseudo_video(
        still.image, still.parse, 1, config.size, rng, FAR_CAMERA, still.focus
    )
    (far_part,) = window_parts(far_parse, [0], full_frame(far_parse), size, parse.fps)
    info = {"kind": "another camera view", "frame": None, "seconds": None}
    return Window(frames, parts, far_frames[0], far_part, parse.fps, info, [])


@lru_cache(maxsize=4)
def _backgrounds(registry: Path) -> tuple[tuple[str, str], ...]:
    found = []
    for background in load_registry(registry).backgrounds:
        path = locate_background(background)
        if path is not None:
            found.append((background.id, str(path)))
    return tuple(found)


def _augment_window(window: Window, config: BuildConfig, seed: int) -> dict[str, object]:
    """Backgrounds and colour jitter, identical on the window and its far frame; returns what was drawn."""
    if not config.augmenting:
        return {"background": "original"}
    choice = draw_scene(
        config.size, config.scene, _backgrounds(config.registry), np.random.default_rng([seed, 5])
    )
    window.frames = apply_scene(window.frames, np.stack([p.person for p in window.parts]), choice)
    window.far = apply_scene(window.far[None], window.far_part.person[None], choice)[0]
    return choice.describe()


def build_sample(
    clip: SourceClip, data: ClipParse | Still, spec: SampleSpec, config: BuildConfig
) -> tuple[Sample | None, list[str]]:
    """Render the spec, trying its categories in order. Returns the sample (or None) and skip reasons."""
    if isinstance(data, Still):
        window = load_photo_window(data, spec, config)
    else:
        window = load_clip_window(clip, data, spec, config)
    scene = _augment_window(window, config, spec.seed)
    frames, parts = window.frames, window.parts
    reasons = []
    for attempt, category_id in enumerate(spec.categories):
        category = get_category(category_id)
        try:
            triplet = render_triplet(category, frames, parts, spec.seed + attempt)
        except SkipSample as skip:
            reasons.append(str(skip))
            continue
        far = render_reference(
            category, window.far, window.far_part, spec.seed + attempt, triplet.augmentation
        )
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
            "reference_far": window.far_info | {"changed": round(far.changed, 4)},
            "frames": config.frames,
            "size": config.size,
            "fps": window.fps,
            "mask_augmentation": triplet.augmentation,
            "edit_area": float(triplet.edit_mask.mean()),
            "seed": spec.seed + attempt,
            "person": clip.person,
            "people_in_view": clip.people,
            "split": clip.split,
            "scene": scene,
            "source": {
                "path": clip.path,
                "kind": clip.kind,
                "file_id": clip.file_id,
                "focus": clip.focus,
                "provenance": clip.provenance,
                "fingerprint": clip.fingerprint,
                "start": spec.start,
                "step": spec.step,
                "crop_xywh_parse": window.crop,
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
            reference_far=far.target,
            reference_far_source=far.source,
            reference_far_edit=far.edit_mask,
            reference_far_person=np.round(window.far_part.person * 255).astype(np.uint8),
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


def load_source_data(clip: SourceClip) -> ClipParse | Still:
    return load_still(Path(clip.parse_cache)) if clip.kind == "image" else load_parse(Path(clip.parse_cache))


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
    parses: dict[int, ClipParse | Still] = {}
    summary = ShardSummary(shard_name(index), config.content_key())
    encoded = []
    for spec in specs:
        clip = clips[spec.clip]
        if spec.clip not in parses:
            parses[spec.clip] = load_source_data(clip)
        try:
            sample, reasons = build_sample(clip, parses[spec.clip], spec, config)
        except (VideoError, ImageError) as error:
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
            | {
                "clip": clip.path,
                "focus": clip.focus,
                "person": clip.person,
                "source_kind": clip.kind,
                "far_seconds": sample.meta["reference_far"]["seconds"],
                "retries": len(reasons),
            }
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
    registry = load_registry(config.registry)
    if config.sources == "corpus":
        candidates, missing = corpus_sources(registry, config.split)
    else:
        candidates, missing = listed_sources(config.sources, registry), []
        for candidate in candidates:
            if not candidate.file_id:
                candidate.split = config.split  # a user's file belongs to the split it is built for
    clips = run_jobs(
        engine, prepare_source, [(c, config) for c in candidates], workers, "parse sources", progress
    )
    guard_sources(clips, registry, config.split)
    clips = [*clips, *missing]
    used = [c for c in clips if c.status == "used"]
    if not used:
        reasons = "; ".join(f"{Path(c.path).name}: {c.reason}" for c in clips)
        raise VideoError(f"no usable source clip ({reasons})")
    parses = [load_parse(Path(c.parse_cache)) if c.kind == "video" else None for c in used]
    specs = plan_samples(config, used, parses, categories)
    del parses
    groups = [specs[i : i + config.shard_size] for i in range(0, len(specs), config.shard_size)]
    todo = [j for j in range(len(groups)) if not shard_is_done(config, j)]
    run_jobs(
        engine, build_shard, [(config, used, groups[j], j) for j in todo], workers, "build shards", progress
    )
    manifest = write_manifest(config, clips, len(groups), engine, registry)
    overlap = shared_people(manifest)
    if overlap:  # the guard above makes this impossible; a broken registry edit must not pass silently
        raise RuntimeError(f"people in both splits of {config.out}: {', '.join(overlap)}; fix people.json")
    return BuildReport(manifest, time.perf_counter() - started, len(todo), len(groups) - len(todo))


def shared_people(manifest: dict[str, Any]) -> list[str]:
    """Person ids listed in both splits of a manifest (empty for a sound build)."""
    people = manifest["people"]
    return sorted({p["id"] for p in people["train"]} & {p["id"] for p in people["test"]})


def people_summary(
    clips: Sequence[SourceClip], samples: list[dict[str, Any]], registry: Registry, split: Split
) -> dict[str, list[dict[str, Any]]]:
    """Per split, the people: id, their files and how many samples show them. The split this build did
    not use lists the registry's people of that split (with no samples), so a training manifest names
    who was held out."""
    counts = Counter(s["person"] for s in samples)
    out: dict[str, dict[str, dict[str, Any]]] = {"train": {}, "test": {}}
    other: Split = "test" if split == "train" else "train"
    for person in registry.person_ids(other):
        files = [f.id for f in registry.files_of(person)]
        out[other][person] = {"id": person, "files": files, "samples": 0}
    for clip in clips:
        if clip.status != "used":
            continue
        entry = out[clip.split].setdefault(clip.person, {"id": clip.person, "files": [], "samples": 0})
        name = clip.file_id or clip.path
        if name not in entry["files"]:
            entry["files"].append(name)
        entry["samples"] = counts[clip.person]
    return {split: sorted(people.values(), key=lambda p: p["id"]) for split, people in out.items()}


def _categories(config: BuildConfig) -> list[Category]:
    if config.categories:
        return [get_category(c) for c in config.categories]
    return list(catalog())


def write_manifest(
    config: BuildConfig, clips: Sequence[SourceClip], num_shards: int, engine: str, registry: Registry
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
        "config": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(config).items()
            if k not in ("out", "parse_cache")
        }
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
        "sources": [
            asdict(c) | {"samples": sum(s["clip"] == c.path and s["focus"] == c.focus for s in samples)}
            for c in clips
        ],
        "people": people_summary(clips, samples, registry, config.split),
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
    manifest["counts"]["per_person"] = dict(sorted(Counter(s["person"] for s in samples).items()))
    manifest["counts"]["per_source_kind"] = dict(sorted(Counter(s["source_kind"] for s in samples).items()))
    for source in manifest["sources"]:
        source.pop("parse_cache", None)
        source.pop("phash", None)
    tmp = config.out / "manifest.json.partial"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(config.out / "manifest.json")
    return manifest
