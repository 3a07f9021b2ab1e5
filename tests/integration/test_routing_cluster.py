"""A RoutingSession over a real sandbox cluster: where statements really ran."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import String, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import Cluster, NoReplicaAvailableError
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot
from .util import run

pytestmark = pytest.mark.integration


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    balance: Mapped[int] = mapped_column(default=0)


@pytest.fixture
def schema(sandbox: Sandbox, cluster: Cluster) -> Cluster:
    Base.metadata.drop_all(cluster.write_engine())
    Base.metadata.create_all(cluster.write_engine())
    sandbox.wait_caught_up()
    # Warm up: SQLAlchemy's first connect on an engine runs a few queries of its own.
    with cluster.session() as s:
        for _ in range(4):
            s.execute(select(func.count()).select_from(Account)).scalar_one()
    return cluster


def test_mixed_workload_writes_only_on_primary_reads_spread(
    sandbox: Sandbox, schema: Cluster
) -> None:
    cluster = schema
    Session = cluster.sessionmaker()
    before = snapshot(sandbox)
    inserts = updates = reads = 0
    for i in range(60):
        with Session() as s:
            s.add(Account(name=f"a{i}", balance=i))
            s.commit()
            inserts += 1
        with Session() as s:
            s.execute(update(Account).where(Account.name == f"a{i}").values(balance=i + 1))
            s.commit()
            updates += 1
        with Session() as s:
            for _ in range(5):
                s.execute(select(Account).where(Account.id == 1)).all()
                reads += 1
    d = delta(before, snapshot(sandbox))

    primary, replicas = d["primary"], [d[n.name] for n in sandbox.replicas]
    # Every write ran on the primary ...
    assert primary["Com_insert"] == inserts
    assert primary["Com_update"] == updates
    assert primary["own_binlog_writes"] == inserts + updates
    # ... none on a replica: their own binary logs did not move.
    assert all(r["own_binlog_writes"] == 0 for r in replicas)
    # Reads went to the replicas, spread within 20% of the mean.
    # No SELECT on the primary at all: read_your_writes="gtid" takes each commit's GTID from
    # the COMMIT's own OK packet (session tracking), not from a `SELECT @@last_gtid`.
    assert primary["Com_select"] == 0
    selects = [r["Com_select"] for r in replicas]
    assert sum(selects) == reads
    mean = reads / len(selects)
    assert all(abs(s - mean) <= 0.2 * mean for s in selects), selects


def test_transaction_reads_its_own_write(sandbox: Sandbox, schema: Cluster) -> None:
    name = f"own-{uuid.uuid4().hex[:8]}"
    before = snapshot(sandbox)
    with schema.session() as s:
        s.execute(insert(Account).values(name=name, balance=7))
        got = s.execute(select(Account.balance).where(Account.name == name)).scalar_one()
        assert got == 7
        s.rollback()
    d = delta(before, snapshot(sandbox))
    assert d["primary"]["Com_select"] == 1
    assert all(d[n.name]["Com_select"] == 0 for n in sandbox.replicas)


def test_orm_flush_then_query_in_same_transaction(schema: Cluster) -> None:
    with schema.session() as s:
        s.add(Account(name="flushed", balance=3))
        s.flush()
        assert s.on_primary
        assert s.scalars(select(Account).where(Account.name == "flushed")).one().balance == 3
        s.rollback()
    with schema.session() as s:
        assert not s.on_primary


def test_replica_connections_are_read_only(cluster: Cluster) -> None:
    replica = cluster.topology.replicas[0]
    engine = cluster.engine_for(replica, writable=False)
    with engine.connect() as conn, pytest.raises(OperationalError) as info:
        conn.execute(text("CREATE TABLE must_not_exist (a INT)"))
    assert info.value.orig.args[0] == 1792  # Cannot execute statement in a READ ONLY transaction


def test_use_primary_block_runs_reads_on_primary(sandbox: Sandbox, schema: Cluster) -> None:
    before = snapshot(sandbox)
    with schema.session() as s, s.use_primary():
        s.execute(select(Account).limit(1)).all()
    d = delta(before, snapshot(sandbox))
    assert d["primary"]["Com_select"] == 1


def test_killing_a_replica_does_not_fail_reads(
    fresh_sandbox: Sandbox, fresh_cluster: Cluster
) -> None:
    with fresh_cluster.session() as s:
        s.execute(text("CREATE TABLE k (id INT PRIMARY KEY)"))
        s.execute(text("INSERT INTO k VALUES (1)"))
        s.commit()
    fresh_sandbox.wait_caught_up()
    Session = fresh_cluster.sessionmaker()
    results = []
    for i in range(40):
        if i == 10:
            fresh_sandbox.kill("replica1")
        with Session() as s:
            results.append(s.execute(text("SELECT COUNT(*) FROM k")).scalar_one())
    assert results == [1] * 40
    down = [n for n in fresh_cluster.topology.nodes if not n.healthy]
    assert [n.name for n in down] == [fresh_sandbox.node("replica1").address]


def test_all_replicas_down_falls_back_or_raises(fresh_sandbox: Sandbox) -> None:
    with Cluster(
        fresh_sandbox.primary_url, fresh_sandbox.replica_urls, down_retry_interval=60
    ) as c:
        for r in fresh_sandbox.replicas:
            fresh_sandbox.kill(r.name)
        with c.session() as s:
            assert s.execute(text("SELECT 1")).scalar_one() == 1  # served by the primary
    with (
        Cluster(
            fresh_sandbox.primary_url,
            fresh_sandbox.replica_urls,
            fallback_to_primary=False,
            down_retry_interval=60,
        ) as c,
        c.session() as s,
        pytest.raises(NoReplicaAvailableError),
    ):
        s.execute(text("SELECT 1"))


def test_replica_comes_back_after_restart(fresh_sandbox: Sandbox) -> None:
    with Cluster(
        fresh_sandbox.primary_url, fresh_sandbox.replica_urls, down_retry_interval=0.2
    ) as c:
        fresh_sandbox.kill("replica2")
        for _ in range(4):
            with c.session() as s:
                s.execute(text("SELECT 1")).scalar_one()
        addr = fresh_sandbox.node("replica2").address
        assert not c.topology.node(addr).healthy
        fresh_sandbox.restart("replica2")
        run(fresh_sandbox.node("replica2"), lambda f: f.start_replication())
        fresh_sandbox.wait_replica_running(fresh_sandbox.node("replica2"))
        import time

        deadline = time.monotonic() + 10
        while not c.topology.node(addr).healthy and time.monotonic() < deadline:
            with c.session() as s:
                s.execute(text("SELECT 1")).scalar_one()
        assert c.topology.node(addr).healthy
