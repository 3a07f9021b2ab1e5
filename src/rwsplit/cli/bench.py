"""``rwsplit bench``: a load test of the cluster through rwsplit, against the alternatives.

Modelled on sysbench's OLTP workloads: every *unit* is one request of a web application, a new
session that runs a point select, a range select (100 rows), an update or an insert, or a
POST -> redirect -> GET pair (``ryw``) that writes, commits, and reads its write back in a *new*
session carrying the causal token; a value older than the one written is a **stale read**.
N concurrent clients (threads, or processes) run a weighted mix of units for a duration or a
count, and each run reports throughput (units per second), p50/p95/p99 latency, errors, stale
reads and each node's share of the ``SELECT`` statements (the servers' own ``Com_select``).

The same workload runs in the same process on several *setups*, so ratios are against baselines
measured in the same run:

* ``plain``: a plain SQLAlchemy ``Session`` with everything on the primary;
* ``rwsplit``: :meth:`rwsplit.Cluster.session`;
* ``advanced-alchemy``: advanced-alchemy's ``RoutingSyncSessionMaker`` (if installed);
* ``haproxy``: a real HAProxy balancing the replicas on a read port, writes straight to the
  primary, the application choosing the port per request (if ``haproxy`` is installed);
* ``sysbench``: ``sysbench oltp_read_only`` straight at the primary, the ceiling of what one
  server gives (throughput in *statements* per second; if ``sysbench`` is installed);
* ``pgpool`` (PostgreSQL only): a real pgpool-II (Debian's ``pgpool2``) in front of the
  primary and the standbys, balancing reads over the standbys statement by statement, every
  session of the application through it (if ``pgpool`` is installed).

``--server postgresql`` runs it on a PostgreSQL sandbox (a primary and hot standbys); a given
cluster of ``postgresql+psycopg://`` URLs is PostgreSQL too. There, each node's share of the
``SELECT`` statements is what the server itself counted in ``pg_stat_statements`` (the sandbox
loads it; a given cluster shows no shares without it).

By default it starts its own sandbox (one primary and as many replicas as the largest
``--replicas`` value) and can cap each server's CPU (``--cpu-cap``, cgroup v1 ``cpu``
controller) so that the servers, not this 2-core client, are the bottleneck. Against a given
cluster it touches only its own database, ``rwsplit_bench``, and asks before creating it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import logging
import math
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from sqlalchemy import (
    CHAR,
    BigInteger,
    Column,
    Integer,
    MetaData,
    Table,
    create_engine,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Executable

from ..errors import ConfigurationError, SandboxError
from ..servers import detect_family
from ..topology.model import node_name
from . import plural

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = [
    "BENCH_DATABASE",
    "MIXES",
    "SETUPS",
    "BenchOptions",
    "BenchReport",
    "CpuCaps",
    "HAProxy",
    "RunResult",
    "register",
    "run_bench",
]

log = logging.getLogger("rwsplit.bench")

BENCH_DATABASE = "rwsplit_bench"
"""The only database ``rwsplit bench`` touches on a given cluster."""

SETUPS = ("plain", "rwsplit", "advanced-alchemy", "haproxy", "sysbench", "pgpool")
SERVERS = ("mysql", "postgresql")
"""What ``--server`` takes for the sandbox: MariaDB/MySQL (``$RWSPLIT_SERVER_BIN``) or
PostgreSQL."""
_PG_ONLY = frozenset({"pgpool"})
_MYSQL_ONLY = frozenset({"sysbench"})
WORKERS = ("threads", "processes", "asyncio")
REPLICA_FREE = ("plain", "sysbench")
"""Setups that use the primary only: measured once per clients count, reported as 0 replicas."""

MIXES: dict[str, dict[str, int]] = {
    "read-only": {"point": 90, "range": 10},
    "read-heavy": {"point": 80, "range": 10, "update": 5, "insert": 5},
    "write-heavy": {"point": 40, "range": 10, "update": 25, "insert": 25},
    "ryw": {"ryw": 100},
}
"""Weights of the units in each mix (sysbench's OLTP statements, one request per unit)."""

RANGE_SIZE = 100  # sysbench's --range_size
COUNTED = ("reads", "writes", "causal_waits", "causal_wait_seconds", "causal_timeouts", "ejections")
"""The per-node counters of :meth:`rwsplit.Cluster.stats` a run keeps."""
_PAD = "x" * 60

metadata = MetaData()
items = Table(
    "bench_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("k", Integer, nullable=False, index=True),
    Column("c", CHAR(120), nullable=False),
    Column("pad", CHAR(60), nullable=False),
    mysql_engine="InnoDB",
)
ryw_rows = Table(
    "bench_ryw",
    metadata,
    Column("client", Integer, primary_key=True, autoincrement=False),
    Column("value", BigInteger, nullable=False),
    mysql_engine="InnoDB",
)
"""One row per client: only that client writes it, so a read-back must see its last value."""


# ---------------------------------------------------------------------------------- options


@dataclass
class BenchOptions:
    """What to measure. Lists are swept: every mix x replicas x clients x setup is one run."""

    setups: Sequence[str] = SETUPS
    mixes: Sequence[str] = ("read-heavy", "ryw")
    replicas: Sequence[int] = (1, 2, 3)
    clients: Sequence[int] = (1, 4, 16)
    duration: float = 5.0
    count: int | None = None
    workers: str = "threads"
    rows: int = 10_000
    cpu_cap: float | None = None
    seed: int = 1
    primary: URL | None = None
    """A given cluster (else a sandbox is started)."""
    replica_urls: Sequence[URL] = ()
    cluster_options: Mapping[str, Any] = field(default_factory=dict)
    yes: bool = False
    progress: bool = True
    server: str = "mysql"
    """The sandbox's servers (a given cluster's come from its URLs): ``mysql`` or
    ``postgresql``."""

    @property
    def postgresql(self) -> bool:
        """Whether the cluster under test is PostgreSQL."""
        if self.primary is not None:
            return self.primary.get_backend_name() == "postgresql"
        return self.server == "postgresql"


@dataclass
class RunResult:
    """One run: one setup, mix, replica count and number of clients."""

    setup: str
    mix: str
    replicas: int
    clients: int
    workers: str
    throughput: float
    """Units per second (sysbench: statements per second)."""
    units: int
    seconds: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    stale_reads: int
    errors: int
    error_samples: list[str] = field(default_factory=list)
    kinds: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per node: role, Com_select delta, its share, and (rwsplit) statements routed there."""
    causal: dict[str, float] | None = None
    """rwsplit only: read-your-writes waits on replicas (count, mean ms, timeouts)."""
    unit: str = "units/s"


@dataclass
class BenchReport:
    """Everything one ``rwsplit bench`` run measured."""

    results: list[RunResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Setup -> why it did not run (tool not installed ...)."""
    cpu_cap: float | None = None
    target: str = "sandbox"
    mixes: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: ``{"results": [{"setup": ..., "clients": ...}, ...]}``."""
        return {
            "target": self.target,
            "cpu_cap": self.cpu_cap,
            "mixes": self.mixes,
            "skipped": self.skipped,
            "results": [asdict(r) for r in self.results],
            "targets": targets(self),
        }


# ---------------------------------------------------------------------------------- setups


class Target(Protocol):
    """Sessions of one setup, the way an application of that setup gets them."""

    name: str

    def read(self) -> Session:
        """A session for a request that only reads."""

    def write(self) -> Session:
        """A session for a request that writes."""

    def follow(self, token: str | None) -> Session:
        """The session of the GET after a POST's redirect (*token*: the POST's causal token)."""

    def token(self, session: Session) -> str | None:
        """What the POST hands to the GET (rwsplit's causal token; nothing elsewhere)."""

    def routed(self) -> dict[str, dict[str, float]]:
        """The library's own counters per node (:data:`COUNTED`; empty if it keeps none)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class TargetSpec:
    """How to build a setup's :class:`Target` (picklable: processes build their own)."""

    setup: str
    primary: str
    replicas: tuple[str, ...]
    pool_size: int
    read_url: str | None = None
    """HAProxy's read port."""
    cluster_options: Mapping[str, Any] = field(default_factory=dict)


def _engine_options(spec: TargetSpec) -> dict[str, Any]:
    return {"pool_size": spec.pool_size, "max_overflow": spec.pool_size}


def _cluster_options(spec: TargetSpec) -> dict[str, Any]:
    """*spec*'s :class:`~rwsplit.Cluster` options, its engines pooled like the others'."""
    options = dict(spec.cluster_options)
    options["engine_options"] = {**options.get("engine_options", {}), **_engine_options(spec)}
    return options


def _routed(cluster: Cluster) -> dict[str, dict[str, float]]:
    """*cluster*'s own counters per node (:data:`COUNTED`)."""
    nodes = cluster.stats().to_dict()["nodes"]
    return {name: {k: float(n[k]) for k in COUNTED} for name, n in nodes.items()}


class _Plain:
    """Everything on one engine per role, as an application without a splitter does."""

    def __init__(self, name: str, write_url: str, read_url: str, spec: TargetSpec) -> None:
        self.name = name
        self._engines = [create_engine(write_url, **_engine_options(spec))]
        if read_url != write_url:
            self._engines.append(create_engine(read_url, **_engine_options(spec)))
        self._write = sessionmaker(bind=self._engines[0])
        self._read = sessionmaker(bind=self._engines[-1])

    def read(self) -> Session:
        return self._read()

    def write(self) -> Session:
        return self._write()

    def follow(self, token: str | None) -> Session:
        return self._read()

    def token(self, session: Session) -> str | None:
        return None

    def routed(self) -> dict[str, dict[str, float]]:
        return {}

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()


class _RwSplit:
    def __init__(self, spec: TargetSpec) -> None:
        from ..cluster import Cluster

        self.name = "rwsplit"
        self.cluster = Cluster(spec.primary, list(spec.replicas), **_cluster_options(spec))

    def read(self) -> Session:
        return self.cluster.session()

    def write(self) -> Session:
        return self.cluster.session()

    def follow(self, token: str | None) -> Session:
        return self.cluster.session(causal_token=token)

    def token(self, session: Session) -> str | None:
        return getattr(session, "causal_token", None)

    def routed(self) -> dict[str, dict[str, float]]:
        return _routed(self.cluster)

    def close(self) -> None:
        self.cluster.close()


class _AdvancedAlchemy:
    def __init__(self, spec: TargetSpec) -> None:
        from advanced_alchemy.config.routing import RoutingConfig
        from advanced_alchemy.routing import RoutingSyncSessionMaker

        self.name = "advanced-alchemy"
        self._maker = RoutingSyncSessionMaker(
            routing_config=RoutingConfig(
                primary_connection_string=spec.primary, read_replicas=list(spec.replicas)
            ),
            engine_config=_engine_options(spec),
        )

    def read(self) -> Session:
        session: Session = self._maker()
        return session

    write = read

    def follow(self, token: str | None) -> Session:
        return self.read()

    def token(self, session: Session) -> str | None:
        return None

    def routed(self) -> dict[str, dict[str, float]]:
        return {}

    def close(self) -> None:
        self._maker.close_all()


def build_target(spec: TargetSpec) -> Target:
    """The :class:`Target` for *spec*."""
    if spec.setup == "plain":
        return _Plain("plain", spec.primary, spec.primary, spec)
    if spec.setup == "haproxy":
        assert spec.read_url is not None
        return _Plain("haproxy", spec.primary, spec.read_url, spec)
    if spec.setup == "pgpool":
        assert spec.read_url is not None  # pgpool takes every statement and splits them
        return _Plain("pgpool", spec.read_url, spec.read_url, spec)
    if spec.setup == "rwsplit":
        return _RwSplit(spec)
    if spec.setup == "advanced-alchemy":
        return _AdvancedAlchemy(spec)
    raise ConfigurationError(f"unknown setup {spec.setup!r}; expected one of {', '.join(SETUPS)}")


def setup_available(setup: str, postgresql: bool = False) -> str | None:
    """Why *setup* cannot run here (``None``: it can)."""
    if setup in _PG_ONLY and not postgresql:
        return f"{setup} is for PostgreSQL clusters (--server postgresql)"
    if setup in _MYSQL_ONLY and postgresql:
        return f"{setup} runs here for MySQL/MariaDB clusters only"
    if setup == "pgpool" and _pgpool_binary() is None:
        return "pgpool-II is not installed (apt-get install pgpool2)"
    if setup == "advanced-alchemy":
        try:
            import advanced_alchemy.routing  # noqa: F401
        except ImportError:
            return "advanced-alchemy is not installed (pip install 'rwsplit[bench]')"
    if setup in ("haproxy", "sysbench") and shutil.which(setup) is None:
        if setup == "haproxy" and Path("/usr/sbin/haproxy").exists():
            return None
        return f"{setup} is not installed (apt-get install {setup})"
    return None


def _haproxy_binary() -> str:
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def _pgpool_binary() -> str | None:
    found = shutil.which("pgpool")
    if found:
        return found
    return "/usr/sbin/pgpool" if Path("/usr/sbin/pgpool").exists() else None


# ---------------------------------------------------------------------------------- units


@dataclass
class ClientResult:
    """What one client measured (picklable: processes send it back)."""

    started: float = 0.0
    ended: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    stale_reads: int = 0
    routed: dict[str, dict[str, float]] = field(default_factory=dict)


READ_UNITS = ("point", "range")
WRITE_UNITS = ("update", "insert")


def _statement(kind: str, rng: random.Random, rows: int) -> Executable:
    """The statement of a read or write unit (:data:`READ_UNITS`, :data:`WRITE_UNITS`); every
    kind of client draws its random values in this order."""
    if kind == "point":
        return select(items.c.c).where(items.c.id == rng.randint(1, rows))
    if kind == "range":
        start = rng.randint(1, max(1, rows - RANGE_SIZE))
        return select(items.c.c).where(items.c.id.between(start, start + RANGE_SIZE - 1))
    if kind == "update":
        return update(items).where(items.c.id == rng.randint(1, rows)).values(k=items.c.k + 1)
    if kind == "insert":
        return insert(items).values(k=rng.randint(1, rows), c=f"{rng.random():.17f}", pad=_PAD)
    raise ConfigurationError(f"unknown unit {kind!r}")  # pragma: no cover - mixes are validated


def _ryw_post(client: int, value: int) -> Executable:
    """The ``ryw`` unit's write: *client*'s own row gets *value*."""
    return update(ryw_rows).where(ryw_rows.c.client == client).values(value=value)


def _ryw_get(client: int) -> Executable:
    """The ``ryw`` unit's read-back of *client*'s row."""
    return select(ryw_rows.c.value).where(ryw_rows.c.client == client)


def _unit(target: Target, kind: str, client: int, rng: random.Random, rows: int) -> bool:
    """Run one unit; returns False on a stale read."""
    if kind in READ_UNITS:
        with target.read() as s:
            s.execute(_statement(kind, rng, rows)).all()
    elif kind in WRITE_UNITS:
        with target.write() as s:
            s.execute(_statement(kind, rng, rows))
            s.commit()
    elif kind == "ryw":
        value = rng.getrandbits(62)
        with target.write() as s:  # POST
            s.execute(_ryw_post(client, value))
            s.commit()
            token = target.token(s)
        with target.follow(token) as s:  # GET after the redirect
            seen = s.execute(_ryw_get(client)).scalar_one()
        return bool(seen == value)
    else:  # pragma: no cover - mixes are validated
        raise ConfigurationError(f"unknown unit {kind!r}")
    return True


class _ClientLoop:
    """One client's schedule and tally, the same for thread, process and asyncio clients: its
    random stream, the units it runs until the duration or the count is reached, and what
    each gave (latency, stale read, error)."""

    def __init__(
        self,
        mix: Mapping[str, int],
        client: int,
        *,
        seed: int,
        duration: float,
        count: int | None,
        done: Callable[[int], None],
    ) -> None:
        self.rng = random.Random(seed * 1_000_003 + client)
        self.kinds = list(mix)
        self._weights = [mix[k] for k in self.kinds]
        self.result = ClientResult(latencies={k: [] for k in self.kinds})
        self._duration = duration
        self._count = count
        self._done = done

    def units(self) -> Iterator[str]:
        """The measured part, one kind of unit a step: the clock starts at the first step; each
        finished step goes to *done*; the clock stops when the iteration ends."""
        self.result.started = now = time.monotonic()
        stop_at = now + self._duration
        count = self._count
        n = 0
        while (n < count) if count is not None else (now < stop_at):
            yield self.rng.choices(self.kinds, self._weights)[0]
            n += 1
            self._done(n)
            now = time.monotonic()
        self.result.ended = now

    def ran(self, kind: str, seconds: float, fresh: bool) -> None:
        """A unit that finished in *seconds* (not *fresh*: it read a stale value)."""
        self.result.latencies[kind].append(seconds)
        if not fresh:
            self.result.stale_reads += 1

    def failed(self, exc: Exception) -> None:
        """A unit that raised: a load test counts errors (and keeps 3) instead of stopping."""
        self.result.errors += 1
        if len(self.result.error_samples) < 3:
            self.result.error_samples.append(f"{type(exc).__name__}: {str(exc)[:200]}")


def run_client(
    target: Target,
    mix: Mapping[str, int],
    client: int,
    *,
    seed: int,
    rows: int,
    duration: float,
    count: int | None,
    barrier: Any,
    done: Callable[[int], None],
) -> ClientResult:
    """One client's loop: warm up, wait for the others, then run units until time or count."""
    loop = _ClientLoop(mix, client, seed=seed, duration=duration, count=count, done=done)
    for kind in loop.kinds:  # warm-up: connections open, statements compiled (not measured)
        with contextlib.suppress(Exception):
            _unit(target, kind, client, loop.rng, rows)
    barrier.wait()
    for kind in loop.units():
        t0 = time.perf_counter()
        try:
            fresh = _unit(target, kind, client, loop.rng, rows)
        except Exception as exc:  # a load test counts errors instead of stopping
            loop.failed(exc)
        else:
            loop.ran(kind, time.perf_counter() - t0, fresh)
    return loop.result


# Process workers: the shared progress counters and start barrier, inherited at spawn.
_shared: dict[str, Any] = {}


def _init_process(counts: Any, barrier: Any) -> None:
    _shared["counts"], _shared["barrier"] = counts, barrier


def _process_client(
    spec: TargetSpec,
    mix: Mapping[str, int],
    client: int,
    seed: int,
    rows: int,
    duration: float,
    count: int | None,
) -> ClientResult:
    counts = _shared["counts"]

    def done(n: int) -> None:
        counts[client] = n

    try:
        target = build_target(spec)
    except BaseException:
        _shared["barrier"].abort()  # the others must not wait for this client
        raise
    try:
        result = run_client(
            target,
            mix,
            client,
            seed=seed,
            rows=rows,
            duration=duration,
            count=count,
            barrier=_shared["barrier"],
            done=done,
        )
        result.routed = target.routed()
        return result
    finally:
        target.close()


# ---------------------------------------------------------------------------------- progress


class _Progress:
    """A one-line progress bar on stderr (only on a terminal, else one line per run)."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()

    @contextlib.contextmanager
    def run(
        self, label: str, counts: Sequence[int], duration: float, count: int | None
    ) -> Iterator[Callable[[], None]]:
        """Draw the bar while the block runs; the block calls the yielded ``started()``."""
        stop = threading.Event()
        started: list[float] = []

        def draw() -> None:
            while not stop.wait(0.2):
                if not started:
                    continue
                done = sum(counts)
                elapsed = time.monotonic() - started[0]
                frac = min(1.0, done / count if count else elapsed / max(duration, 1e-9))
                bar = "#" * int(frac * 30)
                self.stream.write(f"\r  {label:<44} [{bar:<30}] {frac:4.0%} {done:>7} units")
                self.stream.flush()

        thread = threading.Thread(target=draw, daemon=True) if self.tty else None
        if thread is not None:
            thread.start()
        try:
            yield lambda: started.append(time.monotonic())
        finally:
            stop.set()
            if thread is not None:
                thread.join()
                self.stream.write("\r" + " " * 100 + "\r")
                self.stream.flush()

    def note(self, msg: str) -> None:
        if self.enabled:
            print(f"  .. {msg}", file=self.stream, flush=True)


# ---------------------------------------------------------------------------------- servers


def _is_pg(engine_or_url: Engine | URL) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else engine_or_url
    return url.get_backend_name() == "postgresql"


def _admin_engine(url: URL) -> Engine:
    if _is_pg(url):  # the maintenance database; CREATE DATABASE runs outside transactions
        return create_engine(
            url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
    return create_engine(url.set(database=None), poolclass=NullPool)


# SELECT statements the server ran in the bench's database, as pg_stat_statements counted
# them (per server: a standby counts its own; replay runs no statement).
_PG_SELECTS = text(
    "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
    "JOIN pg_database d ON d.oid = s.dbid "
    "WHERE d.datname = :db AND s.query ~* '^[[:space:](]*select'"
)


def _pg_stat_statements(admin: Engine, *, create: bool) -> bool:
    """Whether ``pg_stat_statements`` counts, seen from the maintenance database; *create*
    (a sandbox's primary) creates the extension there when the server loads it. A given
    cluster is only asked: the bench touches nothing but its own database there."""
    with admin.connect() as conn:
        loaded = conn.execute(text("SELECT current_setting('shared_preload_libraries')")).scalar()
        if "pg_stat_statements" not in str(loaded or ""):
            return False
        if create:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            return True
        found = conn.execute(
            text("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
        ).first()
        return found is not None


def com_select(engines: Mapping[str, Engine]) -> dict[str, int]:
    """``Com_select`` of every node (statements each server itself counted); PostgreSQL:
    the ``SELECT`` calls ``pg_stat_statements`` counted in the bench's database (0 without
    it)."""
    out: dict[str, int] = {}
    for name, engine in engines.items():
        if _is_pg(engine):
            try:
                with engine.connect() as conn:
                    value = conn.execute(_PG_SELECTS, {"db": BENCH_DATABASE}).scalar()
            except Exception:  # no pg_stat_statements: no shares
                value = 0
            out[name] = int(value or 0)
            continue
        with engine.connect() as conn:
            row = conn.execute(text("SHOW GLOBAL STATUS LIKE 'Com_select'")).one()
            out[name] = int(row[1])
    return out


def wait_caught_up(primary: Engine, replicas: Sequence[Engine], timeout: float = 60.0) -> None:
    """Wait until every replica has applied what the primary has logged (asking the server's
    family, :mod:`rwsplit.servers`, how)."""
    if _is_pg(primary):
        _pg_wait_caught_up(primary, replicas, timeout)
        return
    raw = primary.raw_connection()
    try:
        cur = raw.cursor()
        family = detect_family(cur)
        pos = family.position(cur)
    finally:
        raw.close()
    if not pos:
        return
    for engine in replicas:
        raw = engine.raw_connection()
        try:
            reached = family.wait_position(raw.cursor(), pos, timeout)
        finally:
            raw.close()
        if not reached:
            raise SandboxError(
                f"replica {node_name(engine.url)} did not catch up with the primary in "
                f"{timeout:.0f}s; check its replication ('rwsplit topology')"
            )


def _pg_wait_caught_up(primary: Engine, replicas: Sequence[Engine], timeout: float) -> None:
    with primary.connect() as conn:
        lsn = conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
    deadline = time.monotonic() + timeout
    for engine in replicas:
        with engine.connect() as conn:
            delay = 0.005
            while not conn.execute(
                text("SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn), true)"),
                {"lsn": lsn},
            ).scalar():
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"standby {node_name(engine.url)} did not replay up to {lsn} in "
                        f"{timeout:.0f}s; check its replication ('rwsplit topology')"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.1)


def ensure_database(admin: Engine, *, ask: bool, yes: bool, where: str) -> None:
    """Create :data:`BENCH_DATABASE` on the primary, asking first when *ask*."""
    with admin.connect() as conn:
        if _is_pg(admin):
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": BENCH_DATABASE}
            ).first()
        else:
            exists = conn.execute(text(f"SHOW DATABASES LIKE '{BENCH_DATABASE}'")).first()
        if exists is not None:
            return
        if ask and not yes:
            question = f"create the database {BENCH_DATABASE} on {where} for the load test?"
            if not sys.stdin.isatty():
                raise ConfigurationError(
                    f"the database {BENCH_DATABASE} does not exist on {where}; rwsplit bench "
                    "creates it (and touches nothing else) only when asked: pass --yes"
                )
            answer = input(f"{question} [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                raise ConfigurationError(
                    f"not creating {BENCH_DATABASE}: nothing was run (pass --yes to skip asking)"
                )
        conn.execute(text(f"CREATE DATABASE {BENCH_DATABASE}"))
        if not _is_pg(admin):
            conn.commit()


def load_tables(engine: Engine, rows: int, clients: int) -> None:
    """(Re)create the bench tables in :data:`BENCH_DATABASE` and fill them."""
    metadata.drop_all(engine)
    metadata.create_all(engine)
    rng = random.Random(0)
    with engine.begin() as conn:
        batch = 1000
        for first in range(0, rows, batch):
            conn.execute(
                insert(items),
                [
                    {"k": rng.randint(1, rows), "c": f"{rng.random():.17f}", "pad": _PAD}
                    for _ in range(first, min(rows, first + batch))
                ],
            )
        conn.execute(insert(ryw_rows), [{"client": i, "value": 0} for i in range(clients)])


class CpuCaps:
    """Cap processes' CPU with the cgroup v1 ``cpu`` controller (one child cgroup each).

    ``cap`` is a fraction of one core (``0.2``: 2 ms of CPU per 10 ms period). The period is
    short on purpose: a server that used its quota sleeps until the period ends, and with the
    kernel's default 100 ms a capped replica would apply replication (and answer
    ``MASTER_GTID_WAIT``) up to 95 ms late. It is lengthened only where the quota would fall
    under the kernel's 1 ms minimum. On exit each process goes back to the cgroup it came from
    and the child cgroups are removed.

    A name may map to several pids (a PostgreSQL node: its postmaster and every process it
    has, :meth:`~rwsplit.sandbox.postgresql.PgSandbox.pids`): they share one cgroup, one
    cap, and the processes the postmaster forks later (new backends) are born in it.
    """

    root = Path("/sys/fs/cgroup/cpu")

    def __init__(self, cap: float, pids: Mapping[str, int | Sequence[int]]) -> None:
        if not 0 < cap <= 64:
            raise ConfigurationError(f"--cpu-cap: expected a fraction of a core > 0, got {cap}")
        self.cap = cap
        self.period_us = max(10_000, math.ceil(1000 / cap))
        self.quota_us = max(1000, int(cap * self.period_us))
        self.pids = {n: [p] if isinstance(p, int) else list(p) for n, p in pids.items()}
        self._made: list[tuple[Path, int, Path]] = []  # cgroup, pid, where it came from

    def _origin(self, pid: int) -> Path:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                return self.root / path.lstrip("/")
        return self.root

    def __enter__(self) -> CpuCaps:
        if not (self.root / "cgroup.procs").exists():
            raise SandboxError(
                f"--cpu-cap needs the cgroup v1 cpu controller at {self.root}, which this "
                "machine does not have; run without --cpu-cap"
            )
        try:
            for name, pids in self.pids.items():
                group = self.root / f"rwsplit-bench-{os.getpid()}-{name}"
                origin = self._origin(pids[0])
                group.mkdir(exist_ok=True)
                self._made.append((group, pids[0], origin))
                (group / "cpu.cfs_period_us").write_text(str(self.period_us))
                (group / "cpu.cfs_quota_us").write_text(str(self.quota_us))
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):  # a backend that ended
                        (group / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            self.__exit__(None, None, None)
            raise SandboxError(
                f"cannot cap the servers' CPU in {self.root} ({exc.strerror}); run as root, "
                "or without --cpu-cap"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        for group, pid, origin in reversed(self._made):
            members = {pid}
            with contextlib.suppress(OSError):  # and every process born in the group
                members.update(int(p) for p in (group / "cgroup.procs").read_text().split())
            for member in sorted(members):
                with contextlib.suppress(OSError):  # the process may have ended
                    (origin / "cgroup.procs").write_text(str(member))
            for _ in range(50):  # bounded: a cgroup empties as soon as its process moved
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                log.warning("could not remove the cgroup %s", group)
        self._made.clear()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _await_port(
    proc: subprocess.Popen[bytes],
    port: int,
    timeout: float,
    logfile: Path,
    tail: int,
    owner: contextlib.AbstractContextManager[Any],
) -> None:
    """Wait until the child *proc* (HAProxy, pgpool-II) listens on *port*; if it exits or
    *timeout* passes first, stop it through *owner* and raise with the end of its log."""
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            end = logfile.read_text(errors="replace")[-tail:]
            owner.__exit__(None, None, None)
            raise SandboxError(f"{logfile.stem} did not start: {end}")
        time.sleep(0.05)


class HAProxy:
    """A real HAProxy on loopback: a read port balancing *replicas* (round-robin per
    connection), run as a child process from a generated config and killed by its pid."""

    def __init__(self, replicas: Sequence[tuple[str, int]]) -> None:
        from ..sandbox import free_port

        self.replicas = list(replicas)
        self.read_port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="rwsplit-haproxy-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        servers = "\n".join(
            f"    server r{i} {host}:{port} check inter 2s"
            for i, (host, port) in enumerate(self.replicas, 1)
        )
        return (
            "global\n    maxconn 4096\n"
            "defaults\n    mode tcp\n    timeout connect 5s\n"
            "    timeout client 1h\n    timeout server 1h\n"
            f"frontend reads\n    bind 127.0.0.1:{self.read_port}\n    default_backend replicas\n"
            f"backend replicas\n    balance roundrobin\n{servers}\n"
        )

    def __enter__(self) -> HAProxy:
        cfg = self._dir / "haproxy.cfg"
        cfg.write_text(self.config())
        with open(self._dir / "haproxy.log", "wb") as logfile:
            self._proc = subprocess.Popen(
                [_haproxy_binary(), "-db", "-f", str(cfg)],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _await_port(self._proc, self.read_port, 10, self._dir / "haproxy.log", 500, self)
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self._dir, ignore_errors=True)


def _unprivileged_user() -> tuple[int, int] | None:
    """``(uid, gid)`` to run pgpool-II as when this process is root: the OS user the
    PostgreSQL sandbox runs its servers as (``$RWSPLIT_PG_USER``, default ``postgres``)."""
    import pwd

    if os.geteuid() != 0:
        return None
    name = os.environ.get("RWSPLIT_PG_USER", "postgres")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise SandboxError(
            f"pgpool-II is not run as root, and there is no OS user {name!r} to run it as; "
            "create one or set RWSPLIT_PG_USER to an unprivileged user"
        ) from None
    return pw.pw_uid, pw.pw_gid


class PgPool:
    """A real pgpool-II on loopback in front of a PostgreSQL primary and its standbys:
    streaming-replication mode, writes to the primary, reads balanced statement by statement
    over the standbys (the primary's weight is 0), no health checks nor failover of its own.
    Its own configuration and directory; run as the sandbox's unprivileged OS user when this
    process is root; stopped (fast shutdown, then its process group killed) on exit.

    pgpool-II knows nothing of causal reads: a read after a write in another session goes to
    a standby whatever it has replayed (the bench counts those stale reads).
    """

    def __init__(
        self, primary: tuple[str, int], standbys: Sequence[tuple[str, int]], children: int
    ) -> None:
        from ..sandbox import free_port

        self.primary = primary
        self.standbys = list(standbys)
        self.children = children
        self.port = free_port()
        self._pcp_port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="rwsplit-pgpool-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        d = self._dir
        lines = [
            "backend_clustering_mode = 'streaming_replication'",
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"socket_dir = '{d}'",
            "pcp_listen_addresses = ''",
            f"pcp_port = {self._pcp_port}",
            f"pcp_socket_dir = '{d}'",
            f"pid_file_name = '{d}/pgpool.pid'",
            f"logdir = '{d}'",
            "log_destination = 'stderr'",
            f"num_init_children = {self.children}",
            "max_pool = 1",
            "child_life_time = 0",
            "connection_cache = on",
            "load_balance_mode = on",
            "statement_level_load_balance = on",
            "disable_load_balance_on_write = 'transaction'",
            "sr_check_period = 0",
            "health_check_period = 0",
            "failover_on_backend_error = off",
            "use_watchdog = off",
            "memory_cache_enabled = off",
            "enable_pool_hba = off",
            # The client's password (scram on the servers) reaches pgpool in clear text over
            # loopback, and pgpool logs in to every backend with it: no pool_passwd file.
            "allow_clear_text_frontend_auth = on",
        ]
        nodes = [(self.primary, 0, "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER")]
        nodes += [(s, 1, "DISALLOW_TO_FAILOVER") for s in self.standbys]
        for i, ((host, port), weight, flag) in enumerate(nodes):
            lines += [
                f"backend_hostname{i} = '{host}'",
                f"backend_port{i} = {port}",
                f"backend_weight{i} = {weight}",
                f"backend_flag{i} = '{flag}'",
                f"backend_application_name{i} = 'node{i}'",
            ]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> PgPool:
        binary = _pgpool_binary()
        if binary is None:
            raise SandboxError("pgpool-II is not installed (apt-get install pgpool2)")
        cfg, pcp = self._dir / "pgpool.conf", self._dir / "pcp.conf"
        cfg.write_text(self.config())
        pcp.write_text("")
        cmd = [binary, "-n", "-f", str(cfg), "-F", str(pcp)]
        user = _unprivileged_user()
        if user is not None:  # root: as the servers' unprivileged user
            uid, gid = user
            for path in (self._dir, cfg, pcp):
                os.chown(path, uid, gid)
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--", *cmd]
        with open(self._dir / "pgpool.log", "wb") as logfile:
            self._proc = subprocess.Popen(
                cmd,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self._dir,
                start_new_session=True,
            )
        _await_port(self._proc, self.port, 30, self._dir / "pgpool.log", 800, self)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: its children end their sessions
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the group this class created
                proc.wait(5)
        if proc is not None:  # children that outlived their parent, in its process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------------------------- sysbench


def _sysbench_args(url: URL, rows: int) -> list[str]:
    args = [
        "sysbench",
        "oltp_read_only",
        "--db-driver=mysql",
        f"--mysql-host={url.host or '127.0.0.1'}",
        f"--mysql-port={url.port or 3306}",
        f"--mysql-user={url.username or 'root'}",
        f"--mysql-db={BENCH_DATABASE}",
        "--tables=1",
        f"--table-size={rows}",
    ]
    if url.password:
        args.append(f"--mysql-password={url.password}")
    return args


def _sysbench(url: URL, rows: int, *extra: str) -> str:
    proc = subprocess.run(
        [*_sysbench_args(url, rows), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        # Its messages name host and port, never the password.
        raise SandboxError(f"sysbench {extra[-1]} failed: {(proc.stderr or proc.stdout)[-400:]}")
    return proc.stdout


def parse_sysbench(output: str) -> dict[str, float]:
    """Statements/s, transactions/s, errors and latency from ``sysbench ... run`` output.

    >>> parse_sysbench("queries: 100 (50.00 per sec.)\\ntransactions: 7 (3.50 per sec.)\\n"
    ...     "ignored errors: 0 (0.00 per sec.)\\n95th percentile: 12.30\\ntotal time: 2.0001s")
    {'queries': 100.0, 'qps': 50.0, 'tps': 3.5, 'errors': 0.0, 'p95_ms': 12.3, 'seconds': 2.0001}
    """
    patterns = {
        "queries": r"queries:\s+(\d+)",
        "qps": r"queries:\s+\d+\s+\(([\d.]+) per sec",
        "tps": r"transactions:\s+\d+\s+\(([\d.]+) per sec",
        "errors": r"ignored errors:\s+(\d+)",
        "p95_ms": r"95th percentile:\s+([\d.]+)",
        "seconds": r"total time:\s+([\d.]+)s",
    }
    out: dict[str, float] = {}
    for key, pattern in patterns.items():
        m = re.search(pattern, output)
        if m:
            out[key] = float(m.group(1))
    return out


# ---------------------------------------------------------------------------------- the run


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return round(sorted_values[index] * 1000, 3)


def _summarise(
    setup: str,
    mix: str,
    replicas: int,
    clients: int,
    workers: str,
    results: Sequence[ClientResult],
) -> RunResult:
    started = min(r.started for r in results)
    ended = max(r.ended for r in results)
    seconds = max(ended - started, 1e-9)
    every = sorted(x for r in results for lat in r.latencies.values() for x in lat)
    kinds: dict[str, dict[str, float | int | None]] = {}
    for kind in results[0].latencies:
        values = sorted(x for r in results for x in r.latencies.get(kind, []))
        kinds[kind] = {
            "count": len(values),
            "p50_ms": _percentile(values, 0.50),
            "p99_ms": _percentile(values, 0.99),
        }
    samples: list[str] = []
    for r in results:
        samples.extend(s for s in r.error_samples if s not in samples)
    return RunResult(
        setup=setup,
        mix=mix,
        replicas=replicas,
        clients=clients,
        workers=workers,
        throughput=round(len(every) / seconds, 1),
        units=len(every),
        seconds=round(seconds, 3),
        p50_ms=_percentile(every, 0.50),
        p95_ms=_percentile(every, 0.95),
        p99_ms=_percentile(every, 0.99),
        stale_reads=sum(r.stale_reads for r in results),
        errors=sum(r.errors for r in results),
        error_samples=samples[:3],
        kinds=kinds,
    )


@dataclass
class _Env:
    """The cluster under test: URLs into :data:`BENCH_DATABASE`, roles, admin engines."""

    primary: URL
    replicas: list[URL]
    admin: dict[str, Engine]
    roles: dict[str, str]


class _Bench:
    def __init__(self, options: BenchOptions, stream: IO[str]) -> None:
        self.o = options
        self.progress = _Progress(stream, options.progress)
        self.report = BenchReport(
            cpu_cap=options.cpu_cap,
            target="given cluster" if options.primary is not None else "sandbox",
            mixes={m: MIXES[m] for m in options.mixes},
        )

    # -- the environment

    @contextlib.contextmanager
    def environment(self) -> Iterator[_Env]:
        o = self.o
        if o.primary is not None:
            if o.cpu_cap:
                raise ConfigurationError(
                    "--cpu-cap caps servers the sandbox starts; it cannot cap a given cluster"
                )
            yield from self._env(o.primary, list(o.replica_urls), ask=True)
            return
        if o.postgresql:
            yield from self._pg_sandbox()
            return
        from ..sandbox import Sandbox

        with Sandbox(max(o.replicas), progress=self.progress.note) as sb:
            caps: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if o.cpu_cap:
                pids = {n.name: n.pid for n in sb.nodes if n.pid is not None}
                caps = CpuCaps(o.cpu_cap, pids)
                self.progress.note(f"capping each server at {o.cpu_cap:g} of a core (cgroup v1)")
            with caps:
                yield from self._env(
                    make_url(sb.primary_url), [make_url(u) for u in sb.replica_urls], ask=False
                )

    def _pg_sandbox(self) -> Iterator[_Env]:
        from ..sandbox.postgresql import PgSandbox

        o = self.o
        with PgSandbox(
            max(o.replicas),
            progress=self.progress.note,
            settings={"shared_preload_libraries": "pg_stat_statements"},
        ) as sb:
            caps: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if o.cpu_cap:
                # Each node's postmaster and every process it has share the node's cap; the
                # backends it forks later are born in the same cgroup.
                caps = CpuCaps(o.cpu_cap, {n.name: sb.pids(n.name) for n in sb.nodes})
                self.progress.note(
                    f"capping each server (all its processes) at {o.cpu_cap:g} of a core "
                    "(cgroup v1)"
                )
            with caps:
                yield from self._env(
                    make_url(sb.primary_url), [make_url(u) for u in sb.standby_urls], ask=False
                )

    def _env(self, primary: URL, replicas: list[URL], *, ask: bool) -> Iterator[_Env]:
        nodes = [primary, *replicas]
        admin = {node_name(u): _admin_engine(u) for u in nodes}
        try:
            name = node_name(primary)
            ensure_database(admin[name], ask=ask, yes=self.o.yes, where=name)
            if _is_pg(primary) and not _pg_stat_statements(admin[name], create=not ask):
                self.progress.note(
                    "pg_stat_statements is not available in the database 'postgres': no "
                    "per-node SELECT shares (shared_preload_libraries = 'pg_stat_statements' "
                    "and CREATE EXTENSION pg_stat_statements there show them)"
                )
            bench = [u.set(database=BENCH_DATABASE) for u in nodes]
            self.progress.note(f"loading {self.o.rows} rows into {BENCH_DATABASE}")
            engine = create_engine(bench[0], poolclass=NullPool)
            try:
                load_tables(engine, self.o.rows, max(self.o.clients))
            finally:
                engine.dispose()
            roles = {node_name(u): "replica" for u in replicas}
            roles[name] = "primary"
            yield _Env(bench[0], bench[1:], admin, roles)
        finally:
            for e in admin.values():
                e.dispose()

    # -- one run

    def _caught_up(self, env: _Env) -> None:
        names = [node_name(u) for u in env.replicas]
        wait_caught_up(env.admin[node_name(env.primary)], [env.admin[n] for n in names])

    def _run(self, env: _Env, spec: TargetSpec, mix: str, replicas: int, clients: int) -> RunResult:
        o = self.o
        self._caught_up(env)
        counts: Any
        count = None if o.count is None else max(1, math.ceil(o.count / clients))
        label = f"{spec.setup} {mix} replicas={replicas} clients={clients}"
        before = com_select(env.admin)
        routed: dict[str, dict[str, float]]
        results: Sequence[ClientResult]
        if o.workers == "asyncio":
            from ._bench_async import run_async_clients

            counts = [0] * clients
            with self.progress.run(label, counts, o.duration, o.count) as started:
                results, routed = run_async_clients(
                    spec,
                    MIXES[mix],
                    clients,
                    seed=o.seed,
                    rows=o.rows,
                    duration=o.duration,
                    count=count,
                    counts=counts,
                    started=started,
                )
        elif o.workers == "processes":
            ctx = multiprocessing.get_context("spawn")
            counts = ctx.Array("q", clients, lock=False)
            barrier: Any = ctx.Barrier(clients + 1, timeout=120)
            with (
                self.progress.run(label, counts, o.duration, o.count) as started,
                concurrent.futures.ProcessPoolExecutor(
                    clients, mp_context=ctx, initializer=_init_process, initargs=(counts, barrier)
                ) as pool,
            ):
                futures = [
                    pool.submit(
                        _process_client, spec, MIXES[mix], i, o.seed, o.rows, o.duration, count
                    )
                    for i in range(clients)
                ]
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()  # broken: a client failed first, its future raises
                started()
                results = [f.result() for f in futures]
            routed = {}
            for r in results:
                for node, counters in r.routed.items():
                    mine = routed.setdefault(node, dict.fromkeys(COUNTED, 0.0))
                    for k, v in counters.items():
                        mine[k] += v
        else:
            counts = [0] * clients
            barrier = threading.Barrier(clients + 1, timeout=120)
            target = build_target(spec)
            try:
                with (
                    self.progress.run(label, counts, o.duration, o.count) as started,
                    concurrent.futures.ThreadPoolExecutor(clients) as threads,
                ):

                    def client(i: int) -> ClientResult:
                        def done(n: int) -> None:
                            counts[i] = n

                        return run_client(
                            target,
                            MIXES[mix],
                            i,
                            seed=o.seed,
                            rows=o.rows,
                            duration=o.duration,
                            count=count,
                            barrier=barrier,
                            done=done,
                        )

                    futures = [threads.submit(client, i) for i in range(clients)]
                    with contextlib.suppress(threading.BrokenBarrierError):
                        barrier.wait()  # broken: a client failed first, its future raises
                    started()
                    results = [f.result() for f in futures]
                routed = target.routed()
            finally:
                target.close()
        after = com_select(env.admin)
        result = _summarise(spec.setup, mix, replicas, clients, o.workers, results)
        result.nodes = _node_shares(env.roles, before, after, routed)
        result.causal = _causal(routed)
        self.progress.note(
            f"{label}: {result.throughput:.0f} units/s, p50 {result.p50_ms} ms, "
            f"{result.stale_reads} stale, {result.errors} errors"
        )
        return result

    def _sysbench(self, env: _Env, clients: int) -> RunResult:
        o = self.o
        self._caught_up(env)
        before = com_select(env.admin)
        self.progress.note(f"sysbench oltp_read_only clients={clients} on the primary")
        out = _sysbench(
            env.primary,
            o.rows,
            f"--threads={clients}",
            f"--time={max(1, round(o.duration))}",
            "run",
        )
        after = com_select(env.admin)
        figures = parse_sysbench(out)
        result = RunResult(
            setup="sysbench",
            mix="oltp_read_only",
            replicas=0,
            clients=clients,
            workers="sysbench threads",
            throughput=figures.get("qps", 0.0),
            units=int(figures.get("queries", 0)),
            seconds=figures.get("seconds", 0.0),
            p50_ms=None,
            p95_ms=figures.get("p95_ms"),
            p99_ms=None,
            stale_reads=0,
            errors=int(figures.get("errors", 0)),
            unit="statements/s",
        )
        result.nodes = _node_shares(env.roles, before, after, {})
        return result

    # -- the sweep

    def run(self) -> BenchReport:
        o = self.o
        setups = []
        for setup in o.setups:
            why = None
            if o.workers == "asyncio" and o.postgresql:
                why = "the asyncio clients (aiomysql) are for MySQL/MariaDB only"
            elif o.workers == "asyncio" and setup != "sysbench":
                from ._bench_async import asyncio_unavailable

                why = asyncio_unavailable(setup)
            why = why or setup_available(setup, o.postgresql)
            if why is None:
                setups.append(setup)
            else:
                self.report.skipped[setup] = why
                self.progress.note(f"skipping {setup}: {why}")
        with self.environment() as env:
            if max(o.replicas) > len(env.replicas):
                raise ConfigurationError(
                    f"--replicas {max(o.replicas)}: the cluster has {len(env.replicas)}"
                )
            if "sysbench" in setups:
                _sysbench(env.primary, o.rows, "prepare")
            try:
                self._sweep(env, [s for s in setups if s != "sysbench"])
                if "sysbench" in setups:
                    for clients in o.clients:
                        self.report.results.append(self._sysbench(env, clients))
            finally:
                if "sysbench" in setups:
                    with contextlib.suppress(SandboxError):
                        _sysbench(env.primary, o.rows, "cleanup")
        return self.report

    def _sweep(self, env: _Env, setups: Sequence[str]) -> None:
        o = self.o
        primary = env.primary.render_as_string(hide_password=False)
        for mix in o.mixes:
            for replicas in o.replicas:
                urls = env.replicas[:replicas]
                haproxy: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
                default_port = 5432 if o.postgresql else 3306
                if "haproxy" in setups and urls:
                    haproxy = HAProxy(
                        [(u.host or "127.0.0.1", u.port or default_port) for u in urls]
                    )
                pgpool: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
                if "pgpool" in setups and urls:
                    pgpool = PgPool(
                        (env.primary.host or "127.0.0.1", env.primary.port or default_port),
                        [(u.host or "127.0.0.1", u.port or default_port) for u in urls],
                        # one pgpool child per client connection (a pool and its overflow)
                        children=2 * max(o.clients) + 4,
                    )
                with haproxy as proxy, pgpool as pool:
                    for clients in o.clients:
                        for setup in setups:
                            if setup in REPLICA_FREE and replicas != o.replicas[0]:
                                continue
                            if setup == "haproxy" and proxy is None:
                                continue  # no replica to balance
                            if setup == "pgpool" and pool is None:
                                continue
                            read_url = None
                            if setup == "pgpool":
                                read_url = primary_read_url(env.primary, pool.port)
                            elif proxy is not None:
                                read_url = primary_read_url(env.primary, proxy.read_port)
                            spec = TargetSpec(
                                setup=setup,
                                primary=primary,
                                replicas=tuple(
                                    u.render_as_string(hide_password=False) for u in urls
                                ),
                                pool_size=clients,
                                read_url=read_url,
                                cluster_options=o.cluster_options,
                            )
                            shown = 0 if setup in REPLICA_FREE else replicas
                            self.report.results.append(self._run(env, spec, mix, shown, clients))


def primary_read_url(primary: URL, port: int) -> str:
    """The primary's URL (same account and database) pointed at a loopback proxy port."""
    return primary.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def _node_shares(
    roles: Mapping[str, str],
    before: Mapping[str, int],
    after: Mapping[str, int],
    routed: Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, Any]]:
    deltas = {n: after[n] - before[n] for n in after}
    total = sum(deltas.values()) or 1
    return {
        n: {
            "role": roles.get(n, "?"),
            "com_select": d,
            "share": round(d / total, 3),
            "routed": int(routed[n]["reads"] + routed[n]["writes"]) if n in routed else None,
        }
        for n, d in deltas.items()
    }


def _causal(routed: Mapping[str, Mapping[str, float]]) -> dict[str, float] | None:
    """rwsplit's read-your-writes waits of a run: count, mean wait, timeouts."""
    if not routed:
        return None
    waits = sum(n["causal_waits"] for n in routed.values())
    seconds = sum(n["causal_wait_seconds"] for n in routed.values())
    return {
        "waits": int(waits),
        "mean_wait_ms": round(seconds / waits * 1000, 3) if waits else 0.0,
        "timeouts": int(sum(n["causal_timeouts"] for n in routed.values())),
        "ejections": int(sum(n.get("ejections", 0) for n in routed.values())),
    }


def run_bench(options: BenchOptions, stream: IO[str] | None = None) -> BenchReport:
    """Run the load test described by *options*; progress goes to *stream* (stderr)."""
    for mix in options.mixes:
        if mix not in MIXES:
            raise ConfigurationError(f"unknown mix {mix!r}; expected one of {', '.join(MIXES)}")
    for setup in options.setups:
        if setup not in SETUPS:
            raise ConfigurationError(
                f"unknown setup {setup!r}; expected one of {', '.join(SETUPS)}"
            )
    if not options.clients or min(options.clients) < 1:
        raise ConfigurationError("--clients: expected counts >= 1")
    if not options.replicas or min(options.replicas) < 0:
        raise ConfigurationError("--replicas: expected counts >= 0")
    if options.workers not in WORKERS:
        raise ConfigurationError(f"--workers: expected one of {', '.join(WORKERS)}")
    return _Bench(options, stream or sys.stderr).run()


# ---------------------------------------------------------------------------------- reporting


def _find(
    report: BenchReport, setup: str, mix: str, clients: int, replicas: int | None = None
) -> RunResult | None:
    for r in report.results:
        if (r.setup, r.mix, r.clients) == (setup, mix, clients) and (
            replicas is None or r.replicas == replicas
        ):
            return r
    return None


def targets(report: BenchReport) -> list[dict[str, Any]]:
    """The issue's targets, as measured (reported, never asserted): at the largest number of
    clients, ratios against the baselines of the same run."""
    out: list[dict[str, Any]] = []
    if not report.results:
        return out
    clients = max(r.clients for r in report.results)
    for mix in report.mixes:
        plain = _find(report, "plain", mix, clients)
        if mix != "ryw" and plain is not None and plain.throughput:
            for replicas, aim in ((1, None), (2, 1.8), (3, 2.6)):
                rw = _find(report, "rwsplit", mix, clients, replicas)
                if rw is not None:
                    out.append(
                        {
                            "what": f"{mix}: rwsplit, {plural(replicas, 'replica')} / plain",
                            "clients": clients,
                            "ratio": round(rw.throughput / plain.throughput, 2),
                            "aim": aim,
                        }
                    )
        replicas_max = max((r.replicas for r in report.results), default=0)
        rw = _find(report, "rwsplit", mix, clients, replicas_max)
        for other in ("advanced-alchemy", "haproxy", "pgpool"):
            base = _find(report, other, mix, clients, replicas_max)
            if rw is not None and base is not None and base.throughput:
                out.append(
                    {
                        "what": f"{mix}: rwsplit / {other}, {replicas_max} replicas",
                        "clients": clients,
                        "ratio": round(rw.throughput / base.throughput, 2),
                        "aim": 1.0,
                    }
                )
        if mix == "ryw" and rw is not None and plain is not None and plain.p50_ms and rw.p50_ms:
            out.append(
                {
                    "what": "ryw unit p50 latency: rwsplit / plain primary (lower is better)",
                    "clients": clients,
                    "ratio": round(rw.p50_ms / plain.p50_ms, 2),
                    "aim": 1.15,
                    "lower_is_better": True,
                    "stale_reads": rw.stale_reads,
                }
            )
    return out


def _share_text(nodes: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    replica = 0
    for n in nodes.values():
        if n["role"] == "primary":
            tag = "P"
        else:
            replica += 1
            tag = f"R{replica}"
        parts.append(f"{tag} {n['share'] * 100:.0f}%")
    return " ".join(parts)


def format_table(report: BenchReport) -> str:
    """The report as a text table (ratios against plain SQLAlchemy on the primary)."""
    lines = [
        f"{'mix':<14} {'setup':<17} {'repl':>4} {'clients':>7} {'per s':>9} {'vs plain':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'stale':>5} {'errors':>6}  Com_select share"
    ]
    for r in report.results:
        plain = _find(report, "plain", r.mix, r.clients)
        ratio = f"{r.throughput / plain.throughput:.2f}x" if plain and plain.throughput else "-"

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        lines.append(
            f"{r.mix:<14} {r.setup:<17} {r.replicas:>4} {r.clients:>7} {r.throughput:>9.0f} "
            f"{ratio:>8} {ms(r.p50_ms):>8} {ms(r.p95_ms):>8} {ms(r.p99_ms):>8} "
            f"{r.stale_reads:>5} {r.errors:>6}  {_share_text(r.nodes)}"
        )
        for sample in r.error_samples:
            lines.append(f"{'':<14} error: {sample}")
        if r.causal and r.causal.get("ejections"):
            lines.append(
                f"{'':<14} rwsplit took a node out of the rotation {r.causal['ejections']} "
                "times (it failed or timed out)"
            )
        if r.causal and r.causal["waits"]:
            lines.append(
                f"{'':<14} read-your-writes waits on replicas: {r.causal['waits']}, "
                f"mean {r.causal['mean_wait_ms']:.2f} ms, {r.causal['timeouts']} timed out"
            )
    if report.skipped:
        lines.append("")
        lines.extend(f"skipped {s}: {why}" for s, why in report.skipped.items())
    aims = targets(report)
    if aims:
        lines.append("")
        lines.append("targets (reported, not asserted):")
        for t in aims:
            aim = t["aim"]
            if aim is None:
                verdict = ""
            elif t.get("lower_is_better"):
                verdict = "met" if t["ratio"] <= aim else "missed"
            else:
                verdict = "met" if t["ratio"] >= aim else "missed"
            extra = f", {t['stale_reads']} stale reads" if "stale_reads" in t else ""
            aim_text = "" if aim is None else f" (aim {aim}x: {verdict})"
            lines.append(f"  {t['what']}: {t['ratio']:.2f}x{aim_text}{extra}")
    return "\n".join(lines)


def plot(report: BenchReport, path: str) -> None:
    """A PNG: throughput against clients, one line per setup (and replica count), per mix."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError("--plot needs matplotlib: pip install 'rwsplit[plot]'") from None
    mixes = list(dict.fromkeys(r.mix for r in report.results))
    fig, axes = plt.subplots(1, len(mixes), figsize=(6 * len(mixes), 4.5), squeeze=False)
    for ax, mix in zip(axes[0], mixes, strict=True):
        lines: dict[str, list[tuple[int, float]]] = {}
        for r in report.results:
            if r.mix != mix:
                continue
            label = r.setup if r.setup in REPLICA_FREE else f"{r.setup}, {r.replicas} replicas"
            lines.setdefault(label, []).append((r.clients, r.throughput))
        for label, points in lines.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        unit = "statements/s" if mix == "oltp_read_only" else "units/s"
        cap = f", servers capped at {report.cpu_cap:g} core" if report.cpu_cap else ""
        ax.set(title=f"{mix}{cap}", xlabel="clients", ylabel=unit)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------- command


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


def _setup_list(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in SETUPS:
            raise argparse.ArgumentTypeError(
                f"unknown setup {n!r}; choose from {', '.join(SETUPS)}"
            )
    return names


def register(sub: Any) -> None:
    """Add ``rwsplit bench`` to the ``rwsplit`` sub-parsers."""
    from . import add_cluster_arguments

    p = sub.add_parser(
        "bench",
        help="load test: throughput, latency and stale reads, against plain SQLAlchemy, "
        "advanced-alchemy, HAProxy and sysbench (pgpool-II on PostgreSQL)",
        description="A load test modelled on sysbench's OLTP workloads, run on several setups "
        "in the same run. Starts a sandbox by default (--server postgresql: a PostgreSQL "
        "primary and hot standbys, with the pgpool setup); with --primary/--replica or --config "
        f"it runs against that cluster and touches only the database {BENCH_DATABASE} "
        "(asking before it creates it; --yes skips the question).",
    )
    add_cluster_arguments(p)
    p.add_argument(
        "--setups",
        type=_setup_list,
        default=None,
        metavar="LIST",
        help=f"comma-separated setups to run (default all: {','.join(SETUPS)}); a setup whose "
        "tool is not installed is skipped with a message",
    )
    p.add_argument(
        "--mix",
        action="append",
        choices=list(MIXES),
        default=None,
        help="workload mix (repeatable; default read-heavy and ryw). "
        + "; ".join(
            f"{m}: " + ", ".join(f"{k} {w}%%" for k, w in ws.items()) for m, ws in MIXES.items()
        ),
    )
    p.add_argument(
        "--replicas",
        type=_int_list,
        default=None,
        metavar="LIST",
        help="replica counts to measure, e.g. 1,2,3 (default 1,2,3; --quick 2; a given "
        "cluster: all its replicas)",
    )
    p.add_argument(
        "--clients",
        type=_int_list,
        default=None,
        metavar="LIST",
        help="concurrent clients, a comma-separated list (default 1,4,16; --quick: 4)",
    )
    p.add_argument("--duration", type=float, default=None, help="seconds per run (default 5)")
    p.add_argument("--count", type=int, default=None, help="units per run instead of a duration")
    p.add_argument(
        "--workers",
        choices=list(WORKERS),
        default="threads",
        help="clients as threads of this process (default), as processes, or as asyncio "
        "tasks on one event loop (plain, rwsplit and haproxy, through aiomysql)",
    )
    p.add_argument(
        "--rows", type=int, default=None, help="rows in the table (default 10000; --quick 1000)"
    )
    p.add_argument(
        "--cpu-cap",
        type=float,
        default=None,
        metavar="CORES",
        help="sandbox only: cap each server at this fraction of a core (cgroup v1 cpu "
        "controller, needs root), so that the servers are the bottleneck",
    )
    p.add_argument(
        "--server",
        choices=SERVERS,
        default="mysql",
        help="sandbox only: MariaDB/MySQL servers (mysql, the default; $RWSPLIT_SERVER_BIN "
        "picks the binary) or a PostgreSQL primary and hot standbys (postgresql); a given "
        "cluster's family comes from its URLs",
    )
    p.add_argument(
        "--quick", action="store_true", help="a few seconds: 2 replicas, 4 clients, 1 s runs"
    )
    p.add_argument("--yes", action="store_true", help=f"create {BENCH_DATABASE} without asking")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG: throughput against clients")
    p.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    p.add_argument("--seed", type=int, default=1, help="random seed of the workload")
    p.set_defaults(func=_cmd_bench)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """:class:`BenchOptions` from the command line."""
    from . import settings_from_args

    given = bool(
        args.primary or args.replica or args.config or os.environ.get("RWSPLIT_PRIMARY_URL")
    )
    o = BenchOptions(
        setups=args.setups or SETUPS,
        mixes=args.mix or ("read-heavy", "ryw"),
        workers=args.workers,
        cpu_cap=args.cpu_cap,
        seed=args.seed,
        yes=args.yes,
        progress=not args.no_progress,
        server=args.server,
    )
    if args.quick:
        o.replicas, o.clients, o.duration, o.rows = (2,), (4,), 1.0, 1000
    if given:
        settings = settings_from_args(args)
        o.primary = settings.primary
        o.replica_urls = settings.replicas
        o.cluster_options = dict(settings.options)
        o.replicas = (len(settings.replicas),)
    if args.replicas:
        o.replicas = args.replicas
    if args.clients:
        o.clients = args.clients
    if args.duration is not None:
        o.duration = args.duration
    if args.rows is not None:
        o.rows = args.rows
    o.count = args.count
    return o


def _cmd_bench(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if args.plot:  # fail before the run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "--plot needs matplotlib: pip install 'rwsplit[plot]'"
            ) from None
    report = run_bench(options)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_table(report))
    if args.plot:
        plot(report, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
