"""cluster.stats() against the servers' own counters; shadow mode; the kill switch; exporters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster
from rwsplit.metrics import PrometheusCollector
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def table(sandbox: Sandbox) -> Iterator[str]:
    name = f"stats_{uuid.uuid4().hex[:8]}"
    with Cluster(sandbox.primary_url, []) as c, c.write_engine().begin() as conn:
        conn.execute(text(f"CREATE TABLE {name} (id INT PRIMARY KEY AUTO_INCREMENT, v INT)"))
    sandbox.wait_caught_up()
    yield name
    with Cluster(sandbox.primary_url, []) as c, c.write_engine().begin() as conn:
        conn.execute(text(f"DROP TABLE {name}"))


def workload(cluster: Cluster, table: str, reads: int = 12, writes: int = 4) -> None:
    for i in range(writes):
        with cluster.session() as s:
            s.execute(text(f"INSERT INTO {table} (v) VALUES (:v)"), {"v": i})
            s.commit()
    for _ in range(reads):
        with cluster.session() as s:
            s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()


def warm(cluster: Cluster, sb: Sandbox) -> None:
    """Open every engine's first connection (SQLAlchemy's own set-up queries) beforehand."""
    with cluster.session() as s:
        for _ in range(len(sb.replicas)):
            s.execute(text("SELECT 1")).scalar()
        with s.use_primary():
            s.execute(text("SELECT 1")).scalar()


def test_stats_match_the_servers_own_counters(sandbox: Sandbox, table: str) -> None:
    with Cluster(sandbox.primary_url, sandbox.replica_urls, read_your_writes="off") as c:
        warm(c, sandbox)
        before_stats = c.stats()
        before = snapshot(sandbox)
        workload(c, table)
        d = delta(before, snapshot(sandbox))
        after = c.stats()
    for r in sandbox.replicas:
        routed = after.nodes[r.address].reads - before_stats.nodes[r.address].reads
        assert routed == d[r.name]["Com_select"], r.name
        assert after.nodes[r.address].writes == 0
        assert d[r.name]["own_binlog_writes"] == 0
    assert sum(after.nodes[r.address].reads for r in sandbox.replicas) >= 12
    primary = after.nodes[sandbox.primary.address]
    assert primary.writes - before_stats.nodes[sandbox.primary.address].writes == 4
    assert d["primary"]["own_binlog_writes"] == 4
    assert after.to_dict()["routing"] == "normal"


def test_causal_waits_are_counted(sandbox: Sandbox, table: str) -> None:
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as c:
        with c.session() as s:
            s.execute(text(f"INSERT INTO {table} (v) VALUES (1)"))
            s.commit()
            s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
        waits = sum(n.causal_waits for n in c.stats().nodes.values())
        assert waits == 1


def test_shadow_mode_runs_everything_on_the_primary_and_counts_where_it_would_go(
    sandbox: Sandbox, table: str
) -> None:
    with Cluster(sandbox.primary_url, sandbox.replica_urls, routing="shadow") as c:
        warm(c, sandbox)
        before = snapshot(sandbox)
        workload(c, table)
        d = delta(before, snapshot(sandbox))
        stats = c.stats().to_dict()
    assert stats["routing"] == "shadow"
    would = sum(stats["nodes"][r.address]["reads"] for r in sandbox.replicas)
    assert would >= 12
    for r in sandbox.replicas:
        assert d[r.name]["Com_select"] == 0, "shadow mode touched a replica"
    assert d["primary"]["Com_select"] >= 12


def test_routing_primary_is_an_instant_kill_switch(sandbox: Sandbox) -> None:
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as c:
        with c.session() as s:
            assert s.execute(text("SELECT @@server_id")).scalar() != sandbox.primary.server_id
        c.routing = "primary"
        with c.session() as s:
            assert s.execute(text("SELECT @@server_id")).scalar() == sandbox.primary.server_id
        c.routing = "normal"
        with c.session() as s:
            assert s.execute(text("SELECT @@server_id")).scalar() != sandbox.primary.server_id


def test_prometheus_output_parses(sandbox: Sandbox, table: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    with Cluster(sandbox.primary_url, sandbox.replica_urls, read_your_writes="off") as c:
        workload(c, table, reads=6, writes=2)
        registry = CollectorRegistry()
        registry.register(PrometheusCollector(c))
        families = {
            f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
        }
        stats = c.stats()
    reads = {
        s.labels["node"]: s.value
        for s in families["rwsplit_statements"].samples
        if s.name == "rwsplit_statements_total" and s.labels["kind"] == "reads"
    }
    for r in sandbox.replicas:
        assert reads[r.address] == stats.nodes[r.address].reads
    up = {s.labels["node"]: s.value for s in families["rwsplit_node_up"].samples}
    assert set(up.values()) == {1.0}
    assert families["rwsplit_failovers"].samples[0].value == 0
