"""Read-your-writes across transactions.

Inside one transaction a session that wrote stays on the primary (sticky after write). After
it commits, its next reads would go to a replica that may not have applied the write yet: the
classic hole of hand-written read/write splitting (an ORM object expired on commit and
reloaded from a lagging replica shows the old value). rwsplit closes it in one of two ways:

``"gtid"`` (default)
    Causal reads. After a commit that wrote, the session records the primary's GTID of that
    commit (MariaDB ``@@last_gtid``; MySQL ``@@global.gtid_executed``). Before its next read
    on a replica the session waits, on that replica, until the GTID is applied
    (``MASTER_GTID_WAIT`` / ``WAIT_FOR_EXECUTED_GTID_SET``) for at most ``causal_timeout``
    seconds, then reads there; if the replica does not get there in time, the read goes to
    the primary. A replica known to have caught up is not asked again. The token travels
    between sessions (``session.causal_token`` → ``cluster.session(causal_token=...)``), e.g.
    in a cookie from a POST to the GET it redirects to.
``"primary"``
    After a commit that wrote, the session reads from the primary for ``sticky_window``
    seconds. No extra round trips; more load on the primary.
``"off"``
    Nothing: reads after a commit may be stale.

Cost of ``"gtid"``: on MariaDB through PyMySQL the commit's GTID arrives in the ``COMMIT``'s own
OK packet (session tracking); elsewhere one round trip after each commit that wrote. Then the
first plain read on each replica carries the wait in its own round trip (one multi-statement,
:mod:`rwsplit._pipelined_wait`; other drivers and read-only transactions: one round trip
before it), and none where the replica is known to have applied the token. Sessions that only
read pay nothing.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection, Engine

from .._gtid_track import take_commit_gtid

if TYPE_CHECKING:
    from ..topology.model import Topology

__all__ = ["AppliedTokens", "ReadYourWrites", "read_commit_token", "wait_for_token"]

log = logging.getLogger("rwsplit.consistency")


class ReadYourWrites(enum.Enum):
    """How a session sees its own committed writes on later reads."""

    GTID = "gtid"
    PRIMARY = "primary"
    OFF = "off"

    @classmethod
    def coerce(cls, value: ReadYourWrites | str) -> ReadYourWrites:
        """``"gtid"`` / ``"primary"`` / ``"off"`` (or the enum) → the enum; else ValueError.

        >>> ReadYourWrites.coerce("gtid")
        <ReadYourWrites.GTID: 'gtid'>
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(
                f"read_your_writes must be one of 'gtid', 'primary', 'off'; got {value!r}"
            ) from None


def _is_mariadb(engine: Engine) -> bool:
    return bool(getattr(engine.dialect, "is_mariadb", True))


def read_commit_token(conn: Connection) -> str | None:
    """The GTID of the commit just made on *conn* (a primary connection), or ``None``.

    On MariaDB through PyMySQL the GTID comes from the ``COMMIT``'s own OK packet (session
    tracking, :mod:`rwsplit._gtid_track`): no round trip. Otherwise, or when that packet
    carried none, ``SELECT @@last_gtid`` runs on the raw DBAPI connection, which holds no
    transaction at this point, so SQLAlchemy does not begin one on *conn*.
    """
    engine = conn.engine
    try:
        dbapi_connection = conn.connection.dbapi_connection
    except Exception:  # a closed or invalidated connection: no token
        return None
    token = take_commit_gtid(dbapi_connection)  # MariaDB + PyMySQL: the COMMIT's OK packet
    if token is not None:
        return token
    query = "SELECT @@last_gtid" if _is_mariadb(engine) else "SELECT @@global.gtid_executed"
    try:
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(query)
            row = cursor.fetchone()
        finally:
            cursor.close()
    except Exception as exc:  # the commit succeeded; a lost token only costs freshness
        log.warning("could not read the commit's GTID on %s: %s", engine.url.host, exc)
        return None
    token = row[0] if row else None
    return str(token) if token else None


def wait_for_token(conn: Connection, token: str, timeout: float) -> bool:
    """Wait on a replica connection until *token* is applied; True if it was in time.

    Raises the driver's own exceptions (not SQLAlchemy's wrappers).
    """
    if _is_mariadb(conn.engine):
        sql = "SELECT MASTER_GTID_WAIT(%s, %s)"
        done = 0
    else:
        sql = "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"
        done = 0
    # On the driver's cursor, not exec_driver_sql: half the client CPU of the round trip
    # (the replica connection is autocommit; nothing of SQLAlchemy's state is involved).
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, (token, timeout))
        row = cursor.fetchone()
    finally:
        cursor.close()
    return row is not None and row[0] == done


def _mariadb_gtids(token: str) -> list[tuple[int, int, int]] | None:
    """``"0-1-5,1-2-9"`` → ``[(0, 1, 5), (1, 2, 9)]``; ``None`` for anything else (MySQL)."""
    out = []
    for part in token.split(","):
        fields = part.strip().split("-")
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            return None
        out.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return out or None


class AppliedTokens:
    """What this process knows each replica has applied: skip a wait it would not need.

    A ``MASTER_GTID_WAIT`` that returned in time proves the replica applied that GTID, and
    with it every earlier GTID of the same replication domain (a domain is applied in
    order; the wait itself relies on that). A later token of the same domain and server
    with an equal or lower sequence number is then applied there too: no round trip. Only
    MariaDB GTIDs. Knowledge is kept for :attr:`MAX_AGE` seconds (a replica rebuilt from an
    older backup under the same address must not be trusted for long), dropped for a
    replica that leaves routing (down, role change) and for all when the primary changes
    (:meth:`forget`).

    >>> applied = AppliedTokens()
    >>> applied.record("db2:3306", "0-1-10"); applied.covers("db2:3306", "0-1-9")
    True
    >>> applied.covers("db2:3306", "0-1-11"), applied.covers("db3:3306", "0-1-9")
    (False, False)
    """

    MAX_AGE = 2.0
    """Seconds a seen position stays trusted."""

    __slots__ = ("_clock", "_lock", "_nodes")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[tuple[int, int], tuple[int, float]]] = {}

    def covers(self, node: str, token: str) -> bool:
        """True when *node* is known (recently) to have applied *token*."""
        seen = self._nodes.get(node)
        if not seen:
            return False
        gtids = _mariadb_gtids(token)
        if gtids is None:
            return False
        oldest = self._clock() - self.MAX_AGE
        for domain, server, seq in gtids:
            known = seen.get((domain, server))
            if known is None or known[0] < seq or known[1] < oldest:
                return False
        return True

    def record(self, node: str, token: str) -> None:
        """*node* applied *token* (a wait for it returned in time)."""
        gtids = _mariadb_gtids(token)
        if gtids is None:
            return
        now = self._clock()
        with self._lock:
            seen = dict(self._nodes.get(node, {}))  # copy: readers take no lock
            for domain, server, seq in gtids:
                known = seen.get((domain, server))
                # A newer position, or the same one seen again (it stays trusted longer).
                if known is None or known[0] <= seq:
                    seen[(domain, server)] = (seq, now)
            self._nodes[node] = seen

    def record_probed(self, topology: Topology) -> None:
        """Record each healthy replica's GTID position as the monitor's last probe read it.

        A replica's applied position only moves forward while it keeps its data; one that is
        rebuilt or reset leaves routing first (unhealthy, another role: :meth:`forget`), and
        :attr:`MAX_AGE` bounds the rest, as for positions a wait proved. So a causal token
        that a probe already showed applied (typically one carried from an earlier request)
        takes the read with no wait at all.
        """
        for node in topology.replicas:
            if node.healthy and node.gtid_position:
                self.record(node.name, node.gtid_position)

    def forget(self, node: str | None = None) -> None:
        """Drop what is known of *node* (``None``: of every node)."""
        with self._lock:
            if node is None:
                self._nodes.clear()
            else:
                self._nodes.pop(node, None)
