"""The MySQL / MariaDB backend: ``"ENGINE": "rwsplit.django.mysql"`` (or ``"rwsplit.django"``).

``DATABASES = {"default": {"ENGINE": "rwsplit.django.mysql", "HOST": <primary>, "REPLICAS":
[...], "RWSPLIT": {<Cluster options>}}}`` — one alias is the cluster. Django's MySQL backend
with :class:`~rwsplit.django._routing.RoutingWrapper` routing each statement (see there); what
is MySQL's here: connection parameters and session statements, the read-only replica session
(``SET SESSION TRANSACTION READ ONLY``), causal tokens as GTIDs (``MASTER_GTID_WAIT`` /
``WAIT_FOR_EXECUTED_GTID_SET`` on the replica, carried in the read's own round trip where the
driver allows multi-statements), ``read_only()`` blocks as
``START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY``.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

try:  # mysqlclient when installed, else PyMySQL in its place (Django's MySQL backend needs one)
    import MySQLdb  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installed driver
    import pymysql

    pymysql.install_as_MySQLdb()

from django.db.backends.mysql import base as mysql_base
from django.db.utils import DEFAULT_DB_ALIAS

from .. import _pipelined_wait
from .._server_errors import is_connection_failure, is_read_only_rejection, is_replica_unusable
from ..routing.classify import MYSQL, Classification, classify
from ..routing.consistency import (
    ReadYourWrites,
    commit_token,
    may_wait,
    wait_reached,
    wait_statement,
)
from ..servers import MariaDB, MySQL
from ._routing import RoutingCursor, RoutingWrapper, django_error
from .creation import REPLICA_WAIT, DatabaseCreation, wait_for_replicas

__all__ = ["DatabaseWrapper", "RoutingCursor", "django_error"]

_MARIADB = MariaDB()
_MYSQL = MySQL()

Database = mysql_base.Database

# A read_only() block is one snapshot, taken when it opens, whatever the connection's isolation
# level (Django's default, READ COMMITTED, would give each statement its own): REPEATABLE READ
# for this one transaction (SERIALIZABLE would lock plain reads: on a replica, against its SQL
# thread).
_SNAPSHOT_LEVEL = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
_START_READ_ONLY = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"


class DatabaseWrapper(RoutingWrapper, mysql_base.DatabaseWrapper):  # type: ignore[misc]
    """Django's MySQL ``DatabaseWrapper`` that routes each statement over the cluster."""

    creation_class = DatabaseCreation

    sql_dialect = MYSQL
    replica_snapshot = (_SNAPSHOT_LEVEL, _START_READ_ONLY)
    # The primary refuses a write in it as well (error 1792).
    primary_snapshot = f"{_SNAPSHOT_LEVEL}, READ ONLY"
    start_read_only: ClassVar[Classification] = classify(_START_READ_ONLY)
    is_connection_failure = staticmethod(is_connection_failure)
    is_read_only_rejection = staticmethod(is_read_only_rejection)
    is_replica_unusable = staticmethod(is_replica_unusable)

    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS) -> None:
        self._mariadb: bool | None = None
        self._version = ""  # the primary's version string (once known)
        self._token_cache: tuple[object, dict[str, Any]] = (None, {})
        super().__init__(settings_dict, alias)

    @property
    def _multi_statements(self) -> bool:
        """Replica connections accept multi-statements: for the causal wait sent with a read."""
        return self.cluster.read_your_writes is ReadYourWrites.GTID

    # ------------------------------------------------------------------ connections

    def _node_params(self, params: dict[str, Any], name: str, read_timeout: int | None) -> None:
        params.pop("unix_socket", None)
        self._point_at(params, name)
        timeouts = self._timeouts
        if timeouts.connect is not None:
            params.setdefault("connect_timeout", timeouts.connect)
        if read_timeout is not None:
            params.setdefault("read_timeout", read_timeout)
        if timeouts.write is not None:
            params.setdefault("write_timeout", timeouts.write)

    def init_connection_state(self) -> None:
        # Django's MySQL backend sends its SETs through self.cursor(), which would pin this
        # connection to the primary (session state): send them on the raw connection instead.
        mysql_base.BaseDatabaseWrapper.init_connection_state(self)
        conn: Any = self.connection
        with contextlib.closing(conn.cursor()) as cursor:
            for statement in self._session_statements():
                cursor.execute(statement)

    def _session_statements(self) -> list[str]:
        statements = ["SET SQL_AUTO_IS_NULL = 0"]
        if self.isolation_level:
            statements.append(
                f"SET SESSION TRANSACTION ISOLATION LEVEL {self.isolation_level.upper()}"
            )
        return statements

    def _open_replica(self, name: str) -> Any:
        params: dict[str, Any] = mysql_base.DatabaseWrapper.get_connection_params(self)
        self._node_params(params, name, self._timeouts.replica_read)
        if self._multi_statements:
            flags = int(params.get("client_flag", 0))
            params["client_flag"] = flags | _pipelined_wait.MULTI_STATEMENTS
        conn = mysql_base.DatabaseWrapper.get_new_connection(self, params)
        try:
            conn.autocommit(True)
            with contextlib.closing(conn.cursor()) as cursor:
                # Read-only sessions: even an account that bypasses read_only cannot write.
                for statement in [*self._session_statements(), "SET SESSION TRANSACTION READ ONLY"]:
                    cursor.execute(statement)
        except Exception:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        if self._mariadb is None:
            self._version = str(conn.get_server_info())
            self._mariadb = "mariadb" in self._version.lower()
        return conn

    def _node_cursor(self, conn: Any) -> Any:
        return mysql_base.CursorWrapper(conn.cursor())

    # ------------------------------------------------------------------ causal reads

    def _execute_read(
        self, cursor: Any, method: str, query: str, args: Any, node: str, wait_token: str | None
    ) -> Any:
        if not self._multi_statements:
            return getattr(cursor, method)(query, args)
        if method != "execute":  # executemany: each row's values are escaped
            return getattr(cursor, method)(_pipelined_wait.checked_text(query), args)
        # The exact text the server gets must be one statement (the connection accepts
        # multi-statements for the causal wait only).
        text = cursor.cursor.mogrify(query, args) if args is not None else query
        _pipelined_wait.checked_text(text)
        if wait_token is not None:
            return self._read_with_wait(cursor, text, node, wait_token)
        return cursor.execute(text)

    def _defer_wait(self, name: str, token: str) -> bool:
        if not self._multi_statements or self.cluster._applied.covers(name, token):
            return False  # covered: _causal_wait answers at once
        if not may_wait(token, name, self.cluster.topology):
            return False  # _causal_wait sends the read to the primary
        return _pipelined_wait.is_gtid_text(token)

    def _read_with_wait(self, cursor: Any, query: str, node: str, token: str) -> Any:
        """The wait for *token* and the read as one multi-statement on *cursor*'s replica.

        :raises _pipelined_wait.WaitMissed: the wait timed out; the read did not run.
        """
        dialect = _MYSQL if self._mariadb is False else _MARIADB
        sql = dialect.wait_before_read(token, self.cluster.causal_timeout)
        assert sql is not None
        pending = _pipelined_wait.PendingWait(None, node, token, sql, self._wait_passed)
        _pipelined_wait.run_with_wait(cursor, query, pending)
        return cursor.rowcount

    def _wait_applied(self, conn: Any, token: str, timeout: float) -> bool:
        sql, params = wait_statement(
            token, timeout, mariadb=self._mariadb is not False, version=self._version
        )
        with contextlib.closing(conn.cursor()) as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return bool(row) and wait_reached(token, row[0])

    def _take_commit_token(self, conn: Any) -> str | None:
        if self._mariadb is None:
            info = str(conn.get_server_info())
            self._mariadb = "mariadb" in info.lower()
            self._version = info
        if self._token_cache[0] is not conn:
            self._token_cache = (conn, {})
        return commit_token(
            conn,
            self._token_cache[1],
            mariadb=self._mariadb,
            version=self._version,
            node=self._primary_node or "the primary",
        )

    def wait_for_replicas(self, timeout: float = REPLICA_WAIT) -> list[str]:
        return wait_for_replicas(self, timeout)

    # ------------------------------------------------------------------ constraint checks

    def disable_constraint_checking(self) -> bool:
        # foreign_key_checks only matters to writes, which all run on the primary connection:
        # set it there without pinning reads to the primary (as a SET through cursor() would).
        with (
            self.wrap_database_errors,
            contextlib.closing(self._primary_connection().cursor()) as c,
        ):
            c.execute("SET foreign_key_checks=0")
        return True

    def enable_constraint_checking(self) -> None:
        self.needs_rollback, needs_rollback = False, self.needs_rollback
        try:
            with (
                self.wrap_database_errors,
                contextlib.closing(self._primary_connection().cursor()) as c,
            ):
                c.execute("SET foreign_key_checks=1")
        finally:
            self.needs_rollback = needs_rollback
