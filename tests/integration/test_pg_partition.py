"""PostgreSQL partitions under writes (issues 17 and 18), with loopback TCP forwarders that
can start swallowing everything (:class:`~tests.integration.test_hang.BlackholeProxy`; this
kernel has no ``netem``):

* **app-side**: only the application loses the primary, its standbys still stream from it
  directly. The primary is alive: no failover; writes fail with rwsplit's typed errors,
  reads stay on the standbys, writes resume on the same primary once the link heals;
* **full**: the application and the standbys lose the primary (synchronous standbys). It is
  failed over, writes go on on the promoted standby with nothing acknowledged lost, and the
  old primary, still writable when the partition heals, is fenced and takes no write again.

libpq has no read timeout: a statement in flight when the link starts swallowing waits until
the link heals (the forwarder then resets it, as TCP gives up after a long partition) or until
another node is published as the primary (the cluster cuts the connections still in use on
the old one). Each test records every write's outcome and checks the tables at the end.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql as pgsql
from sqlalchemy import text

from rwsplit import Cluster, Monitor, RwSplitError, TransactionOutcomeUnknownError
from rwsplit.sandbox.postgresql import PgNode, PgSandbox

from ..fix_pg import require_postgresql
from .test_hang import BlackholeProxy
from .test_pg_failover import _ids, _in_recovery, _read_only, _table, _until

pytestmark = [pytest.mark.integration, pytest.mark.failover]

INTERVAL, TIMEOUT = 0.2, 0.5


@dataclass
class Writer:
    """One application thread inserting ids 1, 2, ... through *cluster*, each outcome
    recorded: acknowledged, outcome unknown, refused with nothing committed (a typed
    rwsplit error), or anything else (a raw driver error: a defect)."""

    cluster: Cluster
    first: int = 1
    acked: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    raw: list[tuple[int, BaseException]] = field(default_factory=list)
    longest: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for i in range(self.first, self.first + 100_000):  # bounded; the test stops it long before
            if self.stop.is_set():
                return
            t0 = time.monotonic()
            try:
                with self.cluster.session() as s:
                    s.execute(text("INSERT INTO items VALUES (:i, 'w')"), {"i": i})
                    s.commit()
                self.acked.append(i)
            except TransactionOutcomeUnknownError:
                self.unknown.append(i)
            except RwSplitError as exc:
                self.refused.append((i, type(exc).__name__))
            except Exception as exc:  # the test asserts there is none
                self.raw.append((i, exc))
            finally:
                self.longest = max(self.longest, time.monotonic() - t0)
            if self.refused and self.refused[-1][0] == i:
                time.sleep(0.02)  # nothing committed: back off a little, then the next id

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_acked(self, more: int, timeout: float, what: str) -> None:
        count = len(self.acked)
        _until(lambda: len(self.acked) >= count + more, timeout, what)

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), "the writer is stuck in a write"

    def check(self, present: set[int]) -> None:
        """Nothing acknowledged missing, nothing refused present, nothing unreported."""
        assert self.raw == [], f"raw driver errors, not rwsplit's: {self.raw[:3]}"
        acked, unknown = set(self.acked), set(self.unknown)
        refused = {i for i, _ in self.refused}
        assert acked <= present, f"acknowledged but missing: {sorted(acked - present)}"
        assert not refused & present, f"reported not committed, yet present: {refused & present}"
        assert present <= acked | unknown, f"never reported: {sorted(present - acked - unknown)}"


def through(node: PgNode, proxy: BlackholeProxy) -> str:
    return node.url.replace(f":{node.port}/", f":{proxy.port}/")


def stream_through(sb: PgSandbox, proxy: BlackholeProxy) -> None:
    """Every standby streams from the primary through *proxy* (its ``primary_conninfo``'s
    port replaced; the same application_name: it stays synchronous)."""
    for standby in sb.standbys:
        with standby.connect(autocommit=True) as conn:
            row = conn.execute("SHOW primary_conninfo").fetchone()
            assert row is not None
            conninfo = re.sub(r"\bport=\S+", f"port={proxy.port}", row[0])
            conn.execute(
                pgsql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(pgsql.Literal(conninfo))
            )
            conn.execute("SELECT pg_reload_conf()")
            _until(
                lambda c=conn: (
                    c.execute(  # type: ignore[misc]
                        "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming' "
                        "AND sender_port = %s",
                        (proxy.port,),
                    ).fetchone()
                    is not None
                ),
                15,
                f"{standby.name} streaming through the forwarder",
            )


def streams_from_primary(standby: PgNode, port: int) -> bool:
    with standby.connect() as conn:
        row = conn.execute(
            "SELECT status, sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        ).fetchone()
    return row is not None and row[1] == port


def rows_and_lsn(node: PgNode) -> tuple[int, int]:
    with node.connect() as conn:
        row = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM items").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@contextlib.contextmanager
def writing_through(
    sb: PgSandbox, primary: PgNode, link: BlackholeProxy
) -> Iterator[tuple[Cluster, Monitor, str, Writer]]:
    """A cluster reaching *primary* through *link*, both standbys taking reads, and a
    :class:`Writer` with 20 writes acknowledged: ``(cluster, monitor, the primary's name as
    the cluster knows it, writer)``. The writer is stopped when the block ends."""
    writer: Writer | None = None
    try:
        with Cluster(
            through(primary, link),
            sb.standby_urls,
            monitor_interval=INTERVAL,
            monitor_timeout=TIMEOUT,
            auto_failover=True,
            connect_timeout=2,
        ) as cluster:
            monitor = cluster.monitor
            assert monitor is not None
            name = f"127.0.0.1:{link.port}"
            # The standbys name the primary by its own port, the application by the
            # forwarder's: still recognised as its standbys, they take reads.
            _until(lambda: len(cluster.topology.readable_replicas()) == 2, 10, "2 standbys")
            _until(lambda: name in monitor.source_aliases.values(), 5, "the alias learnt")  # type: ignore[attr-defined]
            writer = Writer(cluster)
            writer.wait_acked(20, 10, "writes before the cut")
            yield cluster, monitor, name, writer
    finally:
        if writer is not None:
            writer.stop.set()


@pytest.fixture
def sb() -> Iterator[PgSandbox]:
    require_postgresql()  # skipped locally, a failure on CI
    with PgSandbox(standbys=2) as sandbox:
        _table(sandbox)
        yield sandbox


@pytest.fixture
def sync_sb() -> Iterator[PgSandbox]:
    require_postgresql()
    with PgSandbox(standbys=2, synchronous=True) as sandbox:
        _table(sandbox)
        yield sandbox


def test_app_side_partition_is_no_failover_and_writes_resume_on_the_same_primary(
    sb: PgSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    primary = sb.primary
    link = BlackholeProxy(primary.port)
    caplog.set_level(logging.WARNING, logger="rwsplit.monitor")
    try:
        with writing_through(sb, primary, link) as (cluster, monitor, name, writer):
            t_cut = time.monotonic()
            link.cut.set()
            _until(lambda: not cluster.topology.node(name).healthy, 10, "the primary lost")
            _until(
                lambda: any("reconnected to it: alive" in r.message for r in caplog.records),
                15,
                "the standbys vouching for the primary",
            )
            reads = 0
            standbys = {n.address for n in sb.standbys}
            while time.monotonic() < t_cut + 8:  # observing an absence: bounded, polled
                assert monitor.last_failover is None, monitor.last_failover.describe()
                t0 = time.monotonic()
                route = cluster.read_route()
                assert route is not None and route[0].name in standbys
                with cluster.session() as s:  # the primary is unreachable: served by a standby
                    assert s.execute(text("SELECT count(*) FROM items")).scalar()
                assert time.monotonic() - t0 < 2.0, "a read on a standby took too long"
                reads += 1
                time.sleep(0.1)
            # The write in flight at the cut waits (libpq has no read timeout); one started
            # once the primary is known lost fails at once, with a typed error.
            assert writer.alive
            late = Writer(cluster, first=1_000_000)
            _until(lambda: len(late.refused) >= 5, 5, "writes refused during the cut")
            assert late.acked == [] and late.unknown == [] and late.raw == []
            late.finish()
            assert late.longest < 1.0, f"a refused write took {late.longest:.2f}s"
            assert all(_in_recovery(n) for n in sb.standbys)
            assert all(streams_from_primary(n, primary.port) for n in sb.standbys)
            t_heal = time.monotonic()
            link.heal()
            writer.wait_acked(20, 15, "writes after the heal")
            resumed = time.monotonic() - t_heal
            topology = cluster.topology
            assert topology.primary is not None and topology.primary.name == name
            assert monitor.last_failover is None
            writer.finish()
            assert writer.longest < (t_heal - t_cut) + 5.0
            writer.check(_ids(primary) - {i for i in _ids(primary) if i >= late.first})
            late.check({i for i in _ids(primary) if i >= late.first})
            print(
                f"app-side partition: no failover; {reads} reads on standbys during the cut; "
                f"{len(writer.acked)} acked, {len(writer.unknown)} unknown, "
                f"{len(writer.refused)} refused ({sorted({k for _, k in writer.refused})}); "
                f"a writer started during the cut: {len(late.refused)} refused "
                f"({sorted({k for _, k in late.refused})}), each within {late.longest:.3f}s; "
                f"writes resumed {resumed:.2f}s after the heal; longest write "
                f"{writer.longest:.2f}s (cut {t_heal - t_cut:.1f}s)"
            )
    finally:
        link.close()


def test_full_partition_of_the_primary_is_failed_over_and_the_old_one_fenced(
    sync_sb: PgSandbox,
) -> None:
    sb = sync_sb
    old = sb.primary
    app_link, repl_link = BlackholeProxy(old.port), BlackholeProxy(old.port)
    stream_through(sb, repl_link)
    try:
        with writing_through(sb, old, app_link) as (cluster, monitor, name, writer):
            t_cut = time.monotonic()
            app_link.cut.set()
            repl_link.cut.set()
            _until(lambda: monitor.last_failover is not None, 20, "the automated failover")
            result = monitor.last_failover
            assert result is not None and result.promoted
            decided = result.started_at - t_cut
            new = sb.node(str(result.new_primary))
            assert new in sb.standbys
            writer.wait_acked(10, 10, "writes on the new primary")
            assert writer.alive  # the write stuck on the old primary was cut, not waited out
            # Heal: the old primary, still writable and unaware, is fenced once it answers.
            app_link.heal()
            repl_link.heal()
            _until(lambda: name in monitor.needs_rebuild, 10, "the old primary reported")  # type: ignore[attr-defined]
            _until(lambda: _read_only(old), 10, "the old primary fenced")
            fenced_at = rows_and_lsn(old)
            writer.wait_acked(20, 10, "more writes after the fence")
            assert rows_and_lsn(old) == fenced_at, "the fenced old primary took a write"
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # noqa: SIM117
                with old.connect() as conn:
                    conn.execute("INSERT INTO items VALUES (0, 'stray')")
            topology = cluster.topology
            assert topology.primary is not None and topology.primary.name == new.address
            assert not topology.node(name).healthy
            writer.finish()
        present = _ids(new)
        writer.check(present)
        # What the old primary has that the new one lacks: only writes reported unknown.
        stray = _ids(old) - present
        assert stray <= set(writer.unknown), f"on the old primary only: {sorted(stray)}"
        other = next(n for n in sb.standbys if n is not new)
        assert result.repointed == [other.address]
        print(
            f"full partition: failover started {decided:.2f}s after the cut, {new.name} "
            f"promoted; {len(writer.acked)} acked, {len(writer.unknown)} unknown, "
            f"{len(writer.refused)} refused; {len(stray)} on the old primary only; longest "
            f"write {writer.longest:.2f}s"
        )
    finally:
        app_link.close()
        repl_link.close()
