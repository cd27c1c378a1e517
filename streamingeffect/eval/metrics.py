"""Metrics used by the benchmarks: image fidelity (PSNR, SSIM, masked LPIPS, background L1), temporal
consistency (warp error, MAWE), face preservation (landmark displacement, identity distance) and
compute (FLOP counts against the measured matmul peak).

Images are float tensors [N, 3, H, W] in [-1, 1]; masks [N, 1, H, W] in {0, 1} with 1 = the edited
region. Videos for the flow- and face-based metrics are uint8 RGB [F, H, W, 3]. The background PSNR is
``psnr(a, b, 1 - mask)``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from streamingeffect.models.lpips import LPIPS

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # (K * data range)^2 with K = 0.01, 0.03 and range 1
MAWE_SCALE = 9.5  # StreamingT2V's c, fitted by regression so warp error and flow score share a scale
DLIB_SAME_PERSON = 0.6  # dlib's threshold: descriptors closer than this are taken as the same person
IDENTITY_HINT = 'identity distance needs dlib: pip install "streamingeffect[identity]"'
SOURCE_MEMO_SIZE = 16  # source-side results kept (see _of_sources)
_SOURCE_MEMO: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
T = TypeVar("T")


class MissingExtraError(ImportError):
    """An optional dependency group (a pip extra of streamingeffect) is not installed."""


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Mean of values, or their mean weighted by mask (broadcast over channels); NaN for an empty mask."""
    if mask is None:
        return float(values.mean())
    weight = mask.to(values.dtype).expand_as(values)
    total = weight.sum()
    return float((values * weight).sum() / total) if total > 0 else float("nan")


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB on the [0, 1] scale over all pixels, or only where ``mask`` is 1 (inf if identical)."""
    mse = _masked_mean(((a.float() - b.float()) / 2).pow(2), mask)
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def masked_lpips(lpips: LPIPS, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean LPIPS distance map over the mask (or the whole image)."""
    with torch.no_grad():
        distance = lpips.distance_map(a.float(), b.float())
    return _masked_mean(distance, mask)


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' (no padding) like the reference SSIM. OpenCV's
    separable filter: torch's depthwise convolution took ~1 s per 640x360 frame on one CPU thread."""
    kernel = window.detach().cpu().numpy().astype(np.float64)
    half = len(kernel) // 2
    images = x.detach().cpu().numpy()  # [N, C, H, W]
    out = np.empty((*images.shape[:2], images.shape[2] - 2 * half, images.shape[3] - 2 * half), images.dtype)
    for n in range(images.shape[0]):
        for c in range(images.shape[1]):
            full = cv2.sepFilter2D(images[n, c], -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)
            out[n, c] = full[half:-half, half:-half]
    return torch.from_numpy(out).to(x.device)


def _ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> [N, 1, H - 10, W - 10] SSIM averaged over channels."""
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels")
    x, y = (a.double() + 1) / 2, (b.double() + 1) / 2
    window = _gaussian_window().to(x.device)
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov = _blur(x * y, window) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + SSIM_C1) / (mu_x**2 + mu_y**2 + SSIM_C1)
    structure = (2 * cov + SSIM_C2) / (var_x + var_y + SSIM_C2)
    return (luminance * structure).mean(1, keepdim=True)


def ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """SSIM (Gaussian window 11, sigma 1.5, data range 1 after mapping [-1, 1] to [0, 1]) per channel,
    averaged over the image or, weighted by the mask at each window's centre, over the mask. Windows
    centred inside the mask still see up to 5 px outside it. 1 for identical images; NaN for an empty mask."""
    if mask is None:
        return float(_ssim_map(a, b).mean())
    r = SSIM_WINDOW // 2
    rows, cols = _mask_box(mask, r)  # only windows centred in the mask count: the rest is not computed
    values = _ssim_map(a[..., rows, cols], b[..., rows, cols])
    return _masked_mean(values, mask[..., rows, cols][..., r:-r, r:-r])


def _mask_box(mask: torch.Tensor, margin: int) -> tuple[slice, slice]:
    """The bounding box of ``mask`` [..., H, W] > 0 over all frames, grown by ``margin`` on each side
    (clipped to the image, at least 2 * margin + 1 pixels); the whole image for an empty mask."""
    height, width = mask.shape[-2:]
    present = (mask > 0).reshape(-1, height, width).any(0)
    if not present.any():
        return slice(0, height), slice(0, width)
    ys, xs = torch.nonzero(present.any(1)).flatten(), torch.nonzero(present.any(0)).flatten()

    def span(low: int, high: int, size: int) -> slice:
        start, stop = max(0, low - margin), min(size, high + 1 + margin)
        while stop - start < 2 * margin + 1:  # an SSIM window must fit
            start, stop = max(0, start - 1), min(size, stop + 1)
        return slice(start, stop)

    return span(int(ys[0]), int(ys[-1]), height), span(int(xs[0]), int(xs[-1]), width)


def background_l1(outputs: torch.Tensor, sources: torch.Tensor, mask: torch.Tensor) -> float:
    """Background preservation (BP) as VIVID-10M defines it: the L1 distance between the source and
    the edited video in the non-edited region, i.e. the mean absolute difference per pixel and channel
    where ``mask`` is 0, on the 0-255 pixel scale. Lower is better; 0 for an untouched background;
    NaN when the mask covers every pixel."""
    error = (outputs.float() - sources.float()).abs() * 127.5  # [-1, 1] -> 0..255 differences
    return _masked_mean(error, 1 - mask.float())


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from gray uint8 frame a to b -> [H, W, 2] (dx, dy) pixels."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(a, b, None)


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def _sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image sampled at p + flow(p) for every pixel p (bilinear, border replicated)."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _of_sources(what: str, sources: np.ndarray, compute: Callable[[], T]) -> T:
    """``compute()``, remembered for these source frames: a benchmark scores many methods' outputs
    against the same sources, and their flow, face mesh and face descriptors are the slow part."""
    frames = np.ascontiguousarray(sources)
    key = (what, frames.shape, hashlib.blake2b(frames.tobytes(), digest_size=16).hexdigest())
    if key in _SOURCE_MEMO:
        _SOURCE_MEMO.move_to_end(key)
        return _SOURCE_MEMO[key]
    value = _SOURCE_MEMO[key] = compute()
    while len(_SOURCE_MEMO) > SOURCE_MEMO_SIZE:
        _SOURCE_MEMO.popitem(last=False)
    return value


def _source_flows(sources: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per consecutive pair: flow from frame i + 1 back to frame i, and its non-occluded mask (float64)."""
    return _of_sources("flows", sources, lambda: list(_compute_source_flows(sources)))


def _compute_source_flows(sources: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(len(sources) - 1):
        a, b = _gray(sources[i]), _gray(sources[i + 1])
        backward = _flow(b, a)
        forward_at = _sample(_flow(a, b), backward)
        # Non-occluded: going back to frame i then forward again lands where it started.
        round_trip = backward + forward_at
        bound = 0.01 * ((backward**2).sum(-1) + (forward_at**2).sum(-1)) + 0.5
        yield backward, ((round_trip**2).sum(-1) < bound).astype(np.float64)


def _warp_residuals(outputs: np.ndarray, sources: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """Per consecutive pair: (output i + 1 minus output i warped onto it [H, W, 3] float32 0-255,
    non-occluded mask [H, W], source flow [H, W, 2])."""
    if len(outputs) != len(sources) or len(outputs) < 2:
        raise ValueError("warp error needs at least two frames, as many outputs as sources")
    for i, (backward, valid) in enumerate(_source_flows(sources)):
        warped = _sample(outputs[i].astype(np.float32), backward)
        yield outputs[i + 1].astype(np.float32) - warped, valid, backward


def warp_error(outputs: np.ndarray, sources: np.ndarray) -> float:
    """Temporal consistency as StreamV2V measures it: flow on the *source* frames, output frame i
    warped onto frame i + 1, mean absolute difference (0-255 scale) over pixels that pass a
    forward-backward occlusion check. outputs, sources: [F, H, W, 3] uint8. 0 for a static output of a
    static source; lower is steadier."""
    errors, weights = 0.0, 0.0
    for residual, valid, _ in _warp_residuals(outputs, sources):
        errors += float((np.abs(residual).mean(-1) * valid).sum())
        weights += float(valid.sum())
    return errors / max(weights, 1.0)


def mawe(outputs: np.ndarray, sources: np.ndarray) -> float:
    """StreamingT2V's motion-aware warp error, MAWE = W / (c * OFS) with c = 9.5: W is the mean warp
    error (squared L2 distance of RGB pixels, 0-255 scale, between an output frame and its warped
    neighbour, over non-occluded pixels) and OFS the optical flow score (mean flow magnitude in pixels
    over all pixels of all consecutive pairs). As in warp_error, the flow is the source's: a frozen
    output of a moving source scores badly through W. 0 when W is 0; inf when the source never moves
    but the output changes. Lower is better."""
    squared, weights, motion, vectors = 0.0, 0.0, 0.0, 0
    for residual, valid, flow in _warp_residuals(outputs, sources):
        squared += float(((residual**2).sum(-1) * valid).sum())
        weights += float(valid.sum())
        motion += float(np.linalg.norm(flow, axis=-1).sum())
        vectors += flow.shape[0] * flow.shape[1]
    warp, flow_score = squared / max(weights, 1.0), motion / vectors
    if warp == 0:
        return 0.0
    return warp / (MAWE_SCALE * flow_score) if flow_score > 0 else float("inf")


@dataclass(frozen=True)
class LandmarkDisplacement:
    """Face-geometry preservation from MediaPipe's face mesh (478 points, x and y).

    displacement: mean landmark distance between the source and output faces, in units of the source
        face's inter-ocular (outer eye corner) distance, over frames where both have a face; NaN if none.
    output_face_rate: share of source faces that are also found in the output; NaN if no source face.
    source_faces: number of source frames with a face (0: nothing could be measured).
    """

    displacement: float
    output_face_rate: float
    source_faces: int


def landmark_displacement(outputs: np.ndarray, sources: np.ndarray) -> LandmarkDisplacement:
    """Landmark drift of the output face against the source face; frames without a source face are
    skipped. outputs, sources: [F, H, W, 3] uint8 RGB, same size."""
    # Imported lazily: MediaPipe takes a second to load and most metrics never need it.
    from streamingeffect.parsing.indices import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
    from streamingeffect.parsing.mediapipe_parser import HumanParser

    if len(outputs) != len(sources):
        raise ValueError("landmark displacement needs as many outputs as sources")
    distances: list[float] = []
    source_faces = 0
    # Static mode: frames of different videos follow each other, so tracking would be wrong.
    with HumanParser(video_mode=False, hands=False, pose=False) as parser:
        meshes = _of_sources("face-mesh", sources, lambda: [parser.landmarks(s)[0][:, :2] for s in sources])
        for output, source_face in zip(outputs, meshes, strict=True):
            if np.isnan(source_face).any():
                continue
            source_faces += 1
            output_face = parser.landmarks(output)[0][:, :2]
            if np.isnan(output_face).any():
                continue
            inter_ocular = np.linalg.norm(source_face[LEFT_EYE_OUTER] - source_face[RIGHT_EYE_OUTER])
            drift = np.linalg.norm(output_face - source_face, axis=1).mean()
            distances.append(float(drift / max(inter_ocular, 1e-6)))
    return LandmarkDisplacement(
        displacement=float(np.mean(distances)) if distances else float("nan"),
        output_face_rate=len(distances) / source_faces if source_faces else float("nan"),
        source_faces=source_faces,
    )


def _face_models_dir() -> Path | None:
    # Found without importing face_recognition_models: its __init__ needs pkg_resources, which recent
    # setuptools no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if folder.is_dir() else None


def identity_available() -> bool:
    """True when dlib and the face-recognition model files (the ``identity`` extra) are installed."""
    return importlib.util.find_spec("dlib") is not None and _face_models_dir() is not None


@functools.cache
def _face_models() -> tuple[Any, Any, Any]:
    """(detector, 5-point shape predictor, ResNet face encoder), loaded once per process."""
    models = _face_models_dir()
    if importlib.util.find_spec("dlib") is None or models is None:
        raise MissingExtraError(IDENTITY_HINT)
    import dlib

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def _find_face(frame: np.ndarray, upsample: int) -> Any | None:
    """dlib's rectangle of the largest face in an RGB uint8 frame, or None without a face."""
    detector, _, _ = _face_models()
    faces = detector(np.ascontiguousarray(frame), upsample)
    return max(faces, key=lambda rect: rect.area()) if len(faces) else None


def _face_descriptor(frame: np.ndarray, face: Any) -> np.ndarray:
    """128-D dlib descriptor of the face in ``face`` (a dlib rectangle) of an RGB uint8 frame."""
    _, shapes, encoder = _face_models()
    image = np.ascontiguousarray(frame)
    return np.asarray(encoder.compute_face_descriptor(image, shapes(image, face)))


def identity_distance(outputs: np.ndarray, sources: np.ndarray, upsample: int = 1) -> float | None:
    """Mean Euclidean distance between dlib's 128-D face descriptors of source and output frames, over
    frames where the source shows a face (its largest); the output's descriptor is taken at the
    source's face box, since an edit keeps the face where it was (and dlib's detector, ~1 s a frame
    at 640x360 upsampled, runs once per source). None when no source frame shows a face. Below 0.6
    (dlib's same-person threshold, DLIB_SAME_PERSON) reads as the same person. ``upsample`` lets the
    detector find faces smaller than ~80 px. Raises MissingExtraError without the ``identity`` extra."""
    if len(outputs) != len(sources):
        raise ValueError("identity distance needs as many outputs as sources")

    def of_sources() -> list[tuple[Any, np.ndarray] | None]:
        found = [_find_face(s, upsample) for s in sources]
        return [
            None if f is None else (f, _face_descriptor(s, f)) for s, f in zip(sources, found, strict=True)
        ]

    distances = [
        float(np.linalg.norm(_face_descriptor(output, known[0]) - known[1]))
        for output, known in zip(outputs, _of_sources(f"dlib-{upsample}", sources, of_sources), strict=True)
        if known is not None
    ]
    return float(np.mean(distances)) if distances else None


def matmul_peak_flops(size: int = 1024, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput of this machine in FLOP/s (best of ``repeats`` square matmuls,
    at torch's current thread count): the peak to report a benchmark's achieved FLOP/s against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up: the first call pays for thread-pool start and allocation
    best = float("inf")
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the torch operations ``fn`` runs (PyTorch's FlopCounterMode: matmuls, convolutions and
    attention; elementwise ops count as 0; a multiply-add counts as 2)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
