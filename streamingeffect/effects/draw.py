"""Compositing, mask, colour and shape helpers shared by the effect families.

Conventions: images are float32 RGB in [0, 1] ([H, W, 3]) and masks float32 in [0, 1] ([H, W]) unless a
name says uint8. Sizes given to helpers are in pixels; families scale them with ``unit(frame)`` so an effect
looks the same at 64x48 and at 640x360.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

Color = tuple[int, int, int]  # RGB 0..255

# ---------------------------------------------------------------- conversion and blending


def to_float(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] -> float32 [H, W, C] in [0, 1]."""
    return frame.astype(np.float32) * np.float32(1.0 / 255.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [H, W, C] in [0, 1] -> uint8, rounded and clipped."""
    return cv2.convertScaleAbs(np.maximum(np.asarray(image, np.float32), 0.0), alpha=255.0)


def rgb(color: Sequence[float]) -> np.ndarray:
    """(r, g, b) 0..255 -> float32 [3] in [0, 1]."""
    return np.asarray(color, np.float32)[:3] / 255.0


def unit(image: np.ndarray) -> float:
    """Length scale of a frame: 1.0 at 256 px on the short side, so sizes follow resolution."""
    return min(image.shape[0], image.shape[1]) / 256.0


def expand(mask: np.ndarray, channels: int = 3) -> np.ndarray:
    """[H, W] (or [H, W, 1]) -> [H, W, C] copies.

    Multiplying [H, W, 3] by a broadcast [H, W, 1] is ~10x slower in numpy than by a full array, so every
    per-pixel weight is expanded first.
    """
    plane = np.ascontiguousarray(mask.reshape(mask.shape[:2]), np.float32)
    return cv2.merge([plane] * channels)


def solid(shape: tuple[int, ...], color: Sequence[float]) -> np.ndarray:
    """[H, W, 3] float image of one RGB colour (0..255)."""
    h, w = shape[:2]
    return cv2.merge([np.full((h, w), v, np.float32) for v in rgb(color)])


def scale_channels(
    image: np.ndarray, gains: Sequence[float], offset: Sequence[float] = (0, 0, 0)
) -> np.ndarray:
    """Per-channel ``image * gains + offset`` (fast path for colour casts)."""
    matrix = np.zeros((3, 4), np.float32)
    matrix[[0, 1, 2], [0, 1, 2]] = gains
    matrix[:, 3] = offset
    return cv2.transform(np.ascontiguousarray(image, np.float32), matrix)


def weigh(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``image`` [H, W, C] times a per-pixel ``weight`` [H, W] (fast: no size-1 broadcasting)."""
    return image * expand(weight, image.shape[2])


def power(values: np.ndarray, exponent: float) -> np.ndarray:
    """``max(values, 0) ** exponent`` for float32 maps, via OpenCV (several times faster than numpy)."""
    return cv2.pow(np.maximum(np.asarray(values, np.float32), 0.0), float(exponent))


def blend(base: np.ndarray, layer: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """Alpha-composite ``layer`` over ``base`` [H, W, 3] with a soft alpha [H, W] (or a scalar).

    ``layer`` may be an image or one float RGB colour [3] in [0, 1].
    """
    if isinstance(alpha, np.ndarray):
        alpha = expand(alpha, base.shape[2]) if alpha.ndim == 2 or alpha.shape[-1] == 1 else alpha
    if np.ndim(layer) == 1:
        layer = cv2.merge([np.full(base.shape[:2], v, np.float32) for v in layer])
    elif layer.shape != base.shape:
        layer = np.ascontiguousarray(np.broadcast_to(layer, base.shape))
    return base + (layer - base) * alpha


def screen(base: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Screen blend: brightens like projected light and never exceeds 1."""
    return 1.0 - (1.0 - base) * (1.0 - np.clip(light, 0.0, 1.0))


def add_light(base: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Additive light, clipped; brighter and more 'neon' than screen."""
    return np.minimum(base + light, 1.0)


def colorize(mask: np.ndarray, color: Sequence[float], strength: float = 1.0) -> np.ndarray:
    """[H, W] intensity -> [H, W, 3] light of one colour."""
    plane = np.asarray(mask, np.float32)
    return cv2.merge([plane * v for v in rgb(color) * np.float32(strength)])


def luminance(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] -> [H, W] Rec.601 luma."""
    return cv2.cvtColor(np.ascontiguousarray(image, np.float32), cv2.COLOR_RGB2GRAY)


def gray3(image: np.ndarray) -> np.ndarray:
    """Grey version of an image, still [H, W, 3]."""
    return expand(luminance(image))


def saturate(image: np.ndarray, amount: float) -> np.ndarray:
    """Scale saturation around the luma: 0 = grey, 1 = unchanged, >1 = more vivid."""
    gray = gray3(image)
    return np.clip(gray + (image - gray) * amount, 0.0, 1.0)


def contrast(image: np.ndarray, amount: float, pivot: float = 0.5) -> np.ndarray:
    return np.clip((image - pivot) * amount + pivot, 0.0, 1.0)


# ---------------------------------------------------------------- colour spaces


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """float RGB -> float HSV with H in degrees [0, 360), S and V in [0, 1]."""
    return cv2.cvtColor(np.ascontiguousarray(image, np.float32), cv2.COLOR_RGB2HSV)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(hsv, np.float32), cv2.COLOR_HSV2RGB)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """float RGB -> CIE L*a*b* (L in [0, 100], a and b roughly [-127, 127])."""
    return cv2.cvtColor(np.ascontiguousarray(image, np.float32), cv2.COLOR_RGB2LAB)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    return np.clip(cv2.cvtColor(np.ascontiguousarray(lab, np.float32), cv2.COLOR_LAB2RGB), 0.0, 1.0)


def color_lab(color: Sequence[float]) -> np.ndarray:
    """One RGB colour (0..255) -> its Lab [3]."""
    return rgb_to_lab(rgb(color).reshape(1, 1, 3)).reshape(3)


def hue_rgb(hue_deg: np.ndarray | float, sat: float = 1.0, val: float = 1.0) -> np.ndarray:
    """Hue (degrees, scalar or array [...]) -> float RGB [..., 3]; vectorised HSV to RGB."""
    h = (np.asarray(hue_deg, np.float32) % 360.0) / 60.0
    k = (np.array([5.0, 3.0, 1.0], np.float32) + h[..., None]) % 6.0
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return val * (1.0 - sat * ramp)


@lru_cache(maxsize=64)
def _gradient_lut(colors: tuple[Color, ...], positions: tuple[float, ...]) -> np.ndarray:
    xs = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(xs, positions, [c[i] for c in colors]) for i in range(3)], axis=1)
    return (table / 255.0).astype(np.float32)  # [256, 3]


def gradient_map(
    values: np.ndarray, colors: Sequence[Color], positions: Sequence[float] | None = None
) -> np.ndarray:
    """Map [H, W] values in [0, 1] through a colour ramp -> [H, W, 3] (thermal, fire, duotone...)."""
    if positions is None:
        positions = np.linspace(0.0, 1.0, len(colors)).tolist()
    lut = _gradient_lut(tuple(tuple(int(v) for v in c) for c in colors), tuple(float(p) for p in positions))
    idx = cv2.convertScaleAbs(np.maximum(np.asarray(values, np.float32), 0.0), alpha=255.0)
    return cv2.LUT(cv2.merge([idx, idx, idx]), lut.reshape(256, 1, 3))


def recolor(
    image: np.ndarray,
    mask: np.ndarray,
    color: Sequence[float],
    strength: float = 1.0,
    lightness: float = 0.8,
    texture: float = 1.1,
) -> np.ndarray:
    """Recolour the masked area towards ``color`` in Lab while keeping its shading and texture.

    ``lightness`` moves the area's mean lightness towards the colour's (so black hair can turn pink),
    ``texture`` scales the local lightness detail (strands, folds) around that mean.
    """
    box = mask_bbox(mask, 0.004)
    if box is None:
        return image
    x0, y0, x1, y1 = box
    crop, weight = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    lab = rgb_to_lab(crop)
    target = color_lab(color)
    total = float(weight.sum()) + 1e-6
    mean_l = float((lab[..., 0] * weight).sum()) / total
    new = np.empty_like(lab)
    new[..., 0] = mean_l + (target[0] - mean_l) * lightness + (lab[..., 0] - mean_l) * texture
    new[..., 1:] = target[1:] + 0.15 * (lab[..., 1:] - target[1:])
    out = image.copy()
    out[y0:y1, x0:x1] = blend(crop, lab_to_rgb(new), weight * strength)
    return out


# ---------------------------------------------------------------- blur and morphology


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas run on a downscaled copy (same look, a fraction of the cost)."""
    if sigma < 0.3:
        return image
    h, w = image.shape[:2]
    factor = int(sigma // 2.5)
    if factor >= 2 and min(h, w) // factor >= 8:
        small = cv2.resize(image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(image, (0, 0), sigma)


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(blur(mask.astype(np.float32, copy=False), sigma), 0.0, 1.0)


@lru_cache(maxsize=64)
def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    r = round(radius)
    return mask if r < 1 else cv2.dilate(mask, _disk(r))


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    r = round(radius)
    return mask if r < 1 else cv2.erode(mask, _disk(r))


def edge_band(mask: np.ndarray, width: float) -> np.ndarray:
    """Band of ``width`` px centred on the mask boundary (a soft outline)."""
    half = max(width / 2.0, 0.5)
    return np.clip(dilate(mask, half) - erode(mask, half), 0.0, 1.0)


def outer_band(mask: np.ndarray, width: float) -> np.ndarray:
    """Band of ``width`` px just outside the mask boundary."""
    return np.clip(dilate(mask, width) - mask, 0.0, 1.0)


def glow(mask: np.ndarray, color: Sequence[float], sigma: float, strength: float = 1.0) -> np.ndarray:
    """Soft coloured light spread around a mask: [H, W] -> [H, W, 3]."""
    return colorize(blur(mask, sigma), color, strength)


# ---------------------------------------------------------------- mask statistics


def mask_bbox(mask: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) exclusive bounds of mask > threshold, or None when empty."""
    rows = np.flatnonzero((mask > threshold).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((mask[rows[0] : rows[-1] + 1] > threshold).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def mask_centroid(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """[2] x, y centre of mass of mask > threshold, or None when empty."""
    ys, xs = np.nonzero(mask > threshold)
    if xs.size == 0:
        return None
    return np.array([xs.mean(), ys.mean()], np.float32)


def mask_top(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """[2] x, y of the top of the mask (middle of its highest row), or None when empty."""
    rows = np.flatnonzero((mask > threshold).any(axis=1))
    if rows.size == 0:
        return None
    xs = np.flatnonzero(mask[rows[0]] > threshold)
    return np.array([xs.mean(), rows[0]], np.float32)


def grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate maps (x [H, W], y [H, W]) as float32."""
    h, w = shape[:2]
    return _grid(h, w)


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def radial(shape: tuple[int, ...], center: Sequence[float], radius_x: float, radius_y: float) -> np.ndarray:
    """[H, W] normalised elliptical distance from ``center`` (1.0 on the ellipse)."""
    xs, ys = grid(shape)
    return np.sqrt(
        ((xs - center[0]) / max(radius_x, 1e-3)) ** 2 + ((ys - center[1]) / max(radius_y, 1e-3)) ** 2
    )


# ---------------------------------------------------------------- procedural textures


def periodic_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth tileable noise [H, W] in [0, 1], features about ``scale`` px wide (scrolls with np.roll)."""
    h, w = shape
    white = rng.standard_normal((h, w)).astype(np.float32)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    lowpass = np.exp(-((fx**2 + fy**2) * (np.pi * max(scale, 1.0)) ** 2 / 2.0))
    noise = np.fft.irfft2(np.fft.rfft2(white) * lowpass, s=(h, w)).astype(np.float32)
    noise -= noise.min()
    return noise / max(float(noise.max()), 1e-6)


def stripes(u: np.ndarray, period: float, duty: float = 0.5, softness: float = 0.08) -> np.ndarray:
    """Anti-aliased stripe pattern in [0, 1] along the coordinate map ``u`` (1 inside a stripe)."""
    phase = (u / period) % 1.0
    dist = np.minimum(phase, 1.0 - phase) - (1.0 - duty) / 2.0  # >0 inside the stripe
    return np.clip(0.5 + dist / softness, 0.0, 1.0)


# ---------------------------------------------------------------- shapes (in any unit; see place())


def ellipse_pts(
    cx: float, cy: float, rx: float, ry: float, n: int = 32, start: float = 0.0, end: float = 360.0
):
    """[n, 2] points on an ellipse arc (degrees, clockwise on screen since y points down)."""
    t = np.radians(np.linspace(start, end, n, endpoint=(end - start) % 360 != 0))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def star_pts(cx: float, cy: float, r_out: float, r_in: float, points: int = 5, rot: float = -90.0):
    t = np.radians(rot + np.arange(2 * points) * 180.0 / points)
    r = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def heart_pts(cx: float, cy: float, size: float, n: int = 40) -> np.ndarray:
    """Heart of about ``size`` width centred on (cx, cy), point down."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([cx + x * size / 34.0, cy + (y + 2.5) * size / 34.0], axis=1)


def bezier_pts(p0: Sequence[float], p1: Sequence[float], p2: Sequence[float], n: int = 16) -> np.ndarray:
    """[n, 2] points on the quadratic Bezier curve p0 -> p2 pulled towards p1."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


def stroke_pts(centerline: np.ndarray, width_start: float, width_end: float) -> np.ndarray:
    """Polygon [2n, 2] of a tapered stroke around a centre line [n, 2] (horns, brush strokes)."""
    d = np.gradient(centerline, axis=0)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(
        np.linalg.norm(d, axis=1, keepdims=True), 1e-9
    )
    half = np.linspace(width_start, width_end, len(centerline))[:, None] / 2.0
    return np.concatenate([centerline + normal * half, (centerline - normal * half)[::-1]])


def place(points: np.ndarray, origin: Sequence[float], scale: float, angle: float) -> np.ndarray:
    """Map shape points [N, 2] from a local frame (x along ``angle``, y 90 degrees clockwise) to pixels."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return np.asarray(origin, np.float64) + (np.asarray(points, np.float64) * scale) @ rot.T


# ---------------------------------------------------------------- sticker canvas

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions, so stickers glide instead of snapping to pixels


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


class Canvas:
    """A premultiplied RGBA uint8 layer [H, W, 4] drawn with anti-aliased cv2 primitives.

    cv2 anti-aliasing on a zero-initialised RGBA buffer yields premultiplied colour, so ``over`` is a
    single multiply-add. Shapes drawn later cover earlier ones.
    """

    def __init__(self, height: int, width: int):
        self.rgba = np.zeros((height, width, 4), np.uint8)

    @staticmethod
    def _paint(color: Sequence[float], opacity: float) -> tuple[float, float, float, float]:
        o = float(np.clip(opacity, 0.0, 1.0))
        return (color[0] * o, color[1] * o, color[2] * o, 255.0 * o)

    def polygon(self, points: np.ndarray, color: Sequence[float], opacity: float = 1.0) -> None:
        if len(points) >= 3 and np.isfinite(points).all():
            cv2.fillPoly(self.rgba, [_fixed(points)], self._paint(color, opacity), cv2.LINE_AA, _SHIFT)

    def polygons(self, contours: list[np.ndarray], color: Sequence[float], opacity: float = 1.0) -> None:
        """Fill several contours at once with the even-odd rule: inner contours cut holes (eye masks)."""
        ok = [c for c in contours if len(c) >= 3 and np.isfinite(c).all()]
        if ok:
            cv2.fillPoly(self.rgba, [_fixed(c) for c in ok], self._paint(color, opacity), cv2.LINE_AA, _SHIFT)

    def fill_many(
        self, polygons: np.ndarray, colors: np.ndarray, opacities: np.ndarray | None = None
    ) -> None:
        """Fill N polygons [N, P, 2] with their own colours [N, 3] (0..255), in order (particles)."""
        if len(polygons) == 0:
            return
        fixed = np.round(np.asarray(polygons, np.float64) * (1 << _SHIFT)).astype(np.int32)
        o = np.ones(len(polygons)) if opacities is None else np.clip(opacities, 0.0, 1.0)
        paints = np.concatenate([np.asarray(colors, np.float64) * o[:, None], 255.0 * o[:, None]], axis=1)
        for poly, paint in zip(fixed, paints.tolist(), strict=True):
            cv2.fillPoly(self.rgba, [poly], paint, cv2.LINE_AA, _SHIFT)

    def polyline(
        self,
        points: np.ndarray,
        color: Sequence[float],
        thickness: float,
        closed: bool = False,
        opacity: float = 1.0,
    ) -> None:
        if len(points) >= 2 and np.isfinite(points).all():
            t = max(1, round(thickness))
            cv2.polylines(
                self.rgba, [_fixed(points)], closed, self._paint(color, opacity), t, cv2.LINE_AA, _SHIFT
            )

    def circle(self, center: Sequence[float], radius: float, color: Sequence[float], opacity: float = 1.0):
        n = int(np.clip(radius * 1.5, 12, 48))
        self.polygon(ellipse_pts(center[0], center[1], radius, radius, n), color, opacity)

    @property
    def alpha(self) -> np.ndarray:
        """[H, W] float coverage."""
        return self.rgba[..., 3].astype(np.float32) * np.float32(1.0 / 255.0)

    def over(self, base: np.ndarray) -> np.ndarray:
        """Composite over a float image [H, W, 3]."""
        layer = to_float(self.rgba)
        return base * (1.0 - expand(layer[..., 3])) + layer[..., :3]

    def over_uint8(self, frame: np.ndarray) -> np.ndarray:
        """Composite over a uint8 frame; pixels the canvas does not touch stay bit-identical."""
        alpha = self.rgba[..., 3]
        if not alpha.any():
            return frame.copy()
        out = frame.copy()
        ys, xs = np.nonzero(alpha)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = to_float(self.rgba[y0:y1, x0:x1])
        base = to_float(frame[y0:y1, x0:x1])
        out[y0:y1, x0:x1] = to_uint8(base * (1.0 - expand(crop[..., 3])) + crop[..., :3])
        return out


# ---------------------------------------------------------------- point splatting (particles)


def splat(shape: tuple[int, ...], points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bilinear splat of N points [N, 2] with colours [N, 3] onto a zero image [H, W, 3]."""
    h, w = shape[:2]
    out = np.zeros((h * w, 3), np.float32)
    if len(points) == 0:
        return out.reshape(h, w, 3)
    x0 = np.floor(points[:, 0]).astype(np.int64)
    y0 = np.floor(points[:, 1]).astype(np.int64)
    fx = (points[:, 0] - x0).astype(np.float32)[:, None]
    fy = (points[:, 1] - y0).astype(np.float32)[:, None]
    for dx, dy, wgt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        flat = yi[ok] * w + xi[ok]
        contrib = values[ok] * wgt[ok]
        for c in range(3):
            out[:, c] += np.bincount(flat, weights=contrib[:, c], minlength=h * w).astype(np.float32)
    return out.reshape(h, w, 3)


def splat1(shape: tuple[int, ...], points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bilinear splat of N points [N, 2] with weights [N] onto a zero map [H, W]."""
    h, w = shape[:2]
    out = np.zeros(h * w, np.float32)
    if len(points) == 0:
        return out.reshape(h, w)
    x0 = np.floor(points[:, 0]).astype(np.int64)
    y0 = np.floor(points[:, 1]).astype(np.int64)
    fx, fy = points[:, 0] - x0, points[:, 1] - y0
    for dx, dy, wgt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out += np.bincount(yi[ok] * w + xi[ok], weights=(weights * wgt)[ok], minlength=h * w).astype(
            np.float32
        )
    return out.reshape(h, w)


@lru_cache(maxsize=16)
def star_kernel(radius: int) -> np.ndarray:
    """A four-pointed twinkle kernel [2r+1, 2r+1]: bright core, long thin cross, short diagonals."""
    r = max(1, radius)
    ax = np.arange(-r, r + 1, dtype=np.float32)
    xs, ys = np.meshgrid(ax, ax)
    dist = np.sqrt(xs**2 + ys**2) / r
    arms = np.exp(-(np.minimum(np.abs(xs), np.abs(ys)) ** 2) / 0.6) * np.clip(1 - dist, 0, 1) ** 1.5
    diag = np.exp(-(np.abs(np.abs(xs) - np.abs(ys)) ** 2) / 0.6) * np.clip(1 - 1.8 * dist, 0, 1)
    core = np.exp(-(xs**2 + ys**2) / 1.5)
    return np.maximum.reduce([arms, 0.6 * diag, core]).astype(np.float32)
