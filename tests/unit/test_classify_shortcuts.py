"""The classifier's shortcuts decide exactly as its lexer and rules would, only sooner."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rwsplit.classify import (
    _READ_STARTS,
    _READ_TRIGGERS,
    _SEQUENCE_ATTRS,
    _classify_lexed,
    _classify_uncached,
    _decide,
)

from rwsplit import Flag, Target
from rwsplit.routing._lexer import COARSE_KEEP, LexError, coarse_lex


def agrees(sql: str) -> None:
    fast, slow = _classify_uncached(sql), _classify_lexed(sql)
    if slow.reason.startswith(("unparseable", "incomplete")):
        # A write is decided from its verb, without reading the rest: text the lexer cannot
        # follow is still a write (the server refuses it anyway). Nothing else may differ.
        assert fast.target is slow.target is Target.PRIMARY, sql
        assert fast == slow or fast.flags & Flag.WRITE, (sql, fast)
        return
    assert fast == slow, sql


# Fragments chosen to sit on every edge the shortcuts take: trigger words inside strings and
# longer words, calls qualified or quoted, comments, ";" in strings and outside, "--" before
# characters that do or do not start a comment, non-ASCII characters.
FRAGMENTS = [
    "SELECT", "select", "WITH", "x AS (SELECT 1)", "INSERT INTO t VALUES", "UPDATE t SET a =",
    "DELETE FROM t", "REPLACE", "CALL p()", "FROM", "t", "WHERE", "a", "=", "1", "1.5e3",
    "0x1F", "'str'", "'it''s'", "'a;b'", "'for update'", '"dq"', "`id`", "`f`(", "db.fn(",
    "db . fn (", "t.update", "s.nextval", "COUNT(", "COUNT (", "NOW()", "FORMAT(", "my_udf(",
    "GET_LOCK('x', 1)", "FOUND_ROWS()", "LAST_INSERT_ID()", "(", ")", ",", ".", "*", "+", "-",
    "--", "-- c\n", "--\u00a0", "#c\n", "/* c */", "/*!50000 UPDATE t SET a = 1 */", "/*+ h */",
    "/* rwsplit:replica */", "-- maxscale route to slave\n", ";", "; SELECT 1",
    "; SET @x = 1", "; SELECT GET_LOCK('a', 1)", "FOR", "UPDATE", "FOR UPDATE", "updated_at",
    "INTO", "@x", "@'q'", "@", "@@warning_count", "@@identity", ":=", ":", "?", "%(p)s",
    "IN", "('a', 'b')", "NEXT VALUE FOR s", "LOCK IN SHARE MODE", "information_schema",
    "\u00a0", "é", "\x00", "\x01", "\t", "\n", " ", "'", '"', "`", "\\", "N'x'", "1abc(",
    "`t`.`c`", "x.y.z", "a.b.c.d.e", "t . `update`", "1.5", ".5", "t.for", "AS", "SHARE",
]  # fmt: skip

texts = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=25).map(" ".join)
openings = st.sampled_from(
    ["SELECT ", "WITH ", "(SELECT ", "INSERT INTO t VALUES ", "UPDATE t SET a = 1 ", "DELETE "]
)
edge_comments = st.sampled_from(
    ["", "", "/* tag */ ", "-- c\n", "# c\n", "/*+ h */ ", "/*!50000 */ ", "/* a */ /* b */\n"]
)


@settings(max_examples=800)
@given(st.tuples(edge_comments, openings, texts, edge_comments).map("".join))
@example("SELECT 1 --\u00a0 ; DELETE FROM t")
@example("INSERT INTO t VALUES ('a;b'); SELECT GET_LOCK('a', 1)")
@example("INSERT INTO t VALUES (1); SELECT '")
@example("SELECT DATE_FORMAT(d, '%Y') FROM t")
@example("SELECT a FROM t WHERE updated_at > NOW()")
@example("/* app */ SELECT a FROM t WHERE b = 1 -- lookup")
@example("SELECT 1 --- x")
@example("SELECT 2 //* c */")
@example("/* c */ INSERT INTO t VALUES (1) -- x")
@example("SELECT my_udf /* c */ (1)")
@example("SELECT `f` -- c\n(1)")
@example("SELECT 1 /* ' */, 'x")
@example("SELECT 1 -- it's\n FROM t")
@example("SELECT a /* x */ FROM t # y")
@example("SELECT -/**/-1")
def test_shortcuts_agree_with_the_rules(sql: str) -> None:
    agrees(sql)


@settings(max_examples=300)
@given(st.text(max_size=60))
@example("/*M!")  # an executable comment left open after a write verb (found by Hypothesis)
def test_shortcuts_agree_on_arbitrary_text(tail: str) -> None:
    for sql in (f"SELECT {tail}", f"INSERT {tail}", f"UPDATE t SET a = 1; {tail}"):
        agrees(sql)


def test_coarse_tokens_keep_every_word_the_read_rules_look_at() -> None:
    keep = set(COARSE_KEEP)
    assert keep >= _READ_TRIGGERS
    assert keep >= _SEQUENCE_ATTRS
    assert keep >= _READ_STARTS


ascii_fragments = [f for f in FRAGMENTS if f.isascii() and f not in ("*/", ";")]
comment_free = (
    st.tuples(
        st.sampled_from(["SELECT ", "WITH ", "(SELECT ", "((SELECT "]),
        st.lists(st.sampled_from(ascii_fragments), min_size=1, max_size=30).map(" ".join),
    )
    .map("".join)
    .filter(lambda s: not any(m in s for m in ("/*", "*/", "--", "#", ";")))
)


@settings(max_examples=1000)
@given(comment_free)
@example("SELECT a, b FROM t WHERE c = 1 FOR SHARE")
@example("SELECT db . fn (1), t.update, s.nextval FROM t")
@example("WITH c (a, b) AS (SELECT 1, 2) SELECT * FROM c LOCK IN SHARE MODE")
@example("SELECT x INTO OUTFILE 'f' FROM t")
@example("SELECT `f` (1), @x := 1, @@identity")
def test_coarse_tokens_decide_as_the_lexer_does(sql: str) -> None:
    # Used for long reads only (classify._COARSE_MIN_CHARS); checked here on short ones.
    try:
        toks = coarse_lex(sql)
    except LexError:
        assert _classify_lexed(sql).reason.startswith("unparseable"), sql
        return
    assert _decide(toks, None) == _classify_lexed(sql), sql
