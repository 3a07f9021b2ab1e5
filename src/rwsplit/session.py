"""The :class:`RoutingSession` and the routing state of one unit of work.

Routing happens in :meth:`RoutingSession.get_bind`, SQLAlchemy's documented hook for choosing
an engine per statement. The rules, in order:

1. a ``use_primary()`` block, an ``rwsplit_target="primary"`` execution option, a pin (session
   state was set) or an earlier write in this transaction → primary;
2. ORM flushes and ``Insert``/``Update``/``Delete`` → primary, and the transaction stays there
   until it ends (*sticky after write*); so does a locking read (``with_for_update()``);
3. other ``Select``s and ``text()`` classified as reads → a replica chosen by the balancer;
4. everything else → primary (*unknown means primary*).

A read that fails because its replica went away is re-run once per remaining replica (and then
on the primary): the replica is taken out of routing and the application sees a result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction

from .classify import Classification, Flag, Target, classify_clause
from .consistency import ReadYourWrites, capture_token, wait_for_token

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["EXECUTION_OPTION", "RoutingSession"]

log = logging.getLogger("rwsplit.session")

EXECUTION_OPTION = "rwsplit_target"
"""Statement execution option that overrides the classifier: ``"primary"`` or ``"replica"``.

>>> from sqlalchemy import select, literal
>>> stmt = select(literal(1)).execution_options(rwsplit_target="primary")
"""

# MySQL client / server error codes that mean "this connection or server is gone".
_CONNECTION_LOST_CODES = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055})


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
        self._rw_pins: set[str] = set()  # reasons the whole session stays on the primary
        self._rw_last_bind: Engine | None = None
        self._rw_read_node: str | None = None  # replica chosen for the statement in flight
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
        """Why this session is pinned to the primary (empty when it is not)."""
        return frozenset(self._rw_pins)

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
        target = c.target
        if target is Target.REPLICA:
            if self._rw_sticky or self._rw_forced or self._rw_pins:
                return cluster.write_engine()
            return self._replica_engine()
        if target is Target.LAST:
            return self._rw_last_bind or cluster.write_engine()
        if target is Target.ALL:
            # Session state: pin to the primary so that every later statement sees it.
            self._rw_pins.add(c.reason)
        elif c.flags & (Flag.WRITE | Flag.LOCKING_READ) or target is Target.PRIMARY:
            self._rw_sticky = True
        return cluster.write_engine()

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
            if self._rw_sticky:
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
        while True:
            try:
                return super()._execute_internal(statement, params, **kw)
            except DBAPIError as exc:
                failed = self._rw_read_node
                if failed is None or not is_connection_failure(exc):
                    raise
                attempts += 1
                if attempts > len(self.cluster.topology.nodes):
                    raise
                self._forget_connection(self.cluster.engine_for(failed, writable=False))
                self.cluster.mark_down(failed, f"read failed: {_short(exc)}")
                log.warning("read on %s failed (%s); retrying on another node", failed, _short(exc))

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
