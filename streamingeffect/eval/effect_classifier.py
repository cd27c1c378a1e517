"""Effect classifier: which renderer family does a (source frame, output frame) pair show?

There is no CLIP offline, so "does the output show the requested effect" is measured by a small CNN
trained on the procedural renderer's own triplets. It sees the source, the output and their
difference at 64x64 and predicts one of the catalog's families, or ``none`` for an unedited pair.
The label list is all families of the catalog (fixed, independent of the data) and is stored with
the weights.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamingeffect.data.dataset import shard_paths, to_signed
from streamingeffect.data.shards import read_shard
from streamingeffect.effects import catalog
from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import FrameAutoencoder

SIZE = 64  # the classifier's input side
STORE = 80  # training frames are kept at this side, so random crops still have pixels to spare
NONE = "none"  # the label of a pair without an effect (source, source)
KIND = "effect-classifier"
BUNDLED = Path(__file__).resolve().parents[1] / "weights" / KIND
AUTOENCODER = BUNDLED.parent / "autoencoder-tiny"  # the generators' autoencoder


def family_labels() -> list[str]:
    """The label set: every family of the catalog in sorted order, then ``none``."""
    return [*sorted({c.family for c in catalog()}), NONE]


# ----------------------------------------------------------------------------------------------
# The network


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU(inplace=True)
    )


class EffectClassifier(nn.Module):
    """(source, output) [B, 3, 64, 64] in [-1, 1] -> logits over ``labels``.

    A plain CNN: a full-resolution stem, then stages that halve the resolution; average and max
    pooling together, because a small edit (lipstick, a nose sticker) is a few pixels a mean dilutes.
    """

    def __init__(
        self, labels: Sequence[str], widths: Sequence[int] = (32, 64, 96, 160), difference: bool = True
    ):
        super().__init__()
        self.labels, self.widths, self.difference = list(labels), tuple(widths), difference
        layers = [_conv(9 if difference else 6, widths[0])]
        for cin, cout in itertools.pairwise(widths):
            layers += [_conv(cin, cout, stride=2), _conv(cout, cout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * widths[-1], len(self.labels)))

    def config(self) -> dict[str, Any]:
        return {"labels": self.labels, "widths": list(self.widths), "difference": self.difference}

    def forward(self, source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        parts = [source, output, output - source] if self.difference else [source, output]
        features = self.features(torch.cat(parts, dim=1))
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class FramePairs:
    """Every (source, target) frame pair of a dataset, flattened over samples.

    ``source_out`` / ``target_out`` are what a generator would output for an unedited source / for
    the target: the frames themselves, or their autoencoder round trips on ``roundtrip`` rows.
    """

    source: np.ndarray  # [N, S, S, 3] uint8
    target: np.ndarray  # [N, S, S, 3] uint8
    source_out: np.ndarray  # [N, S, S, 3] uint8
    target_out: np.ndarray  # [N, S, S, 3] uint8
    label: np.ndarray  # [N] int64, index into the label list
    sample: np.ndarray  # [N] int64, which sample the frame came from (clip-level scores)
    roundtrip: np.ndarray  # [N] bool

    def rows(self, keep: np.ndarray) -> FramePairs:
        return FramePairs(*(getattr(self, f.name)[keep] for f in fields(self)))


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return np.ascontiguousarray(frames)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


@torch.no_grad()
def autoencoder_roundtrip(autoencoder: FrameAutoencoder, frames: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 frames -> decode(encode(frames)) at ``resolution``, as uint8 at the input size."""
    signed = to_signed(_resize(frames, resolution))
    decoded = torch.cat([autoencoder(part)[0] for part in signed.split(16)])
    pixels = decoded.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return _resize(pixels, frames.shape[1])


def load_pairs(
    data: Path | Sequence[Path],
    labels: Sequence[str],
    size: int = STORE,
    autoencoder: FrameAutoencoder | None = None,
    every: int = 4,
    resolution: int = 128,
) -> FramePairs:
    """Decode the shards of ``data`` into frame pairs at ``size`` x ``size``.

    With an autoencoder, every ``every``-th frame pair is added once more with round-tripped outputs
    (at the generators' ``resolution``): generated frames carry the autoencoder's softness, and the
    classifier must not read that as an effect (it looks like fog otherwise).
    """
    index = {name: i for i, name in enumerate(labels)}
    parts: list[FramePairs] = []
    samples = (s for shard in shard_paths(data) for s in read_shard(shard))
    for n, sample in enumerate(samples):
        if sample.meta["family"] not in index:
            raise ValueError(
                f"{sample.key}: family {sample.meta['family']!r} is not in the classifier's labels"
            )
        label = index[sample.meta["family"]]
        source, target = _resize(sample.source, size), _resize(sample.target, size)
        parts.append(_pairs(source, target, source, target, label=label, sample=n, roundtrip=False))
        if autoencoder is not None:
            frames = [sample.source[::every], sample.target[::every]]
            outs = [autoencoder_roundtrip(autoencoder, f, resolution) for f in frames]
            sized = [_resize(f, size) for f in frames + outs]
            parts.append(_pairs(*sized, label=label, sample=n, roundtrip=True))
    return FramePairs(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(FramePairs)))


def _pairs(*frames: np.ndarray, label: int, sample: int, roundtrip: bool) -> FramePairs:
    count = len(frames[0])
    return FramePairs(*frames, np.full(count, label), np.full(count, sample), np.full(count, roundtrip))


# ----------------------------------------------------------------------------------------------
# Augmentation: everything geometric is applied to both frames alike, so the pair stays aligned


def _crop_flip(pairs: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """[B, C, S, S] -> [B, C, 64, 64]: a random square crop (75-100% of the side), random h-flip."""
    side = pairs.shape[-1]
    out = []
    for item in pairs:
        crop = int(rng.integers(round(0.75 * side), side + 1))
        y, x = (int(v) for v in rng.integers(0, side - crop + 1, size=2))
        patch = item[None, :, y : y + crop, x : x + crop]
        patch = F.interpolate(patch, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        out.append(patch.flip(-1) if rng.random() < 0.5 else patch)
    return torch.cat(out)


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.exp(-(torch.arange(-radius, radius + 1.0) ** 2) / (2 * sigma**2))
    kernel = (taps / taps.sum()).to(images)
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _degrade(output: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Blur and noise on the output only: a generated frame is never bit-exact, so an exact zero
    difference must not be what ``none`` means, and a soft output must not hide its effect."""
    out = []
    for frame in output:
        frame = frame[None]
        if rng.random() < 0.5:
            frame = _blur(frame, float(rng.uniform(0.3, 1.2)))
        noise = float(rng.uniform(0.0, 0.04))
        out.append(frame + noise * torch.randn_like(frame))
    return torch.cat(out).clamp(-1, 1)


def _draw_probabilities(pairs: FramePairs, roundtrip_share: float) -> np.ndarray | None:
    """Row probabilities that give round-trip rows ``roundtrip_share`` of the draws (None: uniform)."""
    count = int(pairs.roundtrip.sum())
    if count in (0, len(pairs.roundtrip)):
        return None
    plain = len(pairs.roundtrip) - count
    return np.where(pairs.roundtrip, roundtrip_share / count, (1 - roundtrip_share) / plain)


def _batch(
    pairs: FramePairs,
    probabilities: np.ndarray | None,
    batch_size: int,
    none_id: int,
    none_share: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random training batch: (source, output, label); ``none_share`` of it unedited pairs."""
    pick = rng.choice(len(pairs.label), size=batch_size, p=probabilities)
    source, output = pairs.source[pick], pairs.target_out[pick]
    label = pairs.label[pick].copy()
    unedited = np.flatnonzero(rng.random(batch_size) < none_share)
    for i in unedited:
        # a frame and its own output: a target frame with sunglasses on is still "none"
        frame, out = (
            (pairs.target, pairs.target_out) if rng.random() < 0.5 else (pairs.source, pairs.source_out)
        )
        source[i], output[i] = frame[pick[i]], out[pick[i]]
    label[unedited] = none_id
    both = _crop_flip(torch.cat([to_signed(source), to_signed(output)], dim=1), rng)
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (batch_size, 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-0.1, 0.1, (batch_size, 1, 1, 1))).float()
    both = (both * gain + bias).clamp(-1, 1)
    return both[:, :3], _degrade(both[:, 3:], rng), torch.from_numpy(label)


# ----------------------------------------------------------------------------------------------
# Inference


def _prepare(frames: np.ndarray) -> torch.Tensor:
    frames = frames[None] if frames.ndim == 3 else frames
    return to_signed(_resize(frames, SIZE))


@torch.no_grad()
def predict_logits(
    model: EffectClassifier, sources: np.ndarray, outputs: np.ndarray, batch_size: int = 128
) -> torch.Tensor:
    """uint8 [F, H, W, 3] frame pairs (any size; a single [H, W, 3] pair too) -> logits [F, labels]."""
    if sources.shape[:-3] != outputs.shape[:-3]:
        raise ValueError(f"{sources.shape[:-3]} source frames but {outputs.shape[:-3]} output frames")
    model.eval()
    source, output = _prepare(sources), _prepare(outputs)
    chunks = range(0, source.shape[0], batch_size)
    return torch.cat([model(source[i : i + batch_size], output[i : i + batch_size]) for i in chunks])


def classify(model: EffectClassifier, sources: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """-> predicted label ids [F] (``model.labels[i]`` is the family name)."""
    return predict_logits(model, sources, outputs).argmax(dim=1).numpy()


def accuracy(
    model: EffectClassifier, sources: np.ndarray, outputs: np.ndarray, families: str | Sequence[str]
) -> float:
    """Share of frame pairs classified as their family (one name for all frames, or one per frame)."""
    predicted = classify(model, sources, outputs)
    expected = [families] * len(predicted) if isinstance(families, str) else list(families)
    if len(expected) != len(predicted):
        raise ValueError(f"{len(expected)} family names for {len(predicted)} frame pairs")
    return float(np.mean([model.labels[p] == e for p, e in zip(predicted, expected, strict=True)]))


def evaluate(model: EffectClassifier, pairs: FramePairs) -> dict[str, float]:
    """Held-out scores: on ground truth (per frame; per clip, probabilities averaged over its frames),
    on the unedited source (accuracy and share called ``none``), the majority-class share, and the
    same on autoencoder round trips where ``pairs`` has them."""
    plain = pairs.rows(~pairs.roundtrip)
    labels = torch.from_numpy(plain.label)
    truth = predict_logits(model, plain.source, plain.target)
    clips = torch.from_numpy(plain.sample)
    votes = torch.zeros(int(clips.max()) + 1, truth.shape[1]).index_add_(0, clips, truth.softmax(1))
    clip_labels = torch.zeros(votes.shape[0], dtype=torch.long).index_copy_(0, clips, labels)
    _, counts = np.unique(plain.label, return_counts=True)
    scores = {
        "frames": len(labels),
        "clips": votes.shape[0],
        "chance": float(counts.max() / counts.sum()),
        "ground_truth": float((truth.argmax(1) == labels).float().mean()),
        "ground_truth_clips": float((votes.argmax(1) == clip_labels).float().mean()),
        **_unedited_scores(model, plain.source, plain.source, plain.label, "source"),
    }
    if pairs.roundtrip.any():
        trip = pairs.rows(pairs.roundtrip)
        scores["roundtrip_frames"] = len(trip.label)
        scores["roundtrip_ground_truth"] = accuracy(model, trip.source, trip.target_out, _names(model, trip))
        scores |= _unedited_scores(model, trip.source, trip.source_out, trip.label, "roundtrip_source")
    return scores


def _names(model: EffectClassifier, pairs: FramePairs) -> list[str]:
    return [model.labels[i] for i in pairs.label]


def _unedited_scores(
    model: EffectClassifier, source: np.ndarray, output: np.ndarray, label: np.ndarray, name: str
) -> dict[str, float]:
    predicted = classify(model, source, output)
    return {
        name: float(np.mean(predicted == label)),
        f"{name}_called_none": float(np.mean(predicted == model.labels.index(NONE))),
    }


# ----------------------------------------------------------------------------------------------
# Saving, loading, training


def save_effect_classifier(model: EffectClassifier, out: Path, extra: dict[str, Any]) -> None:
    """fp16 weights (the file stays small; loading casts back to fp32) and the config with labels."""
    weights = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt.save_weights(Path(out), weights, {"kind": KIND, "model": model.config(), **extra})


def load_effect_classifier(path: str | Path = BUNDLED) -> EffectClassifier:
    """A folder written by ``train_effect_classifier`` (default: the bundled weights), in eval mode."""
    config = ckpt.read_config(Path(path))
    if config.get("kind") != KIND:
        raise ckpt.CheckpointError(f"{path}: a {config.get('kind')!r} checkpoint, not an {KIND}")
    model = EffectClassifier(**config["model"])
    weights = {k: v.float() if v.is_floating_point() else v for k, v in ckpt.read_weights(path).items()}
    ckpt.load_into(model, weights, path)
    return model.eval()


def _learning_rate(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


@dataclass(frozen=True)
class ClassifierTraining:
    """How the classifier trains; the defaults made the bundled weights."""

    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    time_limit: float = 0.0  # seconds (0: none); saves and stops when reached
    none_share: float = 0.1  # share of each batch shown as unedited pairs
    roundtrip_share: float = 0.4  # share of the draws with autoencoder round-trip outputs


def train_effect_classifier(
    data: Path | Sequence[Path],
    out: Path,
    steps: int = 2000,
    training: ClassifierTraining = ClassifierTraining(),
    autoencoder: Path | None = AUTOENCODER,
    heldout: Path | None = None,
    widths: Sequence[int] = (32, 64, 96, 160),
    difference: bool = True,
    progress: bool = True,
) -> Path:
    """Train on the frame pairs of ``data``; save to ``out`` and return it.

    autoencoder: the generators' autoencoder, whose round trips are shown as outputs too (None: skip).
    heldout, if given, is scored at the end and the scores are written into config.json.
    """
    from streamingeffect.models.autoencoder import load_autoencoder

    torch.manual_seed(training.seed)
    labels = family_labels()
    ae = load_autoencoder(autoencoder) if autoencoder is not None else None
    pairs = load_pairs(data, labels, autoencoder=ae)
    model = EffectClassifier(labels, widths, difference)
    done, seconds = _fit(model, pairs, steps, training, progress)
    extra: dict[str, Any] = {
        "train": {
            **asdict(training),
            "steps": done,
            "seconds": round(seconds, 1),
            "data": str(data),
            "frame_pairs": len(pairs.label),
            "autoencoder": str(autoencoder) if autoencoder is not None else None,
        }
    }
    if heldout is not None:
        scores = evaluate(model.eval(), load_pairs(heldout, labels, autoencoder=ae))
        extra["heldout"] = {"data": str(heldout), **scores}
    save_effect_classifier(model, Path(out), extra)
    return Path(out)


def _fit(
    model: EffectClassifier, pairs: FramePairs, steps: int, training: ClassifierTraining, progress: bool
) -> tuple[int, float]:
    """AdamW with warm-up and cosine decay, label smoothing -> (steps done, seconds)."""
    from tqdm import tqdm

    rng = np.random.default_rng(training.seed)
    probabilities = _draw_probabilities(pairs, training.roundtrip_share)
    none_id = model.labels.index(NONE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=0.05)
    start, done = time.perf_counter(), 0
    bar = tqdm(range(steps), desc=f"train {KIND}", unit="step", disable=not progress, dynamic_ncols=True)
    model.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, steps, training.lr)
        batch = _batch(pairs, probabilities, training.batch_size, none_id, training.none_share, rng)
        logits = model(batch[0], batch[1])
        loss = F.cross_entropy(logits, batch[2], label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        hits = (logits.argmax(1) == batch[2]).float().mean()
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{hits:.2f}")
        if training.time_limit and time.perf_counter() - start > training.time_limit:
            break
    bar.close()
    return done, time.perf_counter() - start
