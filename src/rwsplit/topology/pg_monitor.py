"""The background monitor of a PostgreSQL cluster: :class:`PgMonitor`.

The same thread, rhythm, fork handling and public interface as
:class:`~rwsplit.topology.monitor.Monitor` (``check()``, ``wake()``, ``rounds``,
``last_failover``, ``failover_listeners``), with PostgreSQL's probe
(:mod:`rwsplit.topology.pg_probe`) and rules:

* roles from the servers: a promotion made elsewhere (an operator's ``pg_promote()``, Patroni,
  a managed service) takes the writes one round later; two writable nodes are a split brain
  (no writes, :class:`~rwsplit.SplitBrainError`);
* a standby takes reads while it streams from the primary with replay running and its lag
  within ``max_replica_lag`` (:func:`~rwsplit.servers.postgresql.replay_lag`); one with no WAL
  receiver while the primary is up takes none; each comes back on the first round that sees
  it well again;
* the primary is **confirmed dead** after ``failure_threshold`` failed probes in a row (an
  error only a live server sends — too many connections, SQLSTATE 53300 — is not a failure)
  *and* no reachable standby streams from it. A hung primary keeps its standbys' connections
  open for ``wal_receiver_timeout`` (a minute by default): with ``auto_failover`` the monitor
  restarts their WAL receivers (:func:`~rwsplit.topology.pg_failover.restart_wal_receiver`)
  and waits its timeout: a live primary gets them back at once, a hung one does not. Then
  ``auto_failover`` runs :func:`rwsplit.topology.pg_failover.failover`. Standbys may name the
  primary otherwise than the application (a host name, a proxy): the address they stream from
  is learnt as an alias of the primary (:attr:`PgMonitor.source_aliases`), and a standby
  streaming from an address that is no node's name is asked too;
* a former primary that comes back (kept in ``cluster.fenced``) is made read-only and its
  sessions ended (:func:`~rwsplit.topology.pg_failover.fence`), out of routing, and reported
  in :attr:`PgMonitor.needs_rebuild` until it runs as a standby.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from ..servers import postgresql as pg
from .model import Node, Role, Topology, TopologyHost
from .monitor import Monitor, _log_refused, _unanswered
from .pg_probe import PgProbe, describe_pg_error, pg_node

if TYPE_CHECKING:
    from .failover import FailoverOptions, FailoverResult

__all__ = ["PgMonitor", "PgProbeResult"]

log = logging.getLogger("rwsplit.monitor")

_BUSY = frozenset({"53300", "53400"})  # too many connections / configuration limit
_SYNC_EVERY = 30  # rounds between two reads of the primary's synchronous_standby_names


# libpq reports a refused connection without a SQLSTATE: its message says why.
_FULL = "too many clients already"
_RESERVED = "remaining connection slots are reserved"

T = TypeVar("T")


def answered_by_server(exc: BaseException) -> bool:
    """An error only a live server sends (too many connections, access denied...), also when
    libpq reports it at connect time without a SQLSTATE."""
    text = str(exc)
    return pg.server_answered(exc) or _FULL in text or _RESERVED in text


def bounded(probe: PgProbe, timeout: float, fn: Callable[[], T]) -> T:
    """Run *fn* (a statement on *probe*'s connection) within about *timeout* seconds.

    libpq has no read timeout and ``statement_timeout`` is enforced by the server: a hung
    server (``SIGSTOP``, a frozen VM) whose kernel still acknowledges TCP would hold the
    monitor round for ever. A watchdog shuts the connection's socket down when the deadline
    passes: the call fails as a lost connection. Connecting is bounded by libpq's
    ``connect_timeout`` (whole seconds, at least 2).
    """
    connected = probe._conn is not None
    limit = 1.5 * timeout + 0.2 + (0.0 if connected else max(2.0, math.ceil(timeout)))

    def cut() -> None:
        conn = probe._conn
        if conn is None:
            return
        with contextlib.suppress(Exception):
            dup = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            finally:
                dup.close()

    timer = threading.Timer(limit, cut)
    timer.daemon = True
    timer.start()
    try:
        return fn()
    finally:
        timer.cancel()


@dataclass(frozen=True, slots=True)
class PgProbeResult:
    """One PostgreSQL node's answer in one monitoring round."""

    name: str
    state: pg.PgNodeState | None
    error: str | None
    failures: int
    answered: bool = False
    """Refused by a live server (too many connections, access denied...): not a failure."""
    busy: bool = False


class PgMonitor(Monitor):
    """Polls every node of a PostgreSQL *cluster*; see the module docstring.

    Created by :class:`~rwsplit.Cluster` for ``postgresql+...`` URLs (``monitor_interval=``,
    ``auto_failover=``). *failover_options* may be left out: the replication account is not
    needed (each standby keeps its own ``primary_conninfo`` credentials).
    """

    def __init__(
        self,
        cluster: TopologyHost,
        *,
        interval: float = 1.0,
        timeout: float = 1.0,
        failure_threshold: int = 3,
        auto_failover: bool = False,
        failover_options: FailoverOptions | None = None,
    ) -> None:
        from .failover import FailoverOptions

        if failover_options is None and auto_failover:
            failover_options = FailoverOptions("", "")
        super().__init__(
            cluster,
            interval=interval,
            timeout=timeout,
            failure_threshold=failure_threshold,
            auto_failover=auto_failover,
            failover_options=failover_options,
        )
        self._pg: dict[str, PgProbe] = {}
        self.primary_synchronous: bool | None = None
        """Whether the primary had ``synchronous_standby_names`` set (read every
        ``_SYNC_EVERY`` rounds): a failover sets it on the promoted node too."""
        self._sync_read: tuple[str, int] | None = None
        self.needs_rebuild: dict[str, str] = {}
        """Former primaries that came back, with what to do (``pg_rewind`` or a rebuild)."""
        self._vouched_until = 0.0  # until then, standbys not streaming are no death
        self.source_aliases: dict[str, str] = {}
        """Upstream addresses standbys stream from (``sender_host:sender_port``) that are no
        node's name, each with the node it reaches: the primary as the standbys spell it (a
        host name, an IP address, a proxy) when the application spells it differently.
        Learnt while that node was the only writable one, answered, and had standbys."""

    # ------------------------------------------------------------------ lifecycle

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        with self._round:
            for probe in self._pg.values():
                probe.close()
            self._pg.clear()

    def _after_fork(self) -> None:
        for probe in self._pg.values():
            probe.forget()
        self._pg.clear()
        super()._after_fork()

    # ------------------------------------------------------------------ one round

    def _round_once(self) -> tuple[Topology, bool]:
        results = self._probe_all_pg(self.cluster.topology)
        topology = self._publish_pg(results)
        self.rounds += 1
        return topology, self._primary_dead_pg(results)

    def _probe_all_pg(self, topology: Topology) -> dict[str, PgProbeResult]:
        return self._probe_each(topology.nodes, self._probe_one_pg)

    def _probe(self, node: Node) -> PgProbe:
        probe = self._pg.get(node.name)
        if probe is None or probe.node_url is not node.url:
            if probe is not None:
                probe.close()
            probe = PgProbe(
                self.cluster.admin_url(node), self.timeout, self.cluster.probe_connect_args(node)
            )
            probe.node_url = node.url
            self._pg[node.name] = probe
        return probe

    def _probe_one_pg(self, node: Node) -> PgProbeResult:
        probe = self._probe(node)
        try:
            state = bounded(probe, self.timeout, probe.probe)
        except Exception as exc:
            error = describe_pg_error(exc)
            answered = answered_by_server(exc)
            failures, first = self._count_failure(node.name, answered)
            if answered and first:
                _log_refused(node.name, error)
            busy = pg.sqlstate(exc) in _BUSY or _FULL in str(exc) or _RESERVED in str(exc)
            return PgProbeResult(node.name, None, error, failures, answered, busy)
        self._count_success(node.name)
        return PgProbeResult(node.name, state, None, 0)

    def _publish_pg(self, results: Mapping[str, PgProbeResult]) -> Topology:
        cluster = self.cluster
        old = cluster.topology
        writable = [
            n
            for n, r in results.items()
            if r.state is not None and r.state.writable and n not in cluster.fenced
        ]
        primary_state: pg.PgNodeState | None = None
        if len(writable) == 1:
            self._primary_name = writable[0]
            primary_state = results[writable[0]].state
            self._read_synchronous(writable[0])
            self._learn_aliases(writable[0], results)
        elif not writable and old.primary is not None:
            self._primary_name = old.primary.name
        updated: list[Node] = []
        for node in old.nodes:
            r = results.get(node.name)
            if r is None:
                updated.append(node)
                continue
            if r.state is None:
                # A full primary stays as it was: the application's connections work (an
                # earlier failed probe, its backend terminated: "lost", is cleared).
                updated.append(_unanswered(node, r))
                continue
            new = pg_node(node.name, node.url, r.state, primary_state)
            rep = new.replication
            if rep is not None and rep.source in self.source_aliases:
                new = new.evolve(replication=replace(rep, source=self.source_aliases[rep.source]))
            if node.name in cluster.fenced:
                new = self._fenced(node.name, r.state, new)
            elif (
                new.role is Role.REPLICA
                and primary_state is not None
                and r.state.receiver_status is None
            ):
                new = new.evolve(
                    healthy=False,
                    error="no WAL receiver runs (it does not stream from the primary "
                    f"{writable[0]}); takes no reads until it streams again",
                )
            updated.append(new)
        return self._publish_nodes(old, updated)

    def _learn_aliases(self, primary: str, results: Mapping[str, PgProbeResult]) -> None:
        """Standbys streaming from an address that is no node's name, while *primary* (the
        only writable node) has standbys: that address reaches *primary* (the standbys name
        it differently from the application: a host name, an IP address, a proxy)."""
        state = results[primary].state
        if state is None or not state.standbys:
            return
        names = {n.name for n in self.cluster.topology.nodes}
        for r in results.values():
            s = r.state
            source = s.source if s is not None and s.streaming else None
            if source is None or source in names or source in self.source_aliases:
                continue
            log.info("standbys reach the primary %s as %s", primary, source)
            self.source_aliases[source] = primary

    def _sources(self, name: str) -> set[str]:
        """The addresses standbys may stream from node *name* by: its name, its aliases."""
        return {name, *(a for a, n in self.source_aliases.items() if n == name)}

    def _read_synchronous(self, primary: str) -> None:
        last = self._sync_read
        if last is not None and last[0] == primary and self.rounds - last[1] < _SYNC_EVERY:
            return
        self._sync_read = (primary, self.rounds)
        probe = self._pg.get(primary)
        if probe is None:
            return
        with contextlib.suppress(Exception):
            sql = "SELECT current_setting('synchronous_standby_names') AS s"
            rows = bounded(probe, self.timeout, lambda: probe.query(sql))
            self.primary_synchronous = bool(rows and rows[0]["s"])

    def _fenced(self, name: str, state: pg.PgNodeState, new: Node) -> Node:
        """A former primary came back: read-only, sessions ended, out of routing, reported."""
        if state.in_recovery:
            log.info("former primary %s runs as a standby again: no longer fenced", name)
            self.cluster.fenced.discard(name)
            self.needs_rebuild.pop(name, None)
            return new
        if state.writable:
            from .pg_failover import fence

            try:
                ended = fence(self._pg[name])
                log.warning(
                    "former primary %s came back writable: fenced (read-only, %d client "
                    "sessions ended); it needs pg_rewind or a rebuild to follow the primary",
                    name,
                    ended,
                )
            except Exception as exc:
                log.error("fencing %s failed: %s", name, describe_pg_error(exc))
        why = (
            "fenced former primary: read-only, takes no traffic; run pg_rewind against the "
            "primary (or take a new base backup) and start it as a standby"
        )
        self.needs_rebuild[name] = why
        return new.evolve(role=Role.UNKNOWN, healthy=False, read_only=True, error=why)

    # ------------------------------------------------------------------ death

    def _primary_dead_pg(self, results: Mapping[str, PgProbeResult]) -> bool:
        name = self._primary_name
        if name is None or name not in results:
            return False
        r = results[name]
        if r.state is not None or r.answered or r.failures < self.failure_threshold:
            return False
        standbys = {
            n: x.state
            for n, x in results.items()
            if n != name and x.state is not None and x.state.in_recovery
        }
        if not standbys:
            return False  # no witness: it may be this process that is cut off
        # Its name, the addresses learnt for it, and any address that is no node's name (a
        # partition may start before an alias was learnt): whether that is the primary, the
        # WAL receivers' restart below tells.
        names = {n.name for n in self.cluster.topology.nodes}
        sources = self._sources(name) | {
            s.source
            for s in standbys.values()
            if s.source is not None
            and s.source not in names
            and s.source not in self.source_aliases
        }
        streaming = [n for n, s in standbys.items() if s.streaming and s.source in sources]
        if not streaming:
            # Right after this monitor restarted their WAL receivers and saw one reconnect,
            # standbys still restarting theirs do not stream: no evidence of death until the
            # check is due again.
            return time.monotonic() >= self._vouched_until
        if not self.auto_failover or time.monotonic() < self._verify_again_at:
            return False
        # A hung primary keeps its standbys' connections for wal_receiver_timeout: ask them.
        from .pg_failover import standbys_reach

        self._verify_again_at = time.monotonic() + max(10.0, 10 * self.interval)
        log.warning(
            "primary %s failed %d probes but %s still stream from it: restarting their WAL "
            "receivers to see whether they reconnect",
            name,
            r.failures,
            ", ".join(streaming),
        )
        back = standbys_reach(self._pg, streaming, sources, max(self.timeout, 0.5))
        if back is None or back:
            self._vouched_until = self._verify_again_at
            log.warning(
                "primary %s: %s reconnected to it: alive, only unreachable from this process "
                "(a partition?); no failover",
                name,
                ", ".join(back or streaming),
            )
            return False
        log.error("primary %s: no standby could reconnect to it: it is hung or dead", name)
        self._verify_again_at = 0.0
        return True

    _DEAD_NO_AUTO_FAILOVER = (
        "primary %s is dead (%d failed probes; its standbys lost it too); "
        "auto_failover is off: run 'rwsplit failover'"
    )

    def _automated_failover(self) -> Callable[[], FailoverResult] | None:
        """:func:`rwsplit.topology.pg_failover.failover` (its options may be left out)."""
        if not self.auto_failover:
            return None
        from .pg_failover import failover

        return lambda: failover(self.cluster, self.failover_options, confirmed=True)

    def _note_failover(self, result: FailoverResult) -> None:
        """The former primaries the failover left to rebuild."""
        from .pg_failover import PgFailoverResult

        if isinstance(result, PgFailoverResult):
            for old, why in result.needs_rebuild:
                self.needs_rebuild[old] = why

    def _republish(self) -> None:
        self._publish_pg(self._probe_all_pg(self.cluster.topology))
