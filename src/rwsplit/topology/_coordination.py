"""One failover at a time across every process and host: a named lock on most servers.

Every process that runs the failover (each gunicorn worker with ``auto_failover=True``, a
``rwsplit monitor`` on another host, an operator's ``rwsplit failover``) first takes the server
lock ``GET_LOCK('rwsplit_failover_<cluster id>', 0)`` on the cluster's servers, each on a
dedicated connection held for the whole operation, and goes on only if it holds it on a
majority of them. This is MariaDB MaxScale's *cooperative monitoring*
(``cooperative_monitoring_locks = majority_of_running | majority_of_all``) without the
"primary monitor" role: the lock is taken only when the topology is about to change.

Why it is safe: a server grants a named lock to one connection at a time, and any two
majorities of one set of servers share a server. A process that dies releases its locks with
its connections (the server ends them), so a crash half-way lets the next process finish the
job. Locks are not replicated (``SELECT GET_LOCK`` is not written to the binary log), so each
server's lock is independent, and the lock needs no privilege.

Acquisition runs in node-name order and stops at the first lock another connection holds:
two processes starting together then do not each take half of the locks (which would leave
neither with a majority); the one that got the first lock wins.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pymysql
from sqlalchemy.engine import URL

from .probe import describe_error

__all__ = ["Acquired", "FailoverLock", "LockTarget", "MajorityLock", "lock_name"]

log = logging.getLogger("rwsplit.failover")

QUORUMS = ("majority_of_running", "majority_of_all")

_Id = TypeVar("_Id")
_Conn = TypeVar("_Conn")
_Lock = TypeVar("_Lock", bound="MajorityLock[Any, Any]")


def lock_name(cluster_id: str) -> str:
    """The server lock's name (MariaDB/MySQL allow 64 characters).

    >>> lock_name("shop")
    'rwsplit_failover_shop'
    """
    return ("rwsplit_failover_" + cluster_id)[:64]


@dataclass(frozen=True)
class LockTarget:
    """A server to take the lock on: its node name, URL and extra PyMySQL arguments (TLS)."""

    name: str
    url: URL = field(repr=False)
    connect_args: Mapping[str, Any] = field(default_factory=dict, repr=False)


class Acquired(enum.Enum):
    """The outcome of :meth:`FailoverLock.acquire`."""

    HELD = "held"
    """Held on a majority: this process may change the topology."""
    BUSY = "busy"
    """Another connection holds it on some server: another process is at work."""
    NO_QUORUM = "no quorum"
    """Too few servers answer for a majority: nobody may change the topology."""


class MajorityLock(abc.ABC, Generic[_Id, _Conn]):
    """The majority-lock protocol both server families share (see the module docstring):
    acquire in node-name order, stop at the first busy server, count a quorum, confirm,
    release. A subclass supplies only the server calls (:meth:`_open`, :meth:`_try_lock`,
    :meth:`_is_mine`, :meth:`_unlock`, :meth:`_describe`). Not thread-safe.

    :param lock: what the servers know the lock by (:attr:`FailoverLock.name`,
        :attr:`~rwsplit.topology._pg_coordination.PgFailoverLock.key`).
    :param targets: every server of the cluster (a server known dead may be left out; with
        ``majority_of_all`` it still counts in the total through *total*).
    :param quorum: ``"majority_of_running"`` (of the servers that answer) or
        ``"majority_of_all"`` (of every server, also those that are down).
    :param total: the number of servers in the cluster (``majority_of_all``); defaults to
        ``len(targets)``.
    :param timeout: connect / read timeout of the lock connections, seconds.
    """

    _lock_call = "the lock"
    """The server function that takes the lock, as log messages name it."""

    def __init__(
        self,
        lock: _Id,
        targets: Sequence[LockTarget],
        *,
        quorum: str = "majority_of_running",
        total: int | None = None,
        timeout: float = 2.0,
    ) -> None:
        if quorum not in QUORUMS:
            raise ValueError(f"quorum must be one of {', '.join(QUORUMS)}, got {quorum!r}")
        self.lock = lock
        self.targets = sorted(targets, key=lambda t: t.name)
        self.quorum = quorum
        self.total = max(total or 0, len(self.targets))
        self.timeout = timeout
        self.held: list[str] = []
        """Servers on which this process holds the lock now."""
        self.running: list[str] = []
        """Servers that answered the last :meth:`acquire`."""
        self.busy_on: str | None = None
        """The server where another connection held the lock (after ``BUSY``)."""
        self._conns: dict[str, _Conn] = {}

    # ------------------------------------------------------------------ the server calls

    @abc.abstractmethod
    def _open(self, target: LockTarget) -> _Conn:
        """A new autocommit connection to *target* (raises when it cannot connect)."""

    @abc.abstractmethod
    def _try_lock(self, conn: _Conn) -> bool:
        """Take the lock on *conn*'s server without waiting; False: another session holds it."""

    @abc.abstractmethod
    def _is_mine(self, conn: _Conn) -> bool:
        """Whether *conn*'s session still holds the lock (asked on the server)."""

    @abc.abstractmethod
    def _unlock(self, conn: _Conn) -> None:
        """Release the lock *conn*'s session holds."""

    @abc.abstractmethod
    def _describe(self, exc: BaseException) -> str:
        """*exc* in a log line (the server's error, no password)."""

    # ------------------------------------------------------------------ acquire / release

    def needed(self) -> int:
        """How many servers must grant the lock for a majority."""
        base = self.total if self.quorum == "majority_of_all" else len(self.running)
        return base // 2 + 1

    def acquire(self) -> Acquired:
        """Try once, without waiting; on anything but ``HELD`` nothing stays locked.

        The connections stay open between attempts (a waiting process retries cheaply);
        :meth:`close` ends them.
        """
        self.release()
        self._connect_missing()
        self.running = [t.name for t in self.targets if t.name in self._conns]
        self.busy_on = None
        outcome = Acquired.HELD
        for target in self.targets:
            conn = self._conns.get(target.name)
            if conn is None:
                continue
            try:
                got = self._try_lock(conn)
            except Exception as exc:
                log.info("%s: %s failed: %s", target.name, self._lock_call, self._describe(exc))
                _close(self._conns.pop(target.name))
                self.running.remove(target.name)
                continue
            if not got:
                self.busy_on = target.name
                outcome = Acquired.BUSY
                break
            self.held.append(target.name)
        if outcome is Acquired.HELD and len(self.held) < self.needed():
            outcome = Acquired.NO_QUORUM
        if outcome is not Acquired.HELD:
            self.release()
        else:
            log.info(
                "failover lock %s held on %s (%d of %d needed, %s)",
                self.lock,
                ", ".join(self.held),
                len(self.held),
                self.needed(),
                self.quorum,
            )
        return outcome

    def confirm(self) -> bool:
        """True when this process still holds the lock on a majority (checked on the servers).

        Run it just before an irreversible step: a lock connection that broke meanwhile (its
        server restarted, a network cut) released that server's lock.
        """
        still: list[str] = []
        for name in list(self.held):
            conn = self._conns[name]
            try:
                mine = self._is_mine(conn)
            except Exception:
                mine = False
            if mine:
                still.append(name)
            else:
                log.warning("%s: the failover lock connection was lost", name)
                _close(self._conns.pop(name))
        self.held = still
        return len(still) >= self.needed()

    def release(self) -> None:
        """Release every lock this process holds (idempotent); connections stay open."""
        held, self.held = self.held, []
        for name in held:
            conn = self._conns.get(name)
            if conn is None:
                continue
            try:
                self._unlock(conn)
            except Exception:  # the lock went with the broken connection
                _close(self._conns.pop(name))

    def close(self) -> None:
        """Release the locks and close every lock connection (idempotent)."""
        self.release()
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            _close(conn)

    def __enter__(self: _Lock) -> _Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _connect_missing(self) -> None:
        """Connect to every target not connected yet, in parallel (a hung one costs one
        timeout, not one per server)."""
        missing = [t for t in self.targets if t.name not in self._conns]
        if not missing:
            return
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            futures = {t.name: pool.submit(self._connect, t) for t in missing}
        for name, f in futures.items():
            conn = f.result()
            if conn is not None:
                self._conns[name] = conn

    def _connect(self, target: LockTarget) -> _Conn | None:
        try:
            return self._open(target)
        except Exception as exc:
            log.info("%s: no failover lock connection: %s", target.name, self._describe(exc))
            return None


class FailoverLock(MajorityLock[str, "pymysql.Connection[Any]"]):
    """The cluster-wide failover lock on MariaDB/MySQL servers (see the module docstring):
    ``GET_LOCK`` on each server. Not thread-safe.

    :param lock: the lock name (:func:`lock_name`), also :attr:`name`.

    The other parameters are :class:`MajorityLock`'s.
    """

    _lock_call = "GET_LOCK"

    @property
    def name(self) -> str:
        """The server lock's name (:func:`lock_name`)."""
        return self.lock

    def _open(self, target: LockTarget) -> pymysql.Connection[Any]:
        url = target.url
        return pymysql.connect(
            host=url.host or "localhost",
            port=url.port or 3306,
            user=url.username or "",
            password=url.password or "",
            autocommit=True,
            connect_timeout=max(self.timeout, 0.001),
            read_timeout=self.timeout,
            write_timeout=self.timeout,
            **dict(target.connect_args),
        )

    def _try_lock(self, conn: pymysql.Connection[Any]) -> bool:
        return _scalar(conn, "SELECT GET_LOCK(%s, 0)", (self.name,)) == 1

    def _is_mine(self, conn: pymysql.Connection[Any]) -> bool:
        return _scalar(conn, "SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.name,)) == 1

    def _unlock(self, conn: pymysql.Connection[Any]) -> None:
        _scalar(conn, "SELECT RELEASE_LOCK(%s)", (self.name,))

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc)


def _scalar(conn: Any, sql: str, params: tuple[object, ...]) -> object:
    """The first column of the first row *sql* returns on a DB-API connection (PyMySQL,
    psycopg; tuple or dict rows), ``None`` without a row."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()
