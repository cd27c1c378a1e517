"""One training loop for every model: the task supplies the model, the batches and the loss.

Features: DDP/FSDP under torchrun, bf16 autocast (on GPU always, on CPU when the task says it
helps), EMA, gradient clipping, warmup + cosine learning rate, resumable checkpoints saved every
``save_every`` steps and at a wall-clock limit, a progress bar with loss and steps/s, a CSV log.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from streamingeffect.models import checkpoint as ckpt
from streamingeffect.precision import autocast
from streamingeffect.train.distributed import DistEnv, mean_across_ranks, unwrap, wrap_model


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 10
    save_every: int = 200
    precision: str = "auto"  # "auto": bf16 autocast where it is fast (GPUs; CPUs with native bf16)
    seed: int = 0
    fsdp: bool = False
    time_limit: float = 0.0  # seconds of training before saving and stopping (0: no limit)
    workers: int = 1  # DataLoader worker processes


class TrainTask(Protocol):
    """What the trainer needs from a model family (autoencoder, teacher, student...)."""

    kind: str
    model: nn.Module
    cpu_autocast: bool  # transformers gain from bf16 on CPU; convolutions there do not
    metric_names: tuple[str, ...]  # extra columns of log.csv

    def config_dict(self) -> dict[str, Any]: ...

    def task_info(self) -> dict[str, Any]: ...  # what inference needs besides the model config

    def batches(self, env: DistEnv, batch_size: int, seed: int, workers: int) -> Iterator[Any]: ...

    def loss(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]: ...

    def extra_state(self) -> dict[str, Any]: ...  # more trained state to checkpoint (a critic), or {}

    def load_extra_state(self, state: dict[str, Any]) -> None: ...


class EMA:
    """Exponential moving average of a model's weights, warmed up so early steps are not frozen in."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for ema_param, param in zip(self.shadow.parameters(), model.parameters(), strict=True):
            ema_param.lerp_(param.detach().to(ema_param.dtype), 1 - decay)
        for ema_buffer, buffer in zip(self.shadow.buffers(), model.buffers(), strict=True):
            ema_buffer.copy_(buffer)


def learning_rate(config: TrainConfig, step: int) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    def __init__(self, task: TrainTask, config: TrainConfig, out: Path, env: DistEnv, resume: bool = False):
        self.task, self.config, self.out, self.env = task, config, Path(out), env
        torch.manual_seed(config.seed + env.rank)
        self.model = task.model.to(env.device)
        self.ema = EMA(self.model, config.ema_decay)
        self.step = 0
        if resume:
            self._resume()
        self.wrapped = wrap_model(self.model, env, fsdp=config.fsdp)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.wrapped.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=(0.9, 0.99),
        )
        if resume and self._state is not None and "optimizer" in self._state:
            self.optimizer.load_state_dict(self._state["optimizer"])

    # ------------------------------------------------------------------------------------- resume

    def _resume(self) -> None:
        self._state = ckpt.load_state(self.out)
        if self._state is None:
            raise ckpt.CheckpointError(
                f"{self.out}: nothing to resume (no {ckpt.STATE}); drop --resume to start"
            )
        saved = ckpt.read_config(self.out)
        if _comparable(saved.get("model", {})) != _comparable(self.task.config_dict()):
            raise ckpt.CheckpointError(
                f"{self.out}: the checkpoint was trained with another model config; "
                "resume with the same --config or pick a new --out"
            )
        ckpt.load_into(self.model, self._state["model"], self.out / ckpt.STATE)
        ckpt.load_into(self.ema.shadow, ckpt.read_weights(self.out), self.out / ckpt.WEIGHTS)
        self.step = int(self._state["step"])
        torch.set_rng_state(self._state["rng"])
        self.task.load_extra_state(self._state.get("task", {}))

    _state: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------- loop

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        forced = {"bf16": True, "fp32": False}.get(self.config.precision)
        if forced is None and self.env.device.type == "cpu" and not self.task.cpu_autocast:
            forced = False  # convolution-heavy tasks stay fp32 on CPUs even with native bf16
        return autocast(self.env.device, forced)

    def fit(self) -> Path:
        config, env = self.config, self.env
        # The same seed on every rank: the dataset splits its shards between ranks by a seeded
        # permutation, which only partitions them when all ranks draw the same one.
        batches = self.task.batches(env, config.batch_size, config.seed + 1000 * self.step, config.workers)
        log = self._open_log()
        started = time.perf_counter()
        window_start, window_steps = started, 0
        bar = _progress(self.step, config.steps, env.is_main, self.task.kind)
        self.wrapped.train()
        while self.step < config.steps:
            batch = next(batches)
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(config, self.step)
            with self._autocast():
                loss, metrics = self.task.loss(self.wrapped, batch, self.step)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), config.grad_clip)
            self.optimizer.step()
            with self._full_params():
                self.ema.update(unwrap(self.wrapped), self.step)
            self.step += 1
            window_steps += 1
            if self.step % config.log_every == 0 or self.step == config.steps:
                now = time.perf_counter()
                rate = window_steps / max(1e-9, now - window_start)
                window_start, window_steps = now, 0
                mean_loss = float(mean_across_ranks(loss.detach().float(), env))
                row = {
                    "step": self.step,
                    "loss": mean_loss,
                    "grad_norm": float(grad_norm),
                    "lr": learning_rate(config, self.step - 1),
                    "steps_per_s": rate,
                    "elapsed_s": now - started,
                    **metrics,
                }
                if env.is_main:
                    log.writerow(row)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", steps_s=f"{rate:.2f}")
            bar.update()
            out_of_time = config.time_limit > 0 and time.perf_counter() - started > config.time_limit
            if config.time_limit > 0 and env.distributed:  # stop together, or the others hang
                flag = torch.tensor(float(out_of_time), device=env.device)
                out_of_time = bool(mean_across_ranks(flag, env) > 0)
            if self.step % config.save_every == 0 or self.step == config.steps or out_of_time:
                self.save()
            if out_of_time:
                break
        bar.close()
        return self.out

    def _open_log(self) -> Any:
        if not self.env.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "log.csv"
        handle = path.open("a", newline="")
        fields = ["step", "loss", "grad_norm", "lr", "steps_per_s", "elapsed_s", *self.task.metric_names]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        if path.stat().st_size == 0:
            writer.writeheader()

        class Flushing:
            def writerow(self, row: dict[str, Any]) -> None:
                writer.writerow(row)
                handle.flush()

        return Flushing()

    def _full_params(self) -> Any:
        """Under FSDP, gather full weights for the EMA and for saving; otherwise nothing to do."""
        if self.config.fsdp and self.env.distributed:
            from torch.distributed.fsdp import FullyShardedDataParallel

            return FullyShardedDataParallel.summon_full_params(self.wrapped, writeback=False)
        return contextlib.nullcontext()

    def save(self) -> None:
        """Rank 0 writes EMA weights + config (what inference loads) and the resume state."""
        with self._full_params():
            raw = {k: v.detach().cpu().clone() for k, v in unwrap(self.wrapped).state_dict().items()}
        if not self.env.is_main:
            return
        config = {
            "task": self.task.task_info(),
            "kind": self.task.kind,
            "model": self.task.config_dict(),
            "train": asdict(self.config),
            "step": self.step,
        }
        ckpt.save_weights(self.out, self.ema.shadow.state_dict(), config)
        ckpt.save_state(
            self.out,
            {
                "model": raw,
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "rng": torch.get_rng_state(),
                "task": self.task.extra_state(),
            },
        )


def _progress(start: int, total: int, enabled: bool, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, initial=start, desc=f"train {name}", unit="step", disable=not enabled, dynamic_ncols=True
    )


def _comparable(model_config: dict[str, Any]) -> dict[str, Any]:
    """A model config without the fields set after training (calibration), for resume checks.

    Compared as JSON, as config.json stores it: tuples there come back as lists.
    """
    kept = {k: v for k, v in model_config.items() if k not in ("latent_scale", "extra")}
    return json.loads(json.dumps(kept, sort_keys=True))
