"""Video reading and writing on PyAV (FFmpeg).

Reading streams frames one at a time as [H, W, 3] uint8 RGB, upright (a phone video's display
rotation is applied, as ffmpeg does), from video files or folders of images. Frame indices are
exact: they count frames from the start of the file even when reading starts with a seek.

Writing produces H.264 (libx264, yuv420p) where the FFmpeg build has it and MPEG-4 Part 2 otherwise;
yuv420p needs even sizes, so odd widths/heights are padded by one replicated edge row/column.
"""

from __future__ import annotations

import heapq
import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import av
import cv2
import numpy as np

from streamingeffect.io.images import (
    I420Image,
    ImageError,
    Picture,
    is_image_file,
    load_image,
    natural_sort_key,
    picture_size,
    to_rgb,
)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".y4m"})
DEFAULT_IMAGE_FPS = 25.0

# A decoder holds back at most this many frames to reorder B-frames (H.264 allows 16); used to
# know when a packet scan has seen every frame before a given one in containers without dts.
_MAX_REORDER = 32
# Formats whose packet timestamps cannot be trusted for seeking (AVI stores no presentation times).
_NO_SEEK_FORMATS = frozenset({"avi"})
_OUTPUT_FORMATS = {
    ".mp4": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".y4m": "yuv4mpegpipe",
}

Size = tuple[int, int]  # (width, height)


class VideoError(RuntimeError):
    """A video (or image folder) cannot be read or written; the message names the path and cause."""


@dataclass
class VideoInfo:
    """What probe() learns about a video without decoding it all."""

    path: Path
    width: int  # as displayed (after rotation), which is what read_frames yields
    height: int
    fps: float
    num_frames: int | None  # the container's count, or an estimate from duration × fps
    duration: float | None  # seconds
    has_audio: bool
    codec: str


@dataclass
class Frame:
    """One decoded frame. index counts from 0 at the start of the file; time is in seconds."""

    index: int
    time: float
    image: np.ndarray  # [H, W, 3] uint8 RGB

    @property
    def picture(self) -> Picture:
        """What a stream takes (`read_pictures`): here the RGB image."""
        return self.image


@dataclass
class PlanarFrame:
    """A decoded frame kept in the I420 planes it was decoded to (`read_pictures`)."""

    index: int
    time: float
    picture: I420Image

    @property
    def image(self) -> np.ndarray:
        return self.picture.rgb()  # [H, W, 3] uint8 RGB, converted on first use


# ----------------------------------------------------------------------------------------------
# Probing


def probe(path: str | Path, fps: float = DEFAULT_IMAGE_FPS, count_frames: bool = False) -> VideoInfo:
    """Describe a video file or an image folder (fps applies to image folders only).

    The first frame is decoded to make sure the file is readable. num_frames comes from the
    container when it stores one (it may include a few frames an edit list hides) and is otherwise
    estimated; count_frames=True counts the frames exactly by reading packets (no decoding).
    Raises VideoError.
    """
    path = _existing_path(path)
    if path.is_dir():
        return _probe_image_folder(path, _check_fps(fps))
    _reject_image_file(path)
    label = str(path)
    with _open_video(path, label) as (container, stream):
        first = next(_decode(container, stream, label, _Clock.of(container, stream, label)), None)
        if first is None:
            raise VideoError(f"{label}: the video contains no frames")
        rate = _stream_fps(container, stream, label)
        duration = _stream_duration(container, stream)
        num_frames = stream.frames or (round(duration * rate) if duration else None)
        height, width = _upright_shape(first)
        info = VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=rate,
            num_frames=num_frames,
            duration=duration,
            has_audio=len(container.streams.audio) > 0,
            codec=stream.codec_context.name,
        )
    if count_frames:
        with _open_video(path, label) as (container, stream):
            info.num_frames = _count_frame_packets(container, stream, label)
    return info


def _probe_image_folder(folder: Path, fps: float) -> VideoInfo:
    files = _image_files(folder)
    try:
        height, width = load_image(files[0]).shape[:2]
    except ImageError as error:
        raise VideoError(str(error)) from error
    return VideoInfo(
        path=folder,
        width=width,
        height=height,
        fps=float(fps),
        num_frames=len(files),
        duration=len(files) / fps,
        has_audio=False,
        codec="images",
    )


def _stream_fps(container: av.container.InputContainer, stream: av.VideoStream, label: str) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    duration = _stream_duration(container, stream)
    if stream.frames and duration:
        return stream.frames / duration
    raise VideoError(f"{label}: the video stream has no frame rate")


def _stream_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    # The container's duration covers every stream, so it stands for the video only when alone.
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _count_frame_packets(container: av.container.InputContainer, stream: av.VideoStream, label: str) -> int:
    try:
        return sum(1 for packet in container.demux(stream) if _is_frame_packet(packet))
    except av.error.FFmpegError as error:
        raise VideoError(f"{label}: cannot read packets: {_cause(error)}") from error


# ----------------------------------------------------------------------------------------------
# Reading


def read_frames(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    size: Size | None = None,
    fps: float = DEFAULT_IMAGE_FPS,
) -> Iterator[Frame]:
    """Stream frames start, start+step, … (< stop) of a video file or an image folder.

    Frames are decoded one at a time, never the whole video. For start > 0 the reader scans packet
    timestamps up to start (no decoding), seeks to the keyframe before it and decodes forward, so
    indices are exact; where that is impossible (AVI, no timestamps) it decodes from the beginning.
    size=(width, height) resizes with cv2.INTER_AREA. fps sets the frame times of image folders.
    A file that breaks part-way yields the frames decoded so far, then raises VideoError.
    """
    path = _existing_path(path)
    _check_range(start, stop, step)
    if size is not None:
        size = _check_size(size)
    if path.is_dir():
        return _read_image_folder(path, _image_files(path), start, stop, step, size, _check_fps(fps))
    _reject_image_file(path)
    if stop is not None and stop <= start:
        return iter(())
    label = str(path)
    return _select_frames(
        _indexed_frames(lambda: _open_video(path, label), start, label), start, stop, step, size
    )


def read_pictures(path: str | Path, stop: int | None = None) -> Iterator[Frame | PlanarFrame]:
    """`read_frames` of a video file for a stream: frames decoded to 4:2:0 (BT.601 limited range, even
    sides, upright) stay in their planes (`PlanarFrame`), the others come as RGB. The decoder runs on
    one thread, since the cores belong to the stream (at 720p: 2.3-2.5 ms of CPU a frame, against
    2.6-3.9 with FFmpeg's frame and slice threads)."""
    path = _existing_path(path)
    _reject_image_file(path)
    if path.is_dir():
        raise VideoError(f"{path}: a folder; read_pictures reads video files (read_frames reads folders)")
    if stop is not None and stop <= 0:
        return iter(())
    label = str(path)
    return (
        _picture_frame(index, time, frame)
        for index, time, frame in _indexed_frames(lambda: _open_video(path, label, threads=1), 0, label)
        if stop is None or index < stop
    )


def _picture_frame(index: int, time: float, frame: av.VideoFrame) -> Frame | PlanarFrame:
    # (yuvj420p is full range: converted to RGB like any other format.)
    planar = frame.format.name == "yuv420p" and not _quarter_turns(frame)
    if planar and frame.width % 2 == 0 and frame.height % 2 == 0:
        return PlanarFrame(index, time, I420Image(frame.to_ndarray(format="yuv420p")))
    return Frame(index, time, _upright_image(frame))


def read_clip(
    path: str | Path,
    start: int,
    num_frames: int,
    step: int = 1,
    size: Size | None = None,
    fps: float = DEFAULT_IMAGE_FPS,
) -> np.ndarray:
    """Read num_frames frames (start, start+step, …) as [F, H, W, 3] uint8; VideoError if too few."""
    if num_frames < 1:
        raise ValueError(f"read_clip: num_frames must be >= 1, got {num_frames}")
    stop = start + (num_frames - 1) * step + 1
    images = [frame.image for frame in read_frames(path, start, stop, step, size, fps)]
    if len(images) < num_frames:
        raise VideoError(
            f"{path}: asked for {num_frames} frames from frame {start} with step {step}, "
            f"but only {len(images)} are available"
        )
    return np.stack(images)


def decode_mp4(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode an in-memory video (e.g. from encode_mp4) to [F, H, W, 3] uint8 RGB."""
    label = "<in-memory video>"
    frames = _indexed_frames(lambda: _open_video(io.BytesIO(bytes(data)), label), 0, label)
    images = [_upright_image(frame) for _, _, frame in frames]
    return np.stack(images)


def _check_range(start: int, stop: int | None, step: int) -> None:
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if stop is not None and stop < 0:
        raise ValueError(f"stop must be >= 0 or None, got {stop}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")


def _check_fps(fps: float) -> float:
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return float(fps)


def _check_size(size: Size) -> Size:
    width, height = (int(value) for value in size)
    if width < 1 or height < 1:
        raise ValueError(f"size must be a positive (width, height), got {size}")
    return width, height


def _select_frames(
    frames: Iterator[tuple[int, float, av.VideoFrame]],
    start: int,
    stop: int | None,
    step: int,
    size: Size | None,
) -> Iterator[Frame]:
    for index, time, frame in frames:
        if stop is not None and index >= stop:
            return
        if index < start or (index - start) % step:
            continue  # skipped frames are never converted to RGB
        yield Frame(index=index, time=time, image=_resize(_upright_image(frame), size))


@dataclass(frozen=True)
class _Clock:
    """Frame times in seconds from the stream start: from pts, or from the index where pts is unusable."""

    start_pts: int
    time_base: Fraction | None
    fps: float
    use_pts: bool

    @classmethod
    def of(cls, container: av.container.InputContainer, stream: av.VideoStream, label: str) -> _Clock:
        return cls(
            start_pts=stream.start_time or 0,
            time_base=stream.time_base,
            fps=_stream_fps(container, stream, label),
            use_pts=container.format.name not in _NO_SEEK_FORMATS,
        )

    def time(self, index: int, frame: av.VideoFrame) -> float:
        if self.use_pts and frame.pts is not None and self.time_base:
            return float((frame.pts - self.start_pts) * self.time_base)
        return index / self.fps


def _resize(image: np.ndarray, size: Size | None) -> np.ndarray:
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _upright_image(frame: av.VideoFrame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _upright_shape(frame: av.VideoFrame) -> tuple[int, int]:
    return (frame.width, frame.height) if _quarter_turns(frame) % 2 else (frame.height, frame.width)


def _quarter_turns(frame: av.VideoFrame) -> int:
    # rotation is the display matrix's counterclockwise angle; np.rot90 also turns counterclockwise
    try:
        rotation = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return round((rotation or 0) / 90) % 4


# ----------------------------------------------------------------------------------------------
# Decoding with exact indices

_Opener = Callable[[], AbstractContextManager[tuple[av.container.InputContainer, av.VideoStream]]]


def _indexed_frames(
    open_video: _Opener, start: int, label: str
) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """(index, time, frame) from index `start` on (maybe a few earlier ones too), seeking when possible."""
    if start > 0:
        with open_video() as (container, stream):
            clock = _Clock.of(container, stream, label)
            target_pts = _seek_before_frame(container, stream, start)
            if target_pts is not None:
                frames = _decode(container, stream, label, clock)
                first = _advance_to(frames, target_pts)
                if first is not None:
                    yield start, clock.time(start, first), first
                    for index, frame in enumerate(frames, start + 1):
                        yield index, clock.time(index, frame), frame
                    return
    # Fallback (and start == 0): decode from the beginning, counting frames.
    with open_video() as (container, stream):
        clock = _Clock.of(container, stream, label)
        count = 0
        for count, frame in enumerate(_decode(container, stream, label, clock), 1):
            yield count - 1, clock.time(count - 1, frame), frame
        if count == 0:
            raise VideoError(f"{label}: the video contains no frames")


def _seek_before_frame(
    container: av.container.InputContainer, stream: av.VideoStream, start: int
) -> int | None:
    """Seek to the keyframe at or before frame `start`; returns that frame's pts, None if impossible."""
    if container.format.name in _NO_SEEK_FORMATS:
        return None
    try:
        target_pts = _pts_of_frame(container, stream, start)
        if target_pts is None:
            return None
        container.seek(target_pts, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        return None  # the caller decodes from the beginning instead, which reports real errors
    return target_pts


def _pts_of_frame(container: av.container.InputContainer, stream: av.VideoStream, index: int) -> int | None:
    """The pts of frame `index`, from packet timestamps alone: the (index+1)-th smallest pts.

    Packets come in decode order, so the scan stops once no later packet can present earlier:
    when a packet's dts passes the candidate (pts >= dts always), or, without dts, after the
    largest reordering delay a decoder allows.
    """
    largest_first: list[int] = []  # max-heap (negated) of the index+1 smallest pts seen
    packets = 0
    for packet in container.demux(stream):
        if not _is_frame_packet(packet):
            continue
        if packet.pts is None:
            return None
        if len(largest_first) == index + 1:
            candidate = -largest_first[0]
            done_by_dts = packet.dts is not None and packet.dts > candidate
            if done_by_dts or (packet.dts is None and packets > index + _MAX_REORDER):
                return candidate
            if packet.pts < candidate:
                heapq.heapreplace(largest_first, -packet.pts)
        else:
            heapq.heappush(largest_first, -packet.pts)
        packets += 1
    return -largest_first[0] if len(largest_first) == index + 1 else None


def _is_frame_packet(packet: av.Packet) -> bool:
    # Empty packets flush the decoder; discarded ones (before an edit list's start) are never shown.
    return packet.size > 0 and not packet.is_discard


def _advance_to(frames: Iterator[av.VideoFrame], target_pts: int) -> av.VideoFrame | None:
    """Skip decoded frames before target_pts; the frame at it, or None if the seek went astray."""
    for frame in frames:
        if frame.pts is None or frame.pts > target_pts:
            return None
        if frame.pts == target_pts:
            return frame
    return None


def _decode(
    container: av.container.InputContainer, stream: av.VideoStream, label: str, clock: _Clock
) -> Iterator[av.VideoFrame]:
    """Decoded frames in presentation order; VideoError when the file breaks or ends too early."""
    decoded = 0
    last: av.VideoFrame | None = None
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                decoded += 1
                last = frame
                yield frame
    except av.error.FFmpegError as error:
        raise VideoError(
            f"{label}: the file is truncated or corrupt: decoding failed after {decoded} frames "
            f"({_cause(error)})"
        ) from error
    if last is not None and (last.pts is not None or not clock.use_pts):  # else its index is unknown
        _check_not_truncated(container, stream, label, clock.time(decoded - 1, last), decoded)


def _check_not_truncated(
    container: av.container.InputContainer, stream: av.VideoStream, label: str, last_time: float, decoded: int
) -> None:
    """Raise when the frames stop well before the duration the container announces."""
    expected = _stream_duration(container, stream)
    if not expected:
        return
    fps = _stream_fps(container, stream, label)
    missing = expected - (last_time + 1 / fps)
    if missing > max(3 / fps, 0.02 * expected):
        raise VideoError(
            f"{label}: the file is truncated: frames stop at {last_time:.2f} s ({decoded} frames) "
            f"but the container announces {expected:.2f} s"
        )


# ----------------------------------------------------------------------------------------------
# Opening


def _existing_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    return path


def _reject_image_file(path: Path) -> None:
    if is_image_file(path):
        raise VideoError(f"{path}: is an image, not a video; pass the folder of images instead")


@contextmanager
def _open_video(
    source: Path | BinaryIO, label: str, threads: int = 0
) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """``threads``: the decoder's threads (0: FFmpeg's choice, frame and slice threading)."""
    try:
        container = av.open(source if not isinstance(source, Path) else str(source), mode="r")
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"{label}: cannot open as a video: {_cause(error)}") from error
    try:
        stream = _video_stream(container, label)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        yield container, stream
    finally:
        container.close()


def _video_stream(container: av.container.InputContainer, label: str) -> av.VideoStream:
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # cover art is not video
            return stream
    raise VideoError(f"{label}: the file has no video stream")


def _cause(error: BaseException) -> str:
    """A one-line reason from an FFmpeg/OS error (its message without errno and file name noise)."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(reason).splitlines()[0]


# ----------------------------------------------------------------------------------------------
# Image folders


def _image_files(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as error:
        raise VideoError(f"{folder}: cannot list the folder: {_cause(error)}") from error
    files = sorted(
        (entry for entry in entries if is_image_file(entry) and entry.is_file()), key=natural_sort_key
    )
    if not files:
        raise VideoError(f"{folder}: the folder has no images (.png, .jpg, .jpeg, .bmp)")
    return files


def _read_image_folder(
    folder: Path, files: list[Path], start: int, stop: int | None, step: int, size: Size | None, fps: float
) -> Iterator[Frame]:
    first_shape: tuple[int, ...] | None = None
    for index in range(start, len(files) if stop is None else min(stop, len(files)), step):
        try:
            image = load_image(files[index])
        except ImageError as error:
            raise VideoError(f"{folder}: frame {index}: {error}") from error
        first_shape = first_shape or image.shape
        if size is None and image.shape != first_shape:
            raise VideoError(
                f"{files[index]}: image is {image.shape[1]}x{image.shape[0]}, unlike the folder's "
                f"first frame ({first_shape[1]}x{first_shape[0]}); pass size= (run: --size WxH) "
                "to resize all frames"
            )
        yield Frame(index=index, time=index / fps, image=_resize(image, size))


# ----------------------------------------------------------------------------------------------
# Writing


class VideoWriter:
    """Write RGB frames to a video file (or a binary file object, given format=).

    The codec follows the extension: H.264 (libx264, yuv420p) for .mp4/.mov/.mkv, falling back to
    MPEG-4 Part 2 when the FFmpeg build lacks libx264; MPEG-4 Part 2 for .avi (AVI cannot store
    H.264's reordered timestamps); VP9 for .webm; raw yuv420p for .y4m. The chosen codec is in
    `.codec`. crf is the quality (0 = lossless H.264 in YUV, 18 ≈ visually lossless, 23 = x264's
    default); for MPEG-4 it maps to a fixed quantiser; .y4m ignores it.

    The first frame fixes the size. yuv420p needs even sizes, so an odd width/height is padded by
    replicating the last column/row: readers see the padded size. MP4/MOV files are written with
    the index first (+faststart), so a truncated file still yields its first frames.
    keyframe_interval bounds the distance between keyframes (shorter = faster seeking, larger
    files); preset is libx264's speed/size trade-off.
    """

    def __init__(
        self,
        path: str | Path | BinaryIO,
        fps: float | Fraction,
        crf: int = 18,
        codec: str | None = None,
        *,
        format: str | None = None,
        keyframe_interval: int | None = None,
        preset: str = "medium",
        x264_params: str = "",
        fast_yuv: bool = False,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self._file_path = None if _is_file_object(path) else Path(path)
        self.path = self._file_path
        self._label = str(self._file_path) if self._file_path else f"<{format or 'video'} stream>"
        self._format = format or _format_from_extension(self._file_path)
        self.codec = codec or _default_codec(self._format)
        _check_encoder(self.codec)
        max_crf = 63 if self.codec.startswith("libvpx") else 51
        if not 0 <= crf <= max_crf:
            raise ValueError(f"crf must be within 0..{max_crf} for {self.codec}, got {crf}")
        self.fps = (fps if isinstance(fps, Fraction) else Fraction(float(fps))).limit_denominator(1001)
        self.crf = crf
        self._keyframe_interval = keyframe_interval
        self._preset = preset
        self._x264_params = x264_params
        self._fast_yuv = fast_yuv  # live outputs: `yuv420_frame` (faster, a little less exact)
        self.size: Size | None = None  # (width, height) before padding, fixed by the first frame
        self.frames_written = 0
        self._stream: av.VideoStream | None = None
        self._closed = False
        self._container = self._open_output(path)

    def _open_output(self, path: str | Path | BinaryIO) -> av.container.OutputContainer:
        options = {}
        if self._file_path is not None and self._format in {"mp4", "mov"}:
            options["movflags"] = "+faststart"  # needs to reopen the file, so not for file objects
        if self._file_path is not None and not self._file_path.parent.is_dir():
            # FFmpeg only opens the file at the first frame; fail here, where the cause is obvious
            raise VideoError(f"{self._label}: cannot create the video: the folder does not exist")
        target = str(self._file_path) if self._file_path is not None else path
        try:
            return av.open(target, mode="w", format=self._format, options=options)
        except (av.error.FFmpegError, OSError) as error:
            raise VideoError(f"{self._label}: cannot create the video: {_cause(error)}") from error

    def write(self, frame: Picture) -> None:
        """Append one [H, W, 3] uint8 RGB frame (grayscale and RGBA are converted), or `I420Image`
        planes (encoded as they are)."""
        if self._closed:
            raise VideoError(f"{self._label}: the writer is closed")
        image = frame if isinstance(frame, I420Image) else to_rgb(frame)
        height, width = picture_size(image)
        if self.size is None:
            self.size = (width, height)
            self._stream = self._add_stream(width + width % 2, height + height % 2)
        elif (width, height) != self.size:
            raise ValueError(
                f"{self._label}: frame {self.frames_written} is {width}x{height}, but the video is "
                f"{self.size[0]}x{self.size[1]} (fixed by the first frame)"
            )
        if isinstance(image, I420Image):  # even sides by construction
            video_frame = av.VideoFrame.from_ndarray(image.planes, format="yuv420p")
        elif self._fast_yuv:
            video_frame = yuv420_frame(_pad_to_even(image))
        else:
            video_frame = av.VideoFrame.from_ndarray(_pad_to_even(image), format="rgb24")
        video_frame.pts = self.frames_written
        self._mux(video_frame)
        self.frames_written += 1

    def _add_stream(self, width: int, height: int) -> av.VideoStream:
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = _quality_options(self.codec, self.crf, self._preset)
        if self._x264_params and self.codec == "libx264":
            stream.options = stream.options | {"x264-params": self._x264_params}
        if self._keyframe_interval:
            stream.codec_context.gop_size = self._keyframe_interval
        return stream

    def _mux(self, frame: av.VideoFrame | None) -> None:
        assert self._stream is not None
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as error:
            raise VideoError(f"{self._label}: encoding failed: {_cause(error)}") from error

    def close(self) -> None:
        """Flush the encoder and finish the file. Raises VideoError if no frame was written."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._stream is not None:
                self._mux(None)
        finally:
            self._close_container()
        if self._stream is None:
            raise VideoError(f"{self._label}: no frames were written")

    def _close_container(self) -> None:
        if self._stream is None:  # nothing to finish: drop the empty output
            with suppress(av.error.FFmpegError, OSError):
                self._container.close()
            if self._file_path is not None:
                with suppress(OSError):
                    os.remove(self._file_path)
            return
        try:
            self._container.close()
        except (av.error.FFmpegError, OSError) as error:
            raise VideoError(f"{self._label}: cannot finish the video: {_cause(error)}") from error

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        with suppress(VideoError):  # an error in the with-block matters more than an unfinished file
            self.close()


def write_video(path: str | Path, frames: Iterable[Picture] | np.ndarray, fps: float, crf: int = 18) -> Path:
    """Write frames ([F, H, W, 3] or an iterable of [H, W, 3] uint8 RGB, or of `I420Image`) to a video file.

    The codec follows the extension and odd sizes are padded to even (see VideoWriter).
    """
    with VideoWriter(path, fps, crf) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def encode_mp4(frames: Iterable[np.ndarray] | np.ndarray, fps: float, crf: int = 18) -> bytes:
    """Encode frames to an in-memory MP4 (H.264 where available), e.g. for dataset shards.

    crf=0 is lossless in YUV 4:2:0 (only the RGB <-> YUV conversion loses a little); odd sizes are
    padded to even (see VideoWriter). The MP4 index sits at the end, so decode the whole buffer.
    """
    buffer = io.BytesIO()
    # mbtree off: with it, libx264's output on small frames (under about 100 px) depended on memory
    # left over from earlier work in the process, so the same frames could encode to other bytes.
    with VideoWriter(buffer, fps, crf, format="mp4", x264_params="mbtree=0") as writer:
        for frame in frames:
            writer.write(frame)
    return buffer.getvalue()


def _is_file_object(path: object) -> bool:
    return hasattr(path, "write") and not isinstance(path, str | os.PathLike)


def _format_from_extension(path: Path | None) -> str:
    suffix = path.suffix.lower() if path is not None else ""
    if suffix not in _OUTPUT_FORMATS:
        known = ", ".join(sorted(_OUTPUT_FORMATS))
        raise ValueError(f"{path}: cannot tell the video format from the extension (use one of {known})")
    return _OUTPUT_FORMATS[suffix]


def _default_codec(container_format: str) -> str:
    if container_format == "yuv4mpegpipe":
        return "rawvideo"
    if container_format == "avi":
        return "mpeg4"
    preferred = ("libvpx-vp9", "libvpx") if container_format == "webm" else ("libx264", "mpeg4")
    for name in preferred:
        if _has_encoder(name):
            return name
    raise VideoError(f"this FFmpeg build has none of the encoders {', '.join(preferred)}")


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


def _check_encoder(name: str) -> None:
    if not _has_encoder(name):
        raise VideoError(f"this FFmpeg build has no '{name}' encoder")


def _quality_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    if codec in {"libx264", "libx265"}:
        return {"crf": str(crf), "preset": preset}
    if codec in {"libvpx-vp9", "libvpx"}:
        return {"crf": str(crf), "b": "0"}  # b=0: constant quality rather than a bitrate target
    if codec == "mpeg4":
        quantiser = min(31, max(1, round(crf / 6) + 1))  # crf 0 → 1 (best), 18 → 4, 51 → 10
        return {"qmin": str(quantiser), "qmax": str(quantiser)}
    return {}


def yuv420_frame(image: np.ndarray) -> av.VideoFrame:
    """An RGB image [H, W, 3] uint8 (even sides) as the I420 frame H.264 encoders take, converted by
    OpenCV (BT.601, limited range, as libswscale's): at 720p on this CPU 1.3 ms, against 5.2 for the
    encoder's own conversion from RGB; for live outputs only, since its chroma is coarser (smooth test
    frames through lossless H.264: 36.0 dB against 38.9)."""
    return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


def _pad_to_even(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
