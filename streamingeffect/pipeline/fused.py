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
cv2.resize's pixel-centre convention. `apply_guided_edit_planar` does the same on a frame's I420 planes
(a video's frames as decoded): each pixel's RGB change goes to its luma, each 2x2 block's mean change
to its chroma sample. (The keyframe prior's carry is a gather that OpenCV's remap
does faster than a compiled loop: `carry.carry_change`.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streamingeffect.io.images import I420Image
from streamingeffect.pipeline.edit import Window

Box = tuple[slice, slice]
# A change of RGB -> the change of BT.601 limited-range Y, U, V (OpenCV's I420 and libswscale's default):
# linear, so a change converts without the pixel it is added to.
RGB_TO_YUV_CHANGE = (
    np.array(
        [
            [0.299 * 219, 0.587 * 219, 0.114 * 219],
            [-0.168736 * 224, -0.331264 * 224, 0.5 * 224],
            [0.5 * 224, -0.418688 * 224, -0.081312 * 224],
        ],
        np.float32,
    )
    / 255.0
)


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


@njit(cache=True, nogil=True, inline="always")
def _luma_gray(luma: int) -> float:
    """A limited-range luma byte -> the gray of its RGB (OpenCV's conversions: the chroma terms cancel),
    rounded as a byte, in [0, 1]."""
    return min(max(np.rint((luma - 16) * (255.0 / 219.0)), 0.0), 255.0) / 255.0


@njit(cache=True, nogil=True, inline="always")
def _open_row(
    i: int, rows: tuple, coefficients: np.ndarray, scope: np.ndarray, open_cells: np.ndarray, row: tuple
) -> bool:
    """Output row i's scope, open cells and coefficients (``row``: their buffers), each blended from
    its two source rows (once per row, over the low resolution's width); False when nothing can be
    added on the row. ``rows``: the box's rows sampled on both grids (`_axes`)."""
    c_row, c_row_w, s_row, s_row_w = rows
    coefficient_row, row_open, scope_row = row
    size = coefficients.shape[0]
    sr, sw = s_row[i], s_row_w[i]
    sr1 = min(sr + 1, scope.shape[0] - 1)
    any_open = False
    for c in range(scope.shape[1]):
        scope_row[c] = scope[sr, c] * (1 - sw) + scope[sr1, c] * sw
        any_open = any_open or scope_row[c] > 0.0
    if not any_open:
        return False
    cr, cw = c_row[i], c_row_w[i]
    cr1 = min(cr + 1, size - 1)
    any_open = False
    for c in range(size):
        row_open[c] = open_cells[cr, c] or open_cells[cr1, c]
        any_open = any_open or row_open[c]
    if not any_open:
        return False
    for c in range(size):
        for k in range(8):
            coefficient_row[c, k] = coefficients[cr, c, k] * (1 - cw) + coefficients[cr1, c, k] * cw
    return True


@njit(cache=True, nogil=True, inline="always")
def _pixel_change(j: int, cols: tuple, row: tuple, guide: float, floor: float, change: np.ndarray) -> bool:
    """Column j of a row `_open_row` prepared: ``change`` [3] = 255 * gate * (a * guide + b); False
    (``change`` untouched) where the gate is 0 or below ``floor``."""
    c_col, c_col_w, s_col, s_col_w = cols
    coefficient_row, row_open, scope_row = row
    top_c = coefficient_row.shape[0] - 1
    if not (row_open[c_col[j]] or row_open[min(c_col[j] + 1, top_c)]):
        return False  # the gate is exactly 0 here (no open cell within the filter's reach)
    sc, scw = s_col[j], s_col_w[j]
    bound = scope_row[sc] * (1 - scw) + scope_row[min(sc + 1, scope_row.shape[0] - 1)] * scw
    if bound <= 0.0:
        return False
    cc, ccw = c_col[j], c_col_w[j]
    cc1 = min(cc + 1, top_c)
    a_gate = coefficient_row[cc, 3] * (1 - ccw) + coefficient_row[cc1, 3] * ccw
    b_gate = coefficient_row[cc, 7] * (1 - ccw) + coefficient_row[cc1, 7] * ccw
    gate = min(max(a_gate * guide + b_gate, 0.0), 1.0) * bound
    if gate < floor:
        return False
    for channel in range(3):
        a = coefficient_row[cc, channel] * (1 - ccw) + coefficient_row[cc1, channel] * ccw
        b = coefficient_row[cc, 4 + channel] * (1 - ccw) + coefficient_row[cc1, 4 + channel] * ccw
        change[channel] = 255.0 * gate * (a * guide + b)
    return True


@njit(cache=True, nogil=True)
def _axes(
    size: int,
    x0: int,
    y0: int,
    side: int,
    box: tuple[int, int, int, int],
    scope_shape: tuple[int, int],
    frame_shape: tuple[int, int],
) -> tuple[tuple, tuple]:
    """The box's rows and its columns, each sampled on the coefficients' grid (over the window) and on
    the scope's: (lower index, weight of the next) for each, coefficients first."""
    top, bottom, left, right = box
    (height, width), (scope_h, scope_w) = frame_shape, scope_shape
    c_row, c_row_w = _axis(bottom - top, top, y0, size / side, size)
    c_col, c_col_w = _axis(right - left, left, x0, size / side, size)
    s_row, s_row_w = _axis(bottom - top, top, 0.0, scope_h / height, scope_h)
    s_col, s_col_w = _axis(right - left, left, 0.0, scope_w / width, scope_w)
    return (c_row, c_row_w, s_row, s_row_w), (c_col, c_col_w, s_col, s_col_w)


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
    rows, cols = _axes(
        size, x0, y0, side, (top, bottom, left, right), scope.shape, (out.shape[0], out.shape[1])
    )
    # Bilinear = vertical then horizontal: each output row first blends its two source rows, then
    # each pixel blends two neighbours of that row.
    row = (np.empty((size, 8), np.float32), np.empty(size, np.bool_), np.empty(scope.shape[1], np.float32))
    change = np.empty(3, np.float32)
    changed = 0
    for i in range(bottom - top):
        if not _open_row(i, rows, coefficients, scope, open_cells, row):
            continue
        y = top + i
        for j in range(right - left):
            x = left + j
            if not _pixel_change(j, cols, row, _gray(out[y, x]), floor, change):
                continue
            for channel in range(3):
                out[y, x, channel] = min(max(np.rint(out[y, x, channel] + change[channel]), 0.0), 255.0)
            changed += 1
    return changed


@njit(cache=True, fastmath=True, nogil=True)
def _guided_pass_planar(
    luma: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
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
    to_yuv: np.ndarray,
) -> int:
    """`_guided_pass` on I420 planes, 2x2 pixels (one chroma sample) at a time; the box's sides even.
    Each pixel's RGB change goes into its luma; the block's mean change into its chroma."""
    size = coefficients.shape[0]
    rows, cols = _axes(
        size, x0, y0, side, (top, bottom, left, right), scope.shape, (luma.shape[0], luma.shape[1])
    )
    pair = (  # two rows at a time
        (np.empty((size, 8), np.float32), np.empty(size, np.bool_), np.empty(scope.shape[1], np.float32)),
        (np.empty((size, 8), np.float32), np.empty(size, np.bool_), np.empty(scope.shape[1], np.float32)),
    )
    opened = np.zeros(2, np.bool_)
    change = np.empty(3, np.float32)
    total = np.empty(3, np.float32)
    changed = 0
    for i in range(0, bottom - top, 2):
        for k in range(2):
            opened[k] = _open_row(i + k, rows, coefficients, scope, open_cells, pair[k])
        if not (opened[0] or opened[1]):
            continue
        for j in range(0, right - left, 2):
            total[:] = 0.0
            touched = False
            for k in range(2):
                if not opened[k]:
                    continue
                y = top + i + k
                for m in range(2):
                    x = left + j + m
                    if not _pixel_change(j + m, cols, pair[k], _luma_gray(luma[y, x]), floor, change):
                        continue
                    added = to_yuv[0, 0] * change[0] + to_yuv[0, 1] * change[1] + to_yuv[0, 2] * change[2]
                    luma[y, x] = min(max(np.rint(luma[y, x] + added), 0.0), 255.0)
                    total += change
                    touched = True
                    changed += 1
            if touched:
                cy, cx = (top + i) // 2, (left + j) // 2
                added_u = 0.25 * (to_yuv[1, 0] * total[0] + to_yuv[1, 1] * total[1] + to_yuv[1, 2] * total[2])
                added_v = 0.25 * (to_yuv[2, 0] * total[0] + to_yuv[2, 1] * total[1] + to_yuv[2, 2] * total[2])
                u[cy, cx] = min(max(np.rint(u[cy, cx] + added_u), 0.0), 255.0)
                v[cy, cx] = min(max(np.rint(v[cy, cx] + added_v), 0.0), 255.0)
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
    edges = (rows.start, rows.stop, cols.start, cols.stop)
    return int(_guided_pass(out, *_pass_arguments(a, b, window, edges, scope, floor)))


def apply_guided_edit_planar(
    out: I420Image,
    a: np.ndarray,
    b: np.ndarray,
    window: Window,
    box: Box,
    scope: np.ndarray,
    floor: float,
) -> int:
    """`apply_guided_edit` on I420 planes in place: the RGB change of each pixel (its guide the gray of
    its luma) is converted to a luma change there, and the mean over each 2x2 block to its chroma's
    (as an encoder's 4:2:0 subsampling averages). ``box`` is widened to even sides."""
    rows, cols = box
    top, left = rows.start - rows.start % 2, cols.start - cols.start % 2
    bottom, right = rows.stop + rows.stop % 2, cols.stop + cols.stop % 2
    u, v = out.chroma
    arguments = _pass_arguments(a, b, window, (top, bottom, left, right), scope, floor)
    return int(_guided_pass_planar(out.luma, u, v, *arguments, RGB_TO_YUV_CHANGE))


def _pass_arguments(
    a: np.ndarray,
    b: np.ndarray,
    window: Window,
    edges: tuple[int, int, int, int],
    scope: np.ndarray,
    floor: float,
) -> tuple:
    """What both passes take after their frame: the coefficients [r, r, 8], the window, the box's
    (top, bottom, left, right), the scope, the floor and the cells where the gate can be open."""
    open_cells = (a[..., 3] != 0) | (b[..., 3] != 0)  # [r, r]
    coefficients = np.ascontiguousarray(np.concatenate([a, b], axis=-1), dtype=np.float32)
    return (
        coefficients,
        window.x0,
        window.y0,
        window.side,
        *edges,
        np.ascontiguousarray(scope, dtype=np.float32),
        float(floor),
        np.ascontiguousarray(open_cells, dtype=np.bool_),
    )


def load_kernels() -> None:
    """Compile (or load from numba's cache) both passes on a tiny frame with the gate open everywhere:
    a stream's warm-up, so that the first model edit does not stall the frame it lands on (at 720p
    that stall measured ~400 ms, a dozen frames of a live stream)."""
    size, frame_side = 4, 8
    a = np.zeros((size, size, 4), np.float32)
    b = np.full((size, size, 4), 0.5, np.float32)  # change 0.5, gate 0.5
    window, box = Window(0, 0, frame_side), (slice(0, frame_side), slice(0, frame_side))
    scope = np.ones((size, size), np.float32)
    apply_guided_edit(np.zeros((frame_side, frame_side, 3), np.uint8), a, b, window, box, scope, 0.0)
    planar = I420Image(np.zeros((frame_side * 3 // 2, frame_side), np.uint8))
    apply_guided_edit_planar(planar, a, b, window, box, scope, 0.0)
