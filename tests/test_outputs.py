"""The CLI's outputs: an input is never overwritten, a file appears only when complete, the first
error is the one reported, `--size` works on mixed-size folders, and Ctrl-C finishes the file."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_runtime import _student

from streamingeffect.cli import main
from streamingeffect.io import probe, save_image, write_video
from streamingeffect.runtime import endpoints, runner


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _student(tmp_path_factory.mktemp("student"), chunk_frames=1)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    frames = np.random.default_rng(0).integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    return write_video(tmp_path / "clip.mp4", frames, fps=10)


def _run(student: Path, source: Path, output: Path, *extra: str) -> int:
    args = ["run", "--model", str(student), "--input", str(source), "--output", str(output)]
    return main([*args, "--effect", "neon_outline_cyan", "--steps", "1", *extra])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".video." in p.name)


def test_run_refuses_its_input_as_output_and_leaves_it_intact(
    student: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = clip.read_bytes()
    assert _run(student, clip, clip, "--max-frames", "8") == 2
    assert "destroy the input" in capsys.readouterr().err
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)
    assert _run(student, clip, link) == 2  # a link to the input is the input
    assert _run(student, clip, tmp_path / "o.mp4", "--stats-json", str(clip)) == 2
    keyframe = tmp_path / "edit.png"
    save_image(keyframe, np.zeros((48, 64, 3), np.uint8))
    keyframe_bytes = keyframe.read_bytes()
    args = ["run", "--model", str(student), "--input", str(clip), "--keyframe", str(keyframe)]
    assert main([*args, "--output", str(keyframe)]) == 2
    assert clip.read_bytes() == before and keyframe.read_bytes() == keyframe_bytes
    assert _leftovers(tmp_path) == []


def test_run_refuses_an_image_of_its_input_folder(student: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        save_image(folder / f"{i}.png", np.full((32, 32, 3), 40 * i, np.uint8))
    before = (folder / "0.png").read_bytes()
    assert _run(student, folder, folder / "0.png") == 2
    assert (folder / "0.png").read_bytes() == before


def test_generate_and_render_refuse_their_inputs_as_output(
    tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_generate import _checkpoint

    monkeypatch.setenv("STREAMINGEFFECT_CACHE", str(tmp_path / "cache"))
    reference = tmp_path / "reference.png"
    save_image(reference, np.zeros((48, 64, 3), np.uint8))
    before = {p: p.read_bytes() for p in (clip, reference)}
    model = _checkpoint(tmp_path / "student", "student")
    generate = ["generate", "--model", str(model), "--input", str(clip), "--effect", "neon_outline_cyan"]
    assert main([*generate, "--output", str(clip)]) == 2
    assert main([*generate, "--reference", str(reference), "--output", str(reference)]) == 2
    render = ["effects", "render", "--input", str(clip), "--effect", "neon_outline_cyan"]
    assert main([*render, "--output", str(clip)]) == 2
    assert capsys.readouterr().err.count("destroy the input") == 3
    assert {p: p.read_bytes() for p in before} == before
    assert _leftovers(tmp_path) == []


def test_a_failing_run_names_its_cause_and_keeps_the_previous_output(
    student: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    for i in range(3):  # too small for the stream: the cause, not the empty video, must be reported
        save_image(folder / f"{i}.png", np.full((15, 15, 3), 90, np.uint8))
    output = tmp_path / "out.mp4"
    output.write_bytes(b"the previous result")
    assert _run(student, folder, output) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "no frames were written" not in err
    assert output.read_bytes() == b"the previous result"  # the failed run never touched it
    assert _leftovers(tmp_path) == []


def test_size_resizes_a_mixed_size_folder_at_the_source(
    student: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(48, 64), (60, 80), (48, 64), (30, 40)]):
        save_image(folder / f"{i}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    output = tmp_path / "out.mp4"
    assert _run(student, folder, output) == 2
    assert "--size" in capsys.readouterr().err and not output.exists()
    assert _run(student, folder, output, "--size", "64x48") == 0
    info = probe(output, count_frames=True)
    assert (info.width, info.height, info.num_frames) == (64, 48, 4)
    assert _leftovers(tmp_path) == []


def test_ctrl_c_finishes_a_playable_file_and_exits_130_even_when_pressed_twice(
    student: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = endpoints.open_source

    def interrupted_source(*args: object, **kwargs: object) -> endpoints.FrameSource:
        source = opened(*args, **kwargs)  # type: ignore[arg-type]
        original = source.frames

        def frames() -> Iterator[object]:
            for frame in original:
                if frame.index == 4:  # a real Ctrl-C (SIGINT) while streaming, after 4 frames
                    os.kill(os.getpid(), signal.SIGINT)
                yield frame

        source.frames = frames()  # type: ignore[assignment]
        return source

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh `streamingeffect`
    try:
        code = _run_interrupted(student, clip, tmp_path / "out.mp4", interrupted_source, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    info = probe(tmp_path / "out.mp4", count_frames=True)
    assert 4 <= info.num_frames < 8 and (info.width, info.height) == (64, 48)
    assert _leftovers(tmp_path) == []


def _run_interrupted(
    student: Path, clip: Path, output: Path, source: object, monkeypatch: pytest.MonkeyPatch
) -> int:
    close = endpoints.Mp4Sink.close

    def close_under_a_second_ctrl_c(self: endpoints.Mp4Sink) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C, while the file is finished
        close(self)

    monkeypatch.setattr(runner, "open_source", source)
    monkeypatch.setattr(endpoints.Mp4Sink, "close", close_under_a_second_ctrl_c)
    return _run(student, clip, output)
