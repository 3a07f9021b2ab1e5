"""`rwsplit sandbox up --server postgresql`, `status` and `down` as a user runs them: separate
processes, real PostgreSQL servers."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from rwsplit.cli import main
from rwsplit.sandbox._pg_os import pid_runs_postgres
from rwsplit.sandbox.postgresql import PgSandbox

from ..fix_cli import rwsplit
from ..fix_pg import require_postgresql

pytestmark = pytest.mark.integration


def test_up_status_down_a_postgresql_sandbox(tmp_path: Path) -> None:
    require_postgresql()
    d = str(tmp_path / "sb")
    up = rwsplit(
        "sandbox", "up", "--server", "postgresql", "--standbys", "1", "--dir", d,
        "--database", "shop", "--log-statement", "all",
    )  # fmt: skip
    nodes: list[tuple[int | None, str]] = []
    try:
        assert up.returncode == 0, up.stderr
        lines = up.stdout.strip().splitlines()
        assert [line.split()[0] for line in lines] == ["primary", "standby1", "replication"]
        sb = PgSandbox.load(d)
        nodes = [(n.pid, n.datadir) for n in sb.nodes]
        assert [line.split()[1] for line in lines[:2]] == [
            n.url.rsplit("/", 1)[0] + "/shop" for n in sb.nodes
        ]
        assert lines[2].split() == ["replication", "rwsplit", sb.password]
        assert "sandbox up in" in up.stderr  # progress is shown
        assert "cloning 1 standby (pg_basebackup)" in up.stderr  # singular
        assert f"standby1 logs its statements in {sb.standbys[0].log_path}" in up.stderr
        # The servers outlive the command that started them (detached).
        assert all(pid_runs_postgres(pid or 0, datadir) for pid, datadir in nodes)
        with contextlib.closing(sb.standbys[0].connect(dbname="shop")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("shop",)

        status = rwsplit("sandbox", "status", "--dir", d)
        assert status.returncode == 0, status.stdout + status.stderr
        rows = [line.split() for line in status.stdout.splitlines()[1:3]]
        # node role address pid state streaming source lag lsn
        assert [r[:2] for r in rows] == [["primary", "primary"], ["standby1", "standby"]]
        assert [r[4:7] for r in rows] == [
            ["running", "no", "-"],
            ["running", "yes", sb.primary.address],
        ]
        # A second 'up' in the same directory refuses (exit 1) and leaves it running.
        again = rwsplit("sandbox", "up", "--server", "postgresql", "--dir", d)
        assert again.returncode == 1 and "already running" in again.stderr

        PgSandbox.load(d).kill("standby1")
        status = rwsplit("sandbox", "status", "--dir", d)
        assert status.returncode == 3
        assert "1 of 2 servers running; stopped: standby1" in status.stderr
    finally:
        down = rwsplit("sandbox", "down", "--dir", d, "--purge")
    assert down.returncode == 0, down.stderr
    assert "stopped 1 server in" in down.stdout and "(standby1 was not running)" in down.stdout
    assert len(nodes) == 2
    assert not any(pid_runs_postgres(pid or 0, datadir) for pid, datadir in nodes)
    assert not any(Path(datadir).exists() for _, datadir in nodes)  # --purge
    assert rwsplit("sandbox", "status", "--dir", d).returncode == 3


def test_mariadb_only_options_are_usage_errors_with_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path / "sb")
    for option in ("--no-gtid", "--log-slave-updates"):
        assert main(["sandbox", "up", "--server", "postgresql", option, "--dir", d]) == 2
        assert f"{option} is for MariaDB/MySQL" in capsys.readouterr().err
    assert main(["sandbox", "up", "--log-statement", "all", "--dir", d]) == 2
    assert "--log-statement is for PostgreSQL" in capsys.readouterr().err
    assert not Path(d).exists()  # nothing was started


def test_help_names_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "up", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    assert "--server postgresql" in out and "--standbys" in out
