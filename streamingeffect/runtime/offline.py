"""`streamingeffect generate`: a clip in, the clip with the effect out, through the same pipeline.

A causal student runs exactly as a live stream does: the frames go through `EffectStream`, so the
file and the stream cannot disagree. A teacher attends over whole windows of frames: the same
`FrameEditor` prepares them and turns its results into full-resolution edits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from streamingeffect.diffusion.sampler import NO_GUIDANCE, Guidance
from streamingeffect.io.video import VideoInfo
from streamingeffect.models.dit import Reference, TextCondition
from streamingeffect.pipeline import (
    EffectRequest,
    FrameEditor,
    ModelBundle,
    PreparedFrame,
    Sampling,
    text_condition,
)
from streamingeffect.runtime.stream import EffectStream, StreamOptions

Keyframe = tuple[np.ndarray, np.ndarray]  # (the frame it was edited from, the edited frame), [H, W, 3]


def effect_frames(
    frames: Iterator[np.ndarray],
    bundle: ModelBundle,
    effect: str | None,
    keyframe: Keyframe | None = None,
    sampling: Sampling | None = None,
    guidance: Guidance = NO_GUIDANCE,
    seed: int = 0,
    options: StreamOptions | None = None,
) -> Iterator[np.ndarray]:
    """Edited frames, one per input frame [H, W, 3] uint8, in order. ``keyframe`` None with a keyframe
    request: the caller passes the source frame as it is first seen (see `generate_video`)."""
    if effect is None and keyframe is None:
        raise ValueError("give an effect id, a prompt or a reference keyframe")
    sampling = sampling or bundle.default_sampling()
    if bundle.is_student:
        yield from _student_frames(frames, bundle, effect, keyframe, sampling, seed, options)
    else:
        yield from _teacher_frames(frames, bundle, effect, keyframe, sampling, guidance, seed)


def _student_frames(
    frames: Iterator[np.ndarray],
    bundle: ModelBundle,
    effect: str | None,
    keyframe: Keyframe | None,
    sampling: Sampling,
    seed: int,
    options: StreamOptions | None,
) -> Iterator[np.ndarray]:
    base = options or StreamOptions()
    overrides = {"steps": sampling.steps, "start": sampling.start, "seed": seed, "teacher_waits": True}
    options = StreamOptions(**{**vars(base), **overrides})  # a file: the same frames every time
    with EffectStream(bundle, options) as stream:
        if effect is not None:
            stream.set_effect(effect)
        if keyframe is not None:
            stream.set_keyframe(*keyframe)
        for frame in frames:
            yield from stream.push(frame)
        yield from stream.flush()


def _teacher_frames(
    frames: Iterator[np.ndarray],
    bundle: ModelBundle,
    effect: str | None,
    keyframe: Keyframe | None,
    sampling: Sampling,
    guidance: Guidance,
    seed: int,
) -> Iterator[np.ndarray]:
    request = EffectRequest.parse(effect) if effect is not None else EffectRequest.keyframe_only()
    editor = FrameEditor(bundle, request)
    if keyframe is not None:
        editor.set_keyframe(*keyframe)  # the flow prior carries its change (for a model that takes it)
    text = text_condition(request.text)
    generator = torch.Generator().manual_seed(seed)
    reference = None
    window: list[PreparedFrame] = []
    try:
        for frame in frames:
            window.append(editor.prepare(frame))
            if reference is None and keyframe is not None:
                reference = editor.reference(*keyframe, window[0])
            if len(window) == bundle.task.frames:
                yield from _teacher_window(
                    bundle, editor, window, reference, text, sampling, guidance, generator
                )
                window = []
        if window:
            real = len(window)
            window += [window[-1]] * (bundle.task.frames - real)  # padded with its last frame
            outputs = _teacher_window(bundle, editor, window, reference, text, sampling, guidance, generator)
            yield from outputs[:real]
    finally:
        editor.close()


def _teacher_window(
    bundle: ModelBundle,
    editor: FrameEditor,
    window: list[PreparedFrame],
    reference: Reference | None,
    text: TextCondition | None,
    sampling: Sampling,
    guidance: Guidance,
    generator: torch.Generator,
) -> list[np.ndarray]:
    cond = editor.condition(window, reference, text)
    noise = torch.randn(cond.source.shape, generator=generator)
    return editor.finish(window, bundle.denoise(cond, noise, sampling, guidance=guidance), cond)


def generate_video(
    video: Path,
    output: Path,
    bundle: ModelBundle,
    effect: str | None,
    reference: np.ndarray | None = None,
    reference_source: np.ndarray | None = None,
    sampling: Sampling | None = None,
    guidance: Guidance = NO_GUIDANCE,
    seed: int = 0,
    max_frames: int | None = None,
) -> int:
    """Apply an effect (id or prompt) and/or an edited keyframe to every frame of ``video`` at its own
    size; returns the number of frames written. The keyframe was edited from ``reference_source``
    (default: the clip's first frame)."""
    from tqdm import tqdm

    from streamingeffect.io import VideoWriter, probe, read_frames

    info = probe(video)
    total = info.num_frames if max_frames is None else min(max_frames, info.num_frames)
    keyframe = None
    if reference is not None:
        source = reference_source
        if source is None:
            source = next(iter(read_frames(video, stop=1))).image
        keyframe = (_fits(source, info, "reference source"), _fits(reference, info, "reference"))
    frames = (f.image for f in read_frames(video, stop=total))
    written = 0
    with VideoWriter(output, fps=info.fps) as writer:
        outputs = effect_frames(frames, bundle, effect, keyframe, sampling, guidance, seed)
        for out in tqdm(outputs, total=total, desc="generate", unit="frame"):
            writer.write(out)
            written += 1
    return written


def _fits(image: np.ndarray, info: VideoInfo, name: str) -> np.ndarray:
    height, width = info.height, info.width
    if image.shape[:2] != (height, width):
        raise ValueError(
            f"the {name} image is {image.shape[1]}x{image.shape[0]} but the clip is {width}x{height}; "
            "edit a frame of this clip at its own size"
        )
    return image
