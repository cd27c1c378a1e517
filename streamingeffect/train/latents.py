"""Pre-encoded latent shards: a built dataset passed once through the frame autoencoder.

The transformer trains on latents, so encoding every frame at every step would waste most of a CPU's
time; a latent shard is also what travels to a GPU machine (small, no MediaPipe, no video decoding).
One safetensors file per dataset shard. (Training mirrors latents on the fly: flipping a latent map
is close to encoding the mirrored frames, and costs nothing.)

    <key>.source / .target        [F, C, h, w] float16 latents (scaled)
    <key>.person / .edit          [F, 1, h, w] float16 masks, area-averaged to latent resolution
    <key>.ref_source / .ref_target  [C, h, w] the reference pair's latents
    <key>.ref_far_source / .ref_far_target  [C, h, w] the long reference pair (seconds away, another pose)
    <key>.ref_far_person / .ref_far_edit    [1, h, w] its masks
    <key>.prior_near / .prior_far           [F, C, h, w] the flow prior for each reference: the latent of
                                            the frame with the reference's change carried onto it by
                                            flow, minus the frame's own latent
    <key>.confidence_near / .confidence_far [F, 1, h, w] the flow's confidence
    metadata "samples": JSON list of {key, reference_index, text, descriptions, category, kind, op,
                        person, reference_far}

Samples built before the long reference existed (and latent shards encoded from them) carry no far
pair; they read back with the near pair in its place (``has_far_reference`` False). Latent shards
encoded before the flow prior read back with zero priors and zero confidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from streamingeffect.data.dataset import shard_paths, to_signed
from streamingeffect.data.shards import Sample, read_shard
from streamingeffect.effects import get_category
from streamingeffect.models.autoencoder import FrameAutoencoder
from streamingeffect.pipeline.flow_prior import FlowPrior
from streamingeffect.pipeline.scopes import scope_for


def _resize(frames: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in frames])


def _latent_mask(mask: np.ndarray, size: int, factor: int) -> torch.Tensor:
    """[F, H, W] (bool or uint8) -> [F, 1, size/factor, size/factor] in [0, 1], area-averaged."""
    values = mask.astype(np.float32)
    if values.max() > 1:
        values /= 255.0
    small = np.stack(
        [cv2.resize(m, (size // factor, size // factor), interpolation=cv2.INTER_AREA) for m in values]
    )
    return torch.from_numpy(small)[:, None]


def far_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(target, source, person [S, S] uint8, edit [S, S] bool) of the long reference, or of the near one
    for samples built without it."""
    if sample.has_far_reference:
        assert sample.reference_far_source is not None and sample.reference_far_person is not None
        assert sample.reference_far_edit is not None and sample.reference_far is not None
        return (
            sample.reference_far,
            sample.reference_far_source,
            sample.reference_far_person,
            sample.reference_far_edit,
        )
    index = int(sample.meta["reference_index"])
    return sample.reference, sample.reference_source, sample.person[index], sample.edit_mask[index]


def carried_frames(
    sample: Sample, ref_source: np.ndarray, ref_target: np.ndarray, flow: FlowPrior
) -> tuple[np.ndarray, np.ndarray]:
    """Each source frame with the reference's change carried onto it by flow [F, S, S, 3] uint8, and the
    flow's confidence [F, S, S] (the runtime's prior, `pipeline.flow_prior`, on training data)."""
    category = get_category(str(sample.meta["category"]))
    follows = not scope_for(category).whole_frame  # the change moves with the person, as live
    change = ref_target.astype(np.float32) - ref_source.astype(np.float32)
    frames, confidences = [], []
    for frame, person in zip(sample.source, sample.person, strict=True):
        anchor = person.astype(np.float32) / 255 if follows else None
        carried, confidence = flow(frame, ref_source, change, anchor)
        frames.append(np.clip(np.rint(frame + carried), 0, 255).astype(np.uint8))
        confidences.append(confidence)
    return np.stack(frames), np.stack(confidences)


def _encode(autoencoder: FrameAutoencoder, frames: np.ndarray, size: int) -> torch.Tensor:
    return torch.cat([autoencoder.encode(part) for part in to_signed(_resize(frames, size)).split(16)])


@torch.no_grad()
def encode_sample(autoencoder: FrameAutoencoder, sample: Sample, size: int) -> dict[str, torch.Tensor]:
    """One sample's frames and masks at ``size`` x ``size`` -> latents, latent-resolution masks and the
    flow priors of both references."""
    factor = autoencoder.config.downsample
    far_target, far_source, far_person, far_edit = far_pair(sample)
    refs = np.stack([sample.reference, sample.reference_source, far_target, far_source])
    video = np.concatenate([_resize(sample.source, size), _resize(sample.target, size), _resize(refs, size)])
    latents = torch.cat([autoencoder.encode(part) for part in to_signed(video).split(16)])
    count = sample.num_frames
    flow = FlowPrior()
    priors = {}
    for name, (ref_source, ref_target) in {
        "near": (sample.reference_source, sample.reference),
        "far": (far_source, far_target),
    }.items():
        carried, confidence = carried_frames(sample, ref_source, ref_target, flow)
        priors[f"prior_{name}"] = (_encode(autoencoder, carried, size) - latents[:count]).half()
        priors[f"confidence_{name}"] = _latent_mask(confidence, size, factor).half()
    latents = latents.half()
    return priors | {
        "source": latents[:count],
        "target": latents[count : 2 * count],
        "ref_target": latents[2 * count],
        "ref_source": latents[2 * count + 1],
        "ref_far_target": latents[2 * count + 2],
        "ref_far_source": latents[2 * count + 3],
        "person": _latent_mask(sample.person, size, factor).half(),
        "edit": _latent_mask(sample.edit_mask.astype(np.uint8), size, factor).half(),
        "ref_far_person": _latent_mask(far_person[None], size, factor)[0].half(),
        "ref_far_edit": _latent_mask(far_edit[None].astype(np.uint8), size, factor)[0].half(),
    }


def encode_dataset(
    data: Path, autoencoder: FrameAutoencoder, out: Path, size: int, progress: bool = True, workers: int = 1
) -> Path:
    """Encode every shard of ``data`` into OUT/latents-XXXXX.safetensors (skips finished ones), in
    ``workers`` processes (forked: they share the autoencoder's weights)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    autoencoder.check_size(size, size)
    out.mkdir(parents=True, exist_ok=True)
    shards = shard_paths(data)
    todo = [(i, s) for i, s in enumerate(shards) if not (out / f"latents-{i:05d}.safetensors").exists()]
    bar = tqdm(
        total=len(shards),
        initial=len(shards) - len(todo),
        desc="encode latents",
        unit="shard",
        disable=not progress,
    )
    if workers <= 1:
        for index, shard in todo:
            _encode_shard(autoencoder, shard, out / f"latents-{index:05d}.safetensors", size)
            bar.update()
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            jobs = [
                pool.submit(_encode_shard, autoencoder, shard, out / f"latents-{i:05d}.safetensors", size)
                for i, shard in todo
            ]
            for job in jobs:
                job.result()
                bar.update()
    bar.close()
    (out / "latents.json").write_text(
        json.dumps({"data": str(data), "size": size, "shards": len(shards)}, indent=1)
    )
    return out


def _encode_shard(autoencoder: FrameAutoencoder, shard: Path, path: Path, size: int) -> None:
    """One dataset shard -> one latent shard, written atomically."""
    torch.set_num_threads(1)  # one process per core
    fields = ("key", "reference_index", "text", "category", "kind", "op", "descriptions")
    optional = ("person", "reference_far")  # absent from samples built before the registry
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    for sample in read_shard(shard):
        for name, value in encode_sample(autoencoder, sample, size).items():
            tensors[f"{sample.key}.{name}"] = value.contiguous()
        entry = {k: sample.meta[k] for k in fields} | {
            k: sample.meta[k] for k in optional if k in sample.meta
        }
        entries.append(entry | {"has_far_reference": sample.has_far_reference})
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata={"samples": json.dumps(entries), "size": str(size)})
    tmp.replace(path)


@dataclass
class LatentSample:
    key: str
    source: torch.Tensor  # [F, C, h, w]
    target: torch.Tensor
    person: torch.Tensor  # [F, 1, h, w]
    edit: torch.Tensor
    ref_source: torch.Tensor  # [C, h, w]
    ref_target: torch.Tensor
    ref_far_source: torch.Tensor  # [C, h, w] the long reference (the near pair for old shards)
    ref_far_target: torch.Tensor
    ref_far_person: torch.Tensor  # [1, h, w]
    ref_far_edit: torch.Tensor
    prior_near: torch.Tensor  # [F, C, h, w] the flow prior of the near reference (zeros for old shards)
    confidence_near: torch.Tensor  # [F, 1, h, w]
    prior_far: torch.Tensor  # the same for the long reference
    confidence_far: torch.Tensor
    meta: dict[str, object]

    @property
    def is_edit(self) -> bool:
        return self.meta["kind"] == "edit"

    @property
    def mask(self) -> torch.Tensor:
        """The mask the model is given: the edit region for local edits, the person for effects."""
        return self.edit if self.is_edit else self.person

    @property
    def ref_far_mask(self) -> torch.Tensor:
        """[1, h, w] the long reference's mask, chosen the way ``mask`` is."""
        return self.ref_far_edit if self.is_edit else self.ref_far_person

    @property
    def has_far_reference(self) -> bool:
        return bool(self.meta.get("has_far_reference", False))


class LatentDataset(Dataset):
    """All latent shards of a folder, held in memory (small at CPU sizes), as LatentSample items."""

    def __init__(self, folder: Path):
        paths = sorted(Path(folder).glob("latents-*.safetensors"))
        if not paths:
            raise FileNotFoundError(f"{folder}: no latent shards; run `streamingeffect data encode` first")
        self.samples = [s for path in paths for s in _read_latents(path)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> LatentSample:
        return self.samples[index]


NEAR_FIELDS = ("source", "target", "person", "edit", "ref_source", "ref_target")
FAR_FIELDS = ("ref_far_source", "ref_far_target", "ref_far_person", "ref_far_edit")
PRIOR_FIELDS = ("prior_near", "confidence_near", "prior_far", "confidence_far")


def _read_latents(path: Path) -> Iterator[LatentSample]:
    with safe_open(str(path), framework="pt") as handle:
        entries = json.loads(handle.metadata()["samples"])
        names = set(handle.keys())
        for entry in entries:
            key = entry["key"]
            fields = {name: handle.get_tensor(f"{key}.{name}") for name in NEAR_FIELDS}
            if all(f"{key}.{name}" in names for name in FAR_FIELDS):
                fields |= {name: handle.get_tensor(f"{key}.{name}") for name in FAR_FIELDS}
            else:  # encoded before the long reference: the near pair stands in
                index = int(entry["reference_index"])
                fields |= {
                    "ref_far_source": fields["ref_source"],
                    "ref_far_target": fields["ref_target"],
                    "ref_far_person": fields["person"][index],
                    "ref_far_edit": fields["edit"][index],
                }
                entry = entry | {"has_far_reference": False}
            if all(f"{key}.{name}" in names for name in PRIOR_FIELDS):
                fields |= {name: handle.get_tensor(f"{key}.{name}") for name in PRIOR_FIELDS}
            else:  # encoded before the flow prior: nothing carried, nothing trusted
                zeros, none = torch.zeros_like(fields["source"]), torch.zeros_like(fields["person"])
                fields |= {
                    "prior_near": zeros,
                    "confidence_near": none,
                    "prior_far": zeros,
                    "confidence_far": none,
                }
            yield LatentSample(key=key, meta=entry, **fields)
