"""Failover and switchover on PostgreSQL streaming replication (hot standbys).

The PostgreSQL counterpart of :mod:`rwsplit.topology.failover`, for clusters that have no
manager of their own (no Patroni, no managed service):

**Failover** (:func:`failover`, the primary is gone):

1. one process at a time: an advisory lock on most servers
   (:mod:`rwsplit.topology._pg_coordination`); a process that finds another at work waits and
   follows the node it promotes;
2. confirm the primary dead: it fails ``confirm_attempts`` probes in a row (an error only a
   live server sends — too many connections, SQLSTATE 53300 — means alive: no failover) *and*
   no reachable standby still streams from it;
3. let every candidate replay all the WAL it received (resuming a paused replay), then choose
   the standby with the furthest received and replayed LSN (``preferred`` first among equals,
   never one in ``never_promote``). With ``synchronous_standby_names = 'ANY 1 (...)'`` every
   acknowledged commit was flushed by one standby: the furthest has them all;
4. ``pg_promote()``, wait until it is out of recovery, publish it (writes resume);
5. point every other standby at it: ``primary_conninfo`` by ``ALTER SYSTEM`` and
   ``pg_reload_conf()`` (applied on reload since PostgreSQL 13: the WAL receiver restarts and
   follows the new timeline, ``recovery_target_timeline = 'latest'``); the credentials and
   options of the standby's own ``primary_conninfo`` are kept, only host and port change;
6. when the old primary had ``synchronous_standby_names``, the new one gets
   ``ANY 1 (<the standbys now streaming from it>)``;
7. the old primary is fenced: out of routing in this process, and if it answers, made
   read-only for new transactions (``ALTER SYSTEM SET default_transaction_read_only = on``,
   reload) and its client sessions ended (``pg_terminate_backend``). It cannot follow the new
   primary as it is: the result names it in ``needs_rebuild`` (``pg_rewind`` or a new base
   backup, then start it as a standby).

**Switchover** (:func:`switchover`, planned): fence the primary as above, read its final WAL
position, wait until the target replayed it, promote the target, repoint the others. The old
primary stays fenced and is reported: a running server cannot become a standby without a
restart (``standby.signal``), which SQL cannot do.

Every statement is logged (logger ``rwsplit.failover``) with its node, passwords never.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import FailoverError
from ..servers import postgresql as pg
from . import _failover_common as common
from ._coordination import Acquired
from ._pg_coordination import PgFailoverLock, lock_key
from .failover import FailoverOptions, FailoverResult
from .model import Node, Role, Topology, TopologyHost
from .pg_probe import PgProbe, describe_pg_error, pg_node

__all__ = [
    "PgFailoverResult",
    "failover",
    "fence",
    "restart_wal_receiver",
    "switchover",
]

log = logging.getLogger("rwsplit.failover")

_CLIENTS_SQL = (
    "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
    "AND application_name NOT IN ('rwsplit-probe', 'rwsplit-failover-lock')"
)
_CLIENTS_LEFT_SQL = (
    "SELECT count(*) AS n FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
    "AND application_name NOT IN ('rwsplit-probe', 'rwsplit-failover-lock')"
)


@dataclass
class PgFailoverResult(FailoverResult):
    """A :class:`~rwsplit.failover.FailoverResult` with what PostgreSQL leaves to do."""

    needs_rebuild: list[tuple[str, str]] = field(default_factory=list)
    """Former primaries that cannot follow the new primary as they are, with what to do
    (``pg_rewind`` or a new base backup, then start them as standbys)."""

    def describe(self) -> str:
        text = super().describe()
        lines = [text] if text else []
        for name, why in self.needs_rebuild:
            lines.append(f"needs a rebuild: {name}: {why}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- plumbing


def _sql(probe: PgProbe, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
    """Run *sql* on *probe*'s connection; rows if it returns any (``ALTER SYSTEM`` does not:
    :meth:`PgProbe.query` expects rows). The connection is dropped on any error."""
    import psycopg

    try:
        conn = probe._connect()
        # Client-side binding: ALTER SYSTEM takes no server-side parameters.
        with psycopg.ClientCursor(conn) as cur:
            cur.execute(sql, tuple(params) or None)
            if cur.description is None:
                return []
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=False)) for r in cur.fetchall()]
    except BaseException:
        probe.close()
        raise


class _Run(common.Run[PgFailoverResult]):
    def exec(
        self, probe: PgProbe, sql: str, params: Sequence[object] = (), *, shown: str | None = None
    ) -> list[dict[str, Any]]:
        return self._run(
            probe.name, shown or sql, lambda: _sql(probe, sql, params), describe_pg_error
        )


def _probes(
    cluster: TopologyHost, nodes: Sequence[Node], timeout: float
) -> contextlib.AbstractContextManager[dict[str, PgProbe]]:
    return common.open_probes(cluster, nodes, timeout, PgProbe)


def _probe(probe: PgProbe) -> pg.PgNodeState | BaseException:
    try:
        return probe.probe()
    except Exception as exc:
        log.info("%s: unreachable: %s", probe.name, describe_pg_error(exc))
        return exc


def _probe_all(probes: Mapping[str, PgProbe]) -> dict[str, pg.PgNodeState | BaseException]:
    return common.in_parallel(probes, _probe, "rwsplit-pg-failover")


def _states(results: Mapping[str, pg.PgNodeState | BaseException]) -> dict[str, pg.PgNodeState]:
    return {n: s for n, s in results.items() if isinstance(s, pg.PgNodeState)}


def _lock_for(
    cluster: TopologyHost, options: FailoverOptions, skip: Sequence[str] = ()
) -> PgFailoverLock:
    return common.lock_for(PgFailoverLock, lock_key(options.cluster_id), cluster, options, skip)


def _publish(
    cluster: TopologyHost,
    primary: str,
    fenced: Sequence[str],
    states: Mapping[str, pg.PgNodeState],
) -> None:
    old = cluster.topology
    pstate = states.get(primary)
    nodes: list[Node] = []
    for n in old.nodes:
        s = states.get(n.name)
        if n.name in fenced:
            nodes.append(
                n.evolve(
                    role=Role.UNKNOWN,
                    healthy=False,
                    read_only=True,
                    error="fenced former primary: needs pg_rewind or a rebuild",
                )
            )
        elif n.name == primary:
            nodes.append(n.evolve(role=Role.PRIMARY, healthy=True, read_only=False, error=None))
        elif s is not None:
            nodes.append(pg_node(n.name, n.url, s, pstate))
        else:
            nodes.append(n)
    cluster.publish(Topology(tuple(nodes), old.version + 1))


def _error(result: pg.PgNodeState | BaseException) -> BaseException:
    return result if isinstance(result, BaseException) else RuntimeError("answered")


def _server_answered(result: pg.PgNodeState | BaseException | None) -> bool:
    return isinstance(result, BaseException) and pg.server_answered(result)


# ---------------------------------------------------------------------------------- server ops


def _mask(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:
        return "(unparsable)"
    return " ".join(
        f"{k}={'***' if k == 'password' else v}" for k, v in parts.items() if v is not None
    )


def _conninfo(probe: PgProbe) -> str:
    rows = probe.query("SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'")
    return str(rows[0]["setting"] or "") if rows else ""


def _quiet(probe: PgProbe) -> None:
    """Keep a ``primary_conninfo`` (which may hold a password) out of the server's log."""
    with contextlib.suppress(Exception):
        _sql(probe, "SET log_statement = 'none'")


def _set_conninfo(run: _Run | None, probe: PgProbe, conninfo: str) -> None:
    _quiet(probe)
    sql = "ALTER SYSTEM SET primary_conninfo = %s"
    shown = f"ALTER SYSTEM SET primary_conninfo = '{_mask(conninfo)}'"
    if run is not None:
        run.exec(probe, sql, (conninfo,), shown=shown)
        run.exec(probe, "SELECT pg_reload_conf()")
    else:
        log.info("%s: %s", probe.name, shown)
        _sql(probe, sql, (conninfo,))
        _sql(probe, "SELECT pg_reload_conf()")


def restart_wal_receiver(probe: PgProbe) -> None:
    """Make standby *probe* reconnect to its source now.

    PostgreSQL restarts the WAL receiver when ``primary_conninfo`` changes on a reload; a
    trailing space is a change that means nothing to libpq (added, or removed the next time).
    A hung source keeps an old connection open for ``wal_receiver_timeout`` (a minute by
    default): a new one tells within milliseconds whether it answers.
    """
    current = _conninfo(probe)
    if not current:
        return
    toggled = current.rstrip() if current.endswith(" ") else current + " "
    _set_conninfo(None, probe, toggled)


def fence(probe: PgProbe, run: _Run | None = None) -> int:
    """Make a former primary read-only for new transactions and end its client sessions.

    ``ALTER SYSTEM SET default_transaction_read_only = on`` and a reload (it survives a
    restart), then ``pg_terminate_backend`` on every client session (a session may have set
    ``default_transaction_read_only`` off for itself, or hold a transaction open). The number
    of sessions ended.
    """
    stmts = [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ]
    for sql in stmts:
        if run is not None:
            run.exec(probe, sql)
        else:
            log.warning("fencing former primary %s: %s", probe.name, sql)
            _sql(probe, sql)
    if run is not None and run.result.dry_run:
        return 0
    # The reload is asynchronous: once this session sees the setting, the postmaster re-read
    # the file, and every session started from now on is read-only. Only then end the others
    # (they would otherwise reconnect writable).
    sql = "SELECT current_setting('default_transaction_read_only') AS v"
    if not _wait(lambda: probe.query(sql)[0]["v"] == "on", 5.0, 0.01):
        log.error("%s: default_transaction_read_only still off 5s after the reload", probe.name)
    rows = probe.query(_CLIENTS_SQL)
    return int(rows[0]["n"] or 0) if rows else 0


def _wait(
    condition: Callable[[], bool], timeout: float, interval: float = 0.02
) -> bool:  # bounded poll
    deadline = time.monotonic() + timeout
    for _ in range(max(1, int(timeout / interval) + 2)):
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return condition()


def _replayed_all(probe: PgProbe, run: _Run, timeout: float) -> pg.PgNodeState | None:
    """Resume a paused replay and wait until *probe*'s standby replayed all it received."""
    state = _probe(probe)
    if not isinstance(state, pg.PgNodeState) or not state.in_recovery:
        return None
    if state.replay_paused:
        run.exec(probe, "SELECT pg_wal_replay_resume()")
    if run.result.dry_run:
        return state
    last: list[pg.PgNodeState] = [state]

    def done() -> bool:
        s = _probe(probe)
        if not isinstance(s, pg.PgNodeState):
            return False
        last[0] = s
        return s.replay_lsn is not None and (s.receive_lsn is None or s.replay_lsn >= s.receive_lsn)

    if not _wait(done, timeout):
        run.say("%s did not replay all it received within %.3gs", probe.name, timeout)
        return None
    return last[0]


def _position(state: pg.PgNodeState) -> tuple[int, int]:
    received = state.receive_lsn.value if state.receive_lsn else 0
    replayed = state.replay_lsn.value if state.replay_lsn else 0
    return (max(received, replayed), replayed)


def _choose(
    candidates: Mapping[str, pg.PgNodeState], options: FailoverOptions, order: Sequence[str]
) -> str:
    allowed = common.promotable(
        candidates, options, "standby", "all unreachable, not caught up, or in never_promote"
    )
    top = max(_position(s) for s in allowed.values())
    best = [n for n, s in allowed.items() if _position(s) == top]
    return common.pick(best, options, order)


def _promote(run: _Run, probe: PgProbe, timeout: float) -> None:
    run.exec(probe, "SELECT pg_promote(true, %s)", (max(1, int(timeout)),))
    if run.result.dry_run:
        return

    def out() -> bool:
        s = _probe(probe)
        return isinstance(s, pg.PgNodeState) and not s.in_recovery

    if not _wait(out, timeout):
        raise FailoverError(
            f"{probe.name} did not leave recovery within {timeout:.0f}s after pg_promote(); "
            "check its log, then run the command again"
        )


def _address(url: Any) -> tuple[str, int]:
    return url.host or "localhost", url.port or 5432


def _repoint(
    run: _Run,
    probes: Mapping[str, PgProbe],
    states: Mapping[str, pg.PgNodeState],
    new: str,
    skip: set[str],
    options: FailoverOptions,
) -> None:
    """Point every standby but *skip* at *new* and wait (bounded) until each streams."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    host, port = _address(probes[new].node_url)
    pending: list[str] = []
    for name, state in states.items():
        if name == new or name in skip:
            continue
        probe = probes[name]
        if not state.in_recovery:
            run.result.skipped.append((name, "not a standby (out of recovery)"))
            continue
        if state.source == f"{host}:{port}" and state.streaming:
            continue  # already follows it
        try:
            current = _conninfo(probe)
        except Exception as exc:
            run.result.skipped.append((name, f"cannot read primary_conninfo: {exc}"))
            continue
        params = conninfo_to_dict(current) if current.strip() else {}
        params["host"], params["port"] = host, str(port)
        params.pop("hostaddr", None)
        params.setdefault("application_name", name)
        _set_conninfo(run, probe, make_conninfo(**params))  # type: ignore[arg-type]
        pending.append(name)
    if run.result.dry_run:
        run.result.repointed.extend(pending)
        return
    timeout = min(options.apply_timeout, 30.0)
    for name in pending:
        probe = probes[name]

        def streams(p: PgProbe = probe) -> bool:
            s = _probe(p)
            return isinstance(s, pg.PgNodeState) and s.streaming and s.source == f"{host}:{port}"

        if _wait(streams, timeout, 0.05):
            run.result.repointed.append(name)
        else:
            run.result.skipped.append(
                (
                    name,
                    f"does not stream from {new} within {timeout:.0f}s (its WAL may be ahead "
                    "of the new timeline: pg_rewind or a new base backup)",
                )
            )


def _unreachable(
    result: PgFailoverResult,
    names: Sequence[str],
    states: Mapping[str, pg.PgNodeState],
    new: str,
    skip: set[str],
) -> None:
    """Standbys that did not answer: the job is not done until they follow *new*."""
    for name in names:
        if name in states or name == new or name in skip:
            continue
        if all(n != name for n, _ in result.skipped):
            result.skipped.append(
                (name, f"unreachable: run the command again once it is back (to follow {new})")
            )


def _keep_synchronous(
    run: _Run, probe: PgProbe, was_synchronous: bool, followers: Sequence[str]
) -> None:
    """Commits on the new primary wait for one standby too, once standbys stream from it."""
    if not was_synchronous or run.result.dry_run:
        return
    names: list[str] = []

    def listed() -> bool:
        rows = probe.query("SELECT application_name FROM pg_stat_replication")
        names[:] = sorted({str(r["application_name"]) for r in rows if r["application_name"]})
        return len(names) >= len(followers)

    try:
        _wait(listed, 5.0, 0.05)
    except Exception as exc:
        log.warning("%s: cannot list its standbys: %s", probe.name, describe_pg_error(exc))
        return
    if not names:
        log.warning(
            "%s: the cluster ran synchronous commits but no standby streams from the new "
            "primary yet: it commits asynchronously until synchronous_standby_names is set",
            probe.name,
        )
        return
    value = "ANY 1 (" + ", ".join('"' + n.replace('"', '""') + '"' for n in names) + ")"
    run.exec(
        probe,
        "ALTER SYSTEM SET synchronous_standby_names = %s",
        (value,),
        shown=f"ALTER SYSTEM SET synchronous_standby_names = '{value}'",
    )
    run.exec(probe, "SELECT pg_reload_conf()")


def _synchronous(cluster: TopologyHost, options: FailoverOptions, probe: PgProbe | None) -> bool:
    if options.semi_sync is not None:
        return options.semi_sync
    monitor = cluster.monitor
    seen = getattr(monitor, "primary_synchronous", None)
    if seen is not None:
        return bool(seen)
    if probe is None:
        return False
    try:
        rows = probe.query("SELECT current_setting('synchronous_standby_names') AS s")
    except Exception:
        return False
    return bool(rows and rows[0]["s"])


def _fence_old(run: _Run, cluster: TopologyHost, probes: Mapping[str, PgProbe], old: str) -> None:
    """Out of routing; read-only with its sessions ended if it answers; reported."""
    if not run.result.dry_run:
        cluster.fenced.add(old)
    if old not in run.result.fenced:
        run.result.fenced.append(old)
    probe = probes.get(old)
    state = _probe(probe) if probe is not None else None
    if isinstance(state, pg.PgNodeState) and not state.in_recovery:
        try:
            ended = fence(probe, run) if probe is not None else 0
            if ended:
                run.say("%s: ended %d client sessions", old, ended)
        except FailoverError as exc:
            log.error("%s", exc)
    why = (
        "it was the primary: it cannot follow the new timeline as it is; run pg_rewind "
        "against the new primary (or take a new base backup), then start it as a standby"
    )
    if isinstance(state, pg.PgNodeState) and state.in_recovery:
        return  # someone already made it a standby
    if all(n != old for n, _ in run.result.needs_rebuild):
        run.result.needs_rebuild.append((old, why))


# ---------------------------------------------------------------------------------- lock


def _take_lock_or_follow(
    run: _Run,
    cluster: TopologyHost,
    options: FailoverOptions,
    probes: Mapping[str, PgProbe],
    lock: PgFailoverLock,
    old: str | None,
) -> bool:
    """Hold the lock (``False``), or follow the node another process promoted (``True``)."""
    deadline = time.monotonic() + options.apply_timeout + 10 * options.timeout
    waited = False
    for _ in range(100_000):
        if waited and _follow(run, cluster, probes, old):
            return True
        outcome = lock.acquire()
        if outcome is Acquired.HELD:
            run.result.locked_on = list(lock.held)
            return bool(waited and _follow(run, cluster, probes, old))
        if outcome is Acquired.NO_QUORUM:
            raise common.no_quorum(lock, run.result.kind)
        if not waited:
            run.say("another process holds the failover lock (on %s): waiting", lock.busy_on)
            waited = True
        if time.monotonic() > deadline:
            break
        time.sleep(min(0.05, options.confirm_interval))
    raise FailoverError(
        "another process held the failover lock too long without promoting a node; check the "
        "cluster ('rwsplit topology') and the other processes' logs"
    )


def _follow(
    run: _Run, cluster: TopologyHost, probes: Mapping[str, PgProbe], old: str | None
) -> bool:
    results = {n: _probe(p) for n, p in probes.items() if n != old and n not in cluster.fenced}
    states = _states(results)
    writable = [n for n, s in states.items() if s.writable]
    if len(writable) != 1:
        return False
    new = writable[0]
    common.mark_followed(run, cluster, new, old)
    _publish(cluster, new, run.result.fenced, states)
    run.say("%s is the primary (promoted by another process): following it", new)
    return True


# ---------------------------------------------------------------------------------- failover


def _standbys_of(states: Mapping[str, pg.PgNodeState], primary: str) -> list[str]:
    return [n for n, s in states.items() if s.in_recovery and s.streaming and s.source == primary]


_RECEIVER_SQL = "SELECT pid, status, sender_host, sender_port FROM pg_stat_wal_receiver"


def _receiver(probe: PgProbe) -> tuple[object, bool, str | None]:
    """A standby's WAL receiver: its pid (``None``: none runs), whether it streams, and the
    address it streams from (``host:port``)."""
    rows = probe.query(_RECEIVER_SQL)
    if not rows:
        return None, False, None
    row = rows[0]
    host, port = row["sender_host"], row["sender_port"]
    return row["pid"], row["status"] == "streaming", f"{host}:{port}" if host and port else None


def standbys_reach(
    probes: Mapping[str, PgProbe],
    names: Sequence[str],
    primary: str | Collection[str],
    grace: float,
) -> list[str] | None:
    """Restart the WAL receivers of *names* and return those that stream from *primary* (its
    name, or every address it is known by) again within *grace* (``None``: a standby could
    not be asked). A live primary takes them back within milliseconds; a hung or dead one
    leaves them connecting."""
    sources = {primary} if isinstance(primary, str) else set(primary)
    before: dict[str, object] = {}
    for n in names:
        try:
            before[n] = _receiver(probes[n])[0]
            restart_wal_receiver(probes[n])
        except Exception as exc:
            log.error("cannot restart the WAL receiver of %s: %s", n, describe_pg_error(exc))
            return None
    back: list[str] = []

    def check() -> bool:
        # The reload restarts the receiver asynchronously: the old one, still streaming for a
        # moment, is no answer; only a new receiver (another pid) streaming from it is.
        for n in names:
            try:
                pid, streaming, source = _receiver(probes[n])
            except Exception:
                continue
            reached = pid is not None and pid != before[n] and streaming and source in sources
            if reached and n not in back:
                back.append(n)
        return bool(back)

    _wait(check, grace, 0.05)
    return back


def failover(
    cluster: TopologyHost,
    options: FailoverOptions | None = None,
    *,
    dry_run: bool = False,
    confirmed: bool = False,
    progress: common.Progress | None = None,
) -> PgFailoverResult:
    """Replace a dead PostgreSQL primary by the furthest standby (see the module docstring).

    :param options: candidate rules, timeouts, the lock's ``cluster_id``
        (:class:`~rwsplit.failover.FailoverOptions`; the replication account is not used:
        each standby keeps the credentials of its own ``primary_conninfo``).
    :param confirmed: the caller (the monitor) already confirmed the primary is dead.
    :raises FailoverError: the primary is alive, two primaries exist, no candidate, or a step
        failed (the message names the node and the statement; re-running is safe).
    """
    options = options or FailoverOptions("", "")
    old = common.previous_primary(cluster)
    result = PgFailoverResult("failover", old, None, dry_run=dry_run)
    run = _Run(result, progress)
    nodes = cluster.topology.nodes
    order = [n.name for n in nodes]
    known_dead = [old] if confirmed and old is not None else []
    with (
        common.monitor_paused(cluster),
        _probes(cluster, nodes, options.timeout) as probes,
        _lock_for(cluster, options, known_dead) as lock,
    ):
        if options.coordinate and not dry_run:
            if _take_lock_or_follow(run, cluster, options, probes, lock, old):
                return result
            run.step("locked")
        if old is not None and old in probes and confirmed:
            probes[old].timeout = min(probes[old].timeout, _monitor_timeout(cluster))
        results = _probe_all(probes)
        states = _states(results)
        run.step("probed")
        writable = [n for n, s in states.items() if s.writable and n not in cluster.fenced]
        if len(writable) > 1:
            raise FailoverError(
                "refusing to fail over: " + ", ".join(sorted(writable)) + " are all out of "
                "recovery and writable (split brain); fence all but one by hand "
                "(ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf())"
            )
        if writable:
            # Promoted already (by an earlier run, another process, an operator), or the
            # primary lives: finish the job (standbys that do not follow it yet), else nothing.
            alive = writable[0] == old
            return _finish(
                run, cluster, options, probes, states, writable[0], None if alive else old
            )
        if old is None:
            raise FailoverError(
                "no primary is known and none is writable; say which standby to promote with "
                "'rwsplit switchover --to NODE' after checking the servers"
            )
        if _server_answered(results.get(old)):
            raise FailoverError(
                f"the primary {old} refuses connections "
                f"({describe_pg_error(_error(results[old]))}) but answers: it is alive (busy), not "
                "dead; nothing done"
            )
        if old in states:
            raise FailoverError(
                f"the primary {old} answers (read-only: fenced?): it is not dead; nothing done"
            )
        if not confirmed:
            _confirm_dead(run, probes, old, options, states)
        skip = {old, *cluster.fenced}
        candidates: dict[str, pg.PgNodeState] = {}
        for name, state in states.items():
            if name in skip or not state.in_recovery:
                continue
            caught_up = _replayed_all(probes[name], run, options.apply_timeout)
            if caught_up is None:
                run.say("%s: not a candidate (did not replay all it received in time)", name)
            else:
                candidates[name] = caught_up
        run.step("replayed")
        new = _choose(candidates, options, order)
        result.new_primary = new
        common.check_lock_held(lock)
        was_sync = _synchronous(cluster, options, probes.get(new))
        pos = candidates[new]
        run.say("promoting %s (received %s, replayed %s)", new, pos.receive_lsn, pos.replay_lsn)
        _promote(run, probes[new], options.apply_timeout)
        run.step("promoted")
        if not dry_run:
            cluster.fenced.add(old)
            promoted = _probe(probes[new])
            if isinstance(promoted, pg.PgNodeState):
                _publish(cluster, new, [old], {**candidates, new: promoted})
        run.step("writable")
        _repoint(run, probes, {**states, **candidates}, new, skip, options)
        _unreachable(result, order, states, new, skip)
        run.step("repointed")
        _keep_synchronous(run, probes[new], was_sync, result.repointed)
        _fence_old(run, cluster, probes, old)
        if not dry_run:
            _publish(cluster, new, [old], _states(_probe_all(probes)))
    run.say("failover done: %s is the primary", new)
    return result


def _monitor_timeout(cluster: TopologyHost) -> float:
    monitor = cluster.monitor
    return monitor.timeout if monitor is not None else 2.0


def _confirm_dead(
    run: _Run,
    probes: Mapping[str, PgProbe],
    name: str,
    options: FailoverOptions,
    states: Mapping[str, pg.PgNodeState],
) -> None:
    probe = probes.get(name)
    if probe is not None:

        def answers() -> bool:
            r = _probe(probe)
            return isinstance(r, pg.PgNodeState) or _server_answered(r)

        common.confirm_dead(run, name, options, answers)
    streaming = _standbys_of(states, name)
    if streaming:
        back = standbys_reach(probes, streaming, name, max(options.timeout, 0.5))
        if back is None or back:
            raise FailoverError(
                f"the primary {name} does not answer here but "
                f"{', '.join(back or streaming)} still stream from it: it is alive, only "
                "unreachable from this process (a partition?); nothing done"
            )


def _finish(
    run: _Run,
    cluster: TopologyHost,
    options: FailoverOptions,
    probes: Mapping[str, PgProbe],
    states: Mapping[str, pg.PgNodeState],
    new: str,
    old: str | None,
) -> PgFailoverResult:
    """A standby is already the primary (promoted earlier, by us or by hand): repoint the
    standbys that do not follow it yet and fence the old primary."""
    result = run.result
    result.new_primary = new
    skip = set(cluster.fenced) | ({old} if old else set())
    _repoint(run, probes, states, new, skip, options)
    # Unreachable nodes are only reported here: nothing tells a dead former primary from a
    # dead standby any more (the failover that promoted *new* counted them).
    for name in probes:
        if name not in states and name not in skip:
            run.say("%s does not answer: not checked", name)
    if old is not None and old != new:
        _fence_old(run, cluster, probes, old)
    if not result.repointed and not result.skipped and not result.needs_rebuild:
        result.nothing_to_do = True
    if not run.result.dry_run:
        _publish(cluster, new, result.fenced, _states(_probe_all(probes)))
    run.say("%s is the primary", new)
    return result


# ---------------------------------------------------------------------------------- switchover


def switchover(
    cluster: TopologyHost,
    to: str,
    options: FailoverOptions | None = None,
    *,
    dry_run: bool = False,
    progress: common.Progress | None = None,
) -> PgFailoverResult:
    """Make standby *to* the primary with nothing lost (see the module docstring).

    :raises FailoverError: *to* is not a standby streaming from the primary, the primary is
        not unique, the target did not catch up in time (then the old primary is left fenced
        and the target a standby: run the command again or lift the fence by hand).
    """
    options = options or FailoverOptions("", "")
    nodes = cluster.topology.nodes
    names = [n.name for n in nodes]
    if to not in names:
        raise FailoverError(f"{to} is not a node of this cluster; nodes: {', '.join(names)}")
    result = PgFailoverResult("switchover", None, to, dry_run=dry_run)
    run = _Run(result, progress)
    with (
        common.monitor_paused(cluster),
        _probes(cluster, nodes, options.timeout) as probes,
        _lock_for(cluster, options) as lock,
    ):
        if options.coordinate and not dry_run:
            outcome = lock.acquire()
            if outcome is not Acquired.HELD:
                raise FailoverError(
                    "switchover not started: another process holds the failover lock"
                    + (f" (on {lock.busy_on})" if lock.busy_on else "")
                    + (" or too few servers answer" if outcome is Acquired.NO_QUORUM else "")
                    + "; retry later"
                )
            result.locked_on = list(lock.held)
        states = _states(_probe_all(probes))
        writable = [n for n, s in states.items() if s.writable and n not in cluster.fenced]
        target = states.get(to)
        if target is None:
            raise FailoverError(f"{to} does not answer; nothing done")
        if not target.in_recovery:
            if writable == [to]:
                return _finish(
                    run, cluster, options, probes, states, to, common.previous_primary(cluster)
                )
            raise FailoverError(f"{to} is not a standby (out of recovery); nothing done")
        if len(writable) != 1:
            raise FailoverError(
                "switchover needs exactly one writable primary, found "
                f"{', '.join(writable) or 'none'}; use 'rwsplit failover' for a dead primary"
            )
        old = writable[0]
        result.old_primary = old
        if not (target.streaming and target.source == old):
            raise FailoverError(
                f"{to} does not stream from the primary {old} "
                f"(source {target.source or 'none'}, {target.receiver_status or 'no WAL receiver'})"
                "; nothing done"
            )
        was_sync = _synchronous(cluster, options, probes[old])
        run.say("fencing %s: read-only, client sessions ended", old)
        if not dry_run:
            cluster.fenced.add(old)
            cluster.publish(
                cluster.topology.with_nodes(
                    [
                        cluster.topology.node(old).evolve(
                            role=Role.UNKNOWN, read_only=True, error="switchover in progress"
                        )
                    ]
                )
            )
        fence(probes[old], run)
        result.fenced.append(old)
        run.step("fenced")
        final = _final_position(run, probes[old], options.timeout)
        run.step("final position")
        if final is not None and not dry_run:  # noqa: SIM102
            if not _wait(lambda: _replayed_to(probes[to], final), options.apply_timeout, 0.02):
                raise FailoverError(
                    f"{to} did not replay the primary's final position {final} within "
                    f"{options.apply_timeout:.0f}s; {old} stays fenced (read-only): run the "
                    "command again, or lift the fence (ALTER SYSTEM RESET "
                    "default_transaction_read_only; SELECT pg_reload_conf())"
                )
        run.step("caught up")
        _promote(run, probes[to], options.apply_timeout)
        run.step("promoted")
        if not dry_run:
            promoted = _probe(probes[to])
            if isinstance(promoted, pg.PgNodeState):
                _publish(cluster, to, [old], {**states, to: promoted})
        _repoint(run, probes, states, to, {old, *cluster.fenced}, options)
        _unreachable(result, names, states, to, {old, *cluster.fenced})
        run.step("repointed")
        _keep_synchronous(run, probes[to], was_sync, result.repointed)
        result.needs_rebuild.append(
            (
                old,
                "fenced (read-only); to make it a standby of the new primary: stop it, run "
                "pg_rewind against the new primary if it wrote past the switch point, create "
                "standby.signal, set primary_conninfo, start it",
            )
        )
        if not dry_run:
            _publish(cluster, to, [old], _states(_probe_all(probes)))
    run.say("switchover done: %s is the primary", to)
    return result


def _final_position(run: _Run, probe: PgProbe, timeout: float) -> pg.Lsn | None:
    """Once the fenced primary's client sessions are gone: how far its WAL is flushed.

    Not the insert position: when the last record ends on a page boundary the insert
    position is a page header further, which a standby reaches only with the next record (an
    idle fenced primary writes one every 15 s). The flush position is the end of a record;
    it is read once it reached the insert position (the WAL writer flushes asynchronous
    commits within ``wal_writer_delay``), or after a second.
    """
    if run.result.dry_run:
        return None

    def gone() -> bool:
        rows = probe.query(_CLIENTS_LEFT_SQL)
        return bool(rows) and int(rows[0]["n"] or 0) == 0

    if not _wait(gone, max(timeout, 2.0), 0.02):
        probe.query(_CLIENTS_SQL)  # one more round: sessions that arrived meanwhile
    rows = probe.query("SELECT pg_current_wal_insert_lsn()::text AS lsn")
    inserted = pg.Lsn.maybe(rows[0]["lsn"]) if rows else None
    flushed: list[pg.Lsn | None] = [None]

    def written() -> bool:
        got = probe.query("SELECT pg_current_wal_flush_lsn()::text AS lsn")
        flushed[0] = pg.Lsn.maybe(got[0]["lsn"]) if got else None
        return inserted is None or (flushed[0] is not None and flushed[0] >= inserted)

    _wait(written, 1.0, 0.02)
    return flushed[0]


def _replayed_to(probe: PgProbe, lsn: pg.Lsn) -> bool:
    s = _probe(probe)
    return isinstance(s, pg.PgNodeState) and s.replay_lsn is not None and s.replay_lsn >= lsn
