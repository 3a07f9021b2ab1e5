"""MySQL-only behaviour of the sandbox and of how rwsplit points replicas at a source."""

from __future__ import annotations

import time

import pytest

from rwsplit import Cluster, FailoverOptions, switchover
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox
from rwsplit.servers.mysql import RETRY_COUNT

from .util import ask, replica_status, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server("mysql", reason="MySQL's replica retry count (MariaDB's is 100,000)"),
]


def retry_count(node: object) -> int:
    def count(f: object, cur: object) -> int:
        cur.execute(f.replica_status_sql)  # type: ignore[attr-defined]
        cols = [d[0] for d in cur.description]  # type: ignore[attr-defined]
        row = dict(zip(cols, cur.fetchone(), strict=False))  # type: ignore[attr-defined]
        return int(row.get("Source_Retry_Count", row.get("Master_Retry_Count")))

    return ask(node, count)  # type: ignore[arg-type]


def test_replicas_keep_retrying_a_source_that_is_away_longer_than_ten_seconds(
    fresh_sandbox: Sandbox,
) -> None:
    # Issue 16, defect 3: with SOURCE_CONNECT_RETRY = 1 and MySQL's default retry count (10)
    # a replica gives up after ~10 s and never replicates again without START REPLICA.
    sb = fresh_sandbox
    assert all(retry_count(r) == RETRY_COUNT for r in sb.replicas)
    sb.kill("primary")
    away = time.monotonic()
    while time.monotonic() - away < 15:  # longer than 10 attempts a second apart
        for r in sb.replicas:
            status = replica_status(r)
            assert status is not None and status.io_running != "No", status
        time.sleep(0.5)  # the observation interval: what is asserted is "still retrying"
    sb.restart("primary")
    for r in sb.replicas:
        sb.wait_replica_running(r, timeout=30)


def test_switchover_points_every_replica_with_the_large_retry_count(
    fresh_sandbox: Sandbox,
) -> None:
    sb = fresh_sandbox
    old, target, other = sb.nodes
    options = FailoverOptions(REPL_USER, REPL_PASSWORD)
    with Cluster(sb.primary_url, sb.replica_urls) as cluster:
        result = switchover(cluster, target.address, options)
    assert result.new_primary == target.address
    for node in (old, other):
        wait_until(lambda node=node: replica_status(node) is not None, what="repointed")
        assert retry_count(node) == RETRY_COUNT
