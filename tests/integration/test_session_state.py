"""Session state through a RoutingSession on a real sandbox: every statement runs where its
state lives, and the application sees the same results as on a single server."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster, RoutingError, healed_statements
from rwsplit.sandbox import Sandbox

from ..fix_sandbox import in_transaction_sql
from .counters import delta, snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def table(sandbox: Sandbox, cluster: Cluster) -> Iterator[str]:
    name = f"st_{uuid.uuid4().hex[:8]}"
    with cluster.write_engine().begin() as conn:
        conn.execute(text(f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"))
        conn.execute(text(f"INSERT INTO {name} (v) VALUES (1), (2), (3)"))
    sandbox.wait_caught_up()
    yield name
    with cluster.write_engine().begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


def server_id(session: object, **kw: object) -> int:
    return int(session.execute(text("SELECT @@server_id")).scalar_one())  # type: ignore[attr-defined]


def test_user_variable_set_then_read(sandbox: Sandbox, cluster: Cluster) -> None:
    with cluster.session() as s:
        s.execute(text("SET @x = 1"))
        assert s.execute(text("SELECT @x")).scalar_one() == 1
        assert "session state" in s.pins
        assert server_id(s) == sandbox.primary.server_id
        s.execute(text("SELECT 42 INTO @y"))
        assert s.execute(text("SELECT @y + @x")).scalar_one() == 43
    with cluster.session() as s:  # a new session starts unpinned
        assert not s.pins
        assert server_id(s) != sandbox.primary.server_id


def test_temporary_table_created_then_read(sandbox: Sandbox, cluster: Cluster) -> None:
    with cluster.session() as s:
        s.execute(text("CREATE TEMPORARY TABLE tmp_rw (a INT)"))
        s.execute(text("INSERT INTO tmp_rw VALUES (7), (8)"))
        assert s.execute(text("SELECT SUM(a) FROM tmp_rw")).scalar_one() == 15
        assert "temporary table tmp_rw" in s.pins
        s.execute(text("DROP TEMPORARY TABLE tmp_rw"))
        assert "temporary table tmp_rw" not in s.pins
        s.commit()
        # Nothing connection-bound is left: reads go back to the replicas.
        assert server_id(s) != sandbox.primary.server_id


def test_named_lock_taken_and_released_on_one_connection(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    lock = f"rw_{uuid.uuid4().hex[:8]}"
    with cluster.session() as s:
        assert s.execute(text(f"SELECT GET_LOCK('{lock}', 5)")).scalar_one() == 1
        assert s.pins == {"named lock"}
        holder = s.execute(text(f"SELECT IS_USED_LOCK('{lock}') = CONNECTION_ID()")).scalar_one()
        assert holder == 1
        # RELEASE_LOCK returns 0 (not ours) or NULL (no such lock) on any other connection.
        assert s.execute(text(f"SELECT RELEASE_LOCK('{lock}')")).scalar_one() == 1
        assert not s.pins
        s.commit()
        assert server_id(s) != sandbox.primary.server_id


def test_insert_then_last_insert_id(cluster: Cluster, table: str) -> None:
    with cluster.session() as s:
        s.execute(text(f"INSERT INTO {table} (v) VALUES (99)"))
        new_id = s.execute(text("SELECT LAST_INSERT_ID()")).scalar_one()
        assert new_id > 3
        assert s.execute(text(f"SELECT v FROM {table} WHERE id = {new_id}")).scalar_one() == 99
        s.commit()


def test_found_rows_runs_where_the_counted_select_ran(cluster: Cluster, table: str) -> None:
    with cluster.session() as s:
        rows = s.execute(text(f"SELECT SQL_CALC_FOUND_ROWS id FROM {table} LIMIT 1")).all()
        assert len(rows) == 1
        assert s.execute(text("SELECT FOUND_ROWS()")).scalar_one() == 3


def test_read_only_transaction_runs_on_one_replica_and_is_ended(
    sandbox: Sandbox, table: str
) -> None:
    # A private Cluster: its replica pools then hold only this test's connections.
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as c:
        before = snapshot(sandbox)
        with c.session() as s:
            s.execute(text("START TRANSACTION READ ONLY"))
            assert s.in_read_only_transaction
            ids = {server_id(s) for _ in range(4)}
            assert len(ids) == 1 and ids != {sandbox.primary.server_id}
            if in_txn := in_transaction_sql():
                assert s.execute(text(in_txn)).scalar_one() == 1
            assert s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 3
            with pytest.raises(RoutingError, match="READ ONLY"):
                s.execute(text(f"UPDATE {table} SET v = 0"))
            s.execute(text("COMMIT"))
            assert not s.in_read_only_transaction
        # Left open on purpose: the session closes without COMMIT.
        with c.session() as s:
            s.execute(text("START TRANSACTION READ ONLY"))
            node = s.read_only_node
            s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
        assert node is not None
        ro_engine = c.engine_for(node, writable=False)
        assert ro_engine.pool.checkedin() == 1
        with ro_engine.connect() as conn:  # the one pooled connection
            if in_txn := in_transaction_sql():
                assert conn.execute(text(in_txn)).scalar_one() == 0
        d = delta(before, snapshot(sandbox))
        assert all(d[n.name]["own_binlog_writes"] == 0 for n in sandbox.replicas)
        assert d["primary"]["own_binlog_writes"] == 0


def test_autocommit_off_opens_a_transaction_on_the_primary(
    sandbox: Sandbox, cluster: Cluster, table: str
) -> None:
    with cluster.session() as s:
        s.execute(text("SET autocommit = 0"))
        s.execute(text(f"INSERT INTO {table} (v) VALUES (5)"))
        assert s.on_primary
        assert s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 4
        s.rollback()
    with cluster.session() as s:
        assert s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 3


@pytest.mark.parametrize(
    ("sql", "on_primary"),
    [
        ("/* rwsplit:primary */ SELECT @@server_id", True),
        ("-- maxscale route to master\nSELECT @@server_id", True),
        ("SELECT @@server_id -- maxscale route to slave", False),
        ("/* rwsplit:replica */ SELECT @@server_id + LAST_INSERT_ID() * 0", False),
    ],
)
def test_routing_hints(sandbox: Sandbox, cluster: Cluster, sql: str, on_primary: bool) -> None:
    with cluster.session() as s:
        got = s.execute(text(sql)).scalar_one()
    assert (got == sandbox.primary.server_id) is on_primary


@pytest.fixture
def writing_function(sandbox: Sandbox, cluster: Cluster, table: str) -> Iterator[str]:
    name = f"fn_{uuid.uuid4().hex[:8]}"
    with (
        contextlib.closing(sandbox.primary.connect(database="rwsplit")) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(
            f"CREATE FUNCTION {name}() RETURNS INT DETERMINISTIC "
            f"BEGIN INSERT INTO {table} (v) VALUES (100); RETURN LAST_INSERT_ID(); END"
        )
    sandbox.wait_caught_up()
    yield name
    with (
        contextlib.closing(sandbox.primary.connect(database="rwsplit")) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f"DROP FUNCTION IF EXISTS {name}")


def test_self_healing_reruns_a_rejected_write_on_the_primary(
    sandbox: Sandbox,
    cluster: Cluster,
    table: str,
    writing_function: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = snapshot(sandbox)
    healed_before = healed_statements(cluster)
    with caplog.at_level(logging.WARNING, logger="rwsplit.session"), cluster.session() as s:
        # The hint is wrong: the function writes. A replica refuses it (error 1792) ...
        new_id = s.execute(text(f"/* rwsplit:replica */ SELECT {writing_function}()")).scalar()
        s.commit()
    # ... and the application sees success: it ran on the primary.
    assert new_id > 3
    assert healed_statements(cluster) == healed_before + 1
    assert any(
        "refused a statement as read-only" in r.getMessage() and writing_function in r.getMessage()
        for r in caplog.records
    )
    sandbox.wait_caught_up()
    d = delta(before, snapshot(sandbox))
    assert d["primary"]["own_binlog_writes"] == 1
    assert all(d[n.name]["own_binlog_writes"] == 0 for n in sandbox.replicas)
    with cluster.session() as s:
        assert s.execute(text(f"SELECT COUNT(*) FROM {table} WHERE v = 100")).scalar_one() == 1
