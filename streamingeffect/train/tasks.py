"""Training tasks: each joins a model, its data and its objective for the shared Trainer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from streamingeffect.data.dataset import Augment, EffectClipDataset
from streamingeffect.models.autoencoder import DISTILLED_FROM, AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectTransformer
from streamingeffect.models.lpips import LPIPS
from streamingeffect.objectives.autoencoder import distillation_loss, reconstruction_loss
from streamingeffect.objectives.teacher import LatentBatch, teacher_loss
from streamingeffect.pipeline import TaskConfig
from streamingeffect.train.distributed import DistEnv
from streamingeffect.train.latents import LatentSample


def clip_stream(
    data: Path, size: int, frames: int, seed: int, workers: int, augment: Augment
) -> Iterator[dict[str, Any]]:
    """Endless stream of augmented clips (shards split across ranks and loader workers)."""
    dataset = EffectClipDataset(data, size=size, frames=frames, augment=augment, seed=seed, repeat=True)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    yield from loader


class NoExtraState:
    """Tasks whose only trained state is the model (the trainer saves that); DMD also has a critic."""

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None


class AutoencoderTask(NoExtraState):
    """Frames (sources and targets, so effects are reconstructed too) at random crops and scales."""

    kind = "autoencoder"
    cpu_autocast = False  # bf16 convolutions were several times slower than fp32 on the CPUs we measured
    metric_names = ("l1", "lpips", "latent_rms")

    def __init__(self, config: AutoencoderConfig, data: Path, crop: int = 128, frames_per_clip: int = 4):
        self.config = config
        self.model: nn.Module = FrameAutoencoder(config)
        self.lpips = LPIPS()
        self.data, self.crop, self.frames_per_clip = data, crop, frames_per_clip

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def task_info(self) -> dict[str, Any]:
        return {"data": str(self.data), "crop": self.crop}

    def batches(self, env: DistEnv, batch_size: int, seed: int, workers: int) -> Iterator[torch.Tensor]:
        self.lpips.to(env.device)
        augment = Augment(crop_scale=(0.5, 1.0))
        pool: list[torch.Tensor] = []
        for item in clip_stream(self.data, self.crop, self.frames_per_clip, seed, workers, augment):
            pool += [*item["source"], *item["target"]]
            while len(pool) >= batch_size:
                yield torch.stack(pool[:batch_size]).to(env.device)
                pool = pool[batch_size:]

    def loss(self, model: nn.Module, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return reconstruction_loss(model, self.lpips, batch)


class AutoencoderDistillTask(NoExtraState):
    """A smaller autoencoder trained into a trained one's latent space (`distillation_loss`): batches of
    source frames followed by their targets, at random crops and scales."""

    kind = "autoencoder"
    cpu_autocast = False
    metric_names = ("latent_mse", "l1", "change_l1", "lpips")

    def __init__(
        self,
        config: AutoencoderConfig,
        teacher: FrameAutoencoder,
        data: Path,
        teacher_digest: str,
        crop: int = 128,
    ):
        """``teacher_digest``: `checkpoint.weights_digest` of the teacher, saved so that a runtime can
        tell which models' latents this autoencoder reads (`ModelBundle.with_distilled`)."""
        if config.latent_channels != teacher.config.latent_channels:
            raise ValueError(
                f"the student needs the teacher's {teacher.config.latent_channels} latent channels, "
                f"not {config.latent_channels}"
            )
        # The teacher's latent scale: the student's scaled latents are the teacher's.
        self.config = replace(config, latent_scale=teacher.config.latent_scale)
        self.model: nn.Module = FrameAutoencoder(self.config)
        self.teacher = teacher.eval().requires_grad_(False)
        self.lpips = LPIPS()
        self.data, self.crop, self.teacher_digest = data, crop, teacher_digest

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def task_info(self) -> dict[str, Any]:
        return {"data": str(self.data), "crop": self.crop, DISTILLED_FROM: self.teacher_digest}

    def batches(self, env: DistEnv, batch_size: int, seed: int, workers: int) -> Iterator[torch.Tensor]:
        if batch_size % 2:
            raise ValueError(f"distillation batches are source-target pairs: {batch_size} is odd")
        self.lpips.to(env.device)
        self.teacher.to(env.device)
        sources: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        for item in clip_stream(self.data, self.crop, 4, seed, workers, Augment(crop_scale=(0.5, 1.0))):
            sources += list(item["source"])
            targets += list(item["target"])
            while len(sources) >= batch_size // 2:
                pairs = batch_size // 2
                yield torch.stack(sources[:pairs] + targets[:pairs]).to(env.device)
                sources, targets = sources[pairs:], targets[pairs:]

    def loss(self, model: nn.Module, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return distillation_loss(model, self.teacher, self.lpips, batch)  # type: ignore[arg-type]


@torch.no_grad()
def calibrate_latent_scale(
    autoencoder: FrameAutoencoder, frames: Iterator[torch.Tensor], batches: int = 8
) -> float:
    """1 / std of the (unscaled) latents over a few batches: the diffusion model wants unit variance."""
    autoencoder.eval()
    values = [autoencoder.encoder(next(frames)).flatten() for _ in range(batches)]
    return float(1.0 / torch.cat(values).std().clamp_min(1e-6))


class LatentClips:
    """Training batches from pre-encoded latent shards: random windows, random descriptions, mirroring.

    ``far_reference`` is the probability that a sample's reference pair is its long reference (a frame
    seconds from the window, in another pose; see docs/DATA.md) instead of the near one, for samples
    that have one; 0 keeps the near reference everywhere.
    """

    def __init__(self, latents: Path, frames: int, far_reference: float = 0.0):
        from streamingeffect.models.text import TextCache
        from streamingeffect.train.latents import LatentDataset

        self.latents, self.frames, self.far_reference = latents, frames, far_reference
        self.dataset = LatentDataset(latents)
        self.text = TextCache.for_catalog(latents / "text-cache.safetensors")
        self.resolution = int(json.loads((latents / "latents.json").read_text())["size"])

    def batches(self, env: DistEnv, batch_size: int, seed: int) -> Iterator[LatentBatch]:
        generator = torch.Generator().manual_seed(seed + env.rank)
        samples = [s for i, s in enumerate(self.dataset.samples) if i % env.world_size == env.rank]
        while True:
            picks = torch.randint(len(samples), (batch_size,), generator=generator).tolist()
            yield self.collate([samples[i] for i in picks], generator).to(env.device)

    def collate(self, samples: list[LatentSample], generator: torch.Generator) -> LatentBatch:
        """Random windows of ``frames`` latent frames and a random description of each category."""
        windows, texts = [], []
        for sample in samples:
            count = sample.source.shape[0]
            start = int(torch.randint(count - self.frames + 1, (1,), generator=generator))
            windows.append((sample, slice(start, start + self.frames)))
            descriptions = sample.meta["descriptions"]
            texts.append(descriptions[int(torch.randint(len(descriptions), (1,), generator=generator))])
        features = self.text.lookup(texts)

        def stack(get: Any) -> torch.Tensor:
            return torch.stack([get(s, w) for s, w in windows]).float()

        # Drawn only when asked for, so the default keeps the random stream (and batches) it always had.
        draws = (
            torch.rand(len(samples), generator=generator).tolist()
            if self.far_reference > 0
            else [1.0] * len(samples)
        )
        far = [
            s.has_far_reference and d < self.far_reference for (s, _), d in zip(windows, draws, strict=True)
        ]

        def reference(sample: LatentSample, use_far: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            if use_far:
                return sample.ref_far_source, sample.ref_far_target, sample.ref_far_mask
            return sample.ref_source, sample.ref_target, sample.mask[int(sample.meta["reference_index"])]

        refs = [reference(s, f) for (s, _), f in zip(windows, far, strict=True)]
        batch = LatentBatch(
            source=stack(lambda s, w: s.source[w]),
            target=stack(lambda s, w: s.target[w]),
            mask=stack(lambda s, w: s.mask[w]),
            edit=stack(lambda s, w: s.edit[w]),
            ref_source=torch.stack([r[0] for r in refs]).float(),
            ref_target=torch.stack([r[1] for r in refs]).float(),
            ref_mask=torch.stack([r[2] for r in refs]).float(),
            text_tokens=features.tokens,
            text_mask=features.mask,
            text_pooled=features.pooled,
            prior=torch.stack(
                [(s.prior_far if f else s.prior_near)[w] for (s, w), f in zip(windows, far, strict=True)]
            ).float(),
            confidence=torch.stack(
                [
                    (s.confidence_far if f else s.confidence_near)[w]
                    for (s, w), f in zip(windows, far, strict=True)
                ]
            ).float(),
        )
        return mirror(batch, torch.rand(len(samples), generator=generator) < 0.5)


class TeacherTask(NoExtraState):
    """The bidirectional in-context teacher: flow matching on pre-encoded latent clips."""

    kind = "teacher"
    cpu_autocast = True  # matmul-bound: bf16 pays off on CPUs with native bf16 (see precision.py)
    metric_names = ("mse_inside", "mse_outside")

    def __init__(
        self,
        config: EffectModelConfig,
        latents: Path,
        frames: int = 4,
        shift: float = 3.0,
        far_reference: float = 0.0,
    ):
        self.config = config
        self.model: nn.Module = EffectTransformer(config)
        self.clips = LatentClips(latents, frames, far_reference)
        self.frames, self.shift = frames, shift
        self.latents = latents
        self.resolution = self.clips.resolution

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def task_info(self) -> dict[str, Any]:
        # The autoencoder is the copy beside the weights, so a model folder is self-contained.
        task = TaskConfig(
            self.resolution, self.frames, self.shift, "autoencoder", info={"latents": str(self.latents)}
        )
        return task.to_dict()

    def batches(self, env: DistEnv, batch_size: int, seed: int, workers: int) -> Iterator[LatentBatch]:
        return self.clips.batches(env, batch_size, seed)

    def loss(self, model: nn.Module, batch: LatentBatch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        return teacher_loss(
            model,
            batch,
            self.shift,
            config.predict_residual,
            prior=config.prior,
            x0_loss=config.predict == "x0",
        )


def mirror(batch: LatentBatch, flip: torch.Tensor) -> LatentBatch:
    """Horizontally flip the chosen samples (flip [B] bool) of every spatial tensor in the batch."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 4:
            return x  # text features
        chosen = flip.view(-1, *([1] * (x.dim() - 1)))
        return torch.where(chosen, x.flip(-1), x)

    return LatentBatch(**{name: apply(value) for name, value in vars(batch).items()})
