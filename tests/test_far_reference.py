"""The long reference through the formats: shards, latent shards and the teacher's batches, with old
shards (no far pair) still readable."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures_data import FPS, synthetic_sample

from streamingeffect.data.shards import encode_sample, read_shard, write_shard
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.train.latents import LatentDataset, encode_dataset
from streamingeffect.train.tasks import LatentClips

AE = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)


def with_far_reference(index: int) -> object:
    sample = synthetic_sample(index)
    size = sample.source.shape[1]
    sample.reference_far = np.full((size, size, 3), 230, np.uint8)  # unlike any window frame
    sample.reference_far_source = np.full((size, size, 3), 20, np.uint8)
    sample.reference_far_edit = np.zeros((size, size), bool)
    sample.reference_far_edit[: size // 2] = True
    sample.reference_far_person = np.full((size, size), 255, np.uint8)
    return sample


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("far")
    samples = [with_far_reference(0), synthetic_sample(1)]  # one new-style, one old-style sample
    write_shard(
        root / "shards" / "shard-00000.tar", [(s.key, encode_sample(s, fps=FPS, crf=0)) for s in samples]
    )
    shard = {"name": "shards/shard-00000.tar", "samples": 2, "keys": [s.key for s in samples]}
    (root / "manifest.json").write_text(json.dumps({"shards": [shard]}))
    return root


def test_far_reference_round_trips_through_a_shard(data: Path) -> None:
    new, old = read_shard(data / "shards" / "shard-00000.tar")
    assert new.has_far_reference and not old.has_far_reference
    assert np.array_equal(new.reference_far, np.full_like(new.reference, 230))
    assert new.reference_far_edit[0].all() and not new.reference_far_edit[-1].any()
    assert old.reference_far is None and old.reference_far_edit is None


def test_latents_carry_the_far_pair_and_fall_back_to_the_near_one(data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    latents = encode_dataset(data, FrameAutoencoder(AE).eval(), tmp_path / "latents", size=32, progress=False)
    new, old = LatentDataset(latents).samples
    assert new.has_far_reference and not old.has_far_reference
    assert new.ref_far_target.shape == new.ref_target.shape == (4, 4, 4)
    assert new.ref_far_mask.shape == (1, 4, 4)
    assert not torch.equal(new.ref_far_target, new.ref_target)
    assert torch.equal(old.ref_far_target, old.ref_target) and torch.equal(old.ref_far_source, old.ref_source)
    index = int(old.meta["reference_index"])
    assert torch.equal(old.ref_far_mask, old.mask[index])

    clips = LatentClips.__new__(LatentClips)  # no text model needed to test the reference choice
    clips.frames, clips.far_reference = 2, 1.0

    def lookup(texts: list[str]) -> SimpleNamespace:
        count = len(texts)
        return SimpleNamespace(
            tokens=torch.zeros(count, 3, 384),
            mask=torch.ones(count, 3, dtype=torch.bool),
            pooled=torch.zeros(count, 384),
        )

    clips.text = SimpleNamespace(lookup=lookup)
    batch = clips.collate([new, old], torch.Generator().manual_seed(0))
    for b, sample in enumerate((new, old)):
        expected = sample.ref_far_target.float()
        assert torch.equal(batch.ref_target[b], expected) or torch.equal(
            batch.ref_target[b], expected.flip(-1)
        )
    clips.far_reference = 0.0
    near = clips.collate([new], torch.Generator().manual_seed(0))
    assert torch.equal(near.ref_target[0], new.ref_target.float()) or torch.equal(
        near.ref_target[0], new.ref_target.float().flip(-1)
    )
