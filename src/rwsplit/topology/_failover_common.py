"""The steps of failover and switchover that do not depend on the server family.

:mod:`rwsplit.topology.failover` (MariaDB, MySQL) and :mod:`rwsplit.topology.pg_failover`
(PostgreSQL) each supply their server calls (their probe, their lock, their statements);
the bookkeeping, logging and rules they share live here, once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sqlalchemy.engine import URL

from ..errors import FailoverError
from ._coordination import LockTarget
from .model import Node, Role, TopologyHost

if TYPE_CHECKING:
    from ._coordination import FailoverLock
    from ._pg_coordination import PgFailoverLock
    from .failover import FailoverOptions, FailoverResult

log = logging.getLogger("rwsplit.failover")

Progress = Callable[[str], None]

ResultT = TypeVar("ResultT", bound="FailoverResult")
Row = TypeVar("Row")
State = TypeVar("State")
P = TypeVar("P")
T = TypeVar("T")


class _Closable(Protocol):
    def close(self) -> None: ...


ProbeT = TypeVar("ProbeT", bound=_Closable)
LockT = TypeVar("LockT")


class Run(Generic[ResultT]):
    """Runs (or, in a dry run, records) statements on nodes; logs each one."""

    def __init__(self, result: ResultT, progress: Progress | None) -> None:
        self.result = result
        self.progress = progress
        self.t0 = result.started_at = time.monotonic()

    def step(self, name: str) -> None:
        self.result.timeline[name] = round(time.monotonic() - self.t0, 3)

    def say(self, msg: str, *args: object) -> None:
        log.info(msg, *args)
        if self.progress is not None:
            self.progress(msg % args if args else msg)

    def _run(
        self,
        node: str,
        shown: str,
        call: Callable[[], list[Row]],
        describe: Callable[[BaseException], str],
    ) -> list[Row]:
        """Record statement *shown* on *node*; unless a dry run, log it and *call* it (its
        error, worded by *describe*, stops the operation)."""
        self.result.statements.append((node, shown))
        if self.result.dry_run:
            log.info("%s: would run: %s", node, shown)
            return []
        log.info("%s: %s", node, shown)
        if self.progress is not None:
            self.progress(f"{node}: {shown}")
        try:
            return call()
        except Exception as exc:
            raise FailoverError(
                f"{self.result.kind} stopped: on {node}, '{shown}' failed: "
                f"{describe(exc)}; fix the cause and run the command again (each step "
                "checks the servers' state first, so re-running is safe)"
            ) from None


@contextlib.contextmanager
def open_probes(
    cluster: TopologyHost,
    nodes: Sequence[Node],
    timeout: float,
    make: Callable[[URL, float, dict[str, Any]], ProbeT],
) -> Iterator[dict[str, ProbeT]]:
    """An admin connection (*make*: the family's probe) to each of *nodes*, by name; closed
    on the way out."""
    probes = {
        n.name: make(cluster.admin_url(n), timeout, cluster.probe_connect_args(n)) for n in nodes
    }
    try:
        yield probes
    finally:
        for p in probes.values():
            p.close()


def in_parallel(
    probes: Mapping[str, ProbeT], fn: Callable[[ProbeT], T], prefix: str
) -> dict[str, T]:
    """*fn* on every probe, in threads named *prefix* (inline for a single one)."""
    if len(probes) < 2:
        return {name: fn(p) for name, p in probes.items()}
    with ThreadPoolExecutor(len(probes), thread_name_prefix=prefix) as pool:
        futures = {name: pool.submit(fn, p) for name, p in probes.items()}
        return {name: f.result() for name, f in futures.items()}


@contextlib.contextmanager
def monitor_paused(cluster: TopologyHost) -> Iterator[None]:
    """Hold the monitor's round lock: no monitor publishes while the topology is rewired."""
    monitor = cluster.monitor
    if monitor is None:
        yield
        return
    with monitor._round:
        yield


def previous_primary(cluster: TopologyHost) -> str | None:
    """The primary before this operation: the monitor's, else the one node in that role."""
    monitor = cluster.monitor
    if monitor is not None and monitor._primary_name is not None:
        return monitor._primary_name
    primaries = [n for n in cluster.topology.nodes if n.role is Role.PRIMARY]
    return primaries[0].name if len(primaries) == 1 else None


def lock_for(
    make: Callable[..., LockT],
    key: object,
    cluster: TopologyHost,
    options: FailoverOptions,
    skip: Sequence[str] = (),
) -> LockT:
    """The cross-process failover lock (*make*: the family's, named *key*) on every node but
    *skip* (known dead: not tried)."""
    nodes = cluster.topology.nodes
    targets = [
        LockTarget(n.name, cluster.admin_url(n), cluster.probe_connect_args(n))
        for n in nodes
        if n.name not in skip
    ]
    return make(
        key,
        targets,
        quorum=options.quorum,
        total=len(nodes),
        timeout=min(options.timeout, 2.0),
    )


def no_quorum(lock: FailoverLock | PgFailoverLock, what: str) -> FailoverError:
    return FailoverError(
        f"{what} not started: the failover lock needs {lock.needed()} servers "
        f"({lock.quorum}) but only {', '.join(lock.running) or 'none'} answered; bring "
        "servers back (or choose quorum='majority_of_running') and retry"
    )


def check_lock_held(lock: FailoverLock | PgFailoverLock) -> None:
    """Right before a promotion: the failover lock this process holds (if any) is still held."""
    if lock.held and not lock.confirm():
        raise FailoverError(
            "lost the failover lock before promoting (a lock connection broke): nothing "
            "promoted; the monitor / the command retries"
        )


def confirm_dead(
    run: Run[Any], name: str, options: FailoverOptions, answers: Callable[[], bool]
) -> None:
    """The primary *name* fails ``confirm_attempts`` probes in a row (*answers*: one probe,
    true when it answered; it may raise a refusal of its own)."""
    for attempt in range(1, options.confirm_attempts + 1):
        if answers():
            raise FailoverError(
                f"the primary {name} answered probe {attempt}: it is not dead; nothing done"
            )
        run.say("%s: probe %d/%d failed", name, attempt, options.confirm_attempts)
        if attempt < options.confirm_attempts:
            time.sleep(options.confirm_interval)


def promotable(
    candidates: Mapping[str, State], options: FailoverOptions, who: str, why: str
) -> dict[str, State]:
    """The *candidates* not in ``never_promote``; none: refused (*who* may be promoted, for
    *why* none is left)."""
    allowed = {n: s for n, s in candidates.items() if n not in options.never_promote}
    if not allowed:
        raise FailoverError(
            f"no {who} may be promoted ({why}: "
            f"{', '.join(options.never_promote) or '-'}); bring one back or relax never_promote"
        )
    return allowed


def pick(best: Sequence[str], options: FailoverOptions, order: Sequence[str]) -> str:
    """Among the equally advanced *best*: the first ``preferred``, else configuration order."""
    for name in options.preferred:
        if name in best:
            return name
    return min(best, key=order.index)


def mark_followed(run: Run[Any], cluster: TopologyHost, new: str, old: str | None) -> None:
    """Another process made *new* the primary: the result says so, *old* is fenced."""
    result = run.result
    result.new_primary = new
    result.followed = result.nothing_to_do = True
    if old is not None:
        result.fenced.append(old)
        cluster.fenced.add(old)
