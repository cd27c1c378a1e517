"""Entry points behind `streamingeffect train ...`: build the task, run the Trainer, finish the export."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder, load_autoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.pipeline import TaskConfig
from streamingeffect.train.distributed import init_distributed, shutdown
from streamingeffect.train.tasks import (
    AutoencoderDistillTask,
    AutoencoderTask,
    TeacherTask,
    calibrate_latent_scale,
)
from streamingeffect.train.trainer import TrainConfig, Trainer


def train_autoencoder(data: Path, out: Path, size: str, config: TrainConfig, resume: bool = False) -> Path:
    """Train (or resume) the frame autoencoder, then store its latent scale in config.json."""
    env = init_distributed()
    try:
        task = AutoencoderTask(AutoencoderConfig.named(size), data)
        Trainer(task, config, out, env, resume=resume).fit()
        if env.is_main:
            saved = ckpt.read_config(out)
            model = FrameAutoencoder(AutoencoderConfig.from_dict(saved["model"]))
            ckpt.load_into(model, ckpt.read_weights(out), out)
            scale = calibrate_latent_scale(model, task.batches(env, config.batch_size, seed=12345, workers=0))
            saved["model"]["latent_scale"] = scale
            ckpt.save_weights(out, model.state_dict(), saved)
        return out
    finally:
        shutdown(env)


def distill_autoencoder(
    data: Path, out: Path, size: str, config: TrainConfig, teacher_dir: Path, resume: bool = False
) -> Path:
    """Train (or resume) a ``size`` autoencoder in the latent space of the one in ``teacher_dir``
    (`AutoencoderDistillTask`): effect models trained on the teacher's latents run on it unchanged."""
    env = init_distributed()
    try:
        teacher = load_autoencoder(teacher_dir)
        task = AutoencoderDistillTask(
            AutoencoderConfig.named(size), teacher, data, ckpt.weights_digest(teacher_dir)
        )
        Trainer(task, config, out, env, resume=resume).fit()
        return out
    finally:
        shutdown(env)


def ensure_latents(data: Path, autoencoder_dir: Path, resolution: int) -> Path:
    """The latent shards of ``data`` for this autoencoder and resolution, encoding them once if needed."""
    from streamingeffect.train.latents import encode_dataset

    if (data / "latents.json").exists():
        return data  # already a latent folder
    digest = ckpt.weights_digest(autoencoder_dir)[:10]
    folder = data / f"latents-{resolution}-{digest}"
    if not (folder / "latents.json").exists():
        workers = min(2, os.cpu_count() or 1)
        encode_dataset(data, load_autoencoder(autoencoder_dir), folder, resolution, workers=workers)
    return folder


def train_teacher(
    data: Path,
    out: Path,
    size: str,
    config: TrainConfig,
    autoencoder_dir: Path,
    resolution: int = 128,
    frames: int = 4,
    layout: str | None = None,
    resume: bool = False,
    prior: bool = False,
    init: Path | None = None,
    far_reference: float = 0.0,
) -> Path:
    """Train (or resume) the bidirectional teacher on ``data``'s latents (encoded on first use).

    ``prior``: the model takes the flow prior and predicts x0 (a correction of the prior, zero at the
    start). ``init``: start from a trained effect model's weights where they fit (`init_from`).
    ``far_reference``: the share of samples guided by their long reference (seconds away, another pose)."""
    env = init_distributed()
    try:
        latents = ensure_latents(data, autoencoder_dir, resolution) if env.is_main else None
        if env.distributed:
            import torch.distributed as dist

            shared = [latents]
            dist.broadcast_object_list(shared, src=0)
            latents = shared[0]
        latent_channels = load_autoencoder(autoencoder_dir).config.latent_channels
        if env.is_main:
            copy_autoencoder(autoencoder_dir, out / "autoencoder")
        overrides: dict[str, object] = {"latent_channels": latent_channels}
        if layout:
            overrides["layout"] = layout
        if prior:
            overrides |= {"prior": True, "predict": "x0"}
        model_config = EffectModelConfig.named(size, **overrides)
        task = TeacherTask(model_config, Path(latents), frames=frames, far_reference=far_reference)
        if init is not None and not resume:
            init_from(task.model, init)
        Trainer(task, config, out, env, resume=resume).fit()
        return out
    finally:
        shutdown(env)


def init_from(model: torch.nn.Module, directory: Path) -> None:
    """Copy a trained effect model's weights into ``model`` where they fit: same-shaped tensors as they
    are; an input embedding with fewer input channels fills the leading columns (the new inputs, such
    as the flow prior, start with no effect). The head is kept as initialised when the two predict
    different things (a velocity head is no x0 head)."""
    saved = ckpt.read_config(directory)
    weights = ckpt.read_weights(directory)
    config = model.config  # type: ignore[attr-defined]
    same_head = saved["model"].get("predict", "velocity") == config.predict
    state = model.state_dict()
    for name, value in weights.items():
        if name not in state or (name.startswith(("head.", "final_modulation.")) and not same_head):
            continue
        target = state[name]
        if target.shape == value.shape:
            target.copy_(value)
        elif (
            name == "embed.weight" and target.shape[0] == value.shape[0] and target.shape[1] > value.shape[1]
        ):
            target.zero_()
            target[:, : value.shape[1]] = value
    model.load_state_dict(state)


def copy_autoencoder(source: Path, target: Path) -> None:
    """Keep the autoencoder a model was trained with beside its weights (its latents are its own)."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    for name in (ckpt.WEIGHTS, ckpt.CONFIG):
        shutil.copyfile(source / name, target / name)


def export_weights(directory: Path, dest: Path, half: bool = False, autoencoder: str | None = None) -> Path:
    """Copy a trained model's inference files to ``dest`` (fp16 weights if ``half``).

    ``autoencoder`` rewrites where an effect model finds its autoencoder (e.g. "../autoencoder-tiny"),
    so bundled models share one copy.
    """
    config = ckpt.read_config(directory)
    weights = ckpt.read_weights(directory)
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    if config["kind"] in ("teacher", "student"):
        task = TaskConfig.from_dict(config["task"], directory)
        info = {k: v for k, v in task.info.items() if k not in ("data", "latents")}
        config["task"] = replace(task, autoencoder=autoencoder or task.autoencoder, info=info).to_dict()
    config["exported_from"] = str(directory)
    ckpt.save_weights(dest, weights, config)
    return dest
