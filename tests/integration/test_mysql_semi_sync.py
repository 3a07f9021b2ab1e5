"""Semi-synchronous replication on MySQL across a switchover, a fence and a failover.

MySQL logs what a replica applies (``log_replica_updates``, on by default): a node that stops
being the primary with the source side of semi-sync still on waits for an acknowledgement of
every transaction it applies, from replicas it no longer has, and wedges the cluster.
"""

from __future__ import annotations

import contextlib
import threading

import pymysql
import pytest
from sqlalchemy import text

from rwsplit import Cluster, FailoverOptions, failover, switchover
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode
from rwsplit.topology.failover import rejoin

from .util import sql, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.failover,
    pytest.mark.server("mysql", reason="MySQL logs what a replica applies (semi-sync wedge)"),
]

OPTIONS = FailoverOptions(REPL_USER, REPL_PASSWORD, confirm_interval=0.05, apply_timeout=20)


def _variables(node: SandboxNode, like: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in sql(node, f"SHOW GLOBAL VARIABLES LIKE '{like}'")}


def _source_on(node: SandboxNode) -> bool:
    v = _variables(node, "rpl_semi_sync_%_enabled")
    return "ON" in (v.get("rpl_semi_sync_source_enabled"), v.get("rpl_semi_sync_master_enabled"))


def _status(node: SandboxNode) -> dict[str, object]:
    with contextlib.closing(node.connect()) as c, c.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW REPLICA STATUS")
        return dict(cur.fetchone() or {})


def _replicating_from(node: SandboxNode, source: SandboxNode) -> bool:
    st = _status(node)
    return (
        st.get("Source_Port") == source.port
        and st.get("Replica_IO_Running") == "Yes"
        and st.get("Replica_SQL_Running") == "Yes"
    )


def _answers_within(node: SandboxNode, statement: str, seconds: float) -> bool:
    """Does *statement* on *node* complete within *seconds* (not wedged)?"""
    done = threading.Event()

    def run() -> None:
        with contextlib.suppress(Exception):
            sql(node, statement)
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return done.wait(seconds)


def test_semi_sync_switchover_leaves_a_writable_cluster(semi_sync_sandbox: Sandbox) -> None:
    """Defect: the demoted node kept the source side on, each transaction it applied waited
    for an acknowledgement, and the switchover failed with no writable primary."""
    sb = semi_sync_sandbox
    old, target, other = sb.nodes
    assert _source_on(old) and not _source_on(target)
    with Cluster(sb.primary_url, sb.replica_urls, failover_options=OPTIONS) as c:
        with c.session() as s:
            s.execute(text("CREATE TABLE IF NOT EXISTS ss (id INT PRIMARY KEY)"))
            s.execute(text("INSERT INTO ss VALUES (1)"))
            s.commit()
        result = switchover(c, target.address, OPTIONS)
        assert result.new_primary == target.address
        assert sorted(result.repointed) == sorted([old.address, other.address])
        for node in (old, other):
            wait_until(lambda node=node: _replicating_from(node, target), what=f"{node.name}")
        # Writes on the new primary are acknowledged and applied everywhere, the demoted node
        # included, without wedging it.
        with c.session() as s:
            s.execute(text("INSERT INTO ss VALUES (2)"))
            s.commit()
        executed = str(sql(target, "SELECT @@global.gtid_executed")[0][0])
        for node in (old, other):
            assert sql(node, f"SELECT WAIT_FOR_EXECUTED_GTID_SET('{executed}', 10)")[0][0] == 0
            assert {r[0] for r in sql(node, "SELECT id FROM rwsplit.ss")} == {1, 2}
        assert not _source_on(old), "the demoted node still waits for acknowledgements"
        assert _source_on(target), "the new primary runs asynchronously"
        yes = {str(k): str(v) for k, v in sql(target, "SHOW STATUS LIKE 'Rpl_semi_sync_%_yes_tx'")}
        assert sum(int(v) for v in yes.values()) >= 1
        # The failover log's schema answers on every node (no replicated DDL holds a lock).
        for node in sb.nodes:
            assert _answers_within(node, "SELECT COUNT(*) FROM rwsplit.failover_log", 5.0)
        # And back: the cluster survives a second switchover the other way.
        back = switchover(c, old.address, OPTIONS)
        assert back.new_primary == old.address
        assert _source_on(old) and not _source_on(target)


def test_kill_9_failover_keeps_semi_sync_and_turns_it_off_on_the_fenced_node(
    semi_sync_sandbox: Sandbox,
) -> None:
    sb = semi_sync_sandbox
    old, r1, r2 = sb.nodes
    with Cluster(sb.primary_url, sb.replica_urls, failover_options=OPTIONS) as c:
        with c.session() as s:
            s.execute(text("CREATE TABLE IF NOT EXISTS ss (id INT PRIMARY KEY)"))
            s.execute(text("INSERT INTO ss VALUES (1)"))
            s.commit()
        sb.wait_caught_up()
        sb.kill(old.name)
        result = failover(c, OPTIONS)
        new = sb.node(result.new_primary or "")
        (other,) = [n for n in (r1, r2) if n is not new]
        assert result.repointed == [other.address]
        assert _source_on(new) and not _source_on(other)
        with c.session() as s:
            s.execute(text("INSERT INTO ss VALUES (2)"))
            s.commit()
        executed = str(sql(new, "SELECT @@global.gtid_executed")[0][0])
        assert sql(other, f"SELECT WAIT_FOR_EXECUTED_GTID_SET('{executed}', 10)")[0][0] == 0
        # The old primary comes back with the source side on (as its configuration file
        # would have it): rejoining turns it off before it applies anything.
        sb.restart(old.name)
        variable = (
            next(iter(_variables(old, "rpl_semi_sync_%source_enabled")))
            if _variables(old, "rpl_semi_sync_%source_enabled")
            else "rpl_semi_sync_master_enabled"
        )
        sql(old, f"SET GLOBAL {variable} = ON")
        joined = rejoin(c, old.address, OPTIONS)
        assert joined.repointed == [old.address], joined.skipped
        assert not _source_on(old)
        wait_until(lambda: _replicating_from(old, new), what="the old primary replicating")
        with c.session() as s:
            s.execute(text("INSERT INTO ss VALUES (3)"))
            s.commit()
        executed = str(sql(new, "SELECT @@global.gtid_executed")[0][0])
        assert sql(old, f"SELECT WAIT_FOR_EXECUTED_GTID_SET('{executed}', 10)")[0][0] == 0
