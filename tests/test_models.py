"""Model identities on tiny nets: flow conversions, RoPE, layouts, masks, the size table, guidance."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from streamingeffect.diffusion import flow
from streamingeffect.diffusion.sampler import Guidance, euler_sample, guided_velocity
from streamingeffect.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from streamingeffect.models.config import MODEL_SIZES, EffectModelConfig
from streamingeffect.models.dit import (
    EffectCondition,
    EffectTransformer,
    HeadNorm,
    Reference,
    TextCondition,
    block_causal_mask,
    patchify,
    unpatchify,
)
from streamingeffect.models.rope import apply_rope, axis_dims, rope_rotations

B, F, C, H, W = 2, 3, 4, 8, 8


def tiny(layout: str = "packed", **overrides: object) -> EffectTransformer:
    torch.manual_seed(0)
    config = EffectModelConfig.named("test", layout=layout, latent_channels=C, **overrides)
    net = EffectTransformer(config)
    for p in net.parameters():  # zero-initialised heads would hide wiring mistakes
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def condition(
    keep_ref: bool = True, keep_text: bool = True, seed: int = 1, frames: int = F
) -> EffectCondition:
    g = torch.Generator().manual_seed(seed)
    ref = Reference(
        torch.randn(B, C, H, W, generator=g),
        torch.randn(B, C, H, W, generator=g),
        torch.ones(B, 1, H, W),
        torch.full((B,), keep_ref),
    )
    text = TextCondition(
        torch.randn(B, 5, 384, generator=g),
        torch.ones(B, 5, dtype=torch.bool),
        torch.randn(B, 384, generator=g),
        torch.full((B,), keep_text),
    )
    return EffectCondition(
        torch.randn(B, frames, C, H, W, generator=g), torch.rand(B, frames, 1, H, W, generator=g), ref, text
    )


# ----------------------------------------------------------------------------------------- flow


def test_conversions_round_trip_in_float64() -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = (
        torch.randn(4, 3, 5, dtype=torch.float64, generator=g),
        torch.randn(4, 3, 5, dtype=torch.float64, generator=g),
    )
    t = torch.rand(4, 3, dtype=torch.float64, generator=g) * 0.98 + 0.01
    x_t = flow.interpolate(x0, noise, t)
    v = flow.velocity(x0, noise)
    assert torch.allclose(flow.x0_from_velocity(x_t, v, t), x0, atol=1e-12)
    assert torch.allclose(flow.noise_from_velocity(x_t, v, t), noise, atol=1e-12)
    assert torch.allclose(flow.velocity_from_x0(x_t, x0, t), v, atol=1e-10)


def test_schedule_endpoints_and_shift() -> None:
    times = flow.sampling_times(4, shift=3.0)
    assert times[0] == 1.0 and times[-1] == 0.0 and (times[1:] < times[:-1]).all()
    assert flow.shift_time(torch.tensor(0.5), 3.0) == pytest.approx(0.75)
    assert torch.allclose(flow.shift_time(torch.linspace(0, 1, 5), 1.0), torch.linspace(0, 1, 5))


def test_euler_integrates_a_constant_velocity_exactly() -> None:
    x0 = torch.randn(B, F, C, H, W)
    noise = torch.randn_like(x0)

    def oracle(x: torch.Tensor, t: torch.Tensor, cond: object, attn_mask: object = None) -> torch.Tensor:
        return noise - x0  # the true velocity of the straight path

    out = euler_sample(oracle, condition(), noise, flow.sampling_times(3, 3.0))
    assert torch.allclose(out, x0, atol=1e-5)


# ----------------------------------------------------------------------------------------- rope


def test_rope_scores_depend_only_on_relative_position() -> None:
    head_dim = 24
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(pq: list[float], pk: list[float]) -> torch.Tensor:
        positions = torch.tensor([pq, pk])
        rotations = rope_rotations(positions, head_dim)
        rq = apply_rope(q.view(1, head_dim), rotations[:1])
        rk = apply_rope(k.view(1, head_dim), rotations[1:])
        return (rq * rk).sum()

    base = score([1, 2, 3], [4, 0, 5])
    assert torch.allclose(base, score([11, 7, -2], [14, 5, 0]), atol=1e-4)
    assert not torch.allclose(base, score([1, 2, 3], [5, 0, 5]), atol=1e-3)
    assert sum(axis_dims(head_dim)) == head_dim and all(d % 2 == 0 for d in axis_dims(head_dim))


def test_rope_preserves_norms() -> None:
    x = torch.randn(3, 10, 24)
    rotations = rope_rotations(torch.randn(10, 3) * 5, 24)
    assert torch.allclose(apply_rope(x, rotations).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_turns_each_pair_by_its_angle() -> None:
    # Time's first pair turns by t radians (frequency 1): (1, 0) at t = 1 goes to (cos 1, sin 1), and
    # a pair of the height's group at h = 0 stays put.
    x = torch.zeros(1, 24)
    x[0, 0], x[0, 8] = 1.0, 1.0  # time's first pair, height's first pair (axis_dims(24) = 8, 8, 8)
    turned = apply_rope(x, rope_rotations(torch.tensor([[1.0, 0.0, 0.0]]), 24))[0]
    assert torch.allclose(turned[:2], torch.tensor([math.cos(1.0), math.sin(1.0)]), atol=1e-6)
    assert torch.allclose(turned[8:10], torch.tensor([1.0, 0.0]), atol=1e-6)


# ----------------------------------------------------------------------------------------- transformer


def test_the_head_norm_runs_a_bf16_input_without_a_dtype_warning_and_loads_rmsnorm_weights() -> None:
    """Under bf16 autocast the query/key norm takes the input's dtype without torch's mismatch warning
    (which a user would see on every start) and agrees with the fp32 norm to bf16 rounding; its weight
    has RMSNorm's name (checkpoints load)."""
    reference = torch.nn.RMSNorm(16)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
    norm = HeadNorm(16)
    norm.load_state_dict(reference.state_dict())
    x = torch.randn(2, 4, 7, 16, generator=torch.Generator().manual_seed(0))
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch warns once per process otherwise
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")
            low = norm(x.bfloat16())
            assert torch.equal(norm(x), reference(x))
    finally:
        torch.set_warn_always(warn_always)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), reference(x).detach(), rtol=2**-7, atol=1e-3)  # 8-bit mantissa


def test_patchify_round_trip() -> None:
    x = torch.randn(B, F, C, H, W)
    assert torch.equal(unpatchify(patchify(x, 2), C, H, W, 2), x)


@pytest.mark.parametrize("layout", ["packed", "separate"])
def test_forward_shapes_and_conditions_matter(layout: str) -> None:
    net = tiny(layout)
    x, t = torch.randn(B, F, C, H, W), torch.rand(B, F)
    with torch.no_grad():
        out = net(x, t, condition())
        assert out.shape == (B, F, C, H, W)
        assert not torch.allclose(out, net(x, t, condition(keep_ref=False)), atol=1e-4)
        assert not torch.allclose(out, net(x, t, condition(keep_text=False)), atol=1e-4)
        # a dropped reference ignores its content: changing it changes nothing
        a = net(x, t, condition(keep_ref=False, seed=1))
        cond = condition(keep_ref=False, seed=1)
        cond.reference.target = torch.randn_like(cond.reference.target)  # type: ignore[union-attr]
        assert torch.allclose(a, net(x, t, cond), atol=1e-6)


def test_token_layout_counts_follow_the_config() -> None:
    for layout, streams in (("packed", 1), ("separate", 2)):
        net = tiny(layout)
        lay = net.token_layout(F, H, W)
        per_frame = net.config.tokens_per_frame(H, W)
        assert lay.groups.numel() == (F + 1) * streams * per_frame
        assert lay.output.numel() == F * per_frame
        assert (lay.groups[lay.output] > 0).all()


def test_block_causal_mask_sees_reference_and_past_chunks_only() -> None:
    net = tiny()
    lay = net.token_layout(4, H, W)
    mask = block_causal_mask(lay, chunk_frames=2)
    g = lay.groups
    ref, first, last = (g == 0).nonzero()[0, 0], (g == 1).nonzero()[0, 0], (g == 4).nonzero()[0, 0]
    assert mask[last, ref] and mask[first, ref] and mask[last, first]
    assert not mask[first, last] and not mask[ref, first]
    second = (g == 2).nonzero()[0, 0]
    assert mask[first, second]  # frames 1 and 2 share a chunk


def test_causal_mask_makes_early_frames_ignore_later_ones() -> None:
    net = tiny()
    x, t, cond = torch.randn(B, F, C, H, W), torch.rand(B, F), condition()
    mask = block_causal_mask(net.token_layout(F, H, W), chunk_frames=1)
    with torch.no_grad():
        a = net(x, t, cond, attn_mask=mask)
        x2 = x.clone()
        x2[:, -1] += 1.0
        b = net(x2, t, cond, attn_mask=mask)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1], atol=1e-4)


def test_guidance_of_one_is_the_plain_conditional_call() -> None:
    net = tiny()
    x, t, cond = torch.randn(B, F, C, H, W), torch.rand(B, F), condition()
    with torch.no_grad():
        plain = net(x, t, cond)
        assert torch.allclose(guided_velocity(net, x, t, cond, Guidance(1.0, 1.0)), plain, atol=1e-6)
        assert not torch.allclose(guided_velocity(net, x, t, cond, Guidance(3.0, 2.0)), plain, atol=1e-4)


def test_size_table_and_the_wan_shaped_config_on_the_meta_device() -> None:
    assert {"tiny", "small", "base", "wan-1.3b"} <= set(MODEL_SIZES)
    config = EffectModelConfig.named("wan-1.3b")
    assert (config.depth, config.width, config.heads) == (30, 1536, 12)
    with torch.device("meta"):
        net = EffectTransformer(config)
        x = torch.randn(1, 2, config.latent_channels, 8, 8)
        cond = EffectCondition(torch.randn_like(x), torch.ones(1, 2, 1, 8, 8))
        out = net(x, torch.rand(1, 2), cond)
    assert out.shape == x.shape and out.is_meta
    params = sum(p.numel() for p in net.parameters())
    assert 1.0e9 < params < 2.0e9


def test_unknown_size_and_bad_heads_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown model size"):
        EffectModelConfig.named("huge")
    with pytest.raises(ValueError, match="divisible"):
        EffectModelConfig(width=100, heads=3)


def test_autoencoder_shapes_and_size_check() -> None:
    ae = FrameAutoencoder(AutoencoderConfig(channels=(8, 16, 16), latent_channels=4, groups=4)).eval()
    with torch.no_grad():
        recon, z = ae(torch.rand(2, 3, 64, 48) * 2 - 1)
    assert z.shape == (2, 4, 8, 6) and recon.shape == (2, 3, 64, 48)
    with pytest.raises(ValueError, match="multiple of 8"):
        ae.encode(torch.zeros(1, 3, 60, 64))


def test_warp_error_is_zero_for_identical_frames_and_grows_with_flicker() -> None:
    import cv2
    import numpy as np

    from streamingeffect.eval.metrics import warp_error

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((64, 64, 3)) * 255).astype(np.uint8), (0, 0), 2.0)
    base = np.stack([texture] * 3)
    assert warp_error(base, base) == 0.0
    # A scene moving 2 px right per frame, output following it exactly: near 0. Flicker: much larger.
    moving = np.stack([np.roll(base[0], 2 * i, axis=1) for i in range(3)])
    assert warp_error(moving, moving) < 2.0
    flicker = moving.astype(np.int16) + np.array([0, 40, 0])[:, None, None, None]
    assert warp_error(np.clip(flicker, 0, 255).astype(np.uint8), moving) > 20
