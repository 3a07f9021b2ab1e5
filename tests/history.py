"""A history checker for fault-injection runs (the idea of Jepsen's set and Elle checkers).

A run records every client operation as an :class:`Op`: who ran it (a *process*: one client
thread / session chain), what it was (the write of a unique value, a causal read, a read
inside a request), when it was invoked and completed, and what the client was told:

* ``ok`` — acknowledged (a write: committed; a read: the value it returned);
* ``not_committed`` — the client was told nothing was committed (``RetryableWriteError``);
* ``unknown`` — the client was told the outcome is unknown
  (``TransactionOutcomeUnknownError``);
* ``failed`` — any other error (a read that failed, a write refused before it ran).

After the run the final state is read from every node (:class:`NodeState`: the values in the
table, the node's own-origin transaction count before and after, whether it was ever the
primary). :func:`check` then reports each anomaly with the operations involved:

================  ==========================================================================
kind              meaning
================  ==========================================================================
lost              an acknowledged write is missing on the final primary
lie               a write the client was told was *not committed* is present on some node
duplicate         a value present more than once on a node (a statement applied twice);
                  outcome-unknown writes may be present or absent, never twice
stale-read        a causal read older than the session's own last acknowledged write
non-monotonic     a read inside one request saw less than an earlier read of that request
non-primary       a node that was never the primary logged transactions of its own
                  (witness: its own binlog GTIDs, its server id / server_uuid)
diverged          a replica that follows the final primary and caught up, but whose values
                  differ from the primary's
untyped-error     the client got an error that is not an rwsplit type (a raw driver error):
                  rwsplit promises a typed error saying what happened and what to do
================  ==========================================================================

Writes are *sets*: each write inserts a value no other operation uses, so presence is
unambiguous. The checker is pure (no server); the nemesis (tests/nemesis.py) records the
history and reads the final state.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field


class Kind(enum.Enum):
    """What an operation did."""

    WRITE = "write"
    """Insert of ``value`` (unique in the run)."""
    CAUSAL_READ = "causal-read"
    """In a new session carrying the process's causal token: the highest value of the
    process's own writes visible (``observed``)."""
    REQUEST_READ = "request-read"
    """One read of a request (``request`` groups them): the highest value in the table."""


class Status(enum.Enum):
    """What the client was told."""

    OK = "ok"
    NOT_COMMITTED = "not-committed"
    UNKNOWN = "unknown"
    FAILED = "failed"


class Anomaly(enum.Enum):
    """The anomaly kinds :func:`check` reports."""

    LOST = "lost"
    LIE = "lie"
    DUPLICATE = "duplicate"
    STALE_READ = "stale-read"
    NON_MONOTONIC = "non-monotonic"
    NON_PRIMARY = "non-primary"
    DIVERGED = "diverged"
    UNTYPED_ERROR = "untyped-error"


@dataclass(frozen=True)
class Op:
    """One client operation, as the client saw it."""

    id: int
    process: str
    kind: Kind
    invoked: float
    completed: float
    status: Status
    value: int | None = None
    """The value written (writes)."""
    observed: int | None = None
    """What a read returned (``None``: nothing, or the read failed)."""
    request: int | None = None
    """The request a REQUEST_READ belongs to."""
    error: str | None = None
    """The exception the client got (type and message), if any."""
    node: str | None = None
    """Where it ran, when known."""
    untyped: bool = False
    """The error was not an rwsplit exception (``RwSplitError``): a raw driver error."""

    def describe(self, origin: float = 0.0) -> str:
        what = {
            Kind.WRITE: f"write {self.value}",
            Kind.CAUSAL_READ: f"causal read -> {self.observed}",
            Kind.REQUEST_READ: f"read (request {self.request}) -> {self.observed}",
        }[self.kind]
        told = self.status.value + (f" ({self.error})" if self.error else "")
        where = f" on {self.node}" if self.node else ""
        return (
            f"#{self.id} {self.process} {what}{where} [{self.invoked - origin:+.3f}s .. "
            f"{self.completed - origin:+.3f}s] {told}"
        )


@dataclass(frozen=True)
class NodeState:
    """One node's final state, read after the run."""

    name: str
    values: Sequence[int]
    """Every value in the table on this node (a value twice means applied twice)."""
    was_primary: bool
    """It was the primary at some time during the run (its own transactions are legitimate)."""
    is_final_primary: bool = False
    follows_final_primary: bool = False
    """A replica of the final primary that has applied everything the primary logged."""
    own_before: int = 0
    own_after: int = 0
    """How many transactions of its own origin (its server id / server_uuid) its binlog held
    before and after the run."""
    origin: dict[int, int] = field(default_factory=dict)
    """value -> server id that executed it (when the table records it)."""
    server_id: int | None = None


@dataclass(frozen=True)
class Finding:
    kind: Anomaly
    summary: str
    ops: tuple[Op, ...] = ()
    node: str | None = None


@dataclass
class Result:
    """What :func:`check` found: counts by kind, and each finding with its operations."""

    findings: list[Finding]
    ops: int
    writes: dict[Status, int]
    reads: int
    final_primary: str | None
    notes: list[str] = field(default_factory=list)
    origin: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def counts(self) -> dict[Anomaly, int]:
        """Anomalous operations (or nodes, for node-level kinds) by kind; zero kinds left out."""
        out: Counter[Anomaly] = Counter()
        for f in self.findings:
            out[f.kind] += max(1, len(f.ops))
        return dict(out)

    def count(self, kind: Anomaly) -> int:
        return self.counts.get(kind, 0)

    def of(self, kind: Anomaly) -> list[Finding]:
        return [f for f in self.findings if f.kind is kind]

    def render(self, max_ops: int = 8) -> str:
        """A readable report: totals, then every finding with (up to *max_ops*) operations."""
        w = self.writes
        lines = [
            f"{self.ops} operations: writes ok {w.get(Status.OK, 0)}, not-committed "
            f"{w.get(Status.NOT_COMMITTED, 0)}, unknown {w.get(Status.UNKNOWN, 0)}, failed "
            f"{w.get(Status.FAILED, 0)}; reads {self.reads}; final primary {self.final_primary}",
        ]
        if self.ok:
            lines.append("no anomalies")
        else:
            counts = ", ".join(f"{k.value} {n}" for k, n in self.counts.items())
            lines.append(f"ANOMALIES: {counts}")
        for f in self.findings:
            lines.append(f"  [{f.kind.value}] {f.summary}")
            for op in f.ops[:max_ops]:
                lines.append(f"      {op.describe(self.origin)}")
            if len(f.ops) > max_ops:
                lines.append(f"      ... and {len(f.ops) - max_ops} more")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


# ---------------------------------------------------------------------- recording


class History:
    """A thread-safe recorder of operations (one per run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._next_id = 0
        self._next_value = 0
        self.origin = time.monotonic()
        """Times in renderings are shown relative to this (set it to the fault's time)."""

    def value(self) -> int:
        """A fresh value, never used by another write of this history."""
        with self._lock:
            self._next_value += 1
            return self._next_value

    def request(self) -> int:
        """A fresh request id (REQUEST_READs with the same id belong to one request)."""
        with self._lock:
            self._next_value += 1
            return self._next_value

    def add(self, **fields: object) -> Op:
        with self._lock:
            self._next_id += 1
            op = Op(id=self._next_id, **fields)  # type: ignore[arg-type]
            self._ops.append(op)
            return op

    @property
    def ops(self) -> list[Op]:
        with self._lock:
            return list(self._ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)


def ok_write_times(ops: Iterable[Op]) -> list[float]:
    return sorted(o.completed for o in ops if o.kind is Kind.WRITE and o.status is Status.OK)


def outage(ops: Iterable[Op], since: float) -> float | None:
    """The longest stretch without an acknowledged write from *since* on (seconds).

    ``None`` when no write was acknowledged after *since* (writes never resumed).
    """
    after = [t for t in ok_write_times(ops) if t > since]
    if not after:
        return None
    points = [since, *after]
    return max(b - a for a, b in itertools.pairwise(points))


# ---------------------------------------------------------------------- checking


def check(ops: Iterable[Op], nodes: Sequence[NodeState], *, origin: float = 0.0) -> Result:
    """Check a history against the final state of every node (see the module docstring)."""
    history = sorted(ops, key=lambda o: (o.invoked, o.id))
    writes = [o for o in history if o.kind is Kind.WRITE]
    by_value: dict[int, Op] = {o.value: o for o in writes if o.value is not None}
    findings: list[Finding] = []
    notes: list[str] = []
    primaries = [n for n in nodes if n.is_final_primary]
    final = primaries[0] if len(primaries) == 1 else None
    if len(primaries) > 1:
        notes.append("more than one node was given as the final primary: " + _names(primaries))

    # lost: acknowledged, not on the final primary
    if final is not None:
        present = set(final.values)
        lost = [o for o in writes if o.status is Status.OK and o.value not in present]
        if lost:
            where: Counter[str] = Counter()
            for o in lost:
                holders = [n.name for n in nodes if o.value in n.values]
                where[", ".join(holders) or "no node"] += 1
            found = "; ".join(f"{k}: {v}" for k, v in where.items())
            findings.append(
                Finding(
                    Anomaly.LOST,
                    f"{len(lost)} acknowledged writes are not on the final primary {final.name} "
                    f"(found on {found})",
                    tuple(lost),
                    final.name,
                )
            )
    else:
        notes.append("no final primary: lost writes not checked")

    # lie: told "nothing committed", present somewhere
    lies: dict[int, list[str]] = {}
    for n in nodes:
        for v in set(n.values):
            op = by_value.get(v)
            if op is not None and op.status is Status.NOT_COMMITTED:
                lies.setdefault(v, []).append(n.name)
    if lies:
        ops_ = tuple(by_value[v] for v in sorted(lies))
        where = sorted({name for names in lies.values() for name in names})
        findings.append(
            Finding(
                Anomaly.LIE,
                f"{len(lies)} writes reported as not committed (retryable) are present "
                f"on {', '.join(where)}",
                ops_,
            )
        )

    # duplicate: a value twice on one node
    for n in nodes:
        twice = sorted(v for v, c in Counter(n.values).items() if c > 1)
        if twice:
            involved = tuple(by_value[v] for v in twice if v in by_value)
            findings.append(
                Finding(
                    Anomaly.DUPLICATE,
                    f"{len(twice)} values applied more than once on {n.name}: {twice[:10]}",
                    involved,
                    n.name,
                )
            )

    # unexplained values (present, but no write in the history made them): a checker input bug
    unknown_values = sorted({v for n in nodes for v in n.values} - set(by_value))
    if unknown_values:
        notes.append(f"values no recorded write made: {unknown_values[:10]}")

    untyped = tuple(o for o in history if o.untyped)
    if untyped:
        kinds = Counter((o.error or "?").split(":", 1)[0] for o in untyped)
        findings.append(
            Finding(
                Anomaly.UNTYPED_ERROR,
                f"{len(untyped)} operations failed with an error that is not an rwsplit type "
                f"({dict(kinds)})",
                untyped,
            )
        )

    findings.extend(_stale_reads(history))
    findings.extend(_non_monotonic(history))
    findings.extend(_non_primary(nodes, by_value))
    if final is not None:
        findings.extend(_diverged(nodes, final, by_value))
        notes.extend(_old_primaries(nodes, final, by_value))

    statuses: Counter[Status] = Counter(o.status for o in writes)
    return Result(
        findings=findings,
        ops=len(history),
        writes=dict(statuses),
        reads=sum(1 for o in history if o.kind is not Kind.WRITE),
        final_primary=final.name if final else None,
        notes=notes,
        origin=origin,
    )


def _names(nodes: Iterable[NodeState]) -> str:
    return ", ".join(n.name for n in nodes)


def _stale_reads(history: Sequence[Op]) -> Iterator[Finding]:
    """A causal read must see its process's last write acknowledged before it began."""
    last_ok: dict[str, Op] = {}
    stale: list[Op] = []
    # Walk reads in invocation order; a write counts once it completed before the read began.
    by_completion = sorted(history, key=lambda o: (o.completed, o.id))
    writes = [o for o in by_completion if o.kind is Kind.WRITE and o.status is Status.OK]
    reads = [o for o in history if o.kind is Kind.CAUSAL_READ and o.status is Status.OK]
    i = 0
    involved: list[Op] = []
    for r in sorted(reads, key=lambda o: (o.invoked, o.id)):
        while i < len(writes) and writes[i].completed <= r.invoked:
            w = writes[i]
            prev = last_ok.get(w.process)
            if prev is None or (w.value or 0) > (prev.value or 0):
                last_ok[w.process] = w
            i += 1
        need = last_ok.get(r.process)
        if need is not None and (r.observed is None or r.observed < (need.value or 0)):
            stale.append(r)
            involved.extend((need, r))
    if stale:
        yield Finding(
            Anomaly.STALE_READ,
            f"{len(stale)} causal reads did not see their session's own acknowledged write "
            "(each shown after that write)",
            tuple(involved),
        )


def _non_monotonic(history: Sequence[Op]) -> Iterator[Finding]:
    requests: dict[int, list[Op]] = {}
    for o in history:
        if o.kind is Kind.REQUEST_READ and o.status is Status.OK and o.request is not None:
            requests.setdefault(o.request, []).append(o)
    involved: list[Op] = []
    count = 0
    for reads in requests.values():
        reads.sort(key=lambda o: (o.invoked, o.id))
        best: Op | None = None
        for r in reads:
            seen = r.observed if r.observed is not None else -1
            if best is not None and seen < (best.observed if best.observed is not None else -1):
                count += 1
                involved.extend((best, r))
            elif best is None or seen > (best.observed if best.observed is not None else -1):
                best = r
    if count:
        yield Finding(
            Anomaly.NON_MONOTONIC,
            f"{count} reads inside a request saw less than an earlier read of the same "
            "request (each shown after that earlier read)",
            tuple(involved),
        )


def _non_primary(nodes: Sequence[NodeState], by_value: dict[int, Op]) -> Iterator[Finding]:
    for n in nodes:
        gained = n.own_after - n.own_before
        if n.was_primary or gained <= 0:
            continue
        ran_here = tuple(
            by_value[v]
            for v, sid in sorted(n.origin.items())
            if n.server_id is not None and sid == n.server_id and v in by_value
        )
        yield Finding(
            Anomaly.NON_PRIMARY,
            f"{n.name} was never the primary, yet its binlog gained {gained} transactions of "
            "its own origin",
            ran_here,
            n.name,
        )


def _diverged(
    nodes: Sequence[NodeState], final: NodeState, by_value: dict[int, Op]
) -> Iterator[Finding]:
    primary = Counter(final.values)
    for n in nodes:
        if n is final or not n.follows_final_primary:
            continue
        mine = Counter(n.values)
        extra = sorted((mine - primary).keys())
        missing = sorted((primary - mine).keys())
        if extra or missing:
            yield Finding(
                Anomaly.DIVERGED,
                f"{n.name} follows {final.name} and caught up, yet holds {len(extra)} values "
                f"the primary lacks and lacks {len(missing)} it holds",
                tuple(by_value[v] for v in extra + missing if v in by_value),
                n.name,
            )


def _old_primaries(
    nodes: Sequence[NodeState], final: NodeState, by_value: dict[int, Op]
) -> Iterator[str]:
    """A replaced primary left out of replication may hold writes the new one lacks: fine
    when each was reported outcome-unknown (lost acknowledged ones and lies are findings)."""
    present = set(final.values)
    for n in nodes:
        if n is final or n.follows_final_primary:
            continue
        only = sorted(set(n.values) - present)
        if not only:
            continue
        told = Counter(by_value[v].status.value if v in by_value else "?" for v in only)
        yield (
            f"{n.name} (not following {final.name}) holds {len(only)} values the final primary "
            f"lacks; their clients were told: {dict(told)}; own transactions "
            f"{n.own_after - n.own_before:+d} during the run"
        )
