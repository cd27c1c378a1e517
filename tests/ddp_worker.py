"""One rank of the DDP test in test_train.py, launched by `python -m torch.distributed.run`.

    ddp_worker.py DATA OUT

Phase 1 trains the tiny autoencoder for 2 steps (ranks start from different weights; DDP must
broadcast rank 0's) and records parameter digests and the sample keys each rank read. Phase 2 runs
with a time limit while rank 0 starts its clock late, so the ranks see the limit at different steps
and must still stop together. Each rank writes OUT/rank<R>.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamingeffect.models.autoencoder import AutoencoderConfig
from streamingeffect.train import tasks
from streamingeffect.train.distributed import init_distributed, shutdown
from streamingeffect.train.tasks import AutoencoderTask
from streamingeffect.train.trainer import TrainConfig, Trainer

TINY = AutoencoderConfig(name="tiny", channels=(8, 16, 16), latent_channels=4, groups=4)
SEEN: list[str] = []


def digest(model: nn.Module) -> str:
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()


def recording_clip_stream(*args: Any, **kwargs: Any) -> Any:
    for item in ORIGINAL_CLIP_STREAM(*args, **kwargs):
        SEEN.append(item["key"])
        yield item


ORIGINAL_CLIP_STREAM = tasks.clip_stream
tasks.clip_stream = recording_clip_stream


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    env = init_distributed("cpu")
    try:
        torch.manual_seed(100 + env.rank)  # a different initialisation on each rank
        task = AutoencoderTask(TINY, data, crop=32, frames_per_clip=2)
        initial = digest(task.model)
        # seed 2: with a per-rank data seed both ranks used to draw the same one of the two shards
        config = TrainConfig(steps=2, batch_size=4, warmup=1, log_every=1, save_every=100, seed=2, workers=0)
        trainer = Trainer(task, config, out / "ckpt", env)
        synced = digest(trainer.model)
        trainer.fit()
        report: dict[str, Any] = {
            "rank": env.rank,
            "world_size": env.world_size,
            "initial": initial,
            "synced": synced,
            "final": digest(trainer.model),
            "steps": trainer.step,
            "seen": sorted(set(SEEN)),
        }

        limited = TrainConfig(
            steps=1000, batch_size=4, warmup=1, log_every=1000, save_every=1000, time_limit=2.0, workers=0
        )
        task = AutoencoderTask(TINY, data, crop=32, frames_per_clip=2)
        trainer = Trainer(task, limited, out / "limit", env)
        if env.rank == 0:
            time.sleep(3.0)  # rank 1 passes the limit after its first step, rank 0 much later
        trainer.fit()
        report["limited_steps"] = trainer.step
        (out / f"rank{env.rank}.json").write_text(json.dumps(report, indent=1))
    finally:
        shutdown(env)


if __name__ == "__main__":
    main()
