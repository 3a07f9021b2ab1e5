"""A fault-injection harness (a *nemesis*) for real sandbox clusters, judged by a history.

While client threads run through an auto-failover :class:`~rwsplit.Cluster`, every operation
is recorded in a :class:`~tests.history.History` (tests/history.py): writers insert unique
values; "readers" write, then read their own writes back in a new session carrying the causal
token; "requesters" read the table's highest value several times inside one request. A second
rwsplit process (``python -m tests.nemesis CONFIG``, also ``auto_failover``) writes values of
its own and hands its operations back. A fault is injected (see :data:`FAULTS`), then
:meth:`Nemesis.check` reads the final state of every node and runs the history checker: lost
acknowledged writes, "not committed" writes that committed, duplicates, stale causal reads,
non-monotonic reads in a request, writes on a node that was never the primary (its own binlog
GTIDs), diverged replicas — each with the operations involved.

Server family: the replication state is read only in :func:`replication_state` and
:func:`wait_applied` (MariaDB GTIDs or MySQL GTIDs), everything else goes through the sandbox.

Every loop is bounded in count and in time; traffic goes only to the sandbox's ports. Used by
tests/integration/test_nemesis*.py (short forms, CI) and benchmarks/bench_nemesis.py (long).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from rwsplit import (
    Cluster,
    FailoverOptions,
    RetryableWriteError,
    RoutingError,
    RwSplitError,
    TransactionOutcomeUnknownError,
)
from rwsplit.sandbox import DATABASE, REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode
from tests.history import Anomaly, History, Kind, NodeState, Op, Result, Status, check, outage

log = logging.getLogger("tests.nemesis")

TABLE = "nemesis_history"
ROOT = Path(__file__).resolve().parent.parent
PEER_VALUES = 1_000_000_000
"""The second process's values start here (the main process counts from 1)."""


def now() -> float:
    """Operation times are wall-clock seconds (both processes, and the servers' and rwsplit's
    log lines, can then be lined up); durations this short do not suffer from clock slew."""
    return time.time()


def _sql(node: SandboxNode, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
    with contextlib.closing(node.connect(DATABASE, read_timeout=10)) as c, c.cursor() as cur:
        cur.execute(statement, args)
        return list(cur.fetchall())


# ---------------------------------------------------------------------- replication state
# The only place that reads replication state; one branch per server family.


@dataclass(frozen=True)
class ReplicationState:
    family: str
    """``mariadb`` or ``mysql``."""
    own: int
    """Grows with every transaction of this node's own origin in its binary log: MariaDB, the
    last sequence number of its server id in ``@@gtid_binlog_state``; MySQL, the number of
    its ``server_uuid``'s transactions in ``@@gtid_executed``."""
    position: str
    """What a follower must have applied to have everything this node logged."""
    source: str | None
    """``host:port`` it replicates from (None: not a replica)."""
    sql_running: bool
    read_only: bool


def replication_state(node: SandboxNode) -> ReplicationState:
    with contextlib.closing(node.connect(read_timeout=10)) as c, c.cursor() as cur:
        cur.execute("SELECT @@version, @@server_id, @@read_only")
        version, server_id, read_only = cur.fetchone()  # type: ignore[misc]
        family = "mariadb" if "mariadb" in str(version).lower() else "mysql"
        if family == "mariadb":
            cur.execute("SELECT @@gtid_binlog_state, @@gtid_binlog_pos")
            state, position = cur.fetchone()  # type: ignore[misc]
            own = 0
            for gtid in filter(None, str(state or "").split(",")):
                _domain, server, seq = gtid.strip().split("-")
                if int(server) == int(server_id):
                    own = max(own, int(seq))
        else:
            cur.execute("SELECT @@server_uuid, @@gtid_executed")
            uuid, position = cur.fetchone()  # type: ignore[misc]
            own = _mysql_count(str(position or ""), str(uuid))
        cur.execute("SHOW SLAVE STATUS" if family == "mariadb" else "SHOW REPLICA STATUS")
        cols = [d[0] for d in cur.description or ()]
        row = cur.fetchone()
    source, sql = None, False
    if row:
        status = dict(zip(cols, row, strict=False))
        host = status.get("Master_Host") or status.get("Source_Host")
        port = status.get("Master_Port") or status.get("Source_Port")
        source = f"{host}:{port}"
        sql = (status.get("Slave_SQL_Running") or status.get("Replica_SQL_Running")) == "Yes"
    return ReplicationState(family, own, str(position or ""), source, sql, bool(int(read_only)))


def _mysql_count(gtid_set: str, uuid: str) -> int:
    total = 0
    for part in gtid_set.replace("\n", "").split(","):
        head, _, ranges = part.strip().partition(":")
        if head.lower() != uuid.lower():
            continue
        for r in ranges.split(":"):
            lo, _, hi = r.partition("-")
            total += int(hi or lo) - int(lo) + 1
    return total


def wait_applied(node: SandboxNode, family: str, position: str, timeout: float) -> bool:
    """True once *node* has applied *position* (a primary's GTID position), within *timeout*."""
    if not position:
        return True
    fn = "MASTER_GTID_WAIT" if family == "mariadb" else "WAIT_FOR_EXECUTED_GTID_SET"
    with contextlib.closing(node.connect(read_timeout=int(timeout) + 10)) as c, c.cursor() as cur:
        cur.execute(f"SELECT {fn}(%s, %s)", (position, timeout))
        row = cur.fetchone()
    return bool(row) and row[0] == 0  # type: ignore[index]


# ---------------------------------------------------------------------- the workload


def _status(exc: BaseException) -> Status:
    """What the client was told: outcome unknown, nothing committed, or just failed."""
    if isinstance(exc, TransactionOutcomeUnknownError):
        return Status.UNKNOWN
    if isinstance(exc, (RetryableWriteError, RoutingError)):
        # Routing errors (no primary, fenced node, split brain) are raised before anything
        # is sent: "nothing committed" is what they promise.
        return Status.NOT_COMMITTED
    return Status.FAILED


def _node_of(session: Any) -> str | None:
    """The node the session's write transaction runs on (the engine it began there)."""
    engine = getattr(session, "_rw_txn_engine", None)
    if engine is None:
        return None
    return f"{engine.url.host}:{engine.url.port}"


def _told(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _untyped(exc: BaseException) -> bool:
    """Not an rwsplit error (a raw driver error): an anomaly of its own (``untyped-error``)."""
    return not isinstance(exc, RwSplitError)


def cluster_options(**overrides: object) -> dict[str, object]:
    options: dict[str, object] = {
        "monitor_interval": 0.25,
        "monitor_timeout": 0.5,
        "auto_failover": True,
        "failover_options": FailoverOptions(REPL_USER, REPL_PASSWORD),
        "down_retry_interval": 1.0,
        "primary_read_timeout": 5.0,
    }
    options.update(overrides)
    return options


class Workload:
    """Client threads recording every operation in *history* (one rwsplit Cluster)."""

    def __init__(
        self,
        cluster: Cluster,
        history: History,
        *,
        prefix: str = "",
        writers: int = 3,
        readers: int = 2,
        requesters: int = 1,
        first_value: int = 0,
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.prefix = prefix
        self.writers, self.readers, self.requesters = writers, readers, requesters
        self.first_value = first_value
        self.balanced_reads = False
        """Requests read without a read-only transaction (see :meth:`request`)."""
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tokens: dict[str, Any] = {}
        """Each process's causal token from its last acknowledged write."""

    def _value(self) -> int:
        return self.first_value + self.history.value()

    def write(self, process: str) -> Op:
        value = self._value()
        node: str | None = None
        t0 = now()
        try:
            with self.cluster.session() as s:
                s.execute(
                    text(f"INSERT INTO {TABLE} (v, p, s) VALUES (:v, :p, @@server_id)"),
                    {"v": value, "p": process},
                )
                node = _node_of(s)
                s.commit()
                token = s.causal_token
        except Exception as exc:  # every failure is recorded with what the client was told
            return self.history.add(
                process=process,
                kind=Kind.WRITE,
                invoked=t0,
                completed=now(),
                status=_status(exc),
                value=value,
                error=_told(exc),
                untyped=_untyped(exc),
                node=node,
            )
        op = self.history.add(
            process=process,
            kind=Kind.WRITE,
            invoked=t0,
            completed=now(),
            status=Status.OK,
            value=value,
            node=node,
        )
        self._tokens[process] = token
        return op

    def causal_read(self, process: str) -> Op:
        t0 = now()
        try:
            with self.cluster.session(causal_token=self._tokens.get(process)) as s:
                seen = s.execute(
                    text(f"SELECT MAX(v) FROM {TABLE} WHERE p = :p"), {"p": process}
                ).scalar()
        except Exception as exc:
            return self.history.add(
                process=process,
                kind=Kind.CAUSAL_READ,
                invoked=t0,
                completed=now(),
                status=Status.FAILED,
                error=_told(exc),
                untyped=_untyped(exc),
            )
        return self.history.add(
            process=process,
            kind=Kind.CAUSAL_READ,
            invoked=t0,
            completed=now(),
            status=Status.OK,
            observed=None if seen is None else int(seen),
        )

    def request(self, process: str, reads: int = 3) -> bool:
        """One request: *reads* reads of the highest value in one session.

        By default inside ``START TRANSACTION READ ONLY`` ... ``COMMIT``, rwsplit's documented
        way to keep several reads on one replica (one snapshot): they must never go back,
        whatever the fault. With ``balanced_reads`` they are plain reads, each balanced anew
        over the replicas — across replicas at different positions that is not monotonic,
        and rwsplit does not promise it (measured by ``bench_nemesis.py --balanced-reads``).
        """
        rid = self.history.request()
        with self.cluster.session() as s:
            try:
                if not self.balanced_reads:
                    s.execute(text("START TRANSACTION READ ONLY"))
            except Exception:
                return False
            for _ in range(reads):
                t0 = now()
                try:
                    seen = s.execute(text(f"SELECT MAX(v) FROM {TABLE}")).scalar()
                except Exception as exc:
                    self.history.add(
                        process=process,
                        kind=Kind.REQUEST_READ,
                        invoked=t0,
                        completed=now(),
                        status=Status.FAILED,
                        request=rid,
                        error=_told(exc),
                        untyped=_untyped(exc),
                    )
                    return False
                self.history.add(
                    process=process,
                    kind=Kind.REQUEST_READ,
                    invoked=t0,
                    completed=now(),
                    status=Status.OK,
                    request=rid,
                    observed=None if seen is None else int(seen),
                )
            try:
                if self.balanced_reads:
                    s.commit()
                else:
                    s.execute(text("COMMIT"))
            except Exception:  # a read-only transaction: nothing to record
                return False
        return True

    def _loop(self, body: Callable[[], bool], deadline: float, limit: int) -> None:
        for _ in range(limit):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            if not body():
                self.stop.wait(0.05)  # back off while the cluster heals

    def start(self, seconds: float, limit: int = 100_000) -> None:
        self._tokens = {}
        deadline = time.monotonic() + seconds
        self.stop.clear()
        bodies: list[Callable[[], bool]] = []
        for i in range(self.writers):
            p = f"{self.prefix}w{i + 1}"
            bodies.append(lambda p=p: self.write(p).status is Status.OK)  # type: ignore[misc]
        for i in range(self.readers):
            p = f"{self.prefix}r{i + 1}"
            bodies.append(
                lambda p=p: (  # type: ignore[misc]
                    self.write(p).status is Status.OK and self.causal_read(p).status is Status.OK
                )
            )
        for i in range(self.requesters):
            p = f"{self.prefix}q{i + 1}"
            bodies.append(lambda p=p: self.request(p))  # type: ignore[misc]
        for body in bodies:
            t = threading.Thread(target=self._loop, args=(body, deadline, limit), daemon=True)
            self._threads.append(t)
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()


# ---------------------------------------------------------------------- the second process


class Peer:
    """A second rwsplit process with ``auto_failover``, writing values of its own."""

    def __init__(self, sandbox: Sandbox, options: dict[str, object]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nemesis-peer-"))
        config = {
            "primary": sandbox.primary_url,
            "replicas": sandbox.replica_urls,
            "options": {k: v for k, v in options.items() if k != "failover_options"},
            "out": str(self.dir / "ops.json"),
            "stop": str(self.dir / "stop"),
            "ready": str(self.dir / "ready"),
        }
        (self.dir / "config.json").write_text(json.dumps(config))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
        self.log = (self.dir / "peer.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.nemesis", str(self.dir / "config.json")],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.primaries: set[str] = set()
        self.failovers = 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once it has had a write acknowledged (a slow start must not miss the fault)."""
        deadline = time.monotonic() + timeout
        while not (self.dir / "ready").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "peer.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"the second rwsplit process is not writing:\n{tail}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60.0) -> list[Op]:
        """Stop it and return its operations (none if it died: see its log)."""
        (self.dir / "stop").touch()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        out = self.dir / "ops.json"
        if not out.exists():
            tail = (self.dir / "peer.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"the second rwsplit process left no history:\n{tail}")
        data = json.loads(out.read_text())
        if not os.environ.get("RWSPLIT_KEEP_SANDBOXES"):  # its log, kept only on request
            shutil.rmtree(self.dir, ignore_errors=True)
        self.primaries = set(data["primaries"])
        self.failovers = int(data["failovers"])
        return [
            Op(
                id=PEER_VALUES + i,
                process=o["process"],
                kind=Kind(o["kind"]),
                invoked=o["invoked"],
                completed=o["completed"],
                status=Status(o["status"]),
                node=o.get("node"),
                value=o.get("value"),
                observed=o.get("observed"),
                request=o.get("request"),
                error=o.get("error"),
                untyped=bool(o.get("untyped")),
            )
            for i, o in enumerate(data["ops"], 1)
        ]


def _peer_main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(created).3f %(name)s %(message)s"
    )
    options = cluster_options(**config["options"])
    cluster = Cluster(config["primary"], config["replicas"], **options)  # type: ignore[arg-type]
    history = History()
    primaries: set[str] = set()
    failovers = [0]

    def seen(_old: Any, new: Any) -> None:
        if new.primary is not None:
            primaries.add(new.primary.name)

    cluster.subscribe(seen)
    if cluster.monitor is not None:
        cluster.monitor.failover_listeners.append(
            lambda r: failovers.__setitem__(0, failovers[0] + (not r.nothing_to_do))
        )
    work = Workload(
        cluster,
        history,
        prefix="peer-",
        writers=1,
        readers=1,
        requesters=0,
        first_value=PEER_VALUES,
    )
    work.start(seconds=600)
    stop, ready = Path(config["stop"]), Path(config["ready"])
    deadline = time.monotonic() + 600
    while not stop.exists() and time.monotonic() < deadline:
        if not ready.exists() and any(o.status is Status.OK for o in history):
            ready.touch()  # it writes: the nemesis may inject its fault
        time.sleep(0.05)
    work.stop.set()
    work.join(30)
    ops = [
        {
            "process": o.process,
            "kind": o.kind.value,
            "invoked": o.invoked,
            "completed": o.completed,
            "status": o.status.value,
            "value": o.value,
            "observed": o.observed,
            "request": o.request,
            "error": o.error,
            "untyped": o.untyped,
            "node": o.node,
        }
        for o in history
    ]
    out = {"ops": ops, "primaries": sorted(primaries), "failovers": failovers[0]}
    Path(config["out"]).write_text(json.dumps(out))
    cluster.close()
    return 0


# ---------------------------------------------------------------------- the nemesis


@dataclass
class Report:
    """One run: the checker's result and what the run measured."""

    result: Result
    final_primary: str
    failovers: int
    """Primary changes this process saw (whichever process ran the failover)."""
    outage: float | None
    """Longest stretch without an acknowledged write from the fault on (None: never resumed)."""
    errors: dict[str, int] = field(default_factory=dict)
    timeline: dict[str, float] | None = None
    """This process's last automated failover, its steps in seconds from the first fault
    (None: this process ran none)."""

    changed_at: float = 0.0
    """When the primary first changed (0: it never did)."""
    attempts: int = 0
    """Automated failovers this process's monitor started (completed or not)."""
    changes: list[tuple[float, str]] = field(default_factory=list)
    """The primary this process knew, from when it knew it: ``(time, node)``, the first
    entry the primary at the start (empty: not recorded; :meth:`lost` then goes by
    ``changed_at`` alone)."""

    @property
    def ok(self) -> bool:
        return self.result.ok

    def lost(self) -> tuple[list[Op], list[Op]]:
        """Lost acknowledged writes: (acknowledged by the primary of the time, which a later
        failover replaced — asynchronous replication had not shipped them, which async
        allows; acknowledged by a node that was no longer the primary, which nothing
        allows).

        With several failovers (``changes``) each write is judged by the node that
        acknowledged it: excused only when that node was the primary then and a failover
        came after it. Otherwise (one change, or a write without its node) by time: excused
        when acknowledged before the first change.
        """
        ops = [o for f in self.result.of(Anomaly.LOST) for o in f.ops]
        if not self.changed_at:
            return ops, []
        early = [o for o in ops if self._excused(o)]
        return early, [o for o in ops if not self._excused(o)]

    def _excused(self, op: Op) -> bool:
        if not self.changes or op.node is None:
            return op.completed < self.changed_at
        i = bisect.bisect_right([t for t, _ in self.changes], op.completed) - 1
        if i < 0:
            return op.completed < self.changed_at
        return self.changes[i][1] == op.node and i + 1 < len(self.changes)

    def beyond_async(self) -> dict[Anomaly, int]:
        """Anomalies asynchronous replication does not excuse: every kind but the writes it
        lost in the failover (and causal reads that missed exactly those writes)."""
        early = {o.value for o in self.lost()[0]}
        out: dict[Anomaly, int] = {}
        for f in self.result.findings:
            if f.kind is Anomaly.LOST:
                n = sum(1 for o in f.ops if o.value not in early)
            elif f.kind is Anomaly.STALE_READ:
                # ops come in (write, read) pairs
                pairs = zip(f.ops[::2], f.ops[1::2], strict=False)
                n = 2 * sum(1 for w, _ in pairs if w.value not in early)
            else:
                n = max(1, len(f.ops))
            if n:
                out[f.kind] = out.get(f.kind, 0) + n
        return out

    def render(self) -> str:
        shown = f"{self.outage:.2f}s" if self.outage is not None else "never resumed"
        steps = f"\nfailover steps (s from the fault): {self.timeline}" if self.timeline else ""
        early, late = self.lost()
        why = (
            f"\nlost: {len(early)} acknowledged before the primary changed (not yet "
            f"replicated), {len(late)} acknowledged after it (by a replaced primary)"
            if early or late
            else ""
        )
        return (
            f"{self.result.render()}\nprimary changes {self.failovers} (failovers started here "
            f"{self.attempts}), write outage {shown}, "
            f"errors {self.errors}{why}{steps}"
        )


class _AttemptCounter(logging.Handler):
    """Counts the automated failovers this process's monitor *started* (a failover of a live
    primary is wrong even when it does not complete)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "confirmed dead" in str(record.msg):
            self.count += 1


class Nemesis:
    """Run the workload on *sandbox* (and a second process) and inject faults."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        writers: int = 3,
        readers: int = 2,
        requesters: int = 1,
        peer: bool = True,
        **overrides: object,
    ) -> None:
        self.sb = sandbox
        self.options = cluster_options(**overrides)
        self.cluster = Cluster(sandbox.primary_url, sandbox.replica_urls, **self.options)  # type: ignore[arg-type]
        self.history = History()
        self.work = Workload(
            self.cluster, self.history, writers=writers, readers=readers, requesters=requesters
        )
        self.with_peer = peer
        self.peer: Peer | None = None
        self.fault_at = 0.0
        self.healed_at = 0.0
        self.primaries: set[str] = {sandbox.primary.address}
        self.failovers = 0
        self.attempts = _AttemptCounter()
        logging.getLogger("rwsplit.monitor").addHandler(self.attempts)
        self._last_primary = sandbox.primary.address
        self.changed_at = 0.0
        """When this process first saw another node become the primary (0: never)."""
        self.changes: list[tuple[float, str]] = [(now(), sandbox.primary.address)]
        self.cluster.subscribe(self._seen)
        _sql(
            sandbox.primary,
            f"CREATE TABLE IF NOT EXISTS {TABLE} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "v BIGINT NOT NULL, p VARCHAR(32) NOT NULL, s INT NOT NULL, KEY (v), KEY (p, v))",
        )
        sandbox.wait_caught_up()
        self._own_before = {
            n.address: replication_state(n).own for n in sandbox.nodes if sandbox.is_running(n)
        }
        self.extra_ops: list[Op] = []

    def _seen(self, _old: Any, new: Any) -> None:
        if new.primary is not None:
            self.primaries.add(new.primary.name)
            if new.primary.name != self._last_primary:
                # A primary change this process saw (whichever process failed over).
                self.failovers += 1
                self._last_primary = new.primary.name
                self.changed_at = self.changed_at or now()
                self.changes.append((now(), new.primary.name))

    # ------------------------------------------------------------------ traffic

    @contextlib.contextmanager
    def traffic(self, seconds: float, limit: int = 100_000) -> Iterator[None]:
        """Run the workload (and the second process) for at most *seconds*."""
        if self.with_peer:
            self.peer = Peer(self.sb, self.options)
            self.peer.wait_ready()
        self.work.start(seconds, limit)
        try:
            yield
        finally:
            self.work.stop.set()
            self.work.join(seconds + 30)
            if self.peer is not None:
                self.extra_ops = self.peer.finish()
                self.primaries |= self.peer.primaries

    def acked(self) -> int:
        return sum(1 for o in self.history if o.kind is Kind.WRITE and o.status is Status.OK)

    def wait_for_acks(self, count: int, timeout: float) -> None:
        """Block until *count* more writes were acknowledged (bounded)."""
        start = self.acked()
        deadline = time.monotonic() + timeout
        while self.acked() < start + count:
            if time.monotonic() > deadline:
                raise AssertionError(f"writes did not resume within {timeout}s")
            time.sleep(0.02)

    def fault(self, action: Callable[[], None]) -> None:
        if not self.fault_at:
            self.fault_at = now()
            self.history.origin = self.fault_at
        action()

    def healed(self) -> None:
        self.healed_at = now()

    # ------------------------------------------------------------------ the final state

    def _running(self) -> list[SandboxNode]:
        return [n for n in self.sb.nodes if self.sb.is_running(n) and not self.sb.is_stopped(n)]

    def settle(self, timeout: float = 60.0) -> str:
        """Wait until the cluster knows one primary that answers; return its address."""
        deadline = time.monotonic() + timeout
        while True:
            topology = self.cluster.refresh()
            primary = topology.primary
            if primary is not None:
                with contextlib.suppress(Exception):
                    state = replication_state(self.sb.node(primary.name))
                    if state.source is None and not state.read_only:
                        return primary.name
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not settle within {timeout}s: {topology}")
            time.sleep(0.2)

    def final_state(self, primary: str) -> list[NodeState]:
        p_state = replication_state(self.sb.node(primary))
        nodes = []
        for n in self._running():
            state = p_state if n.address == primary else replication_state(n)
            follows = (
                n.address != primary
                and state.source == primary
                and state.sql_running
                and wait_applied(n, p_state.family, p_state.position, 15)
            )
            rows = _sql(n, f"SELECT v, s FROM {TABLE}")
            nodes.append(
                NodeState(
                    name=n.address,
                    values=[int(r[0]) for r in rows],
                    was_primary=n.address in self.primaries,
                    is_final_primary=n.address == primary,
                    follows_final_primary=follows,
                    own_before=self._own_before.get(n.address, 0),
                    own_after=state.own,
                    origin={int(r[0]): int(r[1]) for r in rows},
                    server_id=n.server_id,
                )
            )
        return nodes

    def check(self) -> Report:
        primary = self.settle()
        self.primaries.add(primary)
        ops = [*self.history.ops, *self.extra_ops]
        result = check(ops, self.final_state(primary), origin=self.fault_at)
        errors: dict[str, int] = {}
        for o in ops:
            if o.error:
                name = o.error.split(":", 1)[0]
                errors[name] = errors.get(name, 0) + 1
        timeline = None
        last = self.cluster.monitor.last_failover if self.cluster.monitor else None
        if last is not None and self.fault_at:
            # rwsplit's failover times are monotonic; operation times are wall-clock
            start = last.started_at + (time.time() - time.monotonic()) - self.fault_at
            timeline = {"started": round(start, 2)} | {
                k: round(start + v, 2) for k, v in last.timeline.items()
            }
        return Report(
            result,
            primary,
            self.failovers,
            outage(ops, self.fault_at) if self.fault_at else None,
            errors,
            timeline,
            self.changed_at,
            self.attempts.count,
            list(self.changes),
        )

    def close(self) -> None:
        logging.getLogger("rwsplit.monitor").removeHandler(self.attempts)
        self.work.stop.set()
        self.work.join(10)
        if self.peer is not None and self.peer.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.peer.finish(30)
        self.cluster.close()


# ---------------------------------------------------------------------- network faults
# On a tests.netns.NetnsSandbox: every server in its own namespace, the application (and the
# second process) at the bridge's address.


def _netns(sb: Sandbox) -> Any:
    from tests.netns import NetnsSandbox

    if not isinstance(sb, NetnsSandbox):
        raise TypeError("a network fault needs a tests.netns.NetnsSandbox")
    return sb


def _ip_in(sb: Sandbox, name: str, *args: str) -> None:
    from tests.netns import _ip

    _ip("-n", _netns(sb)._ns[name], *args)


def app_address() -> str:
    from tests.netns import SUBNET

    return f"{SUBNET}.1"


def cut(sb: Sandbox, name: str, peers: list[str]) -> None:
    """Node *name* stops answering *peers* (addresses): blackhole routes in its namespace.

    Packets still arrive, replies vanish: to those peers it looks partitioned, while every
    other address still reaches it.
    """
    for peer in peers:
        _ip_in(sb, name, "route", "add", "blackhole", f"{peer}/32")


def uncut(sb: Sandbox, name: str, peers: list[str]) -> None:
    from tests.netns import _ip

    for peer in peers:
        _ip("-n", _netns(sb)._ns[name], "route", "del", "blackhole", f"{peer}/32", check=False)


def netem_available() -> str | None:
    """None when ``tc ... netem`` works here (the kernel has sch_netem), else why not."""
    from tests.netns import _ip

    name = f"rwsnetem{os.getpid() % 10000}"
    if _ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p", check=False).returncode:
        return "cannot create a test link"
    try:
        probe = subprocess.run(
            ["tc", "qdisc", "add", "dev", name, "root", "netem", "delay", "1ms"],
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        _ip("link", "del", name, check=False)
    if probe.returncode != 0:
        return f"netem is not available here ({probe.stderr.strip()})"
    return None


def slow(sb: Sandbox, name: str, delay_ms: int) -> None:
    """Slow the link *to* node *name* (its bridge-side veth): a netem delay of *delay_ms*,
    or, where the kernel has no netem, a token-bucket rate limit that queues packets for up
    to 20 x *delay_ms* (the replication stream then lags behind)."""
    veth = _netns(sb)._veth[name]
    if netem_available() is None:
        qdisc = ["netem", "delay", f"{delay_ms}ms"]
    else:
        qdisc = ["tbf", "rate", "64kbit", "burst", "1600", "latency", f"{delay_ms * 20}ms"]
    subprocess.run(
        ["tc", "qdisc", "replace", "dev", veth, "root", *qdisc],
        check=True,
        capture_output=True,
        timeout=20,
    )


def unslow(sb: Sandbox, name: str) -> None:
    veth = _netns(sb)._veth[name]
    subprocess.run(
        ["tc", "qdisc", "del", "dev", veth, "root"], check=False, capture_output=True, timeout=20
    )


# ---------------------------------------------------------------------- the fault catalogue


def _current_primary(n: Nemesis) -> SandboxNode:
    p = n.cluster.topology.primary
    return n.sb.node(p.name) if p is not None else n.sb.primary


def _kill_9(n: Nemesis, seconds: float) -> None:
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: n.sb.kill("primary"))
    n.wait_for_acks(20, timeout=seconds + 30)
    n.healed()


def _hang_primary(n: Nemesis, seconds: float) -> None:
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: n.sb.hang("primary"))
    try:
        n.wait_for_acks(20, timeout=seconds + 30)  # failed over while it hangs
    finally:
        n.sb.resume("primary")  # it answers again: it must not take (or ack) writes
    n.healed()
    n.wait_for_acks(10, timeout=20)


def _quick_restart(n: Nemesis, seconds: float) -> None:
    n.wait_for_acks(20, timeout=15)

    def kill_and_restart() -> None:
        n.sb.kill("primary")
        n.sb.restart("primary")  # started again at once (it answers a few seconds later)

    n.fault(kill_and_restart)
    n.healed()
    n.wait_for_acks(20, timeout=seconds + 30)


def _partition_primary(n: Nemesis, seconds: float) -> None:
    sb = _netns(n.sb)
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: sb.partition("primary"))
    try:
        n.wait_for_acks(20, timeout=seconds + 30)  # failed over to a replica
    finally:
        sb.heal("primary")  # back on the network: it must not take writes
    n.healed()
    n.wait_for_acks(10, timeout=20)


def _hold(n: Nemesis, seconds: float) -> None:
    """Keep a fault in place for *seconds* (the fault's duration is the experiment)."""
    n.work.stop.wait(seconds)


def _app_partition(n: Nemesis, seconds: float) -> None:
    """The application loses the primary; its replicas still reach it: no failover is due."""
    app = [app_address()]
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: cut(n.sb, "primary", app))
    try:
        _hold(n, min(seconds, 8.0))
    finally:
        uncut(n.sb, "primary", app)
    n.healed()
    n.wait_for_acks(20, timeout=30)


def _app_partition_slow_link(n: Nemesis, seconds: float) -> None:
    """As :func:`_app_partition`, with the replicas reaching the primary over a 100 ms link."""
    for r in n.sb.replicas:
        slow(n.sb, r.name, 100)
    try:
        _app_partition(n, seconds)
    finally:
        for r in n.sb.replicas:
            unslow(n.sb, r.name)


def _replicas_lose_primary(n: Nemesis, seconds: float) -> None:
    """The reverse: the replicas lose the primary, the application still reaches it."""
    replicas = [r.host for r in n.sb.replicas]
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: cut(n.sb, "primary", replicas))
    try:
        _hold(n, min(seconds, 8.0))
    finally:
        uncut(n.sb, "primary", replicas)
    n.healed()
    n.wait_for_acks(20, timeout=30)


def _partition_replica(n: Nemesis, seconds: float) -> None:
    sb = _netns(n.sb)
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: sb.partition("replica1"))
    try:
        _hold(n, min(seconds, 8.0))
    finally:
        sb.heal("replica1")
    n.healed()
    n.wait_for_acks(20, timeout=30)


def _slow_replica(n: Nemesis, seconds: float) -> None:
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: slow(n.sb, "replica1", 100))
    try:
        _hold(n, min(seconds, 8.0))
    finally:
        unslow(n.sb, "replica1")
    n.healed()
    n.wait_for_acks(20, timeout=30)


def _hang_replica(n: Nemesis, seconds: float) -> None:
    n.wait_for_acks(20, timeout=15)
    n.fault(lambda: n.sb.hang("replica1"))
    try:
        n.wait_for_acks(30, timeout=20)
    finally:
        n.sb.resume("replica1")
    n.healed()


def _connection_storm(n: Nemesis, seconds: float) -> None:
    """The primary runs out of connections (``max_connections``) and every other connection
    to it is killed (as pt-kill or a blip would): the monitors and the replicas' IO threads
    reconnect into ``1040 Too many connections``. The primary is alive: no failover is due."""
    import pymysql

    n.wait_for_acks(20, timeout=15)
    p = n.sb.primary
    admin = p.connect(read_timeout=10)
    held: list[Any] = []

    def fill() -> None:
        for _ in range(200):  # the +1 slot of an account with SUPER included
            try:
                held.append(p.connect(read_timeout=10))
            except pymysql.err.OperationalError as exc:
                if exc.args[0] == 1040:
                    return
                raise

    def storm() -> None:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL max_connections = 40")
        for _ in range(3):  # killed connections free their slots: the storm takes them back
            fill()
            keep = {admin.thread_id(), *(c.thread_id() for c in held)}
            with admin.cursor() as cur:
                cur.execute("SELECT ID, USER FROM information_schema.PROCESSLIST")
                rows = cur.fetchall()
                for row in rows:
                    if int(row[0]) not in keep and row[1] != "system user":
                        with contextlib.suppress(Exception):
                            cur.execute(f"KILL CONNECTION {int(row[0])}")
            fill()

    try:
        n.fault(storm)
        _hold(n, min(seconds, 8.0))
    finally:
        for c in held:
            with contextlib.suppress(Exception):
                c.close()
        with contextlib.suppress(Exception), admin.cursor() as cur:
            cur.execute("SET GLOBAL max_connections = 300")
        admin.close()
    n.healed()
    n.wait_for_acks(20, timeout=30)


def _candidates(n: Nemesis, want: int, timeout: float) -> int:
    """Replicas that follow the current primary, connected and at most 1 s behind (nodes a
    failover can promote): as soon as there are *want*, else how many after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        count = len(n.cluster.topology.readable_replicas(max_lag=1.0))
        if count >= want or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def repeated_failovers(
    n: Nemesis, seconds: float, every: float = 5.0, enough: int | None = None
) -> None:
    """kill -9 of whichever node is the primary, about every *every* seconds for *seconds*
    (or until this process has seen *enough* primary changes: the short form stops at the
    five failovers it asserts); the killed node is started again once a new primary takes
    writes, and should rejoin as a replica.

    Each kill waits until a replica follows the primary and is caught up: a primary without
    a replica cannot be failed over, and with async replication it acknowledges what no
    other node holds. Under semi-sync it waits for two (up to ``3 * every`` seconds): a
    node promoted with no other replica runs without semi-sync (rwsplit logs it), and
    nothing turns semi-sync back on when a replica rejoins it. Under MariaDB semi-sync
    the killed node restarts with ``--init-rpl-role=SLAVE`` (the production recipe): crash
    recovery drops the transactions that waited for an ACK, so it holds none the new
    primary lacks and can rejoin. Without it (async, or a commit that did not wait) a
    killed node may keep errant transactions; rwsplit keeps it fenced for a rebuild, and the
    cluster may run out of candidates: the kills stop there and the run reports how many
    failovers it managed.
    """
    n.wait_for_acks(20, timeout=15)
    end = time.monotonic() + seconds
    family = replication_state(n.sb.primary).family
    for kill in range(1, int(seconds / every) + 2):
        if time.monotonic() > end:
            break
        if not _candidates(n, 2 if n.sb.semi_sync else 1, 3 * every):
            log.warning("kill %d: no replica to promote (fenced or rebuilding): stop", kill)
            break
        victim = _current_primary(n)
        started = time.monotonic()
        log.info("kill %d: the primary %s", kill, victim.address)
        n.fault(lambda v=victim: n.sb.kill(v.name))  # type: ignore[misc]
        try:
            n.wait_for_acks(10, timeout=45)  # a new primary takes writes
        finally:
            recover = n.sb.semi_sync and family == "mariadb"
            if recover and "--init-rpl-role=SLAVE" not in victim.extra_args:
                victim.extra_args.append("--init-rpl-role=SLAVE")
            n.sb.restart(victim.name)
        if enough is not None and n.failovers >= enough:
            break
        n.work.stop.wait(max(0.0, every - (time.monotonic() - started)))
    n.healed()
    n.wait_for_acks(10, timeout=30)


@dataclass(frozen=True)
class Fault:
    """One nemesis case: what it does and what it needs."""

    name: str
    run: Callable[[Nemesis, float], None]
    netns: bool = False
    failover: bool | None = True
    """A failover is due (True), must not happen (False), or may (None)."""
    replicas: int = 2
    xfail: dict[bool, str] = field(default_factory=dict)
    """semi_sync -> why this case fails today (an issue 17 defect still being fixed)."""
    netem: bool = False
    """It needs a real link delay (netem), not only a rate limit."""


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("kill-9", _kill_9),
        Fault("hang-primary", _hang_primary),
        Fault("quick-restart", _quick_restart, failover=None),
        Fault("partition-primary", _partition_primary, netns=True),
        Fault("app-partition", _app_partition, netns=True, failover=False),
        Fault(
            "app-partition-slow-link",
            _app_partition_slow_link,
            netns=True,
            failover=False,
            xfail={True: "issue 17 defect 2", False: "issue 17 defect 2"},
            netem=True,
        ),
        Fault("replicas-lose-primary", _replicas_lose_primary, netns=True, failover=False),
        Fault("partition-replica", _partition_replica, netns=True, failover=False),
        Fault("slow-replica", _slow_replica, netns=True, failover=False),
        Fault("hang-replica", _hang_replica, failover=False),
        Fault("connection-storm", _connection_storm, failover=False),
        Fault("repeated-failovers", repeated_failovers, replicas=3),
    )
}


def run_case(
    fault: Fault,
    *,
    semi_sync: bool,
    seconds: float,
    base_dir: str | os.PathLike[str],
    server_binary: str | None = None,
    peer: bool = True,
    prepare: Callable[[Sandbox], None] | None = None,
    balanced_reads: bool = False,
    after: float | None = None,
    **overrides: object,
) -> Report:
    """A fresh sandbox, the workload with a second process, *fault*, and the checker.

    :param server_binary: the server family / binary (the sandbox's ``server_binary``).
    :param prepare: called with the started sandbox before the workload starts.
    :param balanced_reads: requests read outside a read-only transaction (Workload.request).
    :param after: seconds the workload goes on after the fault is healed (default: half of
        *seconds*); every fault also waits for writes acknowledged after its heal.
    :param overrides: Cluster options replacing :func:`cluster_options`'s.
    """
    kind: type[Sandbox] = Sandbox
    if fault.netns:
        from tests.netns import NetnsSandbox

        kind = NetnsSandbox
    sb = kind(
        replicas=fault.replicas,
        semi_sync=semi_sync,
        log_slave_updates=True,
        base_dir=base_dir,
        server_binary=server_binary,
    )
    try:
        sb.start()
        if prepare is not None:
            prepare(sb)
        n = Nemesis(sb, peer=peer, **overrides)
        n.work.balanced_reads = balanced_reads
        try:
            with n.traffic(seconds=seconds + 120):
                fault.run(n, seconds)
                _hold(n, seconds / 2 if after is None else after)  # goes on after the heal
            return n.check()
        finally:
            n.close()
    finally:
        for node in sb.nodes:
            if sb.is_running(node) and sb.is_stopped(node):
                with contextlib.suppress(Exception):
                    sb.resume(node.name)
        sb.stop()


if __name__ == "__main__":
    raise SystemExit(_peer_main(sys.argv[1]))
