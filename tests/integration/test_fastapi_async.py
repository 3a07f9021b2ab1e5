"""rwsplit.fastapi's async dependency (AsyncSession on aiomysql) on real replication.

The app is examples/fastapi_app/async_app.py as shipped, its cluster built from ``RWSPLIT_*``
environment variables and closed by the app's lifespan on the event loop.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest

from rwsplit import Cluster
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot
from .examples import load_example, sql_threads_stopped

pytest.importorskip("aiomysql")
pytest.importorskip("greenlet")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

SECRET = "test-secret-not-for-production"


def aio(url: str) -> str:
    return url.replace("mysql+pymysql://", "mysql+aiomysql://", 1)


@pytest.fixture
def client(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[TestClient]:
    example = load_example("fastapi_app", "async_app")
    with Cluster(sandbox.primary_url) as ddl:  # DDL once, synchronously
        example.Base.metadata.drop_all(ddl.write_engine())
        example.Base.metadata.create_all(ddl.write_engine())
    sandbox.wait_caught_up()
    monkeypatch.setenv("RWSPLIT_PRIMARY_URL", aio(sandbox.primary_url))
    monkeypatch.setenv("RWSPLIT_REPLICA_URLS", ",".join(aio(u) for u in sandbox.replica_urls))
    monkeypatch.setenv("APP_SECRET_KEY", SECRET)
    # The with block runs the lifespan: the app closes its cluster on its own event loop
    # (an aiomysql connection closed elsewhere would surface as an unraisable-exception
    # warning, an error here).
    with TestClient(example.create_app(), follow_redirects=False) as c:
        yield c
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]  # e.g. "Exception closing connection"
    sandbox.wait_caught_up()


def test_async_post_redirect_get_reads_its_own_write_while_replicas_lag(
    client: TestClient, sandbox: Sandbox
) -> None:
    with sql_threads_stopped(sandbox):
        before = snapshot(sandbox)
        resp = client.post("/notes", json={"body": "async hello"})
        assert resp.status_code == 303, resp.text
        assert client.cookies.get("rwsplit_causal")
        got = client.get(resp.headers["location"])
        after = snapshot(sandbox)
        client.cookies.clear()
        stale = client.get(resp.headers["location"])  # same app, no cookie
    assert got.status_code == 200 and got.json()["body"] == "async hello"
    assert stale.status_code == 404  # the control: the replicas really lack the row
    d = delta(before, after)
    assert d["primary"]["Com_select"] >= 1
    assert all(d[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)


def test_async_reads_without_a_write_go_to_replicas(client: TestClient, sandbox: Sandbox) -> None:
    before = snapshot(sandbox)
    ids = {client.get("/whoami").json()["server_id"] for _ in range(4)}
    after = snapshot(sandbox)
    assert ids == {r.server_id for r in sandbox.replicas}
    assert delta(before, after)["primary"]["Com_select"] == 0
