"""Distillation on tiny nets: teacher trajectories, the DMD gradient, ODE init and DMD end to end
(pairs made once, checkpoints, resume with the critic's state)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from fixtures_data import tiny_dataset
from test_models import B, C, H, W, condition, tiny

from streamingeffect.diffusion import flow
from streamingeffect.eval.distill_bench import run_distill_benchmark
from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectTransformer
from streamingeffect.objectives import distill
from streamingeffect.pipeline import ModelBundle
from streamingeffect.rollout import StudentSchedule
from streamingeffect.train.distill import PAIRS_FILE, OdePairs, train_ode_init, train_student
from streamingeffect.train.trainer import TrainConfig

AE = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)


def test_teacher_trajectory_of_a_straight_flow_hits_the_interpolants() -> None:
    x0, noise = torch.randn(B, 2, C, H, W), torch.randn(B, 2, C, H, W)

    def oracle(x: torch.Tensor, t: torch.Tensor, cond: object, attn_mask: object = None) -> torch.Tensor:
        return noise - x0  # the exact velocity of the straight path

    times = StudentSchedule.uniform(4, 3.0).tensor()
    states = distill.teacher_trajectory(oracle, condition(frames=2), noise, times, steps=12, shift=3.0)
    assert states.shape == (B, 5, 2, C, H, W)
    for i, t in enumerate(times):
        assert torch.allclose(states[:, i], flow.interpolate(x0, noise, t.expand(B, 2)), atol=1e-5)
    assert torch.allclose(states[:, -1], x0, atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        distill.teacher_trajectory(oracle, condition(frames=2), noise, times, steps=10, shift=3.0)


def test_dmd_gradient_is_fake_minus_real_and_vanishes_when_they_agree() -> None:
    teacher = tiny()
    cond = condition(frames=2)
    x = torch.randn(B, 2, C, H, W, requires_grad=True)
    torch.manual_seed(5)
    loss, metrics = distill.dmd_loss(x, cond, teacher, teacher, shift=3.0)
    loss.backward()
    assert metrics["real_fake_gap"] == 0.0 and x.grad is not None and x.grad.abs().max() == 0

    critic = tiny()
    for p in critic.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x.grad = None
    torch.manual_seed(5)
    loss, metrics = distill.dmd_loss(x, cond, teacher, critic, shift=3.0)
    loss.backward()
    torch.manual_seed(5)  # recompute the normalised direction with the same t and noise
    low, high = 0.02, 0.98
    t = flow.shift_time(low + (high - low) * torch.rand(B, 1), 3.0).expand(-1, 2)
    x_t = flow.interpolate(x.detach(), torch.randn_like(x), t)
    with torch.no_grad():
        real = flow.x0_from_velocity(x_t, teacher(x_t, t, cond), t)
        fake = flow.x0_from_velocity(x_t, critic(x_t, t, cond), t)
    scale = (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    expected = (fake - real) / scale / x.numel()
    assert metrics["real_fake_gap"] > 0 and torch.allclose(x.grad, expected, atol=1e-7, rtol=1e-4)


def test_critic_learns_a_fixed_sample_set() -> None:
    torch.manual_seed(0)
    critic = EffectTransformer(EffectModelConfig.named("test", latent_channels=C))
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-3)
    x, cond = torch.randn(B, 2, C, H, W), condition(frames=2)
    losses = []
    for _ in range(40):
        torch.manual_seed(1)
        loss = distill.critic_loss(critic, x, cond, shift=3.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def _teacher_checkpoint(root: Path) -> Path:
    """A 2-layer teacher folder (random weights) with its tiny autoencoder, as `train teacher` writes it."""
    torch.manual_seed(0)
    ae_dir, teacher_dir = root / "teacher" / "autoencoder", root / "teacher"
    ae_config = {**AE.to_dict(), "latent_scale": 1.0}
    ckpt.save_weights(ae_dir, FrameAutoencoder(AE).state_dict(), {"kind": "autoencoder", "model": ae_config})
    net = tiny()  # C latent channels, as the autoencoder
    info = {"resolution": 32, "frames": 4, "shift": 3.0, "autoencoder": "autoencoder"}
    ckpt.save_weights(
        teacher_dir, net.state_dict(), {"kind": "teacher", "model": net.config.to_dict(), "task": info}
    )
    return teacher_dir


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "log.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_ode_init_then_dmd_end_to_end_with_resume(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "data", samples=4, frames=4, size=32)
    teacher = _teacher_checkpoint(tmp_path)
    config = TrainConfig(steps=3, batch_size=2, lr=1e-3, warmup=1, save_every=2, log_every=1)
    ode = train_ode_init(
        teacher,
        data,
        tmp_path / "ode",
        config,
        pairs=3,
        teacher_steps=8,
        student_steps=2,
        chunk_frames=2,
        window_chunks=1,
    )
    pairs = OdePairs.load(ode / PAIRS_FILE)
    assert len(pairs) == 3 and pairs.trajectory.shape[1:3] == (3, 4)  # noise, 1 mid state, x0; 4 frames
    saved = ckpt.read_config(ode)
    assert (
        saved["kind"] == "student"
        and saved["model"]["chunk_frames"] == 2
        and len(saved["task"]["student_times"]) == 2
    )
    assert len(_rows(ode)) == 3 and all(float(r["mse_x0"]) >= 0 for r in _rows(ode))
    student = ModelBundle.load(ode)
    assert student.net.config.window_chunks == 1 and student.resolution == 32

    stamp = (ode / PAIRS_FILE).stat().st_mtime_ns  # a second run reuses the pairs
    train_ode_init(
        teacher,
        data,
        ode,
        TrainConfig(steps=4, batch_size=2, warmup=1, save_every=10),
        resume=True,
        pairs=3,
        teacher_steps=8,
        student_steps=2,
        chunk_frames=2,
        window_chunks=1,
    )
    assert (ode / PAIRS_FILE).stat().st_mtime_ns == stamp and ckpt.read_config(ode)["step"] == 4

    dmd = train_student(teacher, ode, tmp_path / "dmd", config, critic_steps=2)
    rows = _rows(dmd)
    assert len(rows) == 3 and all(float(r["critic"]) > 0 and float(r["dmd_grad"]) >= 0 for r in rows)
    state = ckpt.load_state(dmd)
    assert state is not None and "critic" in state["task"]
    more = TrainConfig(steps=4, batch_size=2, lr=1e-3, warmup=1, save_every=10, log_every=1)
    train_student(teacher, ode, dmd, more, critic_steps=1, resume=True)
    assert ckpt.read_config(dmd)["step"] == 4 and ckpt.read_config(dmd)["task"]["info"]["stage"] == "dmd"
    with pytest.raises(ckpt.CheckpointError, match="ode-init"):
        train_student(teacher, tmp_path / "data", tmp_path / "bad", config)

    report = tmp_path / "BENCH.md"
    text = run_distill_benchmark(
        teacher,
        [("student", dmd, [2, 1])],
        data,
        limit=2,
        frames=4,
        teacher_steps=(3,),
        stream_frames=12,
        report=report,
        command="test",
    )
    assert "| teacher, 3 steps |" in text and "| student, 1 step |" in text
    assert "Long stream: 12 latent frames" in report.read_text()


def test_pairs_of_texts_of_different_lengths_concatenate_with_padding(tmp_path: Path) -> None:
    from test_teacher import random_batch

    def pairs(tokens: int) -> OdePairs:
        batch = random_batch()
        batch.text_tokens, batch.text_mask = batch.text_tokens[:, :tokens], batch.text_mask[:, :tokens]
        return OdePairs(
            batch,
            torch.ones(2, dtype=torch.bool),
            torch.ones(2, dtype=torch.bool),
            torch.randn(2, 3, 3, 4, 4, 4),
        )

    both = OdePairs.concat([pairs(3), pairs(5)])
    assert both.batch.text_tokens.shape == (4, 5, 384) and len(both) == 4
    assert both.batch.text_mask[:2, 3:].sum() == 0 and both.batch.text_mask[2:].all()
    both.save(tmp_path / "p.safetensors")
    loaded = OdePairs.load(tmp_path / "p.safetensors")
    assert torch.equal(loaded.batch.text_mask, both.batch.text_mask) and len(loaded) == 4
