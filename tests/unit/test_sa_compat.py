"""Pins the SQLAlchemy internals rwsplit relies on (rwsplit._sa_compat), with SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from rwsplit import _sa_compat


def test_drop_connection_lets_the_engine_connect_afresh() -> None:
    engine = create_engine("sqlite://")
    with Session() as s:
        first = s.connection(bind_arguments={"bind": engine})
        _sa_compat.drop_connection(s, engine)
        assert first.closed
        second = s.connection(bind_arguments={"bind": engine})
        assert second is not first
        assert second.execute(text("SELECT 1")).scalar() == 1


def test_transaction_connection_finds_without_opening() -> None:
    engine = create_engine("sqlite://")
    with Session() as s:
        assert _sa_compat.transaction_connection(s, engine) is None
        conn = s.connection(bind_arguments={"bind": engine})
        assert _sa_compat.transaction_connection(s, engine) is conn


def test_keep_connection_outlives_the_transaction_and_is_joined_again() -> None:
    engine = create_engine("sqlite://")
    s = Session()
    conn = s.connection(bind_arguments={"bind": engine})
    conn.execute(text("CREATE TEMP TABLE t (a INT)"))
    kept = _sa_compat.keep_connection(s, engine)
    assert kept is conn
    s.commit()
    assert not conn.closed  # SQLAlchemy did not close it
    # Bound as a Connection, the next transaction joins it: the temp table is still there.
    assert s.connection(bind_arguments={"bind": conn}) is conn
    assert conn.execute(text("SELECT COUNT(*) FROM t")).scalar() == 0
    s.rollback()
    assert not conn.closed
    s.close()
    conn.close()


def test_is_autocommit() -> None:
    engine = create_engine("sqlite://", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        assert _sa_compat.is_autocommit(conn)
    with create_engine("sqlite://").connect() as conn:
        assert not _sa_compat.is_autocommit(conn)


class _FakeConnectorConnection:
    """What the isolation-level calls touch of a MySQL Connector/Python connection."""

    def __init__(self) -> None:
        self.autocommit = False
        self.statements: list[str] = []

    def cursor(self) -> _FakeConnectorConnection:
        return self

    def execute(self, statement: str) -> None:
        self.statements.append(statement)

    def close(self) -> None:
        pass


def test_autocommit_level_on_mysqlconnector() -> None:
    pytest.importorskip("mysql.connector")
    engine = create_engine("mysql+mysqlconnector://u@127.0.0.1:1/", isolation_level="AUTOCOMMIT")
    _sa_compat.autocommit_level(engine)
    dialect = engine.dialect
    # Every SQLAlchemy release CI runs (the oldest left it out) now accepts AUTOCOMMIT.
    assert "AUTOCOMMIT" in dialect.get_isolation_level_values(None)
    conn = _FakeConnectorConnection()
    dialect.set_isolation_level(conn, "AUTOCOMMIT")
    assert conn.autocommit is True
    dialect.set_isolation_level(conn, "READ COMMITTED")
    assert conn.autocommit is False
    assert any("READ COMMITTED" in s for s in conn.statements)


def test_autocommit_level_leaves_other_dialects_alone() -> None:
    engine = create_engine("sqlite://")
    before = engine.dialect.get_isolation_level_values
    _sa_compat.autocommit_level(engine)
    assert engine.dialect.get_isolation_level_values == before
