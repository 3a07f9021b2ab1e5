"""rwsplit.metrics without a server: snapshots, counting rules, exporters."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from rwsplit import Cluster, ConfigurationError
from rwsplit.metrics import instrument_otel
from rwsplit.topology import Role

P = "mysql+pymysql://app:pw@db1/shop"
R = "mysql+pymysql://app:pw@db2/shop"


def test_routing_decisions_are_counted_per_node() -> None:
    with Cluster(P, [R]) as c:
        s = c.session()
        s.get_bind(clause=text("SELECT 1"))
        s.get_bind(clause=text("SELECT 1"), rwsplit_target="primary")
        s.get_bind(clause=text("UPDATE t SET a = 1"))
        nodes = c.stats().to_dict()["nodes"]
        assert nodes["db2:3306"]["reads"] == 1
        assert nodes["db1:3306"]["forced"] == 1
        assert nodes["db1:3306"]["writes"] == 1
        assert nodes["db1:3306"]["role"] == "primary"


def test_ejections_readmissions_and_failovers_are_counted() -> None:
    with Cluster(P, [R], down_retry_interval=0) as c:
        c.mark_down("db2:3306", "test")
        t = c.topology
        c.publish(t.with_nodes([t.node("db2:3306").evolve(healthy=True)]))
        t = c.topology
        c.publish(
            t.with_nodes(
                [
                    t.node("db1:3306").evolve(role=Role.REPLICA),
                    t.node("db2:3306").evolve(role=Role.PRIMARY),
                ]
            )
        )
        stats = c.stats()
        assert stats.nodes["db2:3306"].ejections == 1
        assert stats.nodes["db2:3306"].readmissions == 1
        assert stats.failovers == 1
        assert stats.topology_changes == 3


def test_shadow_mode_counts_the_replica_but_binds_the_primary() -> None:
    with Cluster(P, [R], routing="shadow") as c:
        bind = c.session().get_bind(clause=text("SELECT 1"))
        assert bind.engine.url.host == "db1"  # type: ignore[union-attr]
        assert c.stats().nodes["db2:3306"].reads == 1


def test_routing_mode_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="routing"):
        Cluster(P, routing="proxy")
    with Cluster(P) as c, pytest.raises(ConfigurationError, match="routing"):
        c.routing = "off"


def test_routing_from_config_sources() -> None:
    with Cluster.from_env({"RWSPLIT_PRIMARY_URL": P, "RWSPLIT_ROUTING": "shadow"}) as c:
        assert c.routing == "shadow"
    with Cluster.from_dict({"primary_url": P, "routing": "primary"}) as c:
        assert c.routing == "primary"


def test_opentelemetry_instruments_read_the_stats() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with Cluster(P, [R]) as c:
        c.session().get_bind(clause=text("SELECT 1"))
        instrument_otel(c, provider.get_meter("rwsplit"))
        data = reader.get_metrics_data()
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    points = {
        (p.attributes["node"], p.attributes["kind"]): p.value
        for p in metrics["rwsplit.statements"].data.data_points
    }
    assert points[("db2:3306", "reads")] == 1
    provider.shutdown()
