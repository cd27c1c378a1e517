"""Frames in, edited frames out, around one model: what a stream and an offline clip share.

    editor = FrameEditor(bundle, EffectRequest.parse("neon_outline_cyan"))
    frame = editor.prepare(image)                   # parse, the model's window, source latent, masks
    cond = editor.condition([frame, ...], reference, text)
    x0 = bundle.denoise(cond, noise, sampling, cache)    # the caller decides how the model runs
    outputs = editor.finish([frame, ...], x0, cond)      # delta decode -> gate -> full resolution

Per frame: live parsing (`parsing.live`, landmarks only when the effect's region needs them), the
model's square window (around the person, following them smoothly; the whole frame for effects that
reach the frame's edges), the source latent, the model's mask (the edit region for local edits, the
person for effects) and the effect's scope at full resolution. After the model: the change as a delta
decode, its gate (the scope times the change's strength) and the full-resolution edit (`edit.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from streamingeffect.data.dataset import to_signed
from streamingeffect.diffusion.space import base_latent
from streamingeffect.effects import Category, UnknownEffectError, get_category
from streamingeffect.models.dit import EffectCondition, Reference, TextCondition
from streamingeffect.parsing.live import FaceFinder, LiveParse, LiveParser
from streamingeffect.pipeline.bundle import ModelBundle
from streamingeffect.pipeline.carry import FrameView
from streamingeffect.pipeline.catalog_match import matching_category
from streamingeffect.pipeline.edit import (
    GateRule,
    GuidedFilter,
    LowResEdit,
    Window,
    apply_edit,
    gray,
    person_window,
    whole_frame_window,
)
from streamingeffect.pipeline.face_follow import FaceFollower
from streamingeffect.pipeline.flow_prior import NEAR_REACH, FlowPrior, FlowSettings
from streamingeffect.pipeline.scopes import EffectScope, scope_for

LANDMARK_REGIONS = ("face", "hair", "hands", "torso")
# Regions drawn from the hands' and the pose's landmarks; the face and the hair need the face mesh alone
# (the face-scoped effects' renderers read no hand or pose either): at 720p a live parse with hands and
# pose took ~70 ms of a model refresh, the face mesh alone ~12.
BODY_REGIONS = ("hands", "torso")
MAX_PROMPT = 500  # characters (the text encoder reads at most 64 tokens anyway)
# Measured on the quick suite's keyframe sets (held-out people, with the prior carried at full
# resolution; scripts/keyframe_sets.py): the committed student's unscaled correction moved single clips
# by -0.44 to +0.39 dB against its prior (-0.29 dB on a face-paint keyframe carried through 10 s of
# pose change); scaled by the flow's doubt, -0.10 to +0.21 dB, and on the keyframe set no person's mean
# fell below flow's by more than 0.001 dB.
CORRECT_WHERE_UNSURE = True


class EffectRequestError(ValueError):
    """An effect id or prompt that cannot be used; the message says what would be."""


@dataclass(frozen=True)
class EffectRequest:
    """What to apply: a text (a catalog description or a prompt), its category if any, and its scope."""

    text: str | None
    category: Category | None
    scope: EffectScope
    label: str

    @property
    def local(self) -> bool:
        """A local edit ("edit" kind): the model is given the edit region rather than the person."""
        return self.category is not None and self.category.kind == "edit"

    @property
    def model_region(self) -> str:
        return self.category.region if self.local and self.category else "person"

    @property
    def follows_person(self) -> bool:
        """A catalog effect anchored to the person: its keyframe's change moves with them (a painted
        keyframe may be anywhere, so it moves with whatever is under it)."""
        return self.category is not None and not self.scope.whole_frame

    @property
    def prior_reach(self) -> float:
        """How far from the person an anchored effect's carried keyframe change is kept (share of the
        short side): its measured reach, at least NEAR_REACH. A neon outline dims the whole background
        while the person is in view; kept only near them, that dimming became a dark halo."""
        return max(self.scope.reach, NEAR_REACH)

    @property
    def needs_landmarks(self) -> bool:
        return self.scope.region in LANDMARK_REGIONS or self.model_region in LANDMARK_REGIONS

    @property
    def needs_body_landmarks(self) -> bool:
        """Hands and pose too, not only the face mesh (`BODY_REGIONS`)."""
        return self.scope.region in BODY_REGIONS or self.model_region in BODY_REGIONS

    @property
    def may_follow_face(self) -> bool:
        """Its keyframe may lie on the face and keep to the face mesh (`face_follow`): a painted or a
        teacher's keyframe, or a catalog effect on the face. Others skip the keyframe's face search
        (10-70 ms a keyframe, and MediaPipe's import for a stream that has not parsed yet)."""
        return self.category is None or self.scope.region == "face"

    @classmethod
    def parse(cls, id_or_prompt: str, match_catalog: bool = True) -> EffectRequest:
        """A catalog id, or a free prompt (anything that does not look like an id). A prompt close to a
        catalog description is served as that category (``match_catalog``; it loads the text encoder)."""
        text = id_or_prompt.strip()
        if not text:
            raise EffectRequestError("empty prompt: describe the effect, e.g. 'a glowing cyan neon outline'")
        if len(text) > MAX_PROMPT:
            raise EffectRequestError(f"the prompt is {len(text)} characters; keep it under {MAX_PROMPT}")
        try:
            category = get_category(text)
        except UnknownEffectError:
            if " " not in text and "_" in text:  # meant as an id: the error says which ids are close
                raise
            matched = matching_category(text) if match_catalog else None
            if matched is not None:
                return cls(text, matched, scope_for(matched), f"prompt: {text} (as {matched.id})")
            return cls(text, None, scope_for(None), f"prompt: {text}")
        return cls(category.descriptions[0], category, scope_for(category), category.id)

    @classmethod
    def keyframe_only(cls) -> EffectRequest:
        """A keyframe with no text: it acts on the person and around them."""
        return cls(None, None, scope_for(None), "keyframe")


@dataclass(frozen=True)
class EditorOptions:
    parse_side: int = 256  # MediaPipe sees frames at most this large (speed)
    follow: float = 0.2  # share of the way the window moves toward the person each frame
    dead_zone: float = 0.05  # ... once the person's centre is this far (share of the side) off
    guided: GuidedFilter = field(default_factory=GuidedFilter)
    gate: GateRule = field(default_factory=GateRule)
    flow: FlowSettings = field(default_factory=FlowSettings)
    # The model's correction on top of a flow prior, scaled by (1 - the flow's confidence): where the
    # forward-backward check holds, the carried keyframe stands (module doc of `flow_prior`).
    correct_where_unsure: bool = CORRECT_WHERE_UNSURE


NOT_ENCODED = torch.empty(0)  # a prepared frame's latent until `FrameEditor.prepare` encodes it


@dataclass
class PreparedFrame:
    """A frame on its way through the model."""

    image: np.ndarray  # [H, W, 3] uint8
    pushed_at: float
    parse: LiveParse
    window: Window
    latent: torch.Tensor  # [C, h, w] source latent of the window
    mask: torch.Tensor  # [1, h, w] the model's mask (edit region or person) at latent resolution
    scope: np.ndarray  # [H, W] float where the effect may act (the live worker's: at parse resolution)
    guide: np.ndarray  # [R, R] gray of the window as the model saw it (the source with its prior)
    cut: np.ndarray | None = None  # [R, R, 3] uint8 the source's window at the model's resolution
    prior: np.ndarray | None = None  # [H, W, 3] float32 the keyframe's change carried here (0-255 units)
    prior_latent: torch.Tensor | None = None  # [C, h, w] latent(source + prior) - latent(source)
    confidence: torch.Tensor | None = None  # [1, h, w] the flow's confidence at latent resolution
    doubt: np.ndarray | None = None  # [R, R] 1 - the flow's confidence at the model's resolution
    # The keyframes the prior was carried from: (source frame, change, weight) each, weights summing to 1
    # (the decoupled worker adds the face's fill: a change made on this frame, at the carrying
    # resolution, `face_follow`).
    prior_keys: tuple[tuple[np.ndarray, np.ndarray, float], ...] = ()
    # The flows (flow pixels) from this frame to each of those keys, when the editor kept them for a
    # per-frame path to compose with its own (the decoupled runtime's worker); None otherwise.
    prior_flows: tuple[np.ndarray, ...] | None = None
    # With them, each key's share that stays at each pixel of this frame [fh, fw] (None: all of it; the
    # face's geometry, `face_follow`), and None when every key stays whole.
    prior_keeps: tuple[np.ndarray | None, ...] | None = None
    view: FrameView | None = None  # its gray views, when the caller made them already (`EditCarrier.view`)


class FrameEditor:
    """Prepares frames for a model and turns its results into full-resolution edits (module doc)."""

    def __init__(self, bundle: ModelBundle, request: EffectRequest, options: EditorOptions = EditorOptions()):
        self.bundle, self.request, self.options = bundle, request, options
        self.parser = LiveParser(options.parse_side)
        self._faces = FaceFinder(options.parse_side)  # a keyframe's face mesh (`face_follow`)
        self.flow = FlowPrior(options.flow, FaceFollower(self._faces))
        self._window: Window | None = None
        self._index = 0
        self._keyframe: tuple[np.ndarray, np.ndarray] | None = None  # (its source frame, its change)
        self._fading: tuple[np.ndarray, np.ndarray] | None = None  # the keyframe being replaced
        self._fade = (0, 0)  # (frames into the cross-fade, its length)

    @property
    def uses_prior(self) -> bool:
        """The model takes the flow prior (a keyframe's change carried to each frame)."""
        return self.bundle.net.config.prior

    @property
    def keyframe(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(the keyframe's source frame [H, W, 3] uint8, its change [H, W, 3] float32), or None."""
        return self._keyframe

    def set_keyframe(self, source: np.ndarray | None, edited: np.ndarray | None, crossfade: int = 0) -> None:
        """The keyframe whose change the flow prior carries (None, None: no keyframe). ``crossfade``: over
        that many frames the prior moves from the old keyframe's to the new one's (a refresh of the same
        effect shows no jump); 0 takes hold at once (a new edit)."""
        old = self._keyframe
        if source is None or edited is None:
            self._keyframe = None
        else:
            self._keyframe = (source, cv2.subtract(edited, source, dtype=cv2.CV_32F))
        keep = crossfade > 0 and old is not None and self._keyframe is not None
        self._fading, self._fade = (old, (0, crossfade)) if keep else (None, (0, 0))
        faces = self.flow.faces
        if (
            self.uses_prior
            and self.request.may_follow_face
            and self._keyframe is not None
            and faces is not None
        ):
            faces.prepare(*self._keyframe)  # finds the keyframe's face once

    @property
    def _follows_face(self) -> bool:
        """The keyframe's edit lies on the face: frames parse their face mesh, and the prior keeps to
        it (`face_follow`)."""
        faces, keyframe = self.flow.faces, self._keyframe
        return (
            self.request.may_follow_face
            and faces is not None
            and keyframe is not None
            and faces.key(keyframe[1]) is not None
        )

    @property
    def needs_landmarks(self) -> bool:
        """Frames must be parsed with landmarks (the effect's region needs them, or the keyframe's edit
        follows the face)."""
        return self.request.needs_landmarks or self._follows_face

    def set_request(self, request: EffectRequest) -> None:
        if request.scope.whole_frame != self.request.scope.whole_frame:
            self._window = None  # another kind of window
        self.request = request

    def reset(self) -> None:
        """A new stream: forget the window and the parser's temporal state."""
        self.parser.reset()
        self._window, self._index = None, 0

    def close(self) -> None:
        self.parser.close()
        self._faces.close()

    # ------------------------------------------------------------------------------------- frames

    def parse(self, image: np.ndarray) -> LiveParse:
        body, face = self.request.needs_body_landmarks, self.needs_landmarks
        parse = self.parser(image, body, index=self._index, face=face)
        self._index += 1
        return parse

    def prepare(
        self,
        image: np.ndarray,
        pushed_at: float | None = None,
        parse: LiveParse | None = None,
        view: FrameView | None = None,
    ) -> PreparedFrame:
        """image [H, W, 3] uint8 RGB (and its parse, if the caller timed it apart; its gray views, if the
        caller made them) -> ready for the model."""
        parse = self.parse(image) if parse is None else parse
        window = self._follow(parse)
        resolution = self.bundle.resolution
        cut = window.cut(image, resolution)
        mask, scope = self._masks(parse, window)
        frame = PreparedFrame(
            image=image,
            pushed_at=time.perf_counter() if pushed_at is None else pushed_at,
            parse=parse,
            window=window,
            latent=NOT_ENCODED,
            mask=torch.from_numpy(mask)[None],
            scope=scope,
            guide=gray(cut),
            cut=cut,
            view=view,
        )
        with_prior = self._add_prior(frame) if self.uses_prior and self._keyframe is not None else None
        # One batch for the frame and the frame with its prior (at 128 px: 13.5 ms against 2 x 8).
        cuts = cut[None] if with_prior is None else np.stack([cut, with_prior])
        latents = self.bundle.encode(to_signed(cuts))[0]  # [1 or 2, C, h, w]
        frame.latent = latents[0]
        if with_prior is not None:
            frame.prior_latent = latents[1] - latents[0]
        return frame

    def _masks(self, parse: LiveParse, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """The model's mask over ``window`` at latent resolution [s, s], and the effect's scope at the
        frame's size [H, W] (for `apply`)."""
        height, width = parse.frame_size
        model_mask = parse.region_at_frame_size(self.request.model_region)
        scope = self.request.scope.mask(parse.parts.regions)
        return (
            window.cut(model_mask, self.bundle.latent_side),
            cv2.resize(scope, (width, height), interpolation=cv2.INTER_LINEAR),
        )

    def _add_prior(self, frame: PreparedFrame) -> np.ndarray | None:
        """The keyframe's change carried to ``frame`` by flow, at full resolution and for the model ->
        the model's window of the frame with the change [R, R, 3] uint8, for `prepare` to encode (None:
        no key to carry here)."""
        frame.prior_keys = self._next_prior_keys(frame.image.shape)
        if not frame.prior_keys:
            return None
        anchor = frame.parse.person if self.request.follows_person else None
        reach, face = self.request.prior_reach, frame.parse.face_at_frame_size()
        carries = [
            self.flow(frame.image, source, change, anchor, reach, face)
            for source, change, _ in frame.prior_keys
        ]
        weights = [weight for _, _, weight in frame.prior_keys]
        carried = sum(w * moved for w, (moved, _) in zip(weights, carries, strict=True))
        confidence = sum(w * trust for w, (_, trust) in zip(weights, carries, strict=True))
        base = np.clip(np.rint(frame.image + carried), 0, 255).astype(np.uint8)
        resolution, side = self.bundle.resolution, self.bundle.latent_side
        cut = frame.window.cut(base, resolution)
        frame.prior = carried
        frame.confidence = torch.from_numpy(frame.window.cut(confidence, side))[None]
        frame.doubt = 1.0 - frame.window.cut(confidence, resolution)
        frame.guide = gray(cut)
        return cut

    def _next_prior_keys(self, shape: tuple[int, ...]) -> tuple[tuple[np.ndarray, np.ndarray, float], ...]:
        """The keyframes a frame of ``shape`` carries its prior from, (source, change, weight) each with
        the weights summing to 1: the keyframe, and during a cross-fade also the one it replaces (its
        share falling); advances the cross-fade. () for a keyframe of another size (a restart)."""
        key_source, key_change = self._keyframe  # type: ignore[misc]
        if key_source.shape != shape:
            return ()
        if self._fading is None or self._fading[0].shape != shape:
            return ((key_source, key_change, 1.0),)
        step, length = self._fade
        weight = (step + 1) / (length + 1)  # the new keyframe's share, rising to 1
        keys = ((key_source, key_change, weight), (*self._fading, 1 - weight))
        self._fade = (step + 1, length)
        if step + 1 >= length:
            self._fading = None
        return keys

    def _follow(self, parse: LiveParse) -> Window:
        """The model's window: the whole frame, or the square on the person, moving toward them smoothly
        (a jumpy window would look like a shaking camera to the model)."""
        if self.request.scope.whole_frame:
            return whole_frame_window(parse.frame_size)
        wanted = person_window(parse.person, parse.frame_size)
        current = self._window
        if current is None or current.side != wanted.side or not (parse.person > 0.5).any():
            self._window = current if current is not None and current.side == wanted.side else wanted
            return self._window
        dx, dy = wanted.x0 - current.x0, wanted.y0 - current.y0
        if max(abs(dx), abs(dy)) > self.options.dead_zone * current.side:
            step = self.options.follow
            self._window = Window(round(current.x0 + step * dx), round(current.y0 + step * dy), current.side)
        return self._window

    # ------------------------------------------------------------------------------------- model

    def reference(self, source: np.ndarray, edited: np.ndarray, frame: PreparedFrame) -> Reference:
        """A keyframe (its source frame and the edited frame, [H, W, 3] uint8) in ``frame``'s window."""
        resolution = self.bundle.resolution
        pair = to_signed(
            np.stack([frame.window.cut(source, resolution), frame.window.cut(edited, resolution)])
        )
        return self.bundle.reference(pair[0], pair[1], frame.mask)

    @staticmethod
    def condition(
        frames: list[PreparedFrame], reference: Reference | None, text: TextCondition | None
    ) -> EffectCondition:
        source = torch.stack([f.latent for f in frames])[None]  # [1, F, C, h, w]
        mask = torch.stack([f.mask for f in frames])[None]  # [1, F, 1, h, w]
        cond = EffectCondition(source, mask, reference, text)
        if any(f.prior_latent is not None for f in frames):
            zero = torch.zeros_like(frames[0].latent)
            cond.prior = torch.stack([zero if f.prior_latent is None else f.prior_latent for f in frames])[
                None
            ]
            cond.confidence = torch.stack(
                [torch.zeros_like(f.mask) if f.confidence is None else f.confidence for f in frames]
            )[None]
        return cond

    def finish(
        self, frames: list[PreparedFrame], x0: torch.Tensor, cond: EffectCondition
    ) -> list[np.ndarray]:
        """The model's clean sample x0 [1, F, C, h, w] (diffusion space) -> the edited frames."""
        change = self.bundle.decode_edit(x0, base_latent(cond.source, cond.prior))  # [F, 3, R, R] in [-2, 2]
        lows = (change / 2).permute(0, 2, 3, 1).numpy()  # [F, R, R, 3] in units of full scale
        return [self.apply(frame, low) for frame, low in zip(frames, lows, strict=True)]

    def doubted(self, frame: PreparedFrame, change: np.ndarray) -> np.ndarray:
        """The model's correction [R, R, 3] scaled by the flow's doubt where the frame has a prior
        (`EditorOptions.correct_where_unsure`; unchanged otherwise)."""
        if not self.options.correct_where_unsure or frame.doubt is None:
            return change
        doubt = cv2.resize(frame.doubt, change.shape[1::-1], interpolation=cv2.INTER_AREA)
        return change * doubt[..., None]  # [R, R, 3]

    def apply(self, frame: PreparedFrame, change: np.ndarray) -> np.ndarray:
        """One frame's change at model resolution [R, R, 3] -> the edited frame at full resolution."""
        region_low = frame.window.cut(frame.scope, change.shape[0])
        change = self.doubted(frame, change)
        edit = LowResEdit(frame.window, change, self.options.gate(change, region_low), frame.guide)
        return apply_edit(frame.image, edit, frame.scope, self.options.guided, frame.prior)
