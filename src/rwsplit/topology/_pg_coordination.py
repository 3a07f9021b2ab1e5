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

import hashlib
import math
from typing import Any

from ._coordination import LockTarget, MajorityLock, _scalar

__all__ = ["PgFailoverLock", "lock_key"]


def lock_key(cluster_id: str) -> int:
    """The advisory lock's key: a stable signed 64-bit hash of the cluster id.

    >>> lock_key("default") == lock_key("default"), lock_key("a") != lock_key("b")
    (True, True)
    """
    digest = hashlib.sha256(("rwsplit_failover_" + cluster_id).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgFailoverLock(MajorityLock[int, Any]):
    """The cluster-wide failover lock on PostgreSQL servers (same interface as
    :class:`~rwsplit.topology._coordination.FailoverLock`): ``pg_try_advisory_lock`` on
    each server. Not thread-safe.

    :param lock: the advisory lock's key (:func:`lock_key`), also :attr:`key`.

    The other parameters are :class:`~rwsplit.topology._coordination.MajorityLock`'s.
    """

    _lock_call = "pg_try_advisory_lock"

    @property
    def key(self) -> int:
        """The advisory lock's key (:func:`lock_key`)."""
        return self.lock

    def _open(self, target: LockTarget) -> Any:
        import psycopg

        url = target.url
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

    def _try_lock(self, conn: Any) -> bool:
        return _scalar(conn, "SELECT pg_try_advisory_lock(%s)", (self.key,)) is True

    def _is_mine(self, conn: Any) -> bool:
        # pg_locks shows a bigint advisory key as two 32-bit halves (objsubid 1: one key).
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        classid, objid = unsigned >> 32, unsigned & 0xFFFFFFFF
        mine = _scalar(
            conn,
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid() AND granted AND classid = %s AND objid = %s "
            "AND objsubid = 1)",
            (classid, objid),
        )
        return mine is True

    def _unlock(self, conn: Any) -> None:
        _scalar(conn, "SELECT pg_advisory_unlock(%s)", (self.key,))

    def _describe(self, exc: BaseException) -> str:
        from .pg_probe import describe_pg_error

        return describe_pg_error(exc)
