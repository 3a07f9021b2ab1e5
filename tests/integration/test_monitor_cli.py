"""`rwsplit monitor` as a service runs it: a separate process on a real sandbox, logging on
stderr, failing the cluster over, and exiting 0 on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pymysql
import pytest

from rwsplit.sandbox import Sandbox, SandboxNode

from .util import sql, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.failover]


class _Lines:
    """Reads a process's stderr on a thread, so that waits for a line stay bounded."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        stream = proc.stderr
        threading.Thread(
            target=lambda: [self._queue.put(line) for line in stream], daemon=True
        ).start()

    def wait_for(self, *needles: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                if all(n in line for n in needles):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line with {needles} in:\n" + "".join(self.seen))
            with contextlib.suppress(queue.Empty):
                self.seen.append(self._queue.get(timeout=left))


def _members(node: SandboxNode) -> list[str]:
    try:
        rows = sql(node, "SELECT CONCAT(host, ':', port) FROM rwsplit.cluster_nodes")
    except pymysql.err.ProgrammingError:  # not created yet
        return []
    return sorted(str(r[0]) for r in rows)


def test_monitor_logs_fails_over_and_exits_0_on_sigterm(fresh_sandbox: Sandbox) -> None:
    sb = fresh_sandbox
    env = {
        **os.environ,
        "RWSPLIT_REPLICATION_USER": sb.replication_user,
        "RWSPLIT_REPLICATION_PASSWORD": sb.replication_password,
    }
    # Only one replica given: the monitor discovers the primary and the other replica.
    cmd = [sys.executable, "-m", "rwsplit", "monitor", "--replica", sb.replica_urls[0]]
    cmd += ["--auto-failover", "--interval", "0.2", "--timeout", "0.5"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = _Lines(proc)
        first = lines.wait_for("topology: primary")
        assert all(f"replica {r.address}" in first for r in sb.replicas), first
        assert f"primary {sb.primary.address}" in first
        old = sb.primary
        sb.kill(old.name)
        promoted = lines.wait_for("failover: promoted")
        new = next(r for r in sb.replicas if f"promoted {r.address}" in promoted)
        wait_until(lambda: sql(new, "SELECT @@read_only")[0][0] == 0, what="new primary writable")
        # The member list (for a failover started from one replica) follows: the replaced
        # primary leaves it, the replicas stay.
        wait_until(
            lambda: _members(new) == sorted(r.address for r in sb.replicas),
            what="member list without the replaced primary",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        lines.wait_for("received SIGTERM")
        lines.wait_for("monitor stopped")
        output = "".join(lines.seen)
        assert sb.replication_password not in output
        # Changes of state only, though the dead node's failure count changed every round:
        # up, the primary down, the new primary (and at most a step between).
        logged = [line for line in lines.seen if "topology: " in line]
        assert 2 <= len(logged) <= 4, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_monitor_exits_0_on_sigint(sandbox: Sandbox) -> None:
    cmd = [sys.executable, "-m", "rwsplit", "monitor", "--primary", sandbox.primary_url]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        lines = _Lines(proc)
        line = lines.wait_for("topology: primary")
        assert all(r.address in line for r in sandbox.replicas), line  # discovered
        lines.wait_for("auto-failover off")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        lines.wait_for("received SIGINT")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
