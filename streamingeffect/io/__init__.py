"""Video and image I/O on PyAV, and where input clips come from."""

from streamingeffect.io.images import (
    IMAGE_EXTENSIONS,
    ImageError,
    is_image_file,
    load_image,
    save_image,
    to_rgb,
)
from streamingeffect.io.sources import (
    SampleClip,
    SourceError,
    bundled_clips,
    find_videos,
    no_person_clip,
    packaged_file,
    resolve_sources,
)
from streamingeffect.io.video import (
    VIDEO_EXTENSIONS,
    Frame,
    VideoError,
    VideoInfo,
    VideoWriter,
    decode_mp4,
    encode_mp4,
    probe,
    read_clip,
    read_frames,
    write_video,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "ImageError",
    "SampleClip",
    "SourceError",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "bundled_clips",
    "decode_mp4",
    "encode_mp4",
    "find_videos",
    "is_image_file",
    "load_image",
    "no_person_clip",
    "packaged_file",
    "probe",
    "read_clip",
    "read_frames",
    "resolve_sources",
    "save_image",
    "to_rgb",
    "write_video",
]
