"""Small helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rwsplit.pytest_plugin import replica_lag
from rwsplit.sandbox import Sandbox, SandboxNode

__all__ = ["sql", "sql_threads_stopped", "wait_until"]


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


@contextlib.contextmanager
def sql_threads_stopped(sb: Sandbox) -> Iterator[None]:
    """Replicas receive but do not apply: anything written in the block is missing there
    (the pytest plugin's :func:`~rwsplit.pytest_plugin.replica_lag`, on every replica)."""
    with replica_lag(sb):
        yield
