"""The nemesis, long form: every fault, semi-sync and async, judged by the history checker.

Run:  python benchmarks/bench_nemesis.py [--long] [--fault NAME ...] [--mode semi|async|both]

For each fault of tests/nemesis.py (FAULTS) and replication mode, on a fresh sandbox
(1 primary + 2 replicas, log-slave-updates; 3 replicas for repeated failovers; servers in
network namespaces for the network faults), the workload runs through an auto-failover
Cluster *and* a second rwsplit process with auto_failover, the fault is injected and held,
and the history checker (tests/history.py) judges every operation against the final state of
every node. Printed per fault and mode: operations, writes acknowledged / not committed /
outcome unknown, anomalies by kind (all zero under semi-sync; async may lose acknowledged
writes — the count and the checker's explanation are printed), failovers seen, and the write
outage (the longest stretch without an acknowledged write from the fault on).

``--long`` holds every fault 30 s (repeated failovers: a kill every 5 s for 60 s, >= 5
failovers expected); the default holds it 8 s, as CI does.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.history import Anomaly, Status
from tests.nemesis import FAULTS, Report, netem_available, run_case
from tests.netns import available

from rwsplit.sandbox import Sandbox

# Cluster's own defaults (monitor_interval 1 s, monitor_timeout 1 s, failure_threshold 3,
# primary_read_timeout 10 s), instead of the nemesis's faster monitor settings.
DEFAULTS: dict[str, object] = {
    "monitor_interval": 1.0,
    "monitor_timeout": 1.0,
    "primary_read_timeout": 10.0,
    "down_retry_interval": 5.0,
}


def server_default_replication(sb: Sandbox) -> None:
    """Replication as someone else set it up: ``slave_net_timeout`` 60 s (the sandbox uses
    5 s) and the heartbeat of its default (every 30 s): replicas of a hung primary report a
    live connection for a minute."""
    from rwsplit.sandbox import DATABASE

    for r in sb.replicas:
        with contextlib.closing(r.connect(DATABASE, read_timeout=30)) as c, c.cursor() as cur:
            for stmt in (
                "STOP SLAVE",
                "SET GLOBAL slave_net_timeout = 60",
                "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 30",
                "START SLAVE",
            ):
                cur.execute(stmt)
        sb.wait_replica_running(r)


def _row(name: str, mode: str, r: Report) -> str:
    w = r.result.writes
    anomalies = ", ".join(f"{k.value} {n}" for k, n in r.result.counts.items()) or "none"
    outage = f"{r.outage:.2f}s" if r.outage is not None else "never"
    return (
        f"{name:<26}{mode:<7}{r.result.ops:>7}{w.get(Status.OK, 0):>6}"
        f"{w.get(Status.NOT_COMMITTED, 0):>6}{w.get(Status.UNKNOWN, 0):>6}{r.failovers:>5}"
        f"{outage:>9}  {anomalies}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--long", action="store_true", help="hold each fault 30 s (repeated: 60 s)")
    p.add_argument("--seconds", type=float, default=None, help="hold each fault this long")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--mode", choices=["semi", "async", "both"], default="both")
    p.add_argument(
        "--defaults",
        action="store_true",
        help="the Cluster's default monitor and timeout options (monitor_interval 1 s, "
        "monitor_timeout 1 s, primary_read_timeout 10 s) instead of the nemesis's faster ones, "
        "and replication with the server's defaults (slave_net_timeout 60 s, heartbeat 30 s)",
    )
    p.add_argument("--no-peer", action="store_true", help="no second rwsplit process")
    p.add_argument(
        "--balanced-reads",
        action="store_true",
        help="requests read outside START TRANSACTION READ ONLY (each read balanced anew: "
        "measures how often reads of one request go back; not a promise rwsplit makes)",
    )
    p.add_argument(
        "--fault", action="append", choices=list(FAULTS), help="only these faults (repeatable)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every checker report")
    args = p.parse_args(argv)
    modes = {"semi": [True], "async": [False], "both": [True, False]}[args.mode]
    rows: list[tuple[str, str, Report]] = []
    failed = False
    for name, fault in FAULTS.items():
        if args.fault and name not in args.fault:
            continue
        if fault.netns and (why := available()) is not None:
            print(f"{name}: skipped ({why})", file=sys.stderr)
            continue
        if fault.netem and (why := netem_available()) is not None:
            print(f"{name}: skipped ({why})", file=sys.stderr)
            continue
        hold = args.seconds or (30.0 if args.long else 8.0)
        if name == "repeated-failovers":
            hold = args.seconds or (60.0 if args.long else 20.0)
        for semi in modes:
            mode = "semi" if semi else "async"
            for r in range(args.runs):
                print(f"{name} ({mode}): run {r + 1}/{args.runs} ...", file=sys.stderr)
                t0 = time.monotonic()
                overrides: dict[str, object] = dict(DEFAULTS) if args.defaults else {}
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        report = run_case(
                            fault,
                            semi_sync=semi,
                            seconds=hold,
                            base_dir=tmp,
                            peer=not args.no_peer,
                            prepare=server_default_replication if args.defaults else None,
                            balanced_reads=args.balanced_reads,
                            **overrides,
                        )
                    except Exception as exc:  # a run that could not finish is a finding too
                        print(f"  FAILED TO RUN: {type(exc).__name__}: {exc}", file=sys.stderr)
                        failed = True
                        continue
                print(f"  done in {time.monotonic() - t0:.0f}s", file=sys.stderr)
                if args.verbose or not report.ok:
                    print(report.render(), file=sys.stderr)
                rows.append((name, mode, report))
                bad = dict(report.result.counts if semi else report.beyond_async())
                if args.balanced_reads:
                    bad.pop(Anomaly.NON_MONOTONIC, None)
                if bad and semi not in fault.xfail:
                    failed = True
    print(
        f"\n{'fault':<26}{'mode':<7}{'ops':>7}{'ok':>6}{'notc':>6}{'unkn':>6}{'f/o':>5}"
        f"{'outage':>9}  anomalies"
    )
    for name, mode, report in rows:
        print(_row(name, mode, report))
        early, late = report.lost()
        if early or late:
            print(
                f"    lost: {len(early)} acknowledged before the primary changed (async: not yet"
                f" replicated), {len(late)} after it (acknowledged by a replaced primary)"
            )
        for f in report.result.findings:
            print(f"    [{f.kind.value}] {f.summary}")
            for op in f.ops[:3]:
                print(f"        {op.describe(report.result.origin)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
