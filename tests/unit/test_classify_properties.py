"""Property tests of the classifier: it never raises, and never sends a write to a replica."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from rwsplit import Target, classify

WRITE_VERBS = [
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "RENAME",
    "GRANT",
    "REVOKE",
    "LOAD",
    "CALL",
    "OPTIMIZE",
    "REPAIR",
    "HANDLER",
    "LOCK",
    "UNLOCK",
    "FLUSH",
    "PURGE",
    "XA",
    "EXECUTE",
    "PREPARE",
    "DO",
    "KILL",
]

# SQL-flavoured fragments, so that generated text reaches deep into the rules.
FRAGMENTS = [
    "SELECT", "FROM", "WHERE", "FOR", "UPDATE", "SHARE", "LOCK", "IN", "MODE", "INTO", "@x",
    ":=", "@@identity", "(", ")", ",", ";", "'", '"', "`", "/*", "*/", "/*!50000", "/*M!",
    "/*+", "-- ", "#", "\n", " ", "WITH", "AS", "NEXT", "VALUE", "GET_LOCK", "my_udf", "t.x",
    ".", "SET", "autocommit", "=", "0", "1", "START", "TRANSACTION", "READ", "ONLY", "SHOW",
    "WARNINGS", "EXPLAIN", "ANALYZE", "TABLE", "VALUES", "ROW", "UNION", "rwsplit:replica",
    "maxscale route to slave", "\\", "''", "x'00'", "0x1F", "1e5", "NEXTVAL", "HANDLER",
    "DESCRIBE", "HELP", "USE", "BEGIN", "COMMIT", "*", "%", "?", ":name", "\x00", "é",
]  # fmt: skip

# Verbs a replica may get (SET only as SET STATEMENT ... FOR <read>, START only as START
# TRANSACTION READ ONLY).
READ_VERBS = {"SELECT", "WITH", "TABLE", "VALUES", "SHOW", "DESCRIBE", "DESC", "HELP", "EXPLAIN"}
READ_VERBS |= {"SET", "START"}

sqlish = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(" ".join)


@settings(max_examples=400)
@given(st.text())
def test_arbitrary_text_never_raises(sql: str) -> None:
    c = classify(sql)
    assert c.target in Target
    assert c.reason


@settings(max_examples=400)
@given(sqlish)
def test_sql_like_text_never_raises(sql: str) -> None:
    c = classify(sql)
    assert c.target in Target
    assert c.reason


comment_body = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"), max_size=30
)
block_comment = comment_body.filter(lambda s: "*/" not in s and not s.startswith(("!", "M!"))).map(
    lambda s: f"/*{s}*/"
)
line_comment = st.one_of(
    comment_body.map(lambda s: f"-- {s}\n"),
    comment_body.map(lambda s: f"#{s}\n"),
)
hint_comment = st.sampled_from(
    [
        "/* rwsplit:replica */",
        "/*rwsplit:slave*/",
        "-- maxscale route to slave\n",
        "# maxscale route to slave\n",
        "/* maxscale route to last */",
    ]
)
comments = st.lists(
    st.one_of(block_comment, line_comment, hint_comment, st.sampled_from([" ", "\n", "\t"])),
    max_size=5,
).map("".join)


def random_case(verb: str, flips: list[bool]) -> str:
    return "".join(
        c.lower() if f else c for c, f in zip(verb, flips + [False] * len(verb), strict=False)
    )


@settings(max_examples=600)
@given(
    comments,
    st.sampled_from(WRITE_VERBS),
    st.lists(st.booleans(), max_size=10),
    st.sampled_from([" ", "\n", "\t", "(", "/**/", "/*! */"]),
    st.one_of(sqlish, st.text(max_size=40)),
)
def test_data_or_schema_changing_verbs_never_go_to_a_replica(
    prefix: str, verb: str, flips: list[bool], sep: str, tail: str
) -> None:
    sql = f"{prefix}{random_case(verb, flips)}{sep}{tail}"
    c = classify(sql)
    assert c.target is Target.PRIMARY, (sql, c)


# Openings that make many generated statements plain reads (so the property below is
# exercised, not vacuous), mixed with comments that hide or reveal a write verb.
OPENINGS = [
    "", "SELECT ", "select a from t where ", "(SELECT ", "/* c */ SELECT ", "-- c\nSELECT ",
    "# c\nSHOW ", "WITH x AS (SELECT 1) ", "/*!50000 UPDATE */ ", "/*M! DELETE */ SELECT ",
    "/* UPDATE */ SELECT ", "/*+ hint */ SELECT ", "EXPLAIN SELECT ", "DESC ",
]  # fmt: skip


@settings(max_examples=600)
@given(st.tuples(st.sampled_from(OPENINGS), sqlish).map("".join))
def test_only_read_verbs_reach_a_replica(sql: str) -> None:
    # Whatever the text, a replica only ever gets a statement whose first word, after
    # comments and opening parentheses, is a read verb.
    c = classify(sql)
    if c.target is Target.REPLICA:
        assert first_word(sql) in READ_VERBS, (sql, c)


_LEADING = re.compile(
    r"""\s+ | \( | /\*M?!\d* | \*/ | /\*(?![!+]|M!).*?\*/ | /\*\+.*?\*/
        | --(?=\s|$)[^\n]* | \#[^\n]*""",
    re.VERBOSE | re.DOTALL,
)


def first_word(sql: str) -> str:
    """The first word of *sql* after comments, executable-comment markers and parentheses.

    Written independently of the classifier's lexer, so the property checks it.
    """
    pos = 0
    while (m := _LEADING.match(sql, pos)) is not None and m.end() > pos:
        pos = m.end()
    word = re.match(r"[A-Za-z_]+", sql[pos:])
    return word.group().upper() if word else ""


def test_first_word_helper() -> None:
    assert first_word("/* x */ -- y\n ( (select 1))") == "SELECT"
    assert first_word("/*!50000 UPDATE t SET a=1 */") == "UPDATE"
    assert first_word("# c\n/*+ hint */ show tables") == "SHOW"
