"""The sandbox's process control: servers outlive the thread that started them but not the
owning process; hang / resume / stop of frozen (SIGSTOP) servers, by the pids it started."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from rwsplit.sandbox import Sandbox, SandboxNode, _pid_runs_server, _wait_gone

from ..fix_sandbox import require_server
from .util import sql, wait_until

pytestmark = pytest.mark.integration

# Starts a sandbox from a worker thread, lets that thread end (its OS thread gone from
# /proc), checks the servers still answer, prints "pid:port:datadir" per node, then idles.
_OWNER = """
import os, sys, threading, time
from rwsplit.sandbox import Sandbox
box = {}
def start():
    box["tid"] = threading.get_native_id()
    box["sb"] = Sandbox(1, base_dir=sys.argv[1]).start()
t = threading.Thread(target=start)
t.start()
t.join()
task = f"/proc/self/task/{box['tid']}"
deadline = time.monotonic() + 10
while os.path.exists(task) and time.monotonic() < deadline:
    time.sleep(0.01)
assert not os.path.exists(task), "the worker thread did not end"
print(" ".join(f"{n.pid}:{n.port}:{n.datadir}" for n in box["sb"].nodes), flush=True)
time.sleep(600)
"""


def _answers(port: int) -> bool:
    try:
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=5)
    except pymysql.err.OperationalError:
        return False
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone() == (1,)


def test_servers_outlive_the_starting_thread_and_die_with_the_process(tmp_path: Path) -> None:
    require_server()
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    nodes: list[tuple[int, int, str]] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        nodes = [(int(p), int(port), d) for p, port, d in (i.split(":", 2) for i in line)]
        assert len(nodes) == 2, proc.stderr.read() if proc.stderr else ""
        # The thread that started them has ended: the servers still run and answer.
        assert all(_pid_runs_server(pid, d) for pid, _, d in nodes)
        assert all(_answers(port) for _, port, _ in nodes)
    finally:
        proc.kill()  # the owner crashes (kill -9): its servers must go with it
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert nodes
    assert all(_wait_gone(pid, d, 30) for pid, _, d in nodes)


def _frozen(node: SandboxNode) -> bool:
    """True when *node* accepts no query within a second (its process does not run)."""
    try:
        conn = node.connect(read_timeout=1, write_timeout=1)
    except pymysql.err.OperationalError:
        return True
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute("SELECT 1")
    return False


def _shut_down_cleanly(node: SandboxNode) -> bool:
    log = Path(node.datadir).parent / "error.log"
    return "Shutdown complete" in log.read_text(errors="replace")


def test_hang_resume_kill_and_stop_frozen_servers(tmp_path: Path) -> None:
    require_server()
    sb = Sandbox(1, base_dir=tmp_path).start()
    try:
        primary, replica = sb.primary, sb.replicas[0]
        # kill() with a signal that does not end the server sends it and returns.
        sb.kill(replica.name, signal.SIGSTOP)
        wait_until(lambda: sb.is_stopped(replica), what="replica stopped")
        assert _frozen(replica)
        sb.kill(replica.name, signal.SIGCONT)
        wait_until(lambda: not sb.is_stopped(replica), what="replica resumed")
        assert sql(replica, "SELECT 1") == [(1,)]

        sb.hang(primary.name)
        assert sb.is_stopped(primary) and sb.is_running(primary)
        assert _frozen(primary)
        sb.resume(primary.name)
        assert not sb.is_stopped(primary)
        assert sql(primary, "SELECT 1") == [(1,)]

        # SIGTERM to a hung server: it is resumed, shuts down cleanly, kill() returns.
        sb.hang(replica.name)
        sb.kill(replica.name, signal.SIGTERM)
        assert not sb.is_running(replica)
        assert _shut_down_cleanly(replica)

        # stop() with a hung primary: resumed, shut down cleanly (not killed after a timeout).
        sb.hang(primary.name)
    finally:
        sb.stop()
    assert not sb.is_running(primary)
    assert _shut_down_cleanly(primary)


# Starts and restarts a sandbox server while a Cluster's monitor threads probe it, with an
# at-fork child hook registered that records every forked copy of this process running
# Python code. The sandbox must fork-and-exec its servers without running any (issue 17,
# defect 8: a preexec_fn made CPython run rwsplit's at-fork hooks in the child, which could
# deadlock on a lock a monitor thread held at the fork).
_SPAWN_WITH_MONITORS = """
import os, sys, time
marker = sys.argv[2]

def in_child():
    with open(marker, "a") as f:
        f.write(f"at-fork hook ran in child {os.getpid()}\\n")

os.register_at_fork(after_in_child=in_child)
from rwsplit import Cluster
from rwsplit.sandbox import Sandbox
with Sandbox(1, base_dir=sys.argv[1]) as sb:
    with Cluster(sb.primary_url, sb.replica_urls, monitor_interval=0.02) as cluster:
        assert cluster.monitor is not None
        for _ in range(2):
            sb.kill("replica1")
            sb.restart("replica1")
            sb.kill("primary")
            sb.restart("primary")
        print("restarted", flush=True)
"""


def test_start_and_restart_run_no_python_in_the_child_while_monitors_run(tmp_path: Path) -> None:
    require_server()
    marker = tmp_path / "forks.log"
    marker.touch()
    proc = subprocess.run(
        [sys.executable, "-c", _SPAWN_WITH_MONITORS, str(tmp_path / "sb"), str(marker)],
        capture_output=True,
        text=True,
        timeout=240,  # a deadlocked fork would hang here: bounded, and then a failure
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "restarted" in proc.stdout
    assert marker.read_text() == "", "the sandbox ran Python in a forked child"
