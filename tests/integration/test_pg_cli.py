"""The ``rwsplit`` command on a PostgreSQL cluster: topology, stats, classify; documented
exit codes (0 one writable primary, 1 none, 2 a bad command line)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rwsplit.cli import main
from rwsplit.sandbox.postgresql import PgSandbox

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def sb(pg_sandbox: PgSandbox) -> PgSandbox:
    """The session's shared sandbox (tests/fix_pg.py): replay is resumed after each test."""
    return pg_sandbox


def _nodes(sb: PgSandbox) -> list[str]:
    args = ["--primary", sb.primary_url]
    for url in sb.standby_urls:
        args += ["--replica", url]
    return args


def test_topology_table_and_json(sb: PgSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", *_nodes(sb)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["node", "role", "health", "read_only", "lag", "gtid"]
    assert sb.password not in table
    # From a standby alone, discovery follows its WAL receiver to the primary.
    assert main(["topology", "--json", "--replica", sb.standby_urls[0]]) == 0
    found = {n["node"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert found[sb.primary.address]["role"] == "primary"
    assert main(["topology", "--json", *_nodes(sb)]) == 0
    nodes = {n["node"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert set(nodes) == {n.address for n in sb.nodes}
    assert nodes[sb.primary.address]["role"] == "primary"
    assert nodes[sb.primary.address]["read_only"] is False
    for s in sb.standbys:
        assert nodes[s.address]["role"] == "replica" and nodes[s.address]["healthy"]
        assert str(nodes[s.address]["gtid"]).startswith("pg:")


def test_topology_from_one_node_alone_lists_every_node(
    sb: PgSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # The standbys stream as standbyN@host:port: the primary's pg_stat_replication names them.
    for given in (["--primary", sb.primary_url], *(["--replica", u] for u in sb.standby_urls)):
        assert main(["topology", "--json", *given]) == 0
        nodes = {n["node"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}
        assert set(nodes) == {n.address for n in sb.nodes}, given[0]
        assert nodes[sb.primary.address]["role"] == "primary"
        assert {nodes[s.address]["role"] for s in sb.standbys} == {"replica"}


def test_monitor_given_one_standby_watches_every_node(sb: PgSandbox) -> None:
    from .test_monitor_cli import _Lines

    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "rwsplit", "monitor", "--replica", sb.standby_urls[1]]
    cmd += ["--interval", "0.2", "--timeout", "0.5"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = _Lines(proc)
        assert "monitoring 3 nodes" in lines.wait_for("monitoring")
        first = lines.wait_for("topology: primary")
        assert f"primary {sb.primary.address}" in first, first
        assert all(f"replica {n.address}" in first for n in sb.standbys), first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert sb.password not in "".join(lines.seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_stats_json_and_prometheus(sb: PgSandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--json", *_nodes(sb)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["nodes"][sb.primary.address]["role"] == "primary"
    assert {stats["nodes"][s.address]["role"] for s in sb.standbys} == {"replica"}
    pytest.importorskip("prometheus_client")
    assert main(["stats", "--prometheus", *_nodes(sb)]) == 0
    assert "rwsplit_" in capsys.readouterr().out


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("topology", "stats", "classify", "bench", "demo"):
        assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--dialect" in out and "--server" in out
    assert main(["topology", "--primary", "postgresql+psycopg:///nohost"]) == 2
    assert "has no host" in capsys.readouterr().err


def test_topology_without_a_primary_exits_1(
    fresh_pg_sandbox: PgSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = fresh_pg_sandbox
    sb.stop_node(sb.primary.name)
    assert main(["topology", "--timeout", "1", *_nodes(sb)]) == 1
    assert "no writable primary" in capsys.readouterr().err
