"""Free prompts that mean a catalog effect: the nearest catalog description by MiniLM embedding.

A prompt such as "make my hair pink" is close to `hair_recolor_pink`'s descriptions; when the cosine
similarity of the sentence embeddings passes ``MATCH_THRESHOLD`` the prompt is served as that category
(its scope, and its keyframes drawn live by the renderer). The catalog's embeddings are computed once
and cached on disk.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from streamingeffect.effects import Category, catalog

# Measured on paraphrases and unrelated prompts (docs/BENCHMARKS.md, "Prompts that mean a catalog effect").
MATCH_THRESHOLD = 0.58
CACHE = Path(os.environ.get("STREAMINGEFFECT_CACHE", Path.home() / ".cache" / "streamingeffect"))


@lru_cache(maxsize=1)
def _catalog_embeddings() -> tuple[torch.Tensor, list[Category]]:
    """[N, 384] L2-normalised sentence embeddings of every catalog description, and their categories."""
    from streamingeffect.models.text import TextCache

    cache = TextCache.for_catalog(CACHE / "catalog-text.safetensors")
    # A prompt asks for something to appear or change: "remove" categories (whose source shows the
    # object) are never what it means.
    owners = {d: c for c in catalog() for d in c.descriptions if c.op != "remove"}
    strings = TextCache.read_strings(CACHE / "catalog-text.safetensors")
    rows = [i for i, s in enumerate(strings) if s in owners]
    return cache.features.pooled[rows], [owners[strings[i]] for i in rows]


def nearest_category(prompt: str) -> tuple[Category, float]:
    """The catalog category whose description is closest to ``prompt``, and the cosine similarity."""
    from streamingeffect.pipeline.bundle import text_condition

    embeddings, owners = _catalog_embeddings()
    text = text_condition(prompt)
    assert text is not None
    similarity = embeddings @ text.pooled[0]
    best = int(similarity.argmax())
    return owners[best], float(similarity[best])


def matching_category(prompt: str) -> Category | None:
    """The catalog category a free prompt means, or None when none is close enough."""
    category, similarity = nearest_category(prompt)
    return category if similarity >= MATCH_THRESHOLD else None


PARAPHRASES = (
    "make my hair pink",
    "a cyan neon glow around me",
    "give me sunglasses",
    "snow falling behind me",
    "blur the background",
    "put a crown on my head",
    "cartoon style",
    "golden aura",
    "zombie face",
)
UNRELATED = (
    "a dragon made of fire",
    "turn me into a robot",
    "van gogh painting",
    "make me look older",
    "a pirate hat",
    "underwater scene",
)


def match_table() -> str:
    """The nearest category and similarity of paraphrases and of prompts the catalog cannot serve."""
    lines = [
        "## Prompts that mean a catalog effect",
        "",
        "Command: `streamingeffect bench prompts`. Cosine similarity of MiniLM sentence embeddings between "
        f'a prompt and the nearest catalog description ("remove" categories excluded); at or above '
        f"{MATCH_THRESHOLD} the prompt is served as that category.",
        "",
        "| prompt | kind | nearest category | similarity | served as |",
        "|---|---|---|---:|---|",
    ]
    for kind, prompts in (("paraphrase", PARAPHRASES), ("outside the catalog", UNRELATED)):
        for prompt in prompts:
            category, similarity = nearest_category(prompt)
            served = f"`{category.id}`" if similarity >= MATCH_THRESHOLD else "free prompt"
            lines.append(f"| {prompt} | {kind} | `{category.id}` | {similarity:.3f} | {served} |")
    return "\n".join(lines) + "\n"
