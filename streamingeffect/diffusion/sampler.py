"""Euler sampling of the flow with classifier-free guidance on text and reference.

With both conditions present the guided velocity is (InstructPix2Pix-style, one scale per condition)
    v = v(none) + g_ref (v(ref) - v(none)) + g_text (v(ref, text) - v(ref))
and with one condition v = v(none) + g (v(cond) - v(none)). Scales of 1 need a single network call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from streamingeffect.models.dit import EffectCondition

Net = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Guidance:
    text: float = 1.0
    reference: float = 1.0


NO_GUIDANCE = Guidance()  # scales of 1: one network call per step


def with_conditions(cond: EffectCondition, reference: bool, text: bool) -> EffectCondition:
    """The same condition with the reference and/or text switched to their null versions."""
    ref = cond.reference
    txt = cond.text
    if ref is not None:
        ref = replace(ref, keep=ref.keep & reference)
    if txt is not None:
        txt = replace(txt, keep=txt.keep & text)
    return replace(cond, reference=ref, text=txt)


def _present(cond: EffectCondition) -> tuple[bool, bool]:
    has_ref = cond.reference is not None and bool(cond.reference.keep.any())
    has_text = cond.text is not None and bool(cond.text.keep.any())
    return has_ref, has_text


def guided_velocity(
    net: Net,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: EffectCondition,
    guidance: Guidance,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    def call(c: EffectCondition) -> torch.Tensor:
        return net(x, t, c, attn_mask=attn_mask).float()

    has_ref, has_text = _present(cond)
    full = call(cond)
    if (guidance.reference == 1.0 or not has_ref) and (guidance.text == 1.0 or not has_text):
        return full
    none = call(with_conditions(cond, reference=False, text=False))
    if has_ref and has_text:
        ref_only = call(with_conditions(cond, reference=True, text=False))
        return none + guidance.reference * (ref_only - none) + guidance.text * (full - ref_only)
    scale = guidance.reference if has_ref else guidance.text
    return none + scale * (full - none)


@torch.no_grad()
def euler_sample(
    net: Net,
    cond: EffectCondition,
    start: torch.Tensor,
    times: torch.Tensor,
    guidance: Guidance = NO_GUIDANCE,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """start [B, F, C, h, w] at times[0] -> x0 in diffusion space, one Euler step per pair of times.

    ``times`` [S + 1] descends to 0, e.g. ``flow.sampling_times(steps, shift)`` from pure noise.
    """
    x = start
    for i in range(len(times) - 1):
        t = times[i].expand(start.shape[:2])
        v = guided_velocity(net, x, t, cond, guidance, attn_mask)
        x = x + (times[i + 1] - times[i]) * v
    return x
