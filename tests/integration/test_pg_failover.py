"""PostgreSQL: promotions made by rwsplit (auto_failover, failover(), switchover()) on real
servers: kill -9 under writes loses nothing acknowledged (synchronous standbys), a hung
primary is failed over and fenced when it resumes, a connection storm is no death, three
processes make one promotion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from rwsplit import Cluster, RwSplitError, TransactionOutcomeUnknownError
from rwsplit.sandbox.postgresql import PgSandbox
from rwsplit.topology import pg_failover
from rwsplit.topology.failover import FailoverOptions

from ..fix_pg import require_postgresql

pytestmark = [pytest.mark.integration, pytest.mark.postgresql, pytest.mark.failover]

INTERVAL = 0.2
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def _table(sb: PgSandbox) -> None:
    with sb.primary.connect() as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
    sb.wait_caught_up()


def _ids(url_node: object) -> set[int]:
    with url_node.connect() as conn:  # type: ignore[attr-defined]
        return {r[0] for r in conn.execute("SELECT id FROM items")}


def _in_recovery(node: object) -> bool:
    with node.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def _read_only(node: object) -> bool:
    """A new session on *node* is read-only by default (a session the fence ends: not yet)."""
    try:
        with node.connect() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SHOW default_transaction_read_only").fetchone()
            conn.execute("SELECT 1")  # still alive after the check: the fence is done
    except Exception:
        return False
    return row == ("on",)


@pytest.fixture
def sync_sb() -> Iterator[PgSandbox]:
    require_postgresql()  # skipped locally, a failure on CI
    with PgSandbox(standbys=2, synchronous=True) as sandbox:
        _table(sandbox)
        yield sandbox


@pytest.fixture
def sb() -> Iterator[PgSandbox]:
    require_postgresql()  # skipped locally, a failure on CI
    with PgSandbox(standbys=2) as sandbox:
        _table(sandbox)
        yield sandbox


def test_kill_9_under_writes_loses_nothing_acknowledged(sync_sb: PgSandbox) -> None:
    sb = sync_sb
    old = sb.primary
    acked: list[int] = []
    unknown: list[int] = []
    stop = threading.Event()
    with Cluster(
        old.url,
        sb.standby_urls,
        monitor_interval=INTERVAL,
        auto_failover=True,
        connect_timeout=2,
    ) as cluster:
        monitor = cluster.monitor
        assert monitor is not None

        def writer() -> None:
            for i in range(1, 100_000):
                if stop.is_set():
                    return
                try:
                    with cluster.session() as s:
                        s.execute(text("INSERT INTO items VALUES (:i, 'w')"), {"i": i})
                        s.commit()
                    acked.append(i)
                except TransactionOutcomeUnknownError:
                    unknown.append(i)
                except RwSplitError:
                    time.sleep(0.02)  # nothing committed: the next id

        t = threading.Thread(target=writer)
        t.start()
        try:
            _until(lambda: len(acked) > 20, 10, "writes before the kill")
            sb.kill(old.name)
            _until(lambda: monitor.last_failover is not None, 15, "the automated failover")
            result = monitor.last_failover
            assert result is not None and result.promoted
            count = len(acked)
            _until(lambda: len(acked) > count + 10, 10, "writes on the new primary")
        finally:
            stop.set()
            t.join(10)
        new = sb.node(str(result.new_primary))
        present = _ids(new)
        assert set(acked) <= present, f"acknowledged but lost: {sorted(set(acked) - present)}"
        assert present <= set(acked) | set(unknown), "a write present that was never reported"
        assert old.address in result.fenced
        assert [n for n, _ in result.needs_rebuild] == [old.address]  # type: ignore[attr-defined]
        other = next(n for n in sb.nodes if n.address not in (old.address, new.address))
        assert result.repointed == [other.address]
        _until(lambda: set(acked) <= _ids(other), 10, "the other standby to follow")
        with new.connect() as conn:
            names = conn.execute("SHOW synchronous_standby_names").fetchone()
        assert names is not None and other.name in names[0]


def test_a_hung_primary_is_failed_over_then_fenced_when_it_resumes(sb: PgSandbox) -> None:
    old = sb.primary
    with Cluster(
        old.url, sb.standby_urls, monitor_interval=INTERVAL, auto_failover=True
    ) as cluster:
        monitor = cluster.monitor
        assert monitor is not None
        _until(lambda: monitor.rounds > 1, 5, "the monitor")
        sb.hang(old.name)
        try:
            _until(lambda: monitor.last_failover is not None, 20, "the automated failover")
        finally:
            sb.resume(old.name)
        result = monitor.last_failover
        assert result is not None and result.promoted
        # Back and writable: the monitor fences it (read-only, sessions ended) and reports it.
        assert old.address in monitor.needs_rebuild  # type: ignore[attr-defined]
        _until(lambda: _read_only(old), 10, "the old primary fenced")
        topology = cluster.topology
        assert topology.primary is not None and topology.primary.name == result.new_primary
        assert not topology.node(old.address).healthy
        with cluster.session() as s:
            s.execute(text("INSERT INTO items VALUES (1, 'after')"))
            s.commit()


def test_a_connection_storm_on_the_primary_is_no_failover(sb: PgSandbox) -> None:
    old = sb.primary
    held = []
    with Cluster(
        old.url, sb.standby_urls, monitor_interval=INTERVAL, auto_failover=True
    ) as cluster:
        monitor = cluster.monitor
        assert monitor is not None
        _until(lambda: monitor.rounds > 1, 5, "the monitor")
        try:
            for _ in range(400):  # bounded: max_connections is 200
                try:
                    held.append(old.connect(connect_timeout=2))
                except Exception as exc:
                    assert "53300" in str(getattr(exc, "sqlstate", "")) or "too many" in str(exc)
                    break
            # The monitor's own connection must go too: end it, take its slot.
            held[0].execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'rwsplit-probe'"
            )
            for _ in range(10):
                try:
                    held.append(old.connect(connect_timeout=2))
                except Exception:
                    break
            start = monitor.rounds
            _until(lambda: monitor.rounds > start + 3 * monitor.failure_threshold, 15, "rounds")
            assert monitor.last_failover is None
            assert old.address in monitor._busy
        finally:
            for conn in held:
                conn.close()
        assert not _in_recovery(old)
        assert all(_in_recovery(n) for n in sb.standbys)


_WORKER = r"""
import json, sys, time
from rwsplit import Cluster
primary, standbys = sys.argv[1], sys.argv[2:]
cluster = Cluster(primary, standbys, monitor_interval=0.2, auto_failover=True)
old = cluster.topology.primary.name
print("ready", flush=True)


def moved():
    p = cluster.topology.primary
    return p is not None and p.name != old


deadline = time.monotonic() + 30
while not moved() and time.monotonic() < deadline:
    time.sleep(0.05)
# A failover publishes the new primary before it returns: one more round, and it has.
seen = cluster.monitor.rounds
while cluster.monitor.rounds <= seen and time.monotonic() < deadline:
    time.sleep(0.05)
r = cluster.monitor.last_failover
p = cluster.topology.primary
print(json.dumps({"promoted": bool(r and r.promoted), "followed": bool(r and r.followed),
                  "primary": None if p is None else p.name}), flush=True)
cluster.close()
"""


def test_three_processes_make_one_promotion(sb: PgSandbox) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, sb.primary_url, *sb.standby_urls],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        sb.kill(sb.primary.name)
        outcomes = []
        for p in procs:
            out, _ = p.communicate(timeout=40)
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    # One process promoted; the others followed it (through the lock, or their monitor saw
    # the new primary first): every process writes to the same node.
    assert sum(o["promoted"] for o in outcomes) == 1, outcomes
    promoted = [n for n in sb.standbys if not _in_recovery(n)]
    assert len(promoted) == 1
    assert {o["primary"] for o in outcomes} == {promoted[0].address}, outcomes


def test_failover_while_the_primary_lives_does_nothing(sb: PgSandbox) -> None:
    with Cluster(sb.primary_url, sb.standby_urls) as cluster:
        result = pg_failover.failover(cluster)
    assert result.nothing_to_do and not result.promoted
    assert result.new_primary == sb.primary.address
    assert all(_in_recovery(n) for n in sb.standbys)


def test_switchover_loses_nothing_and_fences_the_old_primary(sb: PgSandbox) -> None:
    old, target, other = sb.primary, sb.standbys[0], sb.standbys[1]
    with Cluster(old.url, [target.url, other.url]) as cluster:
        with cluster.session() as s:
            for i in range(50):
                s.execute(text("INSERT INTO items VALUES (:i, 'x')"), {"i": i})
            s.commit()
        result = pg_failover.switchover(cluster, target.address)
        assert result.new_primary == target.address and result.promoted
        assert result.repointed == [other.address]
        assert [n for n, _ in result.needs_rebuild] == [old.address]
        assert _ids(target) == set(range(50))
        with old.connect() as conn:
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert cluster.topology.primary is not None
        assert cluster.topology.primary.name == target.address
        with cluster.session() as s:
            s.execute(text("INSERT INTO items VALUES (100, 'after')"))
            s.commit()
        _until(lambda: 100 in _ids(other), 10, "the repointed standby to replay")


def test_the_promoted_standby_replays_all_it_received_first(sb: PgSandbox) -> None:
    old, paused = sb.primary, sb.standbys[0]
    sb.pause_replay(paused.name)
    with old.connect() as conn:
        conn.execute("INSERT INTO items SELECT g, 'x' FROM generate_series(1, 100) g")
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    # Both standbys received it; the paused one replayed none of it.
    for node in sb.standbys:
        with node.connect() as conn:
            _until(
                lambda c=conn: c.execute(  # type: ignore[misc]
                    "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (row[0],)
                ).fetchone()[0],
                10,
                f"{node.name} to receive the rows",
            )
    assert _ids(paused) == set()
    with Cluster(old.url, sb.standby_urls) as cluster:
        sb.kill(old.name)
        options = FailoverOptions("", "", preferred=(paused.address,), confirm_interval=0.1)
        result = pg_failover.failover(cluster, options)
        assert result.new_primary == paused.address  # as far as the other: preferred wins
        assert any("pg_wal_replay_resume" in s for _, s in result.statements)
        assert _ids(paused) == set(range(1, 101))
        assert not _in_recovery(paused)
