"""The model bundle: an effect transformer with its autoencoder and task config, and the steps every
caller needs — encode, reference, text condition, denoise (whole window or chunk by chunk with a KV
cache), decode to an edit.

    bundle = ModelBundle.load(resolve_model("student"))
    z = bundle.encode(pixels)                         # [F, 3, R, R] in [-1, 1] -> [1, F, C, h, w]
    cond = EffectCondition(z, mask, bundle.reference(...), bundle.text("pink hair"))
    x0 = bundle.denoise(cond, noise, Sampling(4), cache=new_cache(bundle.net))
    delta = bundle.decode_edit(x0, z)                 # [F, 3, R, R] change in [-2, 2]
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from streamingeffect.diffusion.sampler import NO_GUIDANCE, Guidance, euler_sample
from streamingeffect.diffusion.space import base_latent, from_diffusion_space, to_diffusion_space
from streamingeffect.models import checkpoint as ckpt
from streamingeffect.models.autoencoder import FrameAutoencoder, distilled_from, load_autoencoder
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectCondition, EffectTransformer, Reference, TextCondition
from streamingeffect.models.kv_cache import KVCache
from streamingeffect.models.token_reuse import TokenReuse
from streamingeffect.pipeline.config import STUDENT_SAMPLING, TEACHER_SAMPLING, Sampling, TaskConfig
from streamingeffect.precision import CallChoice, autocast, timed_choice, untimed
from streamingeffect.rollout import rollout

if TYPE_CHECKING:
    from streamingeffect.models.text import TextEncoder

BUNDLED = Path(__file__).resolve().parent.parent / "weights"
# The bundled autoencoder distilled into the bundled models' latent space (`ModelBundle.with_distilled`).
DISTILLED_AUTOENCODER = BUNDLED / "autoencoder-nano"
Kind = Literal["teacher", "student"]
# Each autoencoder shape's precision on this machine (`ModelBundle.autoencoder_choice`), timed once per
# process: every load of the same autoencoder then runs in the same precision (a stream's output does
# not depend on which load it got, nor on a borderline timing taken again).
_AUTOENCODER_CHOICES: dict[tuple[object, ...], CallChoice] = {}
_AUTOENCODER_LOCK = threading.Lock()  # the worker thread and the caller's may both ask first


def resolve_model(name: str | Path) -> Path:
    """A checkpoint folder, or the bundled weights: "teacher", "student" ("default" is the student)."""
    path = Path(name)
    if path.is_dir():
        return path
    alias = {"default": "student"}.get(str(name), str(name))
    if alias in ("teacher", "student"):
        bundled = BUNDLED / f"{alias}-tiny"
        if (bundled / ckpt.CONFIG).exists():
            return bundled
        raise ckpt.CheckpointError(
            f"no bundled {alias} weights in this install ({bundled}); pass a checkpoint folder"
        )
    raise ckpt.CheckpointError(f"{name}: not a checkpoint folder (and not 'teacher', 'student' or 'default')")


@lru_cache(maxsize=1)
def _text_encoder() -> TextEncoder:
    """The MiniLM encoder, loaded once per process."""
    from streamingeffect.models.text import TextEncoder

    return TextEncoder()


def text_condition(text: str | None) -> TextCondition | None:
    """A prompt's MiniLM features as the model's text condition (None for no text)."""
    if not text:
        return None
    features = _text_encoder().encode([text])
    return TextCondition(features.tokens, features.mask, features.pooled, torch.ones(1, dtype=torch.bool))


@dataclass
class ModelBundle:
    """A trained effect transformer, its autoencoder and its task config."""

    kind: Kind
    net: EffectTransformer
    autoencoder: FrameAutoencoder
    task: TaskConfig
    autoencoder_dir: Path | None = None  # where ``autoencoder`` was loaded from

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        directory = resolve_model(directory)
        saved = ckpt.read_config(directory)
        kind = saved.get("kind")
        if kind not in ("teacher", "student"):
            raise ckpt.CheckpointError(f"{directory}: holds a {kind!r} checkpoint, not an effect model")
        task = TaskConfig.from_dict(saved["task"], directory)
        if kind == "student" and not task.student_times:
            raise ckpt.CheckpointError(f"{directory}: a student checkpoint without its student_times")
        net = EffectTransformer(EffectModelConfig.from_dict(saved["model"]))
        ckpt.load_into(net, ckpt.read_weights(directory), directory)
        net.requires_grad_(False)
        autoencoder = load_autoencoder(directory / task.autoencoder).requires_grad_(False)
        return cls(kind, net.eval(), autoencoder, task, directory / task.autoencoder)

    def with_distilled(self, directory: Path) -> ModelBundle:
        """This bundle with the autoencoder in ``directory`` when that one was distilled into this
        bundle's latent space (`train autoencoder --distill-from` of this bundle's autoencoder); this
        bundle itself otherwise (another model's latents would be misread)."""
        if self.autoencoder_dir is None or not (directory / ckpt.CONFIG).exists():
            return self
        if distilled_from(directory) != ckpt.weights_digest(self.autoencoder_dir):
            return self
        return replace(
            self, autoencoder=load_autoencoder(directory).requires_grad_(False), autoencoder_dir=directory
        )

    # ------------------------------------------------------------------------------------- facts

    @property
    def is_student(self) -> bool:
        return self.kind == "student"

    @property
    def residual(self) -> bool:
        return self.net.config.predict_residual

    @property
    def resolution(self) -> int:
        return self.task.resolution

    @property
    def latent_side(self) -> int:
        return self.task.resolution // self.autoencoder.config.downsample

    @property
    def window_frames(self) -> int:
        """Frames per model call: a teacher's whole window, a student's chunk."""
        return self.net.config.chunk_frames if self.is_student else self.task.frames

    @property
    def matmul_shape(self) -> tuple[int, int, int]:
        """(tokens, width, MLP width) of the largest matmul of one model call: what the start-up
        precision benchmark measures (`precision.measured_choice`)."""
        config = self.net.config
        side = self.latent_side
        tokens = self.window_frames * config.streams_per_frame() * config.tokens_per_frame(side, side)
        return tokens, config.width, int(config.mlp_ratio * config.width)

    def default_sampling(self) -> Sampling:
        """The shipped sampling (`config.STUDENT_SAMPLING` / `TEACHER_SAMPLING`); a student distilled
        for other times than the shipped ones runs its own steps from noise."""
        if not self.is_student:
            return TEACHER_SAMPLING
        try:
            self.times(STUDENT_SAMPLING)
        except ValueError:
            return Sampling(len(self.task.student_times))
        return STUDENT_SAMPLING

    def times(self, sampling: Sampling) -> torch.Tensor:
        """The student's times for ``sampling`` [S] (a subset of its trained times)."""
        return torch.tensor(sampling.student_times(self.task.student_times))

    def autoencoder_choice(self) -> CallChoice:
        """bf16 or fp32 for the autoencoder: on the CPU, one refresh's encode (a window) and delta
        decode (two latents) timed both ways, once per autoencoder shape (`precision.timed_choice`). Its
        convolutions gain from bf16 where the CPU has it natively (a 2-core AMD EPYC with AVX512-BF16:
        3.5 -> 2.8 ms to encode, 6.7 -> 4.9 to decode); on a 2-core Intel Xeon with AVX512-BF16 they
        were slower in bf16 (2026-12-02)."""
        key = self._autoencoder_shape()
        with _AUTOENCODER_LOCK:
            if key not in _AUTOENCODER_CHOICES:
                _AUTOENCODER_CHOICES[key] = self._time_autoencoder()
            return _AUTOENCODER_CHOICES[key]

    def _autoencoder_shape(self) -> tuple[object, ...]:
        """What the autoencoder's speed depends on: its layers, the window's size, the weights' device
        and memory layout, and torch's thread count."""
        config = self.autoencoder.config
        kernel = next(p for p in self.autoencoder.parameters() if p.dim() == 4)  # channels-last or not
        return (
            config.channels, config.latent_channels, config.groups, self.resolution,
            kernel.device.type, kernel.is_contiguous(), torch.get_num_threads(),
        )  # fmt: skip

    def _time_autoencoder(self) -> CallChoice:
        what = f"the autoencoder's encode and delta decode at {self.resolution} px"
        if next(self.autoencoder.parameters()).device.type != "cpu":
            return untimed(what)
        side, latent = self.resolution, self.latent_side
        generator = torch.Generator().manual_seed(0)
        pixels = torch.rand(1, 3, side, side, generator=generator) * 2 - 1
        latents = torch.randn(2, self.autoencoder.config.latent_channels, latent, latent, generator=generator)

        def refresh_work() -> None:
            self.autoencoder.encode(pixels)
            self.autoencoder.decode(latents)

        with torch.no_grad():
            return timed_choice(what, refresh_work)

    def _autoencoding(self) -> contextlib.AbstractContextManager[None]:
        """The autoencoder's precision (`autoencoder_choice`); callers take its outputs as float."""
        return torch.autocast("cpu", torch.bfloat16, enabled=self.autoencoder_choice().bf16)

    # ------------------------------------------------------------------------------------- steps

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[F, 3, R, R] in [-1, 1] -> latents [1, F, C, h, w]."""
        with self._autoencoding():
            return torch.cat([self.autoencoder.encode(part) for part in pixels.split(16)])[None].float()

    @torch.no_grad()
    def reference(self, source: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> Reference:
        """A keyframe pair [3, R, R] each (in [-1, 1]) and its mask [1, h, w] -> the model's reference."""
        with self._autoencoding():
            pair = self.autoencoder.encode(torch.stack([source, edited])).float()
        target = to_diffusion_space(pair[1:], pair[:1], self.residual)
        return Reference(pair[:1], target, mask[None], torch.ones(1, dtype=torch.bool))

    @torch.no_grad()
    def denoise(
        self,
        cond: EffectCondition,
        noise: torch.Tensor,
        sampling: Sampling,
        cache: KVCache | None = None,
        reuse: TokenReuse | None = None,
        guidance: Guidance = NO_GUIDANCE,
        fold_write: bool = False,
    ) -> torch.Tensor:
        """noise [B, F, C, h, w] -> the clean sample x0 in diffusion space [B, F, C, h, w].

        A student needs ``cache`` (it runs chunk by chunk and appends each chunk); a teacher attends
        over the whole window. With ``sampling.start`` < 1 the start is the source (residual 0)
        noised to that time. ``fold_write``: a student's last denoising pass writes its cache (no
        separate pass at t = 0; `rollout`).
        """
        base = base_latent(cond.source, cond.prior)
        source = to_diffusion_space(base, base, self.residual)  # the source (with its prior) as x0
        with autocast(noise.device, shape=self.matmul_shape):
            if self.is_student:
                if cache is None:
                    raise ValueError("a causal student denoises with a KV cache (rollout.new_cache)")
                times = self.times(sampling)
                start = noise if times[0] >= 1.0 else (1 - times[0]) * source + times[0] * noise
                return rollout(
                    self.net, cond, start, times, cache, reuse=reuse, fold_write=fold_write
                ).float()
            times = sampling.teacher_times(self.task.shift)
            start = noise if times[0] >= 1.0 else (1 - times[0]) * source + times[0] * noise
            return euler_sample(self.net, cond, start, torch.tensor(times), guidance).float()

    @torch.no_grad()
    def decode_target(self, x0: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The whole decoded target [F, 3, R, R] in [-1, 1], for scoring a model at its own resolution;
        ``base``: the latent x0 is relative to (`diffusion.space.base_latent`)."""
        target = from_diffusion_space(x0.float(), base, self.residual)[0]
        with self._autoencoding():
            pixels = torch.cat([self.autoencoder.decode(part) for part in target.split(16)])
        return pixels.float().clamp(-1, 1)

    @torch.no_grad()
    def decode_edit(self, x0: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The model's change as pixels [F, 3, R, R]: decode(target) - decode(base), a "delta decode"
        (``base``: the source latent, with the flow prior where the model has one).

        The autoencoder's own reconstruction error cancels, so where the model changes nothing the
        change is zero and the full-resolution source (and prior) shows through untouched.
        """
        target = from_diffusion_space(x0.float(), base, self.residual)[0]
        both = torch.cat([target, base[0]])
        with self._autoencoding():
            pixels = torch.cat([self.autoencoder.decode(part) for part in both.split(16)]).float()
        edited, rebuilt = pixels.split(len(target))
        return edited.clamp(-1, 1) - rebuilt.clamp(-1, 1)
