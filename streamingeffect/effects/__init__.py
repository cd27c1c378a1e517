"""The procedural effect renderer: effect families, the category catalog and lookup helpers.

Importing this package registers every family in ``FAMILIES``.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache

from streamingeffect.effects.base import FAMILIES, Category, Effect, register

# Imported before ``catalog()`` is defined below: the function then takes the package attribute that the
# submodule import would otherwise set (``streamingeffect.effects.catalog`` is the function, the module
# stays reachable as ``catalog_table`` and in sys.modules).
from streamingeffect.effects import catalog as catalog_table  # isort: skip
from streamingeffect.effects.families import (  # noqa: F401  (importing registers the families)
    background,
    color,
    face,
    glitch,
    outline_glow,
    particles,
    stickers,
    stylize,
    weather,
)

__all__ = [
    "FAMILIES",
    "Category",
    "Effect",
    "UnknownEffectError",
    "catalog",
    "get_category",
    "make_effect",
    "register",
    "search_categories",
]


class UnknownEffectError(ValueError):
    """An effect category id that is not in the catalog."""


@lru_cache(maxsize=1)
def _catalog() -> tuple[Category, ...]:
    return tuple(catalog_table.build_catalog())


@lru_cache(maxsize=1)
def _by_id() -> dict[str, Category]:
    return {c.id: c for c in _catalog()}


def catalog() -> list[Category]:
    """All categories in a stable order (built once, then cached)."""
    return list(_catalog())


def get_category(category_id: str) -> Category:
    """The category with this id; UnknownEffectError (with close matches) if there is none."""
    found = _by_id().get(category_id)
    if found is None:
        close = difflib.get_close_matches(category_id, list(_by_id()), n=5, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else "; `streamingeffect effects list` shows them all"
        )
        raise UnknownEffectError(f"unknown effect category {category_id!r}{hint}")
    return found


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower().replace("_", " ")))


def search_categories(text: str, k: int = 5) -> list[Category]:
    """The ``k`` categories whose ids and descriptions share the most words with ``text``.

    Scores id words double (they are the most specific) and breaks ties by catalog order.
    """
    query = _words(text)
    if not query:
        return []
    scored = []
    for order, c in enumerate(_catalog()):
        id_words = _words(c.id)
        desc_words = set().union(*(_words(d) for d in c.descriptions))
        score = 2 * len(query & id_words) + len(query & desc_words)
        if c.op == "remove" and not query & {"remove", "take", "off", "without", "rid"}:
            score -= 2  # "sunglasses" means adding them unless the text says otherwise
        if score > 0:
            scored.append((-score, order, c))
    return [c for _, _, c in sorted(scored, key=lambda t: (t[0], t[1]))[:k]]


def make_effect(category: Category | str, seed: int, size: tuple[int, int]) -> Effect:
    """A fresh renderer for one clip: ``category`` (or its id), a seed and the frame size (height, width)."""
    if isinstance(category, str):
        category = get_category(category)
    family = FAMILIES.get(category.family)
    if family is None:
        raise UnknownEffectError(f"category {category.id!r} uses unknown family {category.family!r}")
    return family(dict(category.params), seed, size)
