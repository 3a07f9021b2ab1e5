"""A least-recently-used cache keyed by statement text, bounded in bytes rather than entries.

Statements come in every size: a cache bounded by entry count holds 8,192 one-line SELECTs in
a megabyte, or 8,192 bulk INSERTs of a megabyte each. This one counts what it holds (the key,
the value's own size as the caller weighs it, and a fixed per-entry overhead) and drops the
least recently used entries when the total passes ``max_bytes``. Texts longer than
``max_key_chars`` are keyed by a 16-byte BLAKE2b digest instead of the text itself, so a big
statement costs about 250 bytes in the cache however big it is (a 128-bit digest: a collision
is not a practical concern).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

V = TypeVar("V")

# Per entry, beyond the key and the value's weight: the OrderedDict's hash slot and link node
# and the value object itself (measured on CPython 3.11, rounded up).
ENTRY_OVERHEAD = 200


class CacheInfo(NamedTuple):
    """What a :class:`TextCache` holds: entries, accounted bytes, and its limits."""

    entries: int
    bytes: int
    max_bytes: int
    max_key_chars: int


class TextCache(Generic[V]):
    """Memoize ``fn(text)``; the total size of what is held stays under *max_bytes*.

    Thread-safe: lookups take no lock (a lookup racing an eviction is a miss); insertions and
    evictions take one.
    """

    def __init__(
        self,
        fn: Callable[[str], V],
        *,
        weigh: Callable[[V], int],
        max_bytes: int,
        max_key_chars: int,
    ) -> None:
        self.__wrapped__ = fn
        self._weigh = weigh
        self._max_bytes = max_bytes
        self._max_key_chars = max_key_chars
        self._entries: OrderedDict[str | bytes, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def _key(self, text: str) -> str | bytes:
        if len(text) <= self._max_key_chars:
            return text
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def _size(self, key: str | bytes, value: V) -> int:
        return sys.getsizeof(key) + self._weigh(value) + ENTRY_OVERHEAD

    def __call__(self, text: str) -> V:
        key = self._key(text)
        entries = self._entries
        found = entries.get(key)
        if found is not None:
            try:  # noqa: SIM105 (the hit path: contextlib.suppress costs more than the lookup)
                entries.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile: still a valid answer
                pass
            return found
        value = self.__wrapped__(text)
        size = self._size(key, value)
        if size > self._max_bytes:
            return value
        with self._lock:
            if key not in entries:
                entries[key] = value
                self._bytes += size
                while self._bytes > self._max_bytes:
                    old_key, old_value = entries.popitem(last=False)
                    self._bytes -= self._size(old_key, old_value)
        return value

    def info(self) -> CacheInfo:
        """Entries and accounted bytes now, with the limits."""
        return CacheInfo(len(self._entries), self._bytes, self._max_bytes, self._max_key_chars)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
