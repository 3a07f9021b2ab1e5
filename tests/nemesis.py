"""A fault-injection harness (a *nemesis*) for real sandbox clusters.

While writer threads record every write the application was told is committed and reader
threads check read-your-writes across sessions, a fault is injected: ``kill -9`` of the
primary, a hang (``SIGSTOP`` ... ``SIGCONT``) of the primary or of a replica, a restart of the
old primary after the failover. The checker then asserts, on the servers themselves:

* every acknowledged write is on the final primary and on every replica that follows it;
* no write executed on a replica (its own binary log gained nothing under its server id),
  and the old primary holds no transaction the new primary lacks except ones whose outcome
  the application was told is unknown;
* zero stale causal reads (a session given the token of a write always sees it);
* writes resumed after the fault (the outage is measured, never asserted as a time).

Every loop is bounded in count and in time; traffic goes only to the sandbox's loopback ports.
Used by tests/integration/test_nemesis.py (short form, CI) and benchmarks/bench_nemesis.py
(long form, figures in benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import text

from rwsplit import (
    Cluster,
    FailoverOptions,
    RwSplitError,
    TransactionOutcomeUnknownError,
)
from rwsplit.sandbox import DATABASE, REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode
from rwsplit.servers import ServerFamily

T = TypeVar("T")

TABLE = "nemesis_writes"


@dataclass
class Outcome:
    """What the application saw during one run."""

    acked: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    """Row id -> the exception its write raised (other than outcome-unknown), for diagnosis."""
    stale_reads: int = 0
    causal_reads: int = 0
    ack_times: list[float] = field(default_factory=list)
    fault_at: float = 0.0
    healed_at: float = 0.0

    def outage(self) -> float | None:
        """The longest stretch without an acknowledged write, from the fault on (seconds).

        ``None`` when no write was acknowledged after the fault (writes never resumed).
        """
        after = sorted(t for t in self.ack_times if t > self.fault_at)
        if not after:
            return None
        points = [self.fault_at, *after]
        return max(b - a for a, b in itertools.pairwise(points))


@dataclass
class Verdict:
    """What the checker found on the servers."""

    final_primary: str
    lost: set[int]
    missing_on_replicas: dict[str, set[int]]
    replica_own_writes: dict[str, int]
    errant_on_old_primary: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _sql(node: SandboxNode, statement: str) -> list[tuple[object, ...]]:
    with contextlib.closing(node.connect(DATABASE, read_timeout=10)) as c, c.cursor() as cur:
        cur.execute(statement)
        return list(cur.fetchall())


def _own_seq(family: ServerFamily, node: SandboxNode, origin: str) -> int:
    """How far *node* holds the transactions that originated on *origin* (MariaDB: the last
    sequence number of that server id in its binlog state; MySQL: how many of that
    server_uuid's transactions are in its gtid_executed). Compared as differences."""
    with contextlib.closing(node.connect(DATABASE, read_timeout=10)) as c, c.cursor() as cur:
        return family.logged_from(cur, origin)


def _origin(family: ServerFamily, node: SandboxNode) -> str:
    with contextlib.closing(node.connect(DATABASE, read_timeout=10)) as c, c.cursor() as cur:
        return family.origin(cur)


class Nemesis:
    """Run a workload on *sandbox* through an auto-failover Cluster and inject one fault."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        writers: int = 3,
        readers: int = 2,
        **cluster_options: object,
    ) -> None:
        self.sb = sandbox
        self.writers = writers
        self.readers = readers
        options: dict[str, object] = {
            "monitor_interval": 0.25,
            "monitor_timeout": 0.5,
            "auto_failover": True,
            "failover_options": FailoverOptions(REPL_USER, REPL_PASSWORD),
            "down_retry_interval": 1.0,
            "primary_read_timeout": 5.0,
        }
        options.update(cluster_options)
        self.cluster = Cluster(sandbox.primary_url, sandbox.replica_urls, **options)  # type: ignore[arg-type]
        self.outcome = Outcome()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.original_primary = sandbox.primary
        self.server_ids = {n.address: n.server_id for n in sandbox.nodes}
        _sql(sandbox.primary, f"CREATE TABLE IF NOT EXISTS {TABLE} (id INT PRIMARY KEY, w INT)")
        sandbox.wait_caught_up()
        self.family = sandbox.family
        self.origins = {n.address: _origin(self.family, n) for n in sandbox.nodes}
        self._own_before = {
            n.address: _own_seq(self.family, n, self.origins[n.address]) for n in sandbox.replicas
        }

    # ------------------------------------------------------------------ workload

    def _error(self, exc: BaseException, row: int | None = None) -> None:
        with self._lock:
            name = type(exc).__name__
            self.outcome.errors[name] = self.outcome.errors.get(name, 0) + 1
            if row is not None:
                self.outcome.failed[row] = f"{name}: {str(exc)[:160]}"

    def _write(self, w: int) -> int | None:
        row = next(self._ids)
        try:
            with self.cluster.session() as s:
                s.execute(text(f"INSERT INTO {TABLE} (id, w) VALUES (:i, :w)"), {"i": row, "w": w})
                s.commit()
                token = s.causal_token
        except TransactionOutcomeUnknownError as exc:
            with self._lock:
                self.outcome.unknown.add(row)
            self._error(exc)
            return None
        except (RwSplitError, Exception) as exc:  # any failure is recorded
            self._error(exc, row)
            return None
        with self._lock:
            self.outcome.acked.add(row)
            self.outcome.ack_times.append(time.monotonic())
        return row if token else None

    def _writer(self, w: int, deadline: float, limit: int) -> None:
        for _ in range(limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            if self._write(w) is None:
                self._stop.wait(0.05)  # back off while the cluster heals

    def _reader(self, r: int, deadline: float, limit: int) -> None:
        """Write, then read it back in a NEW session carrying the token: never stale."""
        for _ in range(limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            row = next(self._ids)
            try:
                with self.cluster.session() as s:
                    s.execute(
                        text(f"INSERT INTO {TABLE} (id, w) VALUES (:i, :w)"), {"i": row, "w": -r}
                    )
                    s.commit()
                    token = s.causal_token
                with self._lock:
                    self.outcome.acked.add(row)
                    self.outcome.ack_times.append(time.monotonic())
                with self.cluster.session(causal_token=token) as s2:
                    seen = s2.execute(
                        text(f"SELECT COUNT(*) FROM {TABLE} WHERE id = :i"), {"i": row}
                    ).scalar()
                with self._lock:
                    self.outcome.causal_reads += 1
                    if seen != 1:
                        self.outcome.stale_reads += 1
            except TransactionOutcomeUnknownError as exc:
                with self._lock:
                    self.outcome.unknown.add(row)
                self._error(exc)
                self._stop.wait(0.05)
            except Exception as exc:
                self._error(exc, None if row in self.outcome.acked else row)
                self._stop.wait(0.05)

    @contextlib.contextmanager
    def traffic(self, seconds: float, limit: int = 100_000) -> Iterator[None]:
        """Run writers and readers for at most *seconds* (and *limit* units each)."""
        deadline = time.monotonic() + seconds
        self._stop.clear()
        for w in range(self.writers):
            self._threads.append(
                threading.Thread(target=self._writer, args=(w, deadline, limit), daemon=True)
            )
        for r in range(self.readers):
            self._threads.append(
                threading.Thread(target=self._reader, args=(r + 1, deadline, limit), daemon=True)
            )
        for t in self._threads:
            t.start()
        try:
            yield
        finally:
            for t in self._threads:
                t.join(seconds + 30)
            self._threads.clear()

    def wait_for_acks(self, count: int, timeout: float) -> None:
        """Block until *count* more writes were acknowledged (bounded)."""
        start = len(self.outcome.acked)
        deadline = time.monotonic() + timeout
        while len(self.outcome.acked) < start + count:
            if time.monotonic() > deadline:
                raise AssertionError(f"writes did not resume within {timeout}s")
            time.sleep(0.02)

    # ------------------------------------------------------------------ faults

    def fault(self, action: Callable[[], None]) -> None:
        self.outcome.fault_at = time.monotonic()
        action()

    def healed(self) -> None:
        self.outcome.healed_at = time.monotonic()

    # ------------------------------------------------------------------ the checker

    def settle(self, timeout: float = 60.0) -> str:
        """Wait until one primary is known and every running follower caught up with it."""
        deadline = time.monotonic() + timeout
        while True:
            topology = self.cluster.refresh()
            primary = topology.primary
            if primary is not None:
                node = self._node(primary.name)
                try:
                    pos = self._ask(node, self.family.position)
                    followers = self._followers(primary.name)
                    if all(
                        self._ask(f, lambda cur, pos=pos: self.family.wait_position(cur, pos, 5))
                        for f in followers
                    ):
                        return primary.name
                except Exception:  # still healing
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not settle within {timeout}s: {topology}")
            time.sleep(0.2)

    def _node(self, address: str) -> SandboxNode:
        return next(n for n in self.sb.nodes if n.address == address)

    def _followers(self, primary: str) -> list[SandboxNode]:
        """The replicas (never the old primary) that follow *primary* with SQL running.

        A returning old primary is judged by the errant-transaction rule in :meth:`check`:
        clients it still held when it stalled may keep it behind after a rejoin.
        """
        out = []
        old = self.original_primary.address
        for n in self.sb.nodes:
            if n.address in (primary, old) or not self.sb.is_running(n) or self.sb.is_stopped(n):
                continue
            status = self._ask(n, self.family.replica_status)
            if status is not None and status.source == primary and status.sql_running:
                out.append(n)
        return out

    @staticmethod
    def _ask(node: SandboxNode, question: Callable[[Any], T]) -> T:
        """Ask *question* (a family method taking a cursor) of *node*."""
        with contextlib.closing(node.connect(DATABASE, read_timeout=10)) as c, c.cursor() as cur:
            return question(cur)

    def check(self) -> Verdict:
        primary = self.settle()
        node = self._node(primary)
        rows = {int(r[0]) for r in _sql(node, f"SELECT id FROM {TABLE}")}
        problems: list[str] = []
        lost = self.outcome.acked - rows
        if lost:
            problems.append(f"{len(lost)} acknowledged writes are not on the primary {primary}")
        missing: dict[str, set[int]] = {}
        for f in self._followers(primary):
            have = {int(r[0]) for r in _sql(f, f"SELECT id FROM {TABLE}")}
            gone = self.outcome.acked - have
            if gone:
                missing[f.address] = gone
                problems.append(f"{len(gone)} acknowledged writes missing on {f.address}")
        own: dict[str, int] = {}
        for address, before in self._own_before.items():
            n = self._node(address)
            if address == primary or not self.sb.is_running(n) or self.sb.is_stopped(n):
                continue
            own[address] = _own_seq(self.family, n, self.origins[address]) - before
            if own[address] and address != primary:
                problems.append(f"{own[address]} writes executed on replica {address}")
        errant = 0
        old = self.original_primary
        if old.address != primary and self.sb.is_running(old) and not self.sb.is_stopped(old):
            origin = self.origins[old.address]
            errant = max(
                0, _own_seq(self.family, old, origin) - _own_seq(self.family, node, origin)
            )
            if errant > len(self.outcome.unknown):
                # Which rows, and what their writers were told (to explain a failure).
                only_old = {int(r[0]) for r in _sql(old, f"SELECT id FROM {TABLE}")} - rows
                told = {
                    i: "unknown" if i in self.outcome.unknown else self.outcome.failed.get(i, "?")
                    for i in sorted(only_old)
                }
                problems.append(
                    f"the old primary holds {errant} transactions the new one lacks, more than "
                    f"the {len(self.outcome.unknown)} the application was told are unknown; "
                    f"rows only there and what their writers were told: {told}; "
                    f"errors seen: {self.outcome.errors}"
                )
        if self.outcome.stale_reads:
            problems.append(f"{self.outcome.stale_reads} stale causal reads")
        return Verdict(primary, lost, missing, own, errant, problems)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.cluster.close()
