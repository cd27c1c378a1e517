"""Text conditioning: the packaged all-MiniLM-L6-v2 encoder and the safetensors text cache."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from streamingeffect.models import text
from streamingeffect.models.text import (
    MAX_TOKENS,
    TEXT_DIM,
    TextCache,
    TextEncoder,
    TextFeatures,
    TextModelMissing,
)

needs_model = pytest.mark.skipif(
    importlib.util.find_spec(text.MODEL_PACKAGE) is None,
    reason=f"the packaged text model is not installed (`{text.INSTALL_COMMAND}`)",
)

NEON = "add a glowing neon outline around the person"
NEON_REWORDED = "neon outline glowing around the person"
RAIN = "make it rain behind the person"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def batch(encoder: TextEncoder) -> TextFeatures:
    return encoder.encode([NEON, NEON_REWORDED, RAIN, "blur"])


def assert_same(a: TextFeatures, b: TextFeatures) -> None:
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.mask, b.mask)
    assert torch.equal(a.pooled, b.pooled)


@needs_model
def test_shapes_mask_and_pooling(batch: TextFeatures) -> None:
    B, L = 4, batch.length
    assert batch.tokens.shape == (B, L, TEXT_DIM) and batch.tokens.dtype == torch.float32
    assert batch.mask.shape == (B, L) and batch.mask.dtype == torch.bool
    assert batch.pooled.shape == (B, TEXT_DIM)
    assert L <= MAX_TOKENS
    lengths = batch.mask.sum(1)
    assert int(lengths.max()) == L  # padded to the longest prompt, no further
    assert int(lengths[3]) == 3  # [CLS] blur [SEP]
    assert bool(batch.mask[:, 0].all())
    assert torch.count_nonzero(batch.tokens[~batch.mask]) == 0  # padding is zero
    torch.testing.assert_close(batch.pooled.norm(dim=-1), torch.ones(B))
    mean = batch.tokens.sum(1) / lengths[:, None]  # the model card's mean pooling
    torch.testing.assert_close(batch.pooled, F.normalize(mean, dim=-1))


@needs_model
def test_deterministic_and_batch_independent(encoder: TextEncoder, batch: TextFeatures) -> None:
    fresh = TextEncoder(cache_size=0).encode([NEON, NEON_REWORDED, RAIN, "blur"])
    assert_same(fresh, batch)
    again = encoder.encode([NEON, NEON_REWORDED, RAIN, "blur"])  # from the LRU cache
    assert_same(again, batch)
    alone = TextEncoder(cache_size=0).encode(["blur"])
    torch.testing.assert_close(alone.tokens[0], batch.tokens[3, : alone.length], rtol=0, atol=1e-5)
    twice = encoder.encode([RAIN, RAIN])
    assert_same(twice.index([0]), twice.index([1]))
    assert not twice.tokens.requires_grad


@needs_model
def test_semantic_similarity(batch: TextFeatures) -> None:
    neon, reworded, rain = batch.pooled[0], batch.pooled[1], batch.pooled[2]
    assert torch.dot(neon, reworded) > torch.dot(neon, rain) + 0.1


def test_empty_prompt_is_rejected() -> None:
    encoder = TextEncoder()  # validation happens before the model loads
    for bad in ([""], ["add rain", "   "], []):
        with pytest.raises(ValueError, match="describe the effect"):
            encoder.encode(bad)
    with pytest.raises(TypeError, match="list of prompts"):
        encoder.encode(NEON)  # type: ignore[arg-type]


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "MODEL_PACKAGE", "streamingeffect_no_such_text_model")
    with pytest.raises(TextModelMissing, match=re.escape(text.INSTALL_COMMAND)):
        TextEncoder().encode([NEON])


@needs_model
def test_text_cache_round_trip_and_fallback(
    tmp_path: Path, encoder: TextEncoder, batch: TextFeatures
) -> None:
    cache = TextCache.build([NEON, RAIN, NEON], encoder, progress=False)  # duplicates kept once
    assert cache.strings == [NEON, RAIN] and cache.features.tokens.shape == (2, MAX_TOKENS, TEXT_DIM)
    path = tmp_path / "text.safetensors"
    cache.save(path)
    loaded = TextCache.load(path, encoder)
    assert loaded.strings == cache.strings
    assert_same(loaded.features, cache.features)

    got = loaded.lookup([RAIN, "blur", NEON])  # "blur" is not in the cache: encoded on the fly
    assert got.tokens.shape == (3, batch.length, TEXT_DIM)
    expect = batch.index([2, 3, 0])
    torch.testing.assert_close(got.tokens, expect.tokens, rtol=0, atol=1e-5)
    assert torch.equal(got.mask, expect.mask)
    torch.testing.assert_close(got.pooled, expect.pooled, rtol=0, atol=1e-5)


def test_text_cache_rejects_foreign_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "something else"})
    with pytest.raises(ValueError, match="not a all-MiniLM-L6-v2 text cache"):
        TextCache.load(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        TextCache.load(path)


def test_null_text_and_batch_helpers() -> None:
    null = TextFeatures.empty(3, length=2)
    assert null.tokens.shape == (3, 2, TEXT_DIM) and null.pooled.shape == (3, TEXT_DIM)
    assert null.mask.tolist() == [[True, False]] * 3
    assert not null.tokens.any() and not null.pooled.any()

    longer = TextFeatures(
        torch.randn(2, 4, TEXT_DIM), torch.ones(2, 4, dtype=torch.bool), torch.randn(2, TEXT_DIM)
    )
    both = TextFeatures.cat([null, longer])  # padded to the longest
    assert both.tokens.shape == (5, 4, TEXT_DIM) and both.mask.sum().item() == 3 + 8
    assert_same(both.index([3, 4]), longer)
    assert_same(both.index(0).trimmed(), TextFeatures.empty(1))
    with pytest.raises(ValueError, match="real tokens"):
        longer.with_length(2)
