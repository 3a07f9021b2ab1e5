"""rwsplit.flask on PostgreSQL streaming replication: the shipped examples (Flask-SQLAlchemy,
and plain Flask) unchanged, their read-your-writes cookie carrying an LSN token.

Replay is paused on every standby during the read-backs, so a stale read cannot pass by luck;
the control is a browser without the cookie, which reads the standbys' old data.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from flask import Flask

from rwsplit.sandbox.postgresql import PgSandbox
from rwsplit.servers import postgresql as pg

from .examples import load_example
from .pg_apps import SECRET, reads_by_node, replay_paused

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

COOKIE = "rwsplit_causal"


@pytest.fixture
def sb(pg_sandbox: PgSandbox) -> PgSandbox:
    """The session's shared sandbox (tests/fix_pg.py): replay is resumed after each test."""
    return pg_sandbox


def _config(sb: PgSandbox) -> dict[str, object]:
    return {
        "RWSPLIT_PRIMARY_URL": sb.primary_url,
        "RWSPLIT_REPLICA_URLS": ",".join(sb.standby_urls),
        "RWSPLIT_CAUSAL_TIMEOUT": 0.2,
        "SECRET_KEY": SECRET,
    }


@pytest.fixture
def plain_app(sb: PgSandbox) -> Iterator[Flask]:
    example = load_example("flask_plain")
    app: Flask = example.create_app(_config(sb))
    engine = app.extensions["rwsplit"].cluster.write_engine()
    example.Base.metadata.drop_all(engine)
    example.Base.metadata.create_all(engine)
    sb.wait_caught_up()
    try:
        yield app
    finally:
        app.extensions["rwsplit"].close()


def test_plain_flask_post_redirect_get_reads_its_write_with_replay_paused(
    plain_app: Flask, sb: PgSandbox
) -> None:
    client = plain_app.test_client()
    cluster = plain_app.extensions["rwsplit"].cluster
    with replay_paused(sb):
        resp = client.post("/counters/visits", data={"by": "3"})
        assert resp.status_code == 302
        cookie = client.get_cookie(COOKIE)
        assert cookie is not None
        assert pg.parse_token(plain_app.extensions["rwsplit"].cookie.loads(cookie.value))
        before = reads_by_node(cluster)
        first = client.get(resp.headers["Location"]).json
        after = reads_by_node(cluster)
        resp = client.post("/counters/visits", data={"by": "2"})  # read-modify-write again
        second = client.get(resp.headers["Location"]).json
        stale = plain_app.test_client().get("/counters/visits").json  # no cookie
    assert first == {"name": "visits", "value": 3}
    assert second == {"name": "visits", "value": 5}
    assert stale == {"name": "visits", "value": None}  # the control: standbys lack the row
    # The standbys could not prove they replayed the write: the GET read the primary.
    assert after[sb.primary.address] - before[sb.primary.address] == 1


def test_plain_flask_reads_go_to_the_standbys(plain_app: Flask, sb: PgSandbox) -> None:
    client = plain_app.test_client()
    ports = {client.get("/whoami").json["server_id"] for _ in range(4)}  # type: ignore[index]
    assert ports == {n.port for n in sb.standbys}
    assert client.get_cookie(COOKIE) is None  # nothing written: no token


def test_flask_sqlalchemy_example_reads_its_write_with_replay_paused(sb: PgSandbox) -> None:
    example: ModuleType = load_example("flask_app")
    app: Flask = example.create_app(_config(sb))
    try:
        with app.app_context():
            example.db.drop_all()
            example.db.create_all()  # DDL on the primary, through the cluster's engine
        sb.wait_caught_up()
        client = app.test_client()
        ports = {client.get("/whoami").json["server_id"] for _ in range(4)}  # type: ignore[index]
        assert ports == {n.port for n in sb.standbys}
        with replay_paused(sb):
            resp = client.post("/notes", data={"body": "hello"})
            assert resp.status_code == 302, resp.data
            location = resp.headers["Location"]
            got = client.get(location)
            stale = app.test_client().get(location)  # another browser: no cookie
        assert got.status_code == 200 and got.json == {"id": got.json["id"], "body": "hello"}
        assert stale.status_code == 404  # the control: the standbys lack the row
    finally:
        app.extensions["rwsplit"].close()
