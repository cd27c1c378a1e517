"""The full-resolution end of the per-frame path as a compiled pass over the pixels (numba).

In numpy or OpenCV the fast guided filter's application and the composite take about a dozen passes
over float arrays of the window's size (measured at 720p on this CPU: 37 ms with OpenCV's vectorised
calls, 72 ms with numpy, against the frame's 33 ms); fused, each pixel is read and written once and
pixels outside the scope, or where the gate is exactly 0, are skipped.

`apply_guided_edit`: the scope and the fast guided filter's coefficients sampled bilinearly from
their low resolutions, the guide the pixel's own gray (OpenCV's fixed-point RGB -> gray),
``value = a * guide + b`` for the change (3 channels) and the gate, ``gate = clip(gate, 0, 1) *
scope`` (0 below ``floor``), ``out = round(out + 255 * gate * change)``, rounded to the nearest
integer and saturated to 0..255; pixels where nothing is added are not touched. Sampling follows
cv2.resize's pixel-centre convention. (The keyframe prior's carry is a gather that OpenCV's remap
does faster than a compiled loop: `carry.carry_change`.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streamingeffect.pipeline.edit import Window

Box = tuple[slice, slice]


@njit(cache=True, nogil=True)
def _axis(count: int, start: int, origin: float, scale: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """For output pixels start .. start+count-1: the lower source index and the weight of the next
    one, sampling at (x - origin + 0.5) * scale - 0.5, clamped to [0, limit - 1]."""
    lower = np.empty(count, np.int64)
    weight = np.empty(count, np.float32)
    for k in range(count):
        position = (start + k - origin + 0.5) * scale - 0.5
        if position <= 0.0:
            lower[k], weight[k] = 0, 0.0
        elif position >= limit - 1:
            lower[k], weight[k] = limit - 1, 0.0
        else:
            base = int(position)
            lower[k], weight[k] = base, position - base
    return lower, weight


@njit(cache=True, nogil=True, inline="always")
def _gray(pixel: np.ndarray) -> float:
    """OpenCV's RGB -> gray for uint8 (fixed point, 14 bits), in [0, 1]."""
    return ((int(pixel[0]) * 4899 + int(pixel[1]) * 9617 + int(pixel[2]) * 1868 + 8192) >> 14) / 255.0


@njit(cache=True, fastmath=True, nogil=True)
def _guided_pass(
    out: np.ndarray,
    coefficients: np.ndarray,
    x0: int,
    y0: int,
    side: int,
    top: int,
    bottom: int,
    left: int,
    right: int,
    scope: np.ndarray,
    floor: float,
    open_cells: np.ndarray,
) -> int:
    size = coefficients.shape[0]
    height, width = out.shape[0], out.shape[1]
    rows, cols = bottom - top, right - left
    c_row, c_row_w = _axis(rows, top, y0, size / side, size)
    c_col, c_col_w = _axis(cols, left, x0, size / side, size)
    s_row, s_row_w = _axis(rows, top, 0.0, scope.shape[0] / height, scope.shape[0])
    s_col, s_col_w = _axis(cols, left, 0.0, scope.shape[1] / width, scope.shape[1])
    top_c, top_s_row, top_s_col = size - 1, scope.shape[0] - 1, scope.shape[1] - 1
    # Bilinear = vertical then horizontal: each output row first blends its two source rows (once per
    # row, over the low resolution's width), then each pixel blends two neighbours of that row.
    coefficient_row = np.empty((size, 8), np.float32)
    row_open = np.empty(size, np.bool_)
    scope_row = np.empty(scope.shape[1], np.float32)
    changed = 0
    for i in range(rows):
        sr, sw = s_row[i], s_row_w[i]
        sr1 = min(sr + 1, top_s_row)
        any_open = False
        for c in range(scope.shape[1]):
            scope_row[c] = scope[sr, c] * (1 - sw) + scope[sr1, c] * sw
            any_open = any_open or scope_row[c] > 0.0
        if not any_open:
            continue
        cr, cw = c_row[i], c_row_w[i]
        cr1 = min(cr + 1, top_c)
        any_open = False
        for c in range(size):
            row_open[c] = open_cells[cr, c] or open_cells[cr1, c]
            any_open = any_open or row_open[c]
        if not any_open:
            continue
        for c in range(size):
            for k in range(8):
                coefficient_row[c, k] = coefficients[cr, c, k] * (1 - cw) + coefficients[cr1, c, k] * cw
        y = top + i
        for j in range(cols):
            if not (row_open[c_col[j]] or row_open[min(c_col[j] + 1, top_c)]):
                continue  # the gate is exactly 0 here (no open cell within the filter's reach)
            sc, scw = s_col[j], s_col_w[j]
            bound = scope_row[sc] * (1 - scw) + scope_row[min(sc + 1, top_s_col)] * scw
            if bound <= 0.0:
                continue
            cc, ccw = c_col[j], c_col_w[j]
            cc1 = min(cc + 1, top_c)
            x = left + j
            guide = _gray(out[y, x])
            a_gate = coefficient_row[cc, 3] * (1 - ccw) + coefficient_row[cc1, 3] * ccw
            b_gate = coefficient_row[cc, 7] * (1 - ccw) + coefficient_row[cc1, 7] * ccw
            gate = min(max(a_gate * guide + b_gate, 0.0), 1.0) * bound
            if gate < floor:
                continue
            for channel in range(3):
                a = coefficient_row[cc, channel] * (1 - ccw) + coefficient_row[cc1, channel] * ccw
                b = coefficient_row[cc, 4 + channel] * (1 - ccw) + coefficient_row[cc1, 4 + channel] * ccw
                result = out[y, x, channel] + 255.0 * gate * (a * guide + b)
                out[y, x, channel] = min(max(np.rint(result), 0.0), 255.0)
            changed += 1
    return changed


def apply_guided_edit(
    out: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    window: Window,
    box: Box,
    scope: np.ndarray,
    floor: float,
) -> int:
    """Composite in place (module docstring): out [H, W, 3] uint8 (its own gray is the guide), a and
    b [r, r, 4] float32 (change 3 + gate), ``box`` (rows, cols) of the frame, scope [h, w] float32 at
    any resolution. Returns the number of pixels changed. Pixels whose two nearest coefficient cells
    on each axis all have a = b = 0 for the gate (the gate is exactly 0 there) are skipped unread."""
    rows, cols = box
    open_cells = (a[..., 3] != 0) | (b[..., 3] != 0)  # [r, r]
    coefficients = np.ascontiguousarray(np.concatenate([a, b], axis=-1), dtype=np.float32)
    return int(
        _guided_pass(
            out,
            coefficients,
            window.x0,
            window.y0,
            window.side,
            rows.start,
            rows.stop,
            cols.start,
            cols.stop,
            np.ascontiguousarray(scope, dtype=np.float32),
            float(floor),
            np.ascontiguousarray(open_cells, dtype=np.bool_),
        )
    )
