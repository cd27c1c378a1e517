"""Where an effect may act: its region, grown by how far the effect reaches past it.

A neon outline glows past the person's edge, a crown sits above the hair region, a blurred background
bleeds into the person's border. The reach of each catalog category was measured on the renderer
(``measure_reach``: the 99th percentile distance of the pixels it changes from its region, as a share
of the frame's short side, over clips of training people) and is committed in ``scopes.json``. The
gate of the output is 0 outside the scope, so there the output is the source exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.effects import Category
from streamingeffect.parsing.masks import grown_feathered
from streamingeffect.parsing.types import RegionMasks

SCOPES_FILE = Path(__file__).with_name("scopes.json")
PROMPT_REACH = 0.08  # a free prompt with no catalog match: the person and this much around it
MIN_REACH = 0.01  # every scope is grown at least this much: masks are never exact at the border
# A few effects reach far past their anchor with a faint change (a neon outline dims the whole
# background): the gate keeps their near part, where the effect is; the model's change far away is
# mostly its noise (measured: opening the whole frame for them painted haze over the background).
MAX_REACH = 0.15
UNANCHORED = ("scene", "background")  # regions that exist with nobody in view


@dataclass(frozen=True)
class EffectScope:
    """An effect's region and reach (share of the frame's short side)."""

    region: str  # a RegionMasks name, or "scene" (every pixel)
    reach: float

    @property
    def whole_frame(self) -> bool:
        """The effect lives on the background or the scene, up to the frame's edges: the model sees the
        whole frame."""
        return self.region in UNANCHORED

    def mask(self, regions: RegionMasks) -> np.ndarray:
        """The scope at the regions' resolution [h, w] float32 in [0, 1]: soft-edged, exactly 0 outside.

        An effect anchored to the person (or a part of them) acts nowhere when its anchor is not in
        view, as the renderer does: no ghost of an outline stays when the person leaves.
        """
        if self.region == "scene":
            return np.ones_like(regions.person)
        base = regions.get(self.region) > 0.5
        if not base.any():
            return np.zeros_like(regions.person)
        radius = max(1, round(min(max(self.reach, MIN_REACH), MAX_REACH) * min(base.shape)))
        return grown_feathered(base, radius)


@lru_cache(maxsize=1)
def _measured() -> dict[str, dict[str, float | str]]:
    return json.loads(SCOPES_FILE.read_text()) if SCOPES_FILE.exists() else {}


def scope_for(category: Category | None) -> EffectScope:
    """The measured scope of a catalog category; a free prompt acts on the person and around it."""
    if category is None:
        return EffectScope("person", PROMPT_REACH)
    measured = _measured().get(category.id)
    # Unmeasured (its anchor never showed on the clips measured): as wide as a free prompt.
    reach = PROMPT_REACH if measured is None or measured["reach"] is None else float(measured["reach"])
    return EffectScope(category.region, reach)


def measure_reach(
    category: Category, frames: np.ndarray, parts: list, quantile: float = 0.99
) -> float | None:
    """How far past its region ``category`` changes pixels on ``frames`` [F, H, W, 3] with their parts,
    as a share of the short side (0 when it stays inside); None when it changed nothing here."""
    from streamingeffect.data.render import changed_pixels, render_frames

    if category.region == "scene":
        return 0.0
    rendered = render_frames(category, frames, parts, seed=0)
    changed = changed_pixels(rendered, frames)
    distances = []
    for k, part in enumerate(parts):
        inside = (part.regions.get(category.region) > 0.5).astype(np.uint8)
        if not changed[k].any():
            continue
        # Distance of every pixel to the region (0 inside it).
        far = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3) if inside.any() else None
        if far is None:
            continue
        distances.append(far[changed[k]])
    if not distances:
        return None
    values = np.concatenate(distances)
    return float(np.quantile(values, quantile)) / min(frames.shape[1:3])


def measure_scopes(clips: list[Path], frames: int = 24, progress: bool = True) -> dict[str, dict]:
    """Every catalog category's region and reach, the largest over ``clips`` (``frames`` of each, every
    second frame from the start, so hands and poses vary)."""
    from tqdm import tqdm

    from streamingeffect.effects import catalog
    from streamingeffect.io import read_frames
    from streamingeffect.parsing.masks import full_frame, window_parts
    from streamingeffect.parsing.mediapipe_parser import parse_clip

    windows = []
    for clip in clips:
        parse = parse_clip(clip, progress=progress)
        indices = list(range(0, min(2 * frames, parse.num_frames), 2))
        height, width = parse.size
        every = [f.image for f in read_frames(clip, stop=indices[-1] + 1, size=(width, height))]
        pixels = np.stack([every[i] for i in indices])
        parts = window_parts(parse, indices, full_frame(parse), (height, width), parse.fps)
        windows.append((pixels, parts))
    scopes = {}
    for category in tqdm(catalog(), desc="effect reach", unit="category", disable=not progress):
        measured = [measure_reach(category, pixels, parts) for pixels, parts in windows]
        reaches = [r for r in measured if r is not None]
        scopes[category.id] = {
            "region": category.region,
            "reach": round(max(reaches), 4) if reaches else None,
        }
    return scopes


def write_scopes(scopes: dict[str, dict], path: Path = SCOPES_FILE) -> None:
    path.write_text(json.dumps(scopes, indent=1, sort_keys=True) + "\n")
    _measured.cache_clear()
