"""The failover runbook, automated: :func:`failover` (primary dead) and :func:`switchover`.

**Failover** (the primary is gone):

1. confirm it is dead: it fails ``confirm_attempts`` probes in a row *and* every reachable
   replica has lost its replication connection too (else: a partition, refuse);
2. ``STOP SLAVE IO_THREAD`` on every replica, then wait until each has applied its relay log
   (``MASTER_GTID_WAIT(Gtid_IO_Pos)``);
3. choose the most advanced replica by GTID (``preferred`` first among equals, never one in
   ``never_promote``);
4. promote it: stop and reset replication, seed its binlog GTID state with what it applied
   (see :meth:`rwsplit.servers.mariadb.MariaDB.promote`), ``read_only=OFF``;
5. repoint every other replica at it with GTID positioning and start it;
6. fence the old primary: the cluster keeps it out of routing and, if it comes back, the
   monitor makes it read-only before anything else.

**Switchover** (planned, zero lost writes): stop routing writes; old primary
``read_only=ON``; kill its client connections and wait until they are gone (so no commit is
in flight); read its final GTID position; wait until the target (and every other replica)
applied it; promote the target; repoint the others; make the old primary a replica.

Both are idempotent: every step first looks at the servers' state, so running the command
again after a crash half-way finishes the job (or reports that there is nothing to do). Every
statement is logged (logger ``rwsplit.failover``) with its node, passwords masked; with
``dry_run=True`` nothing is changed and the result lists every statement that would run.

>>> from rwsplit.failover import FailoverOptions
>>> FailoverOptions("repl", "s3cret", preferred=("db2:3306",))
FailoverOptions(replication_user='repl', preferred=('db2:3306',), never_promote=())
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from ..errors import ConfigurationError, FailoverError, FencedNodeError
from ..servers import MariaDBGtid, MySQL, NodeState, ReplicationDialect, SemiSync, Statement
from ._coordination import QUORUMS, Acquired, FailoverLock, lock_name
from ._failover_common import (
    Progress,
    Run,
    check_lock_held,
    confirm_dead,
    in_parallel,
    lock_for,
    mark_followed,
    monitor_paused,
    no_quorum,
    open_probes,
    pick,
    previous_primary,
    promotable,
)
from ._ledger import (
    DEFAULT_SCHEMA,
    Record,
    create_statements,
    current_epoch,
    history,
    query_rows,
    record_statements,
    replaced_by,
)
from .model import Node, Role, Topology, TopologyHost
from .probe import (
    SERVER_ANSWERED,
    NodeProbe,
    _with_address,
    describe_error,
    node_from_state,
    server_answered,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "FailoverOptions",
    "FailoverResult",
    "failover",
    "follow_current_primary",
    "rejoin",
    "settle_by_failover_log",
    "switchover",
    "verify_writable_primary",
]

log = logging.getLogger("rwsplit.failover")


@dataclass(frozen=True)
class FailoverOptions:
    """How to fail over: replication credentials and candidate rules.

    :param replication_user: the account replicas use to connect to the new primary.
    :param replication_password: its password (never logged, shown or repr'd).
    :param preferred: node names (``host:port``) to promote first, in order, among the most
        advanced replicas.
    :param never_promote: node names that must never become primary.
    :param confirm_attempts: failed probes in a row before the primary counts as dead (the
        CLI probes; the monitor counts its own rounds).
    :param confirm_interval: seconds between those probes.
    :param apply_timeout: seconds a replica may take to apply its relay log / catch up.
    :param timeout: connect / read timeout of the admin connections, seconds.
    :param cluster_id: names the cross-process failover lock
        (``GET_LOCK('rwsplit_failover_<cluster_id>')``): every process that may fail over
        the same servers must use the same id (the default is fine for one cluster per
        set of servers).
    :param quorum: ``"majority_of_running"`` (default: the lock must be held on most of the
        servers that answer) or ``"majority_of_all"`` (most of all servers, also those down:
        safe under partitions, but a failover then needs most servers up).
    :param coordinate: take that lock (default). Off: this process trusts it is alone.
    :param ledger_schema: the schema of the failover log table (``failover_log``) that
        records every change of primary (:mod:`rwsplit._ledger`).
    :param rejoin: the monitor makes a returning former primary a replica of the new one
        when its GTID history allows it (default); otherwise it only keeps it read-only.
    :param semi_sync: semi-synchronous replication (MariaDB, MySQL): ``True`` turns the
        waiting side (``rpl_semi_sync_master_enabled`` / ``rpl_semi_sync_source_enabled``)
        on on every promoted node before it takes writes, ``False`` never does, ``None``
        (default) does it when the cluster ran it: a switchover reads the old primary; a
        failover uses what the monitor last saw on the primary, else whether the promoted
        node acknowledged as a semi-sync replica. Every node that stops being the primary,
        or is repointed, has it turned off either way: a replica that waits for
        acknowledgements of what it applies (``log_slave_updates``) stalls.
    """

    replication_user: str
    replication_password: str = field(repr=False)
    preferred: tuple[str, ...] = ()
    never_promote: tuple[str, ...] = ()
    confirm_attempts: int = field(default=3, repr=False)
    confirm_interval: float = field(default=0.5, repr=False)
    apply_timeout: float = field(default=30.0, repr=False)
    timeout: float = field(default=5.0, repr=False)
    cluster_id: str = field(default="default", repr=False)
    quorum: str = field(default="majority_of_running", repr=False)
    coordinate: bool = field(default=True, repr=False)
    ledger_schema: str = field(default=DEFAULT_SCHEMA, repr=False)
    rejoin: bool = field(default=True, repr=False)
    semi_sync: bool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.quorum not in QUORUMS:
            raise ConfigurationError(
                f"quorum must be one of {', '.join(QUORUMS)}, got {self.quorum!r}"
            )
        try:
            lock_name(self.cluster_id).encode("ascii")
            record_statements("h", 1, None, "failover", self.ledger_schema)
        except (UnicodeEncodeError, ValueError):
            raise ConfigurationError(
                "cluster_id must be ASCII and ledger_schema a plain schema name "
                f"(letters, digits, _), got {self.cluster_id!r} and {self.ledger_schema!r}"
            ) from None


@dataclass
class FailoverResult:
    """What a failover or switchover did (or, with ``dry_run``, would do)."""

    kind: str
    """``"failover"`` or ``"switchover"``."""
    old_primary: str | None
    new_primary: str | None
    dry_run: bool = False
    nothing_to_do: bool = False
    repointed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Nodes left alone, with the reason (for example: needs a rebuild)."""
    fenced: list[str] = field(default_factory=list)
    statements: list[tuple[str, str]] = field(default_factory=list)
    """``(node, statement)`` for every statement run (or planned), passwords masked."""
    timeline: dict[str, float] = field(default_factory=dict)
    """Seconds from the start of the operation to the end of each step."""
    started_at: float = 0.0
    """:func:`time.monotonic` when the operation started."""
    followed: bool = False
    """Another process held the failover lock and did the work; this one followed it."""
    locked_on: list[str] = field(default_factory=list)
    """The servers this process held the cross-process failover lock on."""
    epoch: int | None = None
    """The failover log's epoch for the new primary (``None``: nothing recorded)."""

    @property
    def promoted(self) -> bool:
        """True when this call promoted a node (not a dry run, not a follow, not a no-op)."""
        return not self.dry_run and "promoted" in self.timeline

    def describe(self) -> str:
        """A short human summary (no passwords)."""
        if self.followed:
            return (
                f"{self.kind} done by another process: {self.new_primary} is the primary "
                f"(epoch {self.epoch}); followed it"
            )
        if self.nothing_to_do:
            return f"nothing to do: {self.new_primary} is the primary"
        if "promoted" not in self.timeline:  # promoted earlier: this run finished the job
            verb = "would finish" if self.dry_run else "finished"
            head = f"{self.kind}: {self.new_primary} was already the primary; {verb} the job"
        else:
            verb = "would promote" if self.dry_run else "promoted"
            head = f"{self.kind}: {verb} {self.new_primary} (old primary {self.old_primary})"
        lines = [head]
        if self.repointed:
            lines.append("replicas repointed: " + ", ".join(self.repointed))
        for name, why in self.skipped:
            lines.append(f"left alone: {name}: {why}")
        if self.fenced:
            lines.append("fenced: " + ", ".join(self.fenced))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- plumbing


class _Run(Run[FailoverResult]):
    """Runs (or, in a dry run, records) statements on nodes; logs each one."""

    def exec(
        self, probe: NodeProbe, stmt: Statement, *, timeout: float | None = None
    ) -> list[dict[str, object]]:
        return self._run(
            probe.name,
            stmt.display(),
            lambda: probe.query(stmt.sql, stmt.params, timeout=timeout),
            describe_error,
        )


def _probes(
    cluster: TopologyHost, nodes: Sequence[Node], timeout: float
) -> contextlib.AbstractContextManager[dict[str, NodeProbe]]:
    return open_probes(cluster, nodes, timeout, NodeProbe)


def _probe(probe: NodeProbe) -> NodeState | None:
    try:
        return probe.probe()
    except Exception as exc:
        log.info("%s: unreachable: %s", probe.name, describe_error(exc))
        return None


def _dead_probe_timeout(cluster: TopologyHost, options: FailoverOptions) -> float:
    """How long a node the monitor just confirmed dead may take to answer the failover.

    The monitor's own probe timeout (it failed ``failure_threshold`` of those in a row, and
    its replicas lost it too): a hung node is not waited on for ``options.timeout`` again.
    """
    monitor = cluster.monitor
    limit = monitor.timeout if monitor is not None else options.timeout
    return min(options.timeout, limit)


def _probe_all(
    probes: Mapping[str, NodeProbe], known_dead: Sequence[str], dead_timeout: float
) -> dict[str, NodeState | None]:
    """Every node's state, probed in parallel; a node in *known_dead* within *dead_timeout*.

    A node confirmed dead is still probed (it may have come back writable, which the failover
    must see), but a hung one then costs the monitor's timeout, not ``options.timeout``,
    and it does not delay the others.
    """
    for name in known_dead:
        probe = probes.get(name)
        if probe is not None and probe.timeout > dead_timeout:
            probe.close()
            probe.timeout = dead_timeout
    return in_parallel(probes, _probe, "rwsplit-failover")


def fence_statements(probe: NodeProbe) -> list[Statement]:
    """The statements that make a former primary read-only (probed once: ``probe.dialect``).

    The source (waiting) side of semi-sync is turned off first, for good: the node is no
    longer the primary. ``SET GLOBAL read_only = ON`` waits for every commit in progress, and
    on a semi-sync primary that hung and came back after a failover, commits may be waiting
    for a replica's ACK that never comes (its replicas follow the new primary; the sandbox,
    like a lossless production setup, never falls back to asynchronous): read-only would
    wait forever. Turning the source side off releases them. They were never acknowledged to
    their application (its driver timed out or rwsplit cut the connection: outcome unknown),
    and they stay on this node only, as errant transactions: :func:`rejoin` then keeps it
    fenced for a rebuild. And a node that logs what it replicates (``log_replica_updates``,
    MySQL's default) with the source side still on would wait for an acknowledgement of
    every transaction it applies, from replicas it no longer has.
    """
    stmts = _dialect(probe).set_read_only(True)
    off = semi_sync_source_off(probe)
    if off:
        waiting = _semi_sync_waiting(probe)
        if waiting:
            log.warning(
                "%s: %d commits wait for a semi-sync ACK that will not come (this former "
                "primary was replaced): releasing them to make it read-only; they stay on "
                "this node only",
                probe.name,
                waiting,
            )
    return off + stmts


def _semi_sync(probe: NodeProbe) -> SemiSync:
    """*probe*'s node's semi-sync switches (none known when they cannot be read)."""
    d = _dialect(probe)
    try:
        return d.parse_semi_sync(probe.query(d.semi_sync_sql))
    except Exception as exc:  # unreachable / no privilege: nothing known, nothing changed
        log.info("%s: cannot read the semi-sync settings: %s", probe.name, describe_error(exc))
        return SemiSync()


def _semi_sync_waiting(probe: NodeProbe) -> int:
    """How many commits wait for a semi-sync ACK on *probe*'s node (0: unknown)."""
    d = _dialect(probe)
    try:
        rows = probe.query(f"SHOW GLOBAL STATUS LIKE '{d.semi_sync_status('wait_sessions')}'")
        return int(str(_value(rows[0]))) if rows else 0
    except Exception:  # no semi-sync here: nothing can wait for an ACK
        return 0


def semi_sync_source(probe: NodeProbe) -> bool | None:
    """Does the node wait for semi-sync acknowledgements as a primary? (``None``: it has no
    source side, or it cannot be read.)"""
    if probe.dialect is None:
        return None
    semi = _semi_sync(probe)
    return semi.source_on if semi.source_switch is not None else None


def semi_sync_source_off(probe: NodeProbe) -> list[Statement]:
    """The statement turning the source side of semi-sync off on a node that stops being the
    primary (none when it is off or the node has no source side)."""
    stmt = _semi_sync(probe).source(False)
    return [stmt] if stmt is not None else []


def semi_sync_back_on(probe: NodeProbe) -> tuple[int, Statement | None]:
    """On a primary promoted without semi-sync: turn its source side on once a semi-sync
    replica is connected to it (the monitor's part, :mod:`rwsplit.topology._semi_sync`).

    Returns how many semi-sync replicas are connected (``Rpl_semi_sync_master_clients``,
    MySQL's ``Rpl_semi_sync_source_clients``: counted whether the source side is on or not)
    and the statement run, ``None`` when none was (no such replica: nothing would
    acknowledge; on already; no source side). A failed statement raises.
    """
    d = _dialect(probe)
    rows = probe.query(f"SHOW GLOBAL STATUS LIKE '{d.semi_sync_status('clients')}'")
    clients = int(str(_value(rows[0]))) if rows else 0
    if clients < 1:
        return clients, None
    stmt = d.parse_semi_sync(probe.query(d.semi_sync_sql)).source(True)
    if stmt is not None:
        probe.query(stmt.sql, stmt.params)
    return clients, stmt


def _owe_semi_sync(cluster: TopologyHost, node: str, dry_run: bool) -> str:
    """A failover promoted *node* without semi-sync although the cluster ran it: the monitor
    (if any) turns it back on once a semi-sync replica follows it. What happens, for the log."""
    monitor = cluster.monitor
    if monitor is None:
        return "turn the semi-sync source side on once a replica follows it"
    if not dry_run:
        monitor._semi_sync_debt.note(node, True)  # the failover holds the monitor's round
    return "the monitor turns the semi-sync source side back on once a replica follows it"


def _semi_sync_to_turn_on(probe: NodeProbe, on: bool, why: str) -> SemiSync | None:
    """The switches of a node being promoted whose source side is to be turned on: *on* (the
    cluster ran semi-sync) and it is off. ``None``: not asked, on already, or impossible
    (logged)."""
    if not on:
        return None
    semi = _semi_sync(probe)
    if semi.source_switch is None:
        log.warning(
            "%s: %s, but this node has no semi-sync source side: it runs asynchronously "
            "(MySQL: load the semisync_source plugin)",
            probe.name,
            why,
        )
        return None
    return None if semi.source_on else semi


def _with_semi_sync(
    stmts: list[Statement], d: ReplicationDialect, semi: SemiSync | None
) -> list[Statement]:
    """*stmts* (a promotion, ending with the statements that make the node writable) with
    the source side of *semi* (see :func:`_semi_sync_to_turn_on`) turned on before the node
    becomes writable: no commit is acknowledged there before a replica has it."""
    on = semi.source(True) if semi is not None else None
    if on is None:
        return stmts
    tail = len(d.set_read_only(False))
    return [*stmts[:-tail], on, *stmts[-tail:]]


def _cluster_semi_sync(cluster: TopologyHost, options: FailoverOptions, new: NodeProbe) -> bool:
    """Did the cluster run semi-sync (a failover: the old primary cannot be asked)?

    ``options.semi_sync`` when set; else what the monitor last read on the old primary (or
    owed it: promoted without semi-sync, no replica followed it yet); else whether the node
    being promoted acknowledged as a semi-sync replica.
    """
    if options.semi_sync is not None:
        return options.semi_sync
    monitor = cluster.monitor
    if monitor is not None and monitor._semi_sync_debt.owed is not None:
        return True  # the primary that just died had been promoted without it: still owed
    if monitor is not None and monitor._primary_semi_sync is not None:
        return monitor._primary_semi_sync
    return _semi_sync(new).replica_on


def _dialect(probe: NodeProbe) -> ReplicationDialect:
    assert probe.dialect is not None, "probe the node first"
    return probe.dialect


def _url_address(url: URL) -> tuple[str, int]:
    return url.host or "localhost", url.port or 3306


def _choose(
    candidates: Mapping[str, NodeState],
    options: FailoverOptions,
    order: Sequence[str],
    *,
    positional: bool = False,
) -> str:
    """The replica to promote: the most advanced (GTIDs off, *positional*: the furthest in
    the old primary's binary log), then ``preferred``, then configuration order."""
    allowed = promotable(candidates, options, "replica", "all unreachable or in never_promote")
    if positional:
        top_key = max(_position_key(s) for s in allowed.values())
        best = [n for n, s in allowed.items() if _position_key(s) == top_key]
    else:
        best = _most_advanced(allowed)
    return pick(best, options, order)


def _most_advanced(allowed: Mapping[str, NodeState]) -> list[str]:
    best = [
        n
        for n, s in allowed.items()
        if all(s.executed.contains(o.executed) for o in allowed.values())
    ]
    if not best:  # diverged positions: fall back to the most transactions applied
        top = max(s.executed.progress for s in allowed.values())
        best = [n for n, s in allowed.items() if s.executed.progress == top]
    return best


def _publish(
    cluster: TopologyHost,
    primary: str,
    fenced: Sequence[str],
    states: Mapping[str, NodeState | None],
) -> None:
    old = cluster.topology
    nodes: list[Node] = []
    for n in old.nodes:
        s = states.get(n.name)
        if n.name == primary:
            nodes.append(n.evolve(role=Role.PRIMARY, healthy=True, read_only=False, error=None))
        elif n.name in fenced or n.name in cluster.fenced:  # also those fenced before this run
            nodes.append(n.evolve(role=Role.UNKNOWN, healthy=False, error="fenced former primary"))
        elif s is not None:
            nodes.append(node_from_state(n.name, n.url, s, role=Role.REPLICA))
        else:
            nodes.append(n)
    cluster.publish(Topology(tuple(nodes), old.version + 1))


def _lock_for(
    cluster: TopologyHost, options: FailoverOptions, skip: Sequence[str] = ()
) -> FailoverLock:
    """The cross-process failover lock on every node but *skip* (known dead: not tried)."""
    return lock_for(FailoverLock, lock_name(options.cluster_id), cluster, options, skip)


def _record(
    run: _Run,
    probe: NodeProbe,
    options: FailoverOptions,
    old: str | None,
) -> None:
    """Append the new primary to the failover log on it; a failure is logged, not fatal.

    Written once the other replicas are repointed, not right at the promotion: with
    semi-sync and ``rpl_semi_sync_master_wait_no_slave=ON`` (MariaDB's default) a commit on a
    primary without a connected replica waits ``rpl_semi_sync_master_timeout`` (10 s), and
    nothing would repoint the replicas meanwhile. Writes resume before it (published at the
    promotion); processes following this failover follow it once it is written.
    """
    host, port = _url_address(probe.url)
    try:
        stmts = record_statements(host, port, old, run.result.kind, options.ledger_schema)
        if not create_statements(probe, options.ledger_schema):
            stmts = stmts[2:]  # the table exists: no DDL replicated again
        for stmt in stmts:
            run.exec(probe, stmt)
        if not run.result.dry_run:
            rec = current_epoch(probe, options.ledger_schema)
            run.result.epoch = rec.epoch if rec is not None else None
    except Exception as exc:  # the failover itself succeeded: never undo it for the log
        log.error(
            "%s: could not record the change in the failover log (%s); processes started "
            "from an old configuration will not find it: grant CREATE, INSERT, SELECT on "
            "%s.* to the failover account",
            probe.name,
            describe_error(exc),
            options.ledger_schema,
        )


def _recorded(probe: NodeProbe, options: FailoverOptions) -> Record | None:
    try:
        return current_epoch(probe, options.ledger_schema)
    except Exception as exc:
        log.info("%s: cannot read the failover log: %s", probe.name, describe_error(exc))
        return None


def _take_lock_or_follow(
    run: _Run,
    cluster: TopologyHost,
    options: FailoverOptions,
    probes: Mapping[str, NodeProbe],
    lock: FailoverLock,
    old: str | None,
) -> bool:
    """Hold the failover lock (``False``), or follow the process that holds it (``True``).

    While another process holds the lock this one waits, bounded, polling: it follows as soon
    as a node other than *old* is writable, replicates from nobody and records itself in the
    failover log as the primary that replaced *old*; if the holder dies (its locks go with
    its connections) this process takes the lock and finishes the job itself.
    """
    deadline = time.monotonic() + options.apply_timeout + 10 * options.timeout
    waited = False
    while True:
        if waited and _follow_if_recorded(run, cluster, options, probes, old):
            return True
        outcome = lock.acquire()
        if outcome is Acquired.HELD:
            run.result.locked_on = list(lock.held)
            if not waited:
                return False
            # The holder finished between our last look and this acquire: follow what it
            # recorded rather than redo its work (it may have left replicas alone on purpose).
            if _follow_if_recorded(run, cluster, options, probes, old):
                return True
            run.say("failover lock free again: re-checking the servers")
            return False
        if outcome is Acquired.NO_QUORUM:
            raise no_quorum(lock, run.result.kind)
        if not waited:
            run.say(
                "another process holds the failover lock (on %s): waiting to follow it",
                lock.busy_on,
            )
            waited = True
        if time.monotonic() > deadline:
            raise FailoverError(
                f"another process held the failover lock for more than "
                f"{deadline - run.t0:.0f}s without recording a new primary; check the "
                "cluster ('rwsplit topology') and the other processes' logs"
            )
        time.sleep(min(0.05, options.confirm_interval))


def _follow_if_recorded(
    run: _Run,
    cluster: TopologyHost,
    options: FailoverOptions,
    probes: Mapping[str, NodeProbe],
    old: str | None,
) -> bool:
    states = {n: _probe(p) for n, p in probes.items() if n != old and n not in cluster.fenced}
    writable = [n for n, s in states.items() if s is not None and s.writable and not s.replica]
    if len(writable) != 1:
        return False
    new = writable[0]
    rec = _recorded(probes[new], options)
    if rec is None or rec.primary != new or (old is not None and rec.old_primary != old):
        return False
    mark_followed(run, cluster, new, old)
    run.result.epoch = rec.epoch
    _publish(cluster, new, run.result.fenced, states)
    run.say("%s is the primary (epoch %d, by %s): following it", new, rec.epoch, rec.writer)
    return True


# ---------------------------------------------------------------------------------- failover


def failover(
    cluster: TopologyHost,
    options: FailoverOptions,
    *,
    dry_run: bool = False,
    confirmed: bool = False,
    progress: Progress | None = None,
) -> FailoverResult:
    """Replace a dead primary by the most advanced replica (see the module docstring).

    :param confirmed: the caller (the monitor) already confirmed the primary is dead.
    :raises FailoverError: the primary is not dead, two primaries exist, no candidate, or a
        step failed (the message names the node and the statement; re-running is safe).
    """
    old_primary = previous_primary(cluster)
    result = FailoverResult("failover", old_primary, None, dry_run=dry_run)
    run = _Run(result, progress)
    nodes = cluster.topology.nodes
    order = [n.name for n in nodes]
    known_dead = [old_primary] if confirmed and old_primary is not None else []
    with (
        monitor_paused(cluster),
        _probes(cluster, nodes, options.timeout) as probes,
        _lock_for(cluster, options, known_dead) as lock,
    ):
        # Exactly one process changes the topology; every check below runs after taking
        # the lock, so a process that waited sees what the holder did.
        if options.coordinate and not dry_run:
            if _take_lock_or_follow(run, cluster, options, probes, lock, old_primary):
                return result
            run.step("locked")
        dead_timeout = _dead_probe_timeout(cluster, options)
        states = _probe_all(probes, known_dead, dead_timeout)
        run.step("probed")
        writable = [
            name
            for name, s in states.items()
            if s is not None and s.replica is None and s.writable and name not in cluster.fenced
        ]
        if len(writable) > 1:
            writable = _fence_stale_primaries(run, cluster, probes, states, writable)
        if writable:
            return _finish_after_promotion(cluster, options, run, probes, states, writable[0])
        if old_primary is None:
            raise FailoverError(
                "no primary is known and none is writable; say which node to promote with "
                "'rwsplit switchover --to NODE' after checking the servers"
            )
        _refuse_if_answered(probes.get(old_primary), old_primary, states.get(old_primary))
        if not confirmed:
            _confirm_dead(run, probes, old_primary, options)
        if states.get(old_primary) is not None:
            raise FailoverError(
                f"the primary {old_primary} answers (read-only, not replicating): it is not "
                "dead; use 'rwsplit switchover --to NODE' for a planned change"
            )
        _check_replicas_lost_it(states, old_primary, _server_id_of(cluster, old_primary))
        skip = {old_primary, *cluster.fenced}
        positional = _by_position(states, skip)
        if positional:
            candidates = _drain_by_position(run, probes, states, skip, options)
        else:
            candidates = _drain_relay_logs(run, probes, states, skip, options)
        run.step("relay logs applied")
        new = _choose(candidates, options, order, positional=positional)
        result.new_primary = new
        check_lock_held(lock)
        d_new = _dialect(probes[new])
        run.say(
            "promoting %s (most advanced: %s)",
            new,
            _applied_position(candidates[new]) if positional else candidates[new].executed,
        )
        semi = _cluster_semi_sync(cluster, options, probes[new])
        if semi and len(candidates) < 2:
            log.warning(
                "%s: the cluster ran semi-sync but no other replica can acknowledge its "
                "commits: it runs without (%s)",
                new,
                _owe_semi_sync(cluster, new, dry_run),
            )
            semi = False
        semi_on = _semi_sync_to_turn_on(probes[new], semi, "the cluster ran semi-sync")
        for stmt in _with_semi_sync(d_new.promote(candidates[new]), d_new, semi_on):
            run.exec(probes[new], stmt)
        run.step("promoted")
        if not dry_run:
            cluster.fenced.add(old_primary)
        result.fenced.append(old_primary)
        new_state = candidates[new] if dry_run else _probe(probes[new])
        if new_state is None:
            raise FailoverError(f"{new} stopped answering right after its promotion; re-run")
        if not dry_run:
            _publish(cluster, new, [old_primary], {new: new_state})
        run.step("writable")
        chosen = candidates[new]
        if isinstance(_dialect(probes[new]), MySQL):
            # Without log_replica_updates its binary log lacks what it replicated (those
            # GTIDs are in its gtid_purged): a replica missing any cannot be served.
            has_history = chosen.log_replica_updates is not False
        else:
            has_history = _dialect(probes[new]).promoted_binlog_has_history or (
                chosen.replica_applied is not None
                and chosen.own_binlog.contains(chosen.replica_applied)
            )
        floor = None if has_history else chosen
        if positional:
            _repoint_by_position(run, options, probes, candidates, new)
        else:
            _repoint_all(
                run,
                cluster,
                options,
                probes,
                states,
                new,
                new_state,
                skip=skip,
                floor=floor,
            )
        run.step("repointed")
        if semi_on is not None and not result.repointed:
            # Nobody will acknowledge: commits would wait for ever. Released, asynchronous.
            log.warning(
                "%s: no replica could be repointed: semi-sync turned off again (%s)",
                new,
                _owe_semi_sync(cluster, new, dry_run),
            )
            off = replace(semi_on, source_on=True).source(False)  # turned on above
            assert off is not None
            run.exec(probes[new], off)
        _record(run, probes[new], options, old_primary)
        run.step("recorded")
        if not dry_run:
            _publish(cluster, new, [old_primary], _probe_all(probes, known_dead, dead_timeout))
    run.say("failover done: %s is the primary", new)
    return result


def _fence_stale_primaries(
    run: _Run,
    cluster: TopologyHost,
    probes: Mapping[str, NodeProbe],
    states: Mapping[str, NodeState | None],
    writable: list[str],
) -> list[str]:
    """Several writable nodes: the old primary came back after a failover run elsewhere?

    Only when the replicas settle it — exactly one writable node has replicas streaming from
    it and the others have none — are the others fenced (read-only); otherwise refuse.
    """
    followers = {
        w: [
            n
            for n, s in states.items()
            if s is not None and s.replica is not None and s.replica.source == w
        ]
        for w in writable
    }
    led = [w for w in writable if followers[w]]
    if len(led) != 1:
        raise FailoverError(
            "refusing to fail over: " + ", ".join(writable) + " are all writable and "
            "replicate from nobody (split brain), and the replicas do not settle which one is "
            "the primary; make all but one read_only by hand"
        )
    for stale in writable:
        if stale == led[0]:
            continue
        run.say("%s: writable but no replica follows it: fencing it (read-only)", stale)
        for stmt in fence_statements(probes[stale]):
            run.exec(probes[stale], stmt)
        if not run.result.dry_run:
            kill_client_connections(probes[stale])
        if not run.result.dry_run:
            cluster.fenced.add(stale)
        run.result.fenced.append(stale)
    return led


def _confirm_dead(
    run: _Run, probes: Mapping[str, NodeProbe], name: str, options: FailoverOptions
) -> None:
    probe = probes.get(name)
    if probe is None:
        return

    def answers() -> bool:
        state = _probe(probe)
        if state is not None:
            return True
        _refuse_if_answered(probe, name, state)
        return False

    confirm_dead(run, name, options, answers)


def _server_id_of(cluster: TopologyHost, name: str) -> int | None:
    """The server id last seen on node *name* (replicas name their source by it too)."""
    monitor = cluster.monitor
    if monitor is not None and monitor._primary_name == name and monitor._primary_server_id:
        return monitor._primary_server_id
    with contextlib.suppress(KeyError):
        return cluster.topology.node(name).server_id
    return None


def _refuse_if_answered(probe: NodeProbe | None, name: str, state: NodeState | None) -> None:
    """The primary's probe failed with an error only a live server sends: refuse."""
    if state is not None or probe is None or not server_answered(probe.last_error):
        return
    assert probe.last_error is not None
    raise FailoverError(
        f"the primary {name} answers ({describe_error(probe.last_error)}): it is alive but "
        "busy or refusing this account, not dead; nothing done (free connections, check "
        "max_connections and the grants; use 'rwsplit switchover --to NODE' for a planned "
        "change)"
    )


def _check_replicas_lost_it(
    states: Mapping[str, NodeState | None], old: str, old_server_id: int | None = None
) -> None:
    def of_old(s: NodeState) -> bool:
        rs = s.replica
        assert rs is not None
        by_id = old_server_id is not None and rs.source_server_id == old_server_id
        return rs.source == old or by_id

    followers = [
        (n, s) for n, s in states.items() if s is not None and s.replica is not None and of_old(s)
    ]
    # MariaDB's "Preparing": connected and authenticated, registering (slow links).
    streaming = [
        n
        for n, s in followers
        if s.replica is not None and s.replica.io_running in ("Yes", "Preparing")
    ]
    if streaming:
        raise FailoverError(
            f"the primary {old} does not answer here but {', '.join(streaming)} still "
            "replicate from it: probably a network partition, not a dead primary; nothing done"
        )
    refused = [
        f"{n} ({s.replica.last_io_errno}: {s.replica.last_io_error})"
        for n, s in followers
        if s.replica is not None and s.replica.last_io_errno in _SOURCE_ANSWERED
    ]
    if refused:
        raise FailoverError(
            f"the primary {old} does not answer here but it answered the replication "
            f"connection of {', '.join(refused)}: it is alive (busy or refusing), not dead; "
            "nothing done"
        )
    if not any(s is not None for n, s in states.items() if n != old):
        raise FailoverError("no replica answers either: nothing can be promoted")


def _drain_relay_logs(
    run: _Run,
    probes: Mapping[str, NodeProbe],
    states: dict[str, NodeState | None],
    skip: set[str],
    options: FailoverOptions,
) -> dict[str, NodeState]:
    """Stop every replica's IO thread, wait until its relay log is applied; fresh states.

    The waits run in parallel, each on a connection of its own whose read timeout covers
    ``apply_timeout``. A replica that cannot apply its relay log in time (``MASTER_DELAY``,
    a stalled SQL thread) and one whose SQL thread was stopped before the failover (by an
    operator, or by an error) are left out: not promoted, not repointed, listed in
    ``result.skipped`` for an operator; the others go on. Their names are added to *skip*.
    """
    pending: dict[str, str] = {}  # name -> the received position to wait for

    def stop_io(name: str, state: NodeState) -> None:
        probe = probes[name]
        assert state.replica is not None
        if not state.replica.sql_running:
            why = (
                f"its SQL thread was stopped before the failover ({state.replica.last_sql_errno}: "
                f"{state.replica.last_sql_error})"
                if state.replica.last_sql_errno
                else "its SQL thread was stopped before the failover (by an operator?)"
            )
            _leave_out(run, name, skip, f"{why}: left as it is, not promoted, not repointed")
            return
        run.exec(probe, _dialect(probe).stop_io_thread())
        fresh = state if run.result.dry_run else _probe(probe)
        received = fresh.replica.received if fresh and fresh.replica else ""
        if received:
            run.say("%s: waiting for its relay log (%s) to be applied", name, received)
            pending[name] = received

    # In parallel: against a hung primary a STOP ... IO_THREAD can take seconds (the IO
    # thread is stuck in a read), and the replicas must not wait in turn.
    todo = {
        n: s for n, s in states.items() if s is not None and n not in skip and s.replica is not None
    }
    if todo:
        with ThreadPoolExecutor(len(todo), thread_name_prefix="rwsplit-failover") as pool:
            for future in [pool.submit(stop_io, n, st) for n, st in todo.items()]:
                future.result()
    late = _wait_relay_logs_applied(run, probes, pending, options)
    for name in late:
        _leave_out(
            run,
            name,
            skip,
            f"it did not apply its relay log (up to {pending[name]}) within "
            f"{options.apply_timeout:g}s (MASTER_DELAY? a stalled SQL thread?): not promoted, "
            f"not repointed; check it ({_dialect(probes[name]).replica_status_sql}) and "
            "repoint it with "
            "'rwsplit failover' once it has caught up",
        )
    out: dict[str, NodeState] = {}
    for name, state in list(states.items()):
        if state is None or name in skip:
            continue
        fresh = state if run.result.dry_run else _probe(probes[name])
        if fresh is not None:
            states[name] = out[name] = fresh
    if not out:
        raise FailoverError(
            "no replica can be promoted (none answers, or every one was left out: "
            + ("; ".join(f"{n}: {why}" for n, why in run.result.skipped) or "none answers")
            + ")"
        )
    return out


def _leave_out(run: _Run, name: str, skip: set[str], why: str) -> None:
    skip.add(name)
    run.result.skipped.append((name, why))
    log.error("%s: %s", name, why)
    if run.progress is not None:
        run.progress(f"{name}: {why}")


def _wait_relay_logs_applied(
    run: _Run, probes: Mapping[str, NodeProbe], pending: Mapping[str, str], options: FailoverOptions
) -> list[str]:
    """``MASTER_GTID_WAIT`` on every replica of *pending* at once; those that timed out."""
    if not pending:
        return []

    def wait(name: str) -> bool:
        probe = probes[name]
        d = _dialect(probe)
        stmt = d.wait_for_gtid(pending[name], options.apply_timeout)
        if run.result.dry_run:
            run.exec(probe, stmt)
            return True
        # A connection of its own: the probe's read timeout (seconds) must not cut a wait of
        # apply_timeout, and the other probes stay usable meanwhile.
        with NodeProbe(probe.url, options.apply_timeout + probe.timeout, probe.connect_args) as w:
            w.dialect = d
            rows = run.exec(w, stmt)
        value = next(iter(rows[0].values())) if rows else None
        return d.wait_succeeded(value)

    with ThreadPoolExecutor(len(pending), thread_name_prefix="rwsplit-apply") as pool:
        futures = {name: pool.submit(wait, name) for name in pending}
        late: list[str] = []
        for name, future in futures.items():
            try:
                if not future.result():
                    late.append(name)
            except FailoverError as exc:
                log.error("%s: waiting for its relay log failed: %s", name, exc)
                late.append(name)
        return late


# ------------------------------------------------ GTIDs off: binary log file and position


def _by_position(states: Mapping[str, NodeState | None], skip: set[str]) -> bool:
    """Do the replicas run without GTIDs (MySQL ``gtid_mode=OFF``)? Then the failover is the
    classic runbook by binary log file and position; refused when it could not be exact."""
    replicas = {
        n: s for n, s in states.items() if s is not None and n not in skip and s.replica is not None
    }
    positional = [n for n, s in replicas.items() if not s.gtids]
    if not positional:
        return False
    logging_replicas = sorted(n for n in positional if replicas[n].log_replica_updates)
    if logging_replicas:
        raise FailoverError(
            "failover refused, nothing changed: GTIDs are off and "
            + ", ".join(logging_replicas)
            + " write what they replicate to their own binary log (log_replica_updates=ON). "
            "Without GTIDs the new primary's binary log is started afresh and the others "
            "continue at its first position, which is exact only when replicas log nothing "
            "of what they replicate: restart the replicas with log_replica_updates=OFF "
            "(skip-log-replica-updates), or turn GTIDs on (gtid_mode=ON and "
            "enforce_gtid_consistency=ON, through OFF_PERMISSIVE and ON_PERMISSIVE)"
        )
    if len(positional) != len(replicas):
        mixed = sorted(set(replicas) - set(positional))
        raise FailoverError(
            "failover refused, nothing changed: gtid_mode differs between the replicas (on "
            f"for {', '.join(mixed)}, off for {', '.join(sorted(positional))}); finish the "
            "gtid_mode change on every node first"
        )
    return True


def _applied_position(state: NodeState) -> str:
    rs = state.replica
    return f"{rs.exec_file}:{rs.exec_pos}" if rs is not None else "-"


def _position_key(state: NodeState) -> tuple[str, int, int]:
    """Orders what replicas of one primary applied: that primary's file and offset."""
    rs = state.replica
    if rs is None or not rs.exec_file:
        return ("", -1, -1)
    base, _, number = rs.exec_file.rpartition(".")
    return (base, int(number) if number.isdigit() else -1, rs.exec_pos)


def _drain_by_position(
    run: _Run,
    probes: Mapping[str, NodeProbe],
    states: dict[str, NodeState | None],
    skip: set[str],
    options: FailoverOptions,
) -> dict[str, NodeState]:
    """Stop every replica's IO thread (in parallel), then wait until each applied its relay
    log: its SQL thread reached what its IO thread had read (a transaction cut short by the
    primary's death stays unapplied: then it waits until the SQL thread is idle)."""
    names = [n for n, s in states.items() if s is not None and n not in skip and s.replica]
    out: dict[str, NodeState] = {}

    def drain(name: str) -> NodeState | None:
        probe = probes[name]
        d = _dialect(probe)
        state = states[name]
        assert state is not None and state.replica is not None
        run.exec(probe, d.stop_io_thread())
        if not state.replica.sql_running:
            run.exec(probe, d.start_sql_thread())
        if run.result.dry_run:
            return state
        deadline = time.monotonic() + options.apply_timeout
        while True:
            fresh = _probe(probe)
            rs = fresh.replica if fresh is not None else None
            if fresh is None or rs is None:
                return fresh
            done = (rs.exec_file, rs.exec_pos) == (rs.read_file, rs.read_pos)
            idle = "has read all relay log" in rs.sql_state
            if done or (idle and not rs.io_connected):
                return fresh
            if not rs.sql_running:
                raise FailoverError(
                    f"{name}: its SQL thread stopped ({rs.last_sql_errno}: {rs.last_sql_error}) "
                    "before applying its relay log; fix it and re-run"
                )
            if time.monotonic() > deadline:
                raise FailoverError(
                    f"{name} did not apply its relay log (at {rs.exec_file}:{rs.exec_pos}, "
                    f"read up to {rs.read_file}:{rs.read_pos}) within "
                    f"{options.apply_timeout:.0f}s; check its SQL thread and re-run"
                )
            time.sleep(0.02)

    if names:
        with ThreadPoolExecutor(len(names), thread_name_prefix="rwsplit-failover") as pool:
            futures = {n: pool.submit(drain, n) for n in names}
            for name, future in futures.items():
                fresh = future.result()
                if fresh is not None:
                    states[name] = out[name] = fresh
    if not out:
        raise FailoverError("no replica answers: nothing can be promoted")
    for name, state in out.items():
        run.say("%s: applied the old primary's binary log up to %s", name, _applied_position(state))
    return out


def _repoint_by_position(
    run: _Run,
    options: FailoverOptions,
    probes: Mapping[str, NodeProbe],
    candidates: Mapping[str, NodeState],
    new: str,
) -> None:
    """Point every replica that applied exactly what *new* applied at the start of *new*'s
    (just reset) binary log; report the others as needing a rebuild, and leave them alone.

    Exact because replicas log nothing of what they replicate: the promoted node's binary
    log holds only what is written on it from now on.
    """
    chosen = candidates[new]
    matched: dict[str, NodeState] = {}
    for name, state in candidates.items():
        if name == new:
            continue
        if _position_key(state) != _position_key(chosen):
            reason = (
                f"it applied the old primary's binary log up to {_applied_position(state)}, "
                f"the new primary {new} up to {_applied_position(chosen)}: without GTIDs no "
                f"position in {new}'s binary log matches; rebuild it from {new}"
            )
            run.result.skipped.append((name, reason))
            log.error("%s: not repointed: %s", name, reason)
            continue
        matched[name] = state
    _repoint_at_start(run, options, probes, matched, new)


def _own_binlog_position(run: _Run, probe: NodeProbe) -> str:
    """``file:position`` of *probe*'s node's own binary log (GTIDs off)."""
    d = _dialect(probe)
    assert isinstance(d, MySQL)
    rows = run.exec(probe, d.binlog_status())
    if run.result.dry_run:
        return "binlog.000001:4"
    if not rows or not rows[0].get("File"):
        raise FailoverError(f"{probe.name} has no binary log (log_bin=OFF): nothing can follow it")
    return f"{rows[0]['File']}:{rows[0]['Position']}"


def _repoint_at_start(
    run: _Run,
    options: FailoverOptions,
    probes: Mapping[str, NodeProbe],
    nodes: Mapping[str, NodeState],
    new: str,
) -> None:
    """Point *nodes* at the start of *new*'s binary log (just reset at its promotion)."""
    first = "binlog.000001"  # what a dry run shows
    if not run.result.dry_run:
        rows = probes[new].query("SHOW BINARY LOGS")
        if not rows:
            raise FailoverError(f"{new} has no binary log (log_bin=OFF): replicas cannot follow")
        first = str(rows[0].get("Log_name") or rows[0].get("LOG_NAME"))
    host, port = _url_address(probes[new].url)
    for name, state in nodes.items():
        d = _dialect(probes[name])
        mysql = d if isinstance(d, MySQL) else MySQL(state.version, gtid=False)
        stmts = mysql.point_at_position(
            host, port, options.replication_user, options.replication_password, first, 4
        )
        if state.writable:
            stmts = d.set_read_only(True) + stmts
        _start_following(run, name, probes[name], stmts)


def _finish_after_promotion(
    cluster: TopologyHost,
    options: FailoverOptions,
    run: _Run,
    probes: Mapping[str, NodeProbe],
    states: dict[str, NodeState | None],
    primary: str,
) -> FailoverResult:
    """A writable primary exists: finish a half-done failover, or report nothing to do."""
    result = run.result
    result.new_primary = primary
    new_state = states[primary]
    assert new_state is not None
    if result.old_primary in (None, primary):  # a re-run: the failover log names the old one
        rec = _recorded(probes[primary], options)
        replaced = rec.old_primary if rec is not None and rec.primary == primary else None
        if replaced is not None and replaced in probes and states.get(replaced) is None:
            # Still dead (not a rejoined replica): the node this failover replaced.
            result.old_primary = replaced
    old = result.old_primary
    if old is not None and old != primary and old not in result.fenced:
        result.fenced.append(old)
        if not run.result.dry_run:
            cluster.fenced.add(old)
    before = len(result.statements)
    skip = {old or "", *result.fenced}
    _repoint_all(run, cluster, options, probes, states, primary, new_state, skip=skip)
    if old is not None and old != primary:
        rec = _recorded(probes[primary], options)
        if rec is None or rec.primary != primary:
            _record(run, probes[primary], options, old)  # a crash came before the record
        else:
            result.epoch = rec.epoch
    result.nothing_to_do = len(result.statements) == before == 0
    if result.nothing_to_do:
        run.say("nothing to do: %s is the primary", primary)
    if not run.result.dry_run:
        _publish(cluster, primary, result.fenced, {n: _probe(p) for n, p in probes.items()})
    return result


def _repoint_all(
    run: _Run,
    cluster: TopologyHost,
    options: FailoverOptions,
    probes: Mapping[str, NodeProbe],
    states: Mapping[str, NodeState | None],
    primary: str,
    primary_state: NodeState,
    *,
    skip: set[str],
    floor: NodeState | None = None,
    demote: str | None = None,
) -> None:
    """Point every other reachable node at *primary* (those not already replicating from it).

    *floor*: the promoted node's state at promotion when its binary log starts there (MariaDB
    without ``log-slave-updates``); a replica that has not reached it cannot be served.
    """
    host, port = _url_address(probes[primary].url)
    for name, state in states.items():
        if name == primary or name in skip or name in cluster.fenced:
            continue
        if state is None:
            run.result.skipped.append((name, "unreachable; repoint it when it is back"))
            continue
        rs = state.replica
        if rs is not None and rs.source == primary and rs.io_connected and rs.sql_running:
            continue  # already replicating from the primary
        if state.replica is None and state.writable and name != demote:
            continue  # another primary: never touched here
        if not primary_state.gtids or not state.gtids:
            reason = (
                f"GTIDs are off: whether it applied exactly what {primary} had when it was "
                f"promoted cannot be told now; rebuild it from {primary}"
            )
            run.result.skipped.append((name, reason))
            log.error("%s: not repointed: %s", name, reason)
            continue
        if not primary_state.executed.contains(state.executed):
            run.result.skipped.append(
                (
                    name,
                    f"it has transactions the new primary lacks ({state.executed} vs "
                    f"{primary_state.executed}); rebuild it from the new primary",
                )
            )
            log.error("%s: not repointed: ahead of / diverged from %s", name, primary)
            continue
        if floor is not None and not state.executed.contains(floor.executed):
            run.result.skipped.append(
                (
                    name,
                    f"it is behind the new primary ({state.executed} < {floor.executed}) and "
                    "the transactions it misses are in no binary log (replicas run without "
                    "log-slave-updates); rebuild it from the new primary",
                )
            )
            log.error("%s: not repointed: behind %s's first binlog position", name, primary)
            continue
        d = _dialect(probes[name])
        user, password = options.replication_user, options.replication_password
        stmts = d.point_at(state, host, port, user, password)
        if state.writable and name != demote:  # a demoted primary was made read-only first
            stmts = d.set_read_only(True) + stmts
        if name != demote:  # the caller turned a demoted primary's off already
            stmts = semi_sync_source_off(probes[name]) + stmts
        _start_following(run, name, probes[name], stmts)


def _start_following(
    run: _Run, name: str, probe: NodeProbe, stmts: list[Statement], timeout: float | None = None
) -> None:
    """Run *stmts* on node *name* (they point it at the primary), start its replication,
    and count it repointed."""
    for stmt in [*stmts, _dialect(probe).start_replication()]:
        run.exec(probe, stmt, timeout=timeout)
    run.result.repointed.append(name)


# ---------------------------------------------------------------------------------- switchover


def switchover(
    cluster: TopologyHost,
    to: str,
    options: FailoverOptions,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> FailoverResult:
    """Planned change of primary to node *to* with zero lost writes (module docstring).

    :raises FailoverError: no single live primary, *to* is not a usable replica, or a step
        failed (the old primary is made writable again if the target could not catch up).
    """
    nodes = cluster.topology.nodes
    names = [n.name for n in nodes]
    if to not in names:
        raise FailoverError(f"no node called {to!r}; nodes: {', '.join(names)}")
    if to in options.never_promote:
        raise FailoverError(f"{to} is in never_promote; choose another node")
    result = FailoverResult("switchover", None, to, dry_run=dry_run)
    run = _Run(result, progress)
    with (
        monitor_paused(cluster),
        _probes(cluster, nodes, options.timeout) as probes,
        _lock_for(cluster, options) as lock,
    ):
        if options.coordinate and not dry_run:
            outcome = lock.acquire()
            if outcome is Acquired.NO_QUORUM:
                raise no_quorum(lock, "switchover")
            if outcome is Acquired.BUSY:
                raise FailoverError(
                    f"switchover not started: another process holds the failover lock (on "
                    f"{lock.busy_on}) and is changing the topology; retry when it is done"
                )
            result.locked_on = list(lock.held)
        states = {name: _probe(p) for name, p in probes.items()}
        run.step("probed")
        writable = [
            n for n, s in states.items() if s is not None and s.replica is None and s.writable
        ]
        if len(writable) > 1:
            raise FailoverError(
                "refusing to switch over: " + ", ".join(writable) + " are all writable "
                "(split brain); make all but one read_only by hand"
            )
        if writable and writable[0] == to:
            # Done already, or crashed after the promotion: finish repointing.
            result.old_primary = previous_primary(cluster)
            target = states[to]
            assert target is not None
            _repoint_all(run, cluster, options, probes, states, to, target, skip=set())
            result.nothing_to_do = not result.statements
            if not dry_run:
                cluster.fenced.discard(to)
                _publish(cluster, to, (), {n: _probe(p) for n, p in probes.items()})
            return result
        old = writable[0] if writable else _resume_point(states, to)
        result.old_primary = old
        target_state = states.get(to)
        if target_state is None:
            raise FailoverError(f"the target {to} does not answer; choose another node")
        if target_state.replica is not None and target_state.replica.source != old:
            raise FailoverError(
                f"{to} replicates from {target_state.replica.source}, not from the primary {old}"
            )
        old_probe = probes[old]
        d_old = _dialect(old_probe)
        semi = options.semi_sync
        if semi is None:
            semi = _semi_sync(old_probe).source_on
        # GTIDs off: by binary log file and position (refused before anything changes when
        # it could not be exact).
        positional = isinstance(d_old, MySQL) and _by_position(states, {old})
        # The failover log's table, created while every replica still follows the old
        # primary: the record after the switch replicates no DDL (whose metadata lock, held
        # by a replica's applier, would block every session naming the schema).
        with contextlib.suppress(FailoverError):  # the log is never worth failing for
            for stmt in create_statements(old_probe, options.ledger_schema):
                run.exec(old_probe, stmt)
        # 1. Stop routing writes to the old primary, in this process at once.
        if not dry_run:
            cluster.fenced.add(old)
            _publish(cluster, old, [old], {})
        # 2. Make it read-only, end every client session, so no commit is in flight.
        for stmt in d_old.set_read_only(True):
            run.exec(old_probe, stmt)
        _kill_clients(run, old_probe, lock_name(options.cluster_id))
        run.step("old primary read-only")
        # Read after every client session is gone: no commit can land after this position.
        if positional:
            final = _own_binlog_position(run, old_probe)
        else:
            final = old_probe.probe().executed.text
        run.say("%s: final position %s", old, final)
        # 3. Wait for the target and the other replicas to apply everything.
        for name, state in states.items():
            if name == old or state is None or state.replica is None:
                continue
            _wait_applied(
                run, probes[name], final, options, old_probe, d_old, cluster, old, positional
            )
        run.step("caught up")
        # 4. Promote the target.
        fresh = target_state if dry_run else _probe(probes[to])
        assert fresh is not None
        d_to = _dialect(probes[to])
        semi_on = _semi_sync_to_turn_on(probes[to], semi, f"{old} ran semi-sync")
        for stmt in _with_semi_sync(d_to.promote(fresh), d_to, semi_on):
            run.exec(probes[to], stmt)
        run.step("promoted")
        new_state = fresh if dry_run else _probe(probes[to])
        assert new_state is not None
        if not dry_run:
            cluster.fenced.discard(to)
            _publish(cluster, to, [old], {to: new_state})
        # 5. Repoint the others and turn the old primary into a replica.
        now = {n: (s if dry_run else _probe(probes[n])) for n, s in states.items()}
        if not dry_run:
            cluster.fenced.discard(old)
        # A demoted node that logs what it applies (log_replica_updates, MySQL's default)
        # with the source side of semi-sync still on would wait for an acknowledgement of
        # each transaction (and wedge the cluster).
        for stmt in semi_sync_source_off(old_probe):
            run.exec(old_probe, stmt)
        if positional:
            # Every node applied exactly the old primary's final position (waited above) and
            # the target's binary log starts afresh: all continue at its first position.
            caught_up = {n: s for n, s in now.items() if s is not None and n != to}
            _repoint_at_start(run, options, probes, caught_up, to)
        else:
            _repoint_all(run, cluster, options, probes, now, to, new_state, skip=set(), demote=old)
        run.step("repointed")
        _record(run, probes[to], options, old)
        if not dry_run:
            _publish(cluster, to, (), {n: _probe(p) for n, p in probes.items()})
    run.say("switchover done: %s is the primary, %s replicates from it", to, old)
    return result


def _resume_point(states: Mapping[str, NodeState | None], to: str) -> str:
    """No writable primary: a switchover crashed after making the old one read-only?"""
    idle = [
        n
        for n, s in states.items()
        if s is not None and s.replica is None and not s.writable and n != to
    ]
    if len(idle) == 1:
        log.info("%s: read-only and not replicating: resuming an interrupted switchover", idle[0])
        return idle[0]
    raise FailoverError(
        "no writable primary answers; if the primary died, use 'rwsplit failover' instead"
    )


_CLIENTS_SQL = (
    "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
    "AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Killed') "
    "AND USER NOT IN ('system user', 'event_scheduler')"
)


def kill_client_connections(probe: NodeProbe) -> int:
    """End every client session on a fenced former primary; how many were killed.

    ``read_only`` stops new writes of ordinary accounts only: a session of an account with
    ``SUPER`` / ``READ_ONLY ADMIN`` (or a transaction already open) still commits. Killing the
    sessions ends those; replication and system threads are left alone. Best effort.
    """
    killed = 0
    try:
        rows = probe.query(_CLIENTS_SQL)
    except Exception as exc:
        log.error("%s: cannot list its client sessions: %s", probe.name, describe_error(exc))
        return 0
    for r in rows:
        with contextlib.suppress(Exception):  # the session may end on its own meanwhile
            probe.query("KILL CONNECTION %s", (int(str(r["id"])),))
            killed += 1
    if killed:
        log.warning("%s: fenced: killed %d client sessions", probe.name, killed)
    return killed


def _kill_clients(run: _Run, probe: NodeProbe, lock: str) -> None:
    # Not this process's own failover-lock session (it holds *lock*): the switchover's lock.
    rows = probe.query(_CLIENTS_SQL + " AND ID <> COALESCE(IS_USED_LOCK(%s), 0)", (lock,))
    ids = [int(str(r["id"])) for r in rows]
    run.say("%s: %d client session(s) to end", probe.name, len(ids))
    for i in ids:
        with contextlib.suppress(FailoverError):  # the session may end on its own meanwhile
            run.exec(probe, Statement("KILL CONNECTION %s", (i,)))
    if run.result.dry_run or not ids:
        return
    # KILL only flags the thread: wait until each is gone, so no commit can still land.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = probe.query(
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID IN ("
            + ",".join(str(i) for i in ids)
            + ")"
        )
        if not int(str(left[0]["n"])):
            return
        time.sleep(0.01)
    raise FailoverError(f"{probe.name}: client sessions did not end within 30s after KILL")


def _wait_applied(
    run: _Run,
    probe: NodeProbe,
    gtid: str,
    options: FailoverOptions,
    old_probe: NodeProbe,
    d_old: ReplicationDialect,
    cluster: TopologyHost,
    old: str,
    positional: bool = False,
) -> None:
    """Wait until *probe*'s node applied *gtid* (GTIDs off, *positional*: the old primary's
    ``file:position``); else undo the switchover's first steps and raise."""
    d = _dialect(probe)
    if positional and isinstance(d, MySQL):
        file, _, pos = gtid.rpartition(":")
        wait = d.wait_for_position(file, int(pos), options.apply_timeout)
        reached: Callable[[Any], bool] = d.position_reached
    else:
        wait = d.wait_for_gtid(gtid, options.apply_timeout)
        reached = d.wait_succeeded
    # The probe's read timeout must not cut a wait of apply_timeout.
    rows = run.exec(probe, wait, timeout=options.apply_timeout + probe.timeout)
    if run.result.dry_run:
        return
    value = next(iter(rows[0].values())) if rows else None
    if reached(value):
        return
    # Undo: the old primary takes writes again; nothing was promoted.
    for stmt in d_old.set_read_only(False):
        run.exec(old_probe, stmt)
    cluster.fenced.discard(old)
    raise FailoverError(
        f"{probe.name} did not reach {gtid} within {options.apply_timeout:.0f}s; switchover "
        f"abandoned and {old} made writable again; check that replica's replication"
    )


# ---------------------------------------------------------------------------------- rejoin


def rejoin(
    cluster: TopologyHost,
    node: str,
    options: FailoverOptions,
    *,
    primary: str | None = None,
    probes: Mapping[str, NodeProbe] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> FailoverResult:
    """Make *node* (a former primary that came back) a replica of the current primary.

    It is made read-only first, whatever happens next. Then, when its GTID history is part of
    the primary's (no transaction the primary lacks), it replicates from the primary with
    GTID positioning and catches up (``result.repointed == [node]``). Otherwise (errant
    transactions: writes acknowledged by it alone, lost in the failover) it is left
    read-only and out of routing (``result.fenced == [node]``, the reason in
    ``result.skipped``); the failover log keeps every rwsplit process from writing to it
    even with an account that ignores ``read_only``. Rebuild it from the primary.

    Takes the cross-process failover lock; when another process holds it, nothing is done
    and ``result.skipped`` says so (the monitor tries again next round).

    :param primary: the primary to follow (default: the cluster's current one).
    :param probes: admin connections to reuse (the monitor's), by node name.
    :raises FailoverError: no primary is known, or a statement failed.
    """
    primary = primary or (cluster.topology.primary.name if cluster.topology.primary else None)
    if primary is None or primary == node:
        raise FailoverError(f"cannot rejoin {node}: no other primary is known right now")
    result = FailoverResult("rejoin", node, primary, dry_run=dry_run)
    run = _Run(result, progress)
    topology = cluster.topology
    own: contextlib.AbstractContextManager[Mapping[str, NodeProbe]] = (
        _probes(cluster, [topology.node(node), topology.node(primary)], options.timeout)
        if probes is None
        else contextlib.nullcontext(probes)
    )
    with own as ps, _lock_for(cluster, options) as lock:
        if options.coordinate and not dry_run:
            outcome = lock.acquire()
            if outcome is not Acquired.HELD:
                why = "another process holds the failover lock" if lock.busy_on else "no quorum"
                result.skipped.append((node, f"not rejoined now: {why}; retry"))
                return result
        state, primary_state = _probe(ps[node]), _probe(ps[primary])
        if state is None or primary_state is None:
            down = node if state is None else primary
            raise FailoverError(f"cannot rejoin {node}: {down} does not answer; retry")
        if primary_state.replica is not None or not primary_state.writable:
            raise FailoverError(
                f"cannot rejoin {node} to {primary}: {primary} is not a writable primary"
            )
        rs = state.replica
        if rs is not None and rs.source == primary and rs.io_running != "No" and rs.sql_running:
            result.nothing_to_do = True
            return result
        d = _dialect(ps[node])
        fenced_now = state.writable
        if fenced_now:
            for stmt in fence_statements(ps[node]):
                run.exec(ps[node], stmt, timeout=options.timeout)
            # Fencing may release commits that waited for a semi-sync ACK: they are in its
            # binary log now, so the history is judged on a fresh probe, not the one above.
            fresh = None if dry_run else _probe(ps[node])
            if fresh is not None:
                state = fresh
        gap = _history_gap(state, primary_state, primary)
        if gap is not None:
            result.skipped.append(
                (
                    node,
                    f"{gap}: it stays fenced (read-only, out of routing, recorded as replaced "
                    "in the failover log); rebuild it from the primary",
                )
            )
            result.fenced.append(node)
            log.error("%s: not rejoined: %s", node, gap)
            return result
        host, port = _url_address(ps[primary].url)
        stmts = d.point_at(
            state, host, port, options.replication_user, options.replication_password
        )
        if not fenced_now:  # the fence turned the semi-sync source side off already
            stmts = semi_sync_source_off(ps[node]) + stmts
        # The monitor's probes read with its short timeout; a node that has just restarted
        # may take longer over these (SET GLOBAL gtid_slave_pos writes a table).
        _start_following(run, node, ps[node], stmts, options.timeout)
        if not dry_run:
            cluster.fenced.discard(node)
    run.say("%s rejoined as a replica of %s", node, primary)
    return result


def _binlog_state(text: str) -> dict[tuple[int, int], int]:
    """MariaDB ``@@gtid_binlog_state``: the last sequence number per (domain, server id)."""
    out: dict[tuple[int, int], int] = {}
    for m in re.finditer(r"(\d+)-(\d+)-(\d+)", text):
        d, srv, seq = (int(g) for g in m.groups())
        out[(d, srv)] = max(seq, out.get((d, srv), 0))
    return out


def _history_gap(state: NodeState, primary: NodeState, primary_name: str) -> str | None:
    """Why *state* cannot replicate from *primary* (transactions the primary lacks), or None.

    MariaDB positions carry one GTID per domain, and a sequence number says nothing about
    whose transaction it was: ``0-1-101`` (written on the old primary alone) and ``0-2-101``
    (written on the new one) compare equal by number. The primary's binlog *state* keeps the
    last sequence number of every (domain, server id): the node's last GTID of each domain is
    in the primary's history only if the primary has that server's transactions up to it.
    MySQL GTID sets are real sets: containment says it all.
    """
    if not state.gtids or not primary.gtids:
        return (
            "GTIDs are off: whether it holds writes that never reached "
            f"{primary_name} cannot be told"
        )
    if isinstance(state.executed, MariaDBGtid):
        history_of = _binlog_state(primary.binlog_state)
        for domain, (server, seq) in state.executed.domains.items():
            if history_of.get((domain, server), -1) < seq:
                return (
                    f"it has {domain}-{server}-{seq}, which {primary_name}'s binary log "
                    "history does not hold (errant transactions, written on it alone)"
                )
        return None
    if not primary.executed.contains(state.executed):
        return (
            f"it has transactions {primary_name} lacks ({state.executed} vs "
            f"{primary.executed}: errant transactions, written on it alone)"
        )
    return None


# ---------------------------------------------------------------------------------- fencing


_NO_PRIVILEGE = frozenset({1142, 1227, 1045})
# A replica's IO error that only a live source sends (it refused the replica, it is alive).
_SOURCE_ANSWERED = frozenset(c for c in SERVER_ANSWERED if c != 1236)


def _error_code(exc: BaseException) -> int | None:
    args: tuple[object, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def verify_writable_primary(
    dbapi_connection: Any, node_name: str, *, ledger_schema: str = DEFAULT_SCHEMA
) -> None:
    """Check on the server, over a new primary connection, that *node_name* is the primary.

    Meant for the ``"connect"`` event of the primary engine (before the first write on each
    new connection, so also after every topology change): the server's own state decides,
    not the configuration, and whatever the account's privileges:

    * ``@@read_only`` (and MySQL ``@@super_read_only``) must be off;
    * it must replicate from nobody (``SHOW SLAVE STATUS``; an account without the privilege
      for it, error 1227: MariaDB's ``Slaves_running`` status, readable by anyone);
    * the failover log on it, if readable, must not record it as replaced by another primary.

    Three short queries on a new connection, none on the hot path. Leaves no transaction open.

    :raises FencedNodeError: naming the node, what it is, and what to do.
    """
    try:
        _verify(dbapi_connection, node_name, ledger_schema)
    finally:
        with contextlib.suppress(Exception):
            dbapi_connection.rollback()  # the ledger SELECT may have opened a snapshot


def _fenced(node: str, what: str) -> FencedNodeError:
    return FencedNodeError(
        f"refusing to write to {node}: {what}, so it is not the primary; rwsplit follows "
        "the new primary as soon as it knows it: retry the unit of work shortly, and if this "
        "persists check the cluster with 'rwsplit topology'"
    )


def _verify(conn: Any, node: str, schema: str) -> None:
    row = query_rows(conn, "SELECT @@global.read_only AS ro, @@version AS v")[0]
    mariadb = "mariadb" in str(row["v"]).lower()
    read_only = bool(int(row["ro"] or 0))
    if not read_only and not mariadb:
        read_only = bool(int(query_rows(conn, "SELECT @@global.super_read_only AS s")[0]["s"]))
    if read_only:
        raise _fenced(node, "the server is read-only")
    try:
        status = query_rows(conn, "SHOW SLAVE STATUS" if mariadb else "SHOW REPLICA STATUS")
        source = next(
            (
                f"{r.get('Master_Host') or r.get('Source_Host')}:"
                f"{r.get('Master_Port') or r.get('Source_Port')}"
                for r in status
                if r.get("Master_Host") or r.get("Source_Host")
            ),
            None,
        )
        if source is not None:
            raise _fenced(node, f"it replicates from {source}")
    except FencedNodeError:
        raise
    except Exception as exc:
        if _error_code(exc) not in _NO_PRIVILEGE:
            raise
        if mariadb:  # no SLAVE MONITOR: this status counter needs no privilege
            rows = query_rows(conn, "SHOW GLOBAL STATUS LIKE 'Slaves_running'")
            if rows and int(str(_value(rows[0]))):
                raise _fenced(node, "it runs a replication connection") from None
    try:
        records = history(conn, schema, limit=50)
    except Exception as exc:
        log.info("%s: cannot read the failover log: %s", node, describe_error(exc))
        return
    rec = replaced_by(records, node)
    if rec is not None:
        raise _fenced(
            node,
            f"the failover log (epoch {rec.epoch}, {rec.kind} at {rec.at}) records it as "
            f"replaced by {rec.primary}",
        )


def _value(row: Mapping[str, Any]) -> object:
    """The ``Value`` column of a ``SHOW STATUS`` row."""
    return row.get("Value", row.get("VALUE", 0)) or 0


def settle_by_failover_log(
    cluster: TopologyHost, probes: Mapping[str, NodeProbe], writable: Sequence[str]
) -> list[str]:
    """Several writable nodes replicate from nobody: drop those the failover log replaced.

    The newest log among the reachable nodes decides; the nodes it records as replaced are
    fenced (the monitor then rejoins them or keeps them read-only). If that does not leave
    exactly one, nothing changes: a real split brain, writes stay refused.
    """
    options = cluster.failover_options
    schema = options.ledger_schema if options is not None else DEFAULT_SCHEMA
    records = _newest_log(probes.items(), schema)
    replaced = [w for w in writable if replaced_by(records, w) is not None]
    if len(writable) - len(replaced) != 1:
        return list(writable)
    for name in replaced:
        log.warning(
            "%s is writable but the failover log replaced it (epoch %d): fencing it",
            name,
            records[0].epoch,
        )
    cluster.fenced.update(replaced)
    return [w for w in writable if w not in replaced]


def _newest_log(probes: Iterable[tuple[str, NodeProbe]], schema: str) -> list[Record]:
    """The failover log with the highest epoch among the nodes of *probes* (a node that was
    down during a failover holds an older one); those that cannot be read are logged."""
    records: list[Record] = []
    for name, probe in probes:
        try:
            found = history(probe, schema)
        except Exception as exc:
            log.info("%s: cannot read the failover log: %s", name, describe_error(exc))
            continue
        if found and (not records or found[0].epoch > records[0].epoch):
            records = found
    return records


def follow_current_primary(
    cluster: TopologyHost, options: FailoverOptions | None = None, *, timeout: float = 2.0
) -> Record | None:
    """Before a new process's first write: find the primary the failover log records.

    Reads the failover log on every reachable node (the highest epoch wins: a node that was
    down during a failover holds an older log), checks on the server that the recorded
    primary is writable and replicates from nobody, and publishes it as the primary; every
    node the log records as replaced (and that does not replicate now) is fenced: out of
    routing, never written to. A recorded primary that is not in the configuration is added
    (with the configured primary's credentials). Returns the newest record, or ``None`` when
    no node holds one (nothing changes then).

    A process started from an old configuration (restart, new deploy, cron job) thus writes
    to the new primary, never to the old one, even if the old one came back writable and
    the account has ``SUPER``.
    """
    options = options or cluster.failover_options
    schema = options.ledger_schema if options is not None else DEFAULT_SCHEMA
    topology = cluster.topology
    template = topology.nodes[0].url
    with _probes(cluster, topology.nodes, timeout) as probes:
        states = {name: _probe(p) for name, p in probes.items()}
        records = _newest_log([(n, p) for n, p in probes.items() if states[n] is not None], schema)
        if not records:
            return None
        latest = records[0]
        target = latest.primary
        nodes = list(topology.nodes)
        if target not in states:
            url = _with_address(template, target)
            nodes.append(Node(target, url, Role.UNKNOWN, healthy=False))
            with NodeProbe(cluster.admin_url(nodes[-1]), timeout) as p:
                states[target] = _probe(p)
    fenced = [
        n.name
        for n in nodes
        if n.name != target
        and replaced_by(records, n.name) is not None
        and not ((s := states.get(n.name)) is not None and s.replica is not None)
    ]
    cluster.fenced.update(fenced)
    t_state = states.get(target)
    ok = t_state is not None and t_state.writable and t_state.replica is None
    updated: list[Node] = []
    for n in nodes:
        s = states.get(n.name)
        if n.name in fenced:
            updated.append(
                n.evolve(
                    role=Role.UNKNOWN,
                    healthy=False,
                    error=f"fenced: the failover log (epoch {latest.epoch}) records it as "
                    f"replaced by {target}",
                )
            )
        elif s is not None:
            updated.append(node_from_state(n.name, n.url, s))
        else:
            updated.append(n.evolve(healthy=False, error="unreachable"))
    if not ok:
        log.warning(
            "the failover log names %s as the primary (epoch %d) but it is not a writable "
            "primary now; writes wait for the monitor to find one",
            target,
            latest.epoch,
        )
    else:
        log.info("following the failover log: %s is the primary (epoch %d)", target, latest.epoch)
    cluster.publish(Topology(tuple(updated), topology.version + 1))
    return latest
