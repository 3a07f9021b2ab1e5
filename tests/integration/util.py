"""Small helpers shared by the integration tests.

Everything server-specific is asked of the server's family (:mod:`rwsplit.servers`), so the
same test runs on MariaDB and MySQL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pymysql

from rwsplit.pytest_plugin import replica_lag
from rwsplit.sandbox import Sandbox, SandboxNode
from rwsplit.servers import Cursor, MariaDB, MySQL, ReplicaStatus, Statement, detect_family

__all__ = [
    "ask",
    "family",
    "own_writes",
    "position",
    "replica_status",
    "replicating",
    "run",
    "sql",
    "sql_threads_stopped",
    "wait_position",
    "wait_until",
]

T = TypeVar("T")


def wait_until(cond: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll *cond* until true (never a bare sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(0.02)


def sql(node: SandboxNode, statement: str) -> list[tuple[object, ...]]:
    """Run *statement* on *node* over a fresh admin connection; return all rows."""
    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return list(cur.fetchall())


def fenced(node: SandboxNode) -> bool:
    """*node* says it is read-only; ``False`` too when the connection asking was ended.

    For polling while a failover fences *node*: fencing ends every client session on it
    (:func:`~rwsplit.topology.failover.kill_client_connections`), the poll's own included —
    that is "not seen yet", not a failure.
    """
    try:
        return sql(node, "SELECT @@read_only")[0][0] == 1
    except pymysql.err.OperationalError:
        return False


def ask(node: SandboxNode, question: Callable[[MariaDB | MySQL, Cursor], T]) -> T:
    """Ask *question* of *node*'s family over a fresh admin connection."""
    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        return question(detect_family(cur), cur)


def family(node: SandboxNode) -> MariaDB | MySQL:
    """The server family of *node* (MySQL: with its gtid_mode)."""
    return ask(node, lambda f, cur: f)


def run(node: SandboxNode, statement: Statement | Callable[[MariaDB | MySQL], Statement]) -> None:
    """Run a family statement on *node*: ``run(n, lambda f: f.stop_io_thread())``."""

    def go(f: MariaDB | MySQL, cur: Cursor) -> None:
        stmt = statement if isinstance(statement, Statement) else statement(f)
        cur.execute(stmt.sql, stmt.params or None)

    ask(node, go)


def replica_status(node: SandboxNode) -> ReplicaStatus | None:
    """*node*'s replication status (``None``: it replicates from nobody)."""
    return ask(node, lambda f, cur: f.replica_status(cur))


def replicating(node: SandboxNode) -> bool:
    """Both replication threads of *node* run."""
    s = replica_status(node)
    return s is not None and s.io_connected and s.sql_running


def position(node: SandboxNode) -> str:
    """What *node* has written to its binary log, as a token its replicas can wait for."""
    return ask(node, lambda f, cur: f.position(cur))


def wait_position(node: SandboxNode, pos: str, timeout: float = 10.0) -> bool:
    """On replica *node*: wait (bounded) until it applied *pos*."""
    return ask(node, lambda f, cur: f.wait_position(cur, pos, timeout))


def own_writes(node: SandboxNode) -> int:
    """Transactions *node* logged itself (executed on it, not replicated to it)."""
    return ask(node, lambda f, cur: sum(f.own_transactions(cur).values()))


@contextlib.contextmanager
def sql_threads_stopped(sb: Sandbox) -> Iterator[None]:
    """Replicas receive but do not apply: anything written in the block is missing there
    (the pytest plugin's :func:`~rwsplit.pytest_plugin.replica_lag`, on every replica)."""
    with replica_lag(sb):
        yield
