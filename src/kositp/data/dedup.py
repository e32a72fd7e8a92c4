"""Exact and near-duplicate detection, deterministic and streaming (first occurrence wins).

Exact: a key over the normalised text (NFC, case-folded, whitespace and punctuation removed).
Near: MinHash over character 5-grams with LSH banding; two texts whose estimated Jaccard
similarity reaches the threshold are duplicates. Shingles are hashed with crc32, not Python's
salted hash(), so results do not change between runs.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

from kositp.data.text import dedup_key

_PRIME = (1 << 61) - 1


class Deduplicator:
    def __init__(self, near: bool = True, threshold: float = 0.85, ngram: int = 5, num_perm: int = 64,
                 bands: int = 16, seed: int = 0):
        if num_perm % bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.near, self.threshold, self.ngram, self.bands = near, threshold, ngram, bands
        self.rows = num_perm // bands
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, _PRIME, size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, _PRIME, size=num_perm, dtype=np.uint64)
        self._exact: set[bytes] = set()
        self._buckets: dict[bytes, list[int]] = {}
        self._signatures: list[np.ndarray] = []

    def _signature(self, text: str) -> np.ndarray | None:
        if len(text) < self.ngram:
            return None
        shingles = {text[i: i + self.ngram] for i in range(len(text) - self.ngram + 1)}
        hashes = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in shingles), dtype=np.uint64, count=len(shingles))
        # (a*x + b) mod p with 64-bit wrap-around is fine for MinHash: it is still a fixed random map
        return ((hashes[:, None] * self._a[None, :] + self._b[None, :]) % np.uint64(_PRIME)).min(axis=0)

    def check(self, group: str, exact_text: str, near_text: str | None = None) -> str | None:
        """None if new (and remember it), else "exact_duplicate" or "near_duplicate"."""
        key = hashlib.blake2b(f"{group}\x1f{dedup_key(exact_text)}".encode(), digest_size=16).digest()
        if key in self._exact:
            return "exact_duplicate"
        self._exact.add(key)
        if not self.near or near_text is None:
            return None
        signature = self._signature(dedup_key(near_text))
        if signature is None:
            return None
        band_keys = [
            hashlib.blake2b(f"{group}\x1f{b}".encode() + signature[b * self.rows:(b + 1) * self.rows].tobytes(),
                            digest_size=12).digest()
            for b in range(self.bands)
        ]
        seen: set[int] = set()
        for band_key in band_keys:
            for other in self._buckets.get(band_key, ()):
                if other in seen:
                    continue
                seen.add(other)
                if float(np.mean(self._signatures[other] == signature)) >= self.threshold:
                    return "near_duplicate"
        index = len(self._signatures)
        self._signatures.append(signature)
        for band_key in band_keys:
            self._buckets.setdefault(band_key, []).append(index)
        return None
