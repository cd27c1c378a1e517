"""The streaming runtime: live video in, the effect out, with keyframe control and the mask cache."""

from streamingeffect.runtime.stream import EffectRequest, EffectStream, StreamError, StreamOptions

__all__ = ["EffectRequest", "EffectStream", "StreamError", "StreamOptions"]
