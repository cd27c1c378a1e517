"""The causal student's memory: per-layer keys and values of the reference (sink) and recent chunks.

    sink      the reference frame's tokens, computed once; never evicted, replaced by a new keyframe
    window    the clean tokens of the last ``window_chunks`` chunks (written after each chunk is denoised,
              by a pass at t = 0 as CausVid does); older chunks are evicted, so memory is bounded

Keys are stored before the rotary embedding: the transformer rotates them with positions re-based on
the current window every call (sink at time 0, window frames at 1, 2, ...), so relative distances stay
inside what the model was trained on however long the stream runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class LayerKV:
    keys: torch.Tensor  # [B, H, N, d] (before RoPE)
    values: torch.Tensor  # [B, H, N, d]

    @property
    def tokens(self) -> int:
        return self.keys.shape[2]

    @staticmethod
    def concat(parts: list[LayerKV]) -> LayerKV:
        return LayerKV(torch.cat([p.keys for p in parts], 2), torch.cat([p.values for p in parts], 2))


@dataclass(frozen=True)
class CachedChunk:
    frames: int  # latent frames in this chunk
    layers: list[LayerKV]  # one per transformer block


@dataclass
class KVCache:
    """Sink + rolling window of chunks, per layer. ``window_chunks`` None keeps every chunk (training)."""

    window_chunks: int | None = None
    sink: list[LayerKV] | None = None
    chunks: deque[CachedChunk] = field(default_factory=deque)
    evicted_chunks: int = 0
    # Per layer, the concatenated prefix while the cache is unchanged: a chunk's few denoising passes
    # attend to the same prefix, so it is joined once (inference only: training keeps the graph plain).
    _prefixes: dict[int, LayerKV] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.window_chunks is not None and self.window_chunks < 0:
            raise ValueError(f"window_chunks must be >= 0, got {self.window_chunks}")

    @property
    def has_sink(self) -> bool:
        return self.sink is not None

    @property
    def window_frames(self) -> int:
        """Latent frames held in the window (the sink not counted)."""
        return sum(chunk.frames for chunk in self.chunks)

    def replace_sink(self, layers: list[LayerKV]) -> None:
        """A new reference (keyframe or prompt): later chunks attend to it; cached chunks stay."""
        if self.sink is not None and len(layers) != len(self.sink):
            raise ValueError(f"sink has {len(layers)} layers, the cache {len(self.sink)}")
        self.sink = layers
        self._prefixes.clear()

    def append(self, frames: int, layers: list[LayerKV]) -> None:
        """Add a denoised chunk's clean tokens; evict the oldest chunks beyond the window."""
        if self.sink is not None and len(layers) != len(self.sink):
            raise ValueError(f"chunk has {len(layers)} layers, the cache {len(self.sink)}")
        self.chunks.append(CachedChunk(frames, layers))
        while self.window_chunks is not None and len(self.chunks) > self.window_chunks:
            self.chunks.popleft()
            self.evicted_chunks += 1
        self._prefixes.clear()

    def clear_window(self) -> None:
        """Drop the cached chunks, keep the sink (a prompt or keyframe switch re-caches from scratch)."""
        self.evicted_chunks += len(self.chunks)
        self.chunks.clear()
        self._prefixes.clear()

    def reset(self) -> None:
        """Forget everything (a new stream)."""
        self.sink = None
        self.chunks.clear()
        self.evicted_chunks = 0
        self._prefixes.clear()

    def prefix(self, layer: int) -> LayerKV:
        """Keys and values a new chunk attends to in ``layer``: sink first, then the window, oldest first."""
        if self.sink is None:
            raise RuntimeError("the cache has no sink: run the reference (prefill) first")
        if torch.is_grad_enabled():
            return LayerKV.concat([self.sink[layer], *(chunk.layers[layer] for chunk in self.chunks)])
        joined = self._prefixes.get(layer)
        if joined is None:
            joined = LayerKV.concat([self.sink[layer], *(chunk.layers[layer] for chunk in self.chunks)])
            self._prefixes[layer] = joined
        return joined

    def tokens(self) -> int:
        """Cached tokens per layer (sink + window): bounded by the window for unbounded streams."""
        if self.sink is None:
            return 0
        return self.sink[0].tokens + sum(chunk.layers[0].tokens for chunk in self.chunks)

    def nbytes(self) -> int:
        layers = [*(self.sink or []), *(kv for chunk in self.chunks for kv in chunk.layers)]
        return sum(kv.keys.nbytes + kv.values.nbytes for kv in layers)

    def detach(self) -> KVCache:
        """The same cache cut from the autograd graph (Self-Forcing writes the cache without gradients)."""
        sink = None if self.sink is None else [_detached(kv) for kv in self.sink]
        chunks = deque(CachedChunk(c.frames, [_detached(kv) for kv in c.layers]) for c in self.chunks)
        return KVCache(self.window_chunks, sink, chunks, self.evicted_chunks)


def _detached(kv: LayerKV) -> LayerKV:
    return LayerKV(kv.keys.detach(), kv.values.detach())
