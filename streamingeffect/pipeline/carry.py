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
from typing import overload

import cv2
import numpy as np

from streamingeffect.io.images import I420Image, Picture, picture_size
from streamingeffect.pipeline.edit import GATE_FLOOR, GuidedFilter, LowResEdit, Window, channel_peak
from streamingeffect.pipeline.flow_prior import (
    NEAR_REACH,
    SCENE_CUT,
    FlowSettings,
    forward_backward_confidence,
    near_person,
    spread_person_flow,
    warp_by_flow,
)
from streamingeffect.pipeline.fused import RGB_TO_YUV_CHANGE, apply_guided_edit, apply_guided_edit_planar

Box = tuple[slice, slice]  # (rows, cols) of the frame
DEFAULT_GUIDED = GuidedFilter()
# Low-resolution pixels past the gate's last open pixel that the full-resolution gate can still reach:
# the guided filter's two box filters (radius 1 each) and the bilinear upsampling.
GATE_REACH = 3
KEEP_ALL = 1.0 - 1e-6  # a keep map this close to 1 everywhere keeps all of its change (`keeps_all`)


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
    side: int = 320  # flow runs with the frame's long side at this many pixels
    # DIS's preset, and the finest level of its pyramid it searches patches on (0: the image itself).
    # The decoupled runtime carries the keyframe prior along this flow, composed over two hops, and a
    # fine texture the keyframe changed (a blurred background) shows every error. On the quick suite
    # (held-out people, a refresh every 3rd frame, `background_blur_strong`, against the every-frame
    # stream): "fast" at its level 2 lost 1.42 / 1.41 dB (text / keyframe set), "ultrafast" at level 1
    # 0.53 / 0.50, "fast" at level 1 0.53 / 0.48, "fast" at 640 px 0.62 / 0.57, "medium" (level 1) at
    # 640 px 0.28 / 0.22. A flow here: at 320x180 1.3-1.7 ms ("fast"), 2.4-3.3 ("ultrafast", level 1)
    # and 6.0-6.6 ("fast", level 1); at 640x360 ~5 ("fast") and ~30 ("medium").
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
    finest_scale: int = 1
    # The model worker's forward-backward check (the confidence that scales the model's correction)
    # keeps "fast" at level 2: its smooth flows agree where the finer ones disagree on flat areas. With
    # the finer flows the check opened the model's gate over a 330x360 box of a 720p neon outline, and
    # the per-frame composite took 25 ms a frame instead of 11.
    check_preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST
    check_finest_scale: int = 2
    spread: float = 0.08  # person-anchored effects: how far the person's flow reaches outward (FlowPrior)


class EditCarrier:
    """Low-resolution flow from the current frame to the frame an edit was made on."""

    def __init__(self, settings: CarrySettings = CarrySettings()):
        self.settings = settings
        self._dis = cv2.DISOpticalFlow_create(settings.preset)
        self._dis.setFinestScale(settings.finest_scale)

    def view(self, frame: Picture) -> FrameView:
        """frame [H, W, 3] uint8 RGB (or its I420 planes) -> its gray and its small gray for flow."""
        gray = frame.gray() if isinstance(frame, I420Image) else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
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


def compose_flows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Flow from frame A to C through B: ``first`` [h, w, 2] A -> B and ``second`` [h, w, 2] B -> C, both
    in pixels of one flow size -> A -> C (``second`` sampled where each pixel of A lands on B)."""
    return first + warp_by_flow(second, first, first.shape[:2])


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


@overload
def composite(
    frame: np.ndarray,
    edit: LowResEdit | None,
    scope: np.ndarray,
    guided: GuidedFilter | None = ...,
    prior: CarriedPrior | None = ...,
) -> np.ndarray: ...


@overload
def composite(
    frame: I420Image,
    edit: LowResEdit | None,
    scope: np.ndarray,
    guided: GuidedFilter | None = ...,
    prior: CarriedPrior | None = ...,
) -> I420Image: ...


def composite(
    frame: Picture,
    edit: LowResEdit | None,
    scope: np.ndarray,
    guided: GuidedFilter | None = DEFAULT_GUIDED,
    prior: CarriedPrior | None = None,
) -> Picture:
    """`edit.apply_edit`, in passes over only the boxes where something is added (`carry_change` and
    `fused.apply_guided_edit`): frame [H, W, 3] uint8 + the keyframes' carried change (``prior``) +
    its low-resolution edit -> the edited frame [H, W, 3] uint8 (a new array; exactly the frame where
    the scope and the prior are 0).

    A frame in I420 planes comes back in them: the same RGB change, converted to a change of luma at
    every pixel and of chroma at every 2x2 block (a third of the bytes RGB's passes touch at 720p).

    ``scope`` [h, w] float in [0, 1] at any resolution: where the effect may act (sampled bilinearly at
    the frame's pixels). ``guided`` None: plain bilinear upsampling (for comparison)."""
    height, width = picture_size(frame)
    out = frame.copy()
    if prior is not None and prior.box is not None:
        if isinstance(out, I420Image):
            _add_prior_planar(out, prior)
        else:
            _add_prior(out, frame, prior)
    if edit is None:
        return out
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
    if isinstance(out, I420Image):
        apply_guided_edit_planar(out, a, b, edit.window, box, scope, GATE_FLOOR)
    else:
        apply_guided_edit(out, a, b, edit.window, box, scope, GATE_FLOOR)
    return out


def _prior_box(prior: CarriedPrior, frame_size: tuple[int, int]) -> Box:
    """The prior's box (in the carrying grid's pixels) in the frame's."""
    assert prior.box is not None
    rows, cols = prior.box
    if prior.scale == 1.0:
        return rows, cols
    return (
        slice(round(rows.start / prior.scale), min(round(rows.stop / prior.scale), frame_size[0])),
        slice(round(cols.start / prior.scale), min(round(cols.stop / prior.scale), frame_size[1])),
    )


def _add_prior(out: np.ndarray, frame: np.ndarray, prior: CarriedPrior) -> None:
    """out[box] = round(frame + the carried change), the change carried at its own resolution and
    brought to the frame's bilinearly."""
    assert prior.box is not None
    carried = carry_change(prior.keys, prior.box)
    if carried is None:
        return
    rows, cols = _prior_box(prior, frame.shape[:2])
    if prior.scale != 1.0:
        # Rounded to integers at the carrying resolution: the resize of int16 took a third of float32's
        # time at 720p (1.0 ms against 2.9), and the output moves by at most one level.
        whole = np.rint(carried, out=carried).astype(np.int16)
        carried = cv2.resize(
            whole, (cols.stop - cols.start, rows.stop - rows.start), interpolation=cv2.INTER_LINEAR
        )
    cv2.add(frame[rows, cols], carried, dst=out[rows, cols], dtype=cv2.CV_8U)  # in place; rounded, saturated


def _add_prior_planar(out: I420Image, prior: CarriedPrior) -> None:
    """`_add_prior` on I420 planes: the carried RGB change converted to Y, U, V at its own resolution,
    its luma brought to the frame's pixels and its chroma to the chroma's (at the usual half scale, the
    carrying grid is the chroma's own: no resize)."""
    assert prior.box is not None
    carried = carry_change(prior.keys, prior.box)
    if carried is None:
        return
    rows, cols = _prior_box(prior, out.size)
    change = cv2.transform(carried, RGB_TO_YUV_CHANGE)  # [h, w, 3] float32: Y, U, V
    # Rounded to integers at the carrying resolution, as `_add_prior` does.
    planes = cv2.split(np.rint(change, out=change).astype(np.int16))
    half = (slice(rows.start // 2, (rows.stop + 1) // 2), slice(cols.start // 2, (cols.stop + 1) // 2))
    u, v = out.chroma
    for target, box, values in (
        (out.luma, (rows, cols), planes[0]),
        (u, half, planes[1]),
        (v, half, planes[2]),
    ):
        part = target[box]
        cv2.add(part, _resized(values, part.shape), dst=part, dtype=cv2.CV_8U)  # in place; rounded, saturated


def _resized(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """values [h, w] bilinearly at ``shape`` [H, W] (as they are when the sizes agree)."""
    if values.shape == shape[:2]:
        return values
    return cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def carry_change(keys: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]], box: Box) -> np.ndarray | None:
    """The keyframes' changes carried to the current frame over ``box`` of the changes' grid: [h, w, 3]
    float32, the sum of weight * keep * change(x + flow) (`FlowPrior`'s prior, at the changes'
    resolution; borders replicated). keys: (change [H, W, 3] float32, flow [fh, fw, 2] from the
    current frame to the keyframe in flow pixels, keep [fh, fw], weight), all changes of one size.
    None when no key is usable. (OpenCV's remap: 4.3 ms at 640x360 against 6.4 for a numba loop.)"""
    rows, cols = box
    carried = None
    for change, flow, keep, weight in keys:
        (flow_h, flow_w), (height, width) = flow.shape[:2], change.shape[:2]
        if height < 2 or width < 2:
            continue
        # Where each pixel was on the keyframe, in the change's pixels: a map at the flow's resolution,
        # upsampled (bilinear interpolation keeps the grid's linear part exact, except within half a
        # flow pixel of the border, where the resize holds the edge value).
        grid_x = (np.arange(flow_w, dtype=np.float32) + 0.5) * width / flow_w - 0.5
        grid_y = (np.arange(flow_h, dtype=np.float32) + 0.5) * height / flow_h - 0.5
        low = np.empty((flow_h, flow_w, 2), np.float32)
        low[..., 0] = grid_x[None, :] + flow[..., 0] * (width / flow_w)
        low[..., 1] = grid_y[:, None] + flow[..., 1] * (height / flow_h)
        where = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)[rows, cols]
        moved = cv2.remap(
            np.asarray(change, np.float32), where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        if not keeps_all(keep):
            kept = cv2.resize(keep, (width, height), interpolation=cv2.INTER_LINEAR)[rows, cols]
            # OpenCV's multiply with the mask merged to three channels: half the time of numpy's
            # broadcast at 640x360 (0.46 ms against 1.0).
            moved = cv2.multiply(moved, cv2.merge([kept, kept, kept]))
        if weight != 1.0:
            moved *= weight
        carried = moved if carried is None else carried + moved
    return carried


def keeps_all(keep: np.ndarray) -> bool:
    """Whether a keep map [h, w] keeps all of its change everywhere: a feathered mask's inside is 1 only
    to within float32's rounding (0.9999999), and a product with it would change no output level."""
    return float(keep.min()) >= KEEP_ALL


def prior_on_window(
    frame: np.ndarray, prior: CarriedPrior, window: Window, size: int, cut: np.ndarray | None = None
) -> np.ndarray:
    """What `composite(frame, None, ..., prior=prior)` then ``window.cut(., size)`` give (the frame
    with the keyframes' carried change, as the model sees it), the change carried on a grid over the
    window only, at up to its own resolution (a whole multiple of ``size``, at most 2x) and averaged
    (at 720p the full-resolution composite took 17 ms of a refresh). frame [H, W, 3] uint8 -> [size,
    size, 3] uint8. ``cut``: ``window.cut(frame, size)``, when the caller made it (1.5 ms at 720p)."""
    height, width = frame.shape[:2]
    grid = size * min(2, max(1, round(window.side * prior.scale / size)))  # area-averaged by a whole factor
    xs, ys = _window_centres(window, grid)  # frame pixels
    carried = None
    for change, flow, keep, weight in prior.keys:
        (flow_h, flow_w), (change_h, change_w) = flow.shape[:2], change.shape[:2]
        map_x, map_y = np.meshgrid((xs + 0.5) * flow_w / width - 0.5, (ys + 0.5) * flow_h / height - 0.5)
        moved = cv2.remap(flow, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Where each grid pixel was on the keyframe, in the change's pixels (borders replicated).
        sample_x = ((xs + 0.5) * change_w / width - 0.5)[None, :] + moved[..., 0] * (change_w / flow_w)
        sample_y = ((ys + 0.5) * change_h / height - 0.5)[:, None] + moved[..., 1] * (change_h / flow_h)
        sampled = cv2.remap(change, sample_x, sample_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if not keeps_all(keep):  # OpenCV's products: at a 256 grid 0.4 ms against numpy's 1.5
            kept = cv2.remap(keep, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            sampled = cv2.multiply(sampled, cv2.merge([kept, kept, kept]))
        if weight != 1.0:
            sampled *= weight
        carried = sampled if carried is None else cv2.add(carried, sampled)
    cut = window.cut(frame, size) if cut is None else cut
    if carried is None:
        return cut.copy()
    # Averaging is linear: the frame's cut plus the change's average (saturated after averaging).
    change = cv2.resize(carried, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.add(cut, change, dtype=cv2.CV_8U)  # rounded and saturated


def confidence_on_window(
    confidence: np.ndarray, frame_size: tuple[int, int], window: Window, size: int
) -> np.ndarray:
    """``window.cut`` of the confidence [fh, fw] brought to the frame's size, at ``size`` [size, size],
    without making the full-resolution map: sampled on a grid of up to 4x ``size`` (256 at most) over
    the window, averaged."""
    height, width = frame_size
    flow_h, flow_w = confidence.shape
    xs, ys = _window_centres(window, size * max(1, min(4, 256 // size)))
    map_x, map_y = np.meshgrid((xs + 0.5) * flow_w / width - 0.5, (ys + 0.5) * flow_h / height - 0.5)
    sampled = cv2.remap(
        np.asarray(confidence, np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.resize(sampled, (size, size), interpolation=cv2.INTER_AREA)


def _window_centres(window: Window, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """The centres of a grid x grid split of the window, in frame pixels (x [grid], y [grid])."""
    steps = (np.arange(grid, dtype=np.float32) + 0.5) * window.side / grid - 0.5
    return window.x0 + steps, window.y0 + steps


@dataclass(frozen=True)
class CarriedPrior:
    """The keyframes' changes and the flows that carry them to one frame (`PriorCarrier.carry`)."""

    # (change, flow, keep, weight): keep [fh, fw] is where the carried change stays (1, or near the
    # person for an anchored effect); it scales the change, unlike the confidence (`FlowPrior`).
    keys: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]
    box: Box | None  # where the carried change can be non-zero, at the carrying resolution
    scale: float = 1.0  # the carrying resolution, as a share of the frame's
    confidence: np.ndarray | None = None  # [fh, fw] the keys' forward-backward confidence, weighted
    used: tuple[int, ...] = ()  # which of the priors given to `PriorCarrier.carry` these keys are


class PriorCarrier:
    """`FlowPrior`'s prior for the per-frame path: each keyframe's change carried to the current frame
    along low-resolution flow (outside the person, the person's flow spread outward, for anchored
    effects, and kept only near the person), with a forward-backward confidence for the model; a key
    whose frame is another scene (`SCENE_CUT`) carries nothing. The sampling of the change happens in
    `composite`, only inside the box the keyframe's change can reach."""

    def __init__(
        self, carrier: EditCarrier, settings: FlowSettings | None = None, max_pixels: float | None = None
    ):
        """``max_pixels``: carry at a resolution of at most this many pixels (None: the frame's)."""
        self.carrier, self.settings, self.max_pixels = carrier, settings or FlowSettings(), max_pixels
        carry = carrier.settings
        self._check = None  # the forward-backward check's own flow (None: the carrier's)
        if (carry.check_preset, carry.check_finest_scale) != (carry.preset, carry.finest_scale):
            self._check = cv2.DISOpticalFlow_create(carry.check_preset)
            self._check.setFinestScale(carry.check_finest_scale)
        self._views: dict[int, tuple[np.ndarray, FrameView]] = {}  # keyframe source id -> its view
        # keyframe change id -> (it, at the carrying resolution, its support there)
        self._changes: dict[int, tuple[np.ndarray, np.ndarray, Box | None, float]] = {}

    def carry(
        self,
        view: FrameView,
        priors: tuple[tuple[np.ndarray, np.ndarray, float], ...],
        person: np.ndarray | None = None,
        reach: float = NEAR_REACH,
        checked: bool = True,
        flows: tuple[np.ndarray, ...] | None = None,
        keeps: tuple[np.ndarray | None, ...] | None = None,
    ) -> CarriedPrior | None:
        """priors: (keyframe source [H, W, 3], change [H, W, 3] float at the frame's resolution or
        already at the carrying one, weight) each; ``person``: the frame's person mask when the effect
        is anchored to the person (the change is kept within ``reach`` of them). ``checked`` False: no
        backward flow, so no confidence and no scene-cut check (the per-frame path: the model worker
        checked these keys on its frame, a few frames ago, and the model's own edit crosses a cut no
        sooner than they do). ``flows`` (with ``checked`` False): each key's flow from this frame at
        the flow's size, already spread for an anchored effect (`compose_flows`); none is computed
        here. ``keeps`` (with ``flows``): each key's share that stays at each pixel of this frame
        [fh, fw] (None: all of it), e.g. the face's geometry (`face_follow.FaceFix`)."""
        if flows is not None and checked:
            raise ValueError("flows are given for the unchecked carry only (checked=False)")
        if keeps is not None and flows is None:
            raise ValueError("keeps go with flows")
        keys, box, total, used = [], None, None, []
        height, width = view.size
        scale = 1.0 if self.max_pixels is None else min(1.0, (self.max_pixels / (height * width)) ** 0.5)
        for index, (source, change, weight) in enumerate(priors):
            if source.shape[:2] != view.size:
                return None
            if flows is not None:
                kept = None if keeps is None else keeps[index]
                small = self._carried(change, scale, view.size)
                box = self._add_key(keys, box, small, weight, flows[index], person, reach, kept)
                used.append(index)
                continue
            earlier = self._view(source)
            forward = self.carrier.flow(view, earlier)
            confidence = None
            if checked:
                confidence = self._confidence(view, earlier, forward)
                if confidence.mean() < SCENE_CUT:  # another scene: this key carries nothing here
                    continue
            if person is not None:
                if confidence is None:
                    forward = spread_person_flow(forward, person, self.settings.spread)
                else:
                    forward, confidence = spread_person_flow(
                        forward, person, self.settings.spread, confidence
                    )
            if confidence is not None:
                total = weight * confidence if total is None else total + weight * confidence
            box = self._add_key(
                keys, box, self._carried(change, scale, view.size), weight, forward, person, reach
            )
            used.append(index)
        return CarriedPrior(keys, box, scale, total, tuple(used))

    def _add_key(
        self,
        keys: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]],
        box: Box | None,
        small: tuple[np.ndarray, Box | None],
        weight: float,
        forward: np.ndarray,
        person: np.ndarray | None,
        reach: float,
        kept: np.ndarray | None = None,
    ) -> Box | None:
        """Appends to ``keys`` one more key, its change at the carrying resolution and where it is not
        0 (``small``, `_carried`), carried along ``forward`` (its share ``kept`` [fh, fw] at each pixel,
        None: all) -> ``box`` grown to where it can reach."""
        keep = np.ones(forward.shape[:2], np.float32) if kept is None else kept
        if person is not None:
            keep = keep * near_person(person, forward.shape[:2], reach)
        carried, support = small
        keys.append((carried, forward, keep, weight))
        if support is None:
            return box
        # The change reaches as far as the flow moves it (in its pixels), and a pixel for bilinear.
        size = carried.shape[:2]
        flow_scale = max(size[0] / forward.shape[0], size[1] / forward.shape[1])
        grown = grow(support, float(np.abs(forward).max()) * flow_scale + 2, size)
        return grown if box is None else union(box, grown)

    def _confidence(self, view: FrameView, earlier: FrameView, forward: np.ndarray) -> np.ndarray:
        """[fh, fw] where the flow between the frame and a keyframe holds both ways (`_check`'s flows)."""
        if self._check is None:
            return forward_backward_confidence(forward, self.carrier.flow(earlier, view), self.settings)
        there = self._check.calc(view.small, earlier.small, None)
        back = self._check.calc(earlier.small, view.small, None)
        return forward_backward_confidence(there, back, self.settings)

    def _view(self, source: np.ndarray) -> FrameView:
        cached = self._views.get(id(source))
        if cached is None or cached[0] is not source:
            if len(self._views) > 4:
                self._views.clear()
            cached = (source, self.carrier.view(source))
            self._views[id(source)] = cached
        return cached[1]

    def _carried(
        self, change: np.ndarray, scale: float, frame_size: tuple[int, int]
    ) -> tuple[np.ndarray, Box | None]:
        """A keyframe's change at the carrying resolution (float32), and where it is not 0 there."""
        cached = self._changes.get(id(change))
        if cached is None or cached[0] is not change or cached[3] != scale:
            if len(self._changes) > 4:
                self._changes.clear()
            small = np.ascontiguousarray(change, dtype=np.float32)
            height, width = frame_size
            size = (max(2, round(width * scale)), max(2, round(height * scale)))
            if small.shape[1::-1] != size:  # else given at the carrying resolution already
                small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
            cached = (change, small, mask_box(channel_peak(small), small.shape[:2]), scale)
            self._changes[id(change)] = cached
        return cached[1], cached[2]


def grow(box: Box, margin: float, frame_size: tuple[int, int]) -> Box:
    rows, cols = box
    height, width = frame_size
    return (
        slice(max(0, int(rows.start - margin)), min(height, int(np.ceil(rows.stop + margin)))),
        slice(max(0, int(cols.start - margin)), min(width, int(np.ceil(cols.stop + margin)))),
    )


def union(first: Box, second: Box) -> Box:
    return (
        slice(min(first[0].start, second[0].start), max(first[0].stop, second[0].stop)),
        slice(min(first[1].start, second[1].start), max(first[1].stop, second[1].stop)),
    )
