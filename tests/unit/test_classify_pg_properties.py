"""Property tests of the PostgreSQL classifier: it never raises, and what it calls a read is
positively a read — unknown text, garbage and writes never are."""

from __future__ import annotations

import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rwsplit import Flag, Target
from rwsplit.routing._lexer import LPAREN, OP, QUOTED_ID, SEMI, WORD, LexError
from rwsplit.routing._lexer_pg import lex
from rwsplit.routing.classify_pg import (
    KNOWN_OPERATORS,
    PAREN_KEYWORDS,
    READ_ONLY_FUNCTIONS,
    classify_pg,
)

from ..pg_corpus import pg_corpus

FRAGMENTS = [
    "SELECT", "FROM", "WHERE", "FOR", "UPDATE", "NO", "KEY", "SHARE", "INTO", "TEMP", "WITH",
    "AS", "(", ")", ",", ";", "'", '"', "$$", "$a$", "E'", "\\", "/*", "*/", "-- ", "\n", "\r",
    " ", "nextval", "setval", "currval", "pg_advisory_lock", "pg_advisory_xact_lock",
    "pg_notify", "my_fn", "now", "count", "lower", "::", "int", "numeric", "%s", "%(x)s", "$1",
    "===", "->", "+", "-", "*", "=", "t", "t.x", ".", "pg_catalog", "INSERT", "DELETE", "MERGE",
    "VALUES", "TABLE", "SHOW", "EXPLAIN", "ANALYZE", "COPY", "TO", "STDOUT", "STDIN", "BEGIN",
    "READ", "ONLY", "SET", "LOCAL", "LISTEN", "DECLARE", "CURSOR", "HOLD", "DO", "CALL",
    "rwsplit:replica", "RETURNING", "1", "'x'", "U&'", "\x00", "é", "\u017fum",
]  # fmt: skip
sqlish = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(" ".join)

READ_VERBS = {"SELECT", "WITH", "TABLE", "VALUES", "SHOW", "EXPLAIN", "COPY", "BEGIN", "START"}
WRITE_WORDS = {"INSERT", "UPDATE", "DELETE", "MERGE", "INTO"}
WRITES = [
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "SELECT nextval('s')",
    "SELECT * FROM t FOR UPDATE",
    "SELECT pg_advisory_lock(1)",
    "CREATE TEMP TABLE x (a int)",
    "SELECT my_fn()",
    "NOTIFY c",
    "DO $$ BEGIN END $$",
]


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_never_raises(sql: str) -> None:
    c = classify_pg(sql)
    assert c.target in Target
    assert c.reason


@settings(max_examples=500)
@given(sqlish)
def test_what_is_called_a_read_is_positively_one(sql: str) -> None:
    """Checked independently of the rules: a text classified ``replica`` lexes, starts with a
    read verb, holds one statement, no write word, no locking clause, and calls only known
    read-only built-ins with known operators."""
    c = classify_pg(sql)
    assert c.reason
    if c.target is not Target.REPLICA or c.flags & Flag.HINT:
        return
    try:
        toks = lex(sql).toks
    except LexError:
        try:
            toks = lex(sql, backslash_quotes=True).toks
        except LexError:
            raise AssertionError(f"unlexable text called a read: {sql!r}") from None
    while toks and toks[-1].kind == SEMI:
        toks.pop()
    first = next(t for t in toks if t.kind != LPAREN)
    assert first.kind == WORD and first.up in READ_VERBS, sql
    assert all(t.kind != SEMI for t in toks), sql
    if first.up in ("SHOW", "BEGIN", "START"):
        return
    for i, t in enumerate(toks):
        after = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind == WORD and t.up in WRITE_WORDS and (i == 0 or toks[i - 1].text != "."):
            assert after is not None and after.kind == LPAREN, sql
        if t.kind == WORD and t.up == "FOR":
            assert after is None or after.up not in ("UPDATE", "SHARE", "NO", "KEY"), sql
        if t.kind == OP:
            assert t.text in KNOWN_OPERATORS, sql
        if t.kind == QUOTED_ID and after is not None and after.kind == LPAREN:
            name = t.text.strip('"')
            assert (name.upper() in READ_ONLY_FUNCTIONS and name == name.lower()) or (
                i and toks[i - 1].up == "AS"
            ), sql
        if t.kind == WORD and after is not None and after.kind == LPAREN:
            called = t.up in READ_ONLY_FUNCTIONS or t.up in PAREN_KEYWORDS
            syntax = i > 0 and (toks[i - 1].up == "AS" or toks[i - 1].text == "::")
            cte = any(x.up == "AS" for x in toks[i + 2 :])
            assert called or syntax or cte, sql


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40))
def test_a_statement_that_does_not_start_with_a_read_verb_is_never_a_read(word: str) -> None:
    """Garbage, or any word that is not a read verb, in front of a read: the primary."""
    head = word.split()[0] if word.split() else word
    assume(head.upper().strip("(") not in READ_VERBS and not head.startswith(("/*", "--", "(")))
    assume(not re.match(r"[ \t\n\r\f\v]", word))
    c = classify_pg(f"{word} * FROM t")
    assert c.target is not Target.REPLICA or c.flags & Flag.HINT, (word, c)


@settings(max_examples=300)
@given(st.sampled_from(WRITES), sqlish)
def test_a_write_after_anything_is_never_a_read(write: str, prefix: str) -> None:
    c = classify_pg(f"{prefix}\n; {write}")  # the newline ends a -- comment left open
    assert c.target is not Target.REPLICA, c


@settings(max_examples=200)
@given(st.sampled_from(["DELETE FROM t", "UPDATE t SET a = 1", "INSERT INTO t VALUES (1)"]))
def test_a_data_changing_cte_is_a_write(dml: str) -> None:
    for sql in (
        f"WITH x AS ({dml} RETURNING *) SELECT * FROM x",
        f"WITH a AS (SELECT 1), x AS ({dml} RETURNING *) SELECT * FROM a",
        f"EXPLAIN ANALYZE WITH x AS ({dml} RETURNING *) SELECT * FROM x",
        f"COPY (WITH x AS ({dml} RETURNING *) SELECT * FROM x) TO STDOUT",
    ):
        c = classify_pg(sql)
        assert c.target is Target.PRIMARY and c.flags & Flag.WRITE, (sql, c)


comment = st.sampled_from(["/* c */", "/* a /* b */ c */", "-- c\n", "--c\r", "\n", "\t"])
CORPUS_STATEMENTS = pg_corpus()


@settings(max_examples=300)
@given(st.sampled_from(CORPUS_STATEMENTS), st.lists(comment, min_size=1, max_size=5))
def test_comments_between_tokens_change_nothing(sql: str, comments: list[str]) -> None:
    """The same tokens with comments between them: the same classification."""
    try:
        toks = lex(sql).toks
    except LexError:
        return
    assume(len(toks) > 1)
    parts = []
    for i, tok in enumerate(toks):
        parts.append(tok.text)
        parts.append(comments[i % len(comments)] if i % 2 == 0 else " ")
    commented = "".join(parts)
    before, after = classify_pg(sql), classify_pg(commented)
    assert (before.target, before.flags, before.resource) == (
        after.target,
        after.flags,
        after.resource,
    ), (sql, commented)


@settings(max_examples=300)
@given(st.sampled_from(CORPUS_STATEMENTS))
def test_keywords_are_case_insensitive(sql: str) -> None:
    """Upper-casing every unquoted word (strings and quoted names kept) changes nothing."""
    try:
        toks = lex(sql).toks
    except LexError:
        return
    upper = " ".join(t.up if t.kind == WORD else t.text for t in toks)
    spaced = " ".join(t.text for t in toks)
    a, b = classify_pg(spaced), classify_pg(upper)
    assert (a.target, a.flags) == (b.target, b.flags), (spaced, upper)


plain_fragments = st.sampled_from(
    [
        "SELECT", "a", "t.b", "FROM", "t", "WHERE", "=", "<>", "1", "'x'", "'it''s'", '"Q"',
        '"q"', "(", ")", ",", "count", "now", "lower", "my_fn", "::", "numeric", "AS",
        "->>", "@>", "===", "*", "-", "+-", "%s", "%(x)s", "ARRAY", "[", "]", "IN", "E'x'",
        "pg_catalog", ".", "FORMAT", "INTO", "nextval", "\u017fum", "{", "\x7f", "'", '"',
        "WITH", "c", "VALUES", "TABLE", "UNION", "JOIN", "ON", "\t", "\n", "OPERATOR", "app",
    ]
)  # fmt: skip
plainish = st.lists(plain_fragments, max_size=25).map(" ".join)


@settings(max_examples=500)
@given(st.one_of(plainish, sqlish, st.sampled_from(CORPUS_STATEMENTS)))
def test_the_plain_read_shortcut_agrees_with_the_general_path(sql: str) -> None:
    from rwsplit.routing.classify_pg import _classify_general, _is_plain_read

    if _is_plain_read(sql):
        c = _classify_general(sql)
        assert c.target is Target.REPLICA and not c.flags, (sql, c)


@settings(max_examples=300)
@given(st.one_of(sqlish, st.sampled_from(CORPUS_STATEMENTS)))
def test_the_write_verb_shortcut_agrees_with_the_general_path(sql: str) -> None:
    from rwsplit.routing.classify_pg import _classify_general, _classify_uncached

    fast, general = _classify_uncached(sql), _classify_general(sql)
    if fast.flags & Flag.WRITE and fast.reason.endswith("changes data or schema"):
        assert general.target is Target.PRIMARY, (sql, general)
        # Text that does not lex is a write to the shortcut: the stronger of the two.
        assert general.flags & Flag.WRITE or general.reason.startswith("unparseable"), sql
