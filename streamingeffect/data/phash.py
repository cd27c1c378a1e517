"""Perceptual hashes of pictures and videos: the same picture under another name, re-encoded, resized or
slightly recoloured hashes within a few bits of the original.

A hash is the classic 64-bit DCT hash: the 8x8 lowest frequencies of the 32x32 grayscale picture,
each bit saying whether a coefficient is above their median. A video is hashed on frames spread
evenly over it; nearly flat frames (fades, black frames) are left out, since every flat frame
hashes alike.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamingeffect.io import is_image_file, load_image, probe, read_frames

HASH_FRAMES = 8  # frames hashed per video
MATCH_BITS = 8  # two hashes this close (of 64 bits) show the same picture
MIN_CONTRAST = 6.0  # grayscale std (0..255) below which a frame is too flat to hash


def image_hash(image: np.ndarray) -> int:
    """[H, W, 3] or [H, W] uint8 -> 64-bit perceptual hash."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def is_flat(image: np.ndarray) -> bool:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return float(gray.std()) < MIN_CONTRAST


def file_hashes(path: Path, frames: int = HASH_FRAMES) -> list[int]:
    """Hashes of an image file (one) or of ``frames`` frames spread over a video; raises VideoError /
    ImageError when the file cannot be read."""
    if is_image_file(path):
        return [image_hash(load_image(path))]
    count = probe(path).num_frames or frames
    step = max(1, count // frames)
    return [image_hash(f.image) for f in read_frames(path, step=step) if not is_flat(f.image)][: frames + 1]


def to_hex(hashes: list[int]) -> list[str]:
    return [f"{h:016x}" for h in hashes]


def from_hex(hashes: list[str]) -> list[int]:
    return [int(h, 16) for h in hashes]


def matches(candidate: list[int], reference: list[int], bits: int = MATCH_BITS) -> int:
    """How many of ``candidate``'s hashes lie within ``bits`` of some hash in ``reference``."""
    return sum(any(hamming(c, r) <= bits for r in reference) for c in candidate)


def shows_same_footage(candidate: list[int], reference: list[int], bits: int = MATCH_BITS) -> bool:
    """A picture matches one hash; a video matches when a quarter of its hashed frames do (at least
    one), so a single look-alike frame of an unrelated video is not enough."""
    if not candidate:
        return False
    needed = max(1, len(candidate) // 4)
    return matches(candidate, reference, bits) >= needed
