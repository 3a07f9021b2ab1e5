"""Small helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from rwsplit.sandbox import SandboxNode

__all__ = ["sql", "wait_until"]


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
