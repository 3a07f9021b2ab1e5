"""PostgreSQL: ``rwsplit failover`` / ``rwsplit switchover`` / ``rwsplit topology`` exit codes
on a real sandbox (no replication account needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rwsplit.cli import main
from rwsplit.sandbox.postgresql import PgSandbox

from ..fix_pg import require_postgresql

pytestmark = [pytest.mark.integration, pytest.mark.postgresql, pytest.mark.failover]

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def sb() -> Iterator[PgSandbox]:
    require_postgresql()  # skipped locally, a failure on CI
    with PgSandbox(standbys=2) as sandbox:
        yield sandbox


def _nodes(sb: PgSandbox) -> list[str]:
    args = ["--primary", sb.primary_url]
    for url in sb.standby_urls:
        args += ["--replica", url]
    return args


def _in_recovery(node: object) -> bool:
    with node.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def test_failover_exit_codes(sb: PgSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", *_nodes(sb)]) == 0
    assert main(["failover", *_nodes(sb)]) == 0  # the primary lives: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    old, first, second = sb.primary, sb.standbys[0], sb.standbys[1]
    sb.stop_node(second.name)
    sb.kill(old.name)
    # Promoted, but a standby is unreachable: incomplete (4) until it follows.
    assert main(["failover", *_nodes(sb)]) == 4
    out = capsys.readouterr().out
    assert f"promoted {first.address}" in out and f"needs a rebuild: {old.address}" in out
    assert not _in_recovery(first)
    sb.start_node(second.name)
    assert main(["failover", *_nodes(sb)]) == 0  # run again: it finishes the job
    with second.connect() as conn:
        row = conn.execute("SELECT sender_port FROM pg_stat_wal_receiver").fetchone()
    assert row == (first.port,)


def test_switchover_exit_0_and_the_target_is_the_primary(
    sb: PgSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    target = sb.standbys[1]
    assert main(["switchover", *_nodes(sb), "--to", target.address]) == 0
    out = capsys.readouterr().out
    assert f"promoted {target.address}" in out
    assert not _in_recovery(target)
    assert _in_recovery(sb.standbys[0])
    with sb.standbys[0].connect() as conn:
        row = conn.execute("SELECT sender_port FROM pg_stat_wal_receiver").fetchone()
    assert row == (target.port,)
    assert main(["switchover", *_nodes(sb), "--to", "127.0.0.1:1"]) == 1


def test_monitor_auto_failover_logs_the_promotion_and_exits_0_on_sigterm(sb: PgSandbox) -> None:
    from .test_monitor_cli import _Lines

    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("RWSPLIT_REPLICATION_USER", None)  # PostgreSQL needs no replication account
    cmd = [sys.executable, "-m", "rwsplit", "monitor", *_nodes(sb)]
    cmd += ["--auto-failover", "--interval", "0.2", "--timeout", "0.5"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = _Lines(proc)
        first = lines.wait_for("topology: primary")
        assert all(f"replica {n.address}" in first for n in sb.standbys), first
        old = sb.primary
        sb.kill(old.name)
        promoted = lines.wait_for("failover: promoted")
        new = next(n for n in sb.standbys if f"promoted {n.address}" in promoted)
        assert not _in_recovery(new)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        lines.wait_for("monitor stopped")
        assert sb.password not in "".join(lines.seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
