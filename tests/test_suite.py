"""The evaluation suite end to end on a miniature configuration (the bundled models, 1 category)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamingeffect.cli import main
from streamingeffect.eval.suite import SUITES, run_suite


def test_a_miniature_suite_writes_every_part_of_the_report(tmp_path: Path) -> None:
    config = replace(
        SUITES["quick"],
        name="mini",
        categories=("neon_outline_cyan",),
        frames=4,
        long_seconds=0.4,
        long_every=4,
        people=1,
        long_keyframe_seconds=0.3,
    )
    results = run_suite(config, tmp_path, teacher_dir=None, student_dir="student", command="test")
    for name in ("results.json", "report.md", "contact_sheet.jpg", "drift.png", "latency.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "results.json").read_text())
    keyframe = saved["sets"]["keyframe"]
    assert (
        "flow propagation of the keyframe" in keyframe
        and "flow propagation of the keyframe" not in saved["sets"]["text"]
    )
    student_row = next(name for name in keyframe if name.startswith("student, 1 step"))
    identity, student = keyframe["identity (source)"], keyframe[student_row]
    # The source passed through keeps the background and the face exactly, and is not the effect.
    assert identity["background_l1"] == 0 and identity["warp_error"] < student["warp_error"] + 50
    assert identity["psnr_in"] < 25
    assert np.isfinite(student["psnr_in"]) and student["ms_per_frame"] > 0
    assert results["system"]["fps"] > 0 and 0 < results["system"]["peak_share"] < 1.5
    assert len(results["long_stream"]["psnr_in"]) >= 2
    report = (tmp_path / "report.md").read_text()
    assert f"| {student_row} |" in report and "Long stream" in report
    # Outside the edit the output is the source at full resolution (the first wave's repaint: ~15 dB).
    assert student["psnr_out"] > 30 and saved["config"]["clip_size"] == "640x360"
    assert "student, runtime default (catalog keyframes)" in saved["sets"]["text"]
    assert set(saved["per_person"]["keyframe"]["identity (source)"]) == set(saved["people"])
    assert saved["people"] == ["feat_door_man"]  # the benchmark person, held out, from the registry
    long_set = saved["sets"]["long keyframe"]
    assert "flow propagation of the keyframe" in long_set and "student without KV cache" not in long_set


def test_bench_without_a_suite_or_benchmark_is_a_clear_error(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["bench"]) == 2
    assert "--suite" in capsys.readouterr().err
