"""MySQL with GTIDs on: the commit's GTID from its own OK packet, the applied-token cache for
GTID sets, and what a monitor account without privileges is told."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster
from rwsplit.errors import TopologyError
from rwsplit.routing.consistency import AppliedTokens
from rwsplit.sandbox import Sandbox
from rwsplit.topology.probe import discover

from .util import general_log, sql

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server("mysql", reason="MySQL GTID sets and session_track_gtids"),
]


@pytest.fixture
def table(sandbox: Sandbox) -> Iterator[Sandbox]:
    with contextlib.closing(sandbox.primary.connect()) as c, c.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS rwsplit.own")
        cur.execute("CREATE TABLE rwsplit.own (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
    sandbox.wait_caught_up()
    yield sandbox


def test_token_is_the_commits_own_gtid_from_the_ok_packet(table: Sandbox) -> None:
    """Defect: every commit that wrote paid ``SELECT @@global.gtid_executed``."""
    uuid = str(sql(table.primary, "SELECT @@server_uuid")[0][0])
    with (
        Cluster(table.primary_url, table.replica_urls) as c,
        general_log(table.primary) as log,
    ):
        tokens = []
        for i in range(5):
            with c.session() as s:
                s.execute(text("INSERT INTO own (v) VALUES (:v)"), {"v": i})
                s.commit()
                tokens.append(s.causal_token)
    # One GTID each (the session's own), not the server's whole executed set.
    assert all(t is not None and re.fullmatch(rf"{uuid}:\d+", t) for t in tokens), tokens
    numbers = [int(str(t).rsplit(":", 1)[1]) for t in tokens]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5
    assert not [q for q in log if q.lower().startswith("select @@global.gtid_executed")]
    assert any("session_track_gtids" in q for q in log)


def test_tracking_is_set_again_after_the_check_in_reset(table: Sandbox) -> None:
    with Cluster(
        table.primary_url, table.replica_urls, engine_options={"pool_size": 1, "max_overflow": 0}
    ) as c:
        with c.session() as s:
            s.execute(text("SET @dirty = 1"))  # the connection is reset at check-in
            s.execute(text("INSERT INTO own (v) VALUES (1)"))
            s.commit()
        with general_log(table.primary) as log:
            for _ in range(3):
                with c.session() as s:
                    s.execute(text("INSERT INTO own (v) VALUES (2)"))
                    s.commit()
                    assert s.causal_token is not None and "," not in s.causal_token
    assert not [q for q in log if q.lower().startswith("select @@global.gtid_executed")]


def test_a_gtid_set_seen_applied_is_not_waited_for_again(
    table: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect: the cache understood only MariaDB GTIDs: every read after a write waited."""
    monkeypatch.setattr(AppliedTokens, "MAX_AGE", 300.0)  # a slow machine must not expire it
    with Cluster(table.primary_url, table.replica_urls, causal_timeout=5) as c:
        with c.session() as s:
            s.execute(text("INSERT INTO own (v) VALUES (7)"))
            s.commit()
            token = s.causal_token
        assert token is not None
        for _ in range(3 * len(table.replicas)):
            with c.session(causal_token=token) as s2:
                s2.execute(text("SELECT COUNT(*) FROM own")).scalar_one()
        waits = sum(n["causal_waits"] for n in c.stats().to_dict()["nodes"].values())
        assert waits == len(table.replicas)  # one per replica, the rest known applied


def test_a_monitor_account_without_replication_client_is_told_so(sandbox: Sandbox) -> None:
    """Defect: "cannot reach any seed node" when the account lacked REPLICATION CLIENT."""
    sql(sandbox.primary, "CREATE USER IF NOT EXISTS 'noprivs'@'%' IDENTIFIED BY 'np'")
    sql(sandbox.primary, "GRANT SELECT ON rwsplit.* TO 'noprivs'@'%'")
    sandbox.wait_caught_up()
    url = re.sub(r"//[^@]*@", "//noprivs:np@", sandbox.primary_url)
    try:
        with pytest.raises(TopologyError) as err:
            discover([url])
        message = str(err.value)
        assert "REPLICATION CLIENT" in message
        assert "cannot reach" not in message
    finally:
        sql(sandbox.primary, "DROP USER IF EXISTS 'noprivs'@'%'")


def test_lag_below_a_second_from_the_applier_timestamps(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Defect: lag came in whole seconds (Seconds_Behind_Source): max_replica_lag < 1 flapped."""
    from ..fix_sandbox import require_server

    require_server()
    sb = Sandbox(
        replicas=1,
        base_dir=tmp_path_factory.mktemp("applier-lag"),
        server_args=["--performance-schema=ON"],
    )
    sb.start()
    try:
        primary, replica = sb.nodes
        sql(primary, "CREATE TABLE rwsplit.lag (id INT PRIMARY KEY, v INT)")
        sql(primary, "INSERT INTO rwsplit.lag VALUES (1, 0)")
        sb.wait_caught_up()
        with Cluster(sb.primary_url, sb.replica_urls) as c:
            c.refresh()
            assert c.topology.node(replica.address).lag_seconds == 0.0
            # Hold the row on the replica: the applier waits for the lock, the transaction it
            # applies ages, and Seconds_Behind_Source still says 0 for a while.
            with contextlib.closing(replica.connect()) as blocker, blocker.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("SELECT v FROM rwsplit.lag WHERE id = 1 FOR UPDATE")
                sql(primary, "UPDATE rwsplit.lag SET v = 1 WHERE id = 1")
                deadline = time.monotonic() + 10
                lag = 0.0
                while time.monotonic() < deadline:
                    lag = c.refresh().node(replica.address).lag_seconds or 0.0
                    if lag >= 0.3:
                        break
                    time.sleep(0.05)
                cur.execute("ROLLBACK")
            assert 0.3 <= lag < 10 and lag != int(lag), lag
            sb.wait_caught_up()
            assert c.refresh().node(replica.address).lag_seconds == 0.0
    finally:
        sb.stop()
