"""Flow knows correspondence: the keyframe's change carried to the current frame along dense flow.

    prior = FlowPrior()
    change, confidence = prior(frame, key_source, key_change)   # [H, W, 3] float, [H, W] in [0, 1]

DIS optical flow runs on gray frames (the long side at most ``FlowSettings.side``) from the current
frame to the frame the keyframe was edited from and back; a forward-backward check marks where the
two disagree (occlusions, new content) and the confidence falls to 0 there. The keyframe's change
(edited - source) is sampled at full resolution along the upsampled flow. With an identity flow the
prior is the keyframe's change itself. The confidence goes to the network beside the prior; it does
not scale the prior: measured on the benchmark person, weighting the carried change by it cost 6 dB
inside the edit (29.1 -> 23.1 dB, tolerance 1.5 px; still 2.3 dB at 12 px), because the check also
fails where flow is right. It scales the model's correction instead (`EditorOptions`). Two cases do
drop the prior: a scene cut (the frame's mean confidence below ``SCENE_CUT``), and, for an effect
anchored to the person, everything away from the person.

An effect anchored to the person (an aura, an outline, a crown) must move with the person, also where
it lies over the background, which flow would carry with the background instead. Given the person's
mask (``anchor``), the flow outside the person is replaced by the person's own flow spread outward
(a normalised blur of the flow inside the mask), and trusted there.

An edit that lies on the face keeps to the face mesh's geometry, given the frame's landmarks and a
`FaceFollower` that prepared the keyframe (`face_follow`): flow carries its texture, the mesh decides
where it covers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from streamingeffect.parsing.masks import grown_feathered
from streamingeffect.pipeline import face_follow
from streamingeffect.pipeline.face_follow import FaceFollower

SCENE_CUT = 0.2  # below this mean confidence the frame is another scene than the keyframe's
NEAR_REACH = 0.15  # an anchored effect's carried change is kept at least this far around the person
NEAR_SIDE = 64  # `near_person` works at this short side (pixels) and resizes its smooth mask


@dataclass(frozen=True)
class FlowSettings:
    # The forward-backward check (the confidence the model sees) runs with the frame's long side at
    # most ``side`` pixels, as the model was trained; the flow that carries the change at most
    # ``carry_side``, with ``carry_preset``. The carry is the floor under the model's output: on the
    # quick suite's keyframe sets (held-out people, frames of 512-640 px) "fast" at 320 px carried the
    # keyframe 0.45 dB (keyframe set) and 0.84 dB (long set) worse than "medium" at the frames' own
    # size, which is the suite's flow baseline (one "medium" call at 640x360: ~38 ms here, loaded).
    side: int = 320
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST
    carry_side: int = 640
    carry_preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
    tolerance: float = 1.5  # forward-backward disagreement (flow pixels) where confidence reaches 0
    blur: float = 1.0  # confidence smoothing (flow pixels): no speckle of 0s on the edited region
    spread: float = 0.08  # how far the person's flow reaches outward (sigma, share of the long side)


class FlowPrior:
    """Dense flow between a frame and a reference frame, and what it carries (module docstring)."""

    def __init__(self, settings: FlowSettings = FlowSettings(), faces: FaceFollower | None = None):
        self.settings = settings
        self.faces = faces  # an edit on the face follows its mesh (`face_follow`), given landmarks
        self._dis = cv2.DISOpticalFlow_create(settings.preset)
        self._carry_dis = cv2.DISOpticalFlow_create(settings.carry_preset)
        self._reference_key: int | None = None
        self._reference_small: tuple[np.ndarray, np.ndarray] | None = None  # (check, carry) grays

    @property
    def _separate_carry(self) -> bool:
        s = self.settings
        return (s.carry_side, s.carry_preset) != (s.side, s.preset)

    def small_gray(self, frame: np.ndarray, side: int | None = None) -> np.ndarray:
        height, width = frame.shape[:2]
        scale = min(1.0, (side or self.settings.side) / max(height, width))
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        return cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)

    def flow(self, frame: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (flow [h, w, 2] from the frame to the reference at the carry's resolution, confidence
        [h, w] at the same resolution)."""
        if self._reference_key != id(reference) or self._reference_small is None:
            grays = (self.small_gray(reference), self.small_gray(reference, self.settings.carry_side))
            self._reference_small, self._reference_key = grays, id(reference)
        back, back_carry = self._reference_small
        current = self.small_gray(frame)
        forward = self._dis.calc(current, back, None)
        backward = self._dis.calc(back, current, None)
        confidence = forward_backward_confidence(forward, backward, self.settings)
        if not self._separate_carry:
            return forward, confidence
        carry = self._carry_dis.calc(self.small_gray(frame, self.settings.carry_side), back_carry, None)
        size = (carry.shape[1], carry.shape[0])
        return carry, cv2.resize(confidence, size, interpolation=cv2.INTER_LINEAR)

    def __call__(
        self,
        frame: np.ndarray,
        reference: np.ndarray,
        change: np.ndarray,
        anchor: np.ndarray | None = None,
        reach: float = NEAR_REACH,
        face: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The reference's ``change`` [H, W, C] float carried onto ``frame`` [H, W, 3] uint8 ->
        (carried change [H, W, C] float32, confidence [H, W] float32). ``anchor``: the frame's person
        mask (any resolution) when the change moves with the person: the change is carried by the
        person's flow, and kept only on and within ``reach`` of the person (nothing with nobody in
        view). ``face``: the frame's landmarks [P, 2] in its pixels; an edit on the face then keeps
        to the face's shape (`face_follow`, for a reference `faces` prepared)."""
        flow, confidence = self.flow(frame, reference)
        height, width = frame.shape[:2]
        if confidence.mean() < SCENE_CUT:  # another scene: nothing of the keyframe belongs here
            return np.zeros((height, width, *change.shape[2:]), np.float32), np.zeros(
                (height, width), np.float32
            )
        if anchor is not None:
            flow, confidence = self.follow_person(flow, confidence, anchor)
        full_confidence = cv2.resize(confidence, (width, height), interpolation=cv2.INTER_LINEAR)
        carried = warp_by_flow(change, flow, (height, width))
        if face is not None and self.faces is not None and (key := self.faces.key(change)) is not None:
            carried = face_follow.correct(carried, key, flow, face)
        if anchor is not None:
            near = near_person(anchor, (height, width), reach)
            carried *= near.reshape(height, width, *([1] * (carried.ndim - 2)))
        return carried, full_confidence

    def follow_person(
        self, flow: np.ndarray, confidence: np.ndarray, person: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Outside the person, the person's flow spread outward, fully trusted (module docstring)."""
        return spread_person_flow(flow, person, self.settings.spread, confidence, coarse=1)


def spread_person_flow(
    flow: np.ndarray, person: np.ndarray, spread: float, confidence: np.ndarray | None = None, coarse: int = 4
) -> Any:
    """The person's own flow inside them, spread outward around them and trusted there (module
    docstring), with the wide blur done at 1/``coarse`` of the flow's resolution (the per-frame path's
    4: ~1 ms instead of ~15 at 320x180; `FlowPrior` blurs at full resolution). flow [h, w, 2], person
    [any size] -> flow [h, w, 2] (and the confidence [h, w], when one is given)."""
    height, width = flow.shape[:2]
    sigma = spread * max(height, width) / coarse
    masks = _spread_masks(person, (height, width), coarse, sigma)
    if masks is None:  # nobody in view
        return flow if confidence is None else (flow, confidence)
    on_person, weight, mass, inside = masks
    small = mass.shape[1::-1]
    moving = cv2.GaussianBlur(
        cv2.resize(cv2.multiply(flow, cv2.merge([weight, weight])), small, interpolation=cv2.INTER_AREA),
        (0, 0),
        sigma,
    )
    mean = np.array(cv2.mean(flow, mask=on_person.view(np.uint8))[:2], np.float32)
    spread_flow = np.where(mass[..., None] > 1e-3, moving / np.maximum(mass, 1e-6)[..., None], mean)
    spread_flow = cv2.resize(spread_flow.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    # spread + inside (flow - spread), in OpenCV's float32 passes (numpy's broadcast took twice as long)
    moved = cv2.add(spread_flow, cv2.multiply(cv2.subtract(flow, spread_flow), cv2.merge([inside, inside])))
    if confidence is None:
        return moved
    return moved, (inside * confidence + (1 - inside)).astype(np.float32)


_PERSON_MASKS = threading.local()  # each thread's newest person masks (`_spread_masks`, `near_person`)


def _person_memo(kind: str, person: np.ndarray, key: tuple, make: Callable[[], Any]) -> Any:
    """``make()`` for this person mask and ``key``, remembered per thread and kind while the same mask
    comes back (the per-frame path segments every second frame, so every other frame reuses it)."""
    cached = getattr(_PERSON_MASKS, kind, None)
    if cached is None or cached[0] is not person or cached[1] != key:
        cached = (person, key, make())
        setattr(_PERSON_MASKS, kind, cached)
    return cached[2]


def _spread_masks(
    person: np.ndarray, size: tuple[int, int], coarse: int, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """`spread_person_flow`'s masks of the person at the flow's ``size``: on them (bool), their weight,
    its blurred mass at 1/``coarse`` and the soft seam at their edge [h, w]; None: nobody in view."""

    def make() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        height, width = size
        resized = cv2.resize(person.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        on_person = resized > 0.5
        if not on_person.any():
            return None
        weight = on_person.astype(np.float32)
        small = (max(1, width // coarse), max(1, height // coarse))
        mass = cv2.GaussianBlur(cv2.resize(weight, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
        inside = cv2.GaussianBlur(weight, (0, 0), 1.0)  # a soft seam at the person's edge
        return on_person, weight, mass, inside

    return _person_memo("spread", person, (size, coarse, sigma), make)


def near_person(person: np.ndarray, size: tuple[int, int], reach: float = NEAR_REACH) -> np.ndarray:
    """[H, W] float: 1 on and around the person (``reach`` of the short side, feathered), 0 beyond and
    everywhere when nobody is in view. Worked out with the short side at NEAR_SIDE pixels and resized:
    the mask is smooth at that scale (at 320x180 directly, the wide blur took 7 ms). Remembered while
    the same mask comes back (`_person_memo`): callers do not change it."""

    def make() -> np.ndarray:
        height, width = size
        scale = min(1.0, NEAR_SIDE / min(height, width))
        work_h, work_w = max(1, round(height * scale)), max(1, round(width * scale))
        resized = cv2.resize(person.astype(np.float32), (work_w, work_h), interpolation=cv2.INTER_LINEAR)
        mask = resized > 0.5
        if not mask.any():
            return np.zeros(size, np.float32)
        near = grown_feathered(mask, max(1, round(reach * min(work_h, work_w))))
        if (work_h, work_w) == (height, width):
            return near
        return cv2.resize(near, (width, height), interpolation=cv2.INTER_LINEAR)

    return _person_memo("near", person, (size, reach), make)


def forward_backward_confidence(
    forward: np.ndarray, backward: np.ndarray, settings: FlowSettings
) -> np.ndarray:
    """1 where following the flow there and back returns to the start, falling to 0 at ``tolerance``."""
    there = warp_by_flow(backward, forward, forward.shape[:2])  # the backward flow where each pixel lands
    round_trip = cv2.split(forward + there)
    error = cv2.magnitude(round_trip[0], round_trip[1])  # at 320x180 0.1 ms, numpy's norm 1.6
    confidence = np.clip(1.0 - error / settings.tolerance, 0.0, 1.0).astype(np.float32)
    if settings.blur > 0:
        confidence = np.minimum(confidence, cv2.GaussianBlur(confidence, (0, 0), settings.blur))
    return confidence


def warp_by_flow(values: np.ndarray, flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sample ``values`` [H', W', ...] (any resolution) where ``flow`` [h, w, 2] (pixels at its own
    resolution, current -> reference) points, for an output of ``size`` (height, width)."""
    height, width = size
    src_h, src_w = values.shape[:2]
    flow_h, flow_w = flow.shape[:2]
    full = flow if (flow_h, flow_w) == (height, width) else cv2.resize(flow, (width, height))
    # Each output pixel's centre in the values' pixels, plus the flow there brought to those pixels.
    base_x, base_y = _centres(size, (src_h, src_w))
    along_x, along_y = cv2.split(full)
    map_x = cv2.scaleAdd(along_x, src_w / flow_w, base_x)
    map_y = cv2.scaleAdd(along_y, src_h / flow_h, base_y)
    values = np.ascontiguousarray(values, dtype=np.float32)
    return cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=16)
def _centres(size: tuple[int, int], source: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The centres of a grid of ``size`` (height, width) pixels in the pixels of an image of
    ``source``'s size, x [h, w] and y [h, w] float32 (read-only: shared between calls)."""
    (height, width), (src_h, src_w) = size, source
    xs = (np.arange(width, dtype=np.float32) + 0.5) * (src_w / width) - 0.5
    ys = (np.arange(height, dtype=np.float32) + 0.5) * (src_h / height) - 0.5
    base_x, base_y = np.meshgrid(xs, ys)
    base_x.flags.writeable = base_y.flags.writeable = False
    return base_x, base_y
