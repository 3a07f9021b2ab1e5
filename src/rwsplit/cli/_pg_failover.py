"""``rwsplit failover`` / ``rwsplit switchover`` on a PostgreSQL cluster.

The nodes come from :func:`~rwsplit.topology.pg_probe.discover_postgresql` (the configured
nodes and what they name); no replication account is needed (each standby keeps its own
``primary_conninfo`` credentials). Exit codes as on MySQL: 0 done (a former primary that needs
``pg_rewind`` or a rebuild is reported, not a failure), 1 refused or failed, 4 a standby does
not follow the new primary.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..errors import TopologyError
from ..topology.model import Role, node_name
from . import EXIT_INCOMPLETE, EXIT_OK

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..config import ClusterSettings
    from ..topology.pg_failover import PgFailoverResult

__all__ = ["is_postgresql", "pg_failover_command", "pg_switchover_command"]


def is_postgresql(settings: ClusterSettings) -> bool:
    """Whether the configured cluster is a PostgreSQL one (from its URLs)."""
    return settings.primary.get_backend_name() == "postgresql"


def _cluster(args: argparse.Namespace, settings: ClusterSettings, timeout: float) -> Cluster:
    from ..cluster import Cluster
    from ..topology.pg_probe import discover_postgresql

    seeds = [settings.primary, *settings.replicas]
    configured = node_name(settings.primary) if args.primary else None
    try:
        topology = discover_postgresql(seeds, timeout=timeout)
    except TopologyError:
        return Cluster.from_settings(settings)
    alive = [n for n in topology.nodes if n.role is Role.PRIMARY and n.healthy]
    down = [n for n in topology.nodes if not n.healthy]
    pick = alive[0] if len(alive) == 1 else None
    if pick is None:
        named = [n for n in [*alive, *down] if n.name == configured]
        pick = named[0] if named else (down[0] if len(down) == 1 else None)
    if pick is None:
        return Cluster.from_settings(settings)
    replicas = [n.url for n in topology.nodes if n.name != pick.name]
    return Cluster.from_settings(settings, primary=pick.url, replicas=replicas)


def _options(args: argparse.Namespace, preferred: Any) -> Any:
    from ..topology.failover import FailoverOptions

    return FailoverOptions(
        "",
        "",
        preferred=tuple(preferred or ()),
        never_promote=tuple(args.never_promote),
        apply_timeout=args.apply_timeout,
    )


def _conclude(result: PgFailoverResult) -> int:
    if result.dry_run and result.statements:
        print("# dry run: nothing was changed; the statements it would run:")
        for node, stmt in result.statements:
            print(f"{node}: {stmt};")
    print(result.describe())
    if result.skipped:
        left = ", ".join(n for n, _ in result.skipped)
        print(
            f"rwsplit: {result.kind} incomplete: {left} does not follow {result.new_primary}; "
            "rebuild it (pg_rewind or a new base backup) or repoint it, then run the command "
            "again",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


def pg_failover_command(args: argparse.Namespace, settings: ClusterSettings) -> int:
    from ..topology.pg_failover import failover
    from ._cluster import _progress_for

    options = _options(args, getattr(args, "preferred", ()))
    cluster = _cluster(args, settings, options.timeout)
    try:
        result = failover(cluster, options, dry_run=args.dry_run, progress=_progress_for(args))
    finally:
        cluster.close()
    return _conclude(result)


def pg_switchover_command(args: argparse.Namespace, settings: ClusterSettings) -> int:
    from ..topology.pg_failover import switchover
    from ._cluster import _progress_for

    options = _options(args, ())
    cluster = _cluster(args, settings, options.timeout)
    try:
        result = switchover(
            cluster, args.to, options, dry_run=args.dry_run, progress=_progress_for(args)
        )
    finally:
        cluster.close()
    return _conclude(result)
