"""The Ray Data engine: the same per-clip and per-shard jobs as the local pool, on a Ray cluster.

On a laptop or in tests, Ray starts a local runtime with ``workers`` CPUs; on a cluster set
RAY_ADDRESS (or call ray.init first) and the jobs spread over its nodes. Jobs write their outputs
to the shared output folder themselves, so only small summaries travel back.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

R = TypeVar("R")


def run_ray(
    function: Callable[..., R],
    jobs: Sequence[tuple[Any, ...]],
    workers: int,
    progress: bool = True,
) -> list[R]:
    """Map ``function`` over ``jobs`` with Ray Data, one job per row; results in job order."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("--engine ray needs Ray: pip install 'ray[data]'") from error

    if not ray.is_initialized():
        quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if os.environ.get("RAY_ADDRESS"):
            ray.init(**quiet)  # join the cluster; its size is its own
        else:
            ray.init(num_cpus=workers, **quiet)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    rows = [{"order": i, "job": pickle.dumps((function, args))} for i, args in enumerate(jobs)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    done = dataset.map(_run_row, num_cpus=1, concurrency=max(1, min(workers, len(rows))))
    results = sorted(done.take_all(), key=lambda row: row["order"])
    return [pickle.loads(row["result"]) for row in results]


def _run_row(row: dict[str, Any]) -> dict[str, Any]:
    function, args = pickle.loads(row["job"])
    return {"order": row["order"], "result": pickle.dumps(function(*args))}
