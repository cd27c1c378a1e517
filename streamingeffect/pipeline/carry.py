"""Between two model refreshes the edit follows the picture by flow, as Deep Feature Flow carries a
heavy network's features from its keyframes to the frames between (Zhu et al. 2017: 3.7x faster for
about one point of accuracy).

    carrier = EditCarrier()
    view = carrier.view(frame)                          # once per frame: gray, and small gray for flow
    flow = carrier.flow(view, edit_view, person)        # [h, w, 2] this frame -> the edit's frame
    moved = warp_edit(edit, flow, view)                 # change and gate at the model's resolution
    out = composite(frame, moved, scope, guided)        # full resolution, only where gate and scope are open

Everything before `composite` runs at the model's resolution or at the flow's (a fraction of a
millisecond). `composite` does what `edit.apply_edit` does — guided upsampling of the change and the
gate, ``output = frame + prior + gate * change`` — but only inside the box where the gate can be
open; elsewhere the output is the frame, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamingeffect.pipeline.edit import GATE_FLOOR, GuidedFilter, LowResEdit, Window
from streamingeffect.pipeline.fused import apply_guided_edit

Box = tuple[slice, slice]  # (rows, cols) of the frame
DEFAULT_GUIDED = GuidedFilter()
# Low-resolution pixels past the gate's last open pixel that the full-resolution gate can still reach:
# the guided filter's two box filters (radius 1 each) and the bilinear upsampling.
GATE_REACH = 3


@dataclass(frozen=True)
class FrameView:
    """What the per-frame path computes once per frame and shares: gray at full and at flow size."""

    gray: np.ndarray  # [H, W] uint8
    small: np.ndarray  # [h, w] uint8, the long side at the flow's size

    @property
    def size(self) -> tuple[int, int]:
        return self.gray.shape[:2]  # type: ignore[return-value]


@dataclass(frozen=True)
class CarrySettings:
    side: int = 320  # flow runs with the frame's long side at this many pixels (DIS at 320x180: ~1 ms)
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST
    spread: float = 0.08  # person-anchored effects: how far the person's flow reaches outward (FlowPrior)


class EditCarrier:
    """Low-resolution flow from the current frame to the frame an edit was made on."""

    def __init__(self, settings: CarrySettings = CarrySettings()):
        self.settings = settings
        self._dis = cv2.DISOpticalFlow_create(settings.preset)

    def view(self, frame: np.ndarray) -> FrameView:
        """frame [H, W, 3] uint8 RGB -> its gray and its small gray for flow."""
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        height, width = gray.shape
        scale = min(1.0, self.settings.side / max(height, width))
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        return FrameView(gray, cv2.resize(gray, size, interpolation=cv2.INTER_AREA))

    def flow(self, current: FrameView, earlier: FrameView, person: np.ndarray | None = None) -> np.ndarray:
        """[h, w, 2] float32 at flow resolution: where each pixel of ``current`` was in ``earlier``.
        ``person`` (a mask of the current frame, any resolution): outside the person the person's own
        flow spread outward, for effects anchored to them (`FlowPrior.follow_person`)."""
        flow = self._dis.calc(current.small, earlier.small, None)
        return flow if person is None else spread_person_flow(flow, person, self.settings.spread)


def spread_person_flow(flow: np.ndarray, person: np.ndarray, spread: float, coarse: int = 4) -> np.ndarray:
    """`FlowPrior.follow_person`'s flow (the person's own flow inside them, spread outward around them),
    with the wide blur done at 1/``coarse`` of the flow's resolution: ~1 ms instead of ~15 at 320x180.
    flow [h, w, 2], person [any size] -> [h, w, 2]."""
    height, width = flow.shape[:2]
    weight = (
        cv2.resize(person.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
    ).astype(np.float32)
    if not weight.any():
        return flow
    small = (max(1, width // coarse), max(1, height // coarse))
    sigma = spread * max(height, width) / coarse
    mass = cv2.GaussianBlur(cv2.resize(weight, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    moving = cv2.GaussianBlur(
        cv2.resize(flow * weight[..., None], small, interpolation=cv2.INTER_AREA), (0, 0), sigma
    )
    mean = (flow * weight[..., None]).sum(axis=(0, 1)) / weight.sum()
    spread_flow = np.where(mass[..., None] > 1e-3, moving / np.maximum(mass, 1e-6)[..., None], mean)
    spread_flow = cv2.resize(spread_flow.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    inside = cv2.GaussianBlur(weight, (0, 0), 1.0)[..., None]  # a soft seam at the person's edge
    return (inside * flow + (1 - inside) * spread_flow).astype(np.float32)


def _window_grid(window: Window, size: int, frame_size: tuple[int, int], flow_size: tuple[int, int]) -> tuple:
    """The model grid's pixel centres over ``window`` in flow pixels (x [size], y [size]), and the
    scale from flow pixels to model pixels (sx, sy)."""
    height, width = frame_size
    flow_h, flow_w = flow_size
    centres = window.x0 + (np.arange(size, dtype=np.float32) + 0.5) * window.side / size - 0.5
    rows = window.y0 + (np.arange(size, dtype=np.float32) + 0.5) * window.side / size - 0.5
    fx = (centres + 0.5) * flow_w / width - 0.5
    fy = (rows + 0.5) * flow_h / height - 0.5
    return fx, fy, (width / flow_w) * size / window.side, (height / flow_h) * size / window.side


def warp_edit(
    edit: LowResEdit, flow: np.ndarray, view: FrameView, guide: np.ndarray | None = None
) -> LowResEdit:
    """The edit made on an earlier frame, moved onto the current one along ``flow`` (current -> earlier,
    at flow resolution): change and gate sampled where each model pixel was, 0 where that falls off the
    model's window; the guide becomes the current frame's (``guide``, else cut from ``view``)."""
    size = edit.gate.shape[0]
    fx, fy, sx, sy = _window_grid(edit.window, size, view.size, flow.shape[:2])
    map_x, map_y = np.meshgrid(fx, fy)
    # The flow at every model pixel, in flow pixels, then in model pixels.
    moved = cv2.remap(flow, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    grid_x, grid_y = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    sample_x = grid_x + moved[..., 0] * sx
    sample_y = grid_y + moved[..., 1] * sy
    values = np.concatenate([edit.change, edit.gate[..., None]], axis=-1)  # [r, r, 4]
    warped = cv2.remap(
        values, sample_x, sample_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    if guide is None:
        guide = edit.window.cut(view.gray, size).astype(np.float32) / 255.0
    return LowResEdit(edit.window, warped[..., :3], np.ascontiguousarray(warped[..., 3]), guide)


def gate_box(edit: LowResEdit, frame_size: tuple[int, int]) -> Box | None:
    """The part of the frame where the full-resolution gate can be open (None: nowhere)."""
    open_rows = np.flatnonzero(edit.gate.any(axis=1))
    if not len(open_rows):
        return None
    open_cols = np.flatnonzero(edit.gate.any(axis=0))
    size, window = edit.gate.shape[0], edit.window
    scale = window.side / size
    rows, cols = window.visible(*frame_size)

    def span(first: int, last: int, origin: int, limit: slice) -> slice:
        start = origin + int(np.floor((first - GATE_REACH) * scale))
        stop = origin + int(np.ceil((last + 1 + GATE_REACH) * scale))
        return slice(max(start, limit.start), max(min(stop, limit.stop), max(start, limit.start)))

    box = (
        span(open_rows[0], open_rows[-1], window.y0, rows),
        span(open_cols[0], open_cols[-1], window.x0, cols),
    )
    if box[0].stop <= box[0].start or box[1].stop <= box[1].start:
        return None
    return box


def onto_box(low: np.ndarray, window: Window, box: Box) -> np.ndarray:
    """A map over the window [r, r, C<=4] -> bilinear values on the frame's ``box`` [h, w, C] (the
    pixel-centre convention of cv2.resize and `Window.onto_frame`). A box covering most of the window
    is cut from a resize of the whole window (cv2.resize is ~4x faster per pixel than warpAffine)."""
    rows, cols = box
    size, side = low.shape[0], window.side
    if side * side <= 2 * (rows.stop - rows.start) * (cols.stop - cols.start):
        full = cv2.resize(low, (side, side), interpolation=cv2.INTER_LINEAR)
        top, left = rows.start - window.y0, cols.start - window.x0
        out = full[top : top + rows.stop - rows.start, left : left + cols.stop - cols.start]
        return out.reshape(out.shape[0], out.shape[1], -1)
    scale = size / side
    matrix = np.array(
        [
            [scale, 0.0, (cols.start - window.x0 + 0.5) * scale - 0.5],
            [0.0, scale, (rows.start - window.y0 + 0.5) * scale - 0.5],
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


def mask_box(mask: np.ndarray, frame_size: tuple[int, int]) -> Box | None:
    """The part of the frame where a mask at any resolution [h, w], resized bilinearly to the frame,
    is above 0 (None: nowhere)."""
    open_rows = np.flatnonzero(mask.any(axis=1))
    if not len(open_rows):
        return None
    open_cols = np.flatnonzero(mask.any(axis=0))
    height, width = frame_size
    sy, sx = height / mask.shape[0], width / mask.shape[1]
    # One mask pixel of margin each side: bilinear interpolation reaches that far.
    return (
        slice(max(0, int((open_rows[0] - 1) * sy)), min(height, int(np.ceil((open_rows[-1] + 2) * sy)))),
        slice(max(0, int((open_cols[0] - 1) * sx)), min(width, int(np.ceil((open_cols[-1] + 2) * sx)))),
    )


def intersect(first: Box, second: Box) -> Box | None:
    rows = slice(max(first[0].start, second[0].start), min(first[0].stop, second[0].stop))
    cols = slice(max(first[1].start, second[1].start), min(first[1].stop, second[1].stop))
    return (rows, cols) if rows.stop > rows.start and cols.stop > cols.start else None


def resize_into_box(mask: np.ndarray, frame_size: tuple[int, int], box: Box) -> np.ndarray:
    """A mask at any resolution [h, w] -> its bilinear resize to the frame's size, over ``box``."""
    height, width = frame_size
    full = cv2.resize(
        np.ascontiguousarray(mask, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )
    return full[box]


def composite(
    frame: np.ndarray,
    edit: LowResEdit,
    scope: np.ndarray,
    guided: GuidedFilter | None = DEFAULT_GUIDED,
    prior: np.ndarray | None = None,
    gray: np.ndarray | None = None,
) -> np.ndarray:
    """`edit.apply_edit` restricted to the box where the gate and the scope are open, in one fused pass
    (`fused.apply_guided_edit`): frame [H, W, 3] uint8 + its low-resolution edit -> the edited frame
    [H, W, 3] uint8 (a new array).

    ``scope`` [h, w] float in [0, 1] at any resolution: where the effect may act (sampled bilinearly at
    the frame's pixels). ``prior`` [H, W, 3] float (0-255 units) is applied first; ``gray`` [H, W]
    uint8: the frame's gray, if known (used without a prior). ``guided`` None: plain bilinear
    upsampling (for comparison)."""
    height, width = frame.shape[:2]
    base = frame if prior is None else np.clip(np.rint(frame + prior), 0, 255).astype(np.uint8)
    out = base.copy() if base is frame else base
    gate_part, scope_part = gate_box(edit, (height, width)), mask_box(scope, (height, width))
    box = None if gate_part is None or scope_part is None else intersect(gate_part, scope_part)
    if box is None:
        return out
    values = np.concatenate([edit.change, edit.gate[..., None]], axis=-1)  # [r, r, 4]: change, gate
    if guided is None:  # value = 0 * guide + value
        a, b = np.zeros_like(values), values
    else:
        # Fast guided filter: values ~ a * guide + b, fitted at low resolution, applied at full.
        coefficients = guided.coefficients(edit.guide, values)  # [r, r, 8]: a (4), b (4)
        a, b = coefficients[..., :4], coefficients[..., 4:]
    if gray is None or prior is not None:
        gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    apply_guided_edit(out, gray, a, b, edit.window, box, scope, GATE_FLOOR)
    return out
