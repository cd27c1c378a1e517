"""The causal student's identities on 2-layer nets: the cached chunk-by-chunk rollout equals one
forward under the block-causal mask; the cache keeps exactly the sink plus the last W chunks; a new
sink changes later outputs only."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_models import B, C, H, W, condition, tiny

from streamingeffect.models.dit import block_causal_mask
from streamingeffect.models.kv_cache import KVCache, LayerKV
from streamingeffect.models.token_reuse import TokenReuse
from streamingeffect.rollout import StudentSchedule, chunk_condition, denoise_chunk, new_cache, rollout

FRAMES = 6


def _inputs(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, FRAMES, C, H, W, generator=g), torch.rand(B, FRAMES, generator=g)


@pytest.mark.parametrize(("layout", "chunk"), [("packed", 1), ("packed", 2), ("separate", 2), ("packed", 4)])
@torch.no_grad()
def test_cached_chunks_equal_one_block_causal_forward(layout: str, chunk: int) -> None:
    net = tiny(layout, chunk_frames=chunk)
    cond = condition(frames=FRAMES)
    x, t = _inputs()
    layout_ = net.token_layout(FRAMES, H, W)
    full = net(x, t, cond, attn_mask=block_causal_mask(layout_, chunk))

    cache = KVCache()  # unbounded: the full forward sees every earlier chunk too
    net.prefill(cond, cache)
    parts = []
    for first in range(0, FRAMES, chunk):
        window = slice(first, first + chunk)
        # The chunk's own tokens go into the cache exactly as the full forward saw them.
        parts.append(
            net(
                x[:, window],
                t[:, window],
                chunk_condition(cond, first, first + chunk),
                cache=cache,
                update_cache=True,
            )
        )
    chunked = torch.cat(parts, dim=1)
    assert torch.allclose(chunked, full, atol=1e-5), float((chunked - full).abs().max())
    # And the mask matters: full attention gives different early frames.
    assert not torch.allclose(net(x, t, cond)[:, :chunk], full[:, :chunk], atol=1e-4)


def _fake_layers(depth: int, tokens: int, value: float) -> list[LayerKV]:
    return [LayerKV(torch.full((1, 2, tokens, 4), value), torch.full((1, 2, tokens, 4), value))] * depth


def test_eviction_keeps_the_sink_and_the_last_w_chunks() -> None:
    cache = KVCache(window_chunks=3)
    cache.replace_sink(_fake_layers(2, 5, -1.0))
    for index in range(10):
        cache.append(1, _fake_layers(2, 4, float(index)))
        assert len(cache.chunks) == min(index + 1, 3)
    prefix = cache.prefix(1)
    assert prefix.keys[0, 0, :5, 0].eq(-1).all()  # the sink, first and intact
    assert prefix.keys[0, 0, 5:, 0].tolist() == [7.0] * 4 + [8.0] * 4 + [9.0] * 4  # last 3 chunks, in order
    assert cache.tokens() == 5 + 3 * 4 and cache.evicted_chunks == 7
    cache.reset()
    assert not cache.has_sink and cache.window_frames == 0 and cache.tokens() == 0


def test_cache_without_a_sink_or_with_wrong_depth_is_a_clear_error() -> None:
    cache = KVCache(window_chunks=2)
    with pytest.raises(RuntimeError, match="prefill"):
        cache.prefix(0)
    cache.replace_sink(_fake_layers(2, 5, 0.0))
    with pytest.raises(ValueError, match="layers"):
        cache.append(1, _fake_layers(3, 4, 0.0))
    with pytest.raises(ValueError):
        KVCache(window_chunks=-1)


@torch.no_grad()
def test_replacing_the_sink_changes_later_outputs_only() -> None:
    net = tiny(chunk_frames=1, window_chunks=2)
    cond = condition(frames=FRAMES)
    times = StudentSchedule.uniform(3, 3.0).tensor()
    noise = _inputs()[0]
    other_ref = replace(cond.reference, target=torch.randn_like(cond.reference.target))  # type: ignore[arg-type]

    def stream(switch_at: int | None) -> torch.Tensor:
        cache = new_cache(net)
        net.prefill(cond, cache)
        out = []
        for frame in range(FRAMES):
            if frame == switch_at:
                net.prefill(replace(cond, reference=other_ref), cache)  # a new keyframe mid-stream
            out.append(
                rollout(
                    net, chunk_condition(cond, frame, frame + 1), noise[:, frame : frame + 1], times, cache
                )
            )
        return torch.cat(out, 1)

    base, switched = stream(None), stream(3)
    assert torch.equal(base[:, :3], switched[:, :3])  # earlier outputs untouched
    assert (base[:, 3:] - switched[:, 3:]).abs().amax(
        dim=(0, 2, 3, 4)
    ).min() > 1e-4  # every later frame moves


@torch.no_grad()
def test_long_rollout_holds_a_bounded_cache_and_matches_windowed_rollout() -> None:
    net = tiny(chunk_frames=1, window_chunks=2)
    cond = condition(frames=FRAMES)
    times = StudentSchedule.uniform(2, 3.0).tensor()
    noise = _inputs()[0]
    cache = new_cache(net)
    out = rollout(net, cond, noise, times, cache)
    assert out.shape == noise.shape and torch.isfinite(out).all()
    assert len(cache.chunks) == 2 and cache.window_frames == 2 and cache.evicted_chunks == FRAMES - 2
    size = cache.nbytes()
    rollout(net, cond, noise, times, cache)  # 6 more frames: same memory
    assert cache.nbytes() == size


def test_exit_step_keeps_gradients_on_that_step_only() -> None:
    net = tiny(chunk_frames=2)
    cond = condition(frames=4)
    times = StudentSchedule.uniform(4, 3.0).tensor()
    cache = new_cache(net, unbounded=True)
    net.prefill(cond, cache)
    start = torch.randn(B, 2, C, H, W)
    x0 = denoise_chunk(net, cache, chunk_condition(cond, 0, 2), start, times, exit_step=2)
    assert x0.requires_grad
    x0.square().mean().backward()
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert not denoise_chunk(net, cache, chunk_condition(cond, 0, 2), start, times).requires_grad


def test_one_student_step_from_pure_noise_is_the_x0_estimate() -> None:
    schedule = StudentSchedule.uniform(4, 3.0)
    assert schedule.times[0] == 1.0 and len(schedule.times) == 4
    assert all(a > b for a, b in zip(schedule.times, schedule.times[1:], strict=False))
    with pytest.raises(ValueError):
        StudentSchedule.uniform(0, 3.0)


# ----------------------------------------------------------------------------------------- mask cache


def _chunk_setup(layout: str = "packed") -> tuple:
    net = tiny(layout, chunk_frames=1, window_chunks=2)
    cond = condition(frames=FRAMES)
    x, t = _inputs()
    cache = new_cache(net)
    net.prefill(cond, cache)
    for frame in range(2):  # some history in the window
        net(
            x[:, frame : frame + 1],
            t[:, frame : frame + 1],
            chunk_condition(cond, frame, frame + 1),
            cache=cache,
            update_cache=True,
        )
    return net, cond, x, t, cache


@pytest.mark.parametrize("layout", ["packed", "separate"])
@torch.no_grad()
def test_mask_cache_with_every_token_active_is_the_uncached_forward(layout: str) -> None:
    net, cond, x, t, cache = _chunk_setup(layout)
    part, xs, ts = chunk_condition(cond, 2, 3), x[:, 2:3], t[:, 2:3]
    plain = net(xs, ts, part, cache=cache)
    reuse = TokenReuse(active=torch.ones(1, H // 2, W // 2, dtype=torch.bool))
    net(x[:, 1:2], ts, part, cache=cache, reuse=reuse, reuse_key="s")  # a record from other input
    merged = net(xs, ts, part, cache=cache, reuse=reuse, reuse_key="s")
    assert torch.allclose(merged, plain, atol=1e-5) and reuse.reused_tokens == 0


@pytest.mark.parametrize("layout", ["packed", "separate"])
@torch.no_grad()
def test_mask_cache_reusing_an_unchanged_computation_gives_the_same_result(layout: str) -> None:
    net, cond, x, t, cache = _chunk_setup(layout)
    part, xs, ts = chunk_condition(cond, 2, 3), x[:, 2:3], t[:, 2:3]
    active = torch.zeros(1, H // 2, W // 2, dtype=torch.bool)
    active[:, 1:3, 1:3] = True  # 4 of 16 positions recomputed, 12 reused
    reuse = TokenReuse(active=active)
    first = net(xs, ts, part, cache=cache, reuse=reuse, reuse_key="s")  # no record yet: computes all
    again = net(xs, ts, part, cache=cache, reuse=reuse, reuse_key="s")
    assert reuse.reused_tokens > 0
    assert torch.allclose(again, first, atol=1e-5), float((again - first).abs().max())
    # A changed input inside the active area changes the output there, and only reuses elsewhere.
    moved = xs.clone()
    moved[..., 2:6, 2:6] += 1.0
    changed = net(moved, ts, part, cache=cache, reuse=reuse, reuse_key="s")
    assert not torch.allclose(changed[..., 2:6, 2:6], first[..., 2:6, 2:6], atol=1e-3)
    assert torch.equal(changed[..., :2, :], first[..., :2, :])  # reused rows: the earlier outputs
