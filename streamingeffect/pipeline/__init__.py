"""One inference pipeline for every caller: `generate`, `EffectStream`, the studio, the evaluation
suite and the distillation trainer load models and run them through this package."""

from streamingeffect.pipeline.bundle import ModelBundle, resolve_model, text_condition
from streamingeffect.pipeline.config import Sampling, TaskConfig
from streamingeffect.pipeline.editor import (
    EditorOptions,
    EffectRequest,
    EffectRequestError,
    FrameEditor,
    PreparedFrame,
)

__all__ = [
    "EditorOptions",
    "EffectRequest",
    "EffectRequestError",
    "FrameEditor",
    "ModelBundle",
    "PreparedFrame",
    "Sampling",
    "TaskConfig",
    "resolve_model",
    "text_condition",
]
