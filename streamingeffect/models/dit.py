"""The in-context effect transformer: one class for teacher, student and critic.

    net(x_t [B, F, C, h, w], t [B, F], cond, attn_mask=None) -> velocity [B, F, C, h, w]

The reference frame's tokens come first (the attention-sink prefix), then the frames' tokens. The
attention mask is an argument: None (full attention) for the bidirectional teacher, a block-causal
mask from `block_causal_mask` for the causal student — the weights and code are the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.rope import apply_rope, grid_positions, rope_angles

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


class Attention(nn.Module):
    def __init__(self, config: EffectModelConfig, context_dim: int | None = None):
        super().__init__()
        width, self.heads = config.width, config.heads
        self.cross = context_dim is not None
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(context_dim or width, 2 * width)
        self.out = nn.Linear(width, width)
        head_dim = config.head_dim
        self.q_norm = nn.RMSNorm(head_dim) if config.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(head_dim) if config.qk_norm else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, N, D], context [B, L, Dc] (cross) -> [B, N, D]. mask: bool, broadcast to [B, H, N, L]."""
        q = self.q_norm(self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2))  # [B, H, N, d]
        k, v = (
            self.kv(x if context is None else context)
            .unflatten(-1, (2, self.heads, -1))
            .permute(2, 0, 3, 1, 4)
        )
        k = self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).flatten(2))


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
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        text: torch.Tensor | None,
        text_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """x [B, N, D]; cond [B, G, D] per group, spread to tokens by ``groups`` [N]."""
        mod = self.modulation(F.silu(cond))[:, groups]  # [B, N, 6D]
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, rope=rope, mask=mask)
        if self.cross is not None and text is not None:
            x = x + self.cross(self.norm_cross(x), context=text, mask=text_mask)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


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

    def _tokens(self, x_t: torch.Tensor, cond: EffectCondition) -> torch.Tensor:
        """Embed the reference and frame tokens in layout order -> [B, N, D]."""
        p, batch = self.config.patch, x_t.shape[0]
        ref = cond.reference
        if ref is None:
            ref_source = ref_target = torch.zeros_like(x_t[:, 0])
            ref_mask = torch.zeros_like(cond.mask[:, 0])
        else:
            ref_source, ref_target, ref_mask = ref.source, ref.target, ref.mask
        if self.config.layout == "packed":
            frames_in = torch.cat([cond.source, cond.mask, x_t], dim=2)  # [B, F, 2C+1, h, w]
            ref_in = torch.cat([ref_source, ref_mask, ref_target], dim=1)[:, None]
            tokens = self.embed(patchify(torch.cat([ref_in, frames_in], dim=1), p))  # [B, F+1, T, D]
        else:
            sources = torch.cat(
                [
                    torch.cat([ref_source[:, None], cond.source], 1),
                    torch.cat([ref_mask[:, None], cond.mask], 1),
                ],
                2,
            )
            targets = torch.cat(
                [torch.cat([ref_target[:, None], x_t], 1), torch.cat([ref_mask[:, None], cond.mask], 1)], 2
            )
            source_tokens = self.embed(patchify(sources, p)) + self.stream_embed[SOURCE]
            target_tokens = self.embed(patchify(targets, p)) + self.stream_embed[TARGET]
            tokens = torch.stack([source_tokens, target_tokens], dim=2).flatten(2, 3)  # [B, F+1, 2T, D]
        keep = ref.keep if ref is not None else torch.zeros(batch, dtype=torch.bool, device=x_t.device)
        tokens[:, 0] = torch.where(keep[:, None, None], tokens[:, 0], self.null_reference.to(tokens.dtype))
        return tokens.flatten(1, 2)

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

    # ------------------------------------------------------------------------------------- forward

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: EffectCondition,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_t [B, F, C, h, w], t [B, F] in [0, 1] -> velocity [B, F, C, h, w]."""
        batch, frames, channels, height, width = x_t.shape
        layout = self.token_layout(frames, height, width, x_t.device)
        x = self._tokens(x_t, cond)
        text, text_mask, pooled = self._text(cond, batch, x_t.device)
        t_groups = torch.cat([torch.zeros_like(t[:, :1]), t], dim=1)  # the reference is clean: t = 0
        group_cond = self.time_embed(timestep_embedding(t_groups, self.config.width)) + pooled[:, None]
        rope = rope_angles(layout.positions, self.config.head_dim, self.config.rope_theta)
        for block in self.blocks:
            x = block(x, group_cond, layout.groups, rope, attn_mask, text, text_mask)
        out_tokens = x[:, layout.output]  # [B, F*T, D]
        shift, scale = self.final_modulation(F.silu(group_cond))[:, layout.groups[layout.output]].chunk(
            2, dim=-1
        )
        out = self.head(self.final_norm(out_tokens) * (1 + scale) + shift)
        per_frame = self.config.tokens_per_frame(height, width)
        return unpatchify(out.unflatten(1, (frames, per_frame)), channels, height, width, self.config.patch)
