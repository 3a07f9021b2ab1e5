"""The one place rwsplit touches SQLAlchemy internals (no public hook exists for it).

``tests/unit/test_sa_compat.py`` pins the behaviour on every SQLAlchemy release CI runs.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction

__all__ = [
    "autocommit_level",
    "drop_connection",
    "is_autocommit",
    "keep_connection",
    "skip_rollback",
    "transaction_connection",
]

log = logging.getLogger("rwsplit.session")


def drop_connection(session: Session, engine: Engine) -> None:
    """Remove *session*'s dead connection to *engine* from its transaction, and close it.

    SQLAlchemy keeps one connection per engine for the life of a session transaction, and an
    invalidated one refuses to reconnect inside it. A replica connection is autocommit and
    holds no transaction state, so dropping it is safe: the next read on that engine (after the
    replica is re-admitted) connects afresh. Uses ``SessionTransaction._connections``.
    """
    trans: SessionTransaction | None = session.get_transaction()
    while trans is not None:
        connections: dict[Any, Any] | None = getattr(trans, "_connections", None)
        if connections is not None:
            entry = connections.pop(engine, None)
            if entry is not None:
                conn = entry[0]
                connections.pop(conn, None)
                try:
                    conn.invalidate()
                    conn.close()
                except Exception:  # the connection is dead already
                    log.debug("closing a dead connection failed", exc_info=True)
        trans = trans.parent


def is_autocommit(conn: Any) -> bool:
    """True when SQLAlchemy runs *conn* (a ``Connection``) in autocommit isolation."""
    return bool(conn._is_autocommit_isolation())


def _root(session: Session) -> SessionTransaction | None:
    trans = session.get_transaction()
    while trans is not None and trans.parent is not None:
        trans = trans.parent
    return trans


def transaction_connection(session: Session, engine: Engine) -> Connection | None:
    """The connection *session*'s transaction holds for *engine*, without opening one."""
    trans = _root(session)
    connections: dict[Any, Any] | None = getattr(trans, "_connections", None)
    entry = connections.get(engine) if connections else None
    return entry[0] if entry is not None else None


def keep_connection(session: Session, engine: Engine) -> Connection | None:
    """Make the transaction's connection to *engine* outlive the transaction.

    SQLAlchemy closes (returns to the pool) the connections a session transaction opened
    itself, when it ends; the fourth field of a ``_connections`` entry says so ("autoclose").
    Clearing it hands the connection to the caller, who binds the session to it (SQLAlchemy
    then joins it like any connection given as a bind) and closes it when done.
    """
    trans = _root(session)
    connections: dict[Any, Any] | None = getattr(trans, "_connections", None)
    entry = connections.get(engine) if connections else None
    if entry is None or connections is None:
        return None
    conn, transaction, should_commit, _autoclose = entry
    connections[conn] = connections[engine] = (conn, transaction, should_commit, False)
    return conn  # type: ignore[no-any-return]


def _no_rollback(dbapi_connection: Any) -> None:
    """Replica connections are autocommit: there is nothing to roll back."""


def skip_rollback(engine: Engine) -> None:
    """``create_engine(skip_autocommit_rollback=True)`` for SQLAlchemy before 2.0.43.

    On an autocommit replica connection SQLAlchemy still sends ``ROLLBACK`` when a session
    lets go of it; when the replica died after the read, that ROLLBACK raised from
    ``session.close()``. The dialect of a replica engine is that engine's own, so replacing
    its ``do_rollback`` touches nothing else; a read-only transaction left open is still
    ended by the pool ``reset`` listener, which calls the DBAPI ``rollback()`` itself.
    """
    engine.dialect.do_rollback = _no_rollback  # type: ignore[method-assign]


def autocommit_level(engine: Engine) -> None:
    """Let *engine* run in ``AUTOCOMMIT`` isolation where its dialect forgot to list it.

    SQLAlchemy 2.0 before 2.0.2x left ``AUTOCOMMIT`` out of ``mysql+mysqlconnector``'s
    isolation levels (its ``get_isolation_level_values``), although MySQL Connector/Python
    supports it (``connection.autocommit``) and newer releases list it: a replica engine
    created with ``isolation_level="AUTOCOMMIT"`` then failed on its first connection with
    ``ArgumentError``. On such a dialect this adds the level to *engine*'s own dialect (no
    other engine's), setting it the way newer releases do. Elsewhere it does nothing.
    """
    dialect = engine.dialect
    if dialect.driver != "mysqlconnector":
        return
    levels = tuple(dialect.get_isolation_level_values(None))  # type: ignore[arg-type]
    if "AUTOCOMMIT" in levels:
        return
    set_level = dialect.set_isolation_level

    def values(dbapi_connection: Any) -> tuple[str, ...]:
        return (*levels, "AUTOCOMMIT")

    def set_isolation_level(dbapi_connection: Any, level: Any) -> None:
        if level == "AUTOCOMMIT":
            dbapi_connection.autocommit = True
        else:
            dbapi_connection.autocommit = False
            set_level(dbapi_connection, level)

    dialect.get_isolation_level_values = values  # type: ignore[method-assign,assignment]
    dialect.set_isolation_level = set_isolation_level  # type: ignore[method-assign]
