"""rwsplit.flask without Flask-SQLAlchemy (examples/flask_plain/app.py): ``ext.session`` is a
routed session per request, removed at teardown, continuing the causal chain."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from flask import Flask

from rwsplit import RoutingSession
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot
from .examples import load_example, sql_threads_stopped

pytestmark = pytest.mark.integration


@pytest.fixture
def example() -> ModuleType:
    return load_example("flask_plain")


@pytest.fixture
def app(example: ModuleType, sandbox: Sandbox) -> Iterator[Flask]:
    app: Flask = example.create_app(
        {
            "RWSPLIT_PRIMARY_URL": sandbox.primary_url,
            "RWSPLIT_REPLICA_URLS": ",".join(sandbox.replica_urls),
            "SECRET_KEY": "test-secret-not-for-production",
        }
    )
    cluster = app.extensions["rwsplit"].cluster
    example.Base.metadata.drop_all(cluster.write_engine())
    example.Base.metadata.create_all(cluster.write_engine())
    sandbox.wait_caught_up()
    try:
        yield app
    finally:
        sandbox.wait_caught_up()
        app.extensions["rwsplit"].close()


def test_one_routed_session_per_request_removed_at_teardown(
    app: Flask, example: ModuleType, sandbox: Sandbox
) -> None:
    rw = example.rw
    seen: list[RoutingSession] = []

    @app.get("/probe")
    def probe() -> dict[str, bool]:
        seen.append(rw.session())
        return {"same": rw.session() is seen[-1]}

    client = app.test_client()
    assert all(client.get("/probe").json == {"same": True} for _ in range(3))
    assert len({id(s) for s in seen}) == 3 and all(isinstance(s, RoutingSession) for s in seen)
    with app.app_context():
        assert not rw.session.registry.has()
    ids = {client.get("/whoami").json["server_id"] for _ in range(4)}  # type: ignore[index]
    assert ids == {r.server_id for r in sandbox.replicas}


def test_post_redirect_get_reads_its_own_write(app: Flask, sandbox: Sandbox) -> None:
    client = app.test_client()
    with sql_threads_stopped(sandbox):
        before = snapshot(sandbox)
        resp = client.post("/counters/visits", data={"by": "3"})
        assert resp.status_code == 302
        first = client.get(resp.headers["Location"]).json
        resp = client.post("/counters/visits", data={"by": "2"})  # read-modify-write again
        second = client.get(resp.headers["Location"]).json
        after = snapshot(sandbox)
        stale = app.test_client().get("/counters/visits").json  # no cookie: a frozen replica
    assert first == {"name": "visits", "value": 3}
    assert second == {"name": "visits", "value": 5}
    assert stale == {"name": "visits", "value": None}
    assert all(delta(before, after)[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)
