"""asyncio sessions on PostgreSQL, both asyncio drivers (psycopg's and asyncpg): the same
routing, causal reads and error mapping as sync. Where statements ran: the ``port`` setting
in the result (every node listens on its own port)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster, RetryableWriteError
from rwsplit.sandbox.postgresql import PgSandbox

from ..fix_pg import require_postgresql
from .pg_util import set_read_only_default

pytestmark = pytest.mark.integration

DRIVERS = ("psycopg_async", "asyncpg")


@pytest.fixture(scope="module")
def sb() -> Iterator[PgSandbox]:
    require_postgresql()
    with PgSandbox(standbys=2) as sandbox:
        with sandbox.primary.connect() as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        sandbox.wait_caught_up()
        yield sandbox


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _url(url: str, driver: str) -> str:
    return url.replace("postgresql+psycopg://", f"postgresql+{driver}://", 1)


def _cluster(sb: PgSandbox, driver: str, **kwargs: object) -> Cluster:
    return Cluster(
        _url(sb.primary.url, driver), [_url(u, driver) for u in sb.standby_urls], **kwargs
    )


_PORT = text("SELECT current_setting('port')::int")


def test_async_reads_on_standbys_writes_on_the_primary(sb: PgSandbox, driver: str) -> None:
    row = uuid.uuid4().int % 2_000_000_000
    standby_ports = {n.port for n in sb.standbys}

    async def work() -> tuple[int, list[int], str | None, str]:
        async with _cluster(sb, driver) as c:
            Session = c.async_sessionmaker()
            async with Session() as s:
                await s.execute(text("INSERT INTO items VALUES (:i, 'async')"), {"i": row})
                write_port = (await s.execute(_PORT)).scalar_one()  # sticky: same transaction
                await s.commit()
                token = s.causal_token
                got = (await s.execute(text(f"SELECT v FROM items WHERE id = {row}"))).scalar()
            ports = []
            for _ in range(4):
                async with Session() as s:
                    ports.append((await s.execute(_PORT)).scalar_one())
            return write_port, ports, token, got

    write_port, ports, token, got = asyncio.run(work())
    assert write_port == sb.primary.port
    assert set(ports) == standby_ports
    assert token is not None and token.startswith("pg:")
    assert got == "async"


def test_async_causal_read_goes_to_the_primary_when_replay_is_paused(
    sb: PgSandbox, driver: str
) -> None:
    row = uuid.uuid4().int % 2_000_000_000
    for n in sb.standbys:
        sb.pause_replay(n.name)

    async def work() -> tuple[str | None, int, dict[str, object]]:
        async with _cluster(sb, driver, causal_timeout=0.3) as c:
            async with c.async_session() as s:
                await s.execute(text("INSERT INTO items VALUES (:i, 'wait')"), {"i": row})
                await s.commit()
                got = (await s.execute(text(f"SELECT v FROM items WHERE id = {row}"))).scalar()
                port = (await s.execute(_PORT)).scalar_one()
            return got, port, c.stats().to_dict()["nodes"]

    try:
        got, port, stats = asyncio.run(work())
    finally:
        for n in sb.standbys:
            sb.resume_replay(n.name)
    assert got == "wait"
    assert port == sb.primary.port  # the session keeps reading the primary
    assert sum(stats[n.address]["causal_timeouts"] for n in sb.standbys) >= 1  # type: ignore[index]
    sb.wait_caught_up()


def test_async_fenced_primary_refuses_the_commit(sb: PgSandbox, driver: str) -> None:
    row = uuid.uuid4().int % 2_000_000_000

    async def work() -> None:
        async with _cluster(sb, driver) as c, c.async_session() as s:
            await s.execute(text("INSERT INTO items VALUES (:i, 'fenced')"), {"i": row})
            set_read_only_default(sb.primary, True)
            with pytest.raises(RetryableWriteError, match="read-only"):
                await s.commit()

    try:
        asyncio.run(work())
    finally:
        set_read_only_default(sb.primary, False)
    with sb.primary.connect() as conn:
        assert conn.execute(f"SELECT 1 FROM items WHERE id = {row}").fetchone() is None
