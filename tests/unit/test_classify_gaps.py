"""Classifier gaps of issue 9: SHOW's expressions, what ``--`` starts, diagnostics variables."""

from __future__ import annotations

import pytest

from rwsplit import Flag, Target, classify

P, R, L = Target.PRIMARY, Target.REPLICA, Target.LAST


# -- SHOW ... WHERE <expr> / LIKE is an expression like a SELECT's ---------------------------


@pytest.mark.parametrize(
    ("show", "select"),
    [
        ("SHOW TABLES WHERE GET_LOCK('x', 1)", "SELECT 1 WHERE GET_LOCK('x', 1)"),
        ("SHOW STATUS WHERE (@v := 1)", "SELECT 1 WHERE (@v := 1)"),
        ("SHOW VARIABLES WHERE RELEASE_LOCK('x')", "SELECT RELEASE_LOCK('x')"),
        ("SHOW FULL TABLES FROM db WHERE my_udf(1) = 1", "SELECT my_udf(1) = 1"),
        ("SHOW DATABASES WHERE NEXTVAL(s) > 0", "SELECT NEXTVAL(s) > 0"),
        ("SHOW TABLES WHERE LAST_INSERT_ID() > 0", "SELECT LAST_INSERT_ID() > 0"),
        ("show columns from t where field = (select 1 for update)", "SELECT (SELECT 1 FOR UPDATE)"),
        ("SHOW TABLES LIKE 'a' OR GET_LOCK('x', 1)", "SELECT 'a' OR GET_LOCK('x', 1)"),
    ],
)
def test_show_where_is_scanned_like_a_select(show: str, select: str) -> None:
    c, expected = classify(show), classify(select)
    assert c.target is expected.target is P, c.reason
    assert c.flags == expected.flags
    assert c.resource == expected.resource


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW TABLES WHERE Tables_in_test LIKE 'a%'",
        "SHOW STATUS WHERE Variable_name = 'Uptime' AND Value > 0",
        "SHOW VARIABLES LIKE 'max_%'",
        "SHOW TABLES WHERE LOWER(Tables_in_test) IN ('a', 'b')",
    ],
)
def test_show_where_with_a_plain_expression_stays_a_read(sql: str) -> None:
    assert classify(sql).target is R, classify(sql).reason


def test_show_where_taking_a_lock_pins() -> None:
    c = classify("SHOW TABLES WHERE GET_LOCK('x', 1)")
    assert c.flags & Flag.PIN
    assert c.resource == "named lock"
    assert classify("SHOW STATUS WHERE (@v := 1)").flags & Flag.SESSION_STATE


# -- "--" starts a comment only before a space or control character ---------------------------


@pytest.mark.parametrize(
    "after",
    ["\u00a0", "\u2003", "\u3000", "\u0085", "\u2028", "x", "1", "é"],
    ids=["nbsp", "em-space", "ideographic", "nel", "line-sep", "letter", "digit", "e-acute"],
)
def test_double_dash_before_other_characters_is_not_a_comment(after: str) -> None:
    # The server reads "--" + this character as two minus signs: what follows is code.
    sql = f"SELECT a FROM t WHERE b = 1 --{after} FOR UPDATE"
    c = classify(sql)
    assert c.target is P, c.reason
    hidden = classify(f"SELECT 1 --{after} ; DELETE FROM t")
    assert hidden.target is P
    assert hidden.flags & Flag.WRITE


@pytest.mark.parametrize("after", [" ", "\t", "\r", "\x0b", "\x0c", "\x01", "\x1f", "\x7f"])
def test_double_dash_before_space_or_control_is_a_comment(after: str) -> None:
    # The comment runs to the end of the line (a CR does not end it).
    assert classify(f"SELECT a FROM t --{after}FOR UPDATE").target is R
    assert classify(f"SELECT a FROM t --{after}x\nFOR UPDATE").target is P
    assert classify("SELECT a FROM t --").target is R


def test_a_third_dash_starts_the_comment_one_character_later() -> None:
    # "---" + space: "-" then the comment "-- " (as the server reads it).
    assert classify("SELECT 1 --- ; DELETE FROM t").target is R
    assert classify("SELECT 1 ---x ; DELETE FROM t").target is P


def test_non_ascii_space_between_words_is_not_whitespace() -> None:
    # U+00A0 is an identifier character to the server (any byte >= 0x80 is): never a separator
    # that would let the classifier see a different statement.
    assert classify("SELECT\u00a01").target is P
    assert classify("UPDATE\u00a0t SET a = 1").target is P


# -- @@warning_count / @@error_count read the previous statement -------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT @@warning_count",
        "SELECT @@error_count",
        "select @@WARNING_COUNT",
        "SELECT @@session.warning_count",
        "SELECT @@local.error_count",
        "SELECT @@warning_count AS w, @@error_count AS e",
    ],
)
def test_diagnostics_variables_go_to_the_last_connection(sql: str) -> None:
    assert classify(sql).target is L, classify(sql).reason


def test_a_primary_finding_after_a_last_one_wins() -> None:
    # The previous statement's connection may be a replica: a lock must still go to the primary.
    c = classify("SELECT FOUND_ROWS(), GET_LOCK('x', 1)")
    assert c.target is P
    assert c.flags & Flag.PIN
    assert classify("SELECT @@warning_count, LAST_INSERT_ID()").target is P


# -- executable comments the server may skip ---------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        # Skipped by MariaDB (version too new): the ALTER runs, and a SELECT prefix hid it.
        "/*!99999 SELECT 1 FROM t WHERE x IN */ ALTER TABLE t ADD c INT",
        # Skipped: the quote inside does not open a string, so the UPDATE is a statement.
        "SELECT 1 /*!99999 ' */; UPDATE t SET a = 1; SELECT ' */",
        # Run by MySQL 8, skipped by MariaDB (MySQL 5.7+ range): a locking read on MySQL.
        "SELECT a FROM t /*!80000 FOR UPDATE */",
        # MariaDB runs it, MySQL does not.
        "/*M!100100 UPDATE t SET a = 0 */",
        "SELECT 1 /*M! , GET_LOCK('x', 1) */",
        # A nested comment: where the server ends the outer one is not modelled.
        "SELECT 1 /*!99999 /* x */ , 2 */",
    ],
)
def test_executable_comments_that_may_be_skipped_are_read_both_ways(sql: str) -> None:
    assert classify(sql).target is P, classify(sql).reason


def test_side_effects_of_both_readings_are_kept() -> None:
    assert classify("SELECT a FROM t /*!80000 FOR UPDATE */").flags & Flag.LOCKING_READ
    assert classify("SELECT 1 /*M! , GET_LOCK('x', 1) */").flags & Flag.PIN
    # Run, the comment holds one string; skipped, the text after it is two more statements.
    c = classify("SELECT 1 /*!99999 ' */; UPDATE t SET a = 1; SELECT '' -- ' */")
    assert c.flags & Flag.WRITE
    assert c.flags & Flag.MULTI_STATEMENT


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT /*!40001 SQL_NO_CACHE */ * FROM t",  # below 50700: every server runs it
        "SELECT 1 /*!80000 , 2 */",  # a plain read whether it runs or not
        "SELECT a FROM t /*M!100100 WHERE a > 1 */",
        "/*m! UPDATE t SET a = 1 */ SELECT 1",  # lower-case m: a plain comment to the server
    ],
)
def test_executable_comments_that_read_either_way_stay_reads(sql: str) -> None:
    assert classify(sql).target is R, classify(sql).reason
