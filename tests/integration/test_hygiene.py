"""Connection hygiene, pins across commits, overrides and commit outcomes on real servers.

Every leak test runs on a cluster whose pools hold ONE connection, so the next session is sure
to get the connection the previous one used.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import (
    Cluster,
    ReadFailedError,
    TransactionOutcomeUnknownError,
)
from rwsplit.sandbox import DATABASE, Sandbox

from ..fix_sandbox import tx_variable
from .counters import delta, snapshot
from .util import run, sql, sql_threads_stopped, wait_until

pytestmark = pytest.mark.integration

ONE = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 5}


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "hyg_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    v: Mapped[int]


@pytest.fixture
def one(sandbox: Sandbox) -> Iterator[Cluster]:
    with Cluster(sandbox.primary_url, sandbox.replica_urls, engine_options=ONE) as c:
        Base.metadata.create_all(c.write_engine())
        with c.write_engine().begin() as conn:
            conn.execute(text("DELETE FROM hyg_items"))
        yield c


@pytest.fixture
def two(sandbox: Sandbox) -> Iterator[Cluster]:
    """Two pooled primary connections, handed out in turn (FIFO): a session that gives its
    connection back at a commit gets the other one next."""
    options = {"pool_size": 2, "max_overflow": 0, "pool_timeout": 5}
    with Cluster(sandbox.primary_url, sandbox.replica_urls, engine_options=options) as c:
        engine = c.write_engine()
        with engine.connect() as a, engine.connect() as b:
            assert (
                a.execute(text("SELECT CONNECTION_ID()")).scalar()
                != b.execute(text("SELECT CONNECTION_ID()")).scalar()
            )
        yield c


def primary_value(cluster: Cluster, expr: str) -> object:
    with cluster.session() as s, s.use_primary():
        return s.execute(text(f"SELECT {expr}")).scalar()


# ---------------------------------------------------------------------------- 1. no leaks


def test_use_does_not_leak_into_the_next_session(sandbox: Sandbox, one: Cluster) -> None:
    other = f"hyg_{uuid.uuid4().hex[:8]}"
    sql(sandbox.primary, f"CREATE DATABASE {other}")
    sql(sandbox.primary, f"CREATE TABLE {other}.hyg_items (id INT PRIMARY KEY, v INT)")
    try:
        with one.session() as s:
            s.execute(text(f"USE {other}"))
            s.commit()
        with one.session() as s:
            s.execute(text("INSERT INTO hyg_items (id, v) VALUES (1, 1)"))
            s.commit()
        assert sql(sandbox.primary, f"SELECT COUNT(*) FROM {other}.hyg_items") == [(0,)]
        assert sql(sandbox.primary, f"SELECT COUNT(*) FROM {DATABASE}.hyg_items") == [(1,)]
    finally:
        sql(sandbox.primary, f"DROP DATABASE {other}")


@pytest.mark.parametrize(
    ("statement", "expr", "default"),
    [
        ("SET time_zone = '+09:00'", "@@session.time_zone", "SYSTEM"),
        ("SET @discount = 50", "@discount", None),
        ("SET sql_mode = 'ANSI_QUOTES'", "@@session.sql_mode = @@global.sql_mode", 1),
        (
            "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            f"@@session.{tx_variable('isolation')} = @@global.{tx_variable('isolation')}",
            1,
        ),
    ],
)
def test_session_state_does_not_leak(
    one: Cluster, statement: str, expr: str, default: object
) -> None:
    with one.session() as s:
        s.execute(text(statement))
    assert primary_value(one, expr) == default


def test_autocommit_does_not_leak_so_rollback_still_rolls_back(one: Cluster) -> None:
    with one.session() as s:
        s.execute(text("SET autocommit = 1"))
    with one.session() as s:
        s.add(Item(id=7, v=7))
        s.flush()
        s.rollback()
    assert primary_value(one, "COUNT(*) FROM hyg_items WHERE id = 7") == 0


def test_a_procedure_that_sets_state_does_not_leak(sandbox: Sandbox, one: Cluster) -> None:
    sql(sandbox.primary, f"DROP PROCEDURE IF EXISTS {DATABASE}.hyg_set")
    sql(sandbox.primary, f"CREATE PROCEDURE {DATABASE}.hyg_set() SET @from_proc = 1")
    with one.session() as s:
        s.execute(text("CALL hyg_set()"))
        s.commit()
    assert primary_value(one, "@from_proc") is None


def test_sessions_that_set_no_state_keep_their_connection(one: Cluster) -> None:
    engine = one.write_engine()
    with one.session() as s:
        s.add(Item(id=1, v=1))
        s.commit()
    with engine.connect() as conn:
        first = conn.execute(text("SELECT CONNECTION_ID()")).scalar()
    for i in range(3):
        with one.session() as s:
            s.add(Item(id=10 + i, v=i))
            s.commit()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT CONNECTION_ID()")).scalar() == first


# ---------------------------------------------------------------------------- 2. pins hold


def test_user_variable_survives_commit_and_rollback(two: Cluster) -> None:
    with two.session() as s:
        s.execute(text("SET @x = 5"))
        s.commit()
        assert s.execute(text("SELECT @x")).scalar() == 5
        s.rollback()
        assert s.execute(text("SELECT @x")).scalar() == 5
        assert s.pins == {"session state"}


def test_temporary_table_survives_commit(one: Cluster, two: Cluster) -> None:
    with two.session() as s:
        s.execute(text("CREATE TEMPORARY TABLE hyg_tmp (a INT)"))
        s.execute(text("INSERT INTO hyg_tmp VALUES (1), (2)"))
        s.commit()
        assert s.execute(text("SELECT SUM(a) FROM hyg_tmp")).scalar() == 3
    with (
        one.session() as s,
        s.use_primary(),
        pytest.raises(DBAPIError, match="1146"),  # gone with its session
    ):
        s.execute(text("SELECT COUNT(*) FROM hyg_tmp"))


def test_named_lock_survives_commit_and_is_released(sandbox: Sandbox, two: Cluster) -> None:
    with two.session() as s:
        assert s.execute(text("SELECT GET_LOCK('hyg_job', 1)")).scalar() == 1
        s.commit()
        assert s.execute(text("SELECT RELEASE_LOCK('hyg_job')")).scalar() == 1
        assert not s.pins
    with contextlib.closing(sandbox.primary.connect()) as c, c.cursor() as cur:
        cur.execute("SELECT GET_LOCK('hyg_job', 1)")
        assert cur.fetchone() == (1,)


def test_a_lock_held_at_close_is_released_with_the_session(sandbox: Sandbox, one: Cluster) -> None:
    with one.session() as s:
        s.execute(text("SELECT GET_LOCK('hyg_left', 1)"))
        s.commit()
    with contextlib.closing(sandbox.primary.connect()) as c, c.cursor() as cur:
        cur.execute("SELECT GET_LOCK('hyg_left', 1)")
        assert cur.fetchone() == (1,)


# ---------------------------------------------------------------------------- 3./4. overrides


@pytest.mark.parametrize("form", ["statement", "bind_arguments", "execution_options"])
def test_a_write_forced_to_the_primary_is_sticky_and_causal(
    sandbox: Sandbox, one: Cluster, form: str
) -> None:
    stmt = insert(Item).values(id=100, v=1)
    with sql_threads_stopped(sandbox), one.session() as s:
        if form == "statement":
            s.execute(stmt.execution_options(rwsplit_target="primary"))
        elif form == "bind_arguments":
            s.execute(stmt, bind_arguments={"rwsplit_target": "primary"})
        else:
            s.execute(stmt, execution_options={"rwsplit_target": "primary"})
        assert s.on_primary
        assert s.scalar(select(Item.v).where(Item.id == 100)) == 1  # same transaction
        s.commit()
        token = s.causal_token
        assert token is not None
        with one.session(causal_token=token) as s2:  # the next request
            assert s2.scalar(select(Item.v).where(Item.id == 100)) == 1


def test_call_execution_options_are_honoured(sandbox: Sandbox, one: Cluster) -> None:
    with one.session() as s:
        sid = s.execute(
            text("SELECT @@server_id"), execution_options={"rwsplit_target": "primary"}
        ).scalar()
    assert sid == sandbox.primary.server_id


def test_use_primary_wins_over_a_statement_replica_request(sandbox: Sandbox, one: Cluster) -> None:
    stmt = text("SELECT @@server_id").execution_options(rwsplit_target="replica")
    with one.session() as s:
        with s.use_primary():
            assert s.execute(stmt).scalar() == sandbox.primary.server_id
        assert s.execute(stmt).scalar() != sandbox.primary.server_id


# ---------------------------------------------------------------------------- 5. outcomes


def _wait_for_ack_wait(sb: Sandbox, deadline: float = 20.0) -> None:
    wait_until(
        lambda: (
            sql(
                sb.primary,
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE STATE LIKE '%semi-sync ACK%'",
            )[0][0]
            > 0
        ),
        timeout=deadline,
        what="a commit waiting for a semi-sync ack",
    )


@pytest.mark.failover
@pytest.mark.parametrize("how", ["orm", "text"])
def test_primary_killed_at_commit_is_outcome_unknown_and_the_row_is_there(
    tmp_path_factory: pytest.TempPathFactory, how: str
) -> None:
    from tests.fix_sandbox import require_server

    require_server()
    sb = Sandbox(replicas=1, semi_sync=True, base_dir=tmp_path_factory.mktemp("commitkill"))
    sb.start()
    try:
        sql(sb.primary, f"CREATE TABLE {DATABASE}.hyg_items (id INT PRIMARY KEY, v INT)")
        sb.wait_caught_up()
        # The replica stops acknowledging: every commit now waits inside the primary, after
        # its binary log has it (the sandbox's semi-sync: AFTER_SYNC, no timeout, waiting
        # with no replica connected) — the moment to kill the primary.
        run(sb.replicas[0], lambda f: f.stop_io_thread())
        killer = threading.Thread(target=lambda: (_wait_for_ack_wait(sb), sb.kill("primary")))
        with Cluster(sb.primary_url, sb.replica_urls) as cluster:
            s = cluster.session()
            s.add(Item(id=1, v=1))
            s.flush()
            killer.start()
            with pytest.raises(TransactionOutcomeUnknownError, match="may or may not"):
                if how == "orm":
                    s.commit()
                else:
                    s.execute(text("COMMIT"))
            killer.join(30)
            s.close()
        sb.restart("primary")
        # Crash recovery commits what the binary log holds: the row IS there — a retry
        # after "RetryableWriteError" would have written it twice.
        assert sql(sb.primary, f"SELECT v FROM {DATABASE}.hyg_items WHERE id = 1") == [(1,)]
    finally:
        sb.stop()


@pytest.mark.failover
def test_a_failed_read_is_a_read_error(fresh_sandbox: Sandbox) -> None:
    with Cluster(fresh_sandbox.primary_url, []) as cluster:
        with cluster.session() as s:
            s.execute(text("SELECT 1")).scalar()
        fresh_sandbox.kill("primary")
        with cluster.session() as s, pytest.raises(ReadFailedError, match="without a monitor"):
            s.execute(text("SELECT 1")).scalar()


# ---------------------------------------------------------------------------- 8. bad replica


def test_a_replica_refusing_the_login_is_taken_out(sandbox: Sandbox) -> None:
    bad = sandbox.replica_urls[1].replace("root@", "nobody:wrong@", 1)
    assert bad != sandbox.replica_urls[1], "the sandbox URL format changed"
    with Cluster(sandbox.primary_url, [sandbox.replica_urls[0], bad], down_retry_interval=60) as c:
        before = snapshot(sandbox)
        with c.session() as s:
            ids = [s.execute(text("SELECT @@server_id")).scalar() for _ in range(6)]
        assert ids == [sandbox.replicas[0].server_id] * 6
        down = [n for n in c.topology.nodes if not n.healthy]
        assert [n.name for n in down] == [sandbox.replicas[1].address]
        assert "1045" in (down[0].error or "")
        assert delta(before, snapshot(sandbox))[sandbox.replicas[0].name]["Com_select"] >= 6


def test_timeouts_reach_the_driver(sandbox: Sandbox) -> None:
    with Cluster(sandbox.primary_url, sandbox.replica_urls, replica_read_timeout=0.5) as c:
        started = time.monotonic()
        with c.session() as s, pytest.raises(ReadFailedError, match="replica_read_timeout"):
            # SLEEP(2) outlives the replica's read timeout (0.5 s): the driver gives up. A slow
            # statement is not a dead replica: not re-run, nobody marked down (issue 17, #7).
            s.execute(text("SELECT SLEEP(2) + 1")).scalar()
        assert time.monotonic() - started < 2
        assert all(n.healthy for n in c.topology.nodes)
