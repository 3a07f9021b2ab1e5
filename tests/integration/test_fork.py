"""Fork safety: a Cluster made before ``fork()`` works in the child — its own connections,
its own running monitor — with multiprocessing and with a real ``gunicorn --preload``."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from rwsplit import Cluster
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, free_port

from .util import sql, wait_until

pytestmark = [
    pytest.mark.integration,
    # Python 3.12+ warns when a process with threads forks; forking one is the point here.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


def connection_id(cluster: Cluster) -> int:
    engine = cluster.write_engine()
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT CONNECTION_ID()")).scalar_one())


def _child(cluster: Cluster, queue: Any) -> None:
    import faulthandler

    # If the child ever hangs, say where (to the test's stderr) instead of just timing out.
    faulthandler.dump_traceback_later(30, exit=True)
    try:
        cid = connection_id(cluster)
        with cluster.session() as s:
            s.execute(text("INSERT INTO f (who) VALUES ('child')"))
            s.commit()
        with cluster.session() as s:
            rows = s.execute(text("SELECT COUNT(*) FROM f")).scalar_one()
        monitor = cluster.monitor
        assert monitor is not None
        start = monitor.rounds
        deadline = time.monotonic() + 10
        while monitor.rounds < start + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        queue.put({"cid": cid, "rows": rows, "rounds": monitor.rounds - start})
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put({"error": repr(exc)})


def test_forked_child_uses_its_own_connections_and_its_own_monitor(
    fresh_sandbox: Sandbox,
) -> None:
    with Cluster(fresh_sandbox.primary_url, fresh_sandbox.replica_urls, monitor_interval=0.1) as c:
        with c.session() as s:
            s.execute(text("CREATE TABLE f (id INT PRIMARY KEY AUTO_INCREMENT, who TEXT)"))
            s.commit()
        parent_cid = connection_id(c)  # now pooled: a careless child would reuse it
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child, args=(c, queue))
        child.start()
        try:
            got = queue.get(timeout=45)
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
        assert "error" not in got, got.get("error", "")
        assert got["cid"] != parent_cid  # the child opened its own connection
        assert got["rounds"] >= 3  # the monitor runs in the child
        # The parent's pooled connection survived the child (no COM_QUIT sent on it).
        assert connection_id(c) == parent_cid
        with c.session() as s:
            assert s.execute(text("SELECT who FROM f")).scalars().all() == ["child"]
        assert c.monitor is not None and c.monitor.running


def _probe_reading() -> bool:
    """Some thread of this process is inside a read of a PyMySQL connection right now."""
    for frame in sys._current_frames().values():
        f: Any = frame
        while f is not None:
            if f.f_code.co_name == "_read_bytes" and "pymysql" in f.f_code.co_filename:
                return True
            f = f.f_back
    return False


def _forked_write(cluster: Cluster, queue: Any) -> None:
    try:
        with cluster.session() as s:
            s.execute(text("INSERT INTO h (who) VALUES ('child')"))
            s.commit()
        queue.put("ok")
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


def test_fork_while_a_probe_waits_on_a_hung_replica(fresh_sandbox: Sandbox) -> None:
    """A probe thread blocked in a read when ``fork()`` comes: the child must not inherit that
    connection's reader locked (it would hang for ever dropping the connection)."""
    sb = fresh_sandbox
    sql(sb.primary, "CREATE TABLE rwsplit.h (id INT PRIMARY KEY AUTO_INCREMENT, who TEXT)")
    with Cluster(sb.primary_url, sb.replica_urls, monitor_interval=0.1, monitor_timeout=1.0) as c:
        monitor = c.monitor
        assert monitor is not None
        wait_until(lambda: monitor.rounds >= 2, what="probe connections open")
        sb.hang(sb.replicas[0].name)
        try:
            ctx = multiprocessing.get_context("fork")
            for attempt in range(3):  # each fork lands while the hung probe reads
                wait_until(_probe_reading, timeout=10, what="a probe blocked reading")
                queue = ctx.Queue()
                child = ctx.Process(target=_forked_write, args=(c, queue))
                child.start()
                child.join(30)
                if child.is_alive():
                    child.kill()
                    child.join(5)
                    pytest.fail(f"fork {attempt}: the child hung (inherited a locked reader)")
                assert queue.get(timeout=5) == "ok"
        finally:
            sb.resume(sb.replicas[0].name)
    assert sql(sb.primary, "SELECT COUNT(*) FROM rwsplit.h") == [(3,)]


APP = """
import faulthandler
import os
import signal

# On failure the test sends this signal to gunicorn's processes: each writes its threads'
# stacks to the log (a signal handler, inherited by the workers, no watchdog thread).
faulthandler.register(signal.SIGRTMIN + 1, all_threads=True)

from sqlalchemy import text

from rwsplit import Cluster, FailoverOptions

cluster = Cluster(
    os.environ["RWSPLIT_TEST_PRIMARY"],
    os.environ["RWSPLIT_TEST_REPLICAS"].split(","),
    monitor_interval=0.2,
    monitor_timeout=0.5,
    auto_failover=True,
    failover_options=FailoverOptions(
        os.environ["RWSPLIT_TEST_REPL_USER"], os.environ["RWSPLIT_TEST_REPL_PASSWORD"]
    ),
    engine_options={"connect_args": {"connect_timeout": 2, "read_timeout": 2, "write_timeout": 2}},
)
with cluster.session() as s:  # the pool holds a connection when gunicorn forks
    s.execute(text("SELECT 1")).scalar_one()


def app(environ, start_response):
    try:
        with cluster.session() as s:
            s.execute(text("INSERT INTO g (pid) VALUES (:p)"), {"p": os.getpid()})
            port = s.execute(text("SELECT @@port")).scalar_one()  # the node that took it
            s.commit()
        status, body = "200 OK", {"pid": os.getpid(), "port": port}
    except Exception as exc:
        status, body = "503 Service Unavailable", {"pid": os.getpid(), "error": repr(exc)}
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [data]


import json  # noqa: E402
"""

CONF = """
# gunicorn 25+: no control socket in $HOME (older versions ignore an unknown name here)
control_socket_disable = True


def post_fork(server, worker):
    # One process fails over (gunicorn's master, which made the Cluster with --preload);
    # the workers' monitors (restarted after the fork) follow the new topology.
    import app

    app.cluster.monitor.auto_failover = False
"""


def _get(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))
    except OSError as exc:
        return {"error": repr(exc)}


def _batch(url: str, pool: ThreadPoolExecutor, n: int = 12) -> list[dict[str, Any]]:
    return list(pool.map(_get, [url] * n))


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _dump_stacks(master: int) -> None:
    """Ask gunicorn's master and workers for their stacks (see APP), then let them write."""
    children = [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == master
    ]
    for pid in [master, *children]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGRTMIN + 1)
    time.sleep(1)  # a report, not synchronisation: the processes write their stacks


def test_gunicorn_preload_workers_follow_a_failover(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    sb = fresh_sandbox
    sql(sb.primary, "CREATE TABLE rwsplit.g (id INT PRIMARY KEY AUTO_INCREMENT, pid INT)")
    sb.wait_caught_up()
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "gunicorn_conf.py").write_text(CONF)
    url = f"http://127.0.0.1:{free_port()}/"
    env = {
        "PATH": "/usr/bin:/bin",
        "RWSPLIT_TEST_PRIMARY": sb.primary_url,
        "RWSPLIT_TEST_REPLICAS": ",".join(sb.replica_urls),
        "RWSPLIT_TEST_REPL_USER": REPL_USER,
        "RWSPLIT_TEST_REPL_PASSWORD": REPL_PASSWORD,
    }
    log_path = tmp_path / "gunicorn.log"
    log = open(log_path, "wb")  # noqa: SIM115
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2"]
    command += ["--bind", url.split("/")[2], "--chdir", str(tmp_path)]
    command += ["--config", str(tmp_path / "gunicorn_conf.py"), "app:app"]
    server = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    seen: list[dict[str, Any]] = []

    def batch(pool: ThreadPoolExecutor) -> list[dict[str, Any]]:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited with {server.returncode}")
        seen[:] = _batch(url, pool)
        return seen

    try:
        with ThreadPoolExecutor(12) as pool:
            workers: set[int] = set()

            def both_workers_wrote() -> bool:
                workers.update(r["pid"] for r in batch(pool) if "port" in r)
                return len(workers) >= 2

            wait_until(both_workers_wrote, timeout=90, what="both gunicorn workers writing")
            t0 = time.monotonic()
            sb.kill(sb.primary.name)
            replica_ports = {r.port for r in sb.replicas}
            resumed: dict[int, tuple[int, float]] = {}

            def every_worker_on_the_new_primary() -> bool:
                for r in batch(pool):
                    if r.get("port") in replica_ports and r["pid"] not in resumed:
                        resumed[r["pid"]] = (r["port"], time.monotonic() - t0)
                return workers <= set(resumed)

            wait_until(every_worker_on_the_new_primary, timeout=60, what="workers resumed")
    except AssertionError as exc:
        _dump_stacks(server.pid)
        log.flush()
        tail = log_path.read_text(errors="replace")[-6000:]
        raise AssertionError(f"{exc}\nlast responses: {seen}\ngunicorn log:\n{tail}") from exc
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()
    assert len({port for port, _ in resumed.values()}) == 1  # one new primary for all
    print(
        "gunicorn workers writing to the new primary after: "
        + ", ".join(f"{pid}: {at:.2f}s" for pid, (_, at) in sorted(resumed.items()))
    )
