"""The comment-free fast lexer gives exactly the tokens (and errors) of the general one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rwsplit.routing import _lexer
from rwsplit.routing._lexer import LexError, Tok, lex

from .test_classify_properties import FRAGMENTS


def _general(sql: str) -> list[Tok]:
    """lex() without its comment-free fast path: every token through _TOKEN_RE."""
    toks = []
    for m in _lexer._TOKEN_RE.finditer(sql):
        index = m.lastindex or 0
        kind = _lexer._KIND_BY_INDEX_T[index]
        if kind == _lexer._BAD:
            raise LexError(f"offset {m.start(index)}")
        if kind < 0:
            continue
        text = m.group(index)
        toks.append(Tok(kind, text, text.upper() if kind < _lexer._UPPER_BELOW else text))
    return toks


def _same(sql: str) -> None:
    if "/*" in sql or "*/" in sql or "#" in sql or "--" in sql:
        return  # not the fast path's text
    try:
        expected = _general(sql)
    except LexError:
        with pytest.raises(LexError):
            lex(sql)
        assert _lexer._lex_plain(sql) is None
        return
    got = _lexer._lex_plain(sql)
    assert got == expected
    assert [type(t) for t in got] == [Tok] * len(got)
    assert lex(sql).toks == expected


CASES = [
    "SELECT .5, a.b, 1e5, 1.5e-3, 0x1F, 0b101, 1abc, 12ab.c, $a, ünï, x\xa0y",
    "SELECT @x, @'q', @`b`, @@session.autocommit, @@GLOBAL.max_connections, @@x",
    "SELECT N'x', n'y', _utf8'z', `q``r`, \"d\"\"e\", 'it''s', 'a\\'b'",
    "SELECT a FROM t WHERE a IN (1, 2, 3) AND b IN ('a', \"b\") AND c IN (1.5 , .5,'x')",
    "SELECT a:=1, b||c, d&&e, {x}, [y], \\ ; ? ~ ^ ! % / * + - = < > << >> <= >= <> != -> ->> :",
    "SELECT 1 - -2 <=> 3 . 5",
    "SELECT 'open",
    "SELECT `open",
    "SELECT \x01",
    "",
    "   ",
]


@pytest.mark.parametrize("sql", CASES)
def test_fast_lexer_cases(sql: str) -> None:
    _same(sql)


@settings(max_examples=400)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(" ".join))
def test_fast_lexer_on_sql_fragments(sql: str) -> None:
    _same(sql)


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_fast_lexer_on_arbitrary_text(sql: str) -> None:
    _same(sql)
