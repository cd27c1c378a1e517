"""Build-throughput benchmark: samples/s of `data build` per engine, for photo samples (pseudo-video)
and clip samples of the corpus apart, written to docs/BENCHMARKS.md.

Parsing is done once up front (it is cached per source and not part of per-sample work); each engine
then builds the same configs into fresh folders that share that parse cache.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from streamingeffect.data.build import BuildConfig, build_dataset
from streamingeffect.docs import replace_section
from streamingeffect.precision import machine_summary

KINDS = (("photos", 1e9), ("clips", 0.0))  # image_ratio that gives only photo / only clip samples


def run_build_benchmark(
    engines: list[str],
    samples: int,
    frames: int,
    size: int,
    workers: int,
    work_dir: Path,
    report: Path | None,
    command: str,
) -> list[dict[str, float | str]]:
    cache = work_dir / "parse-cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first parse is measured too, once
    started = time.perf_counter()
    warmup = BuildConfig(
        "corpus", work_dir / "warmup", samples=1, frames=frames, size=size, parse_cache=cache
    )
    build_dataset(warmup, "local", workers, progress=False)
    parse_seconds = time.perf_counter() - started
    rows: list[dict[str, float | str]] = []
    for engine in engines:
        for kind, ratio in KINDS:
            out = work_dir / f"{engine}-{kind}"
            shutil.rmtree(out, ignore_errors=True)
            config = BuildConfig(
                "corpus",
                out,
                samples=samples,
                frames=frames,
                size=size,
                seed=1,
                image_ratio=ratio,
                parse_cache=cache,
            )
            result = build_dataset(config, engine, workers)  # type: ignore[arg-type]
            row = {
                "engine": engine,
                "kind": kind,
                "samples": result.samples,
                "seconds": round(result.seconds, 1),
                "samples_per_s": round(result.samples / result.seconds, 3),
            }
            rows.append(row)
            print(
                f"{engine}, {kind}: {row['samples']} samples of {frames}x{size}x{size} in {row['seconds']} s "
                f"= {row['samples_per_s']} samples/s"
            )
    if report is not None:
        replace_section(report, "data-build", _markdown(rows, parse_seconds, frames, size, workers, command))
        print(f"recorded in {report}")
    return rows


def _markdown(
    rows: list[dict[str, float | str]],
    parse_seconds: float,
    frames: int,
    size: int,
    workers: int,
    command: str,
) -> str:
    lines = [
        "## Data engine: build throughput",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}, "
        f"workers={workers}. "
        f"Samples of {frames} frames at {size}x{size} from the default corpus (`--sources corpus`), all "
        "categories, with its augmentation and long references; photos become pseudo-video, clips are "
        f"decoded. Parse cached (the first parse of every corpus source took {parse_seconds:.1f} s, once). "
        "Wall time includes starting the engine (a spawned process pool, or a local Ray runtime).",
        "",
        "| engine | samples from | samples | wall time (s) | samples/s |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['engine']} | {r['kind']} | {r['samples']} | {r['seconds']} | {r['samples_per_s']} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
