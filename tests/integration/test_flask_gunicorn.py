"""The Flask example under a real gunicorn with two worker processes.

Requests go over loopback TCP to a free port; the causal-token cookie carries read-your-writes
from the worker that served the POST to whichever serves the GET, while the replicas apply
nothing (SQL threads stopped).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot
from .examples import EXAMPLES, http_server, load_example, sql_threads_stopped

pytestmark = pytest.mark.integration

SECRET = "test-secret-not-for-production"
ROUNDS = 6


@pytest.fixture
def gunicorn(sandbox: Sandbox, tmp_path: Path) -> Iterator[str]:
    example = load_example("flask_app")
    app = example.create_app(
        {
            "RWSPLIT_PRIMARY_URL": sandbox.primary_url,
            "RWSPLIT_REPLICA_URLS": sandbox.replica_urls,
            "SECRET_KEY": SECRET,
        }
    )
    with app.app_context():
        example.db.drop_all()
        example.db.create_all()
    app.extensions["rwsplit"].close()
    sandbox.wait_caught_up()

    env = {
        **os.environ,
        "FLASK_RWSPLIT_PRIMARY_URL": sandbox.primary_url,
        "FLASK_RWSPLIT_REPLICA_URLS": json.dumps(sandbox.replica_urls),
        "FLASK_RWSPLIT_CAUSAL_TIMEOUT": "0.2",
        "FLASK_SECRET_KEY": SECRET,
    }

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "--workers", "2",
            "--bind", f"127.0.0.1:{port}",
            "--chdir", str(EXAMPLES / "flask_app"),
            "--graceful-timeout", "5",
            "app:create_app()",
        ]  # fmt: skip

    try:
        # SIGTERM: gunicorn's graceful stop, the master stops its workers
        with http_server(command, env, tmp_path / "gunicorn.log", name="gunicorn") as base:
            yield base
    finally:
        sandbox.wait_caught_up()


def test_post_redirect_get_across_two_workers(gunicorn: str, sandbox: Sandbox) -> None:
    before = snapshot(sandbox)
    workers: set[int] = set()
    with httpx.Client(base_url=gunicorn, timeout=10) as browser:
        with sql_threads_stopped(sandbox):
            for i in range(ROUNDS):
                resp = browser.post("/notes", data={"body": f"round {i}"})
                assert resp.status_code == 302, resp.text
                assert "rwsplit_causal" in browser.cookies
                got = browser.get(resp.headers["location"])
                assert got.status_code == 200, got.text
                assert got.json()["body"] == f"round {i}"
        sandbox.wait_caught_up()
        mid = snapshot(sandbox)
        with httpx.Client(base_url=gunicorn, timeout=10) as reader:  # no cookie, no write
            pages = [reader.get("/notes?page=1").json() for _ in range(2)]
            for _ in range(6):
                who = reader.get("/whoami").json()
                workers.add(who["worker_pid"])
                assert who["server_id"] in {r.server_id for r in sandbox.replicas}
    after = snapshot(sandbox)
    assert pages[0]["total"] == ROUNDS and pages[0]["bodies"][0] == "round 0"
    reads = delta(mid, after)
    assert reads["primary"]["Com_select"] == 0
    assert sum(reads[r.name]["Com_select"] for r in sandbox.replicas) >= 2 * 2 + 6
    whole = delta(before, after)
    assert all(whole[r.name]["own_binlog_writes"] == 0 for r in sandbox.replicas)
    assert whole["primary"]["own_binlog_writes"] >= ROUNDS
    print(f"workers that served reads: {sorted(workers)}")
