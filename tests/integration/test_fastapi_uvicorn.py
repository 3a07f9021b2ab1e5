"""The FastAPI example under a real uvicorn, as its docstring runs it (``--factory``), over
loopback HTTP: the cookie middleware works on a real server, not only in the TestClient."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rwsplit import Cluster
from rwsplit.sandbox import Sandbox, free_port

from .examples import EXAMPLES, load_example, sql_threads_stopped

pytestmark = pytest.mark.integration


@pytest.fixture
def uvicorn(sandbox: Sandbox, tmp_path: Path) -> Iterator[str]:
    example = load_example("fastapi_app")
    with Cluster(sandbox.primary_url) as ddl:
        example.Base.metadata.drop_all(ddl.write_engine())
        example.init_db(ddl)
    sandbox.wait_caught_up()
    port = free_port()
    env = {
        **os.environ,
        "RWSPLIT_PRIMARY_URL": sandbox.primary_url,
        "RWSPLIT_REPLICA_URLS": ",".join(sandbox.replica_urls),
        "RWSPLIT_CAUSAL_TIMEOUT": "0.2",
        "APP_SECRET_KEY": "test-secret-not-for-production",
    }
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory", "app:create_app",
                "--app-dir", str(EXAMPLES / "fastapi_app"),
                "--host", "127.0.0.1", "--port", str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"uvicorn exited: {log_path.read_text()}")
            try:
                if httpx.get(f"{base}/whoami", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn not up in 30s: {log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # uvicorn's graceful stop: the lifespan closes
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the process group this test created
                proc.wait(timeout=10)
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
