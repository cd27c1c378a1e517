"""The streaming runtime: live video in, the effect out, with keyframe control and the mask cache."""

from streamingeffect.pipeline import EffectRequest
from streamingeffect.runtime.stream import EffectStream, StreamError, StreamOptions

__all__ = ["EffectRequest", "EffectStream", "StreamError", "StreamOptions"]
