"""Teacher -> causal few-step student: ODE pairs, ODE initialisation, DMD (with Self-Forcing rollouts).

train ode-init   pairs (noise -> teacher trajectory at the student's times) made once from the
                 teacher, then the block-causal student (initialised with the teacher's weights)
                 regresses the teacher's result from each trajectory point, chunk by chunk.
train student    DMD: the student rolls out with its own KV cache; frozen teacher = real score,
                 a critic (a copy of the teacher) = fake score, updated ``critic_steps`` times per
                 student step; plus an optional regression onto the ODE pairs (DMD's L_reg).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from streamingeffect.diffusion.sampler import NO_GUIDANCE, Guidance
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectCondition, EffectTransformer
from streamingeffect.objectives import distill
from streamingeffect.objectives.teacher import LatentBatch, condition, sample_modes
from streamingeffect.pipeline import ModelBundle, TaskConfig
from streamingeffect.rollout import StudentSchedule
from streamingeffect.train.distributed import DistEnv, unwrap
from streamingeffect.train.tasks import LatentClips, NoExtraState, mirror

PAIRS_FILE = "ode-pairs.safetensors"
# The student serves text, keyframe, and both; "neither" is only needed by a teacher for guidance.
STUDENT_MODES = {"text": 0.4, "reference": 0.2, "both": 0.4, "none": 0.0}


@dataclass
class OdePairs:
    """Conditions and the teacher's trajectories at the student's times, one row per clip window."""

    batch: LatentBatch
    keep_reference: torch.Tensor  # [N] bool
    keep_text: torch.Tensor  # [N] bool
    trajectory: torch.Tensor  # [N, S + 1, F, C, h, w] (diffusion space; index 0 is the noise)

    def __len__(self) -> int:
        return self.trajectory.shape[0]

    def select(self, index: torch.Tensor) -> OdePairs:
        picked = LatentBatch(**{k: v[index] for k, v in vars(self.batch).items()})
        return OdePairs(picked, self.keep_reference[index], self.keep_text[index], self.trajectory[index])

    def condition(self, residual: bool, prior: bool) -> EffectCondition:
        return condition(self.batch, self.keep_reference, self.keep_text, residual, prior)

    def save(self, path: Path) -> None:
        tensors = {
            f"batch.{k}": v.half() if v.is_floating_point() else v for k, v in vars(self.batch).items()
        }
        tensors |= {
            "keep_reference": self.keep_reference,
            "keep_text": self.keep_text,
            "trajectory": self.trajectory.half(),
        }
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> OdePairs:
        tensors = load_file(str(path))
        batch = LatentBatch(**{f.name: _float(tensors[f"batch.{f.name}"]) for f in fields(LatentBatch)})
        return cls(batch, tensors["keep_reference"], tensors["keep_text"], tensors["trajectory"].float())

    @staticmethod
    def concat(parts: list[OdePairs]) -> OdePairs:
        """Rows of several batches; text tokens are padded to the longest (masked out beyond each text)."""
        length = max(p.batch.text_tokens.shape[1] for p in parts)

        def padded(batch: LatentBatch, name: str) -> torch.Tensor:
            value = getattr(batch, name)
            if name in ("text_tokens", "text_mask"):
                value = torch.nn.functional.pad(value, _text_pad(value, length))
            return value

        batch = LatentBatch(
            **{f.name: torch.cat([padded(p.batch, f.name) for p in parts]) for f in fields(LatentBatch)}
        )
        return OdePairs(
            batch,
            *(
                torch.cat([getattr(p, k) for p in parts])
                for k in ("keep_reference", "keep_text", "trajectory")
            ),
        )


def _text_pad(value: torch.Tensor, length: int) -> tuple[int, ...]:
    """F.pad amounts that extend dim 1 ([B, L] or [B, L, D]) to ``length``."""
    extra = length - value.shape[1]
    return (0, extra) if value.dim() == 2 else (0, 0, 0, extra)


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.is_floating_point() else x


@torch.no_grad()
def make_ode_pairs(
    teacher: EffectTransformer,
    clips: LatentClips,
    count: int,
    schedule: StudentSchedule,
    teacher_steps: int,
    shift: float,
    guidance: Guidance = NO_GUIDANCE,
    batch_size: int = 8,
    seed: int = 0,
) -> OdePairs:
    """Run the teacher from noise on ``count`` random training windows, keeping its states."""
    from tqdm import tqdm

    residual = teacher.config.predict_residual
    generator = torch.Generator().manual_seed(seed)
    batches = clips.batches(DistEnv(), batch_size, seed)
    times = schedule.tensor()
    parts = []
    for _ in tqdm(range(-(-count // batch_size)), desc="teacher ODE pairs", unit="batch"):
        batch = next(batches)
        keep_reference, keep_text = sample_modes(batch.source.shape[0], generator, STUDENT_MODES)
        cond = condition(batch, keep_reference, keep_text, residual, teacher.config.prior)
        noise = torch.randn(batch.source.shape, generator=generator)
        trajectory = distill.teacher_trajectory(teacher, cond, noise, times, teacher_steps, shift, guidance)
        parts.append(OdePairs(batch, keep_reference, keep_text, trajectory))
    pairs = OdePairs.concat(parts)
    return pairs.select(torch.arange(count))


def student_config(teacher: EffectModelConfig, chunk_frames: int, window_chunks: int) -> EffectModelConfig:
    return EffectModelConfig.from_dict(
        {**teacher.to_dict(), "chunk_frames": chunk_frames, "window_chunks": window_chunks}
    )


def _single_process(env: DistEnv) -> None:
    if env.distributed:
        raise ValueError(
            "distillation runs in one process for now (the chunked rollout calls the model "
            "outside DDP's forward); launch it without torchrun"
        )


class _StudentTaskBase(NoExtraState):
    """What ODE init and DMD share: the student, its schedule, the pairs and the model info."""

    kind = "student"
    cpu_autocast = True

    def __init__(
        self,
        model: EffectTransformer,
        pairs: OdePairs,
        schedule: StudentSchedule,
        task: TaskConfig,
        mask_weight: float = 1.0,
    ):
        self.model: nn.Module = model
        self.pairs, self.schedule, self.task, self.mask_weight = pairs, schedule, task, mask_weight
        self.residual, self.prior = model.config.predict_residual, model.config.prior

    def config_dict(self) -> dict[str, Any]:
        return unwrap(self.model).config.to_dict()

    def task_info(self) -> dict[str, Any]:
        return replace(self.task, student_times=self.schedule.times).to_dict()

    def batches(self, env: DistEnv, batch_size: int, seed: int, workers: int) -> Iterator[OdePairs]:
        _single_process(env)
        generator = torch.Generator().manual_seed(seed)
        while True:
            index = torch.randint(len(self.pairs), (batch_size,), generator=generator)
            picked = self.pairs.select(index)
            flip = torch.rand(batch_size, generator=generator) < 0.5  # the teacher trained mirrored too
            yield OdePairs(
                mirror(picked.batch, flip),
                picked.keep_reference,
                picked.keep_text,
                torch.where(flip.view(-1, 1, 1, 1, 1, 1), picked.trajectory.flip(-1), picked.trajectory),
            )


class OdeInitTask(_StudentTaskBase):
    metric_names = ("mse_x0",)

    def loss(self, model: nn.Module, batch: OdePairs, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        times = self.schedule.tensor(batch.trajectory.device)
        return distill.ode_regression_loss(
            unwrap(model),
            batch.condition(self.residual, self.prior),
            batch.trajectory,
            times,
            batch.batch.edit,
            self.mask_weight,
        )


class DmdTask(_StudentTaskBase):
    """DMD with Self-Forcing rollouts (or teacher-forced context), a critic and an optional L_reg."""

    metric_names = ("dmd", "regression", "critic", "dmd_grad", "real_fake_gap")

    def __init__(
        self,
        model: EffectTransformer,
        teacher: EffectTransformer,
        pairs: OdePairs,
        schedule: StudentSchedule,
        task: TaskConfig,
        shift: float,
        critic_steps: int = 5,
        critic_lr: float = 1e-4,
        regression_weight: float = 1.0,
        guidance: Guidance = NO_GUIDANCE,
        self_forcing: bool = True,
        mask_weight: float = 1.0,
    ):
        super().__init__(model, pairs, schedule, task, mask_weight)
        self.teacher = teacher.eval().requires_grad_(False)
        self.critic = copy.deepcopy(teacher).float().train().requires_grad_(True)
        self.critic_optimizer = torch.optim.AdamW(
            self.critic.parameters(), lr=critic_lr, betas=(0.0, 0.99), weight_decay=0.0
        )
        self.shift, self.critic_steps, self.regression_weight = shift, critic_steps, regression_weight
        self.guidance, self.self_forcing = guidance, self_forcing

    def loss(self, model: nn.Module, batch: OdePairs, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        student = unwrap(model)
        cond = batch.condition(self.residual, self.prior)
        times = self.schedule.tensor(batch.trajectory.device)
        noise, teacher_x0 = batch.trajectory[:, 0], batch.trajectory[:, -1]
        context = None if self.self_forcing else teacher_x0
        x = distill.self_forcing_rollout(student, cond, noise, times, context).x0
        critic_loss = 0.0
        for _ in range(self.critic_steps):  # the fake score follows the student (DMD2: several updates)
            with torch.enable_grad():
                loss_c = distill.critic_loss(self.critic, x, cond, self.shift)
            self.critic_optimizer.zero_grad(set_to_none=True)
            loss_c.backward()
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), 1.0)
            self.critic_optimizer.step()
            critic_loss = float(loss_c.detach())
        dmd, metrics = distill.dmd_loss(x, cond, self.teacher, self.critic, self.shift, self.guidance)
        weight = 1 + self.mask_weight * batch.batch.edit
        regression = ((x.float() - teacher_x0.float()).pow(2) * weight).mean()
        total = dmd + self.regression_weight * regression
        return total, {
            "dmd": float(dmd.detach()),
            "regression": float(regression.detach()),
            "critic": critic_loss,
            **metrics,
        }

    def extra_state(self) -> dict[str, Any]:
        return {"critic": self.critic.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "critic" in state:
            self.critic.load_state_dict(state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])


# ------------------------------------------------------------------------------------- entry points


def _load_teacher(teacher_dir: Path) -> tuple[Any, Path]:
    """-> (the teacher's bundle, the teacher's autoencoder folder)."""
    model = ModelBundle.load(teacher_dir)
    model.net.float()
    return model, teacher_dir / model.task.autoencoder


def train_ode_init(
    teacher_dir: Path,
    data: Path,
    out: Path,
    config: Any,  # TrainConfig
    pairs: int = 512,
    teacher_steps: int = 48,
    student_steps: int = 4,
    chunk_frames: int = 1,
    window_chunks: int = 3,
    guidance: Guidance = NO_GUIDANCE,
    resume: bool = False,
    far_reference: float = 0.0,
) -> Path:
    """Stage 1: make (or reuse) the teacher's ODE pairs in OUT, then regress the causal student onto them
    (``far_reference``: the share of pairs guided by the sample's long reference)."""
    from streamingeffect.train.distributed import init_distributed, shutdown
    from streamingeffect.train.run import copy_autoencoder, ensure_latents
    from streamingeffect.train.trainer import Trainer

    env = init_distributed()
    try:
        _single_process(env)
        teacher, autoencoder_dir = _load_teacher(teacher_dir)
        schedule = StudentSchedule.uniform(student_steps, teacher.task.shift)
        out.mkdir(parents=True, exist_ok=True)
        path = out / PAIRS_FILE
        if path.exists():
            ode_pairs = OdePairs.load(path)
        else:
            latents = ensure_latents(data, autoencoder_dir, teacher.resolution)
            clips = LatentClips(latents, teacher.task.frames, far_reference)
            ode_pairs = make_ode_pairs(
                teacher.net,
                clips,
                pairs,
                schedule,
                teacher_steps,
                teacher.task.shift,
                guidance,
                seed=config.seed,
            )
            ode_pairs.save(path)
        if ode_pairs.trajectory.shape[1] != student_steps + 1:
            raise ValueError(
                f"{path} holds pairs for {ode_pairs.trajectory.shape[1] - 1} student steps, "
                f"not {student_steps}; pick another --out"
            )
        copy_autoencoder(autoencoder_dir, out / "autoencoder")
        student = EffectTransformer(student_config(teacher.net.config, chunk_frames, window_chunks))
        student.load_state_dict(teacher.net.state_dict())
        info = _student_info(teacher, teacher_dir, stage="ode-init", teacher_steps=teacher_steps)
        Trainer(OdeInitTask(student, ode_pairs, schedule, info), config, out, env, resume=resume).fit()
        return out
    finally:
        shutdown(env)


def train_student(
    teacher_dir: Path,
    ode_init_dir: Path,
    out: Path,
    config: Any,  # TrainConfig
    critic_steps: int = 5,
    critic_lr: float = 1e-4,
    regression_weight: float = 1.0,
    guidance: Guidance = NO_GUIDANCE,
    self_forcing: bool = True,
    resume: bool = False,
) -> Path:
    """Stage 2: DMD from the ODE-initialised student (its folder also holds the pairs)."""
    from streamingeffect.models import checkpoint as ckpt
    from streamingeffect.train.distributed import init_distributed, shutdown
    from streamingeffect.train.run import copy_autoencoder
    from streamingeffect.train.trainer import Trainer

    env = init_distributed()
    try:
        _single_process(env)
        if not (ode_init_dir / PAIRS_FILE).exists():
            raise ckpt.CheckpointError(
                f"{ode_init_dir}: no {PAIRS_FILE}; pass the folder of `train ode-init`"
            )
        teacher, autoencoder_dir = _load_teacher(teacher_dir)
        init = ModelBundle.load(ode_init_dir)
        schedule = StudentSchedule(init.task.student_times)
        copy_autoencoder(autoencoder_dir, out / "autoencoder")
        info = _student_info(
            teacher,
            teacher_dir,
            stage="dmd",
            init=str(ode_init_dir),
            self_forcing=self_forcing,
            critic_steps=critic_steps,
        )
        task = DmdTask(
            init.net.float().train().requires_grad_(True),
            teacher.net,
            OdePairs.load(ode_init_dir / PAIRS_FILE),
            schedule,
            info,
            teacher.task.shift,
            critic_steps,
            critic_lr,
            regression_weight,
            guidance,
            self_forcing,
        )
        Trainer(task, config, out, env, resume=resume).fit()
        return out
    finally:
        shutdown(env)


def _student_info(teacher: ModelBundle, teacher_dir: Path, **extra: Any) -> TaskConfig:
    """The student's task: the teacher's, with where it came from (its times are set by the task)."""
    return replace(teacher.task, autoencoder="autoencoder", info={"teacher": str(teacher_dir), **extra})
