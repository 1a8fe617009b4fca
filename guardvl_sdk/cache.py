"""An optional in-memory LRU cache of verdicts, keyed by everything that decides a verdict."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from guardvl_sdk.verdict import InspectedPart, Verdict

__all__ = ["CacheStats", "VerdictCache"]


@dataclass(frozen=True)
class CacheStats:
    """Hit and miss counters of a :class:`VerdictCache`."""

    hits: int
    misses: int
    size: int

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0.0 before the first lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class VerdictCache:
    """A thread-safe LRU of verdicts.

    The key covers the model, the policy (its full definition, not just its name), the request
    text, the response, and each image (the guard keys an image given encoded by its encoding and
    the pixel budget, so a hit decodes nothing; any other by its decoded pixels), so a hit is
    exactly the verdict the guard would give again under greedy decoding. With each verdict the
    cache keeps what the check saw of its images (size and pixel hash), for the hit's receipt and
    audit record. Only ``ok`` verdicts are stored: a failure is retried, never replayed.

    Args:
        maxsize: Most verdicts kept; the least recently used is dropped first.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: OrderedDict[str, tuple[Verdict, tuple[InspectedPart, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @staticmethod
    def key(
        *,
        model: str,
        policy: str,
        text: str,
        response: str | None,
        images: Sequence[Image.Image | str],
    ) -> str:
        """The cache key of one check (a SHA-256 hex digest).

        Each image is a PIL image (keyed by its pixels) or a str that already identifies it
        (such as the hash of its encoding).
        """
        digest = hashlib.sha256()
        for part in (model, policy, text, "\x00none" if response is None else response):
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
        for image in images:
            if isinstance(image, str):
                encoded = image.encode()
                digest.update(b"key:" + len(encoded).to_bytes(8, "big") + encoded)
                continue
            digest.update(f"{image.mode}:{image.width}x{image.height}".encode())
            digest.update(hashlib.sha256(image.tobytes()).digest())
        return digest.hexdigest()

    def get(self, key: str) -> Verdict | None:
        """The cached verdict (marked ``cached=True``), or None; counts a hit or a miss."""
        hit = self.lookup(key)
        return None if hit is None else hit[0]

    def lookup(self, key: str) -> tuple[Verdict, tuple[InspectedPart, ...]] | None:
        """The cached verdict (marked ``cached=True``) and what its check saw of its images, or
        None; counts a hit or a miss."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
        verdict, images = item
        return verdict.model_copy(update={"cached": True, "latency_ms": 0.0}), images

    def put(self, key: str, verdict: Verdict, images: Sequence[InspectedPart] = ()) -> None:
        """Store an ``ok`` verdict (with what its check saw of its images); anything else is
        ignored."""
        if verdict.status.value != "ok":
            return
        with self._lock:
            self._items[key] = (verdict, tuple(images))
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    @property
    def stats(self) -> CacheStats:
        """Current counters."""
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._items))

    def clear(self) -> None:
        """Drop every verdict and reset the counters."""
        with self._lock:
            self._items.clear()
            self._hits = self._misses = 0
