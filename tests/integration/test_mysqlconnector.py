"""Oracle's mysql-connector-python (``mysql+mysqlconnector://``) under routing, on the
sandbox's server (MariaDB or MySQL): writes go to the primary only (the replicas' own binary
logs do not move), plain reads to the replicas, and a read after a write waits for its GTID
on a replica — or, with the replicas' SQL threads stopped, reads the primary and sees it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster
from rwsplit.sandbox import Sandbox

from .util import own_writes, sql_threads_stopped

pytest.importorskip("mysql.connector")

pytestmark = pytest.mark.integration


def _connector(url: str) -> str:
    return url.replace("mysql+pymysql://", "mysql+mysqlconnector://", 1)


@pytest.fixture
def cluster(sandbox: Sandbox) -> Iterator[Cluster]:
    c = Cluster(_connector(sandbox.primary_url), [_connector(u) for u in sandbox.replica_urls])
    try:
        yield c
    finally:
        c.close()


def test_writes_on_the_primary_reads_on_replicas_causal_read(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    assert cluster.write_engine().dialect.driver == "mysqlconnector"
    table = f"rwsplit_test.conn_{uuid.uuid4().hex[:8]}"
    before = {r.name: own_writes(r) for r in sandbox.replicas}
    with cluster.session() as s:
        s.execute(text("CREATE DATABASE IF NOT EXISTS rwsplit_test"))
        s.execute(text(f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT)"))
        s.execute(text(f"INSERT INTO {table} VALUES (1, 10)"))
        s.commit()
        token = s.causal_token
    assert token  # the commit's position, taken through this driver
    with cluster.session(causal_token=token) as s:
        assert s.execute(text(f"SELECT v FROM {table} WHERE id = 1")).scalar() == 10
    stats = cluster.stats().nodes
    assert sum(n.reads for name, n in stats.items() if n.role == "replica") >= 1
    assert stats[cluster.primary_name or ""].writes >= 3
    with sql_threads_stopped(sandbox):
        with cluster.session() as s:
            s.execute(text(f"UPDATE {table} SET v = 20 WHERE id = 1"))
            s.commit()
            token = s.causal_token
        with cluster.session(causal_token=token) as s:  # replicas never get there: the primary
            assert s.execute(text(f"SELECT v FROM {table} WHERE id = 1")).scalar() == 20
    with cluster.session() as s:
        s.execute(text(f"DROP TABLE {table}"))
        s.commit()
    # No write reached a replica: their own binary logs did not move.
    assert {r.name: own_writes(r) for r in sandbox.replicas} == before
