"""A small vectorised particle system: spawn, move with velocity, gravity and drag, age and die.

State is plain numpy arrays, so a step costs the same for 10 or 1,000 particles. All randomness comes from
the owning effect's seeded generator, which keeps rendering deterministic.
"""

from __future__ import annotations

import numpy as np

_FIELDS = ("pos", "vel", "age", "life", "size", "color", "phase", "angle", "spin", "kind")


class Particles:
    """Structure-of-arrays particle pool. ``color`` is float RGB in [0, 1]; ``kind`` an int per particle."""

    def __init__(self, capacity: int = 600):
        self.capacity = capacity
        self.pos = np.zeros((0, 2), np.float32)
        self.vel = np.zeros((0, 2), np.float32)
        self.color = np.zeros((0, 3), np.float32)
        self.age = np.zeros(0, np.float32)
        self.life = np.zeros(0, np.float32)
        self.size = np.zeros(0, np.float32)
        self.phase = np.zeros(0, np.float32)
        self.angle = np.zeros(0, np.float32)
        self.spin = np.zeros(0, np.float32)
        self.kind = np.zeros(0, np.int32)

    def __len__(self) -> int:
        return len(self.age)

    def spawn(self, pos: np.ndarray, vel: np.ndarray, life: np.ndarray, size: np.ndarray, **extra) -> None:
        """Append len(pos) particles; ``extra`` may set color, phase, angle, spin, kind (else zeros)."""
        n = len(pos)
        if n == 0:
            return
        new = {"pos": pos, "vel": vel, "life": life, "size": size, "age": np.zeros(n), **extra}
        for name in _FIELDS:
            current = getattr(self, name)
            value = new.get(name)
            if value is None:
                value = np.zeros((n, *current.shape[1:]), current.dtype)
            value = np.broadcast_to(np.asarray(value, current.dtype), (n, *current.shape[1:]))
            setattr(self, name, np.concatenate([current, value])[-self.capacity :])

    def step(self, gravity: tuple[float, float] = (0.0, 0.0), drag: float = 0.0) -> None:
        """Advance one frame: move, accelerate, damp, rotate, age; drop dead particles."""
        self.pos = self.pos + self.vel
        self.vel = (self.vel + np.asarray(gravity, np.float32)) * np.float32(1.0 - drag)
        self.angle = self.angle + self.spin
        self.age = self.age + 1.0
        self.keep(self.age < self.life)

    def keep(self, alive: np.ndarray) -> None:
        for name in _FIELDS:
            setattr(self, name, getattr(self, name)[alive])

    def cull_outside(self, shape: tuple[int, ...], margin: float) -> None:
        h, w = shape[:2]
        x, y = self.pos[:, 0], self.pos[:, 1]
        self.keep((x > -margin) & (x < w + margin) & (y > -margin) & (y < h + margin))

    def fade(self, fade_in: float = 0.15) -> np.ndarray:
        """[N] opacity: quick fade in, linear fade out over the particle's life."""
        t = self.age / np.maximum(self.life, 1.0)
        return np.clip(np.minimum(t / max(fade_in, 1e-3), (1.0 - t) / 0.5), 0.0, 1.0).astype(np.float32)
