"""The one block-causal generation loop, shared by student training and the streaming runtime."""

from streamingeffect.rollout.causal import (
    StudentSchedule,
    chunk_condition,
    denoise_chunk,
    new_cache,
    rollout,
    write_chunk,
)

__all__ = ["StudentSchedule", "chunk_condition", "denoise_chunk", "new_cache", "rollout", "write_chunk"]
