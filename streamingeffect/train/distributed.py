"""Distributed launch: one process on a laptop, or `torchrun` with DDP (gloo on CPU, NCCL on GPU) or FSDP.

`torchrun --nproc_per_node N -m streamingeffect.cli train ...` sets RANK / WORLD_SIZE / LOCAL_RANK;
`init_distributed` reads them, so the same trainer runs alone or as one of N ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

CPU = torch.device("cpu")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistEnv:
    """Join the process group when launched by torchrun; pick the device (cuda:LOCAL_RANK if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    target = torch.device(f"cuda:{local}") if use_cuda else torch.device(device or "cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank, world, local, target)


def wrap_model(model: nn.Module, env: DistEnv, fsdp: bool = False) -> nn.Module:
    """DDP (or FSDP for configs too large to replicate) when there are several ranks."""
    if not env.distributed:
        return model
    if fsdp:
        if env.device.type == "cpu":
            raise ValueError("--fsdp needs GPUs (PyTorch FSDP refuses CPU devices); on CPUs use DDP")
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(model, device_id=env.device if env.device.type == "cuda" else None)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def mean_across_ranks(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= env.world_size
    return value


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
