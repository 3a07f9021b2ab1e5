"""Issue 17, defects 7 and 9 (first half): reads that are slow, and reads whose replica dies
while their rows stream.

* A read that outlives ``replica_read_timeout`` is a slow statement, not a dead replica: it
  runs once, raises :class:`~rwsplit.ReadFailedError` naming the option, and every replica
  stays in rotation (it used to run on each replica and then the primary, ejecting them all).
* A replica killed while a result streams (``stream_results`` / ``yield_per``) raises
  :class:`~rwsplit.ReadFailedError`, not the driver's ``OperationalError`` 2013; no row is
  delivered twice.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster, ReadFailedError
from rwsplit.sandbox import DATABASE, Sandbox

from .util import sql, sql_unlogged

pytestmark = [
    pytest.mark.integration,
]

SLOW = "SELECT SLEEP(1.5) /* {marker} */"


@contextlib.contextmanager
def general_log(sb: Sandbox) -> Iterator[None]:
    """Every node logs the statements it runs to ``mysql.general_log`` for the block (a
    monitor's probes run SELECTs too, so Com_select cannot count one statement's runs)."""
    nodes = [sb.primary, *sb.replicas]
    for n in nodes:
        sql(n, "SET GLOBAL log_output = 'TABLE'")
        sql(n, "SET GLOBAL general_log = ON")
    try:
        yield
    finally:
        for n in nodes:
            sql(n, "SET GLOBAL general_log = OFF")
            sql_unlogged(n, "TRUNCATE mysql.general_log")


def runs(sb: Sandbox, marker: str) -> dict[str, int]:
    """How many times each node ran a statement holding *marker*."""
    return {
        n.address: int(
            sql(
                n,
                "SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Query' "
                f"AND argument LIKE '%{marker}%' AND argument NOT LIKE '%general_log%'",
            )[0][0]  # type: ignore[call-overload]
        )
        for n in [sb.primary, *sb.replicas]
    }


@pytest.mark.parametrize("monitor", [None, 0.2], ids=["no-monitor", "monitor"])
def test_a_slow_read_runs_once_and_ejects_no_replica(
    sandbox: Sandbox, monitor: float | None
) -> None:
    marker = f"slow-{uuid.uuid4().hex}"
    with (
        general_log(sandbox),
        Cluster(
            sandbox.primary_url,
            sandbox.replica_urls,
            replica_read_timeout=1.0,
            monitor_interval=monitor,
        ) as cluster,
    ):
        started = time.monotonic()
        with cluster.session() as s, pytest.raises(ReadFailedError) as caught:
            s.execute(text(SLOW.format(marker=marker))).all()
        elapsed = time.monotonic() - started

        ran = runs(sandbox, marker)
        assert sum(ran.values()) == 1, f"the slow read ran {ran}"
        assert ran[sandbox.primary.address] == 0
        assert "replica_read_timeout" in str(caught.value)
        assert elapsed < 1.5 + 1.0, f"{elapsed:.1f}s: the timeout is 1 s"
        assert all(n.healthy for n in cluster.topology.nodes), cluster.topology
        # The other sessions keep reading from the replicas.
        marker = f"after-{uuid.uuid4().hex}"
        for _ in range(6):
            with cluster.session() as s:
                s.execute(text(f"SELECT 1 /* {marker} */")).all()
        ran = runs(sandbox, marker)
        assert ran[sandbox.primary.address] == 0, ran
        assert all(ran[r.address] == 3 for r in sandbox.replicas), ran


# 3,000 rows of 1 KB, produced slowly (2 ms each) in primary-key order (no sort, so the first
# rows are sent at once): the server is still sending when the replica is killed, so the
# client's socket buffers cannot hold the rest of the result.
STREAM = "SELECT seq, REPEAT('x', 1000) AS pad FROM streamed WHERE SLEEP(0.002) = 0 ORDER BY seq"


def create_streamed(sb: Sandbox) -> None:
    """The table :data:`STREAM` reads: ``seq`` 1 to 3,000, on every node."""
    with contextlib.closing(sb.primary.connect(DATABASE)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE streamed (seq INT PRIMARY KEY)")
        cur.executemany("INSERT INTO streamed VALUES (%s)", [(i,) for i in range(1, 3001)])
        conn.commit()
    sb.wait_caught_up()


@pytest.mark.failover
@pytest.mark.parametrize("option", ["stream_results", "yield_per"])
def test_a_replica_killed_mid_stream_raises_read_failed(
    fresh_sandbox: Sandbox, option: str
) -> None:
    sb = fresh_sandbox
    create_streamed(sb)
    victim = sb.replicas[0]
    options = {"stream_results": True} if option == "stream_results" else {"yield_per": 50}
    with Cluster(sb.primary_url, [victim.url]) as cluster, cluster.session() as s:
        result = s.execute(text(STREAM).execution_options(**options))
        seen = [row[0] for row in result.fetchmany(100)]
        assert len(seen) == 100
        sb.kill(victim.name)
        with pytest.raises(ReadFailedError, match="stream") as caught:
            for row in result:
                seen.append(row[0])
        assert victim.address in str(caught.value)
        assert len(seen) < 3000
        assert seen == list(range(1, len(seen) + 1)), "a row was delivered twice or skipped"
