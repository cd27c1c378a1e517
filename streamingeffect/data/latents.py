"""Pre-encoded latent shards: a built dataset passed once through the frame autoencoder.

The transformer trains on latents, so encoding every frame at every step would waste most of a CPU's
time; a latent shard is also what travels to a GPU machine (small, no MediaPipe, no video decoding).
One safetensors file per dataset shard. (Training mirrors latents on the fly: flipping a latent map
is close to encoding the mirrored frames, and costs nothing.)

    <key>.source / .target        [F, C, h, w] float16 latents (scaled)
    <key>.person / .edit          [F, 1, h, w] float16 masks, area-averaged to latent resolution
    <key>.ref_source / .ref_target  [C, h, w] the reference pair's latents
    metadata "samples": JSON list of {key, reference_index, text, descriptions, category, kind, op}
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
from streamingeffect.models.autoencoder import FrameAutoencoder


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


@torch.no_grad()
def encode_sample(autoencoder: FrameAutoencoder, sample: Sample, size: int) -> dict[str, torch.Tensor]:
    """One sample's frames and masks at ``size`` x ``size`` -> latents and latent-resolution masks."""
    factor = autoencoder.config.downsample
    refs = np.stack([sample.reference, sample.reference_source])
    video = np.concatenate([_resize(sample.source, size), _resize(sample.target, size), _resize(refs, size)])
    latents = torch.cat([autoencoder.encode(part) for part in to_signed(video).split(16)]).half()
    count = sample.num_frames
    return {
        "source": latents[:count],
        "target": latents[count : 2 * count],
        "ref_target": latents[2 * count],
        "ref_source": latents[2 * count + 1],
        "person": _latent_mask(sample.person, size, factor).half(),
        "edit": _latent_mask(sample.edit_mask.astype(np.uint8), size, factor).half(),
    }


def encode_dataset(
    data: Path, autoencoder: FrameAutoencoder, out: Path, size: int, progress: bool = True
) -> Path:
    """Encode every shard of ``data`` into OUT/latents-XXXXX.safetensors (skips finished ones)."""
    from tqdm import tqdm

    autoencoder.check_size(size, size)
    out.mkdir(parents=True, exist_ok=True)
    shards = shard_paths(data)
    fields = ("key", "reference_index", "text", "category", "kind", "op", "descriptions")
    for index, shard in enumerate(tqdm(shards, desc="encode latents", unit="shard", disable=not progress)):
        path = out / f"latents-{index:05d}.safetensors"
        if path.exists():
            continue
        tensors: dict[str, torch.Tensor] = {}
        entries = []
        for sample in read_shard(shard):
            for name, value in encode_sample(autoencoder, sample, size).items():
                tensors[f"{sample.key}.{name}"] = value.contiguous()
            entries.append({k: sample.meta[k] for k in fields})
        tmp = path.with_name(path.name + ".partial")
        save_file(tensors, str(tmp), metadata={"samples": json.dumps(entries), "size": str(size)})
        tmp.replace(path)
    (out / "latents.json").write_text(
        json.dumps({"data": str(data), "size": size, "shards": len(shards)}, indent=1)
    )
    return out


@dataclass
class LatentSample:
    key: str
    source: torch.Tensor  # [F, C, h, w]
    target: torch.Tensor
    person: torch.Tensor  # [F, 1, h, w]
    edit: torch.Tensor
    ref_source: torch.Tensor  # [C, h, w]
    ref_target: torch.Tensor
    meta: dict[str, object]

    @property
    def mask(self) -> torch.Tensor:
        """The mask the model is given: the edit region for local edits, the person for effects."""
        return self.edit if self.meta["kind"] == "edit" else self.person


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


def _read_latents(path: Path) -> Iterator[LatentSample]:
    with safe_open(str(path), framework="pt") as handle:
        entries = json.loads(handle.metadata()["samples"])
        for entry in entries:
            key = entry["key"]
            fields = {
                name: handle.get_tensor(f"{key}.{name}")
                for name in ("source", "target", "person", "edit", "ref_source", "ref_target")
            }
            yield LatentSample(key=key, meta=entry, **fields)
