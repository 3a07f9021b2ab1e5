"""The read rotation with a monitor: only replicas that follow the current primary, with both
replication threads running and a known lag, take reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster, FailoverOptions, failover
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode

from .util import position, run, sql, wait_position, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def monitored(fresh_sandbox: Sandbox) -> Iterator[Cluster]:
    with Cluster(
        fresh_sandbox.primary_url,
        fresh_sandbox.replica_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
    ) as c:
        with c.session() as s:
            s.execute(text("CREATE TABLE t (id INT PRIMARY KEY)"))
            s.execute(text("INSERT INTO t VALUES (1)"))
            s.commit()
        fresh_sandbox.wait_caught_up()
        wait_until(lambda: len(readable(c)) == 2, what="both replicas in the rotation")
        yield c


def readable(c: Cluster) -> set[str]:
    return {n.name for n in c.topology.readable_replicas(c.max_replica_lag)}


def why_not(c: Cluster, node: SandboxNode) -> str:
    topology = c.topology
    return topology.not_readable_because(topology.node(node.address)) or ""


def reads_never_reach(c: Cluster, node: SandboxNode) -> None:
    for _ in range(20):
        route = c.read_route()
        assert route is not None and route[0].name != node.address


def test_replica_with_a_stopped_sql_thread_leaves_the_rotation_until_restarted(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    r = fresh_sandbox.replicas[0]
    run(r, lambda f: f.stop_sql_thread())
    wait_until(lambda: r.address not in readable(monitored), timeout=5, what="ejected")
    assert "SQL thread is not running" in why_not(monitored, r)
    assert monitored.topology.node(r.address).healthy  # it answers: only out of rotation
    reads_never_reach(monitored, r)
    run(r, lambda f: f.start_sql_thread())
    wait_until(lambda: r.address in readable(monitored), timeout=5, what="back in rotation")


def test_replica_with_a_stopped_io_thread_leaves_the_rotation_until_restarted(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    r = fresh_sandbox.replicas[1]
    run(r, lambda f: f.stop_io_thread())
    wait_until(lambda: r.address not in readable(monitored), timeout=5, what="ejected")
    assert "IO thread is not connected (No)" in why_not(monitored, r)
    reads_never_reach(monitored, r)
    run(r, lambda f: f.start_io_thread())
    wait_until(lambda: r.address in readable(monitored), timeout=5, what="back in rotation")


def test_replica_pointed_at_another_source_is_out_of_the_rotation(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    r1, r2 = fresh_sandbox.replicas
    fresh_sandbox.point_replica(r2, r1)
    wait_until(lambda: r2.address not in readable(monitored), timeout=5, what="ejected")
    # A round that ran while point_replica had replication stopped gives that reason first.
    reason = f"replicates from {r1.address}, not from the primary"
    wait_until(lambda: reason in why_not(monitored, r2), timeout=5, what=reason)
    assert r2.address not in readable(monitored)
    reads_never_reach(monitored, r2)
    fresh_sandbox.point_replica(r2, fresh_sandbox.primary)
    wait_until(lambda: r2.address in readable(monitored), timeout=5, what="back in rotation")


def test_replica_left_attached_to_the_dead_primary_takes_no_reads_after_failover(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    # The reproduced defect: a replica that could not be repointed ("rebuild it") stayed in
    # the rotation, still attached to the dead primary, serving rows the primary had moved on
    # from.
    old, r1, r2 = fresh_sandbox.nodes
    run(r2, lambda f: f.stop_io_thread())
    with monitored.session() as s:
        s.execute(text("INSERT INTO t VALUES (2), (3)"))
        s.commit()
    pos = position(old)
    assert wait_position(r1, pos, 10)
    fresh_sandbox.kill(old.name)
    result = failover(monitored, FailoverOptions(REPL_USER, REPL_PASSWORD, confirm_interval=0.05))
    assert result.new_primary == r1.address
    assert [name for name, _ in result.skipped] == [r2.address]
    run(r2, lambda f: f.start_io_thread())  # it keeps trying the dead primary
    wait_until(lambda: monitored.monitor is not None and monitored.monitor.rounds >= 3)
    wait_until(lambda: readable(monitored) == set(), timeout=5, what="r2 out of rotation")
    assert f"replicates from {old.address}, not from the primary" in why_not(monitored, r2)
    with monitored.session() as s:  # the only read target left is the new primary
        assert s.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 3
    assert sql(r2, "SELECT COUNT(*) FROM rwsplit.t")[0][0] == 1  # what r2 would have served


def test_without_a_monitor_nothing_is_known_and_every_replica_reads(
    fresh_sandbox: Sandbox,
) -> None:
    r = fresh_sandbox.replicas[0]
    run(r, lambda f: f.stop_sql_thread())
    with Cluster(fresh_sandbox.primary_url, fresh_sandbox.replica_urls) as c:
        assert readable(c) == {n.address for n in fresh_sandbox.replicas}
        assert c.topology.node(r.address).replication is None
