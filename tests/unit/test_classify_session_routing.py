"""How RoutingSession acts on classifications, without a server (engines never connect)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rwsplit.session import _statement_text, is_read_only_rejection
from sqlalchemy import text

from rwsplit import Cluster, RoutingError, Target

P = "mysql+pymysql://app:s3cret@db1:3306/shop"
R1 = "mysql+pymysql://app:s3cret@db2:3306/shop"
R2 = "mysql+pymysql://app:s3cret@db3:3306/shop"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster(P, [R1, R2]) as c:
        yield c


def host(session: object, sql: str) -> str:
    return session.get_bind(clause=text(sql)).url.host  # type: ignore[attr-defined,no-any-return]


def test_session_state_pins_until_the_session_is_closed(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s, "SET NAMES utf8mb4") == "db1"
    assert s.pins == {"session state"}
    assert host(s, "SELECT 1") == "db1"
    s.commit()
    assert host(s, "SELECT 1") == "db1"  # state outlives the transaction
    s.close()
    assert not s.pins
    assert host(s, "SELECT 1") in ("db2", "db3")


@pytest.mark.parametrize(
    ("take", "release", "resource"),
    [
        ("SELECT GET_LOCK('a', 1)", "SELECT RELEASE_LOCK('a')", "named lock"),
        ("SELECT GET_LOCK('a', 1)", "SELECT RELEASE_ALL_LOCKS()", "named lock"),
        ("LOCK TABLES t READ", "UNLOCK TABLES", "LOCK TABLES"),
        ("HANDLER t OPEN AS h", "HANDLER h CLOSE", "HANDLER h"),
        ("PREPARE s FROM 'SELECT 1'", "DEALLOCATE PREPARE s", "prepared statement s"),
        ("CREATE TEMPORARY TABLE tt (a INT)", "DROP TEMPORARY TABLE tt", "temporary table tt"),
    ],
)
def test_connection_bound_resources_pin_until_released(
    cluster: Cluster, take: str, release: str, resource: str
) -> None:
    s = cluster.session()
    assert host(s, take) == "db1"
    assert s.pins == {resource}
    assert host(s, release) == "db1"
    assert not s.pins
    s.begin()  # get_bind alone does not begin one: end the unit of work as execute() would
    s.rollback()
    assert host(s, "SELECT 1") in ("db2", "db3")


def test_named_locks_are_counted(cluster: Cluster) -> None:
    s = cluster.session()
    host(s, "SELECT GET_LOCK('a', 1)")
    host(s, "SELECT GET_LOCK('b', 1)")
    host(s, "SELECT RELEASE_LOCK('a')")
    assert s.pins == {"named lock"}
    host(s, "SELECT RELEASE_LOCK('b')")
    assert not s.pins


def test_autocommit_off_opens_a_transaction_on_the_primary(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s, "SET autocommit = 0") == "db1"
    assert s.on_primary
    assert host(s, "SELECT 1") == "db1"


def test_hints_route_and_a_primary_hint_does_not_stick(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s, "/* rwsplit:primary */ SELECT 1") == "db1"
    assert not s.on_primary
    assert host(s, "SELECT my_udf(1) -- maxscale route to slave") in ("db2", "db3")
    assert host(s, "/* rwsplit:replica */ UPDATE t SET a = 1") == "db1"


def test_last_goes_where_the_previous_statement_went(cluster: Cluster) -> None:
    s = cluster.session()
    first = host(s, "SELECT * FROM t")
    assert host(s, "SELECT FOUND_ROWS()") == first
    assert host(s, "SHOW WARNINGS") == first
    assert s.last_classification is not None
    assert s.last_classification.target is Target.LAST


def test_read_only_transaction_stays_on_one_replica(cluster: Cluster) -> None:
    s = cluster.session()
    first = host(s, "START TRANSACTION READ ONLY")
    assert first in ("db2", "db3")
    assert s.in_read_only_transaction
    assert {host(s, "SELECT * FROM t") for _ in range(4)} == {first}
    assert host(s, "SELECT FOUND_ROWS()") == first
    with pytest.raises(RoutingError, match="READ ONLY"):
        host(s, "DELETE FROM t")
    with pytest.raises(RoutingError, match="before the transaction starts"):
        host(s, "SET @x = 1")
    assert host(s, "COMMIT") == first
    assert not s.in_read_only_transaction
    assert not s.on_primary


def test_read_only_transaction_of_a_session_on_the_primary_stays_there(cluster: Cluster) -> None:
    s = cluster.session()
    host(s, "UPDATE t SET a = 1")
    assert host(s, "START TRANSACTION READ ONLY") == "db1"
    assert not s.in_read_only_transaction


def test_a_new_transaction_ends_the_read_only_one(cluster: Cluster) -> None:
    s = cluster.session()
    host(s, "START TRANSACTION READ ONLY")
    assert host(s, "BEGIN") == "db1"
    assert not s.in_read_only_transaction
    assert s.on_primary


def test_read_only_state_ends_with_the_session_transaction(cluster: Cluster) -> None:
    s = cluster.session()
    s.begin()
    host(s, "START TRANSACTION READ ONLY")
    s.rollback()
    assert not s.in_read_only_transaction


class _Err(Exception):
    pass


@pytest.mark.parametrize(
    ("code", "expected"), [(1792, True), (1290, True), (1836, True), (1062, False), (2013, False)]
)
def test_read_only_rejections(code: int, expected: bool) -> None:
    assert is_read_only_rejection(_Err(code, "msg")) is expected


@pytest.mark.parametrize(
    ("sql", "shown"),
    [
        ("SELECT my_udf(a)\n  FROM t", "SELECT my_udf(a) FROM t"),
        ("CREATE USER u IDENTIFIED BY 'hunter2'", "CREATE USER u IDENTIFIED BY '***'"),
        ('SET PASSWORD = PASSWORD("hunter2")', "SET PASSWORD = PASSWORD('***')"),
    ],
)
def test_logged_statements_never_show_passwords(sql: str, shown: str) -> None:
    assert _statement_text(text(sql)) == shown


def test_logged_constructs_show_placeholders_not_parameters() -> None:
    from sqlalchemy import column, select, table

    t = table("t", column("secret"))
    shown = _statement_text(select(t).where(t.c.secret == "hunter2"))
    assert "hunter2" not in shown
    assert ":secret_1" in shown
