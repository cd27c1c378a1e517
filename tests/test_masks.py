"""Mask geometry: VIVID augmentation, the area filter, temporal stabilisation, regions and crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synthetic import make_parts

from streamingeffect.parsing.augment import (
    AUGMENT_KINDS,
    area_ok,
    augment,
    box,
    expand,
    hull,
    random_augmentation,
)
from streamingeffect.parsing.masks import CropBox, person_crop, region_masks, stabilize_person


def l_shape(frames: int = 3, size: int = 64) -> np.ndarray:
    """An L-shaped mask: concave, so hull and box differ from it and from each other."""
    mask = np.zeros((frames, size, size), bool)
    mask[:, 10:50, 10:20] = True
    mask[:, 40:50, 10:40] = True
    return mask


def test_box_is_the_bounding_rectangle() -> None:
    out = box(l_shape())
    assert out[:, 10:50, 10:40].all()
    assert out.sum() == 3 * 40 * 30


def test_hull_fills_the_concavity_but_stays_inside_the_box() -> None:
    mask = l_shape()
    out = hull(mask)
    assert out[:, 30, 25].all()  # inside the triangle the L leaves open
    assert not out[:, 12, 38].any()  # the far corner of the box is outside the hull
    assert (out <= box(mask)).all()


def test_expand_grows_by_the_radius() -> None:
    mask = np.zeros((1, 64, 64), bool)
    mask[0, 32, 32] = True
    out = expand(mask, 5)
    assert out[0, 32, 37] and out[0, 27, 32]
    assert not out[0, 32, 38]


@pytest.mark.parametrize("kind", AUGMENT_KINDS)
def test_every_augmentation_contains_the_original(kind: str) -> None:
    mask = l_shape()
    out = augment(mask, kind, np.random.default_rng(0))  # type: ignore[arg-type]
    assert out.shape == mask.shape
    assert (out >= mask).all()


def test_augmentations_are_ordered_by_area() -> None:
    mask = l_shape()
    rng = np.random.default_rng(0)
    areas = {k: augment(mask, k, rng).sum() for k in ("none", "hull", "box")}
    assert areas["none"] < areas["hull"] < areas["box"]
    assert augment(mask, "box_expand", rng).sum() > areas["box"]


def test_unknown_augmentation_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown mask augmentation"):
        augment(l_shape(), "blob", np.random.default_rng(0))  # type: ignore[arg-type]


def test_area_filter_drops_tiny_and_huge_masks() -> None:
    tiny = np.zeros((2, 100, 100), bool)
    tiny[:, 0, 0] = True
    huge = np.ones((2, 100, 100), bool)
    assert not area_ok(tiny)
    assert not area_ok(huge)
    assert area_ok(l_shape())
    assert random_augmentation(tiny, np.random.default_rng(0)) is None
    assert random_augmentation(huge, np.random.default_rng(0)) is None


def test_random_augmentation_is_deterministic_and_within_limits() -> None:
    mask = l_shape()
    kind_a, out_a = random_augmentation(mask, np.random.default_rng(7)) or ("", None)
    kind_b, out_b = random_augmentation(mask, np.random.default_rng(7)) or ("", None)
    assert kind_a == kind_b and out_a is not None and out_b is not None
    assert np.array_equal(out_a, out_b)
    assert area_ok(out_a)


def test_stabilize_person_removes_a_one_frame_dropout_and_speckle() -> None:
    probs = np.zeros((5, 48, 48), np.uint8)
    probs[:, 10:40, 14:34] = 255
    probs[2] = 0  # the segmenter misses the person on one frame
    probs[:, 2, 2] = 255  # an isolated false pixel
    stable = stabilize_person(probs)
    assert stable.dtype == np.float32 and stable.shape == probs.shape
    assert stable[2, 25, 24] > 0.5
    assert stable[:, 2, 2].max() < 0.5


def test_regions_on_a_synthetic_person() -> None:
    parts = make_parts(128, 128)
    regions = region_masks(parts.regions.person, parts.face, parts.hands, parts.pose)
    person = regions.person > 0.5
    for name in ("face", "hair", "torso"):
        region = regions.get(name) > 0.5
        assert region.any(), name
        assert (region <= person).all(), f"{name} leaks outside the person"
    assert not ((regions.face > 0.5) & (regions.hair > 0.5)).any()
    assert not ((regions.face > 0.5) & (regions.torso > 0.5)).any()
    assert np.allclose(regions.background, 1 - regions.person)


def test_regions_without_landmarks_are_empty_or_fall_back() -> None:
    person = np.zeros((64, 64), np.float32)
    cv2.ellipse(person, (32, 40), (20, 30), 0, 0, 360, 1.0, -1)
    regions = region_masks(person, None, [], None)
    assert not regions.face.any() and not regions.hair.any() and not regions.hands.any()
    assert regions.torso.any()  # the lower part of the person


def test_person_crop_centres_on_the_person() -> None:
    person = np.zeros((2, 100, 200), np.uint8)
    person[:, 20:80, 150:190] = 255
    crop = person_crop(person)
    assert crop == CropBox(100, 0, 100, 100)
    assert person_crop(np.zeros((1, 100, 200), np.uint8)) == CropBox(50, 0, 100, 100)
