"""`rwsplit sandbox up|status|down` as a user runs them: separate processes, real servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rwsplit.sandbox import Sandbox, _pid_runs_server

from ..fix_sandbox import require_server

pytestmark = pytest.mark.integration


def rwsplit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rwsplit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    require_server()
    d = str(tmp_path / "sb")
    up = rwsplit("sandbox", "up", "--replicas", "1", "--dir", d)
    nodes = []
    try:
        assert up.returncode == 0, up.stderr
        lines = up.stdout.strip().splitlines()
        assert [line.split()[0] for line in lines] == ["primary", "replica1"]
        assert all(line.split()[1].startswith("mysql+pymysql://") for line in lines)
        assert "sandbox up in" in up.stderr  # progress is shown
        nodes = [(n.pid, n.datadir) for n in Sandbox.load(d).nodes]
        assert all(_pid_runs_server(pid, datadir) for pid, datadir in nodes if pid)
        status = rwsplit("sandbox", "status", "--dir", d)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("running") == 2
    finally:
        down = rwsplit("sandbox", "down", "--dir", d)
    assert down.returncode == 0, down.stderr
    assert len(nodes) == 2
    assert not any(_pid_runs_server(pid, datadir) for pid, datadir in nodes if pid)
    assert rwsplit("sandbox", "status", "--dir", d).returncode == 3


def test_owned_sandbox_dies_with_its_process(tmp_path: Path) -> None:
    """A crashed owner (kill -9) leaves no server behind: the parent-death signal."""
    require_server()
    script = (
        "import sys, time\n"
        "from rwsplit.sandbox import Sandbox\n"
        f"sb = Sandbox(1, base_dir={str(tmp_path)!r}).start()\n"
        "print(' '.join(f'{n.pid}:{n.datadir}' for n in sb.nodes), flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        nodes = [(int(p), d) for p, d in (item.split(":", 1) for item in line)]
        assert len(nodes) == 2
        assert all(_pid_runs_server(p, d) for p, d in nodes)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    from rwsplit.sandbox import _wait_gone

    assert all(_wait_gone(p, d, 30) for p, d in nodes)
