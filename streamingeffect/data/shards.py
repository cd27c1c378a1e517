"""WebDataset shards: one tar per shard, each sample a group of files sharing a key.

    <key>.source.mp4          source clip            [F, S, S, 3]  (H.264, high quality)
    <key>.target.mp4          target clip            [F, S, S, 3]
    <key>.masks.npz           edit: [F, S, S] bool (bit-packed), person: [F, S, S] uint8 0..255
    <key>.reference.png       the reference: target frame ``reference_index``
    <key>.reference_source.png  the source frame it was made from
    <key>.parse.npz           landmarks at S x S: face [F, 478, 2], hands [F, 2, 21, 2], pose [F, 33, 3]
    <key>.json                text, category, kind, op, region, provenance, augmentation, seeds
    <key>.reference_far.png         optional: the long reference, a target frame far from the window
    <key>.reference_far_source.png  (seconds away in a clip, another view of a photo), its source frame
    <key>.reference_far.npz         and its masks: edit [S, S] bool (bit-packed), person [S, S] uint8

Shards written before the long reference existed lack the three reference_far members; they read back
with the far fields set to None.

Tars are written with fixed metadata (mtime 0, root owner) so the same build gives the same bytes,
and atomically (temp file, then rename) so an interrupted build never leaves a torn shard.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from streamingeffect.io import decode_mp4, encode_mp4
from streamingeffect.parsing.types import FACE_POINTS, HAND_POINTS, MAX_HANDS, POSE_POINTS


@dataclass
class Sample:
    """One decoded training triplet at S x S."""

    key: str
    source: np.ndarray  # [F, S, S, 3] uint8
    target: np.ndarray  # [F, S, S, 3] uint8
    edit_mask: np.ndarray  # [F, S, S] bool
    person: np.ndarray  # [F, S, S] uint8, stable soft person mask 0..255
    reference: np.ndarray  # [S, S, 3] uint8, target frame at meta["reference_index"]
    reference_source: np.ndarray  # [S, S, 3] uint8
    face: np.ndarray  # [F, 478, 2] float32, NaN where absent
    hands: np.ndarray  # [F, 2, 21, 2] float32
    pose: np.ndarray  # [F, 33, 3] float32 x, y, visibility
    meta: dict[str, Any] = field(default_factory=dict)
    reference_far: np.ndarray | None = None  # [S, S, 3] uint8 target frame far from the window
    reference_far_source: np.ndarray | None = None  # [S, S, 3] uint8
    reference_far_edit: np.ndarray | None = None  # [S, S] bool
    reference_far_person: np.ndarray | None = None  # [S, S] uint8 0..255

    @property
    def has_far_reference(self) -> bool:
        return self.reference_far is not None

    @property
    def num_frames(self) -> int:
        return int(self.source.shape[0])


def empty_landmarks(num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.full((num_frames, FACE_POINTS, 2), np.nan, np.float32),
        np.full((num_frames, MAX_HANDS, HAND_POINTS, 2), np.nan, np.float32),
        np.full((num_frames, POSE_POINTS, 3), np.nan, np.float32),
    )


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def encode_sample(sample: Sample, fps: float, crf: int) -> dict[str, bytes]:
    """Sample -> {extension: bytes} as stored in the tar."""
    frames, height, width = sample.edit_mask.shape
    return {
        "source.mp4": encode_mp4(sample.source, fps=fps, crf=crf),
        "target.mp4": encode_mp4(sample.target, fps=fps, crf=crf),
        "masks.npz": _npz(
            edit=np.packbits(sample.edit_mask.astype(bool), axis=-1),
            person=sample.person.astype(np.uint8),
            shape=np.array([frames, height, width]),
        ),
        "reference.png": _png(sample.reference),
        "reference_source.png": _png(sample.reference_source),
        "parse.npz": _npz(
            face=sample.face.astype(np.float16),
            hands=sample.hands.astype(np.float16),
            pose=sample.pose.astype(np.float16),
        ),
        "json": json.dumps(sample.meta, sort_keys=True, indent=1).encode(),
    } | _far_files(sample)


def _far_files(sample: Sample) -> dict[str, bytes]:
    if not sample.has_far_reference:
        return {}
    assert sample.reference_far_source is not None and sample.reference_far_edit is not None
    assert sample.reference_far_person is not None
    height, width = sample.reference_far_edit.shape
    return {
        "reference_far.png": _png(sample.reference_far),  # type: ignore[arg-type]
        "reference_far_source.png": _png(sample.reference_far_source),
        "reference_far.npz": _npz(
            edit=np.packbits(sample.reference_far_edit.astype(bool), axis=-1),
            person=sample.reference_far_person.astype(np.uint8),
            shape=np.array([height, width]),
        ),
    }


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def decode_sample(key: str, files: dict[str, bytes]) -> Sample:
    """{extension: bytes} from a tar -> Sample. Raises KeyError naming a missing member."""
    missing = [ext for ext in SAMPLE_FILES if ext not in files]
    if missing:
        raise KeyError(f"sample {key} lacks {', '.join(missing)}")
    with np.load(io.BytesIO(files["masks.npz"])) as masks:
        frames, height, width = (int(v) for v in masks["shape"])
        edit = np.unpackbits(masks["edit"], axis=-1, count=width).astype(bool).reshape(frames, height, width)
        person = masks["person"]
    with np.load(io.BytesIO(files["parse.npz"])) as parse:
        face, hands, pose = (parse[name].astype(np.float32) for name in ("face", "hands", "pose"))
    return Sample(
        key=key,
        source=decode_mp4(files["source.mp4"])[:, :height, :width],
        target=decode_mp4(files["target.mp4"])[:, :height, :width],
        edit_mask=edit,
        person=person,
        reference=_image(files["reference.png"]),
        reference_source=_image(files["reference_source.png"]),
        face=face,
        hands=hands,
        pose=pose,
        meta=json.loads(files["json"]),
        **_decode_far(files),
    )


def _decode_far(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    if not all(name in files for name in FAR_FILES):
        return {}
    with np.load(io.BytesIO(files["reference_far.npz"])) as masks:
        height, width = (int(v) for v in masks["shape"])
        edit = np.unpackbits(masks["edit"], axis=-1, count=width).astype(bool).reshape(height, width)
        person = masks["person"]
    return {
        "reference_far": _image(files["reference_far.png"]),
        "reference_far_source": _image(files["reference_far_source.png"]),
        "reference_far_edit": edit,
        "reference_far_person": person,
    }


SAMPLE_FILES = (
    "source.mp4",
    "target.mp4",
    "masks.npz",
    "reference.png",
    "reference_source.png",
    "parse.npz",
    "json",
)
FAR_FILES = ("reference_far.png", "reference_far_source.png", "reference_far.npz")


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """Write (key, files) pairs to ``path`` atomically with fixed tar metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def iter_shard_files(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {extension: bytes}) per sample, in tar order (WebDataset's grouping rule)."""
    try:
        tar = tarfile.open(path, "r")  # noqa: SIM115 (closed by the with-block below)
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{path}: not a readable shard ({error})") from error
    with tar:
        key: str | None = None
        files: dict[str, bytes] = {}
        for member in tar:
            if not member.isfile():
                continue
            name = os.path.basename(member.name)
            member_key, _, ext = name.partition(".")
            if key is not None and member_key != key:
                yield key, files
                files = {}
            key = member_key
            handle = tar.extractfile(member)
            assert handle is not None  # a regular file always has a payload
            files[ext] = handle.read()
        if key is not None:
            yield key, files


def read_shard(path: Path) -> Iterator[Sample]:
    for key, files in iter_shard_files(path):
        yield decode_sample(key, files)
