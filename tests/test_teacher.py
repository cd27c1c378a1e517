"""The teacher's data path and objective on tiny nets: latent shards, batches, overfitting one batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures_data import tiny_dataset

from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectTransformer
from streamingeffect.objectives.teacher import LatentBatch, sample_modes, teacher_loss
from streamingeffect.train.latents import LatentDataset, encode_dataset
from streamingeffect.train.tasks import mirror

AE = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)


@pytest.fixture(scope="module")
def latents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("teacher-data")
    data = tiny_dataset(root / "data", samples=4, frames=4, size=32)
    torch.manual_seed(0)
    return encode_dataset(data, FrameAutoencoder(AE).eval(), root / "latents", size=32, progress=False)


def test_latent_shards_hold_every_sample_at_latent_resolution(latents: Path) -> None:
    dataset = LatentDataset(latents)
    assert len(dataset) == 4
    sample = dataset[0]
    assert sample.source.shape == (4, 4, 4, 4) and sample.target.shape == sample.source.shape
    assert sample.person.shape == (4, 1, 4, 4) and sample.ref_source.shape == (4, 4, 4)
    assert float(sample.edit.min()) >= 0 and float(sample.edit.max()) <= 1
    assert sample.meta["text"] in sample.meta["descriptions"]
    assert not torch.equal(sample.source, sample.target)  # the recoloured ellipse shows in latent space


def test_encoding_again_skips_finished_shards(latents: Path) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in latents.glob("latents-*.safetensors")}
    encode_dataset(latents.parent / "data", FrameAutoencoder(AE).eval(), latents, size=32, progress=False)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in latents.glob("latents-*.safetensors")}


def random_batch(size: int = 2, frames: int = 3, channels: int = 4, side: int = 4) -> LatentBatch:
    g = torch.Generator().manual_seed(3)
    source = torch.randn(size, frames, channels, side, side, generator=g)
    edit = (torch.rand(size, frames, 1, side, side, generator=g) > 0.5).float()
    return LatentBatch(
        source=source,
        target=source + edit * torch.randn(size, frames, channels, side, side, generator=g),
        mask=edit,
        edit=edit,
        ref_source=torch.randn(size, channels, side, side, generator=g),
        ref_target=torch.randn(size, channels, side, side, generator=g),
        ref_mask=torch.ones(size, 1, side, side),
        text_tokens=torch.randn(size, 5, 384, generator=g),
        text_mask=torch.ones(size, 5, dtype=torch.bool),
        text_pooled=torch.randn(size, 384, generator=g),
        prior=torch.zeros(size, frames, channels, side, side),
        confidence=torch.zeros(size, frames, 1, side, side),
    )


def test_mirror_flips_only_the_chosen_samples_and_every_map_together() -> None:
    batch = random_batch()
    out = mirror(batch, torch.tensor([True, False]))
    for name in ("source", "target", "mask", "edit", "ref_source", "ref_target"):
        assert torch.equal(getattr(out, name)[0], getattr(batch, name)[0].flip(-1)), name
        assert torch.equal(getattr(out, name)[1], getattr(batch, name)[1]), name
    assert torch.equal(out.text_tokens, batch.text_tokens)


def test_condition_modes_drop_the_reference_half_the_time() -> None:
    keep_reference, keep_text = sample_modes(4000, torch.Generator().manual_seed(0))
    assert abs(keep_reference.float().mean().item() - 0.5) < 0.03
    assert (keep_reference | keep_text).float().mean() > 0.9  # mostly at least one condition


def test_two_layer_teacher_overfits_one_batch() -> None:
    torch.manual_seed(0)
    net = EffectTransformer(EffectModelConfig.named("test", latent_channels=4))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    batch = random_batch()
    losses = []
    for _ in range(80):
        torch.manual_seed(1)  # the same noise, times and condition modes every step: one fixed batch
        loss, _ = teacher_loss(net, batch, shift=3.0, residual=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]
