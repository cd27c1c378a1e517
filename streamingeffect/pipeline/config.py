"""Typed settings of an effect model's task and of how it samples.

``TaskConfig`` is saved as "task" in the model's config.json by the trainer and read back strictly:
an unknown or missing key is a clear error, never a silent default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from streamingeffect.diffusion import flow
from streamingeffect.models.checkpoint import CheckpointError


@dataclass(frozen=True)
class TaskConfig:
    """How a model was trained, hence how it must be run."""

    resolution: int  # side of the model's square window, in pixels
    frames: int  # latent frames per training window (the teacher attends over a whole window)
    shift: float  # time shift of the flow schedule
    autoencoder: str  # folder of its autoencoder, relative to the model's folder
    student_times: tuple[float, ...] = ()  # a causal student's denoising times, descending; () for a teacher
    info: dict[str, Any] = field(default_factory=dict)  # provenance (data, stage, teacher): never a setting

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.frames < 1 or self.shift <= 0:
            raise CheckpointError(f"bad task config: {self}")
        if list(self.student_times) != sorted(self.student_times, reverse=True):
            raise CheckpointError(f"student times must descend, got {self.student_times}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"student_times": list(self.student_times)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: object = "") -> TaskConfig:
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name not in ("student_times", "info")}
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown or missing:
            raise CheckpointError(
                f"{source}: the task config does not fit this version "
                f"(unknown keys: {unknown or 'none'}; missing: {missing or 'none'}); "
                "re-export the model with `streamingeffect export`"
            )
        values = dict(data)
        values["student_times"] = tuple(float(t) for t in data.get("student_times", ()))
        return cls(**values)


@dataclass(frozen=True)
class Sampling:
    """How many denoising steps, and from where.

    ``start`` 1.0: from pure noise (what the models were trained on). Below 1: from the source — the
    residual 0, noised to time ``start`` (img2img, as streaming editors do) — so fewer steps are spent
    on the part of the edit the source already is.
    """

    steps: int
    start: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"at least one denoising step is needed, got {self.steps}")
        if not 0.0 < self.start <= 1.0:
            raise ValueError(f"the start time must be in (0, 1], got {self.start}")

    def teacher_times(self, shift: float) -> list[float]:
        """steps + 1 times from ``start`` down to 0 on the shifted schedule (truncated at ``start``)."""
        # The unshifted time whose shifted value is ``start`` (1 for 1), then the schedule below it.
        top = self.start / (shift - (shift - 1) * self.start)
        return flow.shift_time(torch.linspace(top, 0.0, self.steps + 1), shift).tolist()

    def student_times(self, trained: tuple[float, ...]) -> tuple[float, ...]:
        """``steps`` of the student's trained times at or below ``start``, evenly picked."""
        usable = [t for t in trained if t <= self.start + 1e-6]
        if not usable:
            raise ValueError(
                f"the student has no trained time at or below {self.start} (its times: {trained})"
            )
        if self.steps > len(usable):
            raise ValueError(
                f"this student was distilled for the times {tuple(round(t, 3) for t in trained)}; "
                f"from {self.start} it can take 1..{len(usable)} steps, not {self.steps}"
            )
        picks = [round(i * len(usable) / self.steps) for i in range(self.steps)]
        return tuple(usable[i] for i in picks)


# The shipped sampling, chosen by the sampling table in docs/BENCHMARKS.md (held-out person, both sets,
# at full resolution): the student from the source at 0.75 in one step (its second step changed the
# v2 student's scores by under 0.1 dB on both sets, at twice the cost), the teacher from noise in 2
# steps. From noise the first-wave models scored below passing the source through on the text set.
STUDENT_SAMPLING = Sampling(1, start=0.75)
TEACHER_SAMPLING = Sampling(2)
