"""The classification cache is bounded in bytes, whatever the size of the statements."""

from __future__ import annotations

import sys

import pytest
from rwsplit.classify import CACHE_MAX_BYTES, CACHE_MAX_KEY_CHARS, _classify_text

from rwsplit import classify
from rwsplit.routing._textcache import ENTRY_OVERHEAD, TextCache


def make_cache(max_bytes: int = 10_000, max_key_chars: int = 100) -> TextCache[str]:
    return TextCache(
        str.upper, weigh=sys.getsizeof, max_bytes=max_bytes, max_key_chars=max_key_chars
    )


def test_bytes_are_the_keys_values_and_overhead() -> None:
    cache = make_cache()
    texts = ["select 1", "select 22", "x" * 100]
    for t in texts:
        assert cache(t) == t.upper()
    expected = sum(sys.getsizeof(t) + sys.getsizeof(t.upper()) + ENTRY_OVERHEAD for t in texts)
    info = cache.info()
    assert (info.entries, info.bytes) == (3, expected)


def test_a_hit_adds_nothing() -> None:
    cache = make_cache()
    cache("select 1")
    before = cache.info()
    assert cache("select 1") == "SELECT 1"
    assert cache.info() == before


def test_long_texts_are_keyed_by_a_digest() -> None:
    cache = TextCache(len, weigh=lambda _: 0, max_bytes=10_000, max_key_chars=100)
    long_text = "y" * 50_000
    assert cache(long_text) == 50_000
    # A 16-byte digest key: the entry costs far less than the text.
    assert cache.info().bytes == sys.getsizeof(b"x" * 16) + ENTRY_OVERHEAD
    assert cache(long_text) == 50_000
    assert cache("y" * 49_999 + "z") == 50_000  # a different text is a different entry
    assert cache.info().entries == 2


def test_total_stays_under_the_limit_and_the_oldest_go_first() -> None:
    cache = make_cache(max_bytes=5_000)
    cache("keep me")
    for i in range(200):
        cache(f"statement number {i}")
        cache("keep me")  # used again: the least recently used entries go, not this one
        assert cache.info().bytes <= 5_000
    assert "keep me" in cache._entries
    assert "statement number 0" not in cache._entries
    assert cache.info().bytes == sum(
        sys.getsizeof(k) + sys.getsizeof(v) + ENTRY_OVERHEAD for k, v in cache._entries.items()
    )


def test_a_value_bigger_than_the_whole_cache_is_not_kept() -> None:
    cache = TextCache(lambda t: t * 5000, weigh=sys.getsizeof, max_bytes=5_000, max_key_chars=100)
    assert cache("ab") == "ab" * 5000
    assert cache.info().entries == 0


def test_clear() -> None:
    cache = make_cache()
    cache("a")
    cache.clear()
    assert cache.info()[:2] == (0, 0)


@pytest.fixture
def empty_classify_cache() -> None:
    _classify_text.clear()


@pytest.mark.usefixtures("empty_classify_cache")
def test_classify_caches_big_statements_by_digest() -> None:
    body = ", ".join(str(k) for k in range(20_000))  # ~120 KB per statement
    for i in range(40):
        classify(f"SELECT * FROM t WHERE k = {i} AND id IN ({body})")
        classify(f"INSERT INTO t (k, v) VALUES ({i}, '{body}')")
    info = _classify_text.info()
    assert info.entries == 80
    assert info.bytes < 80 * 1_000  # not 80 x 120 KB
    assert info.max_bytes == CACHE_MAX_BYTES
    assert info.max_key_chars == CACHE_MAX_KEY_CHARS


@pytest.mark.usefixtures("empty_classify_cache")
def test_classify_cache_never_passes_its_byte_limit() -> None:
    per_entry = sys.getsizeof("s" * CACHE_MAX_KEY_CHARS) + ENTRY_OVERHEAD
    count = CACHE_MAX_BYTES // per_entry + 50  # more than fit
    filler = "s" * (CACHE_MAX_KEY_CHARS - 40)
    for i in range(count):
        classify(f"SELECT {i} /* {filler} */")
    info = _classify_text.info()
    assert info.bytes <= CACHE_MAX_BYTES
    assert info.entries < count
