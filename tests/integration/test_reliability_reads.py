"""Issue 17, defect 7: reads that are slow.

* A read that outlives ``replica_read_timeout`` is a slow statement, not a dead replica: it
  runs once, raises :class:`~rwsplit.ReadFailedError` naming the option, and every replica
  stays in rotation (it used to run on each replica and then the primary, ejecting them all).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster, ReadFailedError
from rwsplit.sandbox import Sandbox

from .util import sql

pytestmark = pytest.mark.integration

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
            sql(n, "TRUNCATE mysql.general_log")


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
