"""A primary out of connection slots (a connection storm) gives typed rwsplit errors, not raw
driver errors, and no failover (issue 17).

The primary refuses every new connection (MySQL/MariaDB ``1040 Too many connections``,
PostgreSQL ``too many clients already`` / SQLSTATE 53300): a write that needs a new
connection gets :class:`~rwsplit.RetryableWriteError` (nothing was sent), a plain read goes to
a replica, a read that must run on the primary gets :class:`~rwsplit.ReadFailedError`. The
primary is alive: it stays the primary, and writes go on once slots free up.

Real servers from the sandboxes; connections are held by a bounded loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from sqlalchemy import text

from rwsplit import Cluster, FailoverOptions, ReadFailedError, RetryableWriteError
from rwsplit.sandbox import DATABASE, REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode
from rwsplit.sandbox.postgresql import PgNode, PgSandbox

from ..fix_pg import _running
from .async_util import DRIVERS, async_cluster, run
from .util import sql, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.failover]

_LIMIT = 300
"""Most connections a fill opens (bounded: the servers here allow 10-20)."""


def _fill(connect: Callable[[], Any], refused: Callable[[BaseException], bool]) -> list[Any]:
    """Open connections until the server refuses one for want of slots; return them."""
    held: list[Any] = []
    for _ in range(_LIMIT):
        try:
            held.append(connect())
        except Exception as exc:
            if not refused(exc):
                for c in held:
                    c.close()
                raise
            return held
    for c in held:
        c.close()
    raise AssertionError(f"the server accepted {_LIMIT} connections")


def _no_failover(cluster: Cluster, primary: str) -> None:
    """Several failure thresholds' worth of monitor rounds pass without a failover."""
    monitor = cluster.monitor
    assert monitor is not None
    start = monitor.rounds
    wait_until(lambda: monitor.rounds > start + 3 * monitor.failure_threshold, 15, "monitor rounds")
    assert monitor.last_failover is None, monitor.last_failover.describe()
    topology = cluster.topology
    assert topology.primary is not None and topology.primary.name == primary


def _check_typed_errors(cluster: Cluster, primary: str, table: str) -> None:
    """With every slot of *primary* taken: the write, the reads, and no failover."""
    # A write: no pooled connection, the new one is refused before anything was sent.
    refused = rf"primary {primary} refused a new connection"
    with cluster.session() as s, pytest.raises(RetryableWriteError, match=refused):
        s.execute(text(f"INSERT INTO {table} (id) VALUES (1)"))
    # A plain read: a replica takes it.
    with cluster.session() as s:
        assert s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0
    # A read that must run on the primary: a failed read, not a write error.
    failed = rf"read on the primary {primary} failed"
    with cluster.session() as s, s.use_primary(), pytest.raises(ReadFailedError, match=failed):
        s.execute(text(f"SELECT COUNT(*) FROM {table}"))
    _no_failover(cluster, primary)


def _writes_go_on(cluster: Cluster, table: str) -> list[int]:
    with cluster.session() as s:
        s.execute(text(f"INSERT INTO {table} (id) VALUES (2)"))
        s.commit()
    with cluster.session() as s, s.use_primary():
        return [int(r[0]) for r in s.execute(text(f"SELECT id FROM {table}"))]


# ----------------------------------------------------------------------------- MySQL family


def _too_many(exc: BaseException) -> bool:
    return isinstance(exc, pymysql.err.OperationalError) and exc.args[0] == 1040


def test_a_full_primary_gives_typed_errors_and_stays_primary(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    primary: SandboxNode = sb.primary
    sql(primary, f"CREATE TABLE {DATABASE}.storm (id INT PRIMARY KEY)")
    sb.wait_caught_up()
    cluster = Cluster(
        sb.primary_url,
        sb.replica_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
        failover_options=FailoverOptions(REPL_USER, REPL_PASSWORD),
    )
    monitor = cluster.monitor
    assert monitor is not None
    held: list[Any] = []
    try:
        wait_until(lambda: monitor.rounds > 2, 10, "the monitor")
        admin = primary.connect()  # taken before the fill: it restores the limit
        held.append(admin)
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL max_connections = 10")
        held += _fill(primary.connect, _too_many)
        _check_typed_errors(cluster, primary.address, "storm")
        for driver in DRIVERS:
            run(_async_write_refused(async_cluster(sb, driver), primary.address))
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL max_connections = 300")
        for c in held:
            c.close()
        held.clear()
        # Nothing of the refused write was committed; writes go on at once.
        assert _writes_go_on(cluster, "storm") == [2]
    finally:
        for c in held:
            with contextlib.suppress(Exception):
                c.close()
        cluster.close()


async def _async_write_refused(cluster: Cluster, primary: str) -> None:
    """The same under asyncio (aiomysql, asyncmy): the write's error, and a replica's read."""
    try:
        refused = rf"primary {primary} refused a new connection"
        async with cluster.async_session() as s:
            with pytest.raises(RetryableWriteError, match=refused):
                await s.execute(text("INSERT INTO storm (id) VALUES (1)"))
        async with cluster.async_session() as s:
            assert (await s.execute(text("SELECT COUNT(*) FROM storm"))).scalar() == 0
    finally:
        await cluster.aclose()


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgSandbox]:
    # A small limit for every node (a standby needs at least the primary's): quick to fill.
    yield from _running(tmp_path_factory.mktemp("pg-storm"), settings={"max_connections": "20"})


def _pg_refused(exc: BaseException) -> bool:
    text_ = str(exc)
    return "too many clients" in text_ or "remaining connection slots" in text_


def test_a_full_postgresql_primary_gives_typed_errors_and_stays_primary(pg: PgSandbox) -> None:
    primary: PgNode = pg.primary
    with contextlib.closing(primary.connect()) as c:
        c.execute("CREATE TABLE storm (id INT PRIMARY KEY)")
        c.commit()
    cluster = Cluster(
        pg.primary_url,
        pg.standby_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
    )
    monitor = cluster.monitor
    assert monitor is not None
    held: list[Any] = []
    try:
        wait_until(lambda: monitor.rounds > 2, 10, "the monitor")
        wait_until(lambda: _replayed(cluster), 10, "the table on the standbys")
        held += _fill(lambda: primary.connect(connect_timeout=2), _pg_refused)
        _check_typed_errors(cluster, primary.address, "storm")
        for c in held:
            c.close()
        held.clear()
        assert _retry(lambda: _writes_go_on(cluster, "storm")) == [2]
    finally:
        for c in held:
            with contextlib.suppress(Exception):
                c.close()
        cluster.close()


def _replayed(cluster: Cluster) -> bool:
    with cluster.session() as s:
        try:
            s.execute(text("SELECT 1 FROM storm"))
        except Exception:
            return False
    return True


def _retry(fn: Callable[[], list[int]], attempts: int = 50) -> list[int]:
    """*fn*, retried (bounded) while the primary still refuses: closed backends take a
    moment to leave their slots."""
    for _ in range(attempts - 1):
        try:
            return fn()
        except RetryableWriteError:
            time.sleep(0.1)
    return fn()
