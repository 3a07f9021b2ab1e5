"""Routing against the docker-compose MySQL 8 cluster (needs Docker; not run on CI)."""

from __future__ import annotations

import contextlib
from typing import Any

import pymysql
import pytest
from sqlalchemy import text

from rwsplit import Cluster

pytestmark = pytest.mark.docker

PORTS = {"primary": 13306, "replica1": 13307, "replica2": 13308}


def _connect(port: int) -> pymysql.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)


def _ready(port: int) -> bool:
    try:
        with contextlib.closing(_connect(port)) as c, c.cursor() as cur:
            cur.execute("SHOW REPLICA STATUS" if port != PORTS["primary"] else "SELECT 1")
            row = cur.fetchone()
            return port == PORTS["primary"] or bool(row)
    except pymysql.err.Error:
        return False


@pytest.fixture(scope="session")
def compose_cluster(docker_services: Any) -> Cluster:
    for port in PORTS.values():
        docker_services.wait_until_responsive(timeout=180, pause=1, check=lambda p=port: _ready(p))
    return Cluster(
        f"mysql+pymysql://root@127.0.0.1:{PORTS['primary']}/rwsplit",
        [f"mysql+pymysql://root@127.0.0.1:{PORTS[r]}/rwsplit" for r in ("replica1", "replica2")],
    )


def _own_binlog_position(port: int) -> tuple[str, int]:
    with contextlib.closing(_connect(port)) as c, c.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
        assert row is not None
        return str(row[0]), int(row[1])


def test_writes_on_primary_reads_on_replicas(compose_cluster: Cluster) -> None:
    before = {r: _own_binlog_position(PORTS[r]) for r in ("replica1", "replica2")}
    with compose_cluster.session() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS dk (id INT PRIMARY KEY)"))
        s.execute(text("REPLACE INTO dk VALUES (1)"))
        s.commit()
    for _ in range(10):
        with compose_cluster.session() as s:
            s.execute(text("SELECT 1")).scalar_one()
    after = {r: _own_binlog_position(PORTS[r]) for r in ("replica1", "replica2")}
    assert before == after  # no write ran on a replica
