"""`streamingeffect bench painted`: an edit outside the catalog, painted on one frame, carried through a
held-out clip by the model and, beside it, by plain optical flow.

The paint is what a person would draw in the studio's editor: a magenta stroke along the hairline, a
yellow star on a cheek, cyan dots under an eye (placed from the face mesh of the first frame). There is
no ground truth for a painting, so the strip is for looking; the warp error (temporal steadiness along
the source's flow) of both outputs is measured beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from streamingeffect.eval.heldout import HeldoutFrames, person_frames
from streamingeffect.eval.metrics import warp_error
from streamingeffect.parsing.indices import FACE_OVAL
from streamingeffect.precision import machine_summary

CHEEK, OTHER_EYE_LOWER = 50, 374  # face-mesh landmarks: a cheek, the lower lid of the other eye


def paint(frame: np.ndarray, face: np.ndarray) -> np.ndarray:
    """A hand-painted-looking edit of ``frame`` [H, W, 3] from its face landmarks [478, 2] (pixels)."""
    out = frame.copy()
    scale = float(np.ptp(face[:, 0]))  # face width in pixels
    thick = max(2, round(scale / 14))
    oval = face[list(FACE_OVAL)]
    top = oval[oval[:, 1] < np.percentile(oval[:, 1], 35)]
    top = top[np.argsort(top[:, 0])] - [0, scale * 0.16]
    cv2.polylines(out, [np.round(top).astype(np.int32)], False, (235, 40, 200), thick, cv2.LINE_AA)
    cx, cy = face[CHEEK]
    radius = scale * 0.12
    angles = np.pi / 2 + np.arange(10) * np.pi / 5
    lengths = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    star = np.stack([cx + lengths * np.cos(angles), cy - lengths * np.sin(angles)], axis=1)
    cv2.fillPoly(out, [np.round(star).astype(np.int32)], (255, 215, 0), cv2.LINE_AA)
    ex, ey = face[OTHER_EYE_LOWER]
    for k in range(3):
        centre = (round(ex), round(ey + scale * (0.08 + 0.07 * k)))
        cv2.circle(out, centre, max(2, round(scale * 0.025)), (40, 220, 255), -1, cv2.LINE_AA)
    return out


def flow_propagation(frames: np.ndarray, key_source: np.ndarray, key_edited: np.ndarray) -> np.ndarray:
    """The keyframe's change carried to every frame by DIS flow (frame -> keyframe), added to it."""
    from streamingeffect.eval.metrics import _flow, _gray, _sample

    change = key_edited.astype(np.float32) - key_source.astype(np.float32)
    key = _gray(key_source)
    out = [
        np.clip(f + _sample(change, _flow(_gray(f), key)), 0, 255).round().astype(np.uint8) for f in frames
    ]
    return np.stack(out)


def run_painted(model: str, held: HeldoutFrames) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (the painted keyframe, the model's outputs [F, H, W, 3], flow propagation's)."""
    from streamingeffect.runtime import EffectStream

    face = held.parses[0].parts_at_frame_size().face
    if face is None:
        raise ValueError(f"{held.name}: no face found on the first frame to paint on")
    painted = paint(held.frames[0], face)
    with EffectStream.from_pretrained(model) as stream:
        stream.set_keyframe(held.frames[0], painted)
        outputs = [out for frame in held.frames for out in stream.push(frame)] + stream.flush()
    return painted, np.stack(outputs), flow_propagation(held.frames, held.frames[0], painted)


def run_painted_benchmark(model: str, frames: int, picture: Path, report: Path | None, command: str) -> str:
    from streamingeffect.data.people import heldout_people
    from streamingeffect.docs import replace_section
    from streamingeffect.eval.leaves import strip
    from streamingeffect.io import save_image

    held = person_frames(heldout_people()[0], frames)
    _, model_out, flow_out = run_painted(model, held)
    save_image(picture, strip(held.frames, model_out, flow_out))
    height, width = held.frames.shape[1:3]
    lines = [
        "## A painted keyframe carried through a held-out clip",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_summary()}. `{held.name}` "
        f"at {width}x{height}, {frames} frames; the keyframe is frame 0 with paint no catalog effect makes. "
        "Rows: the source, the model (`EffectStream` with the keyframe), plain optical flow of the "
        "keyframe's "
        "change. No ground truth exists for a painting; warp error (0-255, lower is steadier; the source's "
        f"own: {warp_error(held.frames, held.frames):.2f}): model {warp_error(model_out, held.frames):.2f}, "
        f"flow {warp_error(flow_out, held.frames):.2f}.",
        "",
        f"![source, model, flow]({os.path.relpath(picture, report.parent) if report else picture})",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if report is not None:
        replace_section(report, "painted", text)
    return text
