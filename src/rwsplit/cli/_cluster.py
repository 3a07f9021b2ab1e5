"""``rwsplit topology``, ``rwsplit failover`` and ``rwsplit switchover``.

The replication password for failover and switchover comes from
``$RWSPLIT_REPLICATION_PASSWORD`` or ``--replication-password-file`` (never from the command
line, where ``ps`` would show it); it is never printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, TopologyError
from ..topology.model import Node, Role, Topology, node_name
from . import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    _progress,
    add_cluster_arguments,
    plural,
    settings_from_args,
)
from ._topology_table import topology_lines, topology_rows

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..config import ClusterSettings
    from ..topology.failover import FailoverOptions, FailoverResult

__all__ = ["discovered_cluster", "register", "remember_members"]

log = logging.getLogger("rwsplit.cli")

_SCHEMA_NOTE = (
    "On the primary it keeps a small 'rwsplit' schema, created if missing: the cluster's "
    "members (rwsplit.cluster_nodes, so that a failover started from any one replica finds "
    "the others) and the log of every change of primary (rwsplit.failover_log); see "
    "docs/failover.md."
)


def register(sub: Any) -> None:
    """Add the cluster commands to the ``rwsplit`` sub-parsers."""
    p_topo = sub.add_parser(
        "topology",
        help="discover the cluster and print every node's role, health, lag and GTID",
        description="Discover the cluster from the given nodes (followed through replication "
        "sources, SHOW SLAVE HOSTS and the member list the nodes hold) and print it. Exit 0 "
        "with exactly one writable primary, 1 otherwise (unreachable, no primary, or "
        "several). " + _SCHEMA_NOTE,
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
        "--dry-run prints the plan and every statement. Exit 0 when every replica follows "
        "the new primary, 4 when some could not be repointed (named in the output: bring "
        "them back and re-run), 1 on failure. " + _SCHEMA_NOTE,
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
        "primary into a replica. Safe to re-run; --dry-run prints every statement. Exit "
        "codes as for failover. " + _SCHEMA_NOTE,
    )
    p_sw.add_argument("--to", required=True, metavar="NODE", help="host:port of the new primary")
    _failover_arguments(p_sw)
    p_sw.set_defaults(func=_cmd_switchover)

    p_mon = sub.add_parser(
        "monitor",
        help="watch a cluster in the foreground, fail it over (a service for systemd)",
        description="Discover the cluster (as 'topology' does), then probe every node every "
        "--interval seconds and log on stderr its topology and every change: nodes down and "
        "back, roles, failovers. With --auto-failover, a primary confirmed dead is replaced "
        "by the most advanced replica, so that application processes can run with failover "
        "off and only follow. Runs until SIGTERM or SIGINT (exit 0); exit 1 if it cannot "
        "keep monitoring. For systemd: Type=simple, Restart=on-failure (docs/failover.md). "
        + _SCHEMA_NOTE,
    )
    _failover_arguments(p_mon, dry_run=False)
    g = p_mon.add_argument_group("monitor")
    g.add_argument(
        "--auto-failover",
        action="store_true",
        help="promote a replica when the primary is confirmed dead (needs the replication "
        "account; default: the configuration's auto_failover)",
    )
    g.add_argument(
        "--interval",
        type=_positive,
        default=None,
        help="seconds between monitoring rounds (default: the configuration's "
        "monitor_interval, else 1)",
    )
    g.add_argument(
        "--timeout",
        type=_positive,
        default=None,
        help="connect / read timeout of each probe, seconds (default: monitor_timeout, else 1)",
    )
    g.add_argument(
        "--failure-threshold",
        type=int,
        default=None,
        help="failed probes in a row before the primary counts as dead (default 3)",
    )
    g.add_argument(
        "--preferred",
        metavar="NODE",
        action="append",
        default=[],
        help="host:port to promote first among the most advanced (repeatable)",
    )
    p_mon.set_defaults(func=_cmd_monitor)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return number


def _failover_arguments(p: argparse.ArgumentParser, *, dry_run: bool = True) -> None:
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
    if dry_run:
        g.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def _options(
    args: argparse.Namespace, settings: ClusterSettings, preferred: Sequence[str] = ()
) -> FailoverOptions:
    """Replication account and candidate rules: the command line and ``$RWSPLIT_*`` win
    over the configuration file's ``replication_user`` / ``replication_password``."""
    from ..topology.failover import FailoverOptions

    configured: FailoverOptions | None = settings.options.get("failover_options")
    user = args.replication_user or (configured.replication_user if configured else None)
    if not user and settings.primary.get_backend_name() == "postgresql":
        user = ""  # PostgreSQL standbys keep their own primary_conninfo credentials
    elif not user:
        raise ConfigurationError(
            "no replication account: pass --replication-user or set RWSPLIT_REPLICATION_USER "
            "(a sandbox prints its account: 'rwsplit sandbox status')"
        )
    if args.replication_password_file:
        try:
            password = Path(args.replication_password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read --replication-password-file: {exc.strerror}"
            ) from None
    elif "RWSPLIT_REPLICATION_PASSWORD" in os.environ or configured is None:
        password = os.environ.get("RWSPLIT_REPLICATION_PASSWORD", "")
    else:
        password = configured.replication_password
    return FailoverOptions(
        replication_user=user,
        replication_password=password,
        preferred=tuple(preferred) or (configured.preferred if configured else ()),
        never_promote=tuple(args.never_promote) or (configured.never_promote if configured else ()),
        apply_timeout=args.apply_timeout,
    )


# ---------------------------------------------------------------------------------- discovery


def _discover(settings: ClusterSettings, timeout: float) -> Topology:
    """The cluster as found from every configured node (see :func:`rwsplit.discover`),
    plus the nodes of the member list the reachable ones hold (``rwsplit.cluster_nodes``: a
    dead primary cannot list its replicas, a replica knows only its source), with each server
    once: a replica that reports another address than the one configured (``report_host``)
    is the same server when its ``server_id`` is the same."""
    from ..topology.probe import NodeProbe, _with_address, discover

    seeds = [settings.primary, *settings.replicas]
    topology = discover(seeds, timeout=timeout)
    if settings.primary.get_backend_name() == "postgresql":
        return topology  # no member list, no server_id there (pg_probe.discover_postgresql)
    found = {n.name for n in topology.nodes}
    extra = sorted(set(_recorded_members(topology, timeout)) - found)
    if extra:
        log.info("the member list names %s too", ", ".join(extra))
        template = next(n.url for n in topology.nodes if n.healthy)
        topology = discover([*seeds, *(_with_address(template, a) for a in extra)], timeout=timeout)
    seed_names = {node_name(u) for u in seeds}
    by_server: dict[int, Node] = {}
    kept: list[Node] = []
    # Seeds first: when two names reach one server, the configured name wins.
    for node in sorted(topology.nodes, key=lambda n: n.name not in seed_names):
        if node.healthy:
            try:
                with NodeProbe(node.url, timeout) as probe:
                    server_id = probe.probe().server_id
            except Exception:  # went away meanwhile: keep it, the command probes again
                server_id = None
            if server_id is not None:
                if server_id in by_server:
                    log.info(
                        "%s is %s (server_id %s)", node.name, by_server[server_id].name, server_id
                    )
                    continue
                by_server[server_id] = node
        kept.append(node)
    order = {n.name: i for i, n in enumerate(topology.nodes)}
    return Topology(tuple(sorted(kept, key=lambda n: order[n.name])))


def _recorded_members(topology: Topology, timeout: float) -> list[str]:
    """Every node named in the member lists the reachable nodes hold (their union: a node
    holds what was recorded while it followed the primary that recorded it)."""
    from ..topology._ledger import members
    from ..topology.probe import NodeProbe, describe_error

    names: set[str] = set()
    for node in topology.nodes:
        if not node.healthy:
            continue
        try:
            with NodeProbe(node.url, timeout) as probe:
                names.update(members(probe))
        except Exception as exc:
            log.info("%s: cannot read the member list: %s", node.name, describe_error(exc))
    return sorted(names)


def remember_members(
    topology: Topology,
    timeout: float = 2.0,
    *,
    remove: Sequence[str] = (),
    cluster: Cluster | None = None,
) -> bool:
    """Add the healthy nodes of *topology* to the member list on its one writable primary
    (and drop *remove*), when that changes the list; ``True`` when written. Best effort: a
    missing privilege or an unreachable primary is logged, never raised. With *cluster*, as
    its failover does: its admin account and TLS settings."""
    from ..topology._ledger import record_members
    from ..topology.probe import NodeProbe, describe_error

    primaries = [n for n in topology.nodes if n.role is Role.PRIMARY and n.healthy]
    if len(primaries) != 1 or primaries[0].url.get_backend_name() == "postgresql":
        return False  # PostgreSQL: no member list (discovery follows pg_stat_replication)
    (primary,) = primaries
    names = [n.name for n in topology.nodes if n.healthy and n.name not in remove]
    url = cluster.admin_url(primary) if cluster is not None else primary.url
    connect_args = cluster.probe_connect_args(primary) if cluster is not None else None
    try:
        with NodeProbe(url, timeout, connect_args) as probe:
            return record_members(probe, names, remove)
    except Exception as exc:
        log.info(
            "%s: could not record the cluster's members (%s); a failover started from one "
            "replica will not find its siblings: grant CREATE, INSERT, DELETE, SELECT on "
            "rwsplit.* to this account",
            primary.name,
            describe_error(exc),
        )
        return False


def _primary_of(topology: Topology, configured: str | None) -> Node:
    """The node that is, or was, the primary: the one writable primary; among several, the
    configured one; with none alive, the dead node (a replica's unreachable source)."""
    alive = [n for n in topology.nodes if n.role is Role.PRIMARY and n.healthy]
    if len(alive) == 1:
        return alive[0]
    down = [n for n in topology.nodes if not n.healthy]
    # The dead primary is the source the surviving replicas name (not a dead sibling).
    sources = {n.replication.source for n in topology.nodes if n.healthy and n.replication}
    candidates = alive or [n for n in down if n.name in sources] or down
    for n in candidates:
        if n.name == configured:
            return n
    if alive or len(candidates) == 1:
        return candidates[0]
    unreachable = ", ".join(n.name for n in candidates) or "none"
    raise TopologyError(
        f"cannot tell which node is the primary: none is writable, unreachable: {unreachable}; "
        "pass the primary with --primary URL"
    )


def discovered_cluster(
    args: argparse.Namespace,
    *,
    timeout: float = 2.0,
    fallback: bool = False,
    **options: Any,
) -> Cluster:
    """The :class:`~rwsplit.Cluster` of every node discovered from the configured ones
    (the same discovery as ``rwsplit topology``; ``--replica URL`` alone is enough).

    *fallback*: when no node answers, use the configured nodes as they are (the monitor
    waits for them; failover and switchover report what they find) instead of raising
    :class:`~rwsplit.TopologyError`.
    """
    from ..cluster import Cluster

    settings = settings_from_args(args, seeds_only=True)
    configured = node_name(settings.primary) if _names_primary(args) else None
    try:
        topology = _discover(settings, timeout)
    except TopologyError as exc:
        if not fallback or configured is None:  # only seeds given: no primary to fall back on
            raise
        log.warning("discovery failed (%s); watching the configured nodes", exc)
        return Cluster.from_settings(settings, **options)
    primary = _primary_of(topology, configured)
    replicas = [n.url for n in topology.nodes if n.name != primary.name]
    return Cluster.from_settings(settings, primary=primary.url, replicas=replicas, **options)


def _names_primary(args: argparse.Namespace) -> bool:
    """Whether the configuration says which node is the primary (not only seeds)."""
    return bool(
        args.primary
        or getattr(args, "config", None)
        or os.environ.get("RWSPLIT_PRIMARY_URL")
        or os.environ.get("RWSPLIT_HOST")
    )


# ---------------------------------------------------------------------------------- commands


def _cmd_topology(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, seeds_only=True)
    topology = _discover(settings, args.timeout)
    rows = topology_rows(topology)
    if args.json:
        print(json.dumps({"nodes": rows}, indent=2))
    else:
        print("\n".join(topology_lines(rows)))
    primaries = [n for n in topology.nodes if n.role is Role.PRIMARY and n.healthy]
    if len(primaries) != 1:
        what = "no writable primary" if not primaries else "several writable primaries"
        print(f"rwsplit: {what} found", file=sys.stderr)
        return EXIT_FAILED
    remember_members(topology, args.timeout)
    return EXIT_OK


def _print_result(result: FailoverResult) -> None:
    if result.dry_run and result.statements:
        print("# dry run: nothing was changed; the statements it would run:")
        for node, stmt in result.statements:
            print(f"{node}: {stmt};")
    print(result.describe())
    if not result.dry_run and not result.nothing_to_do and result.epoch is not None:
        print(
            f"recorded: epoch {result.epoch} in rwsplit.failover_log on {result.new_primary} "
            "(the 'rwsplit' schema on the primary, created if missing; docs/failover.md)"
        )
    if result.dry_run:
        planned = "nothing to do" if result.nothing_to_do else f"{result.kind} planned"
        print(f"rwsplit: dry run: {planned}, nothing was changed", file=sys.stderr)


def _conclude(
    result: FailoverResult, topology: Topology, timeout: float, cluster: Cluster | None = None
) -> int:
    """Print *result*, record the members it leaves, and the exit code: 4 while a replica
    does not follow the new primary (the job is not done)."""
    _print_result(result)
    if not result.dry_run and result.new_primary:
        old = result.old_primary
        replaced = result.kind == "failover" and old is not None and old != result.new_primary
        remove = [old] if replaced and old else []
        remember_members(topology, timeout, remove=remove, cluster=cluster)
    left = [name for name, _ in result.skipped]
    if not left:
        return EXIT_OK
    print(
        f"rwsplit: {result.kind} {'would be ' if result.dry_run else ''}incomplete: "
        f"{', '.join(left)} {'does' if len(left) == 1 else 'do'} not follow "
        f"{result.new_primary} (see 'left alone' above); bring "
        f"{'it' if len(left) == 1 else 'them'} back or rebuild "
        f"{'it' if len(left) == 1 else 'them'}, then run the command again",
        file=sys.stderr,
    )
    return EXIT_INCOMPLETE


def _progress_for(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress lines on stderr; a dry run does not claim that it did anything."""
    if not args.dry_run:
        return _progress

    def progress(msg: str) -> None:
        if msg.startswith(("failover done", "switchover done")):
            return  # replaced by the "dry run: ... nothing was changed" line
        _progress(f"(dry run) {msg}")

    return progress


def _cmd_failover(args: argparse.Namespace) -> int:
    from ..topology.failover import failover
    from ._pg_failover import is_postgresql, pg_failover_command

    if is_postgresql(pg := settings_from_args(args, seeds_only=True)):
        return pg_failover_command(args, pg)

    options = _options(args, settings_from_args(args, seeds_only=True), args.preferred)
    cluster = discovered_cluster(args, timeout=options.timeout, fallback=True)
    try:
        if not _recorded_members(cluster.topology, options.timeout):
            print(
                "rwsplit: note: no node holds a member list (rwsplit.cluster_nodes): only "
                "the nodes reachable from the given ones are considered; name every replica "
                "with --replica",
                file=sys.stderr,
            )
        result = failover(cluster, options, dry_run=args.dry_run, progress=_progress_for(args))
    finally:
        cluster.close()
    return _conclude(result, cluster.topology, options.timeout, cluster)


def _cmd_switchover(args: argparse.Namespace) -> int:
    from ..topology.failover import switchover
    from ._pg_failover import is_postgresql, pg_switchover_command

    if is_postgresql(pg := settings_from_args(args, seeds_only=True)):
        return pg_switchover_command(args, pg)

    options = _options(args, settings_from_args(args, seeds_only=True))
    cluster = discovered_cluster(args, timeout=options.timeout, fallback=True)
    try:
        result = switchover(
            cluster, args.to, options, dry_run=args.dry_run, progress=_progress_for(args)
        )
    finally:
        cluster.close()
    return _conclude(result, cluster.topology, options.timeout, cluster)


# ---------------------------------------------------------------------------------- monitor


def _describe(topology: Topology) -> str:
    parts = []
    for n in topology.nodes:
        part = f"{n.role.value} {n.name}"
        if not n.healthy:
            part += " DOWN" + (f" ({n.error})" if n.error else "")
        elif n.role is Role.REPLICA and n.lag_seconds is not None:
            part += f" lag {n.lag_seconds:.1f}s"
        parts.append(part)
    return "; ".join(parts)


def _change_logger(logged: list[Topology]) -> Callable[[Topology | None, Topology], None]:
    """A topology listener that logs each change of state (appended to *logged*)."""

    def log_topology(old: Topology | None, new: Topology) -> None:
        # Changes of state only: a dead node's failure count, a replica's lag or an error
        # text that changes from round to round publish a new topology, not a new state.
        if logged and _state(logged[-1]) == _state(new):
            return
        logged.append(new)
        log.info("topology: %s", _describe(new))

    return log_topology


def _state(topology: Topology) -> tuple[tuple[str, Role, bool, bool | None], ...]:
    """What the monitor's log reports a change of: each node's role, health, read_only."""
    return tuple((n.name, n.role, n.healthy, n.read_only) for n in topology.nodes)


def _cmd_monitor(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, seeds_only=True)
    configured = settings.options
    auto = bool(args.auto_failover or configured.get("auto_failover"))
    options = _options(args, settings, args.preferred) if auto else None
    interval = args.interval or configured.get("monitor_interval") or 1.0
    timeout = args.timeout or configured.get("monitor_timeout") or 1.0
    threshold = args.failure_threshold or configured.get("failure_threshold") or 3
    logging.getLogger("rwsplit").setLevel(min(logging.INFO, logging.getLogger().level))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        cluster = discovered_cluster(
            args,
            timeout=max(timeout, 2.0),
            fallback=True,
            monitor_interval=interval,
            monitor_timeout=timeout,
            failure_threshold=threshold,
            auto_failover=auto,
            failover_options=options,
        )
        try:
            return _watch(cluster, stop, auto=auto)
        finally:
            cluster.close()
            log.info("monitor stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(cluster: Cluster, stop: threading.Event, *, auto: bool) -> int:
    monitor = cluster.monitor
    assert monitor is not None  # monitor_interval is set
    log.info(
        "monitoring %s every %.3gs, auto-failover %s",
        plural(len(cluster.topology.nodes), "node"),
        monitor.interval,
        "on" if auto else "off",
    )
    logged: list[Topology] = []
    log_topology = _change_logger(logged)

    cluster.subscribe(log_topology)
    replaced: list[str] = []  # primaries an automatic failover replaced: off the member list

    def on_failover(result: FailoverResult) -> None:
        log.warning("%s", result.describe().replace("\n", "; "))
        if result.promoted and result.old_primary not in (None, result.new_primary):
            replaced.append(str(result.old_primary))

    monitor.failover_listeners.append(on_failover)
    # The first round's view (bounded: a round takes at most about the probe timeout).
    while monitor.rounds == 0 and monitor.running and not stop.wait(0.05):
        pass
    if not logged:
        log_topology(None, cluster.topology)
    remembered: object = None
    while not stop.wait(1.0):
        if not monitor.running:
            log.error("the monitor thread stopped; exiting so that the service restarts")
            return EXIT_FAILED
        topology = cluster.topology
        if _state(topology) != remembered:  # off the monitor's thread: a write may be slow
            remembered = _state(topology)
            up = {n.name for n in topology.nodes if n.healthy}  # a rejoined one stays
            gone = [r for r in replaced if r not in up]
            remember_members(topology, monitor.timeout, remove=gone, cluster=cluster)
    return EXIT_OK
