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

    from guardvl_sdk.verdict import Verdict

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
    text, the response, and each image's decoded pixels, so a hit is exactly the verdict the guard
    would give again under greedy decoding. Only ``ok`` verdicts are stored: a failure is retried,
    never replayed.

    Args:
        maxsize: Most verdicts kept; the least recently used is dropped first.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: OrderedDict[str, Verdict] = OrderedDict()
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
        images: Sequence[Image.Image],
    ) -> str:
        """The cache key of one check (a SHA-256 hex digest)."""
        digest = hashlib.sha256()
        for part in (model, policy, text, "\x00none" if response is None else response):
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
        for image in images:
            digest.update(f"{image.mode}:{image.width}x{image.height}".encode())
            digest.update(hashlib.sha256(image.tobytes()).digest())
        return digest.hexdigest()

    def get(self, key: str) -> Verdict | None:
        """The cached verdict (marked ``cached=True``), or None; counts a hit or a miss."""
        with self._lock:
            verdict = self._items.get(key)
            if verdict is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
        return verdict.model_copy(update={"cached": True, "latency_ms": 0.0})

    def put(self, key: str, verdict: Verdict) -> None:
        """Store an ``ok`` verdict; anything else is ignored."""
        if verdict.status.value != "ok":
            return
        with self._lock:
            self._items[key] = verdict
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
