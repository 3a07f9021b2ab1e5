"""The :class:`RoutingSession`: SQLAlchemy's ``Session`` on a :class:`~rwsplit.Cluster`.

The decisions live in the framework-neutral :class:`rwsplit.router.Router`; this module maps
them onto SQLAlchemy through its documented hooks:

* :meth:`RoutingSession.get_bind` chooses the bind of every statement;
* the ``do_orm_execute`` event re-runs a read whose replica failed (on another node) and a
  statement a replica refused as read-only (on the primary, *self-healing*);
* ``after_commit`` / ``after_transaction_end`` tell the router a unit of work ended.

**The session's primary connection.** Like any SQLAlchemy session it takes a pooled primary
connection for a transaction and hands it back when the transaction ends — unless the session
is *pinned* (session state, a named lock, a temporary table ...): then it keeps that
connection across commits and rollbacks until the pin is released or the session closes. A
connection that may carry session state is reset (or discarded), not returned as is,
and the next session gets the server's defaults (docs/classification.md, "Connection
hygiene"). Sessions that set no state pay nothing for this.

**Commits that cannot lie.** A commit that returns from a node that stopped being the primary
while the transaction ran (a failover, a hung primary that came back) raises
:class:`~rwsplit.TransactionOutcomeUnknownError` instead of reporting success.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql.elements import TextClause

# What a driver's error code means: shared with the Django backend.
from .. import _pipelined_wait
from .._server_errors import CONNECTION_LOST_CODES as _CONNECTION_LOST_CODES
from .._server_errors import READ_ONLY_CODES as _READ_ONLY_CODES
from .._server_errors import REPLICA_UNUSABLE_CODES as _REPLICA_UNUSABLE_CODES
from ..errors import (
    ConfigurationError,
    NoReplicaAvailableError,
    NotPrimaryError,
    ReadFailedError,
    RetryableWriteError,
    TransactionOutcomeUnknownError,
)
from ..routing.classify import Classification, Flag, Target, classify_clause
from ..routing.consistency import ReadYourWrites, may_wait, read_commit_token, wait_for_token
from ..routing.router import EXECUTION_OPTION, Decision, Route, Router, check_request
from ..servers import MariaDB, MySQL
from ..servers import postgresql as _pg
from ..topology.model import node_name
from . import _sa_compat

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["EXECUTION_OPTION", "RoutingSession", "healed_statements"]

log = logging.getLogger("rwsplit.session")

# Key in a replica DBAPI connection's ``info``: an explicit transaction is open on it.
_OPEN_TXN = "rwsplit_open_transaction"

_PRIMARY_DECISION = Decision(Route.PRIMARY)
_MARIADB = MariaDB()
_MYSQL = MySQL()

_healed_lock = threading.Lock()
_healed: weakref.WeakKeyDictionary[Cluster, int] = weakref.WeakKeyDictionary()


def healed_statements(cluster: Cluster) -> int:
    """How many statements a replica rejected as read-only and rwsplit re-ran on the primary.

    A number above zero means the classifier sent a write to a replica (a stored function that
    writes, a wrong ``rwsplit:replica`` hint): look for the ``rwsplit.session`` warnings naming
    the statements, and route them to the primary.

    >>> from rwsplit import Cluster
    >>> with Cluster("mysql+pymysql://u:p@db1/app") as cluster:
    ...     healed_statements(cluster)
    0
    """
    return _healed.get(cluster, 0)


def _code(exc: BaseException) -> int | None:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args: tuple[object, ...] = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _is_postgresql(exc: BaseException) -> bool:
    # A psycopg / asyncpg error (or SQLAlchemy's wrapper of one): PostgreSQL's SQLSTATEs apply.
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    module = type(orig).__module__
    return module.startswith(("psycopg", "asyncpg")) or "postgresql" in module


def is_read_only_rejection(exc: BaseException) -> bool:
    """True when *exc* is a server refusing a statement because it is read-only."""
    if _code(exc) in _READ_ONLY_CODES:
        return True
    return _is_postgresql(exc) and _pg.is_read_only_rejection(exc)


def is_connection_failure(exc: BaseException) -> bool:
    """True when *exc* means the server or the connection to it is gone."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if _code(exc) in _CONNECTION_LOST_CODES:
        return True
    return _is_postgresql(exc) and _pg.is_connection_lost(exc)


def is_replica_unusable(exc: BaseException) -> bool:
    """True when *exc* means this replica cannot serve reads now (gone, refusing, full)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if _code(exc) in _REPLICA_UNUSABLE_CODES:
        return True
    return _is_postgresql(exc) and _pg.is_replica_unusable(exc)


class RoutingSession(Session):
    """A :class:`sqlalchemy.orm.Session` that sends writes to the primary and reads to replicas.

    Create it with :meth:`Cluster.session` or :meth:`Cluster.sessionmaker`.

    >>> from rwsplit import Cluster
    >>> cluster = Cluster("mysql+pymysql://u:p@db1/app", ["mysql+pymysql://u:p@db2/app"])
    >>> with cluster.session() as session:
    ...     with session.use_primary():
    ...         pass  # every statement here runs on the primary
    >>> cluster.close()
    """

    def __init__(self, cluster: Cluster, *, causal_token: str | None = None, **kwargs: Any) -> None:
        if kwargs.get("bind") is not None or kwargs.get("binds"):
            raise ConfigurationError(
                "RoutingSession chooses its binds itself; do not pass bind= or binds="
            )
        super().__init__(**kwargs)
        self.cluster = cluster
        self._router = Router(
            self._choose_replica,
            self._causal_wait,
            read_your_writes=cluster.read_your_writes,
            sticky_window=cluster.sticky_window,
            causal_token=causal_token,
            defer_wait=self._defer_wait,
        )
        self._rw_conn: Connection | None = None  # the primary connection kept while pinned
        self._rw_conn_engine: Engine | None = None
        self._rw_txn_engine: Engine | None = None  # primary engine this transaction runs on
        self._rw_txn_epoch: int | None = None  # primary epoch when it began there
        self._rw_bind_epoch: int | None = None  # primary epoch when its engine was chosen
        self._rw_pick: Engine | None = None  # engine of the replica the balancer just chose
        self._rw_last_bind: Engine | Connection | None = None
        self._rw_read_node: str | None = None  # replica of the retryable read in flight
        self._rw_replica_node: str | None = None  # replica of any statement in flight
        self._rw_ro_opened = False  # the statement in flight opens START TRANSACTION READ ONLY
        self.healed = 0
        """Statements of this session a replica rejected as read-only, re-run on the primary."""

    # ------------------------------------------------------------------ public controls

    @contextmanager
    def use_primary(self) -> Iterator[RoutingSession]:
        """Run every statement of the block on the primary (nestable).

        It wins over a statement's own ``rwsplit_target="replica"``.
        """
        with self._router.use_primary():
            yield self

    @property
    def on_primary(self) -> bool:
        """True when the next statement would go to the primary whatever it is."""
        return self._router.on_primary

    @property
    def causal_token(self) -> str | None:
        """The GTID of this session's last committed write (``None`` before any).

        Pass it to ``cluster.session(causal_token=...)`` in a later request to read your
        writes there too (``read_your_writes="gtid"``).
        """
        return self._router.causal_token

    @property
    def pins(self) -> frozenset[str]:
        """Why this session is pinned to its primary connection (empty when it is not).

        ``"session state"`` (a ``SET``/``USE``/user variable; lasts until the session is
        closed), or a connection-bound resource (``"named lock"``, ``"LOCK TABLES"``,
        ``"HANDLER h"``, ``"prepared statement s"``, ``"temporary table t"``) until released.
        Pins survive commits and rollbacks.
        """
        return self._router.pins

    @property
    def in_read_only_transaction(self) -> bool:
        """True inside ``START TRANSACTION READ ONLY`` running on a replica."""
        return self._router.read_only_node is not None

    @property
    def read_only_node(self) -> str | None:
        """The replica running this session's ``START TRANSACTION READ ONLY``, if any."""
        return self._router.read_only_node

    @property
    def last_classification(self) -> Classification | None:
        """How the most recent statement was classified (for debugging and tests)."""
        return self._router.last_classification

    def close(self) -> None:
        """Close the session (see :meth:`sqlalchemy.orm.Session.close`) and drop its pins.

        Its primary connection goes back to the pool, reset first if it carried state.
        """
        super().close()
        self._rw_release()

    def reset(self) -> None:
        """Reset the session (see :meth:`sqlalchemy.orm.Session.reset`) and drop its pins."""
        super().reset()
        self._rw_release()

    def invalidate(self) -> None:
        """Invalidate the session's connections and drop its pins."""
        conn = self._rw_conn
        super().invalidate()
        if conn is not None and not conn.closed:
            conn.invalidate()
        self._rw_release()

    def commit(self) -> None:
        """Commit (see :meth:`sqlalchemy.orm.Session.commit`).

        :raises TransactionOutcomeUnknownError: the primary changed while the transaction ran
            (its commit answered from a node that is no longer the primary).
        """
        epoch = self._rw_txn_epoch
        engine = self._rw_txn_engine
        wrote = self._router.wrote
        super().commit()
        if wrote and epoch is not None and epoch != self.cluster.primary_epoch:
            self._stale_commit(engine)

    def _stale_commit(self, engine: Engine | None) -> None:
        host = node_name(engine.url) if engine is not None else "?"
        raise TransactionOutcomeUnknownError(
            f"the commit answered from {host}, which stopped being the primary while the "
            "transaction ran (a failover, or a primary that stalled): the transaction may exist "
            "only on the old primary; check on the current primary before retrying it"
        )

    # ------------------------------------------------------------------ routing

    def get_bind(
        self,
        mapper: Any = None,
        *,
        clause: Any = None,
        bind: Any = None,
        **kw: Any,
    ) -> Engine | Connection:
        if bind is not None:
            return bind  # type: ignore[no-any-return]
        requested = kw.get(EXECUTION_OPTION)
        if requested is not None:
            check_request(requested, "bind argument")
        elif clause is not None:
            get_options = getattr(clause, "get_execution_options", None)
            if get_options is not None:
                requested = get_options().get(EXECUTION_OPTION)
                if requested is not None:
                    check_request(requested, "statement execution option")
        c = classify_clause(clause, self.cluster.sql_dialect) if clause is not None else None
        self._rw_read_node = None
        self._rw_replica_node = None
        self._rw_ro_opened = False
        router = self._router
        d = router.route(c, requested)
        cluster = self.cluster
        stats = cluster._stats
        if d.route is Route.REPLICA:
            stats.routed(d.node, "reads")  # type: ignore[arg-type]
            if cluster._routing != "normal":  # shadow / primary: counted, run on the primary
                self._rw_pick = None
                d = _PRIMARY_DECISION
        else:
            name = cluster.primary_name
            if name is not None:
                if c is None or c.target is not Target.REPLICA:
                    stats.routed(name, "writes")
                elif requested == "primary" or router.forced:
                    stats.routed(name, "forced")
                else:
                    stats.routed(name, "reads")
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s -> %s (%s)",
                _statement_text(clause, 80) if clause is not None else "flush/connection",
                d.node or d.route.value,
                c.reason if c is not None else "may write",
            )
        result = self._bind_for(d)
        self._rw_last_bind = result
        if d.wait_token is not None:
            self._carry_wait(result, d)
        return result

    def _bind_for(self, d: Decision) -> Engine | Connection:
        route = d.route
        if route is Route.REPLICA:
            node = d.node
            assert node is not None
            engine = self._rw_pick
            if engine is None or not d.retryable:
                engine = self.cluster.engine_for(node, writable=False)
            self._rw_pick = None
            self._rw_replica_node = node
            if d.retryable:
                self._rw_read_node = node
            if d.opens_read_only:
                _watch_open_transactions(engine)
                self._rw_ro_opened = True
            return engine
        if route is Route.LAST and self._rw_last_bind is not None:
            return self._rw_last_bind
        return self._primary_bind()

    def _primary_bind(self) -> Engine | Connection:
        """The primary's engine, or the session's own connection to it while pinned."""
        # The epoch is read before the engine: opening a connection can take as long as the
        # node stalls (a hung or cut-off primary), and a failover published meanwhile must
        # still count as "the primary changed while the transaction ran" (see _after_begin).
        self._rw_bind_epoch = self.cluster.primary_epoch
        engine = self.cluster.write_engine()
        conn = self._rw_conn
        if conn is not None:
            if self._rw_conn_engine is engine and not conn.invalidated:
                return conn
            self._primary_changed(conn)
        txn_engine = self._rw_txn_engine
        if txn_engine is not None and txn_engine is not engine:
            self._transaction_primary_changed(txn_engine)
        return engine

    def _transaction_primary_changed(self, old: Engine) -> None:
        """This transaction began on a node that is no longer the primary."""
        router = self._router
        if router.wrote or router.sticky:
            # Close its socket: the old node rolls back what was open; the session transaction
            # must be rolled back by the application.
            _sa_compat.drop_connection(self, old)
            raise RetryableWriteError(
                "the primary changed during this transaction; nothing of it was committed: "
                "roll back and retry the whole unit of work"
            )
        _sa_compat.drop_connection(self, old)  # it only read there: go on on the new primary
        self._rw_txn_engine = None
        self._rw_txn_epoch = None

    def _primary_changed(self, conn: Connection) -> None:
        """The pinned connection's node stopped being the primary (or the connection died)."""
        router = self._router
        pins = ", ".join(sorted(router.pins))
        self._rw_conn = None
        self._rw_conn_engine = None
        in_txn = conn.in_transaction()
        with contextlib.suppress(Exception):
            if not conn.invalidated:
                conn.invalidate()  # closes the socket: the old node rolls back what was open
            if not in_txn:
                conn.close()
        router.connection_lost()
        raise RetryableWriteError(
            f"the primary changed (or the connection holding this session's state was lost): "
            f"the session state pinned to it ({pins}) is gone; roll back, set it again and "
            "retry"
        )

    def _adopt_primary_connection(self) -> None:
        """A pin started: keep this transaction's primary connection past its end."""
        engine = self._rw_txn_engine
        if engine is None:
            return
        conn = _sa_compat.keep_connection(self, engine)
        if conn is not None:
            self._rw_conn = conn
            self._rw_conn_engine = engine

    def _rw_release(self) -> None:
        """The session let go of its connections: hand its own primary connection back."""
        conn = self._rw_conn
        self._rw_conn = None
        self._rw_conn_engine = None
        if conn is not None:
            _release(conn)
        self._router.release()
        self._rw_txn_engine = None
        self._rw_txn_epoch = None
        self._rw_last_bind = None

    def _end_transaction(self) -> None:
        """The top-level transaction ended: keep the primary connection only while pinned."""
        router = self._router
        router.end_transaction()
        self._rw_txn_engine = None
        self._rw_txn_epoch = None
        conn = self._rw_conn
        if self._rw_last_bind is not conn:
            self._rw_last_bind = None
        if conn is None or (router.pinned and not conn.invalidated):
            return
        self._rw_conn = None
        self._rw_conn_engine = None
        self._rw_last_bind = None
        _release(conn)

    # ------------------------------------------------------------------ replicas

    def _choose_replica(self) -> str | None:
        route = self.cluster.read_route()
        if route is None:
            self._rw_pick = None
            if not self.cluster.fallback_to_primary:
                raise NoReplicaAvailableError(
                    "no replica can take reads (all down or lagging) and "
                    "fallback_to_primary=False; bring a replica back, or allow fallback"
                )
            return None
        node, engine = route
        self._rw_pick = engine
        return node.name

    def _causal_wait(self, name: str, token: str) -> bool:
        """Wait (bounded) until replica *name* has applied *token*; False: read elsewhere."""
        cluster = self.cluster
        if cluster._routing != "normal":
            return True  # shadow / primary: the read runs on the primary, touch no replica
        applied = cluster._applied
        if applied.covers(name, token):
            return True  # a wait of this process already saw it applied there: no round trip
        if not cluster.family.owns_token(token):
            _foreign_token(cluster.family.name, token)
            return False  # a token of another server family: no wait can prove it
        if not may_wait(token, name, cluster.topology):
            return False  # a binlog position of another primary, or none known: the primary
        engine = self._rw_pick or cluster.engine_for(name, writable=False)
        timeout = cluster.causal_timeout
        started = time.monotonic()
        try:
            conn = self.connection(bind_arguments={"bind": engine})
            ok = wait_for_token(conn, token, timeout)
            cluster._stats.causal_wait(name, time.monotonic() - started, ok)
        except Exception as exc:
            # The wait runs on the driver's cursor: its errors arrive unwrapped.
            if not isinstance(exc, DBAPIError | _driver_errors(engine)):
                raise
            if is_replica_unusable(exc):
                _sa_compat.drop_connection(self, engine)
                self.cluster.mark_down(name, f"causal wait failed: {_short(exc)}")
            else:
                log.warning(
                    "causal wait on %s failed (%s); reading from the primary", name, _short(exc)
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

    def _defer_wait(self, name: str, token: str) -> bool:
        """Can the wait for *token* travel with the plain read on *name* (one round trip)?"""
        cluster = self.cluster
        if cluster._routing != "normal" or cluster._applied.covers(name, token):
            return False  # _causal_wait answers at once: no wait at all
        if not cluster.family.owns_token(token):
            return False  # _causal_wait sends the read to the primary
        if not may_wait(token, name, cluster.topology):
            return False  # _causal_wait sends the read to the primary
        engine = self._rw_pick or cluster.engine_for(name, writable=False)
        # Not plain GTID text (a binary log position): wait first, as a bound parameter.
        return _pipelined_wait.pipelined(engine) and _pipelined_wait.is_gtid_text(token)

    def _carry_wait(self, engine: Engine | Connection, d: Decision) -> None:
        """Arm the wait for the read about to run on *engine*: sent in front of it."""
        token, node = d.wait_token, d.node
        assert token is not None and node is not None and isinstance(engine, Engine)
        # Check the connection out first: a new one's set-up queries must not carry the wait,
        # and the server's flavour is known from then on.
        self.connection(bind_arguments={"bind": engine})
        dialect = _MARIADB if getattr(engine.dialect, "is_mariadb", False) else _MYSQL
        sql = dialect.wait_before_read(token, self.cluster.causal_timeout)
        assert sql is not None
        _pipelined_wait.PENDING.set(
            _pipelined_wait.PendingWait(engine, node, token, sql, self._wait_passed)
        )

    def _wait_passed(self, pending: _pipelined_wait.PendingWait, seconds: float) -> None:
        cluster = self.cluster
        cluster._stats.causal_wait(pending.node, seconds, True)
        cluster._applied.record(pending.node, pending.token)
        self._router.wait_passed(pending.node, pending.token)

    def _wait_missed(self, exc: _pipelined_wait.WaitMissed) -> None:
        self._router.wait_missed()
        if exc.code != _pipelined_wait.WAIT_MISSED_CODE:
            log.warning(
                "causal wait on %s failed (error %s); reading from the primary", exc.node, exc.code
            )
            return
        self.cluster._stats.causal_wait(exc.node, self.cluster.causal_timeout, False)
        log.info(
            "replica %s has not applied %s within %.2fs; reading from the primary",
            exc.node,
            exc.token,
            self.cluster.causal_timeout,
        )

    # ------------------------------------------------------------------ execution (do_orm_execute)

    def _rw_execute(self, state: ORMExecuteState) -> Any:
        """Run *state*'s statement; re-run a failed read elsewhere, a refused one on the primary."""
        attempts = 0
        conflicts = 0
        healed = False
        redirected = False
        router = self._router
        while True:
            started = time.monotonic()
            try:
                try:
                    result = state.invoke_statement()
                finally:
                    _pipelined_wait.PENDING.set(None)
            except _pipelined_wait.WaitMissed as exc:
                # The wait sent with the read timed out; the read did not run there.
                self._wait_missed(exc)
                continue
            except NotPrimaryError:
                # The node taken for the primary said it is not one; the cluster was probed
                # at once (Cluster._check_is_primary): go to the primary it found, once.
                if redirected:
                    raise
                redirected = True
                continue
            except RetryableWriteError as exc:
                self._refused_read(exc)
                raise
            except ReadFailedError as exc:
                if router.wrote or router.sticky:
                    raise RetryableWriteError(
                        f"{exc} — and this transaction had written: its uncommitted writes "
                        "were rolled back with it; retry the whole unit of work"
                    ) from exc
                raise
            except DBAPIError as exc:
                node = self._rw_replica_node
                if node is None:
                    raise
                if not healed and self._rw_read_node and is_read_only_rejection(exc):
                    healed = True
                    self._heal(state.statement, node, exc)
                    continue
                if (
                    self._rw_read_node
                    and conflicts < _MAX_CONFLICT_RERUNS
                    and _is_postgresql(exc)
                    and _pg.is_recovery_conflict(exc)
                ):
                    conflicts += 1
                    self._recovery_conflict(node, exc)
                    continue
                if not is_replica_unusable(exc):
                    raise
                engine = self.cluster.engine_for(node, writable=False)
                _sa_compat.drop_connection(self, engine)
                orig = exc.orig if exc.orig is not None else exc
                if self.cluster.read_timed_out(node, orig, time.monotonic() - started):
                    raise ReadFailedError(
                        f"a read on replica {node} did not answer within replica_read_timeout "
                        f"({_short(exc)}); a slow statement is not a dead replica: it was not "
                        "re-run elsewhere, and the replica stays in routing. Raise "
                        "replica_read_timeout for long reads (or run them on the primary: "
                        "session.use_primary(), bounded by primary_read_timeout)"
                    ) from exc
                self.cluster._stats.routed(node, "retried")
                self.cluster.mark_down(node, f"read failed: {_short(exc)}")
                router.read_failed(node)
                attempts += 1
                if self._rw_read_node is None or attempts > len(self.cluster.topology.nodes):
                    raise ReadFailedError(
                        f"a read on replica {node} failed ({_short(exc)}) and could not be "
                        "re-run elsewhere"
                        + (
                            " (it was inside START TRANSACTION READ ONLY: retry the transaction)"
                            if self._rw_read_node is None
                            else "; retry it once a replica or the primary is back"
                        )
                    ) from exc
                log.warning("read on %s failed (%s); retrying on another node", node, _short(exc))
                continue
            if self._rw_replica_node is not None:
                if self._rw_ro_opened:
                    self._mark_open_transaction()
            else:
                if router.pinned and self._rw_conn is None:
                    self._adopt_primary_connection()
                self._check_text_commit()
            return result

    def _refused_read(self, exc: RetryableWriteError) -> None:
        """The primary refused a new connection (too many connections) for a plain read of a
        session that has not written: a read failed, not a write (nothing was sent)."""
        router = self._router
        c = router.last_classification
        cause = exc.__cause__
        if (
            cause is None
            or router.wrote
            or router.sticky
            or c is None
            or c.target is not Target.REPLICA
            or not self.cluster.family.is_connection_refused(cause)
        ):
            return
        name = self.cluster.primary_name or "?"
        raise ReadFailedError(
            f"a read on the primary {name} failed: the primary refused a new connection "
            f"({_short(cause)}): it is alive but has no connection slot free; nothing was "
            "sent: retry the read after a short back-off (reads that may go to a replica "
            "are sent to one when a replica can take them)"
        ) from cause

    def _check_text_commit(self) -> None:
        """A ``COMMIT`` sent as SQL text must not answer from a node that is no longer primary."""
        c = self._router.last_classification
        if c is None or not c.flags or not c.flags & Flag.TXN_END:
            return
        epoch = self._rw_txn_epoch
        if epoch is not None and epoch != self.cluster.primary_epoch:
            self._stale_commit(self._rw_txn_engine)

    def _recovery_conflict(self, node: str, exc: DBAPIError) -> None:
        """Replay on standby *node* cancelled the read (a lock or a vacuum it had to apply):
        the read delivered nothing and ran on an autocommit connection, so it runs again, on a
        new connection to the node the balancer picks next; the standby stays in routing."""
        # A fresh connection: replay may go on to terminate the cancelled backend (FATAL
        # "terminating connection due to conflict with recovery"), under the re-run.
        _sa_compat.drop_connection(self, self.cluster.engine_for(node, writable=False))
        self.cluster._stats.routed(node, "retried")
        self._router.read_failed(node)
        log.info("read on standby %s cancelled by recovery (%s); re-running it", node, _short(exc))

    def _heal(self, statement: Any, node: str, exc: DBAPIError) -> None:
        """A replica refused *statement* as read-only: count it and re-run it on the primary."""
        self.healed += 1
        self.cluster._stats.routed(node, "healed")
        with _healed_lock:
            _healed[self.cluster] = _healed.get(self.cluster, 0) + 1
        log.warning(
            "replica %s refused a statement as read-only (%s); re-running it on the primary: %s",
            node,
            _short(exc),
            _statement_text(statement),
        )
        self._router.heal_next()

    def _mark_open_transaction(self) -> None:
        """Flag the replica connection that now holds an explicit read-only transaction.

        Replica engines skip the rollback on return to the pool (they are autocommit); the
        pool ``reset`` listener (:func:`_watch_open_transactions`) ends a flagged transaction
        there, so nothing stays open whatever way the session ends.
        """
        self._rw_ro_opened = False
        node = self._router.read_only_node
        if node is not None:
            engine = self.cluster.engine_for(node, writable=False)
            self.connection(bind_arguments={"bind": engine}).info[_OPEN_TXN] = True

    def _capture_token(self) -> str | None:
        engine = self._rw_txn_engine
        conn = self._rw_conn if self._rw_conn is not None else None
        if conn is None and engine is not None:
            conn = _sa_compat.transaction_connection(self, engine)
        if conn is None or conn.closed or conn.invalidated:
            return None
        return read_commit_token(conn)


_MAX_CONFLICT_RERUNS = 2
"""Re-runs of one read that recovery conflicts cancelled on standbys (PostgreSQL)."""

_foreign_logged: set[str] = set()


def _foreign_token(family: str, token: str) -> None:
    if family not in _foreign_logged:
        _foreign_logged.add(family)
        log.warning(
            "a session of a %s cluster was given the causal token %r of another kind of server "
            "(a cookie from another cluster?); its reads after the write go to the primary",
            family,
            token[:40],
        )


def _release(conn: Connection) -> None:
    """Give *conn* back to its pool (which resets it if it carried session state)."""
    try:
        conn.close()
    except Exception:  # a dead connection: nothing to hand back
        log.debug("releasing the primary connection failed", exc_info=True)


def _driver_errors(engine: Engine) -> type[BaseException] | tuple[()]:
    """The DBAPI module's base exception of *engine* (``()``: none known)."""
    error = getattr(getattr(engine.dialect, "loaded_dbapi", None), "Error", None)
    return error if isinstance(error, type) and issubclass(error, BaseException) else ()


def _short(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args: tuple[object, ...] = getattr(orig, "args", ())
    if len(args) >= 2:
        return f"{args[0]}: {args[1]}"
    if _is_postgresql(exc):  # psycopg / asyncpg: the SQLSTATE and the server's first line
        first = (str(orig).strip().splitlines() or [""])[0]
        state = _pg.sqlstate(orig)
        return f"{state or type(orig).__name__}: {first}" if first else type(orig).__name__
    return type(orig).__name__


_STRING_RE = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"")
_SECRET_RE = re.compile(r"PASSWORD|IDENTIFIED|ENC\(", re.IGNORECASE)


def _statement_text(statement: Any, limit: int = 300) -> str:
    """The SQL of *statement* for a log line: never bound parameters, never passwords."""
    if isinstance(statement, TextClause):
        sql = statement.text
    else:
        try:
            sql = str(statement)  # compiled with placeholders: parameters are not rendered
        except Exception:  # an uncompilable construct: name it instead
            sql = f"<{type(statement).__name__}>"
    if _SECRET_RE.search(sql):
        sql = _STRING_RE.sub("'***'", sql)
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[:limit] + " ..."


_watch_lock = threading.Lock()


def _end_open_transaction(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    # Pool "reset" (return to the pool): end a read-only transaction left open on a replica
    # connection, which skips its rollback because it is autocommit.
    if record is not None and record.info.pop(_OPEN_TXN, False):
        dbapi_connection.rollback()


def _watch_open_transactions(engine: Engine) -> None:
    if not event.contains(engine, "reset", _end_open_transaction):
        with _watch_lock:
            if not event.contains(engine, "reset", _end_open_transaction):
                event.listen(engine, "reset", _end_open_transaction)


@event.listens_for(RoutingSession, "do_orm_execute")
def _do_orm_execute(state: ORMExecuteState) -> Any:
    session = state.session
    if not isinstance(session, RoutingSession):
        return None
    # session.execute(..., execution_options={"rwsplit_target": ...}) reaches get_bind through
    # the bind arguments; an explicit bind argument wins.
    requested = state.local_execution_options.get(EXECUTION_OPTION)
    if requested is not None and EXECUTION_OPTION not in state.bind_arguments:
        check_request(requested, "execution option of the call")
        state.bind_arguments[EXECUTION_OPTION] = requested
    return session._rw_execute(state)


@event.listens_for(RoutingSession, "after_commit")
def _after_commit(session: Session) -> None:
    if not isinstance(session, RoutingSession) or session.in_nested_transaction():
        return
    router = session._router
    if not router.wrote:
        return  # nothing written: nothing new to wait for
    token = None
    if session.cluster.read_your_writes is ReadYourWrites.GTID:
        token = session._capture_token()
    router.committed(token)


@event.listens_for(RoutingSession, "after_begin")
def _after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    if not isinstance(session, RoutingSession) or transaction.parent is not None:
        return
    engine = connection.engine
    if session._rw_txn_engine is None and session.cluster.is_write_engine(engine):
        session._rw_txn_engine = engine
        # The epoch when this engine was chosen, not now: the connection may have been opened
        # across a failover (its handshake waited on the stalled old primary, so it was not
        # among the connections cut), and a commit it answers must not be reported as a
        # success (issue 17: the fence released it from a semi-sync wait).
        bound = session._rw_bind_epoch
        session._rw_txn_epoch = bound if bound is not None else session.cluster.primary_epoch


@event.listens_for(RoutingSession, "after_transaction_end")
def _end_of_unit_of_work(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and isinstance(session, RoutingSession):
        session._end_transaction()
