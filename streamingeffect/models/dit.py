"""The in-context effect transformer: one class for teacher, student and critic.

    net(x_t [B, F, C, h, w], t [B, F], cond, attn_mask=None, cache=None) -> velocity [B, F, C, h, w]

The reference frame's tokens come first (the attention-sink prefix), then the frames' tokens. The
attention mask is an argument: None (full attention) for the bidirectional teacher and the critic, a
block-causal mask from `block_causal_mask` for the causal student on a whole clip — the weights and
code are the same. With a `KVCache` the student runs one chunk at a time: ``prefill`` puts the
reference into the cache as its sink, each call attends to the sink and the cached chunks, and
``update_cache=True`` appends the chunk's own keys/values (after denoising, at t = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.kv_cache import KVCache, LayerKV
from streamingeffect.models.rope import apply_rope, grid_positions, rope_rotations
from streamingeffect.models.token_reuse import ReuseRecord, TokenReuse, merge_rows

# Token streams (separate layout): a frame contributes a source and a target token set.
SOURCE, TARGET = 0, 1


@dataclass
class Reference:
    """The reference pair in latent space; ``keep`` False marks a null reference (dropout / CFG)."""

    source: torch.Tensor  # [B, C, h, w]
    target: torch.Tensor  # [B, C, h, w] (the residual target - source when the model predicts residuals)
    mask: torch.Tensor  # [B, 1, h, w]
    keep: torch.Tensor  # [B] bool


@dataclass
class TextCondition:
    tokens: torch.Tensor  # [B, L, text_dim]
    mask: torch.Tensor  # [B, L] bool, True = real token
    pooled: torch.Tensor  # [B, text_dim]
    keep: torch.Tensor  # [B] bool; False = null text


@dataclass
class EffectCondition:
    source: torch.Tensor  # [B, F, C, h, w] source latents
    mask: torch.Tensor  # [B, F, 1, h, w] person / edit mask at latent resolution
    reference: Reference | None = None
    text: TextCondition | None = None
    prior: torch.Tensor | None = (
        None  # [B, F, C, h, w] the flow prior: latent(source + carried change) - source
    )
    confidence: torch.Tensor | None = None  # [B, F, 1, h, w] the flow's confidence in [0, 1]

    def prior_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(prior, confidence), zeros where there is none (no keyframe yet: nothing to carry)."""
        prior = torch.zeros_like(self.source) if self.prior is None else self.prior
        confidence = torch.zeros_like(self.mask) if self.confidence is None else self.confidence
        return prior, confidence


@dataclass(frozen=True)
class TokenLayout:
    """Where every token sits: group (0 = reference, i + 1 = frame i), stream, and (t, h, w) position."""

    groups: torch.Tensor  # [N] long
    streams: torch.Tensor  # [N] long (SOURCE / TARGET; packed tokens are TARGET)
    positions: torch.Tensor  # [N, 3] float
    output: torch.Tensor  # [F * T] long: indices of the tokens whose outputs are the velocity


def block_causal_mask(layout: TokenLayout, chunk_frames: int) -> torch.Tensor:
    """[N, N] bool (True = may attend): a token sees the reference and every chunk up to its own."""
    frame = layout.groups - 1
    chunk = torch.where(layout.groups == 0, 0, frame.div(chunk_frames, rounding_mode="floor") + 1)
    return chunk[None, :] <= chunk[:, None]


@dataclass(frozen=True)
class RopeAngles:
    """Rotations [N, d/2] complex (`rope_rotations`) for the queries and for the keys (more keys with a
    cache)."""

    query: torch.Tensor
    key: torch.Tensor

    @classmethod
    def shared(cls, rotations: torch.Tensor) -> RopeAngles:
        return cls(rotations, rotations)

    def last(self, count: int) -> RopeAngles:
        """Queries are the last ``count`` key positions (the chunk after the cached prefix)."""
        return RopeAngles(self.key[-count:], self.key)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, G, C, h, w] -> [B, G, (h/p)(w/p), C p p]."""
    b, g, c, h, w = x.shape
    x = x.reshape(b, g, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, g, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: torch.Tensor, channels: int, height: int, width: int, patch: int) -> torch.Tensor:
    """[B, G, T, C p p] -> [B, G, C, h, w]."""
    b, g = tokens.shape[:2]
    x = tokens.reshape(b, g, height // patch, width // patch, channels, patch, patch)
    return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, g, channels, height, width)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t [...] in [0, 1] -> [..., dim] sinusoidal features of 1000 t."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def per_token(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each token's row of its group: values [B, G, K], groups [N] -> [B, N, K]; with one group, the
    row itself [B, 1, K], broadcast by the caller (a streaming chunk of one frame: no gathered copy)."""
    return values if values.shape[1] == 1 else values[:, groups]


class HeadNorm(nn.RMSNorm):
    """RMSNorm of queries or keys whose weight follows the input's dtype: under bf16 autocast the
    projections come out in bf16, and with an fp32 weight torch warns of the mismatch (every start
    of a stream on a CPU where bf16 is chosen printed it). The same speed on this CPU either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.rms_norm(x, self.normalized_shape, weight, self.eps)


class Attention(nn.Module):
    def __init__(self, config: EffectModelConfig, context_dim: int | None = None):
        super().__init__()
        width, self.heads = config.width, config.heads
        self.cross = context_dim is not None
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(context_dim or width, 2 * width)
        self.out = nn.Linear(width, width)
        head_dim = config.head_dim
        self.q_norm = HeadNorm(head_dim) if config.qk_norm else nn.Identity()
        self.k_norm = HeadNorm(head_dim) if config.qk_norm else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        rope: RopeAngles | None = None,
        mask: torch.Tensor | None = None,
        past: LayerKV | None = None,
        merge: tuple[LayerKV, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, LayerKV]:
        """x [B, N, D], context [B, L, Dc] (cross) -> ([B, N, D], this call's keys/values before RoPE).

        mask: bool, broadcast to [B, H, N, L]. past: cached keys/values placed before x's own.
        merge: (a whole chunk's earlier keys/values, the token indices x holds): x's fresh keys/values
        replace those rows, and the chunk's keys are the merged set (the mask cache).
        """
        q = self.q_norm(self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2))  # [B, H, N, d]
        k, v = (
            self.kv(x if context is None else context)
            .unflatten(-1, (2, self.heads, -1))
            .permute(2, 0, 3, 1, 4)
        )
        fresh = LayerKV(self.k_norm(k), v)
        if merge is not None:
            earlier, index = merge
            fresh = LayerKV(
                merge_rows(earlier.keys, fresh.keys, index, 2),
                merge_rows(earlier.values, fresh.values, index, 2),
            )
        if past is not None:
            fresh_all = LayerKV.concat([past, fresh])
            k, v = fresh_all.keys, fresh_all.values
        else:
            k, v = fresh.keys, fresh.values
        if rope is not None:
            q, k = apply_rope(q, rope.query), apply_rope(k, rope.key)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).flatten(2)), fresh


class Block(nn.Module):
    def __init__(self, config: EffectModelConfig):
        super().__init__()
        width = config.width
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(config)
        self.cross = Attention(config, context_dim=width) if config.cross_attention else None
        self.norm_cross = nn.LayerNorm(width, eps=1e-6) if config.cross_attention else None
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(config.mlp_ratio * width)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width)
        )
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        groups: torch.Tensor,
        rope: RopeAngles,
        mask: torch.Tensor | None,
        text: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        past: LayerKV | None = None,
        merge: tuple[LayerKV, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, LayerKV]:
        """x [B, N, D]; cond [B, G, D] per group, spread to tokens by ``groups`` [N] -> (x, self-attn k/v)."""
        mod = per_token(self.modulation(F.silu(cond)), groups)  # [B, N or 1, 6D]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        attended, fresh = self.attn(
            self.norm1(x) * (1 + scale1) + shift1, rope=rope, mask=mask, past=past, merge=merge
        )
        x = x + gate1 * attended
        if self.cross is not None and text is not None:
            x = x + self.cross(self.norm_cross(x), context=text, mask=text_mask)[0]
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2), fresh


class EffectTransformer(nn.Module):
    def __init__(self, config: EffectModelConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.embed = nn.Linear(config.token_in, width)
        self.stream_embed = nn.Parameter(
            torch.zeros(2, width)
        )  # source / target token sets (separate layout)
        self.null_reference = nn.Parameter(torch.zeros(width))
        self.time_embed = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.text_pool = nn.Linear(config.text_dim, width)
        self.text_tokens = nn.Linear(config.text_dim, width)
        self.null_text = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(width, 2 * width)
        self.head = nn.Linear(width, config.token_out)
        for layer in (self.final_modulation, self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------------------------- layout

    def token_layout(
        self, frames: int, height: int, width: int, device: torch.device | None = None
    ) -> TokenLayout:
        """The token order for ``frames`` latent frames of height x width (same for every batch item)."""
        patch = self.config.patch
        grid_h, grid_w = height // patch, width // patch
        per_frame = grid_h * grid_w
        streams = self.config.streams_per_frame()
        # Group g holds `streams` token sets of `per_frame` tokens; position time = g (reference at 0).
        # Built on the CPU (also under a meta default device: the layout is data, not weights).
        cpu = torch.device("cpu")
        group_ids = torch.arange(frames + 1, device=cpu).repeat_interleave(streams * per_frame)
        stream_ids = torch.arange(streams, device=cpu).repeat_interleave(per_frame).repeat(frames + 1)
        if streams == 1:
            stream_ids = torch.full_like(stream_ids, TARGET)
        positions = grid_positions(frames + 1, grid_h, grid_w, device=cpu).unflatten(
            0, (frames + 1, per_frame)
        )
        positions = positions.repeat_interleave(streams, dim=0).reshape(-1, 3)
        output = torch.nonzero((group_ids > 0) & (stream_ids == TARGET)).squeeze(1)
        layout = TokenLayout(group_ids, stream_ids, positions, output)
        if device is None:
            return layout
        return TokenLayout(
            *(v.to(device) for v in (layout.groups, layout.streams, layout.positions, layout.output))
        )

    def _embed(
        self,
        source: torch.Tensor,
        mask: torch.Tensor,
        target: torch.Tensor,
        prior: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(source, mask, target[, prior, confidence]) latents of G groups [B, G, *, h, w] -> tokens
        [B, G, S T, D]; the prior's channels are zeros where none is given."""
        p = self.config.patch
        if self.config.layout == "packed":
            parts = [source, mask, target]
            if self.config.prior:
                parts += (
                    list(prior) if prior is not None else [torch.zeros_like(source), torch.zeros_like(mask)]
                )
            return self.embed(patchify(torch.cat(parts, dim=2), p))  # [B, G, T, D]
        source_tokens = self.embed(patchify(torch.cat([source, mask], 2), p)) + self.stream_embed[SOURCE]
        target_tokens = self.embed(patchify(torch.cat([target, mask], 2), p)) + self.stream_embed[TARGET]
        return torch.stack([source_tokens, target_tokens], dim=2).flatten(2, 3)  # [B, G, 2T, D]

    def _reference_tokens(self, cond: EffectCondition) -> torch.Tensor:
        """The reference group's tokens [B, S T, D]; the learned null token where it is dropped."""
        ref = cond.reference
        batch = cond.source.shape[0]
        if ref is None:
            blank = torch.zeros_like(cond.source[:, :1])
            tokens = self._embed(blank, torch.zeros_like(cond.mask[:, :1]), blank)[:, 0]
            keep = torch.zeros(batch, dtype=torch.bool, device=cond.source.device)
        else:
            tokens = self._embed(ref.source[:, None], ref.mask[:, None], ref.target[:, None])[:, 0]
            keep = ref.keep
        return torch.where(keep[:, None, None], tokens, self.null_reference.to(tokens.dtype))

    def _text(
        self, cond: EffectCondition, batch: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> text tokens [B, L, D], attention mask [B, 1, 1, L], pooled [B, D]; null text where dropped."""
        text = cond.text
        null = self.null_text.expand(batch, 1, -1)
        if text is None:
            pooled = torch.zeros(batch, self.config.width, device=device)
            return null, torch.ones(batch, 1, 1, 1, dtype=torch.bool, device=device), pooled
        keep = text.keep[:, None]
        tokens = torch.cat([null, self.text_tokens(text.tokens)], dim=1)  # slot 0: the null token
        valid = torch.cat([~keep, text.mask & keep], dim=1)  # null token only where text is dropped
        pooled = self.text_pool(text.pooled) * keep  # dropped text adds nothing to the modulation
        return tokens, valid[:, None, None, :], pooled

    def _group_cond(self, t: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """t [B, G] -> the adaLN vector of each group [B, G, D]."""
        return self.time_embed(timestep_embedding(t, self.config.width)) + pooled[:, None]

    def _rope(self, positions: torch.Tensor) -> RopeAngles:
        return RopeAngles.shared(rope_rotations(positions, self.config.head_dim, self.config.rope_theta))

    def _head(self, x: torch.Tensor, group_cond: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Output tokens [B, n, D] with their groups [n] -> [B, n, C p p]."""
        shift, scale = per_token(self.final_modulation(F.silu(group_cond)), groups).chunk(2, dim=-1)
        return self.head(self.final_norm(x) * (1 + scale) + shift)

    def _velocity(
        self, x: torch.Tensor, group_cond: torch.Tensor, groups: torch.Tensor, shape: torch.Size
    ) -> torch.Tensor:
        """Output tokens [B, F T, D] with their groups [F T] -> velocity [B, F, C, h, w]."""
        return self._unpatchify(self._head(x, group_cond, groups), shape)

    def _unpatchify(self, out: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        _, frames, channels, height, width = shape
        per_frame = self.config.tokens_per_frame(height, width)
        return unpatchify(out.unflatten(1, (frames, per_frame)), channels, height, width, self.config.patch)

    # ------------------------------------------------------------------------------------- forward

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: EffectCondition,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        update_cache: bool = False,
        reuse: TokenReuse | None = None,
        reuse_key: str = "",
    ) -> torch.Tensor:
        """x_t [B, F, C, h, w], t [B, F] in [0, 1] -> velocity [B, F, C, h, w].

        Without a cache: the reference and all F frames at once, under ``attn_mask``. With a cache:
        F frames of the next chunk, attending to the cached sink and window (``prefill`` first);
        ``reuse`` (the mask cache) skips unchanged tokens, matched to the last frame by ``reuse_key``.
        """
        if cache is not None:
            return self._forward_chunk(x_t, t, cond, cache, update_cache, reuse, reuse_key)
        batch, frames, _, height, width = x_t.shape
        layout = self.token_layout(frames, height, width, x_t.device)
        frame_tokens = self._embed(cond.source, cond.mask, x_t, cond.prior_inputs()).flatten(1, 2)
        x = torch.cat([self._reference_tokens(cond), frame_tokens], dim=1)  # [B, N, D]
        text, text_mask, pooled = self._text(cond, batch, x_t.device)
        # The reference is clean: t = 0.
        group_cond = self._group_cond(torch.cat([torch.zeros_like(t[:, :1]), t], dim=1), pooled)
        rope = self._rope(layout.positions)
        for block in self.blocks:
            x = block(x, group_cond, layout.groups, rope, attn_mask, text, text_mask)[0]
        out = self._velocity(x[:, layout.output], group_cond, layout.groups[layout.output], x_t.shape)
        return self._as_velocity(out, x_t, t)

    def prefill(self, cond: EffectCondition, cache: KVCache) -> None:
        """Run the reference tokens alone (t = 0) and make their keys/values the cache's sink.

        The sink depends on the text too (the pooled text modulates every token), so a new prompt or a
        new keyframe calls this again; the cached chunks stay.
        """
        batch, _, _, height, width = cond.source.shape
        layout = self.token_layout(0, height, width, cond.source.device)
        x = self._reference_tokens(cond)  # [B, S T, D]
        text, text_mask, pooled = self._text(cond, batch, cond.source.device)
        group_cond = self._group_cond(torch.zeros(batch, 1, device=cond.source.device), pooled)
        rope = self._rope(layout.positions)
        sink = []
        for block in self.blocks:
            x, fresh = block(x, group_cond, layout.groups, rope, None, text, text_mask)
            sink.append(fresh)
        cache.replace_sink(sink)

    def _forward_chunk(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: EffectCondition,
        cache: KVCache,
        update_cache: bool,
        reuse: TokenReuse | None = None,
        reuse_key: str = "",
    ) -> torch.Tensor:
        """One chunk against the cache: keys = [sink | window | chunk], positions re-based on the window."""
        batch, frames, _, height, width = x_t.shape
        window = cache.window_frames
        layout = self.token_layout(window + frames, height, width, x_t.device)
        chunk_tokens = frames * self.config.streams_per_frame() * self.config.tokens_per_frame(height, width)
        x = self._embed(cond.source, cond.mask, x_t, cond.prior_inputs()).flatten(
            1, 2
        )  # [B, chunk_tokens, D]
        groups = layout.groups[-chunk_tokens:] - (1 + window)  # group of each chunk token: 0 .. F-1
        text, text_mask, pooled = self._text(cond, batch, x_t.device)
        group_cond = self._group_cond(t, pooled)  # [B, F, D]
        rope = self._rope(layout.positions).last(chunk_tokens)
        output = torch.nonzero(layout.streams[-chunk_tokens:] == TARGET).squeeze(1)
        record = None
        if reuse is not None and reuse.active is not None:
            record = reuse.records.get(reuse_key)
        if record is not None and record.output.shape[0] != batch:
            record = None
        index = None
        if record is not None:  # the mask cache: only the active tokens are queries
            index = self._active_tokens(reuse.active, layout.positions[-chunk_tokens:], window)  # type: ignore[union-attr]
            x, query_groups = x[:, index], groups[index]
            rope = RopeAngles(rope.query[index], rope.key)
        else:
            query_groups = groups
        written = []
        for i, block in enumerate(self.blocks):
            merge = None if record is None else (record.layers[i], index)
            x, fresh = block(
                x, group_cond, query_groups, rope, None, text, text_mask, past=cache.prefix(i), merge=merge
            )
            written.append(fresh)
        if update_cache:
            cache.append(frames, written)
        if record is None or index is None:
            head = self._head(x[:, output], group_cond, groups[output])
        else:
            row_of = torch.full((chunk_tokens,), -1, dtype=torch.long, device=x.device)
            row_of[output] = torch.arange(len(output), device=x.device)
            rows = row_of[index]
            computed = rows >= 0
            fresh_head = self._head(x[:, computed], group_cond, query_groups[computed])
            head = merge_rows(record.output, fresh_head, rows[computed], 1)
        if reuse is not None:
            reuse.records[reuse_key] = ReuseRecord(written, head.detach())
            computed_count = chunk_tokens if index is None else len(index)
            reuse.computed_tokens += computed_count
            reuse.reused_tokens += chunk_tokens - computed_count
        return self._as_velocity(self._unpatchify(head, x_t.shape), x_t, t)

    def _as_velocity(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The head's output as a velocity: as it is, or from an x0 prediction, v = (x_t - x0) / t."""
        if self.config.predict == "velocity":
            return out
        t = t.clamp_min(1e-3).reshape(*t.shape, 1, 1, 1).to(out.dtype)  # t = 0 only writes the cache
        return (x_t.to(out.dtype) - out) / t

    def _active_tokens(self, active: torch.Tensor, positions: torch.Tensor, window: int) -> torch.Tensor:
        """Indices of the chunk tokens whose (frame, row, column) is active in ``active`` [F, gh, gw]."""
        frame = positions[:, 0].long() - (1 + window)
        row, col = positions[:, 1].long(), positions[:, 2].long()
        return torch.nonzero(active.to(positions.device)[frame, row, col]).squeeze(1)
