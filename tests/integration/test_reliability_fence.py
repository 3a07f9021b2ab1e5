"""Issue 17, defect 6: a Cluster without a monitor never writes to a fenced old primary
through the connections it pooled while that node was the primary.

Another process fails over (promotes a replica) and fences the old primary with
``SET GLOBAL read_only = ON``; the sandbox's account is ``root`` (``SUPER``), which writes through
``read_only``. The witness that nothing was written on the fenced node is its own binary log
(the transactions it logged itself: MariaDB GTIDs with its server id, MySQL GTIDs with its
``server_uuid``).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from rwsplit import Cluster, RetryableWriteError
from rwsplit.sandbox import DATABASE, Sandbox, SandboxNode

from .async_util import DRIVERS, async_cluster, run
from .util import monitor_privilege, own_writes, sql
from .util import run as run_on

pytestmark = [pytest.mark.integration, pytest.mark.failover]


def binlog_pos(node: SandboxNode) -> int:
    """The transactions *node* logged itself: grows only when something writes on it."""
    return own_writes(node)


def fail_over_elsewhere(sb: Sandbox) -> SandboxNode:
    """What another rwsplit process's failover leaves: replica 1 promoted (replicating from
    nobody, writable), replica 2 following it, the old primary fenced (read-only)."""
    sb.wait_caught_up()
    new, other = sb.replicas
    # Plain read_only (not MySQL's super_read_only): the root account (SUPER) writes through.
    sql(sb.primary, "SET GLOBAL read_only = ON")
    run_on(new, lambda f: f.stop_replication())
    run_on(new, lambda f: f.reset_replication())
    for stmt in sb.family.set_read_only(False):
        run_on(new, stmt)
    sb.point_replica(other, new)
    return new


def count(node: SandboxNode, table: str) -> int:
    return int(sql(node, f"SELECT COUNT(*) FROM {DATABASE}.{table}")[0][0])  # type: ignore[call-overload]


@pytest.mark.parametrize("autocommit", [False, True], ids=["transaction", "autocommit"])
def test_pooled_connections_never_write_to_a_fenced_primary(
    fresh_sandbox: Sandbox, autocommit: bool
) -> None:
    sb = fresh_sandbox
    old = sb.primary
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    with Cluster(sb.primary_url, sb.replica_urls, engine_options=options) as cluster:
        with cluster.session() as s:
            s.execute(text("CREATE TABLE f (id INT PRIMARY KEY)"))
            s.execute(text("INSERT INTO f VALUES (1)"))
            s.commit()
        engine = cluster.write_engine()
        assert engine.pool.checkedin() >= 1  # the pooled connection the next write takes
        new = fail_over_elsewhere(sb)
        before = binlog_pos(old)

        with cluster.session() as s, pytest.raises(RetryableWriteError, match="read-only"):
            s.execute(text("INSERT INTO f VALUES (2)"))
            s.commit()

        assert binlog_pos(old) == before, "a write was executed on the fenced old primary"
        assert count(old, "f") == 1
        # Rediscovered: the retry goes to the new primary.
        assert cluster.primary_name == new.address
        with cluster.session() as s:
            s.execute(text("INSERT INTO f VALUES (2)"))
            s.commit()
        assert count(new, "f") == 2
        assert binlog_pos(old) == before


@pytest.mark.parametrize("driver", DRIVERS)
def test_asyncio_pooled_connections_never_write_to_a_fenced_primary(
    fresh_sandbox: Sandbox, driver: str
) -> None:
    sb = fresh_sandbox
    old = sb.primary

    async def work() -> None:
        async with async_cluster(sb, driver) as cluster:
            async with cluster.async_session() as s:
                await s.execute(text("CREATE TABLE f (id INT PRIMARY KEY)"))
                await s.execute(text("INSERT INTO f VALUES (1)"))
                await s.commit()
            new = await asyncio.to_thread(fail_over_elsewhere, sb)
            before = binlog_pos(old)
            async with cluster.async_session() as s:
                await s.execute(text("INSERT INTO f VALUES (2)"))
                with pytest.raises(RetryableWriteError, match="read-only"):
                    await s.commit()
                await s.rollback()
            assert binlog_pos(old) == before, "a write was executed on the fenced old primary"
            assert cluster.primary_name == new.address
            async with cluster.async_session() as s:
                await s.execute(text("INSERT INTO f VALUES (2)"))
                await s.commit()
            assert count(new, "f") == 2

    run(work())


def test_an_account_read_only_stops_finds_the_new_primary_without_a_monitor(
    fresh_sandbox: Sandbox,
) -> None:
    """An account without SUPER / READ ONLY ADMIN gets the server's refusal (1290): nothing
    written, and — without a monitor — the cluster is re-probed at once, so the retry goes to
    the new primary instead of failing on the old one's pooled connections forever."""
    sb = fresh_sandbox
    sql(sb.primary, "CREATE USER app@'%' IDENTIFIED BY 'app-pw'")
    sql(sb.primary, f"GRANT ALL ON {DATABASE}.* TO app@'%'")
    sql(sb.primary, f"GRANT {monitor_privilege(sb)} ON *.* TO app@'%'")

    def app_url(node: SandboxNode) -> str:
        return f"mysql+pymysql://app:app-pw@{node.host}:{node.port}/{DATABASE}"

    with Cluster(app_url(sb.primary), [app_url(r) for r in sb.replicas]) as cluster:
        with cluster.session() as s:
            s.execute(text("CREATE TABLE f (id INT PRIMARY KEY)"))
            s.commit()
        new = fail_over_elsewhere(sb)
        with cluster.session() as s, pytest.raises(RetryableWriteError, match="read-only"):
            s.execute(text("INSERT INTO f VALUES (1)"))
        assert cluster.primary_name == new.address
        with cluster.session() as s:
            s.execute(text("INSERT INTO f VALUES (1)"))
            s.commit()
        assert count(new, "f") == 1


def test_a_text_set_autocommit_does_not_commit_on_a_fenced_primary(fresh_sandbox: Sandbox) -> None:
    """``SET autocommit = 1`` commits the open transaction: it is checked like a COMMIT."""
    sb = fresh_sandbox
    old = sb.primary
    with Cluster(sb.primary_url, sb.replica_urls) as cluster:
        with cluster.session() as s:
            s.execute(text("CREATE TABLE f (id INT PRIMARY KEY)"))
            s.commit()
        with cluster.session() as s:
            s.execute(text("INSERT INTO f VALUES (1)"))
            fail_over_elsewhere(sb)
            before = binlog_pos(old)
            with pytest.raises(RetryableWriteError, match="read-only"):
                s.execute(text("SET autocommit = 1"))
        assert binlog_pos(old) == before
        assert count(old, "f") == 0
