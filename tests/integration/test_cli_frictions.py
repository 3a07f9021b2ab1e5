"""Frictions of issue 19 that need real servers: sandbox status / down after changes,
switchover --dry-run against the real run, an account without the monitoring privilege."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from rwsplit.sandbox import Sandbox

from .. import fix_cli
from ..fix_sandbox import require_server
from .util import monitor_privilege

pytestmark = [pytest.mark.integration]


# Every command with the sandbox's replication account; only its arguments name the servers.
rwsplit = functools.partial(fix_cli.rwsplit, replication_account=True)


@pytest.fixture
def cli_sandbox(tmp_path: Path) -> Iterator[tuple[Sandbox, str]]:
    require_server()
    d = str(tmp_path / "sb")
    up = rwsplit("sandbox", "up", "--dir", d)
    assert up.returncode == 0, up.stderr
    try:
        yield Sandbox.load(d), d
    finally:
        rwsplit("sandbox", "down", "--purge", "--dir", d)


def _roles(status: str) -> dict[str, str]:
    """node name -> the role column of `sandbox status`."""
    return {line.split()[0]: line.split()[1] for line in status.splitlines()[1:4]}


@pytest.mark.failover
def test_switchover_dry_run_plans_what_the_real_run_does_then_status_and_down(
    cli_sandbox: tuple[Sandbox, str],
) -> None:
    sb, d = cli_sandbox
    old, new = sb.primary, sb.replicas[0]
    # An application session on the primary: the switchover must end it.
    client = pymysql.connect(host=old.host, port=old.port, user="root", database="rwsplit")
    with contextlib.closing(client):
        client_id = client.thread_id()
        dry = rwsplit("switchover", "--dry-run", "--to", new.address, "--replica", new.url)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        planned = [line for line in dry.stdout.splitlines() if line.startswith(old.address)]
        # Made read-only once (it listed it twice: once more as a node to repoint).
        read_only = sb.family.set_read_only(True)[-1].sql
        assert planned.count(f"{old.address}: {read_only};") == 1, dry.stdout
        assert f"{old.address}: KILL CONNECTION {client_id};" in planned, dry.stdout
        kills = [line for line in planned if "KILL CONNECTION" in line]

        real = rwsplit("switchover", "--to", new.address, "--replica", new.url)
        assert real.returncode == 0, real.stdout + real.stderr
    # The real run ends the same sessions as the plan: not its own failover-lock session.
    done = [line for line in real.stderr.splitlines() if "KILL CONNECTION" in line]
    assert len(done) == len(kills) == 1, real.stderr
    assert f"KILL CONNECTION {client_id}" in done[0]
    assert "recorded: epoch 1 in rwsplit.failover_log" in real.stdout

    status = rwsplit("sandbox", "status", "--dir", d)
    assert status.returncode == 0, status.stdout + status.stderr
    # The rows keep the names they started with; the role column says what each is now.
    assert _roles(status.stdout) == {
        "primary": "replica",
        "replica1": "primary",
        "replica2": "replica",
    }

    sb.kill("replica2")
    status = rwsplit("sandbox", "status", "--dir", d)
    assert status.returncode == 3
    assert "rwsplit: 2 of 3 servers running; stopped: replica2" in status.stderr
    down = rwsplit("sandbox", "down", "--dir", d)
    assert down.returncode == 0, down.stderr
    assert f"stopped 2 servers in {d} (replica2 was not running)" in down.stdout


def test_an_account_without_the_monitoring_privilege_is_told_so(
    cli_sandbox: tuple[Sandbox, str],
) -> None:
    sb, _ = cli_sandbox
    with contextlib.closing(sb.primary.connect()) as conn, conn.cursor() as cur:
        cur.execute("CREATE USER 'plain'@'%' IDENTIFIED BY 'plain-pw'")
        cur.execute("GRANT SELECT ON rwsplit.* TO 'plain'@'%'")
    sb.wait_caught_up()
    url = f"mysql+pymysql://plain:plain-pw@{sb.replicas[0].address}/rwsplit"
    topo = rwsplit("topology", "--replica", url)
    assert topo.returncode == 1
    assert "reaches the servers but may not read their replication state" in topo.stderr
    assert f"GRANT {monitor_privilege(sb)}" in topo.stderr
    assert "cannot reach" not in topo.stderr
    assert "plain-pw" not in topo.stdout + topo.stderr
