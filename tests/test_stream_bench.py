"""The scaling benchmark's arithmetic over repeated runs and its precision line (the runs themselves are
timed, not tested)."""

from __future__ import annotations

from streamingeffect.eval.stream_bench import _median_run, _worker_precision


def test_repeated_runs_combine_figure_by_figure_into_medians() -> None:
    runs = [
        {
            "answered_share": share,
            "fps": fps,
            "first_model_edit_ms": None,
            "rate": "decoupled",
            "stages": stages,
        }
        for share, fps, stages in (
            (0.5, 10.0, {"segment": 3.0}),
            (0.9, 30.0, {"segment": 1.0}),
            (0.7, 20.0, {"segment": 2.0}),
        )
    ]
    merged = _median_run(runs)
    assert merged["answered_share"] == 0.7 and merged["fps"] == 20.0
    assert merged["stages"] == {"segment": 2.0}  # nested tables: key by key
    assert merged["first_model_edit_ms"] is None and merged["rate"] == "decoupled"
    assert merged["answered_range"] == "50% - 90%"


def test_the_workers_autoencoder_precision_is_reported_with_the_timings_that_chose_it() -> None:
    def run(chosen: str, fp32: float, bf16: float) -> dict[str, object]:
        return {"autoencoder_precision": {"chosen": chosen, "fp32_ms": fp32, "bf16_ms": bf16}}

    nan = float("nan")
    timed = [
        ("decoupled", (640, 360), run("bf16", 10.0, 7.6)),
        ("every-frame", (1280, 720), run("fp32", nan, nan)),  # not the worker's: left out
        ("decoupled", (1280, 720), run("bf16", 12.4, 9.9)),
    ]
    assert _worker_precision(timed) == (
        "bf16 (its encode and delta decode timed at start-up: fp32 10.0-12.4 ms, bf16 7.6-9.9 ms)"
    )
    assert _worker_precision([("decoupled", (640, 360), run("fp32", nan, nan))]).startswith("fp32 (not timed")
