"""The output is an edit of the full-resolution source: ``output = source + gate * change``.

The model works on a square window of the frame at its own low resolution (``Window``). What comes
back is a change (a delta decode) and a gate at that resolution (``LowResEdit``); both are brought to
the frame's full resolution by a fast guided filter (He & Sun 2015: the local linear coefficients are
fitted at low resolution against the low-resolution source, then upsampled and applied to the
full-resolution source), so an outline or a recolour follows the person's edges instead of the
model's coarse grid. The gate is exactly 0 wherever the effect's region is 0, and there the output
is the source, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

GATE_FLOOR = 1.0 / 64  # a full-resolution gate below this is 0: no faint haze of the change far away


def channel_peak(values: np.ndarray) -> np.ndarray:
    """[h, w, C] float32 -> [h, w] the largest absolute value over the channels (OpenCV's per-channel
    max: at 640x360x3 1.0 ms, numpy's max over the last axis 8.3)."""
    planes = cv2.split(np.abs(values))
    peak = planes[0]
    for plane in planes[1:]:
        peak = cv2.max(peak, plane)
    return peak


@dataclass(frozen=True)
class Window:
    """The model's square over the frame, in frame pixels; it may reach past the frame's edges (the
    part outside is the frame's border, replicated)."""

    x0: int
    y0: int
    side: int

    def cut(self, frame: np.ndarray, size: int) -> np.ndarray:
        """frame [H, W, ...] -> the window resized to size x size (area averaging), same dtype."""
        height, width = frame.shape[:2]
        top, left = max(0, -self.y0), max(0, -self.x0)
        bottom = max(0, self.y0 + self.side - height)
        right = max(0, self.x0 + self.side - width)
        inside = frame[max(0, self.y0) : self.y0 + self.side, max(0, self.x0) : self.x0 + self.side]
        if top or left or bottom or right:
            inside = cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_REPLICATE)
        return cv2.resize(inside, (size, size), interpolation=cv2.INTER_AREA)

    def cut_at(self, mask: np.ndarray, frame_size: tuple[int, int], size: int) -> np.ndarray:
        """``cut`` of a map [h, w] float32 of the frame at another resolution, without bringing it to the
        frame's size [H, W] first: sampled bilinearly over the window on a grid at least as fine as the
        map's own pixels there, then area-averaged to size x size (borders replicated). Close to
        ``cut`` of the map resized to the frame's size; at 720p a parse-resolution mask's cut took
        ~0.1 ms against ~2 that way."""
        height, width = frame_size
        if mask.shape[:2] == (height, width):
            return self.cut(mask, size)
        scale_y, scale_x = mask.shape[0] / height, mask.shape[1] / width
        grid = max(size, math.ceil(self.side * max(scale_x, scale_y)))
        step = self.side / grid  # frame pixels per grid pixel
        # Grid pixel centre u -> frame x0 + (u + 0.5) step - 0.5 -> the map's (x + 0.5) scale - 0.5.
        matrix = np.array(
            [
                [step * scale_x, 0.0, (self.x0 + 0.5 * step) * scale_x - 0.5],
                [0.0, step * scale_y, (self.y0 + 0.5 * step) * scale_y - 0.5],
            ]
        )
        sampled = cv2.warpAffine(
            mask,
            matrix,
            (grid, grid),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return sampled if grid == size else cv2.resize(sampled, (size, size), interpolation=cv2.INTER_AREA)

    def visible(self, height: int, width: int) -> tuple[slice, slice]:
        """The part of a height x width frame the window covers, as (rows, cols) slices of the frame."""
        y0, x0 = max(0, self.y0), max(0, self.x0)
        y1, x1 = min(height, self.y0 + self.side), min(width, self.x0 + self.side)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))

    def onto_frame(self, low: np.ndarray, height: int, width: int) -> np.ndarray:
        """A low-resolution map [r, r, C<=4] over the window -> bilinear values on the visible part of
        the frame [h_vis, w_vis, C] (the same pixel-centre convention as cv2.resize)."""
        rows, cols = self.visible(height, width)
        size = low.shape[0]
        scale = size / self.side
        matrix = np.array(
            [
                [scale, 0.0, (cols.start - self.x0 + 0.5) * scale - 0.5],
                [0.0, scale, (rows.start - self.y0 + 0.5) * scale - 0.5],
            ],
            np.float32,
        )
        out = cv2.warpAffine(
            low,
            matrix,
            (cols.stop - cols.start, rows.stop - rows.start),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return out.reshape(out.shape[0], out.shape[1], -1)


def person_window(person: np.ndarray, frame_size: tuple[int, int]) -> Window:
    """The largest square inside the frame, centred on the person (mask [h, w] at any resolution), as
    the models were trained; the frame's centre when nobody is in view."""
    height, width = frame_size
    side = min(height, width)
    cy, cx = height / 2, width / 2
    weights = person > 0.5
    if weights.any():
        ys, xs = np.nonzero(weights)
        cy = float(ys.mean() + 0.5) * height / person.shape[0]
        cx = float(xs.mean() + 0.5) * width / person.shape[1]
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return Window(x0, y0, side)


def whole_frame_window(frame_size: tuple[int, int]) -> Window:
    """A square holding the whole frame (the short side's margins replicated): for effects on the
    background or the scene, which reach every pixel."""
    height, width = frame_size
    side = max(height, width)
    return Window((width - side) // 2, (height - side) // 2, side)


@dataclass(frozen=True)
class GuidedFilter:
    """Fast guided filter settings, at the model's resolution (coefficients are fitted there)."""

    radius: int = 1
    eps: float = 1e-3  # on values in [0, 1]: larger smooths more, smaller follows the guide's edges harder

    def coefficients(self, guide: np.ndarray, values: np.ndarray) -> np.ndarray:
        """guide [r, r] and values [r, r, C] (C <= 2 here: packed by the caller) -> [r, r, 2C] = (a, b)
        of the local linear model values ~ a * guide + b, averaged over each window."""
        size = (2 * self.radius + 1,) * 2

        def box(x: np.ndarray) -> np.ndarray:
            out = cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)
            return out.reshape(x.shape)

        mean_i = box(guide)[..., None]
        mean_p = box(values)
        cov = box(guide[..., None] * values) - mean_i * mean_p
        var = box(guide * guide)[..., None] - mean_i**2
        a = cov / (var + self.eps)
        b = mean_p - a * mean_i
        return np.concatenate([box(a), box(b)], axis=-1)

    def upsample(
        self,
        window: Window,
        guide_low: np.ndarray,
        values_low: np.ndarray,
        guide_full: np.ndarray,
        frame_size: tuple[int, int],
    ) -> np.ndarray:
        """Values at the model's resolution [r, r, C] -> the frame's resolution over the window's
        visible part [h_vis, w_vis, C], following ``guide_full`` (the frame's gray over that part)."""
        channels = values_low.shape[-1]
        out = np.empty((*guide_full.shape[:2], channels), np.float32)
        for first in range(0, channels, 2):  # warpAffine takes at most 4 channels: (a, b) of 2 values
            part = np.ascontiguousarray(values_low[..., first : first + 2])
            count = part.shape[-1]
            up = window.onto_frame(self.coefficients(guide_low, part), *frame_size)
            out[..., first : first + count] = up[..., :count] * guide_full[..., None] + up[..., count:]
        return out


def gray(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] float32 luminance in [0, 1]."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


@dataclass(frozen=True)
class GateRule:
    """The gate derived from the predicted change: 0 below ``low`` (in [0, 1] units of the largest
    channel change, after a small blur), 1 above ``high``, linear between; times the effect's region."""

    low: float = 0.02
    high: float = 0.06
    blur: float = 0.7  # sigma in model pixels: isolated noisy pixels do not open the gate

    def __call__(self, change: np.ndarray, region: np.ndarray) -> np.ndarray:
        """change [r, r, 3] in [-1, 1] units of full scale, region [r, r] -> gate [r, r] in [0, 1]."""
        strength = channel_peak(change)
        if self.blur > 0:
            strength = cv2.GaussianBlur(strength, (0, 0), self.blur)
        ramp = np.clip((strength - self.low) / (self.high - self.low), 0.0, 1.0)
        return (ramp * region).astype(np.float32)


@dataclass
class LowResEdit:
    """One frame's edit at the model's resolution: what the model decided, before full resolution."""

    window: Window
    change: np.ndarray  # [r, r, 3] float32, decode(target) - decode(source), in [-1, 1] units of 255
    gate: np.ndarray  # [r, r] float32 in [0, 1]
    guide: np.ndarray  # [r, r] float32 the gray source the model saw (the guided filter's low guide)


def apply_edit(
    frame: np.ndarray,
    edit: LowResEdit,
    region: np.ndarray,
    guided: GuidedFilter | None = GuidedFilter(),
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """frame [H, W, 3] uint8 + its low-resolution edit -> the edited frame [H, W, 3] uint8.

    ``region`` [H, W] float in [0, 1] is where the effect may act at full resolution: the gate is
    multiplied by it, so the output is exactly the frame wherever it is 0 (and ``prior`` is 0).
    ``guided`` None upsamples bilinearly (for comparison). ``prior`` [H, W, 3] float (0-255 units):
    a full-resolution change applied first (the flow prior); the model's change corrects it.
    """
    height, width = frame.shape[:2]
    base = frame if prior is None else np.clip(np.rint(frame + prior), 0, 255).astype(np.uint8)
    rows, cols = edit.window.visible(height, width)
    bounds = region[rows, cols]
    if not bounds.any() or not edit.gate.any():
        return base.copy() if base is frame else base
    values = np.concatenate([edit.change, edit.gate[..., None]], axis=-1)  # [r, r, 4]
    if guided is None:
        full = edit.window.onto_frame(values, height, width)
    else:
        full = guided.upsample(edit.window, edit.guide, values, gray(base[rows, cols]), (height, width))
    gate = np.clip(full[..., 3], 0.0, 1.0) * bounds
    gate[gate < GATE_FLOOR] = 0.0
    out = base.copy()
    visible = out[rows, cols].astype(np.float32)
    visible += gate[..., None] * (255.0 * full[..., :3])
    out[rows, cols] = np.clip(np.rint(visible), 0, 255).astype(np.uint8)
    return out
