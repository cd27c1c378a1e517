"""Typed configuration of the effect transformer and its table of named sizes.

Token counts, head sizes and input widths are derived here from the config, never written as
literals elsewhere. Layouts:

- ``packed`` (default for CPU sizes): one token per latent patch and frame holding
  [source latent | edit/person mask | noisy target latent] channel-wise (VIVID feeds masked video with
  the noise the same way); the reference frame is one more "frame" of tokens holding
  [reference source latent | reference target latent | its mask], placed first as the attention sink.
- ``separate`` (StreamingEffect's layout): reference, source and noisy target each get their own
  tokens: [ref | src_0 tgt_0 | src_1 tgt_1 | ...]; velocity is read from the target tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Layout = Literal["packed", "separate"]
Prediction = Literal["velocity", "x0"]


@dataclass(frozen=True)
class EffectModelConfig:
    name: str = "tiny"
    layout: Layout = "packed"
    latent_channels: int = 8
    patch: int = 2  # latent pixels per token side
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384  # all-MiniLM-L6-v2
    cross_attention: bool = True  # text tokens via cross-attention (else pooled text joins the adaLN vector)
    predict_residual: bool = True  # the target latent is modelled as source + residual
    rope_theta: float = 10000.0
    qk_norm: bool = True
    chunk_frames: int = 1  # latent frames per block-causal chunk (student)
    window_chunks: int = 3  # chunks the student's KV cache keeps beside the sink (the trained context)
    # The flow prior (Design v2): each frame's tokens also hold the keyframe's change carried there by
    # flow (a latent) and its confidence, and the model predicts a correction on top of it.
    prior: bool = False
    # What the head outputs: the velocity, or the clean sample x0 (turned into a velocity). With x0 and
    # a zero-initialised head the untrained model returns its prior exactly.
    predict: Prediction = "velocity"

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.head_dim % 2 or self.head_dim < 8:
            raise ValueError(f"head dim {self.head_dim} must be even and at least 8 (rotary pairs)")
        if self.chunk_frames < 1 or self.window_chunks < 0:
            raise ValueError(
                f"chunk_frames must be >= 1 and window_chunks >= 0, got {self.chunk_frames}, "
                f"{self.window_chunks}"
            )
        if self.layout not in ("packed", "separate"):
            raise ValueError(f"unknown layout {self.layout!r}; use packed or separate")
        if self.prior and self.layout != "packed":
            raise ValueError("the flow prior needs the packed layout")
        if self.predict not in ("velocity", "x0"):
            raise ValueError(f"unknown prediction {self.predict!r}; use velocity or x0")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mask_channels(self) -> int:
        return 1

    @property
    def prior_channels(self) -> int:
        """The prior's latent and its confidence, when the model has a prior."""
        return self.latent_channels + 1 if self.prior else 0

    @property
    def token_channels(self) -> int:
        """Latent channels entering one token before patchify (per layout)."""
        if self.layout == "packed":
            return 2 * self.latent_channels + self.mask_channels + self.prior_channels
        return self.latent_channels + self.mask_channels  # every token: a latent + the mask

    @property
    def token_in(self) -> int:
        return self.token_channels * self.patch * self.patch

    @property
    def token_out(self) -> int:
        return self.latent_channels * self.patch * self.patch

    def tokens_per_frame(self, latent_height: int, latent_width: int) -> int:
        return (latent_height // self.patch) * (latent_width // self.patch)

    def context_frames(self) -> int:
        """Latent frames a student chunk sees besides the reference: its window plus itself."""
        return (self.window_chunks + 1) * self.chunk_frames

    def streams_per_frame(self) -> int:
        """Token sets per video frame: 1 (packed) or 2 (separate: source and target)."""
        return 1 if self.layout == "packed" else 2

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> EffectModelConfig:
        return cls(**data)  # type: ignore[arg-type]

    @classmethod
    def named(cls, name: str, **overrides: object) -> EffectModelConfig:
        if name not in MODEL_SIZES:
            raise ValueError(f"unknown model size {name!r}; known: {', '.join(MODEL_SIZES)}")
        return cls(name=name, **{**MODEL_SIZES[name], **overrides})  # type: ignore[arg-type]

    def parameter_estimate(self) -> int:
        """Rough transformer parameter count (attention + MLP + modulation), for the size table."""
        per_block = 4 * self.width**2 + 2 * int(self.mlp_ratio * self.width**2) + 6 * self.width**2
        if self.cross_attention:
            per_block += 2 * self.width**2 + 2 * self.text_dim * self.width
        return self.depth * per_block


# The size table. `wan-1.3b` has the shape of Wan2.1-T2V-1.3B (30 layers, width 1536, 12 heads, FFN 8960):
# it builds on the meta device so scaling up is a config change, trained on GPUs with FSDP.
MODEL_SIZES: dict[str, dict[str, object]] = {
    "test": {"width": 48, "depth": 2, "heads": 2, "mlp_ratio": 2.0},
    "tiny": {"width": 192, "depth": 6, "heads": 4, "mlp_ratio": 3.0},
    "small": {"width": 384, "depth": 12, "heads": 6},
    "base": {"width": 768, "depth": 12, "heads": 12},
    "wan-1.3b": {"width": 1536, "depth": 30, "heads": 12, "mlp_ratio": 8960 / 1536, "latent_channels": 16},
}
