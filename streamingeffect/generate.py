"""Offline generation with a trained effect model: a clip in, the clip with the effect out.

The clip is parsed (cached), cropped to the square around the person, resized to the model's
resolution and handled window by window (the teacher attends over a whole window). The result is
resized back into the crop; for local edits everything outside the edit region stays the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamingeffect.diffusion.sampler import NO_GUIDANCE, Guidance, euler_sample
from streamingeffect.effects import Category, get_category
from streamingeffect.models.config import EffectModelConfig
from streamingeffect.models.dit import EffectCondition, EffectTransformer, Reference, TextCondition
from streamingeffect.models.kv_cache import KVCache
from streamingeffect.objectives.teacher import from_diffusion_space, to_diffusion_space
from streamingeffect.precision import autocast
from streamingeffect.rollout import new_cache, rollout
from streamingeffect.train import checkpoint as ckpt

BUNDLED = Path(__file__).parent / "weights"


def resolve_model(name: str) -> Path:
    """A checkpoint folder, or the bundled weights for "teacher" / "student"."""
    path = Path(name)
    if path.is_dir():
        return path
    if name in ("teacher", "student"):
        bundled = BUNDLED / f"{name}-tiny"
        if (bundled / ckpt.CONFIG).exists():
            return bundled
        raise ckpt.CheckpointError(
            f"no bundled {name} weights in this install ({bundled}); pass a checkpoint folder"
        )
    raise ckpt.CheckpointError(f"{name}: not a checkpoint folder (and not 'teacher' or 'student')")


@dataclass
class EffectModel:
    """A trained transformer with the autoencoder and the settings it was trained with."""

    net: EffectTransformer
    autoencoder: Any  # FrameAutoencoder
    resolution: int
    frames: int
    shift: float
    kind: str = "teacher"  # "student": causal, chunk by chunk with a KV cache, few steps
    trained_steps: int = 50  # the student's step count (its schedule); a teacher's usual count

    @property
    def is_student(self) -> bool:
        return self.kind == "student"

    @property
    def window_frames(self) -> int:
        """Frames handled per call: a teacher's whole window, a student's chunk."""
        return self.net.config.chunk_frames if self.is_student else self.frames

    def student_times(self, steps: int) -> torch.Tensor:
        """The student's times for ``steps`` (<= its trained steps): a subset of its trained schedule."""
        from streamingeffect.rollout import StudentSchedule

        if not 1 <= steps <= self.trained_steps:
            raise ValueError(
                f"this student was distilled for {self.trained_steps} steps; use 1..{self.trained_steps}"
            )
        return StudentSchedule.uniform(steps, self.shift).tensor()

    @classmethod
    def load(cls, directory: Path) -> EffectModel:
        from streamingeffect.train.run import load_autoencoder

        saved = ckpt.read_config(directory)
        if saved.get("kind") not in ("teacher", "student"):
            raise ckpt.CheckpointError(
                f"{directory}: holds a {saved.get('kind')!r} checkpoint, not an effect model"
            )
        net = EffectTransformer(EffectModelConfig.from_dict(saved["model"]))
        ckpt.load_into(net, ckpt.read_weights(directory), directory)
        task = saved.get("task", {})
        autoencoder = load_autoencoder(directory / task.get("autoencoder", "autoencoder"))
        return cls(
            net.eval(),
            autoencoder,
            int(task.get("resolution", 128)),
            int(task.get("frames", 4)),
            float(task.get("shift", 3.0)),
            kind=saved["kind"],
            trained_steps=int(task.get("steps", 50)),
        )


@dataclass(frozen=True)
class Request:
    """What to do: a catalog effect or a free prompt, optionally with an edited keyframe."""

    effect: str | None = None
    prompt: str | None = None
    reference: np.ndarray | None = None  # [H, W, 3] the edited keyframe (input size)
    reference_source: np.ndarray | None = None  # [H, W, 3] the frame it was edited from (default: frame 0)

    def category(self) -> Category | None:
        return get_category(self.effect) if self.effect else None

    def text(self) -> str:
        if self.prompt is not None:
            if not self.prompt.strip():
                raise ValueError("empty prompt: describe the effect, e.g. 'a glowing cyan neon outline'")
            return self.prompt
        category = self.category()
        if category is None and self.reference is None:
            raise ValueError("give an effect id, a prompt or a reference keyframe")
        return category.descriptions[0] if category else ""


def crop_to_model(frames: np.ndarray, crop: tuple[int, int, int], resolution: int) -> torch.Tensor:
    """[F, H, W, 3] uint8 -> [F, 3, R, R] in [-1, 1], cropped to (x0, y0, side)."""
    x0, y0, side = crop
    small = [
        cv2.resize(f[y0 : y0 + side, x0 : x0 + side], (resolution, resolution), interpolation=cv2.INTER_AREA)
        for f in frames
    ]
    return torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def crop_to_latent_mask(masks: np.ndarray, crop: tuple[int, int, int], size: int) -> torch.Tensor:
    """[F, H, W] float masks -> [F, 1, size, size] over the crop."""
    x0, y0, side = crop
    small = [
        cv2.resize(
            m[y0 : y0 + side, x0 : x0 + side].astype(np.float32), (size, size), interpolation=cv2.INTER_AREA
        )
        for m in masks
    ]
    return torch.from_numpy(np.stack(small))[:, None]


@torch.no_grad()
def generate_window(
    model: EffectModel,
    frames: np.ndarray,
    masks: np.ndarray,
    crop: tuple[int, int, int],
    text: Any,
    reference: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    steps: int,
    guidance: Guidance,
    generator: torch.Generator,
    cache: KVCache | None = None,
) -> np.ndarray:
    """Frames [F, H, W, 3] of one window -> edited crops [F, side, side, 3] uint8.

    A student continues the stream in ``cache`` (its reference enters the cache on the first chunk).
    """
    ae, residual = model.autoencoder, model.net.config.predict_residual
    latent_size = model.resolution // ae.config.downsample
    source = ae.encode(crop_to_model(frames, crop, model.resolution))[None]  # [1, F, C, h, w]
    mask = crop_to_latent_mask(masks, crop, latent_size)[None]
    ref = None
    if reference is not None:
        ref_source, ref_target, ref_mask = reference
        pair = ae.encode(crop_to_model(np.stack([ref_source, ref_target]), crop, model.resolution))
        ref = Reference(
            pair[:1],
            to_diffusion_space(pair[1:], pair[:1], residual),
            crop_to_latent_mask(ref_mask[None], crop, latent_size),
            torch.ones(1, dtype=torch.bool),
        )
    cond = EffectCondition(source=source, mask=mask, reference=ref, text=text)
    noise = torch.randn(source.shape, generator=generator)
    with autocast(source.device):
        if cache is not None:
            x0 = rollout(model.net, cond, noise, model.student_times(steps), cache)
        else:
            x0 = euler_sample(model.net, cond, noise, steps, model.shift, guidance)
    target = from_diffusion_space(x0.float(), source, residual)[0]
    pixels = torch.cat([ae.decode(part) for part in target.split(8)]).clamp(-1, 1)
    side = crop[2]
    out = ((pixels.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    return np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_CUBIC) for f in out])


def text_condition(text: str) -> TextCondition | None:
    if not text:
        return None
    from streamingeffect.models.text import TextEncoder

    features = TextEncoder().encode([text])
    return TextCondition(features.tokens, features.mask, features.pooled, torch.ones(1, dtype=torch.bool))


def _check_reference(image: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    if image.shape[:2] != size:
        raise ValueError(
            f"the {name} image is {image.shape[1]}x{image.shape[0]} but the clip is {size[1]}x{size[0]}; "
            "edit a frame of this clip at its own size"
        )
    return image


def generate_video(
    video: Path,
    output: Path,
    request: Request,
    model: EffectModel,
    steps: int = 50,
    guidance: Guidance = NO_GUIDANCE,
    seed: int = 0,
    max_frames: int | None = None,
    cache_dir: Path | None = None,
) -> int:
    """Apply the request to every frame of ``video``; returns the number of frames written."""
    from tqdm import tqdm

    from streamingeffect.io import VideoWriter, probe, read_frames
    from streamingeffect.parsing.masks import full_frame, person_crop, window_parts
    from streamingeffect.parsing.mediapipe_parser import parse_clip

    category = request.category()
    text = text_condition(request.text())
    info = probe(video)
    size = (info.height, info.width)
    parse = parse_clip(video, cache_dir)
    total = parse.num_frames if max_frames is None else min(max_frames, parse.num_frames)
    square = person_crop(parse.person[:total]).scaled(info.width / parse.size[1], info.height / parse.size[0])
    crop = (square.x0, square.y0, min(square.width, square.height))
    region = category.region if category is not None and category.kind == "edit" else "person"
    frames_iter = read_frames(video, stop=total)
    reference = None
    generator = torch.Generator().manual_seed(seed)
    cache = new_cache(model.net) if model.is_student else None
    window = model.window_frames
    written = 0
    with VideoWriter(output, fps=info.fps) as writer:
        for first in tqdm(range(0, total, window), desc="generate", unit="window"):
            indices = list(range(first, min(total, first + window)))
            frames = np.stack([next(frames_iter).image for _ in indices])
            parts = window_parts(parse, indices, full_frame(parse), size, parse.fps, first_index=first)
            masks = np.stack([p.regions.get(region) for p in parts])
            if request.reference is not None and reference is None:
                target = _check_reference(request.reference, size, "reference")
                source = (
                    frames[0]
                    if request.reference_source is None
                    else _check_reference(request.reference_source, size, "reference source")
                )
                reference = (source, target, masks[0])
            padded = np.concatenate([frames, np.repeat(frames[-1:], window - len(frames), 0)])
            padded_masks = np.concatenate([masks, np.repeat(masks[-1:], window - len(masks), 0)])
            crops = generate_window(
                model, padded, padded_masks, crop, text, reference, steps, guidance, generator, cache
            )
            for k, frame in enumerate(frames):
                writer.write(paste_crop(frame, crops[k], crop, masks[k] if region != "person" else None))
                written += 1
    return written


def paste_crop(
    frame: np.ndarray, crop_pixels: np.ndarray, crop: tuple[int, int, int], local: np.ndarray | None
) -> np.ndarray:
    """Put the generated crop back; for local edits only inside the (dilated, feathered) region."""
    x0, y0, side = crop
    out = frame.copy()
    window = out[y0 : y0 + side, x0 : x0 + side]
    if local is None:
        window[:] = crop_pixels
        return out
    region = cv2.dilate(
        (local[y0 : y0 + side, x0 : x0 + side] > 0.5).astype(np.uint8), np.ones((9, 9), np.uint8)
    )
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 2.0)[..., None]
    window[:] = (alpha * crop_pixels + (1 - alpha) * window).round().astype(np.uint8)
    return out
