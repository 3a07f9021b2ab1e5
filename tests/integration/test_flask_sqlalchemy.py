"""rwsplit.flask with Flask-SQLAlchemy 3.x on real replication, through Flask's test client.

The app is examples/flask_app/app.py as shipped. Replicas' SQL threads are stopped during
read-backs, so a stale read cannot pass by luck; the servers' own counters (Com_select, each
replica's own binary log) say where statements ran.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import Cluster, RoutingSession
from rwsplit.flask import RwSplit
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot
from .examples import load_example, sql_threads_stopped

pytestmark = pytest.mark.integration

SECRET = "test-secret-not-for-production"


def config_for(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    return {
        "RWSPLIT_PRIMARY_URL": sb.primary_url,
        "RWSPLIT_REPLICA_URLS": sb.replica_urls,
        "SECRET_KEY": SECRET,
        **extra,
    }


@pytest.fixture
def example() -> ModuleType:
    return load_example("flask_app")


@contextlib.contextmanager
def running_app(example: ModuleType, sb: Sandbox, **extra: Any) -> Iterator[Flask]:
    app: Flask = example.create_app(config_for(sb, **extra))
    try:
        with app.app_context():
            example.db.drop_all()
            example.db.create_all()
        sb.wait_caught_up()
        yield app
    finally:
        sb.wait_caught_up()
        app.extensions["rwsplit"].close()


@pytest.fixture
def app(example: ModuleType, sandbox: Sandbox) -> Iterator[Flask]:
    with running_app(example, sandbox) as a:
        yield a


def post_note(client: FlaskClient, body: str) -> str:
    resp = client.post("/notes", data={"body": body})
    assert resp.status_code == 302, resp.text
    return resp.headers["Location"]


def test_post_redirect_get_reads_its_own_write_while_replicas_lag(
    app: Flask, sandbox: Sandbox
) -> None:
    client = app.test_client()
    with sql_threads_stopped(sandbox):
        before = snapshot(sandbox)
        location = post_note(client, "hello")
        assert client.get_cookie("rwsplit_causal") is not None
        resp = client.get(location)
        legacy = client.get(location + "/legacy")
        after = snapshot(sandbox)
    assert resp.status_code == 200, resp.text
    assert resp.json == {"id": int(location.rsplit("/", 1)[1]), "body": "hello"}
    assert legacy.status_code == 200 and legacy.json is not None
    assert legacy.json["body"] == "hello"
    d = delta(before, after)
    # The replicas could not have the row: the reads were answered by the primary.
    assert d["primary"]["Com_select"] >= 2
    assert all(d[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)


def test_without_the_cookie_the_same_read_is_stale(example: ModuleType, sandbox: Sandbox) -> None:
    # The control for the test above: the lag is real, only the cookie makes the read fresh.
    with running_app(example, sandbox, RWSPLIT_CAUSAL_COOKIE=False) as app:
        client = app.test_client()
        with sql_threads_stopped(sandbox):
            location = post_note(client, "lost")
            assert client.get_cookie("rwsplit_causal") is None
            assert client.get(location).status_code == 404  # a replica without the row


def test_reads_without_a_write_go_to_replicas_and_pagination_works(
    app: Flask, sandbox: Sandbox
) -> None:
    writer = app.test_client()
    for i in range(25):
        post_note(writer, f"note {i:02d}")
    sandbox.wait_caught_up()
    reader = app.test_client()  # a new browser: no causal cookie
    before = snapshot(sandbox)
    pages = [reader.get(f"/notes?page={p}").json for p in (1, 2, 3)]
    ids = {reader.get("/whoami").json["server_id"] for _ in range(4)}  # type: ignore[index]
    after = snapshot(sandbox)
    assert [p["bodies"] for p in pages] == [  # type: ignore[index]
        [f"note {i:02d}" for i in range(0, 10)],
        [f"note {i:02d}" for i in range(10, 20)],
        [f"note {i:02d}" for i in range(20, 25)],
    ]
    assert [p["has_next"] for p in pages] == [True, True, False]  # type: ignore[index]
    assert pages[0]["total"] == 25  # type: ignore[index]
    d = delta(before, after)
    assert d["primary"]["Com_select"] == 0
    # 3 pages x (items + count) + 4 whoami, round-robin over both replicas.
    assert sum(d[r.name]["Com_select"] for r in sandbox.replicas) >= 10
    assert ids == {r.server_id for r in sandbox.replicas}
    assert all(d[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)


def test_session_is_a_routing_session_scoped_to_the_request(
    app: Flask, example: ModuleType
) -> None:
    db = example.db
    with app.test_request_context("/"):
        s = db.session()
        assert isinstance(s, RoutingSession)
        assert s is db.session()
        assert s.cluster is app.extensions["rwsplit"].cluster
    with app.test_request_context("/"):
        assert db.session() is not s


class _ProbeBase(DeclarativeBase):
    pass


def test_one_pool_per_node_and_ddl_on_the_primary(sandbox: Sandbox) -> None:
    """db.engine is the cluster's primary engine: no extra engine, DDL on the primary."""
    db = SQLAlchemy(model_class=_ProbeBase)

    class Probe(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "flask_probe"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(String(20))

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET)
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as cluster:
        gc.collect()
        engines_before = sum(isinstance(o, Engine) for o in gc.get_objects())
        RwSplit(app, db=db, cluster=cluster)
        gc.collect()
        assert sum(isinstance(o, Engine) for o in gc.get_objects()) == engines_before
        ran_on: list[tuple[Engine, str]] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            ran_on.append((conn.engine, statement.split()[0].upper()))

        event.listen(Engine, "before_cursor_execute", record)
        try:
            with app.app_context():
                assert db.engine is cluster.write_engine()
                db.drop_all()
                db.create_all()
                db.session.add(Probe(body="x"))
                db.session.commit()
                db.session.execute(text("SELECT 1")).scalar_one()
                db.drop_all()
        finally:
            event.remove(Engine, "before_cursor_execute", record)
        primary = cluster.write_engine()
        ddl = [e for e, verb in ran_on if verb in ("CREATE", "DROP")]
        assert len(ddl) == 2 and all(e is primary for e in ddl)
        # Every statement ran on one of the cluster's own engines (its pools), nowhere else.
        replica_engines = {
            cluster.engine_for(n, writable=False) for n in cluster.topology.nodes[1:]
        }
        assert {e for e, _ in ran_on} <= {primary, *replica_engines}
        assert any(e in replica_engines for e, verb in ran_on if verb == "SELECT")
    sandbox.wait_caught_up()


def test_the_minimal_set_up(sandbox: Sandbox) -> None:
    minimal = load_example("flask_app", "minimal")
    app, db = minimal.make_app(sandbox.primary_url, *sandbox.replica_urls, SECRET)
    try:
        with app.app_context():
            assert db.engine is app.extensions["rwsplit"].cluster.write_engine()
            ids = {db.session.execute(text("SELECT @@server_id")).scalar_one() for _ in range(2)}
            db.session.rollback()
            assert ids <= {r.server_id for r in sandbox.replicas}
    finally:
        app.extensions["rwsplit"].close()
