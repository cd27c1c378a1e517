"""Tests of the procedural effect renderer: catalog integrity, robustness, determinism and locality."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from synthetic import make_clip, make_frame, make_parts

import streamingeffect.effects as fx
from streamingeffect.effects.families.common import FaceSticker
from streamingeffect.effects.families.face import FaceEdit
from streamingeffect.parsing.types import REGION_NAMES

FAMILY_NAMES = sorted(fx.FAMILIES)
# One representative category per family (the first preset), so every family is rendered.
FIRST_CATEGORY = {c.family: c for c in reversed(fx.catalog()) if c.op != "remove"}
PARTICLE_FAMILIES = [
    "hand_sparkles",
    "confetti",
    "falling_leaves",
    "floating_hearts",
    "bokeh",
    "fireflies",
    "rain",
    "snow",
    "lightning",
    "block_glitch",
    "digital_rain",
    "smoke",
    "fire_aura",
]


def render_clip(effect: fx.Effect, clip) -> list[np.ndarray]:
    return [effect.render(frame, parts) for frame, parts in clip]


# ---------------------------------------------------------------- catalog


def test_catalog_size_and_fields():
    cats = fx.catalog()
    assert len(cats) >= 200
    assert len(fx.FAMILIES) >= 40
    ids = [c.id for c in cats]
    assert len(ids) == len(set(ids)), "category ids must be unique"
    for c in cats:
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", c.id), c.id
        assert c.family in fx.FAMILIES, c.id
        assert c.region in (*REGION_NAMES, "scene"), c.id
        assert len(set(c.descriptions)) >= 3 and all(d.strip() for d in c.descriptions), c.id
        assert (c.kind, c.op) in {
            ("effect", None),
            ("edit", "add"),
            ("edit", "modify"),
            ("edit", "remove"),
        }, c.id
    assert {c.family for c in cats} == set(fx.FAMILIES), "every family has at least one category"
    assert [c.id for c in fx.catalog()] == ids, "catalog order is stable"


def test_every_add_has_its_remove():
    by_id = {c.id: c for c in fx.catalog()}
    adds = [c for c in by_id.values() if c.op == "add"]
    removes = [c for c in by_id.values() if c.op == "remove"]
    assert adds and len(adds) == len(removes)
    for add in adds:
        remove = by_id.get(f"remove_{add.id}")
        assert remove is not None, add.id
        assert (remove.family, remove.params, remove.region, remove.kind) == (
            add.family,
            add.params,
            add.region,
            "edit",
        )
        assert all("remove" in d or "take off" in d or "get rid" in d for d in remove.descriptions)


def test_unknown_id_suggests_close_ids():
    with pytest.raises(fx.UnknownEffectError, match="sunglasses_aviator_gold") as info:
        fx.get_category("sunglases_aviator_gold")
    assert isinstance(info.value, ValueError)


def test_lookup_search_and_make_effect():
    assert fx.get_category("neon_outline_cyan").family == "neon_outline"
    assert fx.search_categories("add gold aviator sunglasses")[0].id == "sunglasses_aviator_gold"
    assert (
        fx.search_categories("remove the gold aviator sunglasses")[0].id == "remove_sunglasses_aviator_gold"
    )
    assert fx.search_categories("") == []
    effect = fx.make_effect("hair_recolor_pink", seed=1, size=(64, 64))
    assert effect.family == "hair_recolor" and effect.params["color"] == (255, 80, 170)
    with pytest.raises(ValueError, match="unknown parameters"):
        fx.FAMILIES["neon_outline"]({"colour": (1, 2, 3)}, 0, (64, 64))


# ---------------------------------------------------------------- robustness


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("size", [(128, 128), (75, 101)])
def test_family_renders_with_and_without_anchors(family: str, size: tuple[int, int]):
    category = FIRST_CATEGORY[family]
    h, w = size
    variants = [
        make_parts(h, w, 0, hands=True),
        make_parts(h, w, 1),
        make_parts(h, w, 2, face=False, pose=False),  # no landmarks, masks only
        make_parts(h, w, 3, person=False, face=False, pose=False),  # nobody in view
    ]
    effect = fx.make_effect(category, seed=0, size=size)
    for parts in variants:
        frame = make_frame(parts)
        out = effect.render(frame, parts)
        assert out.shape == frame.shape and out.dtype == np.uint8, family
    # Anchored to the face: with no face in view (fresh renderer), nothing is drawn.
    if issubclass(fx.FAMILIES[family], (FaceSticker, FaceEdit)):
        fresh = fx.make_effect(category, seed=0, size=size)
        parts = make_parts(h, w, 0, face=False)
        frame = make_frame(parts)
        assert np.array_equal(fresh.render(frame, parts), frame), family


def test_tiny_frames_do_not_crash():
    parts = make_parts(48, 64, 0, hands=True)
    frame = make_frame(parts)
    for category in FIRST_CATEGORY.values():
        out = fx.make_effect(category, 0, (48, 64)).render(frame, parts)
        assert out.shape == frame.shape


# ---------------------------------------------------------------- temporal behaviour


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_same_seed_same_frames(family: str):
    clip = make_clip(4, 80, 96, hands=family == "hand_sparkles")
    category = FIRST_CATEGORY[family]
    first = render_clip(fx.make_effect(category, 7, (80, 96)), clip)
    second = render_clip(fx.make_effect(category, 7, (80, 96)), clip)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b), family


@pytest.mark.parametrize("family", PARTICLE_FAMILIES)
def test_different_seed_different_particles(family: str):
    clip = make_clip(4, 96, 96, hands=True)
    category = FIRST_CATEGORY[family]
    a = render_clip(fx.make_effect(category, 1, (96, 96)), clip)
    b = render_clip(fx.make_effect(category, 2, (96, 96)), clip)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True)), family


def test_sticker_follows_the_face():
    effect = fx.make_effect("sunglasses_aviator_gold", 0, (128, 128))
    centres = []
    for i, dx in enumerate((0.0, 20.0)):
        parts = make_parts(128, 128, i, shift=(dx, 0.0))
        effect.tracker = type(effect.tracker)()  # no smoothing between the two poses
        effect.render(make_frame(parts), parts)
        xs = np.nonzero(effect.coverage > 0.5)[1]
        centres.append(xs.mean())
    assert centres[1] - centres[0] == pytest.approx(20.0, abs=1.5)


def test_sticker_smoothing_reduces_jitter():
    def jitter(smooth: bool) -> float:
        rng = np.random.default_rng(0)
        effect = fx.make_effect("hat_top_hat_black", 0, (128, 128))
        positions = []
        for i in range(12):
            parts = make_parts(128, 128, i)
            parts.face = parts.face + rng.normal(0, 1.5, parts.face.shape).astype(
                np.float32
            )  # detector noise
            if not smooth:
                effect.tracker = type(effect.tracker)()
            effect.render(make_frame(parts), parts)
            positions.append(np.argwhere(effect.coverage > 0.5).mean(axis=0))
        return float(np.std(np.diff(np.array(positions), axis=0)))

    assert jitter(smooth=True) < 0.5 * jitter(smooth=False)


# ---------------------------------------------------------------- locality of edits


def edit_categories() -> list[fx.Category]:
    return [c for c in fx.catalog() if c.kind == "edit" and c.op in ("add", "modify")]


@pytest.mark.parametrize("category", edit_categories(), ids=lambda c: c.id)
def test_local_edits_stay_near_their_region(category: fx.Category):
    h = w = 128
    clip = make_clip(3, h, w)
    effect = fx.make_effect(category, 0, (h, w))
    scale = 0.34 * w * 0.42  # about the synthetic face's eye distance
    for frame, parts in clip:
        out = effect.render(frame, parts)
        changed = np.abs(out.astype(int) - frame.astype(int)).max(axis=2) > 8
        region = parts.regions.get(category.region) > 0.5
        if category.region == "hair":  # accessories sit on top of the head, above the hair mask
            region = region | (parts.regions.face > 0.5)
        margin = 1.6 * scale if isinstance(effect, FaceSticker) else 3
        size = 2 * round(margin) + 1
        near = cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        assert changed.any(), f"{category.id} changed nothing"
        outside = changed & (near == 0)
        assert outside.sum() == 0, (
            f"{category.id}: {outside.sum()} pixels changed far outside {category.region}"
        )
