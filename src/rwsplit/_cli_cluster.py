"""``rwsplit topology``, ``rwsplit failover`` and ``rwsplit switchover``.

The replication password for failover and switchover comes from
``$RWSPLIT_REPLICATION_PASSWORD`` or ``--replication-password-file`` (never from the command
line, where ``ps`` would show it); it is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .cli import EXIT_FAILED, EXIT_OK, _progress, add_cluster_arguments, cluster_from_args
from .errors import ConfigurationError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the cluster commands to the ``rwsplit`` sub-parsers."""
    p_topo = sub.add_parser(
        "topology",
        help="discover the cluster and print every node's role, health, lag and GTID",
        description="Discover the cluster from the given nodes (followed through replication "
        "sources and SHOW SLAVE HOSTS) and print it. Exit 0 with exactly one writable "
        "primary, 1 otherwise (unreachable, no primary, or several).",
    )
    add_cluster_arguments(p_topo)
    p_topo.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_topo.add_argument(
        "--timeout", type=float, default=2.0, help="connect / read timeout per node (seconds)"
    )
    p_topo.set_defaults(func=_cmd_topology)

    p_fo = sub.add_parser(
        "failover",
        help="replace a dead primary by the most advanced replica",
        description="Confirm the primary is dead (it fails several probes and the replicas "
        "lost it too), stop every replica's IO thread, wait for relay logs, promote the most "
        "advanced replica, repoint the others, fence the old primary. Safe to re-run; "
        "--dry-run prints the plan and every statement.",
    )
    _failover_arguments(p_fo)
    p_fo.add_argument(
        "--preferred",
        metavar="NODE",
        action="append",
        default=[],
        help="host:port to promote first among the most advanced (repeatable)",
    )
    p_fo.set_defaults(func=_cmd_failover)

    p_sw = sub.add_parser(
        "switchover",
        help="planned change of primary, zero lost writes",
        description="Make the primary read-only, end its client sessions, wait until NODE "
        "has applied everything, promote NODE, repoint the other replicas and turn the old "
        "primary into a replica. Safe to re-run; --dry-run prints every statement.",
    )
    p_sw.add_argument("--to", required=True, metavar="NODE", help="host:port of the new primary")
    _failover_arguments(p_sw)
    p_sw.set_defaults(func=_cmd_switchover)


def _failover_arguments(p: argparse.ArgumentParser) -> None:
    add_cluster_arguments(p)
    g = p.add_argument_group("failover")
    g.add_argument(
        "--replication-user",
        default=os.environ.get("RWSPLIT_REPLICATION_USER"),
        help="account replicas use to connect to the new primary "
        "(default: $RWSPLIT_REPLICATION_USER)",
    )
    g.add_argument(
        "--replication-password-file",
        metavar="PATH",
        help="file holding its password (default: $RWSPLIT_REPLICATION_PASSWORD)",
    )
    g.add_argument(
        "--never-promote",
        metavar="NODE",
        action="append",
        default=[],
        help="host:port that must never become primary (repeatable)",
    )
    g.add_argument(
        "--apply-timeout",
        type=float,
        default=30.0,
        help="seconds a replica may take to apply its relay log / catch up (default 30)",
    )
    g.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def _options(args: argparse.Namespace, preferred: list[str] | None = None) -> Any:
    from .failover import FailoverOptions

    if not args.replication_user:
        raise ConfigurationError(
            "no replication account: pass --replication-user or set RWSPLIT_REPLICATION_USER"
        )
    if args.replication_password_file:
        try:
            password = Path(args.replication_password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read --replication-password-file: {exc.strerror}"
            ) from None
    else:
        password = os.environ.get("RWSPLIT_REPLICATION_PASSWORD", "")
    return FailoverOptions(
        replication_user=args.replication_user,
        replication_password=password,
        preferred=tuple(preferred or ()),
        never_promote=tuple(args.never_promote),
        apply_timeout=args.apply_timeout,
    )


def _cmd_topology(args: argparse.Namespace) -> int:
    from .topology import Role, discover

    cluster = cluster_from_args(args)
    try:
        seeds = [n.url for n in cluster.topology.nodes]
    finally:
        cluster.close()
    topology = discover(seeds, timeout=args.timeout)
    rows = [
        {
            "node": n.name,
            "role": n.role.value,
            "healthy": n.healthy,
            "read_only": n.read_only,
            "lag_seconds": n.lag_seconds,
            "gtid": n.gtid_position,
            "error": n.error,
        }
        for n in topology.nodes
    ]
    if args.json:
        print(json.dumps({"nodes": rows}, indent=2))
    else:
        print(f"{'node':<22} {'role':<8} {'health':<7} {'read_only':<9} {'lag':>6}  gtid")
        for r in rows:
            lag = "-" if r["lag_seconds"] is None else f"{r['lag_seconds']:.1f}"
            health = "up" if r["healthy"] else "DOWN"
            print(
                f"{r['node']:<22} {r['role']:<8} {health:<7} {r['read_only']!s:<9} {lag:>6}  "
                f"{r['gtid'] or '-'}" + (f"  ({r['error']})" if r["error"] else "")
            )
    primaries = [n for n in topology.nodes if n.role is Role.PRIMARY and n.healthy]
    if len(primaries) != 1:
        what = "no writable primary" if not primaries else "several writable primaries"
        print(f"rwsplit: {what} found", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _print_result(result: Any) -> None:
    if result.dry_run:
        print("# dry run: nothing was changed; the statements it would run:")
        for node, stmt in result.statements:
            print(f"{node}: {stmt};")
    print(result.describe())


def _cmd_failover(args: argparse.Namespace) -> int:
    from .failover import failover

    options = _options(args, args.preferred)
    cluster = cluster_from_args(args)
    try:
        result = failover(cluster, options, dry_run=args.dry_run, progress=_progress)
    finally:
        cluster.close()
    _print_result(result)
    return EXIT_OK


def _cmd_switchover(args: argparse.Namespace) -> int:
    from .failover import switchover

    options = _options(args)
    cluster = cluster_from_args(args)
    try:
        result = switchover(cluster, args.to, options, dry_run=args.dry_run, progress=_progress)
    finally:
        cluster.close()
    _print_result(result)
    return EXIT_OK
