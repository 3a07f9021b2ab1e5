"""A causal read in one round trip: the GTID wait travels in front of the read.

Each test uses one replica, so where a read goes is not up to the balancer, and reads the
replica's own general log for what it received (one ``COM_QUERY`` = one log row).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import Cluster, RoutingError, _pipelined_wait
from rwsplit.sandbox import Sandbox, SandboxNode

from ..fix_sandbox import in_transaction_sql, on_mysql
from .util import general_log, run, tables

pytestmark = [pytest.mark.integration]

# The server's GTID wait, as the read carries it in front of itself.
WAIT = "WAIT_FOR_EXECUTED_GTID_SET" if on_mysql() else "MASTER_GTID_WAIT"


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "one_trip_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(40))


@pytest.fixture
def items(sandbox: Sandbox) -> Iterator[Sandbox]:
    yield from tables(sandbox, Base.metadata)


@contextlib.contextmanager
def sql_thread_stopped(node: SandboxNode) -> Iterator[None]:
    run(node, lambda f: f.stop_sql_thread())
    try:
        yield
    finally:
        run(node, lambda f: f.start_sql_thread())


def _ours(log: list[str]) -> list[str]:
    """The reads the client sent (the replication threads' own statements left out)."""
    return [q for q in log if q.startswith("SELECT") and ("one_trip_items" in q or "GTID" in q)]


def _waits(c: Cluster) -> int:
    return sum(n["causal_waits"] for n in c.stats().to_dict()["nodes"].values())


def _cluster(sb: Sandbox, **kw: object) -> Cluster:
    return Cluster(
        sb.primary_url,
        sb.replica_urls[:1],
        engine_options={"pool_size": 1, "max_overflow": 0},
        **kw,  # type: ignore[arg-type]
    )


def _write(c: Cluster, body: str) -> str:
    with c.session() as s:
        s.add(Item(body=body))
        s.commit()
        token = s.causal_token
    assert token is not None
    return token


def test_wait_and_read_are_one_statement_on_the_replica(items: Sandbox) -> None:
    replica = items.replicas[0]
    with _cluster(items, causal_timeout=5) as c:
        _write(c, "warm-up")
        with c.session() as s:  # the replica engine's first-connect queries, outside the log
            s.execute(select(Item)).all()
        with general_log(replica, raw=True) as log:
            token = _write(c, "one")
            with c.session(causal_token=token) as s:
                got = s.scalars(select(Item.body).where(Item.body == "one")).all()
        assert got == ["one"]
        ours = _ours(log)
        assert len(ours) == 1, ours  # one round trip: the wait and the read together
        assert WAIT in ours[0] and "one_trip_items" in ours[0]


def test_lagging_replica_read_falls_back_and_leaves_nothing_behind(items: Sandbox) -> None:
    replica = items.replicas[0]
    with _cluster(items, causal_timeout=0.2) as c:
        _write(c, "old")
        items.wait_caught_up()
        engine = c.engine_for(c.topology.replicas[0], writable=False)
        with sql_thread_stopped(replica), general_log(replica, raw=True) as log:
            token = _write(c, "fresh")
            with c.session(causal_token=token) as s:
                got = s.scalars(select(Item.body).where(Item.body == "fresh")).all()
            # The pool's only replica connection carried the failed attempt: nothing of it
            # stays for its next user.
            with engine.connect() as conn:
                in_transaction = in_transaction_sql()
                if in_transaction is not None:  # MariaDB; MySQL has no way to ask (see it)
                    assert conn.exec_driver_sql(in_transaction).scalar() == 0
                if not on_mysql():  # MySQL lists them in performance_schema: off here
                    user_vars = "SELECT COUNT(*) FROM information_schema.USER_VARIABLES"
                    assert conn.exec_driver_sql(user_vars).scalar() == 0
                assert conn.exec_driver_sql("SELECT 42").scalar() == 42
        assert got == ["fresh"]  # from the primary: the replica has not applied it
        ours = [q for q in _ours(log) if "one_trip_items" in q]
        assert len(ours) == 1 and WAIT in ours[0], ours  # tried once, together
        assert c.stats().to_dict()["nodes"][c.topology.replicas[0].name]["causal_timeouts"] == 1


def test_replica_the_monitor_saw_past_the_token_takes_the_read_without_wait(
    items: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rwsplit.routing.consistency import AppliedTokens

    monkeypatch.setattr(AppliedTokens, "MAX_AGE", 300.0)  # a slow machine must not expire it
    replica = items.replicas[0]
    with _cluster(items, causal_timeout=5, monitor_interval=0.1) as c:
        token = _write(c, "probed")
        written = items.family.parse_gtid(token)
        deadline = time.monotonic() + 30
        while True:  # until a probe of the replica shows the write applied
            pos = c.topology.replicas[0].gtid_position or ""
            if items.family.parse_gtid(pos).contains(written):
                break
            assert time.monotonic() < deadline, pos
            time.sleep(0.05)
        waits = _waits(c)
        with general_log(replica, raw=True) as log, c.session(causal_token=token) as s:
            assert s.scalars(select(Item.body).where(Item.body == "probed")).all() == ["probed"]
        assert not any("GTID_WAIT" in q for q in log), log
        assert len(_ours(log)) == 1
        assert _waits(c) == waits


def test_replica_connections_refuse_several_statements(items: Sandbox) -> None:
    replica = items.replicas[0]
    with _cluster(items) as c:
        engine = c.engine_for(c.topology.replicas[0], writable=False)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").all()
            with general_log(replica, raw=True) as log:
                with pytest.raises(RoutingError, match="several statements"):
                    conn.exec_driver_sql("SELECT body FROM one_trip_items; DELETE FROM x")
                # A ";" inside a bound value is data, not a second statement.
                got = conn.exec_driver_sql(
                    "SELECT %s FROM one_trip_items LIMIT 1", ("a; DROP TABLE x",)
                ).all()
        assert all("DELETE" not in q for q in log), log
        assert got in ([], [("a; DROP TABLE x",)])


@pytest.mark.skipif(
    not _pipelined_wait._async_cursor_has_nextset(),
    reason="this SQLAlchemy's aiomysql adapter has no nextset(): the wait is sent on its own",
)
def test_asyncio_wait_and_read_in_one_round_trip_and_fallback(items: Sandbox) -> None:
    from .async_util import async_url, run

    replica = items.replicas[0]
    c = Cluster(
        async_url(items.primary_url, "aiomysql"),
        [async_url(items.replica_urls[0], "aiomysql")],
        engine_options={"pool_size": 1, "max_overflow": 0},
        causal_timeout=0.2,
    )

    async def write(body: str) -> str:
        async with c.async_session() as s:
            s.add(Item(body=body))
            await s.commit()
            token = s.causal_token
        assert token is not None
        return token

    async def read(token: str, body: str) -> list[str]:
        async with c.async_session(causal_token=token) as s:
            return list((await s.scalars(select(Item.body).where(Item.body == body))).all())

    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        await read(await write("async-warm"), "async-warm")  # connections, first-connect queries
        items.wait_caught_up()
        with general_log(replica, raw=True) as log:
            got = await read(await write("async-one"), "async-one")
        with sql_thread_stopped(replica), general_log(replica, raw=True) as lagging:
            fresh = await read(await write("async-fresh"), "async-fresh")
        await c.aclose()
        return got, log, fresh, lagging

    try:
        got, log, fresh, lagging = run(scenario())
    finally:
        c.close()
    assert got == ["async-one"]
    ours = _ours(log)
    assert len(ours) == 1 and WAIT in ours[0], ours
    assert fresh == ["async-fresh"]  # from the primary
    tried = [q for q in _ours(lagging) if "one_trip_items" in q]
    assert len(tried) == 1 and WAIT in tried[0], tried
