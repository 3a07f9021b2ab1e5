"""Pins the SQLAlchemy internals rwsplit relies on (rwsplit._sa_compat), with SQLite."""

from __future__ import annotations

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
