"""examples/django_project, served by a real gunicorn on a sandbox cluster.

POST -> redirect -> GET through two gunicorn workers while the replicas' SQL threads are
stopped: zero stale reads, no write on any replica; ``manage.py test`` on the same cluster.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from rwsplit.sandbox import Sandbox, free_port
from tests.integration.counters import delta, snapshot
from tests.integration.util import run, sql, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "django_project"
DB = "shop_example"


def _env(sb: Sandbox, name: str = DB) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SHOP_DB_PRIMARY=sb.primary.address,
        SHOP_DB_REPLICAS=",".join(r.address for r in sb.replicas),
        SHOP_DB_NAME=name,
        SHOP_CAUSAL_TIMEOUT="0.2",
        PYTHONPATH=os.pathsep.join([str(PROJECT), str(ROOT / "src")]),
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _manage(sb: Sandbox, *args: str, name: str = DB) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=_env(sb, name),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _request(
    port: int, method: str, path: str, body: dict[str, str] | None = None, cookie: str = ""
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def shop(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The example migrated on the sandbox and served by gunicorn (2 workers); its port."""
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    if gunicorn is None:
        pytest.fail("gunicorn is a dev dependency: pip install -e '.[dev]'")
    sql(sandbox.primary, f"CREATE DATABASE IF NOT EXISTS {DB}")
    migrated = _manage(sandbox, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    sandbox.wait_caught_up()
    port = free_port()
    log_file = open(tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [gunicorn, "shop.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "30"],
        cwd=PROJECT,
        env=_env(sandbox),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            with contextlib.suppress(OSError):
                return _request(port, "GET", "/orders/count")[0] == 200
            return False

        wait_until(up, timeout=30, what="gunicorn answering")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log_file.close()
        sql(sandbox.primary, f"DROP DATABASE IF EXISTS {DB}")
        sandbox.wait_caught_up()


def test_gunicorn_post_redirect_get_is_never_stale(shop: int, sandbox: Sandbox) -> None:
    rounds = 20
    before = snapshot(sandbox)
    stale = []
    for r in sandbox.replicas:
        run(r, lambda f: f.stop_sql_thread())
    try:
        for i in range(rounds):
            status, headers, _ = _request(shop, "POST", "/orders", {"item": f"book{i}"})
            assert status == 302, status
            cookie = headers["set-cookie"].split(";", 1)[0]
            assert cookie.startswith("rwsplit_causal=")
            status, _, body = _request(shop, "GET", headers["location"], cookie=cookie)
            if status != 200 or f'"book{i}"' not in body.decode():
                stale.append((i, status, body[:100]))
        # Control: the same GET without the cookie finds the replicas without the row.
        control = _request(shop, "GET", headers["location"])[0]
    finally:
        for r in sandbox.replicas:
            run(r, lambda f: f.start_sql_thread())
        sandbox.wait_caught_up()
    d = delta(before, snapshot(sandbox))
    assert stale == []
    assert control == 404
    for r in sandbox.replicas:
        assert d[r.name]["own_binlog_writes"] == 0, f"a write ran on {r.name}"
    assert d[sandbox.primary.name]["own_binlog_writes"] >= rounds


def test_reads_without_a_write_go_to_replicas(shop: int, sandbox: Sandbox) -> None:
    before = snapshot(sandbox)
    for _ in range(20):
        assert _request(shop, "GET", "/orders/count")[0] == 200
    d = delta(before, snapshot(sandbox))
    assert sum(d[r.name]["Com_select"] for r in sandbox.replicas) >= 20
    assert d[sandbox.primary.name]["Com_select"] == 0


def test_manage_py_test_replicates_the_test_database(sandbox: Sandbox) -> None:
    result = _manage(sandbox, "test", "orders", "--no-input", "-v", "2", name="shopt")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ran 2 tests" in result.stderr
    # Teardown dropped the test database everywhere, replicas included.
    for node in sandbox.nodes:
        dbs = {row[0] for row in sql(node, "SHOW DATABASES")}
        assert "test_shopt" not in dbs, node.name


def test_topology_command(sandbox: Sandbox) -> None:
    result = _manage(sandbox, "rwsplit_topology")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{sandbox.primary.address:<22} primary" in result.stdout
