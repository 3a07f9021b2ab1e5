"""The routing state of one unit of work, independent of any framework.

A :class:`Router` answers one question per statement — *primary, a replica (which one), or
the connection of the previous statement?* — and remembers what that answer implies for the
statements that follow: a write or a lock makes the rest of the transaction stay on the
primary (*sticky*), session state and connection-bound resources *pin* the session to its
primary connection, ``START TRANSACTION READ ONLY`` keeps one replica connection, and a commit
that wrote arms read-your-writes for later reads.

It knows nothing of SQLAlchemy sessions or Django connections: the adapters
(:class:`rwsplit.RoutingSession`, the async session, the Django backend) map its
:class:`Decision` onto their connections and report back what happened (commit, rollback,
close, a failed read). That keeps every rule in one place, and tested once.

Override precedence, strongest first (docs/classification.md has the table):

1. a statement that writes never goes to a replica, whatever asked for it;
2. an open ``START TRANSACTION READ ONLY`` on a replica keeps its statements there;
3. sticky-after-write and pins: the unit of work stays on the primary connection;
4. ``use_primary()`` blocks;
5. per-call requests (``bind_arguments`` / ``execution_options`` of the call), then the
   statement's own execution option, then a comment hint;
6. the classifier.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import ConfigurationError, RoutingError
from .classify import Classification, Flag, Target
from .consistency import ReadYourWrites

__all__ = ["EXECUTION_OPTION", "Decision", "Route", "Router", "may_carry_state"]

log = logging.getLogger("rwsplit.router")

EXECUTION_OPTION = "rwsplit_target"
"""Execution option (or bind argument) that overrides the classifier: ``"primary"`` or
``"replica"``.

>>> from sqlalchemy import select, literal
>>> stmt = select(literal(1)).execution_options(rwsplit_target="primary")
"""

PIN_SESSION_STATE = "session state"
# Locks a connection may hold several times (each release gives one back), and the resource
# that releases them all: MySQL's named locks (GET_LOCK), PostgreSQL's session advisory locks.
_COUNTED_LOCKS = frozenset({"named lock", "advisory lock"})
_ALL_LOCKS = {"all named locks": "named lock", "all advisory locks": "advisory lock"}
_VALID_REQUESTS = ("primary", "replica")


class Route(enum.Enum):
    """Where a :class:`Decision` sends a statement."""

    PRIMARY = "primary"
    REPLICA = "replica"
    LAST = "last"
    """The connection that ran the previous statement (``FOUND_ROWS()``, ``SHOW WARNINGS``)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one statement goes, and what the adapter must do around it."""

    route: Route
    node: str | None = None
    """For :attr:`Route.REPLICA`: the replica's name."""
    retryable: bool = False
    """An autocommit read: if its replica fails, it may be re-run elsewhere."""
    opens_read_only: bool = False
    """The statement opens ``START TRANSACTION READ ONLY`` on that replica."""
    wait_token: str | None = None
    """For a plain read: the token the adapter must wait for on that replica in the same round
    trip as the read (it said it could: ``defer_wait``), then report :meth:`Router.wait_passed`
    or :meth:`Router.wait_missed` (the read then runs on the primary)."""


_PRIMARY = Decision(Route.PRIMARY)
_LAST = Decision(Route.LAST)

ReplicaChooser = Callable[[], "str | None"]
"""Returns the replica that takes the next read (balancer, health, lag), or ``None``."""
CausalWait = Callable[[str, str], bool]
"""``wait(node, token)``: bounded wait until replica *node* applied *token*; False: too late."""
DeferWait = Callable[[str, str], bool]
"""``defer(node, token)``: True when the adapter will send the wait for *token* together with
the plain read on *node* (one round trip); False: wait first (``CausalWait``), or no wait."""


def may_carry_state(c: Classification) -> bool:
    """True when *c* may leave session state on its connection (it must not be reused as is).

    Session state, connection-bound resources, stored procedures (they may ``SET`` anything)
    and statements the classifier does not know (``DO``, ``SET TRANSACTION`` ...).
    """
    flags = c.flags
    if c.target is Target.ALL or flags & (Flag.SESSION_STATE | Flag.PIN):
        return True
    if c.target is Target.PRIMARY and not flags & (
        Flag.WRITE | Flag.LOCKING_READ | Flag.TXN_BEGIN | Flag.TXN_END | Flag.HINT
    ):
        return True
    return c.reason.startswith("CALL")


def check_request(requested: object, where: str) -> str:
    """Validate an ``rwsplit_target`` value; *where* names the form it came in."""
    if requested not in _VALID_REQUESTS:
        raise ConfigurationError(
            f"{EXECUTION_OPTION}={requested!r} ({where}) is not valid; use 'primary' or 'replica'"
        )
    return requested


class Router:
    """The routing state machine of one unit of work (a session, a Django connection).

    :param choose_replica: picks the replica for the next read (``None``: none readable).
    :param causal_wait: waits, bounded, until a replica applied a token.
    :param read_your_writes: the consistency policy after a commit that wrote.
    :param sticky_window: seconds of primary reads after a write (``"primary"`` policy).
    :param causal_token: a token from an earlier unit of work (a previous request).
    :param defer_wait: lets the adapter carry a plain read's wait along with the read.

    >>> r = Router(lambda: "db2:3306", lambda node, token: True)
    >>> from rwsplit.classify import classify
    >>> r.route(classify("SELECT 1")).node
    'db2:3306'
    >>> r.route(classify("UPDATE t SET a = 1")).route.value
    'primary'
    >>> r.route(classify("SELECT 1")).route.value   # sticky until the transaction ends
    'primary'
    >>> r.end_transaction(); r.route(classify("SELECT 1")).route.value
    'replica'
    """

    __slots__ = (
        "_causal_wait",
        "_choose",
        "_defer_wait",
        "_forced",
        "_heal",
        "_last",
        "_mode",
        "_pins",
        "_primary_next",
        "_primary_until",
        "_ro_node",
        "_sticky_window",
        "_token",
        "_token_seen",
        "last_classification",
        "sticky",
        "wrote",
    )

    def __init__(
        self,
        choose_replica: ReplicaChooser,
        causal_wait: CausalWait,
        *,
        read_your_writes: ReadYourWrites = ReadYourWrites.GTID,
        sticky_window: float = 2.0,
        causal_token: str | None = None,
        defer_wait: DeferWait | None = None,
    ) -> None:
        self._choose = choose_replica
        self._causal_wait = causal_wait
        self._defer_wait = defer_wait
        self._primary_next = False
        self._mode = read_your_writes
        self._sticky_window = sticky_window
        self.sticky = False
        """This transaction wrote, locked or began read-write: it stays on the primary."""
        self.wrote = False
        """This transaction ran something that may have changed data (arms read-your-writes)."""
        self._forced = 0
        self._pins: dict[str, int] = {}
        self._ro_node: str | None = None
        self._heal = False
        self._last: Decision | None = None
        self._token = causal_token
        self._token_seen: set[str] = set()
        self._primary_until = 0.0
        self.last_classification: Classification | None = None

    # ------------------------------------------------------------------ state, read-only views

    @property
    def pins(self) -> frozenset[str]:
        """Why the session is pinned to its primary connection (empty: it is not)."""
        return frozenset(self._pins)

    @property
    def forced(self) -> bool:
        """Inside a ``use_primary()`` block."""
        return bool(self._forced)

    @property
    def pinned(self) -> bool:
        return bool(self._pins)

    @property
    def on_primary(self) -> bool:
        """True when the next statement goes to the primary whatever it is."""
        return bool(self.sticky or self._forced or self._pins)

    @property
    def read_only_node(self) -> str | None:
        """The replica running this unit's ``START TRANSACTION READ ONLY``, if any."""
        return self._ro_node

    @property
    def causal_token(self) -> str | None:
        return self._token

    # ------------------------------------------------------------------ controls

    @contextmanager
    def use_primary(self) -> Iterator[None]:
        """Every statement of the block goes to the primary (nestable)."""
        self._forced += 1
        try:
            yield
        finally:
            self._forced -= 1

    def heal_next(self) -> None:
        """The replica refused the statement as read-only: its re-run goes to the primary."""
        self._heal = True

    # ------------------------------------------------------------------ the decision

    def route(self, c: Classification | None, requested: str | None = None) -> Decision:
        """Where the statement classified *c* goes (``None``: a flush, a bare connection).

        *requested* is an ``rwsplit_target`` override (already validated).
        """
        if self._heal:
            self._heal = False
            self.sticky = self.wrote = True
            return self._remember(_PRIMARY)
        if self._primary_next:
            self._primary_next = False  # the re-run of a read whose pipelined wait missed
            return self._remember(_PRIMARY)
        if c is None:
            # A flush, a bulk operation or session.connection(): it may write.
            self.sticky = self.wrote = True
            return self._remember(_PRIMARY)
        self.last_classification = c
        if self._ro_node is not None:
            return self._remember(self._in_read_only_transaction(c))
        target = c.target
        if target is Target.LAST:
            return self._last or _PRIMARY
        if requested == "primary" or self._forced:
            if requested == "primary" or target is not Target.REPLICA:
                self._track(c, forced=True)
            elif c.flags and c.flags & Flag.TXN_BEGIN:
                self.sticky = True
            return self._remember(_PRIMARY)
        if target is Target.REPLICA:
            # Plain reads have no flags: test truthiness first (Flag "&" is slow Python code).
            flags = c.flags
            if self.sticky or self._pins:
                if flags and flags & Flag.TXN_BEGIN:
                    self.sticky = True
                return self._remember(_PRIMARY)
            if flags and flags & Flag.TXN_READ_ONLY:
                return self._remember(self._begin_read_only())
            return self._remember(self._read(plain=not flags))
        if requested == "replica":
            raise RoutingError(
                f"{EXECUTION_OPTION}='replica' was requested for a statement that is not a "
                f"plain read ({c.reason}); writes never go to a replica"
            )
        self._track(c)
        return self._remember(_PRIMARY)

    def _remember(self, d: Decision) -> Decision:
        self._last = d
        return d

    def _track(self, c: Classification, *, forced: bool = False) -> None:
        """Record what a statement run on the primary leaves behind."""
        flags = c.flags
        if flags & Flag.SESSION_STATE or c.target is Target.ALL:
            self._pins[PIN_SESSION_STATE] = 1
        if flags & Flag.PIN and c.resource:
            self._pins[c.resource] = self._pins.get(c.resource, 0) + 1
        elif flags & Flag.UNPIN and c.resource:
            self._unpin(c.resource)
        if flags & (Flag.WRITE | Flag.LOCKING_READ | Flag.TXN_BEGIN) or (
            c.target is Target.PRIMARY and not flags & Flag.HINT
        ):
            self.sticky = True
            if not flags & Flag.TXN_BEGIN:
                self.wrote = True
        elif forced and c.target is not Target.REPLICA:
            # Forced to the primary and not known to be a plain read: treat it as a write.
            self.sticky = self.wrote = True

    def _unpin(self, resource: str) -> None:
        every = _ALL_LOCKS.get(resource)
        if every is not None:
            self._pins.pop(every, None)
            return
        held = self._pins.get(resource, 0)
        if held > 1 and resource in _COUNTED_LOCKS:
            self._pins[resource] = held - 1
        else:
            self._pins.pop(resource, None)

    # ------------------------------------------------------------------ reads

    def _read(self, *, plain: bool = False) -> Decision:
        if self._primary_until:
            if time.monotonic() < self._primary_until:
                return _PRIMARY  # read_your_writes="primary", inside the window
            self._primary_until = 0.0
        node = self._choose()
        if node is None:
            return _PRIMARY
        token = self._token
        if token is not None and node not in self._token_seen:
            # Only a plain read may carry its wait (a read-only transaction waits at its start).
            defer = self._defer_wait
            if plain and defer is not None and defer(node, token):
                return Decision(Route.REPLICA, node, retryable=True, wait_token=token)
            if not self._causal_wait(node, token):
                return _PRIMARY
            self._token_seen.add(node)
        return Decision(Route.REPLICA, node, retryable=True)

    def _begin_read_only(self) -> Decision:
        d = self._read()
        if d.route is not Route.REPLICA:
            # No replica can take it: the transaction runs on the primary like any other.
            self.sticky = True
            return d
        self._ro_node = d.node
        return Decision(Route.REPLICA, d.node, opens_read_only=True)

    def _in_read_only_transaction(self, c: Classification) -> Decision:
        node = self._ro_node
        here = Decision(Route.REPLICA, node)
        flags = c.flags
        if flags & Flag.TXN_END:
            self._ro_node = None
            return here
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
            self._ro_node = None
            if c.target is Target.REPLICA and flags & Flag.TXN_READ_ONLY:
                return self._begin_read_only()
            self._track(c)
            return _PRIMARY
        return here

    # ------------------------------------------------------------------ outcomes

    def wait_passed(self, node: str, token: str) -> None:
        """The wait sent with a read on *node* succeeded: later reads there need none."""
        if token == self._token:
            self._token_seen.add(node)

    def wait_missed(self) -> None:
        """The wait sent with a read did not succeed in time: its re-run goes to the primary."""
        self._primary_next = True

    def read_failed(self, node: str) -> None:
        """The read on *node* failed; the re-run must not count on that node's token."""
        self._token_seen.discard(node)

    def committed(self, token: str | None) -> None:
        """A top-level commit that wrote succeeded; *token* is its GTID (if known)."""
        if self._mode is ReadYourWrites.GTID:
            if token is not None:
                self._token = token
                self._token_seen.clear()
        elif self._mode is ReadYourWrites.PRIMARY:
            self._primary_until = time.monotonic() + self._sticky_window

    def end_transaction(self) -> None:
        """The top-level transaction ended (commit or rollback): stickiness ends, pins stay."""
        self.sticky = False
        self.wrote = False
        self._ro_node = None

    def release(self) -> None:
        """The unit of work let go of its connections (session closed): pins end too."""
        self.end_transaction()
        self._pins.clear()
        self._last = None

    def connection_lost(self) -> None:
        """The primary connection died: the state it held is gone."""
        self._pins.clear()
        self._last = None
