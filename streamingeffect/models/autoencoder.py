"""A small latent autoencoder for frames: 8x spatial compression, a few latent channels.

The first and last 2x steps are pixel (un)shuffles, so every convolution runs at 1/2 resolution or
less — that keeps a 256x256 frame in the low milliseconds on a CPU. Latents are scaled by a factor
measured after training (``latent_scale``) so the diffusion model sees roughly unit variance.

    encode: [B, 3, H, W] in [-1, 1] -> [B, C, H/8, W/8]
    decode: [B, C, H/8, W/8] -> [B, 3, H, W]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from streamingeffect.models import checkpoint as ckpt

AE_SIZES: dict[str, dict[str, object]] = {
    # nano: distilled from tiny into tiny's latent space (`train autoencoder --distill-from`); the live
    # path's model refresh spends ~20 ms less on it at 128 px.
    "nano": {"channels": (16, 32, 64), "latent_channels": 8},
    "tiny": {"channels": (32, 64, 128), "latent_channels": 8},
    "small": {"channels": (64, 128, 256), "latent_channels": 8},
    "base": {"channels": (128, 256, 512), "latent_channels": 16},
}

# The task field of a distilled autoencoder's config.json: the weights digest of the autoencoder whose
# latent space it learnt (`checkpoint.weights_digest`).
DISTILLED_FROM = "distilled_from"


@dataclass(frozen=True)
class AutoencoderConfig:
    name: str = "tiny"
    channels: tuple[int, ...] = (32, 64, 128)  # conv width at 1/2, 1/4, 1/8 resolution
    latent_channels: int = 8
    latent_scale: float = 1.0  # multiply encoder output by this (1 / std of latents, set after training)
    groups: int = 8
    extra: dict[str, object] = field(default_factory=dict)  # free-form notes, e.g. training data

    @property
    def downsample(self) -> int:
        return 2 ** len(self.channels)

    @classmethod
    def named(cls, name: str, **overrides: object) -> AutoencoderConfig:
        if name not in AE_SIZES:
            raise ValueError(f"unknown autoencoder size {name!r}; known: {', '.join(AE_SIZES)}")
        return cls(name=name, **{**AE_SIZES[name], **overrides})  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> AutoencoderConfig:
        values = dict(data)
        values["channels"] = tuple(values["channels"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


class ResBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        widths, groups = config.channels, config.groups
        self.stem = nn.Conv2d(3 * 4, widths[0], 3, padding=1)  # after a 2x pixel unshuffle
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers.append(ResBlock(width, groups))
            if i + 1 < len(widths):
                layers.append(nn.Conv2d(width, widths[i + 1], 3, stride=2, padding=1))
        layers += [ResBlock(widths[-1], groups), nn.GroupNorm(groups, widths[-1]), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(F.pixel_unshuffle(x, 2))))


class Decoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        widths, groups = tuple(reversed(config.channels)), config.groups
        self.stem = nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)
        layers: list[nn.Module] = [ResBlock(widths[0], groups)]
        for i, width in enumerate(widths):
            layers.append(ResBlock(width, groups))
            if i + 1 < len(widths):
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                layers.append(nn.Conv2d(width, widths[i + 1], 3, padding=1))
        layers += [nn.GroupNorm(groups, widths[-1]), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 3 * 4, 3, padding=1)  # then a 2x pixel shuffle

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.head(self.body(self.stem(z))), 2)


class FrameAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def check_size(self, height: int, width: int) -> None:
        factor = self.config.downsample
        if height % factor or width % factor:
            raise ValueError(
                f"frame size {width}x{height} is not a multiple of {factor}, as the autoencoder needs"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> scaled latents [B, C, H/8, W/8]."""
        self.check_size(*x.shape[-2:])
        return self.encoder(x) * self.config.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> [B, 3, H, W] (not clamped; clamp for display)."""
        return self.decoder(z / self.config.latent_scale)

    def forward(
        self, x: torch.Tensor, latents: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (the decode of ``latents``, or of x's own latents when None; x's latents)."""
        z = self.encode(x)
        return self.decode(z if latents is None else latents), z


def encode_frames(autoencoder: FrameAutoencoder, frames: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """[B, F, 3, H, W] -> [B, F, C, h, w], encoding ``chunk`` frames at a time."""
    batch, count = frames.shape[:2]
    flat = frames.flatten(0, 1)
    latents = torch.cat([autoencoder.encode(part) for part in flat.split(chunk)])
    return latents.unflatten(0, (batch, count))


def decode_latents(autoencoder: FrameAutoencoder, latents: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """[B, F, C, h, w] -> [B, F, 3, H, W]."""
    batch, count = latents.shape[:2]
    flat = latents.flatten(0, 1)
    frames = torch.cat([autoencoder.decode(part) for part in flat.split(chunk)])
    return frames.unflatten(0, (batch, count))


def load_autoencoder(directory: Path) -> FrameAutoencoder:
    """A trained autoencoder from its checkpoint folder, in eval mode."""
    saved = ckpt.read_config(directory)
    if saved.get("kind") != "autoencoder":
        raise ckpt.CheckpointError(
            f"{directory}: holds a {saved.get('kind')!r} checkpoint, not an autoencoder"
        )
    model = FrameAutoencoder(AutoencoderConfig.from_dict(saved["model"]))
    ckpt.load_into(model, ckpt.read_weights(directory), directory)
    return model.eval()


def distilled_from(directory: Path) -> str | None:
    """The weights digest of the autoencoder whose latent space ``directory``'s was distilled into
    (None: trained on its own)."""
    task = ckpt.read_config(directory).get("task", {})  # optional in older checkpoints
    return task.get(DISTILLED_FROM)
