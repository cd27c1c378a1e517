"""The shared trainer on a tiny autoencoder: checkpoints, overfitting, resume, bad files, DDP."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures_data import tiny_dataset

from streamingeffect.cli import main
from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import (
    AutoencoderConfig,
    FrameAutoencoder,
    distilled_from,
    load_autoencoder,
)
from streamingeffect.objectives.autoencoder import distillation_loss
from streamingeffect.train.distributed import DistEnv
from streamingeffect.train.tasks import AutoencoderDistillTask, AutoencoderTask
from streamingeffect.train.trainer import TrainConfig, Trainer, learning_rate

TINY = AutoencoderConfig(name="tiny", channels=(8, 16, 16), latent_channels=4, groups=4)
WIDER = AutoencoderConfig(name="tiny", channels=(8, 16, 32), latent_channels=4, groups=4)
CROP, FRAMES = 32, 2
TESTS = Path(__file__).parent


def make_task(data: Path, config: AutoencoderConfig = TINY) -> AutoencoderTask:
    return AutoencoderTask(config, data, crop=CROP, frames_per_clip=FRAMES)


def train_config(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(batch_size=4, warmup=1, log_every=1, workers=0, ema_decay=0.9)
    return TrainConfig(**(values | overrides))


def log_rows(out: Path) -> list[dict[str, str]]:
    with (out / "log.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny convolutions only lose from intra-op threads, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("data") / "set", samples=4, frames=4, size=32, shards=2)


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 steps, saved at step 2 and step 4; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("trained") / "ckpt"
    Trainer(make_task(data), train_config(steps=4, save_every=2), out, DistEnv()).fit()
    return out


def copy_of(checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / "ckpt"))


def test_tiny_dataset_is_readable(data: Path) -> None:
    from streamingeffect.data.dataset import NO_AUGMENT, EffectClipDataset
    from streamingeffect.effects import catalog

    items = list(EffectClipDataset(data, size=32, frames=4, augment=NO_AUGMENT))
    assert len(items) == 4 and len({i["key"] for i in items}) == 4
    ids = [c.id for c in catalog()]
    assert all(ids[i["category"]] == "neon_outline_cyan" and i["kind"] == 0 for i in items)
    item = items[0]
    assert item["source"].shape == (4, 3, 32, 32) and item["edit_mask"].shape == (4, 1, 32, 32)
    inside = item["edit_mask"].bool().expand(-1, 3, -1, -1)
    changed = (item["target"] - item["source"]).abs() > 0.1
    assert 0.05 < inside.float().mean() < 0.6
    assert changed[inside].float().mean() > 0.9 and changed[~inside].float().mean() < 0.05


# ------------------------------------------------------------------------------------- save / load


def test_save_then_load_gives_identical_outputs(data: Path, tmp_path: Path) -> None:
    trainer = Trainer(make_task(data), train_config(steps=2, save_every=100), tmp_path / "ckpt", DistEnv())
    trainer.fit()  # saves at the last step
    frames = torch.rand(2, 3, CROP, CROP) * 2 - 1
    with torch.no_grad():
        expected_recon, expected_latents = trainer.ema.shadow(frames)
        loaded_recon, loaded_latents = load_autoencoder(tmp_path / "ckpt")(frames)
        fresh = FrameAutoencoder(TINY).eval()
        ckpt.load_into(fresh, ckpt.read_weights(tmp_path / "ckpt"), tmp_path / "ckpt")
        fresh_recon, _ = fresh(frames)
    assert torch.equal(loaded_recon, expected_recon) and torch.equal(loaded_latents, expected_latents)
    assert torch.equal(fresh_recon, expected_recon)
    saved = ckpt.read_config(tmp_path / "ckpt")
    assert saved["kind"] == "autoencoder" and saved["step"] == 2
    assert AutoencoderConfig.from_dict(saved["model"]) == TINY


# ------------------------------------------------------------------------------------- overfitting


class OneBatchTask:
    """The autoencoder task, but every batch is the same one: the net should memorise it."""

    def __init__(self, inner: AutoencoderTask, batch: torch.Tensor):
        self.inner, self.batch = inner, batch

    def __getattr__(self, name: str) -> Any:  # model, loss, config... as the autoencoder task has them
        return getattr(self.inner, name)

    def batches(self, env: DistEnv, batch_size: int, seed: int, workers: int) -> Iterator[torch.Tensor]:
        while True:
            yield self.batch


def test_tiny_autoencoder_overfits_one_batch(data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    inner = make_task(data)
    batch = next(inner.batches(DistEnv(), 4, seed=0, workers=0))
    config = train_config(steps=25, lr=3e-3, warmup=2, save_every=1000)
    Trainer(OneBatchTask(inner, batch), config, tmp_path / "ckpt", DistEnv()).fit()
    losses = [float(row["loss"]) for row in log_rows(tmp_path / "ckpt")]
    assert len(losses) == 25
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses


# ------------------------------------------------------------------------------------- resume


def test_resume_continues_from_the_saved_step(data: Path, trained: Path, tmp_path: Path) -> None:
    out = copy_of(trained, tmp_path)
    state = torch.load(out / ckpt.STATE, weights_only=False)
    assert state["step"] == 4

    trainer = Trainer(make_task(data), train_config(steps=6, save_every=2), out, DistEnv(), resume=True)
    assert trainer.step == 4
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name
    for name, tensor in trainer.ema.shadow.state_dict().items():
        assert torch.equal(tensor, ckpt.read_weights(out)[name]), name
    restored = trainer.optimizer.state_dict()["state"]
    assert len(restored) == len(state["optimizer"]["state"]) > 0
    for index, saved in state["optimizer"]["state"].items():
        assert int(restored[index]["step"]) == 4
        assert torch.equal(restored[index]["exp_avg"], saved["exp_avg"])
        assert torch.equal(restored[index]["exp_avg_sq"], saved["exp_avg_sq"])

    trainer.fit()
    assert trainer.step == 6 and ckpt.read_config(out)["step"] == 6
    rows = log_rows(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]  # appended, one header
    assert (out / "log.csv").read_text().count("step,loss") == 1
    config = train_config(steps=6)
    assert float(rows[4]["lr"]) == pytest.approx(learning_rate(config, 4))


def test_resume_with_another_model_config_is_refused(data: Path, trained: Path, tmp_path: Path) -> None:
    out = copy_of(trained, tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="another model config"):
        Trainer(make_task(data, WIDER), train_config(steps=6), out, DistEnv(), resume=True)


def test_resume_without_a_checkpoint_is_refused(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="nothing to resume"):
        Trainer(make_task(data), train_config(steps=2), tmp_path / "empty", DistEnv(), resume=True)


# ------------------------------------------------------------------------------------- bad checkpoints


@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_weights_are_reported(trained: Path, tmp_path: Path, keep: float) -> None:
    out = copy_of(trained, tmp_path)
    weights = out / ckpt.WEIGHTS
    content = weights.read_bytes()
    weights.write_bytes(content[: max(1, int(len(content) * keep))])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.read_weights(out)
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        load_autoencoder(out)


def test_weights_of_another_config_name_a_mismatched_tensor(trained: Path, tmp_path: Path) -> None:
    model = FrameAutoencoder(WIDER)
    with pytest.raises(ckpt.CheckpointError, match="do not match the model config") as error:
        ckpt.load_into(model, ckpt.read_weights(trained), trained)
    message = str(error.value)
    assert any(f"e.g. {name}:" in message for name in model.state_dict()), message

    out = copy_of(trained, tmp_path)  # a config.json that claims another config than the weights
    saved = ckpt.read_config(out)
    saved["model"]["channels"] = list(WIDER.channels)
    (out / ckpt.CONFIG).write_text(json.dumps(saved))
    with pytest.raises(ckpt.CheckpointError, match=r"tensors of another shape \(e\.g\. (en|de)coder\."):
        load_autoencoder(out)


def test_a_folder_without_config_is_not_a_checkpoint(trained: Path, tmp_path: Path) -> None:
    out = copy_of(trained, tmp_path)
    (out / ckpt.CONFIG).unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"no config\.json"):
        load_autoencoder(out)
    with pytest.raises(ckpt.CheckpointError, match=r"no config\.json"):
        load_autoencoder(tmp_path / "missing")


@pytest.mark.parametrize("damage", ["truncated-state", "other-config", "no-checkpoint"])
def test_cli_bad_checkpoint_is_one_error_line(
    data: Path, trained: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = copy_of(trained, tmp_path)
    expected = {
        "truncated-state": "unreadable training state",
        "other-config": "another model config",  # the fixture's channels are not `--config tiny`'s
        "no-checkpoint": "nothing to resume",
    }[damage]
    if damage == "truncated-state":
        state = out / ckpt.STATE
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # read before the config check
    elif damage == "no-checkpoint":
        shutil.rmtree(out)
    args = ["train", "autoencoder", "--config", "tiny", "--data", str(data), "--out", str(out)]
    code = main([*args, "--steps", "1", "--workers", "0", "--resume"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------- distillation

# A teacher with the named sizes' 8 latent channels, so that `--config nano` can learn its latent space.
TEACHER = AutoencoderConfig(name="tiny", channels=(8, 16, 16), latent_channels=8, groups=4, latent_scale=0.7)


def saved_teacher(directory: Path) -> Path:
    torch.manual_seed(1)
    ckpt.save_weights(
        directory, FrameAutoencoder(TEACHER).state_dict(), {"kind": "autoencoder", "model": TEACHER.to_dict()}
    )
    return directory


def test_distillation_loss_is_zero_for_the_teacher_itself() -> None:
    from streamingeffect.models.lpips import LPIPS

    torch.manual_seed(0)
    teacher = FrameAutoencoder(TEACHER).eval()
    frames = torch.rand(4, 3, CROP, CROP) * 2 - 1
    loss, metrics = distillation_loss(teacher, teacher, LPIPS(), frames)
    assert loss.item() == 0.0 and all(value == 0.0 for value in metrics.values()), metrics
    other = FrameAutoencoder(TEACHER).eval()
    loss, metrics = distillation_loss(other, teacher, LPIPS(), frames)
    assert metrics["latent_mse"] > 0 and metrics["change_l1"] > 0 and loss.item() > 0


def test_distilled_student_learns_the_teacher_latents(data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = load_autoencoder(saved_teacher(tmp_path / "teacher"))
    student = AutoencoderConfig(name="nano", channels=(8, 8, 16), latent_channels=8, groups=4)
    inner = AutoencoderDistillTask(student, teacher, data, "digest", crop=CROP)
    assert inner.config.latent_scale == TEACHER.latent_scale  # scaled latents are the teacher's
    batch = next(inner.batches(DistEnv(), 4, seed=0, workers=0))
    assert batch.shape == (4, 3, CROP, CROP)
    sources, targets = batch[:2], batch[2:]  # pairs: the targets carry the effect on the sources
    assert (targets - sources).abs().amax(dim=(1, 2, 3)).min() > 0.1
    config = train_config(steps=30, lr=3e-3, warmup=2, save_every=1000)
    Trainer(OneBatchTask(inner, batch), config, tmp_path / "ckpt", DistEnv()).fit()  # type: ignore[arg-type]
    rows = log_rows(tmp_path / "ckpt")
    first, last = float(rows[0]["latent_mse"]), sum(float(r["latent_mse"]) for r in rows[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    with pytest.raises(ValueError, match="latent channels"):
        AutoencoderDistillTask(replace(student, latent_channels=4), teacher, data, "digest", crop=CROP)


def test_the_agreement_figures_are_exact_for_the_teacher_itself() -> None:
    from streamingeffect.eval.distilled_ae import Windows, agreement

    torch.manual_seed(0)
    teacher, other = FrameAutoencoder(TEACHER).eval(), FrameAutoencoder(TEACHER).eval()
    sources = torch.rand(3, 3, CROP, CROP) * 2 - 1
    edited = sources.clone()
    edited[:, :, 8:20, 8:20] = 1.0  # an effect drawn on a patch
    windows = Windows(sources, sources, edited)
    same, different = agreement(teacher, teacher, windows), agreement(other, teacher, windows)
    assert same["latent_snr"] > 100 and same["decode_psnr"] > 100 and same["change_psnr"] > 100
    assert same["round_trip"] == same["teacher_round_trip"]
    assert different["decode_psnr"] < 60 and different["change_psnr"] < 60 and different["latent_snr"] < 60


def test_a_weights_digest_follows_a_new_save_of_the_same_size(tmp_path: Path) -> None:
    weights = {"w": torch.zeros(4)}
    ckpt.save_weights(tmp_path, weights, {"kind": "test"})
    first = ckpt.weights_digest(tmp_path)
    hits = ckpt._file_digest.cache_info().hits
    assert ckpt.weights_digest(tmp_path) == first
    assert ckpt._file_digest.cache_info().hits == hits + 1  # kept, not hashed again
    ckpt.save_weights(tmp_path, {"w": torch.ones(4)}, {"kind": "test"})  # same size, new file
    assert ckpt.weights_digest(tmp_path) != first


def test_cli_distills_a_named_size_into_the_teacher_latent_space(data: Path, tmp_path: Path) -> None:
    teacher = saved_teacher(tmp_path / "teacher")
    out = tmp_path / "nano"
    args = ["train", "autoencoder", "--config", "nano", "--distill-from", str(teacher), "--data", str(data)]
    assert main([*args, "--out", str(out), "--steps", "2", "--batch-size", "2", "--workers", "0"]) == 0
    model = load_autoencoder(out)
    assert model.config.channels == AutoencoderConfig.named("nano").channels
    assert model.config.latent_scale == TEACHER.latent_scale
    assert ckpt.read_config(out)["step"] == 2
    assert distilled_from(out) == ckpt.weights_digest(teacher) and distilled_from(teacher) is None


# ------------------------------------------------------------------------------------- torchrun / DDP


@pytest.mark.slow
def test_torchrun_ddp_ranks_train_in_lockstep(data: Path, tmp_path: Path) -> None:
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
    }
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    command += [str(TESTS / "ddp_worker.py"), str(data), str(tmp_path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun timed out (a rank hung)\n{error.stdout}\n{error.stderr}")
    output = f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, output
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in reports] == [0, 1] and all(r["world_size"] == 2 for r in reports), output
    assert all(r["steps"] == 2 for r in reports), output
    rank0, rank1 = reports
    assert rank0["initial"] != rank1["initial"]  # different inits...
    assert rank0["synced"] == rank1["synced"] == rank0["initial"]  # ...DDP broadcast rank 0's
    assert rank0["final"] == rank1["final"] != rank0["synced"]  # trained, identically
    assert rank0["seen"] and rank1["seen"] and not set(rank0["seen"]) & set(rank1["seen"])  # own shards
    assert ckpt.read_config(tmp_path / "ckpt")["step"] == 2
    assert [int(r["step"]) for r in log_rows(tmp_path / "ckpt")] == [1, 2]  # rank 0 alone writes the log
    # rank 1 saw the time limit after its first step, rank 0 later: they must still stop together
    assert rank0["limited_steps"] == rank1["limited_steps"] < 1000, output
