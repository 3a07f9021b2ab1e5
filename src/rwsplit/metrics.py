"""What rwsplit did: counters per node and per cluster, and exporters for them.

:meth:`rwsplit.Cluster.stats` returns a :class:`ClusterStats` snapshot — per node the
statements routed there (reads, writes, forced to the primary, healed, retried), the causal
waits (count, total seconds, timeouts that fell back to the primary), ejections and
re-admissions; per cluster the failovers and topology changes. In ``routing="shadow"`` a
replica's ``reads`` count the reads it *would* have taken while everything ran on the primary.

Counting is a few integer additions under one lock per statement, so the read path stays
within noise of an uncounted one (``benchmarks/bench_routing.py``).

Exporters (optional extras):

* :class:`PrometheusCollector` (``pip install 'rwsplit[prometheus]'``) —
  ``rwsplit_statements_total{node,role,kind}``, ``rwsplit_causal_wait_seconds``,
  ``rwsplit_replica_lag_seconds{node}``, ``rwsplit_node_up{node}``,
  ``rwsplit_failovers_total``, ``rwsplit_topology_changes_total``;
* :func:`instrument_otel` (``pip install 'rwsplit[otel]'``) — the same as OpenTelemetry
  observable instruments.

>>> from rwsplit import Cluster
>>> with Cluster("mysql+pymysql://app:pw@db1/shop", ["mysql+pymysql://app:pw@db2/shop"]) as c:
...     c.stats().to_dict()["nodes"]["db2:3306"]["reads"]
0
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .cluster import Cluster
    from .topology.model import Topology

__all__ = [
    "ClusterStats",
    "NodeStats",
    "PrometheusCollector",
    "ROUTING_MODES",
    "instrument_otel",
]

ROUTING_MODES = ("normal", "shadow", "primary")
"""``normal``: route; ``shadow``: decide and count, but run everything on the primary;
``primary``: everything on the primary (the kill switch)."""

_KINDS = ("reads", "writes", "forced", "healed", "retried")


def check_routing(value: object) -> str:
    if value not in ROUTING_MODES:
        raise ConfigurationError(
            f"routing: expected one of {', '.join(repr(m) for m in ROUTING_MODES)}, got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One node's counters (see the module docstring)."""

    role: str
    up: bool
    lag_seconds: float | None
    reads: int = 0
    writes: int = 0
    forced: int = 0
    healed: int = 0
    retried: int = 0
    causal_waits: int = 0
    causal_wait_seconds: float = 0.0
    causal_timeouts: int = 0
    ejections: int = 0
    readmissions: int = 0


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """A snapshot of :meth:`rwsplit.Cluster.stats`."""

    routing: str
    failovers: int
    topology_changes: int
    nodes: dict[str, NodeStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, e.g. ``{"routing": "normal", "failovers": 0, "nodes": {...}}``."""
        return {
            "routing": self.routing,
            "failovers": self.failovers,
            "topology_changes": self.topology_changes,
            "nodes": {name: asdict(n) for name, n in self.nodes.items()},
        }


class _Counters:
    __slots__ = (
        "causal_timeouts",
        "causal_wait_seconds",
        "causal_waits",
        "ejections",
        "forced",
        "healed",
        "readmissions",
        "reads",
        "retried",
        "writes",
    )

    def __init__(self) -> None:
        self.reads = self.writes = self.forced = self.healed = self.retried = 0
        self.causal_waits = self.causal_timeouts = self.ejections = self.readmissions = 0
        self.causal_wait_seconds = 0.0


class Stats:
    """The mutable counters a :class:`~rwsplit.Cluster` keeps (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, _Counters] = {}
        self.failovers = 0
        self.topology_changes = 0
        self._last_primary: str | None = None

    def _node(self, name: str) -> _Counters:
        c = self._nodes.get(name)
        if c is None:
            c = self._nodes.setdefault(name, _Counters())
        return c

    def routed(self, name: str, kind: str) -> None:
        """One statement of *kind* (reads, writes, forced, healed, retried) went to *name*."""
        with self._lock:
            c = self._node(name)
            setattr(c, kind, getattr(c, kind) + 1)

    def causal_wait(self, name: str, seconds: float, caught_up: bool) -> None:
        with self._lock:
            c = self._node(name)
            c.causal_waits += 1
            c.causal_wait_seconds += seconds
            if not caught_up:
                c.causal_timeouts += 1

    def topology_changed(self, old: Topology, new: Topology) -> None:
        """Count ejections, re-admissions and failovers between two snapshots."""
        with self._lock:
            self.topology_changes += 1
            before = {n.name: n.healthy for n in old.nodes}
            for n in new.nodes:
                was = before.get(n.name)
                if was is True and not n.healthy:
                    self._node(n.name).ejections += 1
                elif was is False and n.healthy:
                    self._node(n.name).readmissions += 1
            primary = new.primary
            if primary is not None:
                if self._last_primary is not None and primary.name != self._last_primary:
                    self.failovers += 1
                self._last_primary = primary.name

    def snapshot(self, routing: str, topology: Topology) -> ClusterStats:
        with self._lock:
            if self._last_primary is None and topology.primary is not None:
                self._last_primary = topology.primary.name
            nodes = {}
            for n in topology.nodes:
                c = self._nodes.get(n.name) or _Counters()
                nodes[n.name] = NodeStats(
                    role=n.role.value,
                    up=n.healthy,
                    lag_seconds=n.lag_seconds,
                    **{k: getattr(c, k) for k in _Counters.__slots__},
                )
            return ClusterStats(routing, self.failovers, self.topology_changes, nodes)


# ---------------------------------------------------------------------------- exporters


class PrometheusCollector:
    """A ``prometheus_client`` collector for one cluster (optional extra ``prometheus``).

    ::

        from prometheus_client import REGISTRY
        REGISTRY.register(PrometheusCollector(cluster))
    """

    def __init__(self, cluster: Cluster, *, prefix: str = "rwsplit") -> None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "PrometheusCollector needs prometheus_client: pip install 'rwsplit[prometheus]'"
            ) from None
        self.cluster = cluster
        self.prefix = prefix

    def describe(self) -> list[Any]:
        return []  # collected lazily: the node set changes with the topology

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            SummaryMetricFamily,
        )

        p = self.prefix
        stats = self.cluster.stats()
        statements = CounterMetricFamily(
            f"{p}_statements",
            "Statements rwsplit routed, by node, role and kind",
            labels=["node", "role", "kind"],
        )
        lag = GaugeMetricFamily(f"{p}_replica_lag_seconds", "Replica lag", labels=["node"])
        up = GaugeMetricFamily(f"{p}_node_up", "1 when the node takes traffic", labels=["node"])
        waits = SummaryMetricFamily(
            f"{p}_causal_wait_seconds", "Read-your-writes waits on replicas", labels=["node"]
        )
        for name, n in stats.nodes.items():
            for kind in _KINDS:
                statements.add_metric([name, n.role, kind], getattr(n, kind))
            up.add_metric([name], 1.0 if n.up else 0.0)
            if n.role == "replica" and n.lag_seconds is not None:
                lag.add_metric([name], n.lag_seconds)
            waits.add_metric([name], n.causal_waits, n.causal_wait_seconds)
        yield statements
        yield lag
        yield up
        yield waits
        yield CounterMetricFamily(f"{p}_failovers", "Primary changes seen", value=stats.failovers)
        yield CounterMetricFamily(
            f"{p}_topology_changes", "Topology snapshots published", value=stats.topology_changes
        )


def instrument_otel(cluster: Cluster, meter: Any) -> None:
    """Register OpenTelemetry observable instruments for *cluster* on *meter*.

    ``meter`` comes from ``opentelemetry.metrics.get_meter("rwsplit")`` (optional extra
    ``otel``). Instruments are read from :meth:`Cluster.stats` at each collection.
    """
    try:
        from opentelemetry.metrics import CallbackOptions, Observation
    except ImportError:
        raise ConfigurationError(
            "instrument_otel needs opentelemetry-api: pip install 'rwsplit[otel]'"
        ) from None

    def statements(options: CallbackOptions) -> list[Observation]:
        return [
            Observation(getattr(n, kind), {"node": name, "role": n.role, "kind": kind})
            for name, n in cluster.stats().nodes.items()
            for kind in _KINDS
        ]

    def lag(options: CallbackOptions) -> list[Observation]:
        return [
            Observation(n.lag_seconds, {"node": name})
            for name, n in cluster.stats().nodes.items()
            if n.role == "replica" and n.lag_seconds is not None
        ]

    def up(options: CallbackOptions) -> list[Observation]:
        return [Observation(int(n.up), {"node": name}) for name, n in cluster.stats().nodes.items()]

    def waits(options: CallbackOptions) -> list[Observation]:
        return [
            Observation(n.causal_wait_seconds, {"node": name})
            for name, n in cluster.stats().nodes.items()
        ]

    def failovers(options: CallbackOptions) -> list[Observation]:
        return [Observation(cluster.stats().failovers)]

    meter.create_observable_counter("rwsplit.statements", [statements], description="routed")
    meter.create_observable_gauge("rwsplit.replica_lag", [lag], unit="s")
    meter.create_observable_gauge("rwsplit.node_up", [up])
    meter.create_observable_counter("rwsplit.causal_wait", [waits], unit="s")
    meter.create_observable_counter("rwsplit.failovers", [failovers])
