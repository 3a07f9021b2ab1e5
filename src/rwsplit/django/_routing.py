"""The routing core of rwsplit's Django backends: one alias is a whole cluster.

:class:`RoutingWrapper` is mixed into a Django ``DatabaseWrapper`` (MySQL's in
:mod:`rwsplit.django.base`, PostgreSQL's in :mod:`rwsplit.django.postgresql.base`). It keeps
Django's own connection (``self.connection``) as the *primary* connection and adds, lazily, one
read-only autocommit connection per replica. Every statement of every cursor (QuerySets,
``raw()``, ``connection.cursor()``, migrations) goes through :meth:`RoutingWrapper._run`, which
asks the framework-neutral :class:`rwsplit.router.Router` where it goes:

* in autocommit, a plain read goes to a caught-up replica (read-your-writes: it first waits,
  bounded, for the causal token of this request's last write);
* writes, DDL, locking reads, session state and anything unknown go to the primary;
* inside ``atomic()`` (or with autocommit off, or after a raw ``START TRANSACTION``) every
  statement goes to the primary: the transaction lives on one node;
* an outermost ``atomic()`` inside :class:`rwsplit.django.read_only` runs as one
  ``REPEATABLE READ`` read-only transaction on one caught-up replica (the router's read-only
  transaction), and anything but a plain read in a ``read_only()`` block raises.

Replica failures are healed (the read is re-run elsewhere, the replica taken out); primary
failures become Django ``OperationalError``\\ s that carry rwsplit's verdict as
``exc.rwsplit_error`` (also ``exc.__cause__``): :class:`~rwsplit.RetryableWriteError`
(nothing was committed: retry), :class:`~rwsplit.TransactionOutcomeUnknownError` (check
first), :class:`~rwsplit.ReadFailedError`, :class:`~rwsplit.NoPrimaryError`.

The primary connection is opened only when a statement needs it: a request that only reads
never connects to the primary.

What differs by server — connection parameters, the replica session's read-only setting, the
causal token and its wait, the statements that open a snapshot, which driver errors mean what —
is the few hooks a backend defines (see :class:`RoutingWrapper`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import utils as db_utils
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import DEFAULT_DB_ALIAS

from .. import _pipelined_wait
from ..cluster import Cluster
from ..errors import (
    ConfigurationError,
    NoPrimaryError,
    NoReplicaAvailableError,
    NotPrimaryError,
    ReadFailedError,
    RetryableWriteError,
    RoutingError,
    RwSplitError,
    TransactionOutcomeUnknownError,
)
from ..routing._implicit_commit import may_commit
from ..routing.classify import MYSQL, Classification, Flag, Target, classify
from ..routing.consistency import ReadYourWrites, may_wait
from ..routing.router import Route, Router
from ..topology import describe_error
from ._context import CausalScope, current_scope, forced_primary, read_only_requested
from ._settings import cluster_for, driver_timeouts, fingerprint

__all__ = ["RoutingCursor", "RoutingWrapper", "django_error"]

log = logging.getLogger("rwsplit.django")
_SECRET_RE = re.compile(r"PASSWORD|IDENTIFIED|ENC\(", re.IGNORECASE)
_STRING_RE = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"")


def django_error(err: RwSplitError, cause: BaseException | None = None) -> Exception:
    """The Django exception for rwsplit error *err*, with *err* kept on it.

    ``exc.rwsplit_error`` and ``exc.__cause__`` are *err*; ``err.__cause__`` is the driver's
    error, if any. Failover and health errors are ``OperationalError``; a statement rwsplit
    refuses to route (a write inside ``START TRANSACTION READ ONLY``) is ``ProgrammingError``.
    """
    kind: Any = db_utils.OperationalError
    if isinstance(err, RoutingError) and not isinstance(
        err, (NoPrimaryError, NoReplicaAvailableError)
    ):
        kind = db_utils.ProgrammingError
    args: tuple[object, ...] = getattr(cause, "args", ()) if cause is not None else ()
    code = args[0] if args and isinstance(args[0], int) else None
    exc: Any = kind(code, str(err)) if code is not None else kind(str(err))
    exc.rwsplit_error = err
    if cause is not None and err.__cause__ is None:
        err.__cause__ = cause
    exc.__cause__ = err
    result: Exception = exc
    return result


def _read_only_violation(c: Classification | None) -> str | None:
    """Why statement *c* may not run in a ``read_only()`` block (``None``: it may)."""
    if c is None:
        return "a statement rwsplit cannot classify"
    flags = c.flags
    if c.target is Target.LAST or (
        c.target is Target.REPLICA and not (flags and flags & (Flag.TXN_BEGIN | Flag.TXN_END))
    ):
        return None
    if flags & Flag.LOCKING_READ:
        return f"a locking read ({c.reason}; select_for_update() locks on the primary)"
    if flags & (Flag.TXN_BEGIN | Flag.TXN_END):
        return f"{c.reason} (atomic() opens and ends the transaction)"
    return f"a statement that is not a plain read ({c.reason})"


def _loggable(sql: str, limit: int = 300) -> str:
    if _SECRET_RE.search(sql):
        sql = _STRING_RE.sub("'***'", sql)
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[:limit] + " ..."


class RoutingCursor:
    """The DB-API cursor Django's ``CursorWrapper`` holds: it routes every statement.

    It keeps one cursor per node it used; results (``fetch*``, ``rowcount``, ``lastrowid``,
    ``description``) come from the cursor of the last statement.
    """

    def __init__(self, db: RoutingWrapper) -> None:
        self.db = db
        self._cursors: dict[str | None, Any] = {}  # node name (None: the primary) -> cursor
        self._current: Any = None

    def cursor_for(self, node: str | None) -> Any:
        cursor = self._cursors.get(node)
        if cursor is None:
            if node is None:
                cursor = self.db._node_cursor(self.db._primary_connection())
            else:
                cursor = self.db._node_cursor(self.db._replica_connection(node))
            self._cursors[node] = cursor
        return cursor

    def forget(self, node: str | None) -> None:
        cursor = self._cursors.pop(node, None)
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()

    def execute(self, query: str, args: Any = None) -> Any:
        return self.db._run(self, "execute", query, args)

    def executemany(self, query: str, args: Any) -> Any:
        return self.db._run(self, "executemany", query, args)

    def callproc(self, procname: str, args: Any = ()) -> Any:
        # A stored procedure may do anything: the primary, as a write.
        return self.db._run(self, "callproc", f"CALL {procname}", args, raw_name=procname)

    def close(self) -> None:
        for node in list(self._cursors):
            self.forget(node)
        self._current = None

    def _result_cursor(self) -> Any:
        if self._current is None:
            self._current = self.cursor_for(None)
        return self._current

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._result_cursor(), attr)

    def __iter__(self) -> Any:
        return iter(self._result_cursor())


class RoutingWrapper(BaseDatabaseWrapper):  # type: ignore[misc]
    """Routes each statement of a Django ``DatabaseWrapper`` over the cluster (a mixin).

    A backend puts it first among the bases of its ``DatabaseWrapper``, before Django's own
    backend, and defines the hooks below (the server's part).
    """

    connection: Any  # Django's (primary) DB-API connection, None while closed

    sql_dialect: ClassVar[str] = MYSQL
    """The classifier's dialect of the server's SQL."""
    replica_snapshot: ClassVar[tuple[str, ...]] = ()
    """Statements that open a ``read_only()`` block's transaction on a replica connection
    (autocommit): one ``REPEATABLE READ`` read-only snapshot."""
    primary_snapshot: ClassVar[str] = ""
    """The statement that makes the transaction Django just opened on the primary one
    ``REPEATABLE READ`` read-only snapshot (no replica could take the block)."""
    start_read_only: ClassVar[Classification]
    """The classification the router sees for the opening of a ``read_only()`` block."""
    is_connection_failure: Callable[[BaseException], bool]
    """The driver error means the connection or the server is gone."""
    is_read_only_rejection: Callable[[BaseException], bool]
    """The server refused a write as read-only (a replica, or a read-only transaction)."""
    is_replica_unusable: Callable[[BaseException], bool]
    """The replica cannot serve reads now (gone, refusing this connection, full)."""

    @staticmethod
    def is_read_cancelled(exc: BaseException) -> bool:
        """The replica cancelled the read to go on applying (PostgreSQL's recovery conflict):
        it may simply run again."""
        return False

    read_reruns: ClassVar[int] = 2
    """How many times a read a replica cancelled runs again (:meth:`is_read_cancelled`)."""

    def __init__(self, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS) -> None:
        super().__init__(settings_dict, alias)
        self._cluster_key = fingerprint(settings_dict)
        try:
            cluster_for(settings_dict, alias, self._cluster_key)
        except ConfigurationError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        self._timeouts = driver_timeouts(settings_dict)
        self._router = self._new_router(None)
        self._seen_scope: CausalScope | None = None
        self._replicas: dict[str, Any] = {}
        self._replica_close_at: float | None = None
        self._primary_node: str | None = None
        self._primary_epoch: int | None = None
        self._connecting_to: str | None = None
        self._pending_token = False
        self._scope_token: str | None = None
        self._raw_txn = False
        self._last_node: str | None = None
        self._ro_block = False  # an outermost atomic() opened inside read_only()
        self._ro_replica: str | None = None  # ... running on this replica (None: the primary)
        self.healed = 0
        """Statements a replica refused as read-only, re-run on the primary (look at the
        ``rwsplit.django`` warnings naming them)."""
        self.routed: dict[str, int] = {}
        """Statements sent per node name (the primary's and each replica's), for inspection."""

    @property
    def cluster(self) -> Cluster:
        """The :class:`~rwsplit.Cluster` of this alias (one per process, also after a fork)."""
        return cluster_for(self.settings_dict, self.alias, self._cluster_key)

    def _new_router(self, token: str | None) -> Router:
        return Router(
            self._choose_replica,
            self._causal_wait,
            read_your_writes=self.cluster.read_your_writes,
            sticky_window=self.cluster.sticky_window,
            causal_token=token,
            defer_wait=self._defer_wait,
        )

    # ------------------------------------------------------------------ public views

    @property
    def causal_token(self) -> str | None:
        """The causal token of the last committed write seen by this connection (``None``: none)."""
        if self._pending_token:
            self._resolve_token()
        return self._router.causal_token

    @property
    def on_primary(self) -> bool:
        """True when the next statement goes to the primary whatever it is."""
        if self._ro_replica is not None:
            return False  # a read_only() atomic() block on a replica
        return self._in_transaction() or self._router.on_primary or forced_primary(self.alias)

    @property
    def read_only_replica(self) -> str | None:
        """The replica running the open ``read_only()`` ``atomic()`` block, if any."""
        return self._ro_replica

    # ------------------------------------------------------------------ the primary connection

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        primary = self.cluster.topology.primary
        if primary is None:
            try:
                self.cluster.write_engine()  # raises the precise error (none / split brain)
            except RwSplitError as exc:
                raise django_error(exc) from None
            raise django_error(NoPrimaryError("no writable primary is known right now"))
        self._connecting_to = primary.name
        self._node_params(params, primary.name, self._timeouts.primary_read)
        return params

    # ------------------------------------------------------------------ the server's hooks

    def _node_params(self, params: dict[str, Any], name: str, read_timeout: int | None) -> None:
        """Point Django's connection parameters *params* at node *name* (its URL)."""
        raise NotImplementedError

    def _point_at(self, params: dict[str, Any], name: str) -> None:
        """Host, port and credentials of node *name* in *params* (the driver's names)."""
        url = self.cluster.topology.node(name).url
        params["host"] = url.host
        params["port"] = url.port or self.cluster.family.default_port
        if url.username:
            params["user"] = url.username
        if url.password:
            params["password"] = url.password

    def _open_replica(self, name: str) -> Any:
        """A new autocommit DB-API connection to replica *name*, read-only for its life."""
        raise NotImplementedError

    def _node_cursor(self, conn: Any) -> Any:
        """The cursor :class:`RoutingCursor` runs statements with on *conn* (any node)."""
        return conn.cursor()

    def _execute_read(
        self, cursor: Any, method: str, query: str, args: Any, node: str, wait_token: str | None
    ) -> Any:
        """Run a read on a replica's *cursor* (with *wait_token*'s wait when the backend said
        it could carry it: :meth:`_defer_wait`)."""
        return getattr(cursor, method)(query, args)

    def _defer_wait(self, name: str, token: str) -> bool:
        """Can the wait for *token* travel with the plain read on *name* (one round trip)?"""
        return False

    def _wait_applied(self, conn: Any, token: str, timeout: float) -> bool:
        """Wait on replica connection *conn*, bounded, until it applied *token*."""
        raise NotImplementedError

    def _take_commit_token(self, conn: Any) -> str | None:
        """The causal token of the commit just made on the primary connection *conn*."""
        raise NotImplementedError

    def wait_for_replicas(self, timeout: float) -> list[str]:
        """Wait until every healthy replica applied all the primary has written (tests)."""
        raise NotImplementedError

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        return self._connect_primary(conn_params, redirected=False)

    def _connect_primary(self, conn_params: dict[str, Any], *, redirected: bool) -> Any:
        name = self._connecting_to
        try:
            conn = super().get_new_connection(conn_params)
        except self.Database.Error as exc:
            # A live primary out of connection slots (a connection storm) is not re-probed.
            refused = self.cluster.family.is_connection_refused(exc)
            if not (refused or self.is_connection_failure(exc)):
                raise
            if not refused:
                self.cluster.refresh_soon()
            if not self._in_transaction():
                # The statement that needed the primary was not sent: what the router made of
                # it (sticky after a write) must not send this connection's next reads there.
                self._router.end_transaction()
            message = (
                f"the primary {name} refused a new connection ({describe_error(exc)}): it is "
                "alive but has no connection slot free; nothing was sent: retry after a short "
                "back-off, and if it persists raise the server's connection limit or lower the "
                "number of connections the applications hold"
                if refused
                else f"cannot connect to the primary {name} ({describe_error(exc)}); nothing was "
                "sent: retry shortly (the cluster is re-probed"
                + ("" if self.cluster.monitor is None else ", a failover may be under way")
                + ")"
            )
            raise django_error(RetryableWriteError(message), exc) from None
        assert name is not None
        try:
            # What the Cluster's own primary engines run on each new connection: the server
            # decides (read_only off, replicating from nobody, not recorded as replaced in the
            # failover log, whatever the account's privileges), and once per process the
            # newest failover log among the nodes names the primary (a process started from
            # the configuration of before a failover writes to the new primary).
            self.cluster._check_is_primary(name, conn)
        except NotPrimaryError as exc:
            primary = self.cluster.topology.primary
            if redirected or primary is None or primary.name == name:
                raise django_error(exc) from None
            # The cluster now knows the real primary (probed, or read from the failover log):
            # nothing was sent, so connect there instead, once.
            log.info("%s is not the primary; connecting to %s", name, primary.name)
            return self._connect_primary(self.get_connection_params(), redirected=True)
        self._primary_node = name
        self._primary_epoch = self.cluster.primary_epoch
        return conn

    def _primary_connection(self) -> Any:
        """The raw primary connection, (re)opened on the current primary."""
        if self.connection is not None and not self.closed_in_transaction:
            self._check_primary_current()
        self.ensure_connection()
        return self.connection

    def _check_primary_current(self) -> None:
        primary = self.cluster.topology.primary
        if (
            primary is not None
            and primary.name == self._primary_node
            and self._primary_epoch == self.cluster.primary_epoch
        ):
            return
        in_txn = self._in_transaction()
        old = self._primary_node
        self._drop_primary()
        if in_txn:
            raise django_error(
                RetryableWriteError(
                    f"the primary changed (from {old}) during this transaction; nothing of it "
                    "was committed: roll back and retry the whole unit of work"
                )
            )
        log.info("primary changed from %s: reconnecting", old)

    def _drop_primary(self) -> None:
        """Close the primary connection (Django's close(), tolerant of a dead socket)."""
        conn: Any = self.connection
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        if self.in_atomic_block:
            self.closed_in_transaction = True
            self.needs_rollback = True
        else:
            self.connection = None
        self._raw_txn = False
        self._pending_token = False
        if self._ro_block and self._ro_replica is None:
            self._ro_block = False  # Django's atomic() exit skips set_autocommit() now
        self._router.connection_lost()
        self._router.end_transaction()

    # ------------------------------------------------------------------ replicas

    def _replica_connection(self, name: str) -> Any:
        conn = self._replicas.get(name)
        if conn is not None:
            return conn
        conn = self._open_replica(name)
        self._replicas[name] = conn
        max_age = self.settings_dict.get("CONN_MAX_AGE", 0)
        if self._replica_close_at is None and max_age is not None:
            self._replica_close_at = time.monotonic() + max_age
        return conn

    def _drop_replica(self, name: str) -> None:
        conn = self._replicas.pop(name, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _close_replicas(self) -> None:
        for name in list(self._replicas):
            self._drop_replica(name)
        self._replica_close_at = None

    def _choose_replica(self) -> str | None:
        route = self.cluster.read_route()
        if route is None:
            if not self.cluster.fallback_to_primary:
                raise NoReplicaAvailableError(
                    "no replica can take reads (all down or lagging) and "
                    "fallback_to_primary=False; bring a replica back, or allow fallback"
                )
            return None
        return route[0].name

    def _wait_passed(self, pending: _pipelined_wait.PendingWait, seconds: float) -> None:
        self.cluster._applied.record(pending.node, pending.token)
        self._router.wait_passed(pending.node, pending.token)

    def _causal_wait(self, name: str, token: str) -> bool:
        """Wait (bounded) until replica *name* applied *token*; False: read elsewhere."""
        applied = self.cluster._applied
        if applied.covers(name, token):
            return True  # seen applied there (a wait, or the monitor's probe): no round trip
        timeout = self.cluster.causal_timeout
        if not may_wait(token, name, self.cluster.topology):
            return False  # a binlog position of another primary, or none known: the primary
        try:
            ok = self._wait_applied(self._replica_connection(name), token, timeout)
        except self.Database.Error as exc:
            if self.is_replica_unusable(exc):
                self._drop_replica(name)
                self.cluster.mark_down(name, f"causal wait failed: {describe_error(exc)}")
            else:
                log.warning(
                    "causal wait on %s failed (%s); reading from the primary",
                    name,
                    describe_error(exc),
                )
            return False
        if ok:
            applied.record(name, token)
        else:
            log.info(
                "replica %s has not applied %s within %.2fs; reading from the primary",
                name,
                token,
                timeout,
            )
        return ok

    # ------------------------------------------------------------------ cursors and routing

    def create_cursor(self, name: str | None = None) -> RoutingCursor:
        return RoutingCursor(self)

    def _cursor(self, name: str | None = None) -> Any:
        # Django's version connects first; the primary connection opens only when needed.
        if self.connection is None and not self.in_atomic_block:
            # What connect() would reset: a transaction cut by a lost connection is over.
            self.needs_rollback = False
            self.closed_in_transaction = False
        self.close_if_health_check_failed()
        return self._prepare_cursor(self.create_cursor(name))

    def _in_transaction(self) -> bool:
        return bool(
            self.in_atomic_block
            or self._raw_txn
            or (self.connection is not None and not self.autocommit)
        )

    def _enter_scope(self, scope: CausalScope | None) -> None:
        """A new request (causal scope) runs on this thread's wrapper: its causal state is the
        request's, not what an earlier request of another user left on the thread."""
        self._seen_scope = scope
        if scope is None:
            return
        router = self._router
        if router.pinned or router.read_only_node is not None or self._in_transaction():
            return  # the connection carries state the new router would not know of
        token = scope.tokens.get(self.alias)
        self._router = self._new_router(token)
        self._scope_token = token
        self._pending_token = False

    def _sync_scope_token(self) -> None:
        """Adopt the causal token the running request carries (middleware, causal_scope())."""
        scope = current_scope()
        if scope is not self._seen_scope:
            self._enter_scope(scope)
        if scope is None:
            return
        token = scope.tokens.get(self.alias)
        if token and token != self._scope_token:
            self._scope_token = token
            if self.cluster.read_your_writes is ReadYourWrites.GTID:
                self._router.committed(token)

    def _run(
        self,
        rc: RoutingCursor,
        method: str,
        query: str,
        args: Any,
        *,
        raw_name: str | None = None,
    ) -> Any:
        c = classify(query, self.sql_dialect) if isinstance(query, str) else None
        if self._ro_block or read_only_requested(self.alias):
            why = _read_only_violation(c)
            if why is not None:
                raise django_error(
                    RoutingError(
                        f"{why} inside rwsplit.django.read_only(): the block may only read "
                        "(its atomic() may run on a replica); nothing was sent; run this "
                        "statement outside the read_only() block"
                    )
                ) from None
        self._sync_scope_token()
        requested = "primary" if self._in_transaction() or forced_primary(self.alias) else None
        if (
            self._pending_token
            and requested is None
            and c is not None
            and c.target is Target.REPLICA
        ):
            self._resolve_token()  # the read must wait for this connection's own last write
        attempts = 0
        healed = False
        reruns = 0
        while True:
            try:
                d = self._router.route(c, requested)
            except RwSplitError as exc:
                raise django_error(exc) from None
            node = self._last_node if d.route is Route.LAST else d.node
            if d.route is Route.PRIMARY or node is None:
                return self._run_primary(rc, method, query, args, c, raw_name)
            started = time.monotonic()
            try:
                cursor = rc.cursor_for(node)
                result = self._execute_read(cursor, method, query, args, node, d.wait_token)
            except _pipelined_wait.WaitMissed as exc:
                log.info("%s; reading from the primary", exc)
                self._router.wait_missed()
                continue
            except RwSplitError as exc:
                raise django_error(exc) from None
            except self.Database.Error as exc:
                if not healed and d.retryable and self.is_read_only_rejection(exc):
                    healed = True
                    self._heal(node, exc, query)
                    continue
                if d.retryable and reruns < self.read_reruns and self.is_read_cancelled(exc):
                    # The replica stays in routing; the read runs again on a new connection.
                    reruns += 1
                    log.warning(
                        "replica %s cancelled a read (%s); running it again",
                        node,
                        describe_error(exc),
                    )
                    rc.forget(node)
                    self._drop_replica(node)
                    continue
                if not self.is_replica_unusable(exc):
                    raise
                rc.forget(node)
                self._drop_replica(node)
                if self.cluster.read_timed_out(node, exc, time.monotonic() - started):
                    # A slow statement, not a dead replica: not re-run, not ejected.
                    if self._ro_replica == node:
                        self._router.end_transaction()
                        self.needs_rollback = True
                    raise django_error(
                        ReadFailedError(
                            f"a read on replica {node} did not answer within "
                            f"replica_read_timeout ({describe_error(exc)}); a slow statement is "
                            "not a dead replica: it was not re-run elsewhere, and the replica "
                            "stays in routing. Raise replica_read_timeout for long reads (or "
                            "run them on the primary: use_primary())"
                        ),
                        exc,
                    ) from None
                self.cluster.mark_down(node, f"read failed: {describe_error(exc)}")
                self._router.read_failed(node)
                if self._ro_replica == node:
                    # The read-only transaction (its snapshot) died with the connection: the
                    # block cannot go on elsewhere; Django refuses its further statements.
                    self._router.end_transaction()
                    self.needs_rollback = True
                    raise django_error(
                        ReadFailedError(
                            f"replica {node} failed inside a read_only() atomic() block "
                            f"({describe_error(exc)}); its read-only transaction is gone: "
                            "retry the whole block"
                        ),
                        exc,
                    ) from None
                attempts += 1
                if not d.retryable or attempts > len(self.cluster.topology.nodes):
                    raise django_error(
                        ReadFailedError(
                            f"a read on replica {node} failed ({describe_error(exc)}) and could "
                            "not be re-run elsewhere; retry it"
                        ),
                        exc,
                    ) from None
                log.warning(
                    "read on %s failed (%s); retrying on another node", node, describe_error(exc)
                )
                continue
            rc._current = cursor
            self._last_node = node
            self.routed[node] = self.routed.get(node, 0) + 1
            return result

    def _run_primary(
        self,
        rc: RoutingCursor,
        method: str,
        query: str,
        args: Any,
        c: Classification | None,
        raw_name: str | None,
    ) -> Any:
        cursor = rc.cursor_for(None)
        if self._router.wrote and (
            not self._in_transaction() or raw_name is not None or may_commit(query)
        ):
            # This statement commits what was written (autocommit, DDL, COMMIT, CALL ...).
            try:
                self._check_still_writable()
            except db_utils.Error:
                rc.forget(None)
                raise
        try:
            if raw_name is not None:
                result = cursor.callproc(raw_name, args)
            else:
                result = getattr(cursor, method)(query, args)
        except self.Database.Error as exc:
            if self.is_connection_failure(exc) or (
                # In a read_only() block the primary refuses a write as read-only because the
                # transaction is: not a demoted primary.
                self.is_read_only_rejection(exc) and not self._ro_block
            ):
                rc.forget(None)
                raise self._primary_failed(
                    exc, c, None if raw_name is not None else query
                ) from None
            raise
        rc._current = cursor
        self._last_node = None
        name = self._primary_node or "primary"
        self.routed[name] = self.routed.get(name, 0) + 1
        flags = c.flags if c is not None else Flag(0)
        if flags & Flag.TXN_BEGIN and not self.in_atomic_block:
            self._raw_txn = True  # a raw START TRANSACTION / BEGIN in autocommit mode
        elif flags & Flag.TXN_END and self._raw_txn:
            self._raw_txn = False
            self._statement_committed()
        elif not self._in_transaction():
            self._statement_committed()  # autocommit: the statement was its own transaction
        return result

    def _check_still_writable(self) -> None:
        """Before what this transaction wrote commits: is the primary still writable, on the
        server? The SQLAlchemy side's check (``Cluster._check_still_writable``), one round
        trip. A connection kept across requests (``CONN_MAX_AGE``) was checked only when it
        opened; the node may have been fenced since (another process failed over), and an
        account with ``SUPER`` writes through ``read_only=ON``. Refused: rolled back, the
        connection dropped, the cluster re-probed, and ``RetryableWriteError`` raised."""
        conn: Any = self.connection
        name = self._primary_node
        if conn is None or name is None or self.closed_in_transaction:
            return
        try:
            self.cluster._refuse_commit_if_fenced(name, conn, self._drop_primary)
        except RwSplitError as exc:
            raise django_error(exc) from None

    def _statement_committed(self) -> None:
        if self._router.wrote:
            if self._primary_epoch != self.cluster.primary_epoch:
                self._router.end_transaction()
                raise django_error(self._stale_commit())
            self._wrote_committed()
        self._router.end_transaction()

    def _stale_commit(self) -> TransactionOutcomeUnknownError:
        return TransactionOutcomeUnknownError(
            f"the commit answered from {self._primary_node}, which stopped being the primary "
            "while the transaction ran (a failover): the transaction may exist only on the "
            "old primary; check on the current primary before retrying it"
        )

    def _primary_failed(
        self, exc: BaseException, c: Classification | None, query: str | None
    ) -> Exception:
        """The primary connection failed under a statement: say whether a retry is safe.

        *query* ``None``: a ``callproc()``, which may commit like any ``CALL``.
        """
        name = self._primary_node or "the primary"
        reason = describe_error(exc)
        in_txn = self._in_transaction()
        is_read = c is not None and c.target is Target.REPLICA
        # DDL, CALL, EXECUTE, SET autocommit=1 ... commit by themselves (the lexer reads
        # through comments and executable comments): a lost reply leaves that unknown.
        commits = not isinstance(query, str) or may_commit(query)
        rejected = self.is_read_only_rejection(exc)
        if rejected and self._primary_node is not None:
            self.cluster.mark_not_primary(self._primary_node)
        self._drop_primary()
        log.warning("statement on primary %s failed (%s); refreshing the topology", name, reason)
        self.cluster.refresh_soon()
        err: RwSplitError
        if rejected:
            err = RetryableWriteError(
                f"{name} refused the statement as read-only ({reason}): it is no longer the "
                "primary; nothing was written: retry the whole unit of work"
            )
        elif commits or (not in_txn and not is_read):
            err = TransactionOutcomeUnknownError(
                f"the primary {name} failed while committing ({reason}): the transaction may "
                "or may not have been committed; check before retrying it"
            )
        elif is_read and not in_txn:
            err = ReadFailedError(f"a read on the primary {name} failed ({reason}): retry it")
        else:
            err = RetryableWriteError(
                f"the primary {name} failed ({reason}) before anything was committed: the "
                "transaction was rolled back; retry the whole unit of work"
            )
        return django_error(err, exc)

    def _heal(self, node: str, exc: BaseException, query: str) -> None:
        self.healed += 1
        log.warning(
            "replica %s refused a statement as read-only (%s); re-running it on the primary: %s",
            node,
            describe_error(exc),
            _loggable(query),
        )
        self._router.heal_next()

    # ------------------------------------------------------------------ read your writes

    def _wrote_committed(self) -> None:
        mode = self.cluster.read_your_writes
        if mode is ReadYourWrites.PRIMARY:
            self._router.committed(None)
        elif mode is ReadYourWrites.GTID:
            self._pending_token = True
            if current_scope() is not None:
                self._resolve_token()  # the request must be able to send it back

    def _resolve_token(self) -> None:
        """Read the causal token of this connection's last commit (lazily: one round trip)."""
        self._pending_token = False
        conn = self.connection
        if conn is None or self.closed_in_transaction:
            return
        token = self._take_commit_token(conn)
        if token is None:
            return
        self._router.committed(token)
        self._scope_token = token
        scope = current_scope()
        if scope is not None:
            scope.update(self.alias, token)

    # ------------------------------------------------------------------ read-only atomic()

    def get_autocommit(self) -> bool:
        if self._ro_block:
            return False
        if (
            self.connection is None
            and not self.in_atomic_block
            and self.settings_dict["AUTOCOMMIT"]
            and read_only_requested(self.alias)
        ):
            return True  # what connect() would set: a read-only block need not open the primary
        result: bool = super().get_autocommit()
        return result

    def set_autocommit(
        self, autocommit: bool, force_begin_transaction_with_broken_autocommit: bool = False
    ) -> None:
        if self._ro_block and autocommit:
            self.validate_no_atomic_block()
            on_replica = self._ro_replica is not None
            self._ro_block = False
            self._ro_replica = None
            self._router.end_transaction()
            if not on_replica:
                super().set_autocommit(True)
            elif getattr(self, "run_commit_hooks_on_set_autocommit_on", False):
                # What Django's set_autocommit(True) does after a commit: on_commit() hooks.
                self.run_and_clear_commit_hooks()
                self.run_commit_hooks_on_set_autocommit_on = False
            return
        if (
            not autocommit
            and not self._ro_block
            and not self.in_atomic_block
            and self.settings_dict["AUTOCOMMIT"]
            and read_only_requested(self.alias)
            and not self._in_transaction()
            and self._router.read_only_node is None
        ):
            self.validate_no_atomic_block()
            self._begin_read_only_block(force_begin_transaction_with_broken_autocommit)
            return
        super().set_autocommit(autocommit, force_begin_transaction_with_broken_autocommit)

    def _begin_read_only_block(self, force_begin: bool) -> None:
        """Open the outermost ``atomic()`` of a ``read_only()`` block: ``START TRANSACTION
        READ ONLY`` on the replica the router picks (after its causal wait), else Django's own
        transaction on the primary (no replica can take it, ``use_primary()``, pinned)."""
        self._sync_scope_token()
        if self._pending_token:
            self._resolve_token()  # the snapshot must include this connection's last write
        requested = "primary" if forced_primary(self.alias) else None
        attempts = 0
        while True:
            try:
                d = self._router.route(self.start_read_only, requested)
            except RwSplitError as exc:
                raise django_error(exc) from None
            node = d.node
            if d.route is not Route.REPLICA or node is None:
                self._router.end_transaction()  # Django's own transaction follows
                super().set_autocommit(False, force_begin)
                try:
                    with (
                        self.wrap_database_errors,
                        contextlib.closing(self._primary_connection().cursor()) as cursor,
                    ):
                        # The primary enforces it too (a write the classifier missed).
                        cursor.execute(self.primary_snapshot)
                except BaseException:
                    # atomic() did not open: leave the connection as it was.
                    with contextlib.suppress(Exception):
                        super().set_autocommit(True)
                    raise
                self._ro_block = True
                return
            try:
                conn = self._replica_connection(node)
                with contextlib.closing(conn.cursor()) as cursor:
                    for statement in self.replica_snapshot:
                        cursor.execute(statement)
            except self.Database.Error as exc:
                self._router.end_transaction()
                if not self.is_replica_unusable(exc):
                    with self.wrap_database_errors:
                        raise
                self._drop_replica(node)
                self.cluster.mark_down(node, f"read failed: {describe_error(exc)}")
                self._router.read_failed(node)
                attempts += 1
                if attempts > len(self.cluster.topology.nodes):
                    raise django_error(
                        ReadFailedError(
                            f"no replica could open the read-only transaction (last: {node}, "
                            f"{describe_error(exc)}); retry it"
                        ),
                        exc,
                    ) from None
                log.warning(
                    "read-only transaction on %s failed to start (%s); trying another node",
                    node,
                    describe_error(exc),
                )
                continue
            self._ro_block = True
            self._ro_replica = node
            self.routed[node] = self.routed.get(node, 0) + 1
            return

    def _end_replica_transaction(self, statement: str) -> None:
        node = self._ro_replica
        self._router.end_transaction()
        conn = self._replicas.get(node) if node is not None else None
        if conn is None:
            return  # lost with its connection: the server ended it
        try:
            with contextlib.closing(conn.cursor()) as cursor:
                cursor.execute(statement)
        except self.Database.Error as exc:
            # A read-only transaction changed nothing: ending it cannot lose data, and the
            # reads it served stand. The connection is not reused.
            log.warning(
                "%s of the read-only transaction on %s failed: %s",
                statement,
                node,
                describe_error(exc),
            )
            assert node is not None
            self._drop_replica(node)
            if self.is_replica_unusable(exc):
                self.cluster.mark_down(node, f"{statement} failed: {describe_error(exc)}")

    # Savepoints inside a read_only() block: nothing in it can change data (only plain reads
    # pass) and plain reads take no locks, so rolling back to a savepoint has nothing to undo:
    # they are no-ops (no round trip, and no SAVEPOINT sent through the write screen).

    def _savepoint(self, sid: str) -> None:
        if not self._ro_block:
            super()._savepoint(sid)

    def _savepoint_rollback(self, sid: str) -> None:
        if not self._ro_block:
            super()._savepoint_rollback(sid)

    def _savepoint_commit(self, sid: str) -> None:
        if not self._ro_block:
            super()._savepoint_commit(sid)

    # ------------------------------------------------------------------ transactions, closing

    def _commit(self) -> None:
        if self._ro_replica is not None:
            self._end_replica_transaction("COMMIT")
            return
        wrote = self._router.wrote
        if wrote:
            self._check_still_writable()
        try:
            super()._commit()
        except db_utils.Error as exc:
            cause = exc.__cause__
            if cause is not None and self.is_connection_failure(cause):
                name = self._primary_node
                self._drop_primary()
                self.cluster.refresh_soon()
                raise django_error(
                    TransactionOutcomeUnknownError(
                        f"the primary {name} failed while committing ({describe_error(cause)}): "
                        "the transaction may or may not have been committed; check before "
                        "retrying it"
                    ),
                    cause,
                ) from None
            raise
        if wrote:
            self._statement_committed()
        else:
            self._router.end_transaction()

    def _rollback(self) -> None:
        if self._ro_replica is not None:
            self._end_replica_transaction("ROLLBACK")
            return
        try:
            super()._rollback()
        finally:
            self._router.end_transaction()
            self._raw_txn = False

    def close(self) -> None:
        if self._ro_replica is not None and self.in_atomic_block and self.connection is None:
            # Django's close() does nothing without a (primary) connection, and calls it
            # inside blocks (temporary_connection() for the server's version): the read-only
            # block's transaction lives on a replica connection, which stays.
            return
        if self._pending_token:
            self._resolve_token()
        # Closed inside a read_only() atomic() block: its transaction ends with the connections
        # (Django's atomic() exit then skips set_autocommit(), which would end the block).
        ro_on_replica = self._ro_replica is not None
        if self._ro_block:
            self._ro_block = False
            self._ro_replica = None
            self._router.end_transaction()
        try:
            super().close()
        except db_utils.Error:
            # The socket was already gone (a failed primary): nothing to hand back.
            if not self.in_atomic_block:
                self.connection = None
        finally:
            if self.connection is None:
                self._router.release()
                self._raw_txn = False
            self._close_replicas()
            if ro_on_replica and self.in_atomic_block:
                # Django marks a transaction closed only when the primary was connected:
                # this one lived on a replica; Django now refuses the block's statements.
                self.closed_in_transaction = True
                self.needs_rollback = True

    def close_if_unusable_or_obsolete(self) -> None:
        super().close_if_unusable_or_obsolete()
        at = self._replica_close_at
        if self._replicas and at is not None and time.monotonic() >= at:
            self._close_replicas()
