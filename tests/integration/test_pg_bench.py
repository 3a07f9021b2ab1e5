"""`rwsplit bench --server postgresql`, the short form CI runs: figures for the plain primary,
rwsplit and pgpool-II on a PostgreSQL sandbox, no stale read through rwsplit, each node's
share from the servers' own pg_stat_statements. Never a timed assertion: the figures are
recorded in benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from rwsplit.cli import main
from rwsplit.cli.bench import CpuCaps, PgPool, _pgpool_binary
from rwsplit.sandbox.postgresql import PgSandbox

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]


@pytest.fixture(scope="module")
def one() -> Iterator[PgSandbox]:
    """A primary and one standby, shared by the tests that need a cluster of their own."""
    with PgSandbox(standbys=1) as sb:
        yield sb


def test_quick_bench_on_a_postgresql_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    setups = "plain,rwsplit" + (",pgpool" if _pgpool_binary() else "")
    args = ["bench", "--server", "postgresql", "--quick", "--yes", "--json", "--no-progress"]
    code = main([*args, "--setups", setups])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    results = report["results"]
    assert {r["setup"] for r in results} == set(setups.split(","))
    for r in results:
        assert r["units"] > 0 and r["errors"] == 0, r["error_samples"]
    for r in (r for r in results if r["setup"] != "pgpool"):
        assert r["stale_reads"] == 0  # POST -> redirect -> GET saw its write
    ryw = next(r for r in results if (r["setup"], r["mix"]) == ("rwsplit", "ryw"))
    standbys = [n for n in ryw["nodes"].values() if n["role"] == "replica"]
    assert len(standbys) == 2
    # The servers' own count: the GETs read standbys (after a bounded LSN wait).
    assert sum(n["com_select"] for n in standbys) > 0
    assert ryw["causal"]["waits"] > 0
    plain = next(r for r in results if (r["setup"], r["mix"]) == ("plain", "read-heavy"))
    assert next(n for n in plain["nodes"].values() if n["role"] == "primary")["share"] == 1.0
    if "pgpool" in setups:
        pool = next(r for r in results if (r["setup"], r["mix"]) == ("pgpool", "read-heavy"))
        assert sum(n["com_select"] for n in pool["nodes"].values() if n["role"] == "replica")


def test_pgpool_is_stopped_with_its_processes(one: PgSandbox) -> None:
    if _pgpool_binary() is None:
        pytest.skip("pgpool-II is not installed (apt-get install pgpool2)")
    sb = one
    primary, standby = sb.primary, sb.standbys[0]
    with PgPool((primary.host, primary.port), [(standby.host, standby.port)], 2) as pool:
        pid = pool._proc.pid if pool._proc else None
        assert pid is not None
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=pool.port,
            user="rwsplit",
            password=sb.password,
            dbname="rwsplit",
            connect_timeout=5,
        ) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    left = subprocess.run(
        ["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    assert left.strip() == ""


def test_cpu_caps_take_every_process_of_a_node() -> None:
    root = CpuCaps.root
    if not (root / "cgroup.procs").exists():
        pytest.skip(f"needs a writable cgroup v1 cpu controller at {root}")
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        with CpuCaps(0.1, {"node": [p.pid for p in procs]}) as caps:
            group = caps._made[0][0]
            inside = set((group / "cgroup.procs").read_text().split())
            assert inside == {str(p.pid) for p in procs}
        assert not group.exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_given_postgresql_cluster_asks_before_creating_its_database(
    one: PgSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = one
    nodes = ["--primary", sb.primary_url, "--replica", sb.standby_urls[0]]
    quick = ["--quick", "--no-progress", "--setups", "plain", "--mix", "read-only"]
    # No terminal to ask on, no --yes: refused, nothing created.
    assert main(["bench", *nodes, *quick]) == 1
    assert "pass --yes" in capsys.readouterr().err
    with sb.primary.connect(dbname="postgres") as conn:
        before = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
        extensions = conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall()
    assert ("rwsplit_bench",) not in before
    assert main(["bench", *nodes, *quick, "--yes", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "given cluster"
    assert [r["setup"] for r in report["results"]] == ["plain"]
    assert report["results"][0]["errors"] == 0
    with sb.primary.connect(dbname="postgres") as conn:
        after = conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()
        # Only its own database: no extension created elsewhere.
        assert conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall() == (
            extensions
        )
    assert set(after) - set(before) == {("rwsplit_bench",)}
