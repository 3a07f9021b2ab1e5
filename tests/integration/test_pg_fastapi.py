"""rwsplit.fastapi on PostgreSQL streaming replication: examples/fastapi_app/app.py as shipped,
through FastAPI's TestClient; the cookie carries an LSN token. Replay is paused on every
standby during the read-backs, so a stale read cannot pass by luck."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from types import ModuleType

import pytest
from fastapi import FastAPI

from rwsplit import Cluster
from rwsplit.sandbox.postgresql import PgSandbox

from .examples import load_example
from .pg_apps import SECRET, reads_by_node, replay_paused

with warnings.catch_warnings():
    # Newer Starlette prefers httpx2 and warns when it finds httpx; either works here.
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient")
    from fastapi.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

COOKIE = "rwsplit_causal"


@pytest.fixture
def sb(pg_sandbox: PgSandbox) -> PgSandbox:
    """The session's shared sandbox (tests/fix_pg.py): replay is resumed after each test."""
    return pg_sandbox


@pytest.fixture
def cluster_and_app(sb: PgSandbox) -> Iterator[tuple[Cluster, FastAPI]]:
    example: ModuleType = load_example("fastapi_app")
    with Cluster(sb.primary_url, sb.standby_urls, causal_timeout=0.2) as cluster:
        example.Base.metadata.drop_all(cluster.write_engine())
        example.init_db(cluster)
        sb.wait_caught_up()
        yield cluster, example.create_app(cluster, secret_key=SECRET)


@pytest.fixture
def client(cluster_and_app: tuple[Cluster, FastAPI]) -> Iterator[TestClient]:
    with TestClient(cluster_and_app[1], follow_redirects=False) as c:
        yield c


def test_post_redirect_get_reads_its_own_write_with_replay_paused(
    client: TestClient, cluster_and_app: tuple[Cluster, FastAPI], sb: PgSandbox
) -> None:
    cluster = cluster_and_app[0]
    with replay_paused(sb):
        resp = client.post("/notes", json={"body": "hello"})
        assert resp.status_code == 303, resp.text
        location = resp.headers["location"]
        assert client.cookies.get(COOKIE)
        before = reads_by_node(cluster)
        got = client.get(location)
        after = reads_by_node(cluster)
        stale = TestClient(client.app).get(location)  # another browser: no cookie
    assert got.status_code == 200, got.text
    assert got.json()["body"] == "hello"
    assert stale.status_code == 404  # the control: the standbys really lack the row
    # Replay paused: no standby could prove it had the write, the GET read the primary.
    assert after[sb.primary.address] - before[sb.primary.address] == 1


def test_after_replay_the_token_is_served_by_a_standby(
    client: TestClient, cluster_and_app: tuple[Cluster, FastAPI], sb: PgSandbox
) -> None:
    cluster = cluster_and_app[0]
    location = client.post("/notes", json={"body": "later"}).headers["location"]
    sb.wait_caught_up()
    before = reads_by_node(cluster)
    got = client.get(location)
    after = reads_by_node(cluster)
    assert got.json()["body"] == "later"
    standby_reads = sum(after[n.address] - before[n.address] for n in sb.standbys)
    assert standby_reads == 1  # the standby proved it replayed the write: it served the GET
    assert (
        cluster.stats().to_dict()["nodes"][sb.primary.address]["reads"] == after[sb.primary.address]
    )


def test_reads_without_a_write_go_to_standbys_and_forged_tokens_are_ignored(
    client: TestClient, sb: PgSandbox
) -> None:
    ports = {client.get("/whoami").json()["server_id"] for _ in range(4)}
    assert ports == {n.port for n in sb.standbys}
    assert COOKIE not in client.cookies  # nothing written: no token
    client.cookies.set(COOKIE, "pg:FFFFFFFF/0")  # unsigned: never trusted, never waited for
    assert {client.get("/whoami").json()["server_id"] for _ in range(2)} <= {
        n.port for n in sb.standbys
    }


def test_async_dependency_on_psycopg_async_reads_its_write_with_replay_paused(
    sb: PgSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/fastapi_app/async_app.py as shipped, on ``postgresql+psycopg_async`` URLs
    from the environment: AsyncSession dependencies, the cookie, replay paused."""
    pytest.importorskip("greenlet")
    example: ModuleType = load_example("fastapi_app", "async_app")
    with Cluster(sb.primary_url) as ddl:  # DDL once, synchronously
        example.Base.metadata.drop_all(ddl.write_engine())
        example.Base.metadata.create_all(ddl.write_engine())
    sb.wait_caught_up()

    def aio(url: str) -> str:
        return url.replace("postgresql+psycopg://", "postgresql+psycopg_async://", 1)

    monkeypatch.setenv("RWSPLIT_PRIMARY_URL", aio(sb.primary_url))
    monkeypatch.setenv("RWSPLIT_REPLICA_URLS", ",".join(aio(u) for u in sb.standby_urls))
    monkeypatch.setenv("RWSPLIT_CAUSAL_TIMEOUT", "0.2")
    monkeypatch.setenv("APP_SECRET_KEY", SECRET)
    with TestClient(example.create_app(), follow_redirects=False) as client:
        ports = {client.get("/whoami").json()["server_id"] for _ in range(4)}
        assert ports == {n.port for n in sb.standbys}
        with replay_paused(sb):
            resp = client.post("/notes", json={"body": "async hello"})
            assert resp.status_code == 303, resp.text
            got = client.get(resp.headers["location"])
            stale = TestClient(client.app).get(resp.headers["location"])
        assert got.status_code == 200 and got.json()["body"] == "async hello"
        assert stale.status_code == 404  # the control: the standbys lack the row
