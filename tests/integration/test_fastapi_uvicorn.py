"""The FastAPI example under a real uvicorn, as its docstring runs it (``--factory``), over
loopback HTTP: the cookie middleware works on a real server, not only in the TestClient."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rwsplit import Cluster
from rwsplit.sandbox import Sandbox

from .examples import EXAMPLES, http_server, load_example, sql_threads_stopped

pytestmark = pytest.mark.integration


@pytest.fixture
def uvicorn(sandbox: Sandbox, tmp_path: Path) -> Iterator[str]:
    example = load_example("fastapi_app")
    with Cluster(sandbox.primary_url) as ddl:
        example.Base.metadata.drop_all(ddl.write_engine())
        example.init_db(ddl)
    sandbox.wait_caught_up()
    env = {
        **os.environ,
        "RWSPLIT_PRIMARY_URL": sandbox.primary_url,
        "RWSPLIT_REPLICA_URLS": ",".join(sandbox.replica_urls),
        "RWSPLIT_CAUSAL_TIMEOUT": "0.2",
        "APP_SECRET_KEY": "test-secret-not-for-production",
    }

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "--factory", "app:create_app",
            "--app-dir", str(EXAMPLES / "fastapi_app"),
            "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip

    try:
        # SIGINT: uvicorn's graceful stop, the lifespan closes the cluster
        with http_server(
            command, env, tmp_path / "uvicorn.log", stop=signal.SIGINT, name="uvicorn"
        ) as base:
            yield base
    finally:
        sandbox.wait_caught_up()


def test_post_redirect_get_over_real_http(uvicorn: str, sandbox: Sandbox) -> None:
    with httpx.Client(base_url=uvicorn, timeout=10) as browser, sql_threads_stopped(sandbox):
        resp = browser.post("/notes", json={"body": "over http"})
        assert resp.status_code == 303, resp.text
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith("rwsplit_causal=") and "HttpOnly" in cookie
        assert browser.get(resp.headers["location"]).json()["body"] == "over http"
        with httpx.Client(base_url=uvicorn, timeout=10) as other:  # no cookie: stale replica
            assert other.get(resp.headers["location"]).status_code == 404
