"""rwsplit.fastapi on real replication, through FastAPI's TestClient (httpx).

The app is examples/fastapi_app/app.py as shipped; replicas' SQL threads are stopped during
read-backs so a stale read cannot pass by luck.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import text

from rwsplit import Cluster, ConfigurationError, RoutingSession
from rwsplit.fastapi import RwSplit
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot
from .examples import load_example, sql_threads_stopped

with warnings.catch_warnings():
    # Newer Starlette prefers httpx2 and warns when it finds httpx; either works here.
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

SECRET = "test-secret-not-for-production"
COOKIE = "rwsplit_causal"


@pytest.fixture
def example() -> ModuleType:
    return load_example("fastapi_app")


@pytest.fixture
def cluster_and_app(example: ModuleType, sandbox: Sandbox) -> Iterator[tuple[Cluster, FastAPI]]:
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as cluster:
        example.Base.metadata.drop_all(cluster.write_engine())
        example.init_db(cluster)
        sandbox.wait_caught_up()
        yield cluster, example.create_app(cluster, secret_key=SECRET)
        sandbox.wait_caught_up()


@pytest.fixture
def client(cluster_and_app: tuple[Cluster, FastAPI]) -> Iterator[TestClient]:
    with TestClient(cluster_and_app[1], follow_redirects=False) as c:
        yield c


def post_note(client: TestClient, body: str) -> str:
    resp = client.post("/notes", json={"body": body})
    assert resp.status_code == 303, resp.text
    return resp.headers["location"]


def test_post_redirect_get_reads_its_own_write_while_replicas_lag(
    client: TestClient, sandbox: Sandbox
) -> None:
    with sql_threads_stopped(sandbox):
        before = snapshot(sandbox)
        location = post_note(client, "hello")
        assert client.cookies.get(COOKIE)
        resp = client.get(location)
        after = snapshot(sandbox)
        stale = TestClient(client.app).get(location)  # another browser: no cookie
    assert resp.status_code == 200, resp.text
    assert resp.json()["body"] == "hello"
    assert stale.status_code == 404  # the control: the replicas really lack the row
    d = delta(before, after)
    assert d["primary"]["Com_select"] >= 1
    assert all(d[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)


def test_reads_without_a_write_go_to_replicas(client: TestClient, sandbox: Sandbox) -> None:
    before = snapshot(sandbox)
    ids = {client.get("/whoami").json()["server_id"] for _ in range(4)}
    assert client.get("/notes").json() == {"count": 0}
    after = snapshot(sandbox)
    assert ids == {r.server_id for r in sandbox.replicas}
    d = delta(before, after)
    assert d["primary"]["Com_select"] == 0
    assert COOKIE not in client.cookies  # nothing written: no token


def test_a_forged_token_is_ignored(client: TestClient, sandbox: Sandbox) -> None:
    # Trusted, this GTID (never written) would make every read wait, then go to the primary.
    client.cookies.set(COOKIE, "0-1-999999999")
    ids = {client.get("/whoami").json()["server_id"] for _ in range(2)}
    assert ids == {r.server_id for r in sandbox.replicas}


def test_the_session_dependency_needs_the_middleware(sandbox: Sandbox) -> None:
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as cluster:
        rw = RwSplit(cluster, secret_key=SECRET)
        app = FastAPI()  # rw.init_app(app) forgotten

        @app.get("/")
        def index(session: RoutingSession = Depends(rw.session)) -> dict[str, Any]:  # noqa: B008
            return {}

        with pytest.raises(ConfigurationError, match=r"rw\.init_app\(app\)"):
            TestClient(app).get("/")

        # cookie=False: no middleware needed, sessions still routed.
        plain = RwSplit(cluster, secret_key=None, cookie=False)
        app2 = FastAPI()

        @app2.get("/")
        def who(session: RoutingSession = Depends(plain.session)) -> dict[str, Any]:  # noqa: B008
            return {"server_id": session.execute(text("SELECT @@server_id")).scalar_one()}

        resp = TestClient(app2).get("/")
        assert resp.json()["server_id"] in {r.server_id for r in sandbox.replicas}
