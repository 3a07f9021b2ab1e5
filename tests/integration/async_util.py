"""Helpers for the asyncio integration tests: async clusters on a sandbox, both drivers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from rwsplit import Cluster
from rwsplit.sandbox import Sandbox

from .util import sql, sql_threads_stopped

__all__ = [
    "DRIVERS",
    "apply_blocked",
    "async_cluster",
    "async_url",
    "run",
    "sql_threads_stopped",
    "table",
]

T = TypeVar("T")

DRIVERS = ("aiomysql", "asyncmy")


def async_url(url: str, driver: str) -> str:
    """*url* with its driver replaced by the asyncio driver *driver*."""
    return make_url(url).set(drivername=f"mysql+{driver}").render_as_string(hide_password=False)


def async_cluster(sb: Sandbox, driver: str, **kwargs: Any) -> Cluster:
    """A cluster on *sb* whose every node URL uses *driver*."""
    return Cluster(
        async_url(sb.primary_url, driver),
        [async_url(u, driver) for u in sb.replica_urls],
        **kwargs,
    )


@contextlib.contextmanager
def table(sb: Sandbox, columns: str = "id INT PRIMARY KEY, v INT") -> Iterator[str]:
    """A new table in the sandbox's database, on every node before the block starts."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    sql(sb.primary, f"CREATE TABLE rwsplit.{name} ({columns})")
    sb.wait_caught_up()
    try:
        yield name
    finally:
        sb.wait_caught_up()
        sql(sb.primary, f"DROP TABLE IF EXISTS rwsplit.{name}")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, then a garbage collection: a connection the test leaked (an
    unclosed socket) is reported by the test that leaked it, not by a later one."""
    try:
        return asyncio.run(coro)
    finally:
        gc.collect()


@contextlib.contextmanager
def apply_blocked(sb: Sandbox, table_name: str) -> Iterator[None]:
    """Make every replica lag on *table_name* while its replication threads keep running: a
    ``LOCK TABLES ... READ`` on each replica holds its SQL thread back (a monitor would take
    a replica with a stopped SQL thread out of the read rotation; this one stays in)."""
    with contextlib.ExitStack() as stack:
        for r in sb.replicas:
            conn = stack.enter_context(contextlib.closing(r.connect()))
            with conn.cursor() as cur:
                cur.execute(f"LOCK TABLES rwsplit.{table_name} READ")
        yield
