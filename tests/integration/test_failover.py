"""Failover and switchover on real servers, with real ``kill -9``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from rwsplit import (
    Cluster,
    FailoverOptions,
    FailoverResult,
    NoPrimaryError,
    RetryableWriteError,
    Role,
    RwSplitError,
    TransactionOutcomeUnknownError,
    failover,
)
from rwsplit.cli import main
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode

from ..fix_sandbox import running_sandbox
from .util import (
    ask,
    family,
    position,
    replica_status,
    replicating,
    run,
    sql,
    wait_position,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.failover]

OPTIONS = FailoverOptions(REPL_USER, REPL_PASSWORD)


def io_running(node: SandboxNode) -> bool:
    s = replica_status(node)
    return s is not None and s.io_connected


def sql_running(node: SandboxNode) -> bool:
    s = replica_status(node)
    return s is not None and s.sql_running


def source_port(node: SandboxNode) -> int | None:
    s = replica_status(node)
    return None if s is None else s.source_port


def own_gtid_seq(node: SandboxNode) -> int:
    """How far *node* got in transactions executed *on* it (its own GTIDs).

    With log-slave-updates a node's binlog also moves with what it replicates; its own
    server id's (MariaDB) or server_uuid's (MySQL) GTIDs move only with writes made on it.
    """
    return ask(node, lambda f, cur: f.logged_from(cur, f.origin(cur)))


def ids_on(node: SandboxNode) -> set[int]:
    return {int(str(r[0])) for r in sql(node, "SELECT id FROM rwsplit.w")}


class Writer:
    """Concurrent writers: each insert is its own transaction with a client-chosen id.

    ``acked`` holds the ids whose COMMIT returned; ``unknown`` those whose commit failed
    (outcome unknown); retryable failures are retried with the next id.
    """

    def __init__(self, cluster: Cluster, threads: int = 3, first_id: int = 1) -> None:
        self.cluster = cluster
        self.acked: list[tuple[int, float]] = []
        self.unknown: list[int] = []
        self.errors: list[tuple[str, float]] = []
        self.unexpected: list[BaseException] = []
        self._next = first_id - 1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Writer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _id(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def _run(self) -> None:
        while not self._stop.is_set():
            i = self._id()
            try:
                with self.cluster.session() as s:
                    s.execute(text("INSERT INTO w (id) VALUES (:i)"), {"i": i})
                    s.commit()
                self.acked.append((i, time.monotonic()))
            except TransactionOutcomeUnknownError:
                self.unknown.append(i)
            except (RetryableWriteError, NoPrimaryError, DBAPIError) as exc:
                self.errors.append((type(exc).__name__, time.monotonic()))
                self._stop.wait(0.005)  # back off a little before retrying
            except BaseException as exc:
                self.unexpected.append(exc)
                return

    def acked_since(self, t: float) -> int:
        return sum(1 for _, at in self.acked if at > t)


def make_table(cluster: Cluster, sb: Sandbox) -> None:
    with cluster.session() as s:
        s.execute(text("CREATE TABLE w (id INT PRIMARY KEY)"))
        s.commit()
    sb.wait_caught_up()


@pytest.fixture
def async_lsu_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from running_sandbox(tmp_path_factory.mktemp("async"), log_slave_updates=True)


def _kill_primary_under_load(sb: Sandbox) -> tuple[Cluster, Writer, SandboxNode, int]:
    """Run the scenario; return the cluster (caller closes it), the writer and the new primary."""
    cluster = Cluster(
        sb.primary_url,
        sb.replica_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
        failover_options=OPTIONS,
    )
    try:
        return _run_kill_scenario(sb, cluster)
    except BaseException:
        cluster.close()
        raise


def _run_kill_scenario(sb: Sandbox, cluster: Cluster) -> tuple[Cluster, Writer, SandboxNode, int]:
    make_table(cluster, sb)
    old = sb.primary
    with Writer(cluster) as writer:
        wait_until(lambda: len(writer.acked) > 200, what="writes before the kill")
        if sb.semi_sync:  # commits really wait for a replica's acknowledgement
            f = sb.family
            status = dict(sql(old, "SHOW STATUS LIKE 'Rpl_semi_sync_%'"))
            assert status[f.semi_sync_status("status")] == "ON"
            assert int(str(status[f.semi_sync_status("clients")])) == 2
            assert int(str(status[f.semi_sync_status("yes_tx")])) > 200
        t_kill = time.monotonic()
        sb.kill(old.name)
        wait_until(lambda: writer.acked_since(t_kill + 0.1) > 100, what="writes after failover")
    assert writer.unexpected == []
    monitor = cluster.monitor
    assert monitor is not None
    # Writes resume as soon as the promoted node is published, before the failover has
    # finished repointing the other replica and recorded its result.
    wait_until(lambda: monitor.last_failover is not None, what="the failover's result")
    assert monitor.last_failover is not None
    new_name = monitor.last_failover.new_primary
    new = sb.node(new_name or "")
    assert cluster.topology.primary is not None and cluster.topology.primary.name == new.address
    assert cluster.topology.node(old.address).role is Role.UNKNOWN
    have = ids_on(new)
    lost = sum(1 for i, _ in writer.acked if i not in have)
    return cluster, writer, new, lost


def _assert_other_replica_follows(
    sb: Sandbox, cluster: Cluster, new: SandboxNode, dead: SandboxNode
) -> bool:
    """The other replica replicates from the new primary and has every row it has.

    Replicas run without log-slave-updates: if the other replica had received fewer events
    than the promoted one when the primary died, the missing ones are in no binary log and
    it cannot follow; then it must be reported (and left alone), never broken. Returns
    whether it follows.
    """
    (other,) = [n for n in sb.nodes if n not in (new, dead)]
    assert cluster.monitor is not None and cluster.monitor.last_failover is not None
    skipped = dict(cluster.monitor.last_failover.skipped)
    if sb.log_slave_updates:
        assert skipped == {}  # with log-slave-updates every replica can follow
    if other.address in skipped:
        assert "rebuild it" in skipped[other.address]
        f = family(new)
        if f.name == "mariadb":
            # The new primary's binlog starts at the position it was promoted at (the lowest
            # entry of its binlog state); the other replica stopped before that.
            state = str(sql(new, "SELECT @@gtid_binlog_state")[0][0])
            start = min(int(g.split("-")[2]) for g in state.split(","))
            behind = str(sql(other, "SELECT @@gtid_slave_pos")[0][0])
            assert int(behind.split("-")[2]) < start
            print(f"the other replica stopped behind the promoted one ({behind} < {start})")
        else:  # the other replica lacks transactions the promoted one applied
            behind = ask(other, lambda f, cur: f.parse_gtid(f.executed(cur)))
            ahead = ask(new, lambda f, cur: f.parse_gtid(f.executed(cur)))
            assert not behind.contains(ahead)
            print(f"the other replica stopped behind the promoted one ({behind} < {ahead})")
        return False
    wait_until(lambda: replicating(other), what="the other replica replicating")
    assert source_port(other) == new.port
    pos = position(new)
    assert wait_position(other, pos, 10)
    assert ids_on(other) == ids_on(new)
    return True


def test_kill_primary_with_semi_sync_loses_no_acknowledged_write(
    semi_sync_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sb = semi_sync_sandbox
    caplog.set_level(logging.INFO, logger="rwsplit")
    old = sb.primary
    cluster, _, new, lost = _kill_primary_under_load(sb)
    try:
        assert lost == 0
        assert _assert_other_replica_follows(sb, cluster, new, old)
        # Every step is logged with its node, and the replication password never is.
        messages = [r.getMessage() for r in caplog.records if r.name == "rwsplit.failover"]
        assert any(new.address in m and "read_only = OFF" in m for m in messages)
        assert all(REPL_PASSWORD not in r.getMessage() for r in caplog.records)
        # The old primary comes back writable (as after a crash): made read-only at once,
        # then rejoined as a replica of the new primary (or, with errant transactions, kept
        # fenced).
        sb.restart(old.name)
        wait_until(lambda: sql(old, "SELECT @@read_only")[0][0] == 1, what="old primary fenced")
        before = own_gtid_seq(old)
        with Writer(cluster, threads=1, first_id=1_000_000) as w2:
            wait_until(lambda: len(w2.acked) > 50, what="writes with the old primary back")
        assert w2.unexpected == [] and w2.errors == []
        assert own_gtid_seq(old) == before  # no write executed on it
        assert cluster.topology.primary is not None
        assert cluster.topology.primary.name == new.address
    finally:
        cluster.close()


def test_kill_primary_async_reports_lost_writes(
    async_lsu_sandbox: Sandbox, record_property: Callable[[str, object], None]
) -> None:
    fresh_sandbox = async_lsu_sandbox
    old = fresh_sandbox.primary
    cluster, writer, new, lost = _kill_primary_under_load(fresh_sandbox)
    try:
        record_property("async_lost_writes", lost)
        print(f"async replication: {lost} acknowledged writes lost of {len(writer.acked)}")
        assert lost <= 5  # async may lose the last few commits; never more than a handful
        assert _assert_other_replica_follows(fresh_sandbox, cluster, new, old)
    finally:
        cluster.close()


def test_switchover_under_load_loses_nothing_and_old_primary_becomes_replica(
    fresh_sandbox: Sandbox,
) -> None:
    from rwsplit import switchover

    sb = fresh_sandbox
    old, target, other = sb.nodes
    with Cluster(
        sb.primary_url, sb.replica_urls, monitor_interval=0.2, failover_options=OPTIONS
    ) as cluster:
        make_table(cluster, sb)
        plan = switchover(cluster, target.address, OPTIONS, dry_run=True)
        planned = [(node, stmt.split(" = ")[0]) for node, stmt in plan.statements]
        fence = family(old).set_read_only(True)[0].sql.split(" = ")[0]
        assert (old.address, fence) in planned
        f = family(target)
        change = f.change_source("h", 1, "u", "p").sql.split(" = ")[0]
        assert (target.address, f.reset_replication().sql) in planned
        assert (old.address, change) in planned
        assert (other.address, change) in planned
        assert sql(old, "SELECT @@read_only")[0][0] == 0  # the dry run changed nothing
        assert sql(target, "SELECT @@read_only")[0][0] == 1
        assert cluster.topology.primary is not None
        assert cluster.topology.primary.name == old.address
        with Writer(cluster) as writer:
            wait_until(lambda: len(writer.acked) > 200, what="writes before the switchover")
            result = switchover(cluster, target.address, OPTIONS)
            t_done = time.monotonic()
            wait_until(lambda: writer.acked_since(t_done) > 100, what="writes after")
        assert writer.unexpected == []
        assert result.new_primary == target.address and result.old_primary == old.address
        assert sorted(result.repointed) == sorted([old.address, other.address])
        for node in (old, other):
            wait_until(
                lambda node=node: replicating(node),
                what=f"{node.name} replicating from the new primary",
            )
            assert source_port(node) == target.port
        pos = position(target)
        for node in (old, other):
            assert wait_position(node, pos, 10)
        have = ids_on(target)
        assert [i for i, _ in writer.acked if i not in have] == []  # zero lost writes
        assert ids_on(old) == have == ids_on(other)
        assert sql(old, "SELECT @@read_only")[0][0] == 1
        # Re-running is harmless: nothing to do.
        again = switchover(cluster, target.address, OPTIONS)
        assert again.nothing_to_do and again.statements == []


def test_cli_failover_dry_run_then_real_then_idempotent(
    fresh_sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sb = fresh_sandbox
    secret_file = tmp_path / "repl.pw"
    secret_file.write_text(REPL_PASSWORD + "\n")
    monkeypatch.setenv("RWSPLIT_REPLICATION_USER", REPL_USER)
    args = ["--primary", sb.primary_url]
    for url in sb.replica_urls:
        args += ["--replica", url]
    args += ["--replication-password-file", str(secret_file)]
    with Cluster(sb.primary_url, sb.replica_urls) as c:
        make_table(c, sb)
    # With the primary alive: nothing to do, nothing changed.
    assert main(["failover", *args]) == 0
    assert "nothing to do" in capsys.readouterr().out
    # That run recorded the member list on the primary (a write): the replicas have it before
    # the kill, or the one that had not received it is left behind (no log_slave_updates here:
    # exit 4, "rebuild it"), which is not what this test is about.
    sb.wait_caught_up()

    sb.kill("primary")
    before = {n.name: io_running(n) for n in sb.replicas}
    assert main(["failover", "--dry-run", *args]) == 0
    out = capsys.readouterr()
    f = sb.family
    change = f.change_source("h", 1, "u", "p").sql
    assert f.stop_io_thread().sql in out.out and change.split(" = ")[0].rsplit(" ", 1)[0] in out.out
    assert "_PASSWORD = '***'" in out.out
    assert REPL_PASSWORD not in out.out + out.err
    # A dry run changed nothing.
    assert {n.name: io_running(n) for n in sb.replicas} == before
    assert all(sql(n, "SELECT @@read_only")[0][0] == 1 for n in sb.replicas)

    assert main(["-v", "failover", "--preferred", sb.replicas[1].address, *args]) == 0
    out = capsys.readouterr()
    assert REPL_PASSWORD not in out.out + out.err
    assert f"promoted {sb.replicas[1].address}" in out.out
    assert sql(sb.replicas[1], "SELECT @@read_only")[0][0] == 0
    wait_until(lambda: source_port(sb.replicas[0]) == sb.replicas[1].port)

    # Re-running after success: nothing to do, exit 0.
    assert main(["failover", *args]) == 0
    assert "nothing to do" in capsys.readouterr().out

    # The old primary restarts writable. No replica follows it: re-running fences it.
    sb.restart("primary")
    assert sql(sb.primary, "SELECT @@read_only")[0][0] == 0
    assert main(["failover", *args]) == 0
    assert f"fenced: {sb.primary.address}" in capsys.readouterr().out
    assert sql(sb.primary, "SELECT @@read_only")[0][0] == 1


def test_failover_resumes_after_a_crash_half_way(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    old, r1, r2 = sb.nodes
    with Cluster(sb.primary_url, sb.replica_urls) as c:
        make_table(c, sb)
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (1), (2), (3)"))
            s.commit()
        sb.wait_caught_up()
        sb.kill(old.name)
        # A previous run stopped the IO threads and half-promoted r1 (replication reset,
        # still read-only), then crashed.
        for n in (r1, r2):
            run(n, lambda f: f.stop_io_thread())
        run(r1, lambda f: f.stop_replication())
        run(r1, lambda f: f.reset_replication())
        result = failover(c, OPTIONS)
        assert result.new_primary == r1.address
        assert result.repointed == [r2.address]
        assert sql(r1, "SELECT @@read_only")[0][0] == 0
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (4)"))
            s.commit()
        pos = position(r1)
        wait_until(lambda: io_running(r2))
        assert wait_position(r2, pos, 10)
        assert ids_on(r2) == {1, 2, 3, 4}


def test_failover_refuses_when_the_primary_is_alive_for_the_replicas(
    fresh_sandbox: Sandbox,
) -> None:
    # The primary answers nobody here (wrong credentials from rwsplit's side) but the
    # replicas still stream from it: a partition, not a death. Nothing may be promoted.
    # (Its "access denied" already proves it alive: refused on that, before the replicas.)
    sb = fresh_sandbox
    p = sb.primary
    bad = f"mysql+pymysql://nobody:x@{p.host}:{p.port}/rwsplit"
    options = FailoverOptions(REPL_USER, REPL_PASSWORD, confirm_interval=0.05)
    with (
        Cluster(bad, sb.replica_urls) as c,
        pytest.raises(RwSplitError, match=r"still replicate from it|it is alive"),
    ):
        failover(c, options)
    assert all(sql(n, "SELECT @@read_only")[0][0] == 1 for n in sb.replicas)
    assert all(io_running(n) for n in sb.replicas)


def test_primary_dying_inside_a_transaction_is_retryable(fresh_sandbox: Sandbox) -> None:
    with Cluster(fresh_sandbox.primary_url, fresh_sandbox.replica_urls) as c:
        make_table(c, fresh_sandbox)
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (1)"))
            fresh_sandbox.kill("primary")
            with pytest.raises(RetryableWriteError, match="before anything was committed"):
                s.execute(text("INSERT INTO w VALUES (2)"))
            s.rollback()


def _fail_over_with_replica2_behind(sb: Sandbox, c: Cluster) -> FailoverResult:
    """Kill the primary while replica2 has not received its last writes; fail over to replica1."""
    old, r1, r2 = sb.nodes
    make_table(c, sb)
    run(r2, lambda f: f.stop_io_thread())
    with c.session() as s:
        s.execute(text("INSERT INTO w VALUES (1), (2)"))
        s.commit()
    assert wait_position(r1, position(old), 10)  # r2 cannot
    sb.kill(old.name)
    result = failover(c, FailoverOptions(REPL_USER, REPL_PASSWORD, confirm_interval=0.05))
    assert result.new_primary == r1.address
    return result


def test_replica_behind_the_promoted_one_is_reported_not_broken(fresh_sandbox: Sandbox) -> None:
    # Without log-slave-updates the promoted node's binlog starts at its own position: a
    # replica that had not received everything cannot be served from it. rwsplit must say so
    # (and leave it alone) rather than repoint it into a replication error.
    sb = fresh_sandbox
    _, r1, r2 = sb.nodes
    with Cluster(sb.primary_url, sb.replica_urls) as c:
        result = _fail_over_with_replica2_behind(sb, c)
        assert result.repointed == []
        assert [name for name, _ in result.skipped] == [r2.address]
        assert "rebuild it" in result.skipped[0][1]
        assert ids_on(r1) == {1, 2}


def test_with_log_slave_updates_a_lagging_replica_catches_up(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The same situation with log-slave-updates: the promoted node's binlog keeps the
    # replicated events (no RESET MASTER), so the lagging replica is repointed and catches up.
    from tests.fix_sandbox import require_server

    require_server()
    with Sandbox(replicas=2, base_dir=tmp_path_factory.mktemp("lsu"), log_slave_updates=True) as sb:
        _, r1, r2 = sb.nodes
        with Cluster(sb.primary_url, sb.replica_urls) as c:
            result = _fail_over_with_replica2_behind(sb, c)
            assert result.skipped == [] and result.repointed == [r2.address]
            assert not any("RESET MASTER" in stmt for _, stmt in result.statements)
            assert wait_position(r2, position(r1), 10)  # the new primary's position
            assert ids_on(r2) == {1, 2}
