"""The classifier's reading of the text, checked against the server's own (issue 9 gaps).

Each test asks the sandbox primary how it reads a text (what a query returns, what it leaves
behind), and checks that the classifier routes the text as that reading requires.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pymysql
import pytest

from rwsplit import Flag, Target, classify
from rwsplit.sandbox import Sandbox

pytestmark = pytest.mark.integration


def first_value(conn: pymysql.Connection[Any], sql: str) -> object:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return row[0] if row else None


def server_reads_a_comment(conn: pymysql.Connection[Any], after: str) -> bool:
    """Does the server take ``--`` + *after* for the start of a comment?"""
    try:
        value = first_value(conn, f"SELECT 1 --{after}2")
    except pymysql.err.MySQLError:
        return False  # not a comment: what follows was read as code, and is not valid
    return value == 1  # a comment hides "2"; as code it would be 1 - -2 = 3


@pytest.mark.parametrize(
    "after",
    [" ", "\t", "\r", "\x01", "\x1f", "\x7f", "\u00a0", "\u2003", "\u0085", "x", "é", "+"],
    ids=repr,
)
def test_double_dash_is_a_comment_exactly_when_the_server_says(
    sandbox: Sandbox, after: str
) -> None:
    with contextlib.closing(sandbox.primary.connect()) as conn:
        comment = server_reads_a_comment(conn, after)
    c = classify(f"SELECT 1 --{after} FOR UPDATE")
    # Not a comment: FOR UPDATE is code, a locking read for the primary.
    assert (c.target is Target.REPLICA) == comment, (after, comment, c)


@pytest.mark.parametrize(
    "marker", ["/*!", "/*!40101", "/*!50000", "/*!80000", "/*!99999", "/*M!", "/*M!100100"]
)
def test_an_executable_comment_the_server_runs_is_classified_as_run(
    sandbox: Sandbox, marker: str
) -> None:
    with contextlib.closing(sandbox.primary.connect()) as conn:
        ran = first_value(conn, f"SELECT 1 {marker} + 1 */") == 2
    if ran:
        c = classify(f"SELECT a FROM t {marker} FOR UPDATE */")
        assert c.target is Target.PRIMARY
        assert c.flags & Flag.LOCKING_READ


def test_a_lower_case_m_comment_is_a_plain_comment(sandbox: Sandbox) -> None:
    with contextlib.closing(sandbox.primary.connect()) as conn:
        assert first_value(conn, "SELECT 1 /*m! + 1 */") == 1
    assert classify("SELECT a FROM t /*m! FOR UPDATE */").target is Target.REPLICA


def test_show_where_evaluates_its_expression_with_side_effects(sandbox: Sandbox) -> None:
    sql = "SHOW TABLES WHERE GET_LOCK('rwsplit_show_where', 0)"
    with (
        contextlib.closing(sandbox.primary.connect(database="mysql")) as holder,
        contextlib.closing(sandbox.primary.connect()) as other,
    ):
        with holder.cursor() as cur:
            cur.execute(sql)
            cur.fetchall()
        # The lock now belongs to the connection that ran the SHOW.
        assert first_value(other, "SELECT IS_USED_LOCK('rwsplit_show_where')") == first_value(
            holder, "SELECT CONNECTION_ID()"
        )
        first_value(holder, "SELECT RELEASE_LOCK('rwsplit_show_where')")
    c = classify(sql)
    assert c.target is Target.PRIMARY
    assert c.flags & Flag.PIN
    assert c.resource == "named lock"


@pytest.mark.parametrize("variable", ["@@warning_count", "@@session.error_count"])
def test_diagnostics_variables_belong_to_the_previous_statements_connection(
    sandbox: Sandbox, variable: str
) -> None:
    with (
        contextlib.closing(sandbox.primary.connect()) as conn,
        contextlib.closing(sandbox.primary.connect()) as other,
    ):
        # One warning, or one error (raised, then read back on the same connection).
        with conn.cursor() as cur, contextlib.suppress(pymysql.err.MySQLError):
            cur.execute(
                "SELECT CAST('x' AS SIGNED)" if "warning" in variable else "SELECT * FROM nope"
            )
        assert first_value(conn, f"SELECT {variable}") == 1
        assert first_value(other, f"SELECT {variable}") == 0  # another connection: nothing
    assert classify(f"SELECT {variable}").target is Target.LAST
