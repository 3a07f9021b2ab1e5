"""Background health, lag and role polling: the :class:`Monitor`.

Every ``interval`` seconds the monitor probes every node of its :class:`~rwsplit.Cluster` in
parallel (short connect/read timeouts, one kept connection per node), and publishes a new
:class:`~rwsplit.Topology` when anything changed:

* a node that does not answer is marked down; it is re-admitted as soon as it answers again;
* roles come from the servers themselves (:func:`rwsplit.topology.role_of`), so a replica that
  an operator promoted by hand takes the writes one round later, and a primary that turned
  read-only stops taking them;
* replica lag is ``max(Seconds_Behind_Master, GTID lag)``: the monitor remembers when the
  primary reached each GTID position, and a replica that has not applied position *p* is at
  least ``now - time(p)`` behind. That keeps measuring when the SQL thread is stopped (where
  ``Seconds_Behind_Master`` is NULL) and needs no heartbeat writes;
* a replica takes reads only while it follows the current primary with both replication
  threads running and a known lag (:meth:`rwsplit.Topology.not_readable_because`);
* the primary is **confirmed dead** when it failed ``failure_threshold`` probes in a row *and*
  every reachable replica that follows it has lost its replication connection too
  (``Slave_IO_Running`` is not ``Yes``). A hung primary keeps its replicas' connections open
  for ``slave_net_timeout`` (60 s by default): when replicas still claim a connection, the
  monitor restarts their IO threads (``STOP SLAVE IO_THREAD; START SLAVE IO_THREAD``, which
  resumes from the same position) and waits ``timeout``: a live primary gets them back
  at once, a hung or dead one leaves them connecting. Only then does ``auto_failover`` run
  :func:`rwsplit.failover.failover`;
* a primary promoted without semi-sync although the cluster ran it (no other replica could
  acknowledge) gets the source side back on once a semi-sync replica follows it
  (:mod:`rwsplit.topology._semi_sync`).

A failed write on the primary wakes the monitor at once (:meth:`Monitor.wake`); while the
primary is suspect it polls twice as often (rounds start ``interval / 2`` apart, or right
after one that waited out a probe timeout); rounds are never closer than ``interval / 4``, so
the ``failure_threshold`` failed probes span at least ``(failure_threshold - 1) * interval / 4``.

Monitors survive ``fork()``: in the child, probe connections are dropped (not closed: the
parent still uses them) and the thread of every monitor that was running is started again.

Example (needs reachable servers; the sandbox provides them)::

    from rwsplit import Cluster

    cluster = Cluster("mysql+pymysql://app:pw@db1/shop", ["mysql+pymysql://app:pw@db2/shop"],
                      monitor_interval=0.5)
    cluster.monitor.check().primary.name        # 'db1:3306'
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..servers import NodeState, ReplicaStatus
from ._semi_sync import SemiSyncDebt, count_now, owes_semi_sync
from .model import Node, Role, Topology, TopologyHost
from .probe import (
    SERVER_ANSWERED,
    NodeProbe,
    describe_error,
    error_code,
    node_from_state,
    server_answered,
)

if TYPE_CHECKING:
    from .failover import FailoverOptions, FailoverResult

__all__ = ["Monitor", "ProbeResult"]

log = logging.getLogger("rwsplit.monitor")

_PRIVILEGE_ERRORS = frozenset({1045, 1142, 1227})  # access denied / missing privilege
_HISTORY = 50_000  # primary GTID positions remembered for lag (a few hours at 5 tx/s)
# Replica IO errors that mean "the source answered" (it refused us): the primary is alive
# (too many connections, host blocked, access denied, binlog error...).
_SOURCE_ANSWERED = SERVER_ANSWERED
# Refusals for want of capacity: transient, the node's other connections still work.
_BUSY_ERRORS = frozenset({1040, 1203, 1226, 1129, 1927})
_SET_KILL_TIMEOUT = "SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = %s"
_SEMI_SYNC_EVERY = 30  # rounds between two reads of the primary's semi-sync switch

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One node's answer in one monitoring round."""

    name: str
    state: NodeState | None
    error: str | None
    failures: int
    """Consecutive failed probes of this node (0 after a success)."""
    answered: bool = False
    """The probe failed with an error only a live server sends (``1040 Too many
    connections``, access denied...): the node is alive but busy or refusing us, not dead.
    Such a probe does not count as failed (``failures`` stays 0)."""
    busy: bool = False
    """Refused for want of capacity (too many connections, a connection limit, a KILL): the
    node stays as it was in the topology, its other connections still work."""


class Monitor:
    """Polls every node of *cluster* and publishes topology changes.

    Normally created by :class:`~rwsplit.Cluster` (``monitor_interval=``); usable alone.

    :param interval: seconds between rounds (sub-second is fine).
    :param timeout: connect / read timeout of each probe, seconds.
    :param failure_threshold: consecutive failed probes before the primary counts as dead.
    :param auto_failover: run an automated failover once the primary is confirmed dead.
    :param failover_options: replication credentials and candidate rules for failover.
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
        from ..config import _validate as validate
        from ..errors import ConfigurationError

        # Checked here too for a Monitor made alone: inf would overflow Event.wait in the thread.
        interval = validate.duration("Monitor interval", interval, positive=True)
        timeout = validate.duration("Monitor timeout", timeout, positive=True)
        failure_threshold = validate.integer("failure_threshold", failure_threshold, low=1)
        auto_failover = validate.boolean("auto_failover", auto_failover)
        if auto_failover and failover_options is None:
            raise ConfigurationError(
                "auto_failover=True needs failover_options=FailoverOptions(replication_user=..., "
                "replication_password=...) so that replicas can be repointed"
            )
        self.cluster = cluster
        self.interval = interval
        self.timeout = timeout
        self.failure_threshold = failure_threshold
        self.auto_failover = auto_failover
        self.failover_options = failover_options
        self.last_failover: FailoverResult | None = None
        """The result of the last automated failover, if any."""
        self.failover_listeners: list[Callable[[FailoverResult], None]] = []
        self._probes: dict[str, NodeProbe] = {}
        self._failures: dict[str, int] = {}
        self._busy: set[str] = set()  # nodes whose last probe was refused by a live server
        self._primary_name: str | None = None
        self._history: deque[tuple[int, float]] = deque(maxlen=_HISTORY)
        self._history_of: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._round = threading.Lock()
        self._held_for_fork = False
        self._retry_failover_at = 0.0
        self._verify_again_at = 0.0
        self._io_restart: tuple[float, list[str]] | None = None
        self._primary_server_id: int | None = None
        self._primary_semi_sync: bool | None = None
        """Whether the primary waits for semi-sync ACKs (read when it changes, then every
        ``_SEMI_SYNC_EVERY`` rounds): a failover turns it on on the promoted node."""
        self._semi_sync_read: tuple[str, int] | None = None  # (primary, round) last read
        self._semi_sync_debt = SemiSyncDebt()
        """A primary promoted without semi-sync that gets it back once a semi-sync replica
        follows it (:mod:`rwsplit.topology._semi_sync`)."""
        self._applied: dict[str, tuple[int, float]] = {}  # replica -> (applied, since when)
        self._received: dict[str, str] = {}  # replica -> what its IO thread had, last round
        self._still_receiving: list[str] = []  # replicas whose IO thread received this round
        self._wanted = False  # start() called and stop() not since: restart after a fork
        self._rejoin_refused: set[str] = set()
        self._rejoin_failed_primary = False  # a rejoin this round found the primary gone
        self.rounds = 0
        """Completed monitoring rounds (for tests and diagnostics)."""
        _live_monitors.add(self)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._wanted = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rwsplit-monitor", daemon=True)
        self._thread.start()
        log.info("monitor started: every %.3gs, timeout %.3gs", self.interval, self.timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close every probe connection (idempotent)."""
        self._wanted = False
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._round:
            for probe in self._probes.values():
                probe.close()
            self._probes.clear()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Run the next round now (a write on the primary just failed, for instance)."""
        self._wake.set()

    def _before_fork(self) -> None:
        """Let the round in flight finish, and start no other until the fork is done.

        A probe thread caught inside a read at the moment of ``fork()`` leaves that
        connection's buffered reader locked forever in the child, which then hangs the first
        time it closes the connection (seen with gunicorn ``--preload``). Rounds are bounded
        by the probe timeout, so the wait is too.
        """
        if self._thread is not None and self._thread is not threading.current_thread():
            self._held_for_fork = self._round.acquire(timeout=2 * self.timeout + 1.0)

    def _after_fork_in_parent(self) -> None:
        held, self._held_for_fork = self._held_for_fork, False
        if held:
            self._round.release()

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, no inherited connections, the thread restarted."""
        quiet, self._held_for_fork = self._held_for_fork, False
        # Locks and events may have been held by the parent's threads at the moment of fork.
        self._round = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self._pool = None  # its worker threads did not survive the fork
        for probe in self._probes.values():
            if quiet:
                probe.forget()  # the parent still talks on these sockets: no goodbye from here
            else:
                # The parent's round did not finish in time: a probe may have been mid-read,
                # its reader's lock owned by a thread this process does not have. Closing it
                # would hang; keep it, unused, for the life of the process.
                _inherited_in_use.append(probe)
        if not quiet and self._probes:
            log.warning(
                "fork() came while a monitoring round was still running: %d probe "
                "connections inherited from the parent are left open in this process",
                len(self._probes),
            )
        self._probes.clear()
        if self._wanted:
            self.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.check()
            except _NoMoreRounds:
                log.debug("monitor stopped: the interpreter is exiting")
                return
            except Exception:  # the monitor must outlive any one bad round
                log.exception("monitoring round failed")
            suspect = self._primary_name is not None and self._failures.get(self._primary_name)
            period = self.interval / 2 if suspect else self.interval
            # Rounds start `period` apart: a round that waited out a hung node's probe
            # timeout does not push the next one further back.
            self._wake.wait(max(0.0, period - (time.monotonic() - started)))
            self._wake.clear()
            # Wake-ups (failed writes) come in bursts; rounds stay >= interval/4 apart so that
            # "N failed probes in a row" always spans a real stretch of time.
            gap = self.interval / 4 - (time.monotonic() - started)
            if gap > 0:
                self._stop.wait(gap)

    # ------------------------------------------------------------------ one round

    def check(self) -> Topology:
        """Probe every node once, publish what changed, fail over if due; the new topology."""
        with self._round:
            topology, dead = self._round_once()
        if dead:
            self._on_primary_dead()
            topology = self.cluster.topology
        return topology

    def _round_once(self) -> tuple[Topology, bool]:
        """Probe, publish, re-arm semi-sync if owed (round lock held): the topology, and
        whether the primary is confirmed dead."""
        results = self._probe_all(self.cluster.topology)
        topology = self._publish(results)
        self.rounds += 1
        self._note_received(results)
        verdict = self._hung_primary_confirmed(results)
        dead = self._primary_dead(results) if verdict is None else verdict
        self._semi_sync_back_on(results)
        return topology, dead

    def _probe_all(self, topology: Topology) -> dict[str, ProbeResult]:
        return self._probe_each(topology.nodes, self._probe_one)

    def _probe_each(self, nodes: Sequence[Node], probe_one: Callable[[Node], R]) -> dict[str, R]:
        """*probe_one* on every node of *nodes*, in parallel on the monitor's pool."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=max(2, len(nodes)), thread_name_prefix="rwsplit-probe"
            )
        try:
            futures = {n.name: self._pool.submit(probe_one, n) for n in nodes}
        except RuntimeError as exc:  # "cannot schedule new futures": the interpreter exits
            raise _NoMoreRounds from exc
        return {name: f.result() for name, f in futures.items()}

    def _probe_one(self, node: Node) -> ProbeResult:
        probe = self._probes.get(node.name)
        if probe is None or probe.node_url is not node.url:
            probe = NodeProbe(
                self.cluster.admin_url(node), self.timeout, self.cluster.probe_connect_args(node)
            )
            probe.node_url = node.url
            self._probes[node.name] = probe
        try:
            state = probe.probe()
        except Exception as exc:
            error = describe_error(exc)
            code = error_code(exc)
            answered = server_answered(exc)
            failures, first = self._count_failure(node.name, answered)
            if code in _PRIVILEGE_ERRORS:
                error += (
                    " (the monitor's account needs SLAVE MONITOR on MariaDB / REPLICATION "
                    "CLIENT on MySQL: grant it, or pass Cluster(admin_user=...))"
                )
                if first:
                    log.error("cannot monitor %s: %s", node.name, error)
            elif answered and first:
                _log_refused(node.name, error)
            busy = code in _BUSY_ERRORS
            return ProbeResult(node.name, None, error, failures, answered=answered, busy=busy)
        self._count_success(node.name)
        return ProbeResult(node.name, state, None, 0)

    def _count_failure(self, name: str, answered: bool) -> tuple[int, bool]:
        """Count a failed probe of node *name*: (failed probes in a row, whether this is the
        first refusal in a row). *answered*: a live server refused it, which is no failure."""
        first = name not in self._busy
        if answered:
            # A live server refused this connection (a connection storm, a KILL, a grant
            # change): not a failed probe, or a busy primary would be failed over.
            failures = 0
            self._busy.add(name)
        else:
            self._busy.discard(name)
            failures = self._failures.get(name, 0) + 1
        self._failures[name] = failures
        return failures, first

    def _count_success(self, name: str) -> None:
        self._failures[name] = 0
        self._busy.discard(name)

    def _publish(self, results: dict[str, ProbeResult]) -> Topology:
        cluster = self.cluster
        old = cluster.topology
        primary = self._current_primary(old, results)
        self._rejoin_failed_primary = False
        now = time.monotonic()
        if primary is not None:
            self._remember_primary_position(primary, results[primary].state, now)
        updated: list[Node] = []
        for node in old.nodes:
            r = results.get(node.name)
            if r is None:
                continue
            if r.state is None:
                updated.append(_unanswered(node, r))
                continue
            new = node_from_state(node.name, node.url, r.state)
            if node.name in cluster.fenced:
                rejoin = primary is not None and not self._rejoin_failed_primary
                new = self._fence(node, r.state, new, rejoin=rejoin)
            elif new.role is Role.REPLICA:
                if self._history_of is not None:
                    # Also while the primary is down: lag keeps growing from its last position.
                    new = new.evolve(lag_seconds=self._lag(r.state, new.lag_seconds, now))
                stuck = self._sql_thread_stuck(node.name, r.state, now)
                if stuck is not None:
                    new = new.evolve(healthy=False, error=stuck)
            updated.append(new)
        return self._publish_nodes(old, updated)

    def _publish_nodes(self, old: Topology, updated: list[Node]) -> Topology:
        """Publish *updated* as the next version of *old* if anything changed; the topology."""
        if tuple(updated) == old.nodes:
            return old
        topology = Topology(tuple(updated), old.version + 1)
        self._log_changes(old, topology)
        self.cluster.publish(topology)
        return topology

    def _current_primary(self, old: Topology, results: dict[str, ProbeResult]) -> str | None:
        writable = [
            name
            for name, r in results.items()
            if r.state is not None
            and r.state.replica is None
            and r.state.writable
            and name not in self.cluster.fenced
        ]
        if len(writable) > 1:  # an old primary back writable? the failover log may settle it
            from .failover import settle_by_failover_log

            writable = settle_by_failover_log(self.cluster, self._probes, writable)
        if len(writable) == 1:
            self._primary_name = writable[0]
            state = results[writable[0]].state
            self._primary_server_id = state.server_id if state is not None else None
            self._read_semi_sync(writable[0])
            return writable[0]
        if not writable and old.primary is not None:
            self._primary_name = old.primary.name
        return None

    def _read_semi_sync(self, primary: str) -> None:
        last = self._semi_sync_read
        if last is not None and last[0] == primary and self.rounds - last[1] < _SEMI_SYNC_EVERY:
            return
        from .failover import semi_sync_source

        self._semi_sync_read = (primary, self.rounds)
        probe = self._probes.get(primary)
        if probe is None:
            return
        was_on, now_on = self._primary_semi_sync, semi_sync_source(probe)
        self._primary_semi_sync = now_on
        debt = self._semi_sync_debt
        options = self.failover_options
        owed = owes_semi_sync(
            configured=options.semi_sync if options is not None else None,
            owed=debt.owed == primary,
            changed=last is None or last[0] != primary,
            was_on=was_on,
            now_on=now_on,
        )
        if debt.note(primary, owed):
            log.warning(
                "primary %s runs without semi-sync (the cluster ran it): acknowledged writes "
                "can be lost in the next failover until a semi-sync replica follows it; the "
                "monitor then turns the source side back on",
                primary,
            )

    def _semi_sync_back_on(self, results: dict[str, ProbeResult]) -> None:
        """Turn the semi-sync source side back on on a primary that is owed it, once a
        semi-sync replica is connected to it (:mod:`rwsplit.topology._semi_sync`).

        Nothing owed (every round but a few after such a failover): no query at all. Owed:
        the round's probes tell which replicas follow the primary; the server is asked only
        when that set changed, then ever less often.
        """
        debt = self._semi_sync_debt
        primary = debt.owed
        if primary is None or primary != self._primary_name:
            return
        r = results.get(primary)
        probe = self._probes.get(primary)
        state = r.state if r is not None else None
        if state is None or state.replica is not None or not state.writable or probe is None:
            return  # not (or no longer seen as) a primary this round
        followers = self._followers(primary, results)
        if not followers:
            debt.asked = None  # a replica that comes back is counted at once
            return
        if not count_now(debt.asked, followers, self.rounds, _SEMI_SYNC_EVERY):
            return
        from .failover import semi_sync_back_on

        tries = debt.asked[2] + 1 if debt.asked is not None and debt.asked[0] == followers else 0
        debt.asked = (followers, self.rounds, tries)
        try:
            clients, stmt = semi_sync_back_on(probe)
        except Exception as exc:  # the next count retries (an account without the privilege)
            log.warning(
                "%s: cannot turn the semi-sync source side back on: %s",
                primary,
                describe_error(exc),
            )
            return
        if clients < 1:
            log.debug(
                "%s: %s follow it, none as a semi-sync replica yet",
                primary,
                ", ".join(sorted(followers)),
            )
            return
        debt.note(primary, False)
        if stmt is None:  # on already (an operator), or no source side to turn on
            log.info("%s: semi-sync needs nothing from rwsplit any more", primary)
            return
        self._primary_semi_sync = True
        log.warning(
            "%s: semi-sync re-armed (%s): %d semi-sync replicas connected (%s follow it); "
            "commits wait for their acknowledgement again",
            primary,
            stmt.display(),
            clients,
            ", ".join(sorted(followers)),
        )

    def _followers(self, primary: str, results: dict[str, ProbeResult]) -> frozenset[str]:
        """The replicas whose IO thread is connected to *primary* this round."""
        sid = self._primary_server_id
        return frozenset(
            n
            for n, r in results.items()
            if n != primary
            and r.state is not None
            and r.state.replica is not None
            and r.state.replica.io_connected
            and (
                r.state.replica.source == primary
                or (sid is not None and r.state.replica.source_server_id == sid)
            )
        )

    # ------------------------------------------------------------------ lag

    def _remember_primary_position(self, name: str, state: NodeState | None, now: float) -> None:
        if state is None:
            return
        if self._history_of != name:
            self._history.clear()
            self._history_of = name
        progress = state.executed.progress
        if not self._history or progress > self._history[-1][0]:
            self._history.append((progress, now))

    def _sql_thread_stuck(self, name: str, state: NodeState, now: float) -> str | None:
        """Why replica *name* is stuck, or ``None``: its SQL thread "runs" but its applied
        position has not moved for ``max(1 s, 3 intervals)`` while its relay log holds more,
        and it waits for a semi-sync ACK (a former primary with the waiting side still on and
        ``log_slave_updates``: no one will ever send it). Its data only gets older: out of the
        rotation until it moves again. A merely slow SQL thread is lag, not this."""
        rs = state.replica
        applied = state.replica_applied or state.executed
        if rs is None or not rs.sql_running or not rs.received:
            self._applied.pop(name, None)
            return None
        try:
            received = type(applied)(rs.received)  # type: ignore[call-arg]
        except (TypeError, ValueError):
            return None
        progress = applied.progress
        seen = self._applied.get(name)
        if seen is None or seen[0] != progress or applied.contains(received):
            self._applied[name] = (progress, now)
            return None
        still = now - seen[1]
        if still < max(1.0, 3 * self.interval):
            return None
        waiting = self._waiting_for_semi_sync_ack(name, rs)
        if waiting is None:
            # Slow, not stuck (a lock, a long transaction): that is lag, and max_replica_lag
            # decides (the monitor's lag counts from the first primary GTID not applied).
            return None
        return (
            f"its SQL thread is stuck: applied {applied} has not moved for {still:.1f}s while "
            f"its relay log holds up to {received} ({waiting}); check "
            "SHOW SLAVE STATUS / SHOW PROCESSLIST on it"
        )

    def _waiting_for_semi_sync_ack(self, name: str, rs: ReplicaStatus) -> str | None:
        """The state of replica *name*'s applier thread that waits for a semi-sync ACK, or
        ``None``. A multi-threaded applier (MySQL's default) says so only in a worker's
        process-list state: asked only once the applied position stood still."""
        if "semi-sync" in (rs.sql_state or "").lower():
            return rs.sql_state
        probe = self._probes.get(name)
        if probe is None or probe.dialect is None:
            return None
        try:
            states = probe.dialect.parse_applier_states(
                probe.query(probe.dialect.applier_threads_sql)
            )
        except Exception as exc:  # unreachable now: the next round tells
            log.debug("%s: cannot read the applier's threads: %s", name, describe_error(exc))
            return None
        return next((st for st in states if "semi-sync" in st.lower()), None)

    def _lag(self, state: NodeState, reported: float | None, now: float) -> float | None:
        """``max(Seconds_Behind_Master, time since the first primary GTID not applied)``."""
        gtid_lag = 0.0
        history = self._history
        if history:
            applied = state.executed.progress
            if applied < history[-1][0]:
                i = bisect.bisect_right([p for p, _ in history], applied)
                gtid_lag = now - history[min(i, len(history) - 1)][1]
        lag = max(reported or 0.0, gtid_lag)
        return round(lag, 3)

    # ------------------------------------------------------------------ fencing

    def _fence(self, old: Node, state: NodeState, new: Node, *, rejoin: bool) -> Node:
        """A former primary came back: rejoin it as a replica of the primary (auto_failover,
        its history allowing), else make it read-only; either way out of routing this round.

        *rejoin* is False while no writable primary answered this round (or a rejoin in
        this round found it gone): a rejoin could only fail then, after taking the failover
        lock on every node (seconds against a dead one), and the round that must count the
        primary's failed probes would wait for it — with nodes killed one after another,
        confirming each dead primary took 10-15 s.
        """
        rs = state.replica
        if rs is not None and rs.sql_running and rs.io_running != "No":
            # Someone rejoined it as a replica: it is safe again. (Configured but stopped is
            # a rejoin cut short — its connection killed by another process fencing it: the
            # rejoin below finishes it.)
            log.info("node %s replicates from %s again: no longer fenced", old.name, rs.source)
            self.cluster.fenced.discard(old.name)
            return new
        if not (rejoin and self._rejoin(old.name)) and state.writable:
            from .failover import fence_statements, kill_client_connections

            probe = self._probes[old.name]
            assert probe.dialect is not None
            try:
                for stmt in fence_statements(probe):
                    log.warning("fencing former primary %s: %s", old.name, stmt.display())
                    probe.query(stmt.sql, stmt.params)
                # Sessions of accounts that ignore read_only (SUPER) must not write on.
                kill_client_connections(probe)
            except Exception as exc:
                log.error("fencing %s failed: %s", old.name, describe_error(exc))
        return new.evolve(
            role=Role.UNKNOWN,
            healthy=False,
            read_only=True,
            error="fenced former primary: read-only, takes no traffic; rebuild it or rejoin "
            "it as a replica of the new primary",
        )

    def _rejoin(self, name: str) -> bool:
        """Try :func:`rwsplit.failover.rejoin` on a returning former primary (auto_failover)."""
        options, primary = self.failover_options, self._primary_name
        if not (self.auto_failover and options is not None and options.rejoin):
            return False
        if primary is None or primary == name or name in self._rejoin_refused:
            return False
        from .failover import rejoin

        try:
            result = rejoin(self.cluster, name, options, primary=primary, probes=self._probes)
        except Exception as exc:
            log.error("rejoining %s failed: %s", name, describe_error(exc))
            probe = self._probes.get(primary)
            # The primary stopped answering (its probe failed in the rejoin): no other
            # rejoin this round, the monitor must get on with counting failed probes.
            self._rejoin_failed_primary = probe is None or probe.last_error is not None
            return False
        if result.fenced:  # errant transactions: stays fenced; do not retry every round
            self._rejoin_refused.add(name)
        return bool(result.repointed)

    # ------------------------------------------------------------------ failure detection

    def _witnesses(self, results: dict[str, ProbeResult]) -> list[tuple[str, ReplicaStatus]]:
        """Reachable replicas of the primary (all reachable replicas if none names it)."""
        name = self._primary_name
        replicas = [
            (n, r.state.replica)
            for n, r in results.items()
            if r.state is not None and r.state.replica is not None
        ]
        sid = self._primary_server_id
        mine = [
            (n, s)
            for n, s in replicas
            if s.source == name or (sid is not None and s.source_server_id == sid)
        ]
        return mine or replicas

    def _note_received(self, results: dict[str, ProbeResult]) -> None:
        """Which replicas of the primary received something since the last round.

        A replica whose IO thread keeps receiving (its ``Gtid_IO_Pos`` moves) is connected to
        a live primary, whatever this process sees: the primary is unreachable from here only
        (an application-side partition), and failing it over would leave two primaries.
        """
        moved: list[str] = []
        for n, s in self._witnesses(results) if self._primary_name is not None else []:
            before = self._received.get(n)
            if s.received and before is not None and self._moved_forward(n, before, s.received):
                moved.append(n)
        self._received = {
            n: r.state.replica.received
            for n, r in results.items()
            if r.state is not None and r.state.replica is not None
        }
        self._still_receiving = moved

    def _moved_forward(self, name: str, before: str, now: str) -> bool:
        """*now* holds more than *before* (a restarted IO thread may go back: not progress)."""
        probe = self._probes.get(name)
        if probe is None or probe.dialect is None or before == now:
            return False
        try:
            old, new = probe.dialect.parse_gtid(before), probe.dialect.parse_gtid(now)
        except ValueError:
            return False
        return new.contains(old) and not old.contains(new)

    def _veto_by_receiving_replicas(self, name: str) -> bool:
        if not self._still_receiving:
            return False
        log.warning(
            "primary %s does not answer here but %s still receive replication events from it: "
            "it is alive, only unreachable from this process (a partition?); no failover",
            name,
            ", ".join(self._still_receiving),
        )
        return True

    def _primary_suspect(self, results: dict[str, ProbeResult]) -> bool:
        name = self._primary_name
        if name is None or name not in results:
            return False
        r = results[name]
        return r.state is None and r.failures >= self.failure_threshold

    def _primary_dead(self, results: dict[str, ProbeResult]) -> bool:
        if not self._primary_suspect(results):
            return False
        witnesses = self._witnesses(results)
        if not witnesses:
            return False
        if self._veto_by_receiving_replicas(self._primary_name or "?"):
            return False
        # The replicas must have lost it too: one that still streams from the primary means
        # it is only unreachable from here (a partition), not dead; one whose reconnection
        # was refused by it (too many connections...) saw it alive.
        return all(
            not _attached(s) and s.last_io_errno not in _SOURCE_ANSWERED for _, s in witnesses
        )

    def _hung_primary_confirmed(self, results: dict[str, ProbeResult]) -> bool | None:
        """Replicas still claim a connection to a primary that fails every probe: ask them.

        A hung primary (``SIGSTOP``, a stalled disk, a frozen VM) keeps its TCP connections
        open, so replicas report ``Slave_IO_Running=Yes`` until ``slave_net_timeout`` (60 s by
        default) passes. Restarting a replica's IO thread is harmless (it resumes from its
        position) and settles it: a live primary — one only this process cannot reach — gets
        the replica back within milliseconds; a hung or dead one leaves it ``Connecting``.

        The restart happens one probe early (at ``failure_threshold - 1`` failures), so its
        answer is in when the last probe fails; the decision still needs every failed probe.
        Only with ``auto_failover`` (it decides nothing else). ``None``: no verdict (then the
        plain rule of :meth:`_primary_dead` decides). Called with the round lock held.
        """
        name = self._primary_name
        early = max(1, self.failure_threshold - 1)
        if name is None or name not in results:
            self._io_restart = None
            return None
        if results[name].state is not None or results[name].answered:
            self._io_restart = None
            return None
        failures = results[name].failures
        if not self.auto_failover or failures < early:
            return None
        if self._veto_by_receiving_replicas(name):
            self._io_restart = None
            return False
        if self._io_restart is None and time.monotonic() >= self._verify_again_at:
            connected = [n for n, s in self._witnesses(results) if _attached(s)]
            if connected and self._restart_io_threads(name, failures, connected):
                self._io_restart = (time.monotonic(), connected)
        if self._io_restart is None or failures < self.failure_threshold:
            return None
        restarted_at, names = self._io_restart
        self._io_restart = None
        # However it ends, do not restart replication threads every round.
        self._verify_again_at = time.monotonic() + max(10.0, 10 * self.interval)
        grace = max(self.timeout, 0.5)
        deadline = restarted_at + grace
        longest = restarted_at + self._connect_budget(names, grace)
        while True:
            answered, connecting = self._replicas_reached_source(names)
            if answered is None:
                return False
            if answered:
                log.warning(
                    "primary %s: %s reconnected to it: it is alive, only unreachable from "
                    "this process (a partition?); no failover",
                    name,
                    ", ".join(answered),
                )
                return False
            now = time.monotonic()
            # A connection attempt still in flight (no error yet) on a slow link: its answer
            # is due within a few round trips; wait for it, up to the replica's own budget.
            if now >= deadline and (not connecting or now >= longest):
                break
            self._stop.wait(0.05)
        log.error(
            "primary %s: no replica could reconnect to it within %.3gs: it is hung or dead",
            name,
            time.monotonic() - restarted_at,
        )
        self._verify_again_at = 0.0
        return True

    def _restart_io_threads(self, primary: str, failures: int, names: list[str]) -> bool:
        log.warning(
            "primary %s failed %d probes but %s still report a replication connection to it: "
            "restarting their IO threads to see whether they reconnect",
            primary,
            failures,
            ", ".join(names),
        )
        pool = self._pool
        if pool is None or len(names) < 2:
            return all(self._restart_io_thread(n) for n in names)
        # In parallel: each restart may wait out a semi-sync kill timeout (below).
        return all([f.result() for f in [pool.submit(self._restart_io_thread, n) for n in names]])

    def _restart_io_thread(self, name: str) -> bool:
        """``STOP`` + ``START SLAVE IO_THREAD`` on replica *name*; False if it failed.

        On a MariaDB semi-sync replica, ``STOP SLAVE`` first opens a connection to the source
        to kill its dump thread there, with ``rpl_semi_sync_slave_kill_conn_timeout`` (5 s by
        default) to connect and read: against a hung source the ``STOP`` takes that long. It
        is lowered to the monitor's timeout (whole seconds, at least 1) for this ``STOP`` and
        put back right after (an account that may not change it: the ``STOP`` waits it out).
        """
        probe = self._probes[name]
        try:
            d = probe.dialect
            assert d is not None
            kill_timeout, restore = self._shorten_semi_sync_kill(probe)
            try:
                probe.query(d.stop_io_thread().sql, timeout=kill_timeout + self.timeout)
            finally:
                if restore is not None:
                    with contextlib.suppress(Exception):
                        probe.query(_SET_KILL_TIMEOUT, (restore,))
            probe.query(d.start_io_thread().sql)
        except Exception as exc:
            log.error("cannot restart the IO thread of %s: %s", name, describe_error(exc))
            return False
        return True

    def _shorten_semi_sync_kill(self, probe: NodeProbe) -> tuple[float, int | None]:
        """(seconds a ``STOP SLAVE`` may take, the kill timeout to put back or ``None``)."""
        if probe.dialect is None or probe.dialect.name != "mariadb":
            return 0.0, None
        try:
            row = probe.query(
                "SELECT @@global.rpl_semi_sync_slave_enabled AS enabled, "
                "@@global.rpl_semi_sync_slave_kill_conn_timeout AS kill_timeout"
            )[0]
        except Exception:  # no such variables (semi-sync plugin absent): no kill connection
            return 0.0, None
        if not int(row["enabled"] or 0):
            return 0.0, None
        current = int(row["kill_timeout"] or 0)
        wanted = max(1, math.ceil(self.timeout))
        if current <= wanted:
            return float(current), None
        try:
            probe.query(_SET_KILL_TIMEOUT, (wanted,))
        except Exception as exc:
            log.info(
                "%s: cannot lower rpl_semi_sync_slave_kill_conn_timeout (%s): STOP SLAVE may "
                "take %ds against a hung primary",
                probe.name,
                describe_error(exc),
                current,
            )
            return float(current), None
        return float(wanted), current

    def _connect_budget(self, names: list[str], grace: float) -> float:
        """How long a restarted IO thread may take to reach the primary, seconds.

        Its first sign of life (``Slave_IO_Running`` going from ``Connecting`` to
        ``Preparing``: the primary accepted it) comes after three round trips (TCP, greeting,
        authentication); the whole reconnection takes about twelve. ``4 * grace`` allows a
        round trip of a few hundred milliseconds; never more than the replica's own connect
        timeout (``slave_net_timeout``), after which it gives its own verdict.
        """
        budget = 4 * grace
        for n in names:
            try:
                row = self._probes[n].query("SELECT @@global.slave_net_timeout AS t")[0]
                budget = min(budget, max(grace, float(row["t"] or budget)))
            except Exception:
                continue
        return budget

    def _replicas_reached_source(self, names: list[str]) -> tuple[list[str] | None, bool]:
        """Replicas among *names* whose IO thread reached its source (``None``: cannot tell),
        and whether one is still in the middle of a connection attempt (no error yet)."""
        reached: list[str] = []
        connecting = False
        for n in names:
            probe = self._probes[n]
            try:
                assert probe.dialect is not None
                status = probe.dialect.parse_replica_status(
                    probe.query(probe.dialect.replica_status_sql)
                )
            except Exception as exc:
                log.error("cannot read the replication status of %s: %s", n, describe_error(exc))
                return None, False
            if status is None:
                return None, False  # someone reconfigured it meanwhile: do not decide now
            if _attached(status) or status.last_io_errno in _SOURCE_ANSWERED:
                reached.append(n)
            elif status.io_running == "Connecting" and not status.last_io_errno:
                connecting = True
        return reached, connecting

    # A confirmed dead primary while auto_failover is off (each family names its witnesses).
    _DEAD_NO_AUTO_FAILOVER = (
        "primary %s is dead (%d failed probes; replicas lost it too); "
        "auto_failover is off: run 'rwsplit failover'"
    )

    def _automated_failover(self) -> Callable[[], FailoverResult] | None:
        """The failover to run on a confirmed dead primary (``None``: auto_failover is off,
        or no options to fail over with). The PostgreSQL monitor runs its own."""
        options = self.failover_options
        if not self.auto_failover or options is None:
            return None
        from .failover import failover

        return lambda: failover(self.cluster, options, confirmed=True)

    def _note_failover(self, result: FailoverResult) -> None:
        """What a family keeps from an automated failover's result (nothing here)."""

    def _republish(self) -> None:
        """Probe every node and publish what changed (round lock held)."""
        self._publish(self._probe_all(self.cluster.topology))

    def _on_primary_dead(self, results: dict[str, ProbeResult] | None = None) -> None:
        """The primary is confirmed dead: run the automated failover (after a failed one, not
        again before the retry delay), or, with auto_failover off, say so once. *results*
        (the round's probes) is not needed."""
        name = self._primary_name
        run = self._automated_failover()
        if run is None:
            if self._failures.get(name or "", 0) == self.failure_threshold:
                log.error(self._DEAD_NO_AUTO_FAILOVER, name, self.failure_threshold)
            return
        from ..errors import FailoverError

        if time.monotonic() < self._retry_failover_at:
            return
        log.error("primary %s confirmed dead: starting automated failover", name)
        try:
            result = run()
        except FailoverError as exc:
            # Try again later (the cause may be a replica still restarting), not every round.
            self._retry_failover_at = time.monotonic() + max(5.0, 10 * self.interval)
            log.error("automated failover from %s failed: %s", name, exc)
            return
        self.last_failover = result
        self._primary_name = result.new_primary
        self._note_failover(result)
        for listener in list(self.failover_listeners):
            try:
                listener(result)
            except Exception:
                log.exception("failover listener %r failed", listener)
        with self._round:
            self._republish()

    # ------------------------------------------------------------------ logging

    @staticmethod
    def _log_changes(old: Topology, new: Topology) -> None:
        before = {n.name: n for n in old.nodes}
        for n in new.nodes:
            o = before.get(n.name)
            if o is None:
                continue
            if o.healthy and not n.healthy:
                log.warning("node %s is down: %s", n.name, n.error)
            elif not o.healthy and n.healthy:
                log.info("node %s is back (%s)", n.name, n.role.value)
            if o.role is not n.role:
                log.warning("node %s changed role: %s -> %s", n.name, o.role.value, n.role.value)
            if n.healthy and n.role is Role.REPLICA:
                was, now = old.not_readable_because(o), new.not_readable_because(n)
                if now is not None and now != was:
                    log.warning("replica %s takes no reads: %s", n.name, now)
                elif now is None and was is not None and o.healthy:
                    log.info("replica %s takes reads again", n.name)


class _Unanswered(Protocol):
    """What :func:`_unanswered` reads of a failed probe (:class:`ProbeResult` and
    PostgreSQL's ``PgProbeResult``)."""

    @property
    def error(self) -> str | None: ...
    @property
    def failures(self) -> int: ...
    @property
    def answered(self) -> bool: ...
    @property
    def busy(self) -> bool: ...


def _unanswered(node: Node, r: _Unanswered) -> Node:
    """*node* once its probe *r* failed: down, with why; a busy primary stays as it was."""
    if r.busy and node.role is Role.PRIMARY:
        # Alive but refusing new connections: the connections the application holds
        # still work, and writes go on once slots free up; keep it as it was. An
        # earlier failed probe is cleared: the refusal is evidence of life (on MySQL
        # the KILL of the monitor's kept connection reads as a lost connection, 2013,
        # which took the primary out of routing for the whole storm: NoPrimaryError).
        # Writes still check the node on the server (new connection, before commit).
        return node if node.healthy else node.evolve(healthy=True, error=None)
    why = "refuses the monitor" if r.answered else f"unreachable ({r.failures}x)"
    return node.evolve(healthy=False, error=f"{why}: {r.error}")


def _log_refused(name: str, error: str) -> None:
    """Said once per run of refusals: node *name* answers, so it is not dead."""
    log.warning(
        "%s answers but refuses the monitor (%s): alive, not dead; no failover", name, error
    )


def _attached(status: ReplicaStatus) -> bool:
    """The IO thread is connected to its source: ``Yes``, or MariaDB's ``Preparing``
    (connected and authenticated, registering: on a slow link that takes a dozen round
    trips, and the source has answered already)."""
    return status.io_running in ("Yes", "Preparing")


class _NoMoreRounds(Exception):
    """The probe threads can no longer be used (the interpreter is shutting down)."""


# ---------------------------------------------------------------------------------- fork

_live_monitors: weakref.WeakSet[Monitor] = weakref.WeakSet()
_inherited_in_use: list[NodeProbe] = []


def _before_fork() -> None:
    for monitor in list(_live_monitors):
        with contextlib.suppress(Exception):  # a broken monitor must not block the fork
            monitor._before_fork()


def _after_fork_in_parent() -> None:
    for monitor in list(_live_monitors):
        with contextlib.suppress(Exception):
            monitor._after_fork_in_parent()


def _after_fork_in_child() -> None:
    """Threads do not survive ``fork()``: give every monitor fresh state and restart it."""
    for monitor in list(_live_monitors):
        with contextlib.suppress(Exception):  # a broken monitor must not break the child
            monitor._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
