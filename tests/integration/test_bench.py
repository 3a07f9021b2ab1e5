"""`rwsplit bench`, the short form CI runs: it produces figures for rwsplit and the plain
SQLAlchemy baseline, no stale read, and the documented JSON shape. Never a timed assertion:
the figures themselves are recorded in benchmarks/README.md."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rwsplit.cli import main
from rwsplit.cli.bench import BENCH_DATABASE, CpuCaps
from rwsplit.sandbox import Sandbox

from ..fix_sandbox import require_server
from .util import sql

pytestmark = pytest.mark.integration

RESULT_KEYS = {"setup", "clients", "throughput", "p50_ms", "p99_ms", "stale_reads", "errors"}


def test_quick_bench_on_its_own_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    require_server()
    code = main(
        ["bench", "--quick", "--yes", "--json", "--no-progress", "--setups", "plain,rwsplit"]
    )
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    results = report["results"]
    assert {r["setup"] for r in results} == {"plain", "rwsplit"}
    assert {r["mix"] for r in results} == {"read-heavy", "ryw"}
    for r in results:
        assert r.keys() >= RESULT_KEYS
        assert r["clients"] == 4
        assert r["units"] > 0 and r["throughput"] > 0
        assert r["p50_ms"] is not None and r["p50_ms"] <= r["p99_ms"]
        assert r["errors"] == 0, r["error_samples"]
        # POST -> redirect -> GET: every read-back saw its write.
        assert r["stale_reads"] == 0
    ryw = next(r for r in results if (r["setup"], r["mix"]) == ("rwsplit", "ryw"))
    assert ryw["kinds"]["ryw"]["count"] == ryw["units"]
    # The GET after the POST went to a replica (not a silent primary read) at least sometimes:
    # the replicas' own Com_select moved, and rwsplit waited for them to catch up.
    replicas = [n for n in ryw["nodes"].values() if n["role"] == "replica"]
    assert len(replicas) == 2
    assert sum(n["com_select"] for n in replicas) > 0
    assert ryw["causal"]["waits"] > 0
    plain = next(r for r in results if (r["setup"], r["mix"]) == ("plain", "read-heavy"))
    primary = next(n for n in plain["nodes"].values() if n["role"] == "primary")
    assert primary["share"] == 1.0  # the baseline runs everything on the primary


def test_asyncio_clients(capsys: pytest.CaptureFixture[str]) -> None:
    """``--workers asyncio``: the clients are tasks on one event loop, through aiomysql; a
    setup without an asyncio client is skipped with a message, not run as threads."""
    require_server()
    pytest.importorskip("aiomysql")
    args = ["bench", "--quick", "--yes", "--json", "--no-progress", "--workers", "asyncio"]
    code = main([*args, "--setups", "plain,rwsplit,advanced-alchemy"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert {(r["setup"], r["workers"]) for r in report["results"]} == {
        ("plain", "asyncio"),
        ("rwsplit", "asyncio"),
    }
    assert "no asyncio client" in report["skipped"]["advanced-alchemy"]
    for r in report["results"]:
        assert r["units"] > 0 and r["errors"] == 0, r["error_samples"]
        assert r["stale_reads"] == 0
    ryw = next(r for r in report["results"] if (r["setup"], r["mix"]) == ("rwsplit", "ryw"))
    replicas = [n for n in ryw["nodes"].values() if n["role"] == "replica"]
    assert sum(n["com_select"] for n in replicas) > 0  # the GETs read replicas
    assert ryw["causal"]["waits"] > 0


def test_given_cluster_asks_before_creating_its_database(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = ["--primary", sandbox.primary_url]
    for url in sandbox.replica_urls:
        nodes += ["--replica", url]
    sql(sandbox.primary, f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
    quick = ["--quick", "--no-progress", "--setups", "plain", "--mix", "read-only"]
    # No terminal to ask on, no --yes: refused, nothing created.
    assert main(["bench", *nodes, *quick]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert not sql(sandbox.primary, f"SHOW DATABASES LIKE '{BENCH_DATABASE}'")

    tables_before = sql(sandbox.primary, "SHOW TABLES FROM rwsplit")
    assert main(["bench", *nodes, *quick, "--yes", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "given cluster"
    assert [r["setup"] for r in report["results"]] == ["plain"]
    assert sql(sandbox.primary, f"SHOW DATABASES LIKE '{BENCH_DATABASE}'")
    assert sql(sandbox.primary, "SHOW TABLES FROM rwsplit") == tables_before
    sql(sandbox.primary, f"DROP DATABASE {BENCH_DATABASE}")


def test_cpu_caps_move_a_process_into_its_own_cgroup_and_back() -> None:
    root = CpuCaps.root
    if not (root / "cgroup.procs").exists() or not os.access(root, os.W_OK):
        pytest.skip(f"needs a writable cgroup v1 cpu controller at {root}")
    proc = subprocess.Popen(["sleep", "60"])
    try:
        origin = _cpu_cgroup(proc.pid)
        with CpuCaps(0.1, {"sleeper": proc.pid}):
            group = _cpu_cgroup(proc.pid)
            assert group != origin and group.name.endswith("-sleeper")
            # 0.1 of a core: 1 ms of every 10 ms.
            assert (group / "cpu.cfs_quota_us").read_text().strip() == "1000"
            assert (group / "cpu.cfs_period_us").read_text().strip() == "10000"
        assert _cpu_cgroup(proc.pid) == origin
        assert not group.exists()
    finally:
        proc.kill()
        proc.wait()


def _cpu_cgroup(pid: int) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return CpuCaps.root / path.lstrip("/")
    raise AssertionError(f"process {pid} is in no cpu cgroup")
