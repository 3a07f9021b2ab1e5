"""The causal wait sent with a plain read: which reads carry it, and the SQL it is."""

from __future__ import annotations

import pytest

from rwsplit import RoutingError
from rwsplit._pipelined_wait import checked_text, several_statements
from rwsplit.routing.classify import classify
from rwsplit.routing.router import Route, Router
from rwsplit.servers import MariaDB, MySQL


def _router(defer: bool, waits: list[str]) -> Router:
    def wait(node: str, token: str) -> bool:
        waits.append(token)
        return True

    return Router(lambda: "r1", wait, causal_token="0-1-5", defer_wait=lambda n, t: defer)


def test_a_plain_read_carries_its_wait() -> None:
    waits: list[str] = []
    r = _router(True, waits)
    d = r.route(classify("SELECT * FROM t WHERE id = 1"))
    assert (d.route, d.node, d.wait_token) == (Route.REPLICA, "r1", "0-1-5")
    assert waits == []  # no round trip of its own
    r.wait_passed("r1", "0-1-5")
    assert r.route(classify("SELECT 1")).wait_token is None  # seen applied there


def test_a_missed_wait_sends_the_re_run_to_the_primary_once() -> None:
    r = _router(True, [])
    assert r.route(classify("SELECT 1")).wait_token == "0-1-5"
    r.wait_missed()
    assert r.route(classify("SELECT 1")).route is Route.PRIMARY
    assert not r.sticky and not r.wrote  # a read on the primary, nothing more
    assert r.route(classify("SELECT 1")).route is Route.REPLICA


def test_a_read_only_transaction_waits_once_at_its_start() -> None:
    waits: list[str] = []
    r = _router(True, waits)
    d = r.route(classify("START TRANSACTION READ ONLY"))
    assert d.opens_read_only and d.wait_token is None
    assert waits == ["0-1-5"]


def test_without_defer_the_read_waits_first() -> None:
    waits: list[str] = []
    r = _router(False, waits)
    assert r.route(classify("SELECT 1")).wait_token is None
    assert waits == ["0-1-5"]


def test_wait_sql_fails_rather_than_reads_on_a_timeout() -> None:
    sql = MariaDB().wait_before_read("0-1-5,1-2-9", 0.5)
    assert sql == (
        "SELECT CASE WHEN MASTER_GTID_WAIT('0-1-5,1-2-9', 0.5) = 0 THEN 1 "
        "ELSE (SELECT 1 FROM INFORMATION_SCHEMA.ENGINES) END"
    )
    mysql = MySQL().wait_before_read("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", 0.2)
    assert mysql is not None and "WAIT_FOR_EXECUTED_GTID_SET('3e11fa47" in mysql
    assert "', 1) = 0" in mysql  # whole seconds on MySQL


@pytest.mark.parametrize("token", ["0-1-5'", "0-1-5;", "x\\", "0-1-%s", ""])
def test_no_literal_is_built_from_anything_but_gtid_text(token: str) -> None:
    assert MariaDB().wait_before_read(token, 1) is None


@pytest.mark.parametrize(
    ("sql", "several"),
    [
        ("SELECT 1", False),
        ("SELECT 1;", False),
        ("SELECT 1 ;  \n", False),
        ("SELECT ';' FROM t", False),
        ("SELECT 1 /* ; */ FROM t", False),
        ("SELECT 1 -- ;\n FROM t", False),
        ("SELECT `a;b` FROM t", False),
        ("SELECT 1; SELECT 2", True),
        ("SELECT 1; DROP TABLE t", True),
        ("SELECT 1 /*!; DROP TABLE t */", True),
        ("SELECT 'open; DROP", True),
        ("SELECT 1; -- trailing", True),
    ],
)
def test_several_statements(sql: str, several: bool) -> None:
    assert several_statements(sql) is several
    if several:
        with pytest.raises(RoutingError, match="several statements"):
            checked_text(sql)
    else:
        assert checked_text(sql) == sql
