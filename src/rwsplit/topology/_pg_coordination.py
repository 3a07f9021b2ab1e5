"""One PostgreSQL failover at a time across processes: an advisory lock on most servers.

The PostgreSQL counterpart of :mod:`rwsplit.topology._coordination`: every process that may
change the topology first takes ``pg_try_advisory_lock(<key>)`` (one 64-bit key per
``cluster_id``) on the cluster's servers, each on a dedicated connection held for the whole
operation, and goes on only with a majority. A hot standby grants advisory locks (they live
in memory and write no WAL), so the lock works while the primary is dead; a process that dies
releases its locks with its connections; two majorities of one set of servers share a server.
Acquisition runs in node-name order and stops at the first server where another session holds
the lock, so two processes starting together do not split the locks between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._coordination import QUORUMS, Acquired, LockTarget

__all__ = ["PgFailoverLock", "lock_key"]

log = logging.getLogger("rwsplit.failover")


def lock_key(cluster_id: str) -> int:
    """The advisory lock's key: a stable signed 64-bit hash of the cluster id.

    >>> lock_key("default") == lock_key("default"), lock_key("a") != lock_key("b")
    (True, True)
    """
    digest = hashlib.sha256(("rwsplit_failover_" + cluster_id).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgFailoverLock:
    """The cluster-wide failover lock on PostgreSQL servers (same interface as
    :class:`~rwsplit.topology._coordination.FailoverLock`). Not thread-safe."""

    def __init__(
        self,
        key: int,
        targets: Sequence[LockTarget],
        *,
        quorum: str = "majority_of_running",
        total: int | None = None,
        timeout: float = 2.0,
    ) -> None:
        if quorum not in QUORUMS:
            raise ValueError(f"quorum must be one of {', '.join(QUORUMS)}, got {quorum!r}")
        self.key = key
        self.targets = sorted(targets, key=lambda t: t.name)
        self.quorum = quorum
        self.total = max(total or 0, len(self.targets))
        self.timeout = timeout
        self.held: list[str] = []
        self.running: list[str] = []
        self.busy_on: str | None = None
        self._conns: dict[str, Any] = {}

    def needed(self) -> int:
        """How many servers must grant the lock for a majority."""
        base = self.total if self.quorum == "majority_of_all" else len(self.running)
        return base // 2 + 1

    def acquire(self) -> Acquired:
        """Try once, without waiting; on anything but ``HELD`` nothing stays locked."""
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
                got = _scalar(conn, "SELECT pg_try_advisory_lock(%s)", (self.key,))
            except Exception as exc:
                log.info("%s: pg_try_advisory_lock failed: %s", target.name, _describe(exc))
                _close(self._conns.pop(target.name))
                self.running.remove(target.name)
                continue
            if got is not True:
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
                "failover lock %d held on %s (%d of %d needed, %s)",
                self.key,
                ", ".join(self.held),
                len(self.held),
                self.needed(),
                self.quorum,
            )
        return outcome

    def confirm(self) -> bool:
        """True when this process still holds the lock on a majority (asked on the servers)."""
        still: list[str] = []
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        classid, objid = unsigned >> 32, unsigned & 0xFFFFFFFF
        for name in list(self.held):
            try:
                mine = _scalar(
                    self._conns[name],
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted AND classid = %s AND objid = %s "
                    "AND objsubid = 1)",
                    (classid, objid),
                )
            except Exception:
                mine = None
            if mine is True:
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
                _scalar(conn, "SELECT pg_advisory_unlock(%s)", (self.key,))
            except Exception:
                _close(self._conns.pop(name))

    def close(self) -> None:
        """Release the locks and close every lock connection (idempotent)."""
        self.release()
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            _close(conn)

    def __enter__(self) -> PgFailoverLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect_missing(self) -> None:
        missing = [t for t in self.targets if t.name not in self._conns]
        if not missing:
            return
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            futures = {t.name: pool.submit(self._connect, t) for t in missing}
        for name, f in futures.items():
            conn = f.result()
            if conn is not None:
                self._conns[name] = conn

    def _connect(self, target: LockTarget) -> Any:
        import psycopg

        url = target.url
        try:
            return psycopg.connect(
                host=url.host or "localhost",
                port=url.port or 5432,
                user=url.username or "",
                password=url.password or "",
                dbname=url.database or "postgres",
                autocommit=True,
                connect_timeout=max(2, math.ceil(self.timeout)),
                options=f"-c statement_timeout={max(1, int(self.timeout * 1000))}",
                application_name="rwsplit-failover-lock",
                **dict(target.connect_args),
            )
        except Exception as exc:
            log.info("%s: no failover lock connection: %s", target.name, _describe(exc))
            return None


def _describe(exc: BaseException) -> str:
    from .pg_probe import describe_pg_error

    return describe_pg_error(exc)


def _scalar(conn: Any, sql: str, params: tuple[object, ...]) -> object:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    return None if row is None else row[0]


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()
