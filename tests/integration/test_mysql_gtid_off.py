"""MySQL with ``gtid_mode=OFF`` (its default): replication by binary log file and position.

Replicas run with ``log-bin`` and without ``log_replica_updates`` (the classic layout). Causal
reads use the primary's binary log position, waited for with ``SOURCE_POS_WAIT`` only on a
replica of that primary; failover is the classic runbook, automated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import make_url, text

from rwsplit import Cluster, FailoverOptions, failover, switchover
from rwsplit.errors import FailoverError
from rwsplit.routing import consistency
from rwsplit.routing._tokens import BinlogToken
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode

from .util import sql, sql_threads_stopped, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server("mysql", reason="binary log positions as causal tokens: MySQL, GTIDs off"),
]


def _start(base: Path, **kwargs: object) -> Iterator[Sandbox]:
    from ..fix_sandbox import require_server

    require_server()
    sb = Sandbox(replicas=2, base_dir=base, gtid=False, **kwargs)  # type: ignore[arg-type]
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def classic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One primary and two replicas, GTIDs off, shared by the non-destructive tests."""
    sb_iter = _start(tmp_path_factory.mktemp("gtidoff"))
    sb = next(sb_iter)
    with contextlib.closing(sb.primary.connect()) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("DROP TABLE IF EXISTS app.ryw")
        cur.execute("CREATE TABLE app.ryw (id INT PRIMARY KEY, v INT NOT NULL)")
        cur.execute("INSERT INTO app.ryw VALUES (1, 0)")
    sb.wait_caught_up()
    yield sb
    with contextlib.suppress(StopIteration):
        next(sb_iter)


def _urls(sb: Sandbox) -> tuple[str, list[str]]:
    return _in_app(sb.primary_url), [_in_app(u) for u in sb.replica_urls]


def _in_app(url: str) -> str:
    return str(make_url(url).set(database="app"))


def test_sandbox_runs_without_gtids(classic: Sandbox) -> None:
    for node in [classic.primary, *classic.replicas]:
        assert sql(node, "SELECT @@global.gtid_mode")[0][0] == "OFF"


def test_no_stale_read_after_a_write_with_gtids_off(classic: Sandbox) -> None:
    """Defect: with GTIDs off the token was None and 40 of 40 reads after a write were stale."""
    primary, replicas = _urls(classic)
    stale = 0
    tokens: list[str | None] = []
    with Cluster(primary, replicas, causal_timeout=0.2) as c:
        c.refresh()  # replicas of this primary, in rotation: each read after a write waits
        with sql_threads_stopped(classic):
            for i in range(1, 21):
                with c.session() as s:
                    s.execute(text("UPDATE ryw SET v = :v WHERE id = 1"), {"v": i})
                    s.commit()
                    tokens.append(s.causal_token)
                    if s.execute(text("SELECT v FROM ryw WHERE id = 1")).scalar_one() != i:
                        stale += 1
    assert stale == 0
    assert all(t is not None and BinlogToken.parse(t) is not None for t in tokens), tokens


def _read(s: object) -> tuple[int, int]:
    """(server id that answered, v) of one autocommit read."""
    row = s.execute(text("SELECT @@server_id, v FROM ryw WHERE id = 1")).one()  # type: ignore[attr-defined]
    return int(row[0]), int(row[1])


def test_binlog_token_is_waited_for_on_a_replica_of_its_primary(classic: Sandbox) -> None:
    """The position names its primary's server_uuid; a replica of it waits and serves."""
    primary, replicas = _urls(classic)
    primary_id = int(sql(classic.primary, "SELECT @@server_id")[0][0])  # type: ignore[call-overload]
    with Cluster(primary, replicas, causal_timeout=5.0) as c:
        c.refresh()  # the replicas' Source_UUID: which primary each follows
        with c.session() as s:
            s.execute(text("UPDATE ryw SET v = v + 1 WHERE id = 1"))
            s.commit()
            token = BinlogToken.parse(s.causal_token or "")
            assert token is not None
            assert token.source_uuid == sql(classic.primary, "SELECT @@server_uuid")[0][0]
            want = int(sql(classic.primary, "SELECT v FROM app.ryw WHERE id = 1")[0][0])  # type: ignore[call-overload]
            server, v = _read(s)
            assert server != primary_id, "the read went to the primary"
            assert v == want


def test_a_token_of_another_primary_is_never_waited_for(
    classic: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A binlog position names its primary: on replicas of another, reads go to the primary."""
    primary, replicas = _urls(classic)
    primary_id = int(sql(classic.primary, "SELECT @@server_id")[0][0])  # type: ignore[call-overload]
    foreign = "binlog:00000000-0000-0000-0000-000000000000:binlog.000001:4"
    with (
        Cluster(primary, replicas, causal_timeout=5.0) as c,
        caplog.at_level(logging.INFO, "rwsplit.consistency"),
    ):
        c.refresh()
        with c.session(causal_token=foreign) as s:
            assert _read(s)[0] == primary_id
    assert "not from the writer" in caplog.text


def test_without_a_monitor_view_reads_after_a_write_go_to_the_primary(
    classic: Sandbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which primary a replica follows is unknown until a probe: never a blind wait."""
    monkeypatch.setattr(consistency, "_logged_once", set())
    primary, replicas = _urls(classic)
    primary_id = int(sql(classic.primary, "SELECT @@server_id")[0][0])  # type: ignore[call-overload]
    with (
        Cluster(primary, replicas, causal_timeout=5.0) as c,
        caplog.at_level(logging.INFO, "rwsplit.consistency"),
        c.session() as s,
    ):
        s.execute(text("UPDATE ryw SET v = v + 1 WHERE id = 1"))
        s.commit()
        assert _read(s)[0] == primary_id
    assert "which primary the replica follows is unknown" in caplog.text


# ---------------------------------------------------------------------------------- failover

OPTIONS = FailoverOptions(REPL_USER, REPL_PASSWORD, confirm_interval=0.05)


@pytest.fixture
def fresh_classic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from _start(tmp_path_factory.mktemp("gtidoff-fresh"))


def _status(node: SandboxNode) -> dict[str, object]:
    with contextlib.closing(node.connect()) as c, c.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW REPLICA STATUS")
        return dict(cur.fetchone() or {})


def _ids(node: SandboxNode) -> set[int]:
    return {int(str(r[0])) for r in sql(node, "SELECT id FROM app.w")}


def _make_table(sb: Sandbox) -> None:
    with contextlib.closing(sb.primary.connect()) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("CREATE TABLE IF NOT EXISTS app.w (id INT PRIMARY KEY)")
    sb.wait_caught_up()


def test_kill_9_failover_the_other_replica_follows(fresh_classic: Sandbox) -> None:
    """Defect: after a kill -9 failover the other replica stayed on the dead primary."""
    sb = fresh_classic
    old, r1, r2 = sb.nodes
    _make_table(sb)
    primary, replicas = _urls(sb)
    with Cluster(primary, replicas) as c:
        with c.session() as s:
            for i in range(1, 51):
                s.execute(text("INSERT INTO w VALUES (:i)"), {"i": i})
                s.commit()
        sb.wait_caught_up()
        sb.kill(old.name)
        result = failover(c, OPTIONS)
        assert result.new_primary is not None
        new = sb.node(result.new_primary)
        (other,) = [n for n in (r1, r2) if n is not new]
        assert result.skipped == []
        assert result.repointed == [other.address]
        assert sql(new, "SELECT @@global.super_read_only, @@global.read_only")[0] == (0, 0)
        # The other replica replicates from the new primary, from its first binlog position.
        wait_until(
            lambda: (
                (st := _status(other)).get("Replica_IO_Running") == "Yes"
                and st.get("Replica_SQL_Running") == "Yes"
            ),
            what="the other replica replicating from the new primary",
        )
        assert _status(other)["Source_Port"] == new.port
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (51)"))
            s.commit()
        file, pos = sql(new, "SHOW BINARY LOG STATUS")[0][:2]
        assert sql(other, f"SELECT SOURCE_POS_WAIT('{file}', {pos}, 10)")[0][0] >= 0  # type: ignore[operator]
        assert _ids(other) == _ids(new) == set(range(1, 52))


def test_replica_that_applied_less_is_reported_and_left_out(fresh_classic: Sandbox) -> None:
    """A replica that did not apply exactly what the promoted one applied needs a rebuild:
    it is reported, never pointed at a wrong position, and takes no reads."""
    sb = fresh_classic
    old, r1, r2 = sb.nodes
    _make_table(sb)
    primary, replicas = _urls(sb)
    with Cluster(primary, replicas) as c:
        sql(r2, "STOP REPLICA IO_THREAD")
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (1), (2)"))
            s.commit()
        file, pos = sql(old, "SHOW BINARY LOG STATUS")[0][:2]
        assert sql(r1, f"SELECT SOURCE_POS_WAIT('{file}', {pos}, 10)")[0][0] >= 0  # type: ignore[operator]
        sb.kill(old.name)
        result = failover(c, OPTIONS)
        assert result.new_primary == r1.address
        assert result.repointed == []
        assert [name for name, _ in result.skipped] == [r2.address]
        assert "rebuild it" in result.skipped[0][1]
        # Left alone: still configured for the dead primary, threads as they were.
        assert _status(r2)["Source_Port"] == old.port
        c.refresh()
        assert c.topology.readable_replicas() == ()
        assert c.topology.not_readable_because(c.topology.node(r2.address)) is not None
        assert _ids(r1) == {1, 2}


def test_gtids_off_with_log_replica_updates_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sb_iter = _start(tmp_path_factory.mktemp("gtidoff-lru"), log_slave_updates=True)
    sb = next(sb_iter)
    try:
        old = sb.primary
        primary, replicas = _urls(sb)
        with Cluster(primary, replicas) as c:
            sb.kill(old.name)
            with pytest.raises(FailoverError) as err:
                failover(c, OPTIONS)
        message = str(err.value)
        assert "log_replica_updates=OFF" in message and "gtid_mode=ON" in message
        assert "nothing changed" in message
        for r in sb.replicas:  # nothing was touched: both still replicas of the dead primary
            assert _status(r)["Source_Port"] == old.port
            assert sql(r, "SELECT @@global.read_only")[0][0] == 1
    finally:
        with contextlib.suppress(StopIteration):
            next(sb_iter)


def test_switchover_by_binlog_position_loses_nothing(fresh_classic: Sandbox) -> None:
    """Without GTIDs the switchover waits for the old primary's final file and position on
    every replica, then all continue at the start of the new primary's binary log."""
    sb = fresh_classic
    old, target, other = sb.nodes
    _make_table(sb)
    primary, replicas = _urls(sb)
    with Cluster(primary, replicas) as c:
        with c.session() as s:
            for i in range(1, 21):
                s.execute(text("INSERT INTO w VALUES (:i)"), {"i": i})
                s.commit()
        result = switchover(c, target.address, OPTIONS)
        assert result.new_primary == target.address
        assert sorted(result.repointed) == sorted([old.address, other.address])
        assert result.skipped == []
        for node in (old, other):
            wait_until(
                lambda node=node: (
                    (st := _status(node)).get("Source_Port") == target.port
                    and st.get("Replica_IO_Running") == "Yes"
                    and st.get("Replica_SQL_Running") == "Yes"
                ),
                what=f"{node.name} replicating from the new primary",
            )
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (21)"))
            s.commit()
        file, pos = sql(target, "SHOW BINARY LOG STATUS")[0][:2]
        for node in (old, other):
            assert sql(node, f"SELECT SOURCE_POS_WAIT('{file}', {pos}, 10)")[0][0] >= 0  # type: ignore[operator]
            assert _ids(node) == set(range(1, 22))
        assert sql(old, "SELECT @@global.read_only")[0][0] == 1


def test_the_monitor_fails_over_by_position_on_its_own(fresh_classic: Sandbox) -> None:
    """kill -9 under a monitor with auto_failover: the same runbook, and reads after writes
    on the new primary are causal again (the token names the new primary)."""
    sb = fresh_classic
    old, r1, r2 = sb.nodes
    _make_table(sb)
    primary, replicas = _urls(sb)
    with Cluster(
        primary,
        replicas,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
        failover_options=OPTIONS,
        causal_timeout=5.0,
    ) as c:
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (1)"))
            s.commit()
        sb.wait_caught_up()
        sb.kill(old.name)
        monitor = c.monitor
        assert monitor is not None
        wait_until(lambda: monitor.last_failover is not None, what="the monitor's failover")
        result = monitor.last_failover
        assert result is not None and result.new_primary in (r1.address, r2.address)
        new = sb.node(result.new_primary)
        (other,) = [n for n in (r1, r2) if n is not new]
        assert result.repointed == [other.address]
        wait_until(
            lambda: c.topology.readable_replicas() != (), what="the other replica in rotation"
        )
        new_uuid = str(sql(new, "SELECT @@server_uuid")[0][0])
        new_id = int(sql(new, "SELECT @@server_id")[0][0])  # type: ignore[call-overload]
        with c.session() as s:
            s.execute(text("INSERT INTO w VALUES (2)"))
            s.commit()
            token = BinlogToken.parse(s.causal_token or "")
            assert token is not None and token.source_uuid == new_uuid
            row = s.execute(text("SELECT @@server_id, COUNT(*) FROM w")).one()
        assert row[1] == 2
        assert int(row[0]) != new_id, "the read after the write went to the primary"
