"""Fencing that holds against privileged accounts and new processes; rejoin of an old primary."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pymysql
import pytest
from rwsplit.failover import follow_current_primary, rejoin, switchover, verify_writable_primary
from sqlalchemy import create_engine, event, text

from rwsplit import Cluster, FailoverOptions, NoPrimaryError, Role
from rwsplit.errors import FencedNodeError
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode
from rwsplit.topology import NodeProbe
from rwsplit.topology._ledger import current_epoch

from .test_failover import ids_on, make_table, own_gtid_seq, source_port
from .util import fenced, position, replica_status, replicating, run, sql, wait_position, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.failover]

OPTIONS = FailoverOptions(REPL_USER, REPL_PASSWORD)
LATE_WRITER = Path(__file__).with_name("late_writer.py")


def _auto(sb: Sandbox, primary_url: str | None = None) -> Cluster:
    return Cluster(
        primary_url or sb.primary_url,
        sb.replica_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
        failover_options=OPTIONS,
    )


def _insert(cluster: Cluster, ids: range) -> None:
    for i in ids:
        with cluster.session() as s:
            s.execute(text("INSERT INTO w (id) VALUES (:i)"), {"i": i})
            s.commit()


def _fail_over(sb: Sandbox, cluster: Cluster) -> SandboxNode:
    """kill -9 the primary, wait for the monitor's failover; the new primary."""
    sb.kill(sb.primary.name)
    monitor = cluster.monitor
    assert monitor is not None
    wait_until(lambda: monitor.last_failover is not None, what="the automated failover")
    assert monitor.last_failover is not None and monitor.last_failover.promoted
    return sb.node(monitor.last_failover.new_primary or "")


def _conn(node: SandboxNode, user: str = "root", password: str = "") -> Any:
    return pymysql.connect(
        host=node.host, port=node.port, user=user, password=password, database="rwsplit"
    )


def _verify(node: SandboxNode, user: str = "root", password: str = "") -> None:
    with contextlib.closing(_conn(node, user, password)) as conn:
        verify_writable_primary(conn, node.address)


def test_restarted_old_primary_rejoins_as_a_replica_and_catches_up(
    fresh_sandbox: Sandbox,
) -> None:
    sb = fresh_sandbox
    old = sb.primary
    with _auto(sb) as cluster:
        make_table(cluster, sb)
        _insert(cluster, range(1, 21))
        sb.wait_caught_up()  # no errant transaction on the old primary: it can rejoin
        new = _fail_over(sb, cluster)
        _insert(cluster, range(21, 41))
        sb.restart(old.name)
        wait_until(
            lambda: source_port(old) == new.port and replicating(old),
            what="the old primary replicating from the new one",
        )
        assert sql(old, "SELECT @@read_only")[0][0] == 1
        before = own_gtid_seq(old)
        _insert(cluster, range(41, 61))
        pos = position(new)
        assert wait_position(old, pos, 20)
        assert ids_on(old) == ids_on(new) == set(range(1, 61))
        assert own_gtid_seq(old) == before  # caught up by replication, no write on it
        # It takes reads again as a replica, and is no primary for anyone.
        wait_until(lambda: cluster.topology.node(old.address).role is Role.REPLICA)
        assert old.address not in cluster.fenced
        with pytest.raises(FencedNodeError, match=f"refusing to write to {old.address}"):
            _verify(old)
        _verify(new)


def test_old_primary_with_errant_transactions_stays_fenced(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    old, r1, r2 = sb.nodes
    with _auto(sb) as cluster:
        make_table(cluster, sb)
        for r in (r1, r2):
            run(r, lambda f: f.stop_io_thread())
        _insert(cluster, range(1, 4))  # acknowledged by the old primary alone: lost
        new = _fail_over(sb, cluster)
        sb.restart(old.name)
        wait_until(lambda: fenced(old), what="old primary fenced")
        monitor = cluster.monitor
        assert monitor is not None
        wait_until(lambda: old.address in monitor._rejoin_refused, what="rejoin refused")
        assert replica_status(old) is None  # not pointed at a primary it cannot follow
        result = rejoin(cluster, old.address, OPTIONS)
        assert result.fenced == [old.address] and result.repointed == []
        why = result.skipped[0][1]
        # MariaDB names the errant GTIDs; MySQL the GTID sets that differ.
        assert ("errant" in why or "has transactions" in why) and "rebuild it" in why
        assert cluster.topology.node(old.address).role is Role.UNKNOWN
        before = own_gtid_seq(old)
        _insert(cluster, range(100, 120))
        assert own_gtid_seq(old) == before
        assert set(range(100, 120)) <= ids_on(new)
        with pytest.raises(FencedNodeError, match="read-only"):
            _verify(old)
        # Wired as the lead does, on an engine's "connect" event: no connection to it at all.
        engine = create_engine(old.url)
        event.listen(engine, "connect", lambda c, _r: verify_writable_primary(c, old.address))
        try:
            with pytest.raises(FencedNodeError, match=old.address):
                engine.connect()
            assert engine.pool.checkedout() == 0
        finally:
            engine.dispose()


def test_process_from_the_old_configuration_writes_to_the_new_primary(
    fresh_sandbox: Sandbox,
) -> None:
    sb = fresh_sandbox
    old = sb.primary
    with _auto(sb) as first:
        make_table(first, sb)
        _insert(first, range(1, 11))
        sb.wait_caught_up()
        new = _fail_over(sb, first)
    # The process that failed over is gone; the old primary restarts writable, as after a
    # crash, and nobody fences it.
    sb.restart(old.name)
    assert sql(old, "SELECT @@read_only")[0][0] == 0
    # A new process from the old configuration, with root (ALL PRIVILEGES, SUPER: it writes
    # through read_only): a real separate process, started after the failover.
    assert "root" in old.url
    before = own_gtid_seq(old)
    before_pos = position(old)
    config = {"primary": old.url, "replicas": sb.replica_urls, "first": 1000, "last": 1049}
    done = subprocess.run(
        [sys.executable, str(LATE_WRITER), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["acked"] == list(range(1000, 1050)), report
    assert report["primary"] == new.address
    assert old.address in report["fenced"]
    assert set(range(1000, 1050)) <= ids_on(new)
    # Not one write executed on the old primary: its own GTIDs and binlog position stand.
    assert own_gtid_seq(old) == before
    assert position(old) == before_pos
    assert not set(range(1000, 1050)) & ids_on(old)


def test_follow_current_primary_in_process(fresh_sandbox: Sandbox) -> None:
    """The same, in one process: what follow_current_primary finds and publishes."""
    sb = fresh_sandbox
    old = sb.primary
    with _auto(sb) as first:
        make_table(first, sb)
        _insert(first, range(1, 11))
        sb.wait_caught_up()
        new = _fail_over(sb, first)
    sb.restart(old.name)
    with Cluster(old.url, sb.replica_urls) as late:
        topology = late.topology
        assert topology.primary is not None and topology.primary.name == old.address
        rec = follow_current_primary(late)
        assert rec is not None and rec.epoch == 1
        assert (rec.primary, rec.old_primary) == (new.address, old.address)
        assert late.topology.primary is not None
        assert late.topology.primary.name == new.address
        assert old.address in late.fenced
        engine = late.write_engine()
        event.listen(
            engine,
            "connect",
            lambda dbapi_conn, _rec: verify_writable_primary(dbapi_conn, new.address),
        )
        before = own_gtid_seq(old)
        _insert(late, range(1000, 1050))
        assert set(range(1000, 1050)) <= ids_on(new)
        assert own_gtid_seq(old) == before  # not one write executed on the old primary


def test_verify_writable_primary_asks_the_server_whatever_the_account(
    fresh_sandbox: Sandbox,
) -> None:
    sb = fresh_sandbox
    old, r1, r2 = sb.nodes
    with Cluster(sb.primary_url, sb.replica_urls) as cluster:
        make_table(cluster, sb)
        sql(old, "CREATE USER app@'%' IDENTIFIED BY 'app-pw'")
        sql(old, "GRANT SELECT, INSERT, UPDATE, DELETE ON rwsplit.* TO app@'%'")
        _verify(old, "app", "app-pw")  # no failover yet: no log, a writable primary
        result = switchover(cluster, r1.address, OPTIONS)
        assert result.epoch == 1
        pos = position(r1)
        for n in (old, r2):
            assert wait_position(n, pos, 20)
        # Every node that follows the primary holds the record.
        for n in sb.nodes:
            with NodeProbe(cluster.admin_url(cluster.topology.node(n.address))) as probe:
                rec = current_epoch(probe)
            assert rec is not None and rec.kind == "switchover"
            assert (rec.primary, rec.old_primary) == (r1.address, old.address)
        _verify(r1)
        _verify(r1, "app", "app-pw")  # no replication privileges: still decided
        with pytest.raises(FencedNodeError, match="read-only"):
            _verify(old)
        # A replica made writable by hand: it still replicates, whoever asks.
        sql(r2, "SET GLOBAL read_only = OFF")
        try:
            with pytest.raises(FencedNodeError, match=f"replicates from {r1.address}"):
                _verify(r2)
            if sb.family.name == "mariadb":  # MySQL has no Slaves_running counter to ask
                with pytest.raises(FencedNodeError, match="runs a replication connection"):
                    _verify(r2, "app", "app-pw")  # SHOW SLAVE STATUS refused (1227)
        finally:
            sql(r2, "SET GLOBAL read_only = ON")
        # The old primary detached and made writable by hand: the log it replicated says no.
        run(old, lambda f: f.stop_replication())
        run(old, lambda f: f.reset_replication())
        sql(old, "SET GLOBAL read_only = OFF")
        with pytest.raises(FencedNodeError, match=f"replaced by {r1.address}") as err:
            _verify(old, "app", "app-pw")
        assert isinstance(err.value, NoPrimaryError)


def test_monitor_settles_an_old_primary_back_writable_by_the_failover_log(
    fresh_sandbox: Sandbox,
) -> None:
    # Nobody fenced the old primary (the process that failed over is gone); a monitored
    # process from the old configuration sees two writable nodes. The log settles it.
    sb = fresh_sandbox
    old = sb.primary
    with _auto(sb) as first:
        make_table(first, sb)
        sb.wait_caught_up()
        new = _fail_over(sb, first)
    sb.restart(old.name)
    assert sql(old, "SELECT @@read_only")[0][0] == 0
    with Cluster(old.url, sb.replica_urls, monitor_interval=0.2) as late:
        wait_until(
            lambda: (p := late.topology.primary) is not None and p.name == new.address,
            what="the new primary, settled by the failover log",
        )
        assert old.address in late.fenced
        assert late.topology.node(old.address).role is Role.UNKNOWN
        wait_until(lambda: fenced(old), what="old primary fenced")
        before = own_gtid_seq(old)
        _insert(late, range(500, 520))
        assert own_gtid_seq(old) == before
        assert set(range(500, 520)) <= ids_on(new)
