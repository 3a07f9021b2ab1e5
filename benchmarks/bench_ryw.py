"""Read-your-writes cost, before and after a change, in the same run.

Run:  python benchmarks/bench_ryw.py [--before REV] [--rounds 3] [--duration 5]

Starts one sandbox (a primary, 2 replicas) and runs the POST -> redirect -> GET unit of
``rwsplit bench --mix ryw`` against it, setups ``plain`` (SQLAlchemy on the primary, the
baseline) and ``rwsplit``, at 1 and 4 clients, as threads and as processes — once with the
rwsplit of commit REV (exported from git into a temporary directory) and once with this
checkout, alternating, ``--rounds`` times. Each ``rwsplit bench`` run measures its own
baseline, so every ratio compares two setups of the same run; the table prints the median
over the rounds of rwsplit's p50 latency and throughput against plain.

With ``--interleaved UNITS`` each client instead runs UNITS pairs of units, one plain and one
through rwsplit, alternating (``_ryw_pairs.py``): the ratio of their medians holds on a loaded
machine, where back-to-back runs of a few seconds each do not. That mode also counts the
round trips of each unit (commands PyMySQL sent) and the stale reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rwsplit.sandbox import Sandbox

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def export(rev: str, into: Path) -> Path:
    """``src/`` of commit *rev*, extracted under *into*."""
    archive = subprocess.run(
        ["git", "archive", rev, "src"], cwd=HERE.parent, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def bench(src: Path, sb: Sandbox, workers: str, clients: str, duration: float) -> dict[str, Any]:
    """One ``rwsplit bench --json`` run with the rwsplit found in *src*."""
    args = ["--primary", sb.primary_url]
    for url in sb.replica_urls:
        args += ["--replica", url]
    cmd = [
        sys.executable,
        "-m",
        "rwsplit",
        "bench",
        *args,
        "--yes",
        "--mix",
        "ryw",
        "--setups",
        "plain,rwsplit",
        "--clients",
        clients,
        "--workers",
        workers,
        "--duration",
        str(duration),
        "--json",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"rwsplit bench failed ({out.returncode}):\n{out.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def which(src: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [sys.executable, "-c", "import rwsplit; print(rwsplit.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--before",
        default=None,
        help="the commit to compare with (default: where this branch left main)",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--clients", default="1,4")
    p.add_argument("--workers", default="threads,processes")
    p.add_argument("--interleaved", type=int, metavar="UNITS", default=0)
    a = p.parse_args(argv)
    if a.before is None:
        a.before = subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
    rev = subprocess.run(
        ["git", "rev-parse", "--short", a.before], cwd=HERE, capture_output=True, text=True
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
    ).stdout.strip()
    rows: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rwsplit-ryw-") as tmp:
        versions = {f"before ({rev})": export(a.before, Path(tmp)), f"after ({head})": SRC}
        for name, src in versions.items():
            print(f"# {name}: {which(src)}", flush=True)
        sb = Sandbox(replicas=2, base_dir=Path(tmp) / "sandbox")
        sb.start()
        try:
            for r in range(a.rounds):
                for workers in a.workers.split(","):
                    order = list(versions.items())
                    if r % 2:
                        order.reverse()  # neither version always runs first
                    for name, src in order:
                        if a.interleaved:
                            for clients in a.clients.split(","):
                                pairs = run_pairs(src, sb, workers, int(clients), a.interleaved)
                                rows.setdefault((name, workers, int(clients)), []).append(pairs)
                        else:
                            report = bench(src, sb, workers, a.clients, a.duration)
                            _collect(rows, name, workers, report)
                        print(f"# round {r + 1}: {name}, {workers} done", flush=True)
        finally:
            sb.stop()
    if a.interleaved:
        _print_pairs(rows)
    else:
        _print(rows)
    return 0


def run_pairs(src: Path, sb: Sandbox, workers: str, clients: int, units: int) -> dict[str, float]:
    """One ``_ryw_pairs.py`` run with the rwsplit found in *src*."""
    cmd = [sys.executable, str(HERE / "_ryw_pairs.py"), sb.primary_url, *sb.replica_urls]
    cmd += ["--clients", str(clients), "--workers", workers, "--units", str(units)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"_ryw_pairs.py failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout)
    result["ratio"] = result["rwsplit_p50"] / result["plain_p50"]
    return result


def _print_pairs(rows: dict[tuple[str, str, int], list[dict[str, float]]]) -> None:
    print()
    print("POST -> GET unit, plain and rwsplit interleaved unit by unit (median of rounds)")
    print(
        f"{'version':<20} {'workers':<10} {'clients':>7} {'plain p50':>10} {'rwsplit p50':>12}"
        f" {'p50 ratio':>10} {'(min-max)':>13} {'round trips plain/rwsplit':>26} {'stale':>6}"
        f" {'units':>6}"
    )
    for (name, workers, clients), runs in sorted(
        rows.items(), key=lambda kv: kv[0][1:] + kv[0][:1]
    ):

        def med(k: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[k] for r in runs)

        trips = f"{med('plain_rt'):.2f} / {med('rwsplit_rt'):.2f}"
        print(
            f"{name:<20} {workers:<10} {clients:>7} {med('plain_p50'):>8.2f}ms"
            f" {med('rwsplit_p50'):>10.2f}ms {med('ratio'):>9.2f}x {_span(runs, 'ratio'):>13}"
            f" {trips:>26} {sum(r['stale'] for r in runs):>6.0f}"
            f" {sum(r['units'] for r in runs):>6.0f}"
        )
    print("(p50 ratio: rwsplit / plain of the same run, lower is better; round trips per unit)")


def _collect(
    rows: dict[tuple[str, str, int], list[dict[str, float]]],
    name: str,
    workers: str,
    report: dict[str, Any],
) -> None:
    by = {(x["setup"], x["clients"]): x for x in report["results"]}
    for (setup, clients), x in by.items():
        if setup != "rwsplit":
            continue
        plain = by[("plain", clients)]
        units = max(1, x["units"])
        causal = x.get("causal") or {}
        rows.setdefault((name, workers, clients), []).append(
            {
                "plain_p50": plain["p50_ms"],
                "p50": x["p50_ms"],
                "p50_ratio": x["p50_ms"] / plain["p50_ms"],
                "tput_ratio": x["throughput"] / plain["throughput"],
                "waits_per_unit": causal.get("waits", 0) / units,
                "mean_wait_ms": causal.get("mean_wait_ms", 0.0),
                "stale": x["stale_reads"] + plain["stale_reads"],
                "errors": x["errors"] + plain["errors"],
            }
        )


def _span(runs: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in runs]
    return f"({min(values):.2f}-{max(values):.2f})"


def _print(rows: dict[tuple[str, str, int], list[dict[str, float]]]) -> None:
    print()
    print("POST -> GET unit, rwsplit against plain SQLAlchemy on the primary (median of rounds)")
    head = (
        f"{'version':<20} {'workers':<10} {'clients':>7} {'plain p50':>10} {'rwsplit p50':>12}"
        f" {'p50 ratio':>10} {'(min-max)':>13} {'tput ratio':>11} {'waits/unit':>11}"
        f" {'wait ms':>8} {'stale':>6} {'errors':>6}"
    )
    print(head)
    for (name, workers, clients), runs in sorted(
        rows.items(), key=lambda kv: kv[0][1:] + kv[0][:1]
    ):

        def med(k: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[k] for r in runs)

        print(
            f"{name:<20} {workers:<10} {clients:>7} {med('plain_p50'):>8.2f}ms"
            f" {med('p50'):>10.2f}ms {med('p50_ratio'):>9.2f}x {_span(runs, 'p50_ratio'):>13}"
            f" {med('tput_ratio'):>10.2f}x"
            f" {med('waits_per_unit'):>11.2f} {med('mean_wait_ms'):>8.2f}"
            f" {sum(r['stale'] for r in runs):>6} {sum(r['errors'] for r in runs):>6}"
        )
    print("(ratios per run: p50 rwsplit / p50 plain, lower is better; throughput rwsplit / plain)")


if __name__ == "__main__":
    raise SystemExit(main())
