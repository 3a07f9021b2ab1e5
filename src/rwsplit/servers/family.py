"""The family-level seam the :class:`~rwsplit.Cluster` and its sessions route through.

:class:`~rwsplit.servers.base.ServerFamily` describes MySQL-protocol replication (GTIDs,
``SHOW SLAVE STATUS``, ``CHANGE MASTER``); PostgreSQL fits none of it. What routing needs
from a server is much smaller, and that is :class:`RoutingFamily`: how a replica connection
is made read-only, whether a connection's node is the writable primary, the fence check
before a commit, which driver errors mean "connection lost" / "read-only" / "replica
unusable", how a commit's causal token is taken and waited for. :func:`family_for_url` picks
the implementation from a node's URL:

* :class:`MySQLRouting` (``mysql+...``, ``mariadb+...``) delegates to the code the cluster
  always ran (behaviour unchanged);
* :class:`PostgreSQLRouting` (``postgresql+psycopg``, ``postgresql+psycopg_async``,
  ``postgresql+asyncpg``) uses :mod:`rwsplit.servers.postgresql`.

Everything here works on raw DB-API connections (SQLAlchemy's asyncio adapters included), never
on sessions.

>>> from sqlalchemy.engine import make_url
>>> family_for_url(make_url("postgresql+psycopg://app@db1/shop")).name
'postgresql'
>>> family_for_url(make_url("mysql+pymysql://app@db1/shop")).default_port
3306
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any, Protocol

from sqlalchemy.engine import URL

from . import postgresql as pg

__all__ = ["MySQLRouting", "PostgreSQLRouting", "RoutingFamily", "family_for_url"]

log = logging.getLogger("rwsplit.servers")


class RoutingFamily(Protocol):
    """What routing asks a server family (one instance per cluster)."""

    name: str
    """``"mysql"`` (MariaDB and MySQL) or ``"postgresql"``."""
    default_port: int

    def owns_token(self, token: str) -> bool:
        """Is *token* a causal token of this family (else no wait can prove it applied)?"""
        ...

    def set_read_only(self, dbapi_connection: Any) -> None:
        """Make a new replica connection read-only for the rest of its life."""
        ...

    def not_primary_reason(self, dbapi_connection: Any) -> str | None:
        """Why the node of a new primary connection takes no writes (``None``: it does)."""
        ...

    def fence_check(self, dbapi_connection: Any) -> bool:
        """One round trip before a commit: True when the node became read-only (fenced).

        Driver errors other than that answer propagate (see :meth:`is_connection_lost`).
        """
        ...

    def is_connection_lost(self, exc: BaseException | None) -> bool: ...

    def is_read_only_rejection(self, exc: BaseException | None) -> bool: ...

    def is_replica_unusable(self, exc: BaseException | None) -> bool: ...

    def is_connection_refused(self, exc: BaseException | None) -> bool:
        """A live server refused a new connection for want of capacity (a connection storm:
        too many connections): nothing was sent, and the node is not dead."""
        ...

    def timeout_args(
        self, drivername: str, connect: float | None, read: float | None, write: float | None
    ) -> dict[str, Any]:
        """Driver keyword arguments for the connect / read / write timeouts."""
        ...


def family_for_url(url: URL) -> RoutingFamily:
    """The routing family of a node URL, from its SQLAlchemy backend name."""
    if url.get_backend_name() == "postgresql":
        return PostgreSQLRouting()
    return MySQLRouting()


def default_port(url: URL) -> int:
    """The port a URL without one means: 5432 for PostgreSQL, 3306 otherwise."""
    return 5432 if url.get_backend_name() == "postgresql" else 3306


# ---------------------------------------------------------------------------------- MySQL


class MySQLRouting:
    """MariaDB and MySQL: the statements and error codes :mod:`rwsplit.cluster` always used."""

    name = "mysql"
    default_port = 3306

    def owns_token(self, token: str) -> bool:
        return not token.startswith(pg.TOKEN_PREFIX)

    def set_read_only(self, dbapi_connection: Any) -> None:
        from ..cluster import _set_read_only

        _set_read_only(dbapi_connection, None)

    def not_primary_reason(self, dbapi_connection: Any) -> str | None:
        return None  # the cluster runs verify_writable_primary (read_only, failover log)

    def fence_check(self, dbapi_connection: Any) -> bool:
        from ..cluster import _FENCE_CHECK, _REGEXP_ERRORS, _error_code

        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(_FENCE_CHECK)
            finally:
                cursor.close()
        except Exception as exc:
            if _error_code(exc) in _REGEXP_ERRORS:
                return True
            raise
        return False

    def is_connection_lost(self, exc: BaseException | None) -> bool:
        from ..cluster import _CONNECTION_LOST, _error_code

        return exc is not None and _error_code(exc) in _CONNECTION_LOST

    def is_read_only_rejection(self, exc: BaseException | None) -> bool:
        from ..cluster import _READ_ONLY, _error_code

        return exc is not None and _error_code(exc) in _READ_ONLY

    def is_replica_unusable(self, exc: BaseException | None) -> bool:
        from .._server_errors import is_replica_unusable

        return exc is not None and is_replica_unusable(exc)

    def is_connection_refused(self, exc: BaseException | None) -> bool:
        from .._server_errors import is_connection_refused

        return exc is not None and is_connection_refused(exc)

    def timeout_args(
        self, drivername: str, connect: float | None, read: float | None, write: float | None
    ) -> dict[str, Any]:
        from ..cluster import _timeout_args

        return _timeout_args(drivername, connect, read, write)


# ---------------------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def autocommit(dbapi_connection: Any) -> Iterator[Any]:
    """Run statements on *dbapi_connection* outside any transaction, then restore its mode.

    psycopg (and SQLAlchemy's asyncio adapters) open a transaction with the first statement of
    a connection that is not in autocommit: a check at connect time or a query after ``COMMIT``
    would leave one open (and cost a ``BEGIN``). Only for a connection with no transaction open.
    """
    before = getattr(dbapi_connection, "autocommit", True)
    if before is not True and not callable(before):
        dbapi_connection.autocommit = True
        try:
            yield dbapi_connection
        finally:
            with contextlib.suppress(Exception):
                dbapi_connection.autocommit = before
    else:
        yield dbapi_connection


def query_one(dbapi_connection: Any, sql: str) -> Any:
    """The first row of *sql* on *dbapi_connection* (a DB-API cursor, closed after)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchone()
    finally:
        cursor.close()


class PostgreSQLRouting:
    """PostgreSQL streaming replication: hot standbys take reads, the node not in recovery
    and not read-only by default takes writes; causal tokens are WAL positions (``pg:X/Y``)."""

    name = "postgresql"
    default_port = 5432

    def owns_token(self, token: str) -> bool:
        return pg.parse_token(token) is not None

    def set_read_only(self, dbapi_connection: Any) -> None:
        with autocommit(dbapi_connection) as conn:
            cursor = conn.cursor()
            try:
                cursor.execute(pg.READ_ONLY_SESSION_SQL)
            finally:
                cursor.close()

    def not_primary_reason(self, dbapi_connection: Any) -> str | None:
        with autocommit(dbapi_connection) as conn:
            row = query_one(conn, pg.IS_PRIMARY_SQL)
        in_recovery, read_only = bool(row[0]), bool(row[1])
        if in_recovery:
            return "it is a standby (pg_is_in_recovery() is true)"
        if read_only:
            return "it is read-only (default_transaction_read_only = on: fenced)"
        return None

    def fence_check(self, dbapi_connection: Any) -> bool:
        row = query_one(dbapi_connection, pg.FENCE_CHECK_SQL)
        return bool(row[0]) if row else True

    def is_connection_lost(self, exc: BaseException | None) -> bool:
        return pg.is_connection_lost(exc)

    def is_read_only_rejection(self, exc: BaseException | None) -> bool:
        return pg.is_read_only_rejection(exc)

    def is_replica_unusable(self, exc: BaseException | None) -> bool:
        return pg.is_replica_unusable(exc)

    def is_connection_refused(self, exc: BaseException | None) -> bool:
        return pg.is_connection_refused(exc)

    def timeout_args(
        self, drivername: str, connect: float | None, read: float | None, write: float | None
    ) -> dict[str, Any]:
        # libpq has no read timeout (a hung server holds a statement until TCP gives up);
        # its connect_timeout is whole seconds, at least 2.
        driver = drivername.partition("+")[2] or "psycopg2"
        if connect is None:
            return {}
        if driver in ("psycopg", "psycopg_async", "psycopg2"):
            return {"connect_timeout": max(2, math.ceil(connect))}
        if driver == "asyncpg":
            return {"timeout": connect}
        return {}

    # ---- causal tokens (on raw DB-API connections)

    def commit_token(self, dbapi_connection: Any) -> str | None:
        """The token of the commit just made on *dbapi_connection* (no transaction open)."""
        with autocommit(dbapi_connection) as conn:
            row = query_one(conn, pg.COMMIT_TOKEN_SQL)
        lsn = pg.Lsn.maybe(row[0]) if row else None
        return pg.lsn_token(lsn) if lsn is not None else None

    def wait_for_token(self, dbapi_connection: Any, token: str, timeout: float) -> bool:
        """Wait on a standby connection (autocommit) until it replayed *token*, bounded.

        False when it did not in time, or when *token* is not a PostgreSQL token (a MySQL
        GTID given to a PostgreSQL cluster: no wait can prove it, the read goes to the
        primary). Other driver errors propagate.
        """
        lsn = pg.parse_token(token)
        if lsn is None:
            return False
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(pg.wait_sql(lsn, timeout))
        except Exception as exc:
            if pg.is_wait_timeout(exc):
                return False
            raise
        finally:
            with contextlib.suppress(Exception):
                cursor.close()
        return True
