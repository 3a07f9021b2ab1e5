"""`rwsplit stats` on a real sandbox: the monitor's view in stats() shape."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rwsplit.cli import main
from rwsplit.sandbox import Sandbox

pytestmark = pytest.mark.integration


def test_stats_json(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--primary", sandbox.primary_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["routing"] == "normal"
    roles = {name: n["role"] for name, n in data["nodes"].items()}
    assert roles[sandbox.primary.address] == "primary"
    assert all(roles[r.address] == "replica" for r in sandbox.replicas)  # discovered
    assert all(n["up"] for n in data["nodes"].values())


def test_stats_table_and_prometheus(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--replica", sandbox.replica_urls[0]]) == 0
    out = capsys.readouterr().out
    assert sandbox.primary.address in out and "primary" in out
    assert main(["stats", "--primary", sandbox.primary_url, "--prometheus"]) == 0
    families = {f.name for f in text_string_to_metric_families(capsys.readouterr().out)}
    assert {"rwsplit_statements", "rwsplit_node_up", "rwsplit_replica_lag_seconds"} <= families
