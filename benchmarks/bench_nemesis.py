"""The nemesis, long form: outage and loss per fault, under a live load.

Run:  python benchmarks/bench_nemesis.py [--seconds 20] [--runs 2]

For each fault, on a fresh semi-sync sandbox (1 primary + 2 replicas, log-slave-updates) with
an auto-failover Cluster, writer and read-your-writes threads run while the fault is
injected; then the checker (tests/nemesis.py) looks on the servers. Printed per fault:
writes acknowledged, outcome-unknown errors, acknowledged writes lost (must be 0), stale
causal reads (must be 0), and the write outage — seconds from the fault to the first write
acknowledged after it. Baseline for the outage: the same load's median gap between two
acknowledged writes with no fault, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.nemesis import Nemesis
from tests.netns import NetnsSandbox, available

from rwsplit.sandbox import Sandbox


def _kill(sb: Sandbox) -> None:
    sb.kill("primary")


def _hang_primary(sb: Sandbox) -> None:
    sb.hang("primary")


def _hang_replica(sb: Sandbox) -> None:
    sb.hang("replica1")


def _partition(sb: Sandbox) -> None:
    assert isinstance(sb, NetnsSandbox)
    sb.partition("primary")


FAULTS: dict[str, tuple[Callable[[Sandbox], None], str | None]] = {
    "none (baseline)": (lambda sb: None, None),
    "kill -9 primary": (_kill, None),
    "hang primary (SIGSTOP)": (_hang_primary, "primary"),
    "hang replica (SIGSTOP)": (_hang_replica, "replica1"),
    "kill -9 + restart old primary": (_kill, "restart"),
    "partition primary (netns)": (_partition, "heal"),
}


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


def run_one(name: str, seconds: float, defaults: bool = False) -> dict[str, object]:
    action, after = FAULTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        kind = NetnsSandbox if after == "heal" else Sandbox
        sb = kind(replicas=2, semi_sync=True, log_slave_updates=True, base_dir=tmp)
        sb.start()
        if defaults:
            server_default_replication(sb)
        n = Nemesis(sb, **(DEFAULTS if defaults else {}))
        try:
            with n.traffic(seconds=seconds):
                n.wait_for_acks(20, timeout=10)
                n.fault(lambda: action(sb))
                n.wait_for_acks(20, timeout=seconds + 30)
                if after == "restart":
                    sb.restart("primary")
                elif after == "heal":
                    sb.heal("primary")  # type: ignore[attr-defined]
                elif after is not None:
                    sb.resume(after)
                n.healed()
            verdict = n.check()
            gaps = [
                b - a for a, b in zip(n.outcome.ack_times, n.outcome.ack_times[1:], strict=False)
            ]
            return {
                "acked": len(n.outcome.acked),
                "unknown": len(n.outcome.unknown),
                "lost": len(verdict.lost),
                "stale": n.outcome.stale_reads,
                "outage": n.outcome.outage() if name != "none (baseline)" else None,
                "gap": statistics.median(gaps) if gaps else None,
                "problems": verdict.problems,
                "errors": dict(n.outcome.errors),
                "timeline": _timeline(n),
            }
        finally:
            n.close()
            for node in sb.nodes:
                if sb.is_running(node) and sb.is_stopped(node):
                    sb.resume(node.name)
            sb.stop()


def _timeline(n: Nemesis) -> dict[str, float] | None:
    """The automated failover's steps, in seconds from the fault (None: no failover)."""
    monitor = n.cluster.monitor
    result = monitor.last_failover if monitor is not None else None
    if result is None:
        return None
    start = result.started_at - n.outcome.fault_at
    return {"started": round(start, 2)} | {
        k: round(start + v, 2) for k, v in result.timeline.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument(
        "--defaults",
        action="store_true",
        help="the Cluster's default monitor and timeout options (monitor_interval 1 s, "
        "monitor_timeout 1 s, primary_read_timeout 10 s) instead of the nemesis's faster ones, "
        "and replication with the server's defaults (slave_net_timeout 60 s, heartbeat 30 s)",
    )
    p.add_argument(
        "--fault", action="append", choices=list(FAULTS), help="only these faults (repeatable)"
    )
    args = p.parse_args(argv)
    rows = []
    for name in FAULTS:
        if args.fault and name not in args.fault and name != "none (baseline)":
            continue
        if FAULTS[name][1] == "heal" and available() is not None:
            print(f"{name}: skipped ({available()})", file=sys.stderr)
            continue
        for r in range(args.runs):
            print(f"{name}: run {r + 1}/{args.runs} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            rows.append((name, run_one(name, args.seconds, args.defaults)))
            print(f"  done in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    base = [res["gap"] for name, res in rows if name == "none (baseline)" and res["gap"]]
    gap = statistics.median(base) if base else None  # type: ignore[type-var]
    print(
        f"\n{'fault':<32}{'acked':>7}{'unknown':>9}{'lost':>6}{'stale':>7}{'outage':>10}"
        f"{'x gap':>9}"
    )
    for name, res in rows:
        outage = res["outage"]
        ratio = f"{outage / gap:>8.0f}x" if outage and gap else f"{'-':>9}"  # type: ignore[operator]
        shown = f"{outage:>9.2f}s" if outage is not None else f"{'-':>10}"
        print(
            f"{name:<32}{res['acked']:>7}{res['unknown']:>9}{res['lost']:>6}{res['stale']:>7}"
            f"{shown}{ratio}"
        )
        if res["errors"]:
            print(f"    errors seen: {res['errors']}")
        if res["timeline"]:
            print(f"    failover steps (s from the fault): {res['timeline']}")
        for problem in res["problems"]:  # type: ignore[attr-defined]
            print(f"    PROBLEM: {problem}")
    if gap:
        print(f"\nbaseline: median gap between acknowledged writes {gap * 1000:.1f} ms")
    return 1 if any(res["problems"] for _, res in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
