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
    try:
        expected = _general(sql)
    except LexError:
        with pytest.raises(LexError):
            lex(sql)
        return
    assert lex(sql).toks == expected
    if "/*" in sql or "*/" in sql or "#" in sql or "--" in sql:
        return  # lex() strips plain comments first; the rest is below
    got = _lexer._lex_plain(sql)
    assert got == expected
    assert [type(t) for t in got] == [Tok] * len(got)


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
    "/* app:checkout */ SELECT id FROM carts WHERE user_id = 3 FOR UPDATE",
    "SELECT a /* x */.b, 1/**/2, 1--1, 2 -- note\n + 3 # tail",
    "SELECT '/* not a comment */', `#`, \"-- no\" FROM t -- yes",
    "SELECT 1 */",
    "SELECT 1 /* open",
    "SELECT /*+ hint */ 1 /*!50000 , 2 */",
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


read_texts = st.tuples(
    st.sampled_from(["SELECT ", "WITH ", "(SELECT "]),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(" ".join),
).map("".join)


@settings(max_examples=500)
@given(read_texts)
def test_read_scan_shortcut_decides_as_the_token_loop(sql: str) -> None:
    from rwsplit.routing.classify import _scan_read, _scan_read_tokens

    try:
        toks = lex(sql).toks
    except LexError:
        return
    assert _scan_read(toks) == _scan_read_tokens(toks)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*), AVG(x), COALESCE(a, 0) FROM t WHERE id IN (%(a)s, %(b)s)",
        "SELECT db.f(1)",
        "SELECT `f`(1)",
        "SELECT my_udf(1)",
        "SELECT s.nextval",
        "SELECT @@server_id",
        "SELECT @x := 1",
        "SELECT FOUND_ROWS()",
        "SELECT a FROM t FOR UPDATE",
        "SELECT GET_LOCK('x', 0)",
    ],
)
def test_read_scan_shortcut_cases(sql: str) -> None:
    from rwsplit.routing.classify import _scan_read, _scan_read_tokens

    toks = lex(sql).toks
    assert _scan_read(toks) == _scan_read_tokens(toks)
