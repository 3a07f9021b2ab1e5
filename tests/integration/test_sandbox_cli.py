"""`rwsplit sandbox up|status|down` as a user runs them: separate processes, real servers."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from rwsplit.cli import main
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, _pid_runs_server

from .. import fix_cli
from ..fix_sandbox import require_server
from .util import position, sql

pytestmark = pytest.mark.integration


# Each command bounded to 120 s.
rwsplit = functools.partial(fix_cli.rwsplit, timeout=120)


def test_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    require_server()
    d = str(tmp_path / "sb")
    up = rwsplit("sandbox", "up", "--replicas", "1", "--dir", d)
    nodes = []
    try:
        assert up.returncode == 0, up.stderr
        lines = up.stdout.strip().splitlines()
        # "name URL" per node first (scripts read those), then the replication account.
        assert [line.split()[0] for line in lines] == ["primary", "replica1", "replication"]
        assert all(line.split()[1].startswith("mysql+pymysql://") for line in lines[:2])
        assert lines[2].split() == ["replication", REPL_USER, REPL_PASSWORD]
        assert "sandbox up in" in up.stderr  # progress is shown
        assert "starting replication on 1 replica\n" in up.stderr  # singular
        nodes = [(n.pid, n.datadir) for n in Sandbox.load(d).nodes]
        assert all(_pid_runs_server(pid, datadir) for pid, datadir in nodes if pid)
        status = rwsplit("sandbox", "status", "--dir", d)
        assert status.returncode == 0, status.stdout
        rows = [line.split() for line in status.stdout.splitlines()[1:3]]
        # name role address pid state read_only replicating lag gtid
        assert [r[1] for r in rows] == ["primary", "replica"]
        assert [r[4:7] for r in rows] == [["running", "no", "no"], ["running", "yes", "yes"]]
        assert rows[0][7] == "-"
        assert "True" not in status.stdout and "None" not in status.stdout
        assert f"replication account: {REPL_USER} {REPL_PASSWORD}" in status.stdout
        # A hung server shows as such; down stops it all the same (resumed, then SIGTERM).
        Sandbox.load(d).hang("replica1")
        status = rwsplit("sandbox", "status", "--dir", d)
        assert status.stdout.splitlines()[2].split()[4] == "hung", status.stdout
    finally:
        down = rwsplit("sandbox", "down", "--dir", d, "--purge")
    assert down.returncode == 0, down.stderr
    assert "stopped 2 servers" in down.stdout
    assert len(nodes) == 2
    assert not any(_pid_runs_server(pid, datadir) for pid, datadir in nodes if pid)
    assert not any(Path(datadir).exists() for _, datadir in nodes)  # --purge
    assert rwsplit("sandbox", "status", "--dir", d).returncode == 3


def test_down_without_purge_keeps_the_data(tmp_path: Path) -> None:
    require_server()
    d = str(tmp_path / "sb")
    up = rwsplit("sandbox", "up", "--replicas", "0", "--dir", d)
    assert up.returncode == 0, up.stderr
    (node,) = Sandbox.load(d).nodes
    down = rwsplit("sandbox", "down", "--dir", d)
    assert down.returncode == 0, down.stderr
    assert "stopped 1 server in" in down.stdout
    assert not _pid_runs_server(node.pid or 0, node.datadir)
    assert (Path(node.datadir) / "mysql").is_dir()


def test_cluster_commands_discover_from_one_replica(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """topology, failover and switchover find the whole cluster from one replica's URL."""
    monkeypatch.delenv("RWSPLIT_PRIMARY_URL", raising=False)
    monkeypatch.delenv("RWSPLIT_HOST", raising=False)
    monkeypatch.setenv("RWSPLIT_REPLICATION_USER", sandbox.replication_user)
    monkeypatch.setenv("RWSPLIT_REPLICATION_PASSWORD", sandbox.replication_password)
    seed = ["--replica", sandbox.replica_urls[0]]
    assert main(["topology", *seed]) == 0
    out = capsys.readouterr().out
    assert all(n.address in out for n in sandbox.nodes), out

    def state() -> list[tuple[object, str]]:
        return [(sql(n, "SELECT @@read_only")[0][0], position(n)) for n in sandbox.nodes]

    before = state()
    target = sandbox.replicas[1].address
    assert main(["switchover", "--dry-run", "--to", target, *seed]) == 0
    out, err = capsys.readouterr()
    assert f"switchover: would promote {target} (old primary {sandbox.primary.address})" in out
    fence = sandbox.family.set_read_only(True)[0].sql
    assert fence in out  # planned on the primary it discovered
    assert "switchover done" not in err
    assert "dry run: switchover planned, nothing was changed" in err
    assert state() == before

    assert main(["failover", "--dry-run", *seed]) == 0  # the primary is alive
    assert f"nothing to do: {sandbox.primary.address} is the primary" in capsys.readouterr().out


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
