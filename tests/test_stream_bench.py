"""The scaling benchmark's arithmetic over repeated runs (the runs themselves are timed, not tested)."""

from __future__ import annotations

from streamingeffect.eval.stream_bench import _median_run


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
