"""``rwsplit stats``: the monitor's view of a running cluster, in the shape of ``stats()``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import EXIT_FAILED, EXIT_OK, add_cluster_arguments, yes_no

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``rwsplit stats`` to the ``rwsplit`` sub-parsers."""
    p = sub.add_parser(
        "stats",
        help="probe the cluster once and print per-node role, health, lag and counters",
        description="Discover the cluster from the given nodes, run one monitoring round and "
        "print what cluster.stats() reports: per node role, up, replica lag and the routing "
        "counters (zero in this new process; an application exports its own through "
        "rwsplit.metrics). Exit 0 with exactly one healthy primary, 1 otherwise.",
    )
    add_cluster_arguments(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print cluster.stats().to_dict()")
    fmt.add_argument(
        "--prometheus", action="store_true", help="print the Prometheus text exposition"
    )
    p.add_argument(
        "--timeout", type=float, default=2.0, help="connect / read timeout per node (seconds)"
    )
    p.set_defaults(func=_cmd_stats)


def _cmd_stats(args: argparse.Namespace) -> int:
    from ._cluster import discovered_cluster

    with discovered_cluster(args, timeout=args.timeout, fallback=True) as cluster:
        topology = cluster.refresh()
        if args.prometheus:
            from prometheus_client import CollectorRegistry, generate_latest

            from ..metrics import PrometheusCollector

            registry = CollectorRegistry()
            registry.register(PrometheusCollector(cluster))
            print(generate_latest(registry).decode(), end="")
        elif args.json:
            print(json.dumps(cluster.stats().to_dict(), indent=2))
        else:
            stats = cluster.stats()
            print(f"routing: {stats.routing}   failovers seen: {stats.failovers}")
            print(f"{'node':<22} {'role':<8} {'up':<4} {'lag':>6} {'reads':>7} {'writes':>7}")
            for name, n in stats.nodes.items():
                lag = "-" if n.lag_seconds is None else f"{n.lag_seconds:.1f}"
                print(
                    f"{name:<22} {n.role:<8} {yes_no(n.up):<4} {lag:>6} {n.reads:>7} {n.writes:>7}"
                )
            for node in topology.nodes:  # why a node is down: unreachable, or refused
                if not node.healthy and node.error:
                    print(f"{node.name}: down: {node.error}")
        return EXIT_OK if topology.primary is not None else EXIT_FAILED
