"""The PostgreSQL backend: ``"ENGINE": "rwsplit.django.postgresql"`` (psycopg 3).

``DATABASES = {"default": {"ENGINE": "rwsplit.django.postgresql", "NAME": "shop", "HOST":
<primary>, "PORT": 5432, "REPLICAS": [{"HOST": ..., "PORT": ...}, ...], "RWSPLIT": {...}}}``.
Django's PostgreSQL backend with :class:`~rwsplit.django._routing.RoutingWrapper` routing each
statement over a primary and its hot standbys (see there); what is PostgreSQL's here:

* standby connections run ``SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`` (a hot
  standby refuses writes anyway: SQLSTATE 25006, healed by re-running on the primary);
* causal tokens are WAL positions (``pg:X/Y``, :mod:`rwsplit.servers.postgresql`): after a
  commit that wrote, the primary's WAL insert position; before a read on a standby, a bounded
  wait until ``pg_last_wal_replay_lsn()`` reaches it (one round trip), else the primary;
* a ``read_only()`` block's ``atomic()`` is ``BEGIN ISOLATION LEVEL REPEATABLE READ, READ
  ONLY`` on one caught-up standby: one snapshot;
* a read a standby cancelled to go on replaying WAL ("conflict with recovery") runs again (at
  most twice), and the standby stays in routing;
* test databases: the standbys have replayed ``CREATE DATABASE`` and the schema before the
  first test (and the ``DROP DATABASE`` after the last).

Named (server-side) cursors are not used: ``QuerySet.iterator()`` reads its rows through a
client-side cursor on whichever node runs it, as on MySQL. ``OPTIONS["pool"]`` (Django's
psycopg pool) is not supported: the pool would hold primary connections only.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as pg_base
from django.db.backends.postgresql.creation import DatabaseCreation as PgDatabaseCreation
from django.db.utils import DEFAULT_DB_ALIAS
from django.utils.functional import cached_property

from ...routing._tokens import PRIMARY_ONLY
from ...routing.classify import POSTGRESQL, Classification, classify
from ...servers import postgresql as pg
from ...servers.family import PostgreSQLRouting, query_one
from .._routing import RoutingCursor, RoutingWrapper, django_error
from ..creation import REPLICA_WAIT, ReplicatedCreation

__all__ = ["Database", "DatabaseCreation", "DatabaseWrapper", "RoutingCursor", "django_error"]

log = logging.getLogger("rwsplit.django")

Database = pg_base.Database
_PG = PostgreSQLRouting()

# One snapshot for the whole block whatever the connection's isolation level (Django's
# default, READ COMMITTED, takes one per statement). SERIALIZABLE is refused on a standby.
_START_READ_ONLY = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"


class DatabaseCreation(ReplicatedCreation, PgDatabaseCreation):  # type: ignore[misc]
    """Django's PostgreSQL test-database creation on a cluster."""


class DatabaseWrapper(RoutingWrapper, pg_base.DatabaseWrapper):  # type: ignore[misc]
    """Django's PostgreSQL ``DatabaseWrapper`` that routes each statement over the cluster."""

    creation_class = DatabaseCreation

    sql_dialect = POSTGRESQL
    replica_snapshot = (_START_READ_ONLY,)
    # The primary refuses a write in it as well (SQLSTATE 25006).
    primary_snapshot = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    start_read_only: ClassVar[Classification] = classify(_START_READ_ONLY, POSTGRESQL)
    is_connection_failure = staticmethod(pg.is_connection_lost)
    is_read_only_rejection = staticmethod(pg.is_read_only_rejection)
    is_replica_unusable = staticmethod(pg.is_replica_unusable)
    is_read_cancelled = staticmethod(pg.is_recovery_conflict)

    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS) -> None:
        if (settings_dict.get("OPTIONS") or {}).get("pool"):
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['OPTIONS']['pool'] is not supported by "
                "rwsplit.django.postgresql (the pool would hold primary connections only); "
                "remove it, or use CONN_MAX_AGE for persistent connections"
            )
        super().__init__(settings_dict, alias)

    # ------------------------------------------------------------------ connections

    def _node_params(self, params: dict[str, Any], name: str, read_timeout: int | None) -> None:
        # libpq has no read timeout: a hung server holds a statement until TCP gives up.
        self._point_at(params, name)
        if self._timeouts.connect is not None:
            params.setdefault("connect_timeout", max(2, self._timeouts.connect))

    def _open_replica(self, name: str) -> Any:
        params: dict[str, Any] = pg_base.DatabaseWrapper.get_connection_params(self)
        self._node_params(params, name, self._timeouts.replica_read)
        # Not Django's get_new_connection(): it sets this wrapper's isolation level.
        conn = self.Database.connect(**params)
        try:
            conn.autocommit = True
            with contextlib.closing(conn.cursor()) as cursor:
                # What Django sets on its own connection (its helpers for it differ by version).
                timezone_name = self.timezone_name
                if timezone_name and conn.info.parameter_status("TimeZone") != timezone_name:
                    cursor.execute(self.ops.set_time_zone_sql(), [timezone_name])
                role = self.settings_dict["OPTIONS"].get("assume_role")
                if role:
                    sql = self.Database.sql
                    cursor.execute(sql.SQL("SET ROLE {}").format(sql.Literal(role)))
            # Read-only sessions: a write that slips through fails on the server.
            _PG.set_read_only(conn)
        except Exception:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return conn

    def _node_cursor(self, conn: Any) -> Any:
        # What Django's create_cursor() does for an unnamed cursor, on any node's connection.
        cursor = conn.cursor()
        tzloader = conn.adapters.get_loader(pg_base.TIMESTAMPTZ_OID, pg_base.Format.TEXT)
        if self.timezone != tzloader.timezone:
            pg_base.register_tzloader(self.timezone, cursor)
        return cursor

    @cached_property  # type: ignore[untyped-decorator]
    def pg_version(self) -> int:
        # Django's opens the primary through self.cursor(): any node's connection answers.
        conn = self.connection
        if conn is None:
            conn = next(iter(self._replicas.values()), None)
        if conn is None:
            conn = self._primary_connection()
        version: int = conn.info.server_version
        return version

    # ------------------------------------------------------------------ causal reads

    def _wait_applied(self, conn: Any, token: str, timeout: float) -> bool:
        return _PG.wait_for_token(conn, token, timeout)

    def _take_commit_token(self, conn: Any) -> str | None:
        try:
            if conn.info.transaction_status == self.Database.pq.TransactionStatus.IDLE:
                token = _PG.commit_token(conn)  # outside any transaction, whatever autocommit
            else:
                # A transaction opened since (the token is taken lazily): a position after
                # the commit's, read inside it.
                row = query_one(conn, pg.COMMIT_TOKEN_SQL)
                lsn = pg.Lsn.maybe(row[0]) if row else None
                token = pg.lsn_token(lsn) if lsn is not None else None
        except self.Database.Error as exc:
            # The commit succeeded; a lost position only costs the next reads a replica.
            log.warning(
                "could not read the commit's WAL position on %s: %s", self._primary_node, exc
            )
            return PRIMARY_ONLY
        return token if token is not None else PRIMARY_ONLY

    def wait_for_replicas(self, timeout: float = REPLICA_WAIT) -> list[str]:
        """Wait until every healthy standby replayed the primary's whole WAL (bounded).

        On connections to the ``postgres`` database: a standby has the test database only
        once it replayed its ``CREATE DATABASE``.

        :raises ImproperlyConfigured: a standby did not get there in time (not streaming?).
        """
        if self.settings_dict["NAME"] is not None:
            other = type(self)({**self.settings_dict, "NAME": None}, NO_DB_ALIAS)
            try:
                return other.wait_for_replicas(timeout)
            finally:
                other.close()
        row = query_one(self._primary_connection(), "SELECT pg_current_wal_lsn()::text")
        token = pg.lsn_token(pg.Lsn.parse(str(row[0])))
        waited: list[str] = []
        for node in self.cluster.topology.replicas:
            if not node.healthy:
                continue
            if not _PG.wait_for_token(self._replica_connection(node.name), token, timeout):
                raise ImproperlyConfigured(
                    f"standby {node.name} did not replay the primary's WAL up to {token} "
                    f"within {timeout:.0f}s: is it streaming? (check with "
                    "'manage.py rwsplit_topology')"
                )
            waited.append(node.name)
        log.info("standbys %s replayed WAL up to %s", ", ".join(waited) or "(none)", token)
        return waited
