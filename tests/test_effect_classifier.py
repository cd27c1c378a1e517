"""The effect classifier: it learns two synthetic families, saves and loads, and the bundled weights
classify a real frame pair."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fixtures_data import FPS, synthetic_sample

from streamingeffect.cli import main
from streamingeffect.data.shards import encode_sample, write_shard
from streamingeffect.effects import catalog, get_category
from streamingeffect.eval.effect_classifier import (
    BUNDLED,
    NONE,
    ClassifierTraining,
    EffectClassifier,
    accuracy,
    classify,
    family_labels,
    load_effect_classifier,
    load_pairs,
    train_effect_classifier,
)
from streamingeffect.io import bundled_clips, read_frames

TINT, EDGES = "color_grade", "neon_edges"  # two families with very different looks


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny convolutions only lose from intra-op threads, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tinted(frames: np.ndarray) -> np.ndarray:
    return np.clip(frames * np.array([0.5, 0.8, 1.0]) + np.array([0, 30, 90]), 0, 255).astype(np.uint8)


def _edged(frames: np.ndarray) -> np.ndarray:
    out = frames.copy()
    for frame in out:
        edges = cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 20, 60) > 0
        frame[cv2.dilate(edges.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0] = (255, 0, 255)
    return out


def two_family_dataset(root: Path, samples: int = 8) -> Path:
    """Synthetic clips whose targets are a colour tint (even samples) or magenta edges (odd ones)."""
    picked = []
    for i in range(samples):
        sample = synthetic_sample(i, frames=4, size=32)
        family = TINT if i % 2 == 0 else EDGES
        sample.target = _tinted(sample.source) if family == TINT else _edged(sample.source)
        category = next(c for c in catalog() if c.family == family)
        sample.meta |= {"category": category.id, "family": family}
        picked.append(sample)
    name = "shards/shard-00000.tar"
    write_shard(root / name, [(s.key, encode_sample(s, fps=FPS, crf=0)) for s in picked])
    manifest = {"shards": [{"name": name, "samples": samples, "keys": [s.key for s in picked]}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_label_set_is_every_family_plus_none() -> None:
    labels = family_labels()
    assert labels[-1] == NONE
    assert set(labels[:-1]) == {c.family for c in catalog()}
    assert get_category("neon_outline_cyan").family in labels


def test_training_learns_two_families(tmp_path: Path) -> None:
    data = two_family_dataset(tmp_path / "data")
    training = ClassifierTraining(batch_size=16, lr=3e-3)
    out = train_effect_classifier(
        data, tmp_path / "model", steps=40, training=training, widths=(8, 16, 32), progress=False
    )
    model = load_effect_classifier(out)
    pairs = load_pairs(data, model.labels, size=32)
    names = [model.labels[i] for i in pairs.label]
    # chance over the two families is 0.5 (and the model could also answer "none" or any other family)
    assert accuracy(model, pairs.source, pairs.target, names) >= 0.8
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["steps"] == 40 and config["model"]["labels"] == family_labels()


def test_accuracy_rejects_a_wrong_number_of_names() -> None:
    model = EffectClassifier(family_labels(), widths=(8, 16))
    frames = np.zeros((3, 40, 40, 3), np.uint8)
    assert classify(model, frames, frames).shape == (3,)
    with pytest.raises(ValueError, match="2 family names for 3"):
        accuracy(model, frames, frames, [TINT, EDGES])


def test_cli_trains_and_saves(tmp_path: Path) -> None:
    data = two_family_dataset(tmp_path / "data", samples=2)
    out = tmp_path / "model"
    argv = ["train", "effect-classifier", "--data", str(data), "--out", str(out), "--steps", "2"]
    assert main(argv) == 0
    assert load_effect_classifier(out).labels == family_labels()


def test_bundled_weights_classify_a_real_pair() -> None:
    model = load_effect_classifier()
    assert (BUNDLED / "model.safetensors").stat().st_size < 2_000_000
    carphone = next(c for c in bundled_clips() if c.name == "carphone")
    frames = np.stack([f.image for f in read_frames(carphone.path, stop=2)])
    labels = family_labels()
    unedited = classify(model, frames, frames)
    assert [model.labels[i] for i in unedited] == [NONE, NONE]
    tinted = model.labels[classify(model, frames, _tinted(frames))[0]]
    assert tinted in labels and tinted != NONE
