"""Keyframes for prompts the catalog cannot draw: the teacher edits one frame, off the per-frame path.

The bidirectional teacher sees a window of frames; for a keyframe the window is one live frame
repeated, sampled as the pipeline samples the teacher, and turned into a full-resolution edit of that
frame the same way every output is (delta decode, gate, guided upsampling).
"""

from __future__ import annotations

import numpy as np
import torch

from streamingeffect.pipeline.bundle import ModelBundle, text_condition
from streamingeffect.pipeline.editor import EffectRequest, FrameEditor


@torch.no_grad()
def teacher_keyframe(
    teacher: ModelBundle, image: np.ndarray, request: EffectRequest, seed: int = 0
) -> np.ndarray:
    """``image`` [H, W, 3] uint8 edited by the teacher from ``request``'s text -> [H, W, 3] uint8."""
    editor = FrameEditor(teacher, request)
    try:
        frame = editor.prepare(image)
        window = [frame] * teacher.task.frames
        cond = editor.condition(window, None, text_condition(request.text))
        noise = torch.randn(cond.source.shape, generator=torch.Generator().manual_seed(seed))
        x0 = teacher.denoise(cond, noise, teacher.default_sampling())
        return editor.finish(window, x0, cond)[0]
    finally:
        editor.close()
