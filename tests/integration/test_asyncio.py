"""asyncio sessions on real replication, both asyncio drivers: the same routing as sync.

Where statements ran is read from the servers themselves: ``@@server_id`` in the result,
``Com_select``, and each replica's own binary log (no write may ever land there).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import warnings
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import ConfigurationError, RetryableWriteError, RoutingError, healed_statements
from rwsplit.asyncio import AsyncRoutingSession
from rwsplit.sandbox import Sandbox

from ..fix_sandbox import in_transaction_sql
from .async_util import DRIVERS, async_cluster, async_url, run, sql_threads_stopped, table
from .counters import delta, snapshot
from .util import sql

pytestmark = pytest.mark.integration


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _server_ids(sb: Sandbox) -> tuple[int, set[int]]:
    return sb.primary.server_id, {r.server_id for r in sb.replicas}


async def _server_id(s: AsyncRoutingSession, sql_text: str = "SELECT @@server_id") -> int:
    return int((await s.execute(text(sql_text))).scalar_one())


def test_reads_go_to_replicas_and_writes_to_the_primary(sandbox: Sandbox, driver: str) -> None:
    primary_id, replica_ids = _server_ids(sandbox)
    with table(sandbox) as t:
        before = snapshot(sandbox)

        async def work() -> list[int]:
            async with async_cluster(sandbox, driver) as c:
                Session = c.async_sessionmaker()
                for i in range(10):
                    async with Session() as s:
                        await s.execute(text(f"INSERT INTO {t} VALUES ({i}, {i})"))
                        await s.commit()
                seen = []
                for _ in range(20):
                    async with Session() as s:  # a new session: no causal wait
                        seen.append(await _server_id(s, f"SELECT @@server_id FROM {t} LIMIT 1"))
                return seen

        seen = run(work())
        sandbox.wait_caught_up()
        d = delta(before, snapshot(sandbox))
    assert set(seen) == replica_ids  # every read on a replica, both of them used
    assert all(d[r.name]["Com_select"] >= 10 for r in sandbox.replicas)
    assert d["primary"]["own_binlog_writes"] == 10
    assert all(d[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)
    assert primary_id not in seen


def test_read_after_commit_is_not_stale_on_lagging_replicas(sandbox: Sandbox, driver: str) -> None:
    with table(sandbox) as t, sql_threads_stopped(sandbox):

        async def work() -> tuple[object, object, object]:
            async with async_cluster(sandbox, driver, causal_timeout=0.2) as c:
                async with c.async_session() as s:
                    await s.execute(text(f"INSERT INTO {t} VALUES (1, 1)"))
                    await s.commit()
                    first = (await s.execute(text(f"SELECT v FROM {t} WHERE id = 1"))).scalar()
                    await s.execute(text(f"UPDATE {t} SET v = 2 WHERE id = 1"))
                    await s.commit()
                    second = (await s.execute(text(f"SELECT v FROM {t} WHERE id = 1"))).scalar()
                    token = s.causal_token
                assert token is not None
                # Another request carrying the token (a cookie after a redirect).
                async with c.async_session(causal_token=token) as s:
                    later = (await s.execute(text(f"SELECT v FROM {t} WHERE id = 1"))).scalar()
                return first, second, later

        assert run(work()) == (1, 2, 2)


def test_without_read_your_writes_the_lagging_replica_is_stale(
    sandbox: Sandbox, driver: str
) -> None:
    """The control for the test above: the same unit with the feature off reads stale data."""
    with table(sandbox) as t, sql_threads_stopped(sandbox):

        async def work() -> object:
            c = async_cluster(sandbox, driver, read_your_writes="off")
            async with c, c.async_session() as s:
                await s.execute(text(f"INSERT INTO {t} VALUES (1, 1)"))
                await s.commit()
                return (await s.execute(text(f"SELECT v FROM {t} WHERE id = 1"))).scalar()

        assert run(work()) is None


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "async_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(40))


def test_orm_reload_after_commit_reads_its_own_write(sandbox: Sandbox, driver: str) -> None:
    """``await session.refresh()`` after commit: a reload in a new transaction, on a lagging
    replica."""

    async def work() -> str:
        async with async_cluster(sandbox, driver, causal_timeout=0.2) as c:
            async with c.async_session() as s:
                await s.run_sync(lambda ss: Base.metadata.drop_all(ss.connection()))
                await s.run_sync(lambda ss: Base.metadata.create_all(ss.connection()))
                await s.commit()
            await asyncio.to_thread(sandbox.wait_caught_up)
            with sql_threads_stopped(sandbox):
                async with c.async_session() as s:
                    note = Note(id=1, body="v1")
                    s.add(note)
                    await s.commit()
                    note.body = "v2"
                    await s.commit()
                    await s.refresh(note)
                    return note.body

    assert run(work()) == "v2"


def test_routing_rules_are_the_sync_sessions(sandbox: Sandbox, driver: str) -> None:
    primary_id, replica_ids = _server_ids(sandbox)
    with table(sandbox) as t:

        async def work() -> None:
            async with async_cluster(sandbox, driver) as c:
                async with c.async_session() as s:
                    assert await _server_id(s) in replica_ids
                    hinted = "/* rwsplit:primary */ SELECT @@server_id"
                    assert await _server_id(s, hinted) == primary_id
                    stmt = select(text("@@server_id")).execution_options(rwsplit_target="primary")
                    assert (await s.execute(stmt)).scalar_one() == primary_id
                    with s.use_primary():
                        assert s.on_primary
                        assert await _server_id(s) == primary_id
                    assert not s.on_primary
                # Session state pins the session to the primary until it is closed.
                async with c.async_session() as s:
                    await s.execute(text("SET @rwsplit_x = 5"))
                    assert s.pins == frozenset({"session state"})
                    assert (await s.execute(text("SELECT @rwsplit_x"))).scalar_one() == 5
                    assert await _server_id(s) == primary_id
                # After a write the transaction sticks to the primary until it ends.
                async with c.async_session() as s:
                    await s.execute(text(f"INSERT INTO {t} VALUES (1, 1)"))
                    assert await _server_id(s) == primary_id
                    await s.commit()
                # A locking read goes to the primary.
                async with c.async_session() as s:
                    locking = f"SELECT @@server_id FROM {t} WHERE id = 1 FOR UPDATE"
                    assert await _server_id(s, locking) == primary_id
                    await s.rollback()
                # START TRANSACTION READ ONLY: one replica connection for the transaction.
                async with c.async_session() as s:
                    await s.execute(text("START TRANSACTION READ ONLY"))
                    assert s.in_read_only_transaction
                    ids = {await _server_id(s) for _ in range(4)}
                    assert len(ids) == 1 and ids <= replica_ids
                    with pytest.raises(RoutingError, match="READ ONLY"):
                        await s.execute(text(f"INSERT INTO {t} VALUES (2, 2)"))
                    await s.execute(text("COMMIT"))
                    assert not s.in_read_only_transaction
                # Left open on purpose: the session closes without COMMIT, and the pool ends it.
                async with c.async_session() as s:
                    await s.execute(text("START TRANSACTION READ ONLY"))
                    sid = await _server_id(s)
                    if in_txn := in_transaction_sql():
                        assert (await s.execute(text(in_txn))).scalar_one() == 1
                replica = next(r for r in sandbox.replicas if r.server_id == sid)
                engine = c.engine_for(replica.address, writable=False)
                assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
                async with AsyncEngine(engine).connect() as conn:  # that pooled connection
                    if in_txn := in_transaction_sql():
                        assert (await conn.execute(text(in_txn))).scalar() == 0

        run(work())


def test_self_healing_reruns_a_rejected_write_on_the_primary(
    sandbox: Sandbox, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    fn = f"fn_{uuid.uuid4().hex[:8]}"
    with table(sandbox, "id INT AUTO_INCREMENT PRIMARY KEY, v INT") as t:
        sql(
            sandbox.primary,
            f"CREATE FUNCTION rwsplit.{fn}() RETURNS INT DETERMINISTIC "
            f"BEGIN INSERT INTO rwsplit.{t} (v) VALUES (100); RETURN LAST_INSERT_ID(); END",
        )
        sandbox.wait_caught_up()
        before = snapshot(sandbox)

        async def work() -> tuple[int, int, int]:
            async with async_cluster(sandbox, driver) as c, c.async_session() as s:
                # The hint is wrong: the function writes, and a replica refuses it (1792).
                new_id = (await s.execute(text(f"/* rwsplit:replica */ SELECT {fn}()"))).scalar()
                await s.commit()
                return int(new_id or 0), s.healed, healed_statements(c)

        try:
            with caplog.at_level(logging.WARNING, logger="rwsplit.session"):
                new_id, healed, total = run(work())
            sandbox.wait_caught_up()
            d = delta(before, snapshot(sandbox))
        finally:
            sql(sandbox.primary, f"DROP FUNCTION IF EXISTS rwsplit.{fn}")
    assert new_id == 1 and healed == 1 and total == 1
    assert any("refused a statement as read-only" in r.getMessage() for r in caplog.records)
    assert d["primary"]["own_binlog_writes"] == 1
    assert all(d[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)


def test_a_killed_primary_connection_is_a_retryable_write_error(
    sandbox: Sandbox, driver: str
) -> None:
    with table(sandbox) as t:

        async def work() -> None:
            async with async_cluster(sandbox, driver) as c:
                async with c.async_session() as s:
                    await s.execute(text(f"INSERT INTO {t} VALUES (1, 1)"))
                    conn_id = (await s.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
                    await asyncio.to_thread(sql, sandbox.primary, f"KILL {int(conn_id)}")
                    with pytest.raises(RetryableWriteError, match="retry the whole unit"):
                        await s.execute(text(f"INSERT INTO {t} VALUES (2, 2)"))
                # The retry, in a new session, succeeds.
                async with c.async_session() as s:
                    await s.execute(text(f"INSERT INTO {t} VALUES (2, 2)"))
                    await s.commit()

        run(work())
        rows = sql(sandbox.primary, f"SELECT id FROM rwsplit.{t} ORDER BY id")
    assert rows == [(2,)]


def test_monitor_probes_async_urls(sandbox: Sandbox, driver: str) -> None:
    """The monitor probes with PyMySQL whatever driver the URLs name."""

    async def work() -> None:
        async with async_cluster(sandbox, driver, monitor_interval=0.05) as c:
            monitor = c.monitor
            assert monitor is not None
            start = monitor.rounds
            while monitor.rounds < start + 3:  # bounded by the test timeout
                await asyncio.sleep(0.01)
            topology = c.topology
            assert all(n.healthy and n.error is None for n in topology.nodes)
            assert all(n.gtid_position for n in topology.nodes)
            assert topology.primary is not None
            assert topology.primary.name == sandbox.primary.address
            assert {n.name for n in topology.readable_replicas()} == {
                r.address for r in sandbox.replicas
            }

    run(asyncio.wait_for(work(), timeout=30))


def test_close_from_async_code_says_use_aclose_and_aclose_closes_cleanly(
    sandbox: Sandbox, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def work() -> None:
        c = async_cluster(sandbox, driver)
        async with c.async_session() as s:
            assert await _server_id(s) > 0
            await s.execute(text("SELECT 1 /* rwsplit:primary */"))
        engines = [
            c.write_engine(),
            *(c.engine_for(r, writable=False) for r in c.topology.replicas),
        ]
        assert any(e.pool.checkedin() for e in engines)  # type: ignore[attr-defined]
        with pytest.raises(ConfigurationError, match=r"await cluster\.aclose\(\)"):
            c.close()
        await c.aclose()
        assert all(e.pool.checkedin() == 0 for e in engines)  # type: ignore[attr-defined]
        await c.aclose()  # idempotent
        c.close()  # nothing left open: a no-op

    with caplog.at_level(logging.DEBUG, logger="sqlalchemy.pool"):
        run(work())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def _docs_example() -> str:
    doc = (Path(__file__).parents[2] / "docs" / "asyncio.md").read_text()
    start = doc.index("## A complete example")
    block = doc[doc.index("```python\n", start) + len("```python\n") :]
    return block[: block.index("```")]


def test_the_docs_example_runs(
    sandbox: Sandbox, driver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/asyncio.md's complete example, run on the shared sandbox."""
    namespace: dict[str, object] = {"__name__": "docs_example"}
    exec(compile(_docs_example(), "docs/asyncio.md", "exec"), namespace)
    main = namespace["main"]
    assert callable(main)
    try:
        run(
            main(
                async_url(sandbox.primary_url, driver),
                [async_url(u, driver) for u in sandbox.replica_urls],
            )
        )
    finally:
        sql(sandbox.primary, "DROP TABLE IF EXISTS rwsplit.docs_notes")
    assert "read back: hello" in capsys.readouterr().out


def test_the_old_primarys_pooled_connections_are_closed_when_the_primary_changes(
    fresh_sandbox: Sandbox, driver: str
) -> None:
    """The old primary's pool is dropped by the thread that saw the change (``Cluster.publish``
    in the monitor's thread), outside the event loop: the idle asyncio connections of the
    engine rwsplit made for it (to a killed server) are closed for good, not dropped with
    their sockets open (aiomysql's ``Unclosed connection`` ResourceWarning, met later by the
    garbage collector in whatever test runs then)."""
    from sqlalchemy.engine import make_url

    from rwsplit.asyncio import create_async_node_engine

    sb = fresh_sandbox
    engine = create_async_node_engine(make_url(async_url(sb.primary_url, driver)), {})

    async def work() -> None:
        async_engine = AsyncEngine(engine)
        held = [await async_engine.connect() for _ in range(3)]
        for conn in held:
            await conn.execute(text("SELECT 1"))
        for conn in held:
            await conn.close()  # back in the pool, idle
        assert engine.pool.checkedin() == 3
        await asyncio.to_thread(sb.kill, sb.primary.name)
        await asyncio.to_thread(engine.dispose)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        run(work())  # ends with a garbage collection
    unclosed = [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    assert unclosed == [], f"{len(unclosed)} connections dropped with their sockets open"
