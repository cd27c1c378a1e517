"""The effect renderer's contract: families (parameterised renderers) and categories (named presets).

An effect family is a class that renders one clip frame by frame and keeps its own temporal state
(particles, trails, sticker smoothing), so a rendered clip is coherent in time. Given the same seed,
parameters and input, it returns the same frames, bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from streamingeffect.parsing.types import REGION_NAMES, FrameParts

SampleKind = Literal["effect", "edit"]
EditOp = Literal["add", "modify", "remove"]


class Effect(ABC):
    """One family's renderer, created per clip. Subclasses set ``family``, ``region`` and ``defaults``."""

    family: ClassVar[str]
    region: ClassVar[str]  # the human region the effect anchors to (one of REGION_NAMES or "scene")
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: dict[str, Any] | None, seed: int, size: tuple[int, int]):
        unknown = set(params or {}) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.family}: unknown parameters {sorted(unknown)}")
        self.params: dict[str, Any] = {**self.defaults, **(params or {})}
        self.rng = np.random.default_rng(seed)
        self.height, self.width = size

    @abstractmethod
    def render(self, frame: np.ndarray, parts: FrameParts) -> np.ndarray:
        """frame: [H, W, 3] uint8 RGB -> [H, W, 3] uint8 RGB with the effect applied."""


FAMILIES: dict[str, type[Effect]] = {}


def register(cls: type[Effect]) -> type[Effect]:
    """Class decorator that adds a family to the registry."""
    if cls.family in FAMILIES:
        raise ValueError(f"effect family {cls.family!r} registered twice")
    if cls.region not in (*REGION_NAMES, "scene"):
        raise ValueError(f"{cls.family}: unknown region {cls.region!r}")
    FAMILIES[cls.family] = cls
    return cls


@dataclass(frozen=True)
class Category:
    """A named preset of a family: what the dataset labels and what a user picks.

    kind "effect": whole-person or scene effect. kind "edit": a local add / modify / remove that stays
    inside an (augmented) mask of ``region``. A "remove" category renders its ``family`` with
    ``params`` as the *source* and keeps the original footage as the target.
    """

    id: str
    family: str
    kind: SampleKind
    region: str
    descriptions: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    op: EditOp | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "kind": self.kind,
            "op": self.op,
            "region": self.region,
            "descriptions": list(self.descriptions),
            "params": self.params,
        }
