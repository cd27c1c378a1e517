"""LiveEdit's mask cache for the causal student: skip the tokens that did not change.

Tokens outside the (dilated) edit region whose source content stayed put since the last frame are
not recomputed: the transformer runs only the active tokens as queries, and for the others it reuses,
layer by layer, the keys/values and the outputs the previous frame produced at the same denoising
step. The attention of the active tokens still sees every token. With every token active the result
is exactly the uncached one; reusing a computation whose inputs did not change gives the same result
as redoing it (both tested); in between it is LiveEdit's approximation, measured in the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from streamingeffect.models.kv_cache import LayerKV


@dataclass
class ReuseRecord:
    """What one chunk forward produced for all of its tokens."""

    layers: list[LayerKV]  # per layer, the chunk's own keys/values [B, H, N, d] (before RoPE)
    output: torch.Tensor  # [B, N_out, token_out] head outputs of the chunk's output tokens


@dataclass
class TokenReuse:
    """Per stream: the last frame's records by step, and which positions are active in this chunk."""

    active: torch.Tensor | None = None  # [Fc, gh, gw] bool over token positions; None: compute all
    records: dict[str, ReuseRecord] = field(default_factory=dict)
    reused_tokens: int = 0
    computed_tokens: int = 0

    def clear(self) -> None:
        self.records.clear()

    @property
    def reuse_share(self) -> float:
        total = self.reused_tokens + self.computed_tokens
        return self.reused_tokens / total if total else 0.0


def merge_rows(base: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """``base`` with the entries at ``index`` along ``dim`` replaced by ``rows`` (out of place)."""
    return base.index_copy(dim, index, rows.to(base.dtype))
