"""The :class:`RoutingSession` and the routing state of one unit of work.

Routing happens in :meth:`RoutingSession.get_bind`, SQLAlchemy's documented hook for choosing
an engine per statement. The rules, in order:

1. a ``use_primary()`` block, an ``rwsplit_target="primary"`` execution option, a pin (session
   state was set, or connection-bound state is held) or an earlier write in this transaction →
   primary;
2. ORM flushes and ``Insert``/``Update``/``Delete`` → primary, and the transaction stays there
   until it ends (*sticky after write*); so does a locking read (``with_for_update()``);
3. other ``Select``s and ``text()`` classified as reads → a replica chosen by the balancer;
4. everything else → primary (*unknown means primary*).

Session state (``SET``, ``USE``, user variables) *pins* the session to the primary until the
session is closed: every later statement runs where the state was set, so a variable set and
then read gives the same value. Connection-bound resources (a named lock, ``LOCK TABLES``, an
open ``HANDLER``, a prepared statement, a temporary table) pin it until they are released.
``START TRANSACTION READ ONLY`` runs on one replica connection until the transaction ends.

A read that fails because its replica went away is re-run once per remaining replica (and then
on the primary): the replica is taken out of routing and the application sees a result. A
statement a replica rejects because it is read-only is re-run once on the primary
(*self-healing*), logged and counted (:func:`healed_statements`).
"""

from __future__ import annotations

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
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.elements import TextClause

from .classify import Classification, Flag, Target, classify_clause
from .consistency import ReadYourWrites, capture_token, wait_for_token
from .errors import RoutingError

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["EXECUTION_OPTION", "RoutingSession", "healed_statements"]

log = logging.getLogger("rwsplit.session")

EXECUTION_OPTION = "rwsplit_target"
"""Statement execution option that overrides the classifier: ``"primary"`` or ``"replica"``.

>>> from sqlalchemy import select, literal
>>> stmt = select(literal(1)).execution_options(rwsplit_target="primary")
"""

# MySQL client / server error codes that mean "this connection or server is gone".
_CONNECTION_LOST_CODES = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055})

# Server errors that mean "this server / session is read-only": 1290 (--read-only and other
# options), 1792 (statement in a READ ONLY transaction), 1836 (read-only mode), 1874 (InnoDB
# read-only).
_READ_ONLY_CODES = frozenset({1290, 1792, 1836, 1874})

_PIN_SESSION_STATE = "session state"
_ALL_NAMED_LOCKS = "all named locks"
_NAMED_LOCK = "named lock"

# Key in a replica DBAPI connection's ``info``: an explicit transaction is open on it.
_OPEN_TXN = "rwsplit_open_transaction"

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


def is_read_only_rejection(exc: BaseException) -> bool:
    """True when *exc* is a server refusing a statement because it is read-only."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _READ_ONLY_CODES


def is_connection_failure(exc: BaseException) -> bool:
    """True when *exc* means the server or the connection to it is gone."""
    orig: object = exc
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and isinstance(args[0], int) and args[0] in _CONNECTION_LOST_CODES


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
            from .errors import ConfigurationError

            raise ConfigurationError(
                "RoutingSession chooses its binds itself; do not pass bind= or binds="
            )
        super().__init__(**kwargs)
        self.cluster = cluster
        self._rw_sticky = False  # this transaction wrote or locked: stay on the primary
        self._rw_forced = 0  # depth of use_primary() blocks
        self._rw_pins: dict[str, int] = {}  # why the whole session stays on the primary
        self._rw_last_bind: Engine | None = None
        self._rw_read_node: str | None = None  # replica chosen for the statement in flight
        self._rw_ro_engine: Engine | None = None  # replica running START TRANSACTION READ ONLY
        self._rw_ro_opened = False  # the statement in flight opens that transaction
        self._rw_heal = False  # re-run the statement in flight on the primary
        self.healed = 0
        """Statements of this session a replica rejected as read-only, re-run on the primary."""
        self.last_classification: Classification | None = None
        """How the most recent statement was classified (for debugging and tests)."""
        # Read-your-writes across transactions (see consistency.py).
        self._rw_token: str | None = causal_token
        self._rw_token_seen: set[str] = set()  # replicas known to have applied the token
        self._rw_primary_until = 0.0  # read_your_writes="primary": read there until then

    # ------------------------------------------------------------------ public controls

    @contextmanager
    def use_primary(self) -> Iterator[RoutingSession]:
        """Run every statement of the block on the primary (nestable)."""
        self._rw_forced += 1
        try:
            yield self
        finally:
            self._rw_forced -= 1

    @property
    def on_primary(self) -> bool:
        """True when the next statement would go to the primary whatever it is."""
        return bool(self._rw_sticky or self._rw_forced or self._rw_pins)

    @property
    def causal_token(self) -> str | None:
        """The GTID of this session's last committed write (``None`` before any).

        Pass it to ``cluster.session(causal_token=...)`` in a later request to read your
        writes there too (``read_your_writes="gtid"``).
        """
        return self._rw_token

    @property
    def pins(self) -> frozenset[str]:
        """Why this session is pinned to the primary (empty when it is not).

        ``"session state"`` (a ``SET``/``USE``/user variable; lasts until the session is
        closed), or a connection-bound resource (``"named lock"``, ``"LOCK TABLES"``,
        ``"HANDLER h"``, ``"prepared statement s"``, ``"temporary table t"``) until released.
        """
        return frozenset(self._rw_pins)

    @property
    def in_read_only_transaction(self) -> bool:
        """True inside ``START TRANSACTION READ ONLY`` running on a replica."""
        return self._rw_ro_engine is not None

    def close(self) -> None:
        """Close the session (see :meth:`sqlalchemy.orm.Session.close`) and drop its pins."""
        super().close()
        self._rw_reset_routing()

    def reset(self) -> None:
        """Reset the session (see :meth:`sqlalchemy.orm.Session.reset`) and drop its pins."""
        super().reset()
        self._rw_reset_routing()

    def invalidate(self) -> None:
        """Invalidate the session's connections and drop its pins."""
        super().invalidate()
        self._rw_reset_routing()

    def _rw_reset_routing(self) -> None:
        # The connections went back to the pool: the state they held is gone for this session.
        self._rw_pins.clear()
        self._rw_sticky = False
        self._rw_ro_engine = None
        self._rw_last_bind = None

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
        engine = self._route(clause, kw.get(EXECUTION_OPTION))
        self._rw_last_bind = engine
        return engine

    def _route(self, clause: Any, requested: str | None) -> Engine:
        cluster = self.cluster
        self._rw_read_node = None
        self._rw_ro_opened = False
        if self._rw_heal:
            # Self-healing: the replica refused this statement as read-only.
            self._rw_heal = False
            self._rw_sticky = True
            return cluster.write_engine()
        if clause is None:
            # A flush, a bulk operation or session.connection(): whatever runs there may write,
            # so the rest of the transaction stays on the primary too.
            self._rw_sticky = True
            return cluster.write_engine()
        if requested is None:
            options = getattr(clause, "_execution_options", None)
            if options:
                requested = options.get(EXECUTION_OPTION)
        if requested is not None:
            return self._route_requested(requested, clause)
        c = classify_clause(clause)
        self.last_classification = c
        if self._rw_ro_engine is not None:
            return self._route_in_read_only_transaction(c)
        target = c.target
        if target is Target.REPLICA:
            # Plain reads have no flags: test truthiness first (Flag "&" is slow Python code).
            flags = c.flags
            if self._rw_sticky or self._rw_forced or self._rw_pins:
                if flags and flags & Flag.TXN_BEGIN:
                    self._rw_sticky = True
                return cluster.write_engine()
            if flags and flags & Flag.TXN_READ_ONLY:
                return self._begin_read_only_transaction()
            return self._replica_engine()
        if target is Target.LAST:
            return self._rw_last_bind or cluster.write_engine()
        self._track_state(c)
        return cluster.write_engine()

    def _track_state(self, c: Classification) -> None:
        """Record what a statement run on the primary leaves behind: pins, an open transaction."""
        flags = c.flags
        if flags & Flag.SESSION_STATE or c.target is Target.ALL:
            # Session state is pinned, not replayed: every later statement runs on the
            # connection that holds it (see docs/classification.md).
            self._rw_pins[_PIN_SESSION_STATE] = 1
        if flags & Flag.PIN and c.resource:
            self._rw_pins[c.resource] = self._rw_pins.get(c.resource, 0) + 1
        elif flags & Flag.UNPIN and c.resource:
            self._unpin(c.resource)
        if flags & (Flag.WRITE | Flag.LOCKING_READ | Flag.TXN_BEGIN) or (
            c.target is Target.PRIMARY and not flags & Flag.HINT
        ):
            self._rw_sticky = True

    def _unpin(self, resource: str) -> None:
        if resource == _ALL_NAMED_LOCKS:
            self._rw_pins.pop(_NAMED_LOCK, None)
            return
        held = self._rw_pins.get(resource, 0)
        if held > 1 and resource == _NAMED_LOCK:
            self._rw_pins[resource] = held - 1
        else:
            self._rw_pins.pop(resource, None)

    # ------------------------------------------------------------------ read-only transactions

    def _begin_read_only_transaction(self) -> Engine:
        # The balancer and the read-your-writes policy choose the replica, as for any read.
        engine = self._replica_engine()
        if self._rw_read_node is None:
            # No replica can take it (none readable, or read-your-writes wants the primary):
            # the transaction runs on the primary like any other.
            self._rw_sticky = True
            return engine
        self._rw_read_node = None  # a transaction is never re-run on another node
        _watch_open_transactions(engine)
        self._rw_ro_engine = engine
        self._rw_ro_opened = True
        return engine

    def _route_in_read_only_transaction(self, c: Classification) -> Engine:
        """Inside ``START TRANSACTION READ ONLY`` on a replica: stay on its connection."""
        engine = self._rw_ro_engine
        assert engine is not None
        flags = c.flags
        if flags & Flag.TXN_END:
            self._rw_ro_engine = None
            return engine
        if flags & Flag.WRITE:
            raise RoutingError(
                f"a statement that writes ({c.reason}) cannot run inside "
                "START TRANSACTION READ ONLY; end the read-only transaction (COMMIT) first"
            )
        if flags & Flag.SESSION_STATE or c.target is Target.ALL:
            raise RoutingError(
                f"session state ({c.reason}) cannot be set inside START TRANSACTION READ ONLY, "
                "which runs on a replica; set it before the transaction starts"
            )
        if flags & Flag.TXN_BEGIN:
            # A new transaction implicitly ends the read-only one; route it afresh.
            self._rw_ro_engine = None
            return self._route_after_read_only(c)
        return engine

    def _route_after_read_only(self, c: Classification) -> Engine:
        if c.target is Target.REPLICA and c.flags & Flag.TXN_READ_ONLY:
            return self._begin_read_only_transaction()
        self._track_state(c)
        return self.cluster.write_engine()

    def _route_requested(self, requested: str, clause: Any) -> Engine:
        if requested == "primary":
            return self.cluster.write_engine()
        if requested == "replica":
            c = classify_clause(clause)
            if c.target is not Target.REPLICA:
                from .errors import RoutingError

                raise RoutingError(
                    f"{EXECUTION_OPTION}='replica' was requested for a statement that is not a "
                    f"plain read ({c.reason}); writes never go to a replica"
                )
            if self._rw_sticky or self._rw_pins:
                return self.cluster.write_engine()
            return self._replica_engine()
        from .errors import ConfigurationError

        raise ConfigurationError(
            f"execution option {EXECUTION_OPTION}={requested!r} is not valid; "
            "use 'primary' or 'replica'"
        )

    def _replica_engine(self) -> Engine:
        cluster = self.cluster
        if self._rw_primary_until and time.monotonic() < self._rw_primary_until:
            return cluster.write_engine()  # read_your_writes="primary", inside the window
        route = cluster.read_route()
        if route is None:
            return cluster.read_engine()  # fallback to the primary, or raise
        node, engine = route
        token = self._rw_token
        if (
            token is not None
            and node.name not in self._rw_token_seen
            and not self._caught_up(node.name, engine, token)
        ):
            return cluster.write_engine()
        self._rw_read_node = node.name
        return engine

    def _caught_up(self, name: str, engine: Engine, token: str) -> bool:
        """Wait (bounded) until replica *name* has applied *token*; False: read elsewhere."""
        try:
            conn = self.connection(bind_arguments={"bind": engine})
            ok = wait_for_token(conn, token, self.cluster.causal_timeout)
        except DBAPIError as exc:
            if is_connection_failure(exc):
                self._forget_connection(engine)
                self.cluster.mark_down(name, f"causal wait failed: {_short(exc)}")
            else:
                log.warning(
                    "causal wait on %s failed (%s); reading from the primary", name, _short(exc)
                )
            return False
        if ok:
            self._rw_token_seen.add(name)
        else:
            log.info(
                "replica %s has not applied %s within %.2fs; reading from the primary",
                name,
                token,
                self.cluster.causal_timeout,
            )
        return ok

    # ------------------------------------------------------------------ read retry

    def _execute_internal(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        attempts = 0
        healed = False
        while True:
            try:
                result = super()._execute_internal(statement, params, **kw)
            except DBAPIError as exc:
                failed = self._rw_read_node
                if failed is None:
                    raise
                if not healed and is_read_only_rejection(exc):
                    healed = True
                    self._heal(statement, failed, exc)
                    continue
                if not is_connection_failure(exc):
                    raise
                attempts += 1
                if attempts > len(self.cluster.topology.nodes):
                    raise
                self._forget_connection(self.cluster.engine_for(failed, writable=False))
                self.cluster.mark_down(failed, f"read failed: {_short(exc)}")
                log.warning("read on %s failed (%s); retrying on another node", failed, _short(exc))
                continue
            if self._rw_ro_opened:
                self._mark_open_transaction()
            return result

    def _heal(self, statement: Any, node: str, exc: DBAPIError) -> None:
        """A replica refused *statement* as read-only: count it and re-run it on the primary."""
        self.healed += 1
        with _healed_lock:
            _healed[self.cluster] = _healed.get(self.cluster, 0) + 1
        log.warning(
            "replica %s refused a statement as read-only (%s); re-running it on the primary: %s",
            node,
            _short(exc),
            _statement_text(statement),
        )
        self._rw_heal = True

    def _mark_open_transaction(self) -> None:
        """Flag the replica connection that now holds an explicit read-only transaction.

        Replica engines skip the rollback on return to the pool (they are autocommit); the
        pool ``reset`` listener (:func:`_watch_open_transactions`) ends a flagged transaction
        there, so nothing stays open whatever way the session ends.
        """
        self._rw_ro_opened = False
        engine = self._rw_ro_engine
        if engine is not None:
            self.connection(bind_arguments={"bind": engine}).info[_OPEN_TXN] = True

    def _forget_connection(self, engine: Engine) -> None:
        """Drop the dead connection to *engine* from this session's transaction.

        SQLAlchemy keeps one connection per engine for the life of a session transaction; a
        replica connection is autocommit and holds no transaction state, so removing it is
        safe, and lets the next read on that engine (after re-admission) connect afresh.
        """
        trans: SessionTransaction | None = self.get_transaction()
        while trans is not None:
            connections = getattr(trans, "_connections", None)
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


def _short(exc: DBAPIError) -> str:
    orig = exc.orig
    args: tuple[object, ...] = getattr(orig, "args", ())
    if len(args) >= 2:
        return f"{args[0]}: {args[1]}"
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


@event.listens_for(RoutingSession, "after_commit")
def _after_commit(session: Session) -> None:
    if not isinstance(session, RoutingSession) or not session._rw_sticky:
        return  # nothing written: nothing new to wait for
    mode = session.cluster.read_your_writes
    if mode is ReadYourWrites.GTID:
        primary = session.cluster._routes.primary
        trans = session.get_transaction()
        if primary is not None and trans is not None:
            token = capture_token(getattr(trans, "_connections", None), primary)
            if token is not None:
                session._rw_token = token
                session._rw_token_seen.clear()
    elif mode is ReadYourWrites.PRIMARY:
        session._rw_primary_until = time.monotonic() + session.cluster.sticky_window


@event.listens_for(RoutingSession, "after_transaction_end")
def _end_of_unit_of_work(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and isinstance(session, RoutingSession):
        session._rw_sticky = False
        session._rw_ro_engine = None
