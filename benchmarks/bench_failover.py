"""Failover timeline: how long writes are unavailable after ``kill -9`` of the primary.

Run:  python benchmarks/bench_failover.py [--runs 5] [--interval 0.5] [--mode both]

Each run starts a fresh sandbox (primary + 2 replicas), opens a :class:`rwsplit.Cluster` with
``auto_failover=True``, runs concurrent single-row write transactions, kills the primary with
SIGKILL and measures, from the kill:

* *detected*: the monitor confirmed the primary dead and started the failover;
* *promoted*: the new primary is writable and published;
* *first write*: the first write acknowledged after the outage began;
* *lost*: acknowledged writes missing on the new primary (semi-sync must be 0);
* *left behind*: replicas that had received fewer events than the promoted one when the
  primary died; without log-slave-updates nobody has those events in a binary log, so they
  are reported for rebuild instead of repointed.

The baseline the issue sets is "writes unavailable for under 5 s"; the table prints the
median of the runs and that ratio.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from rwsplit import (
    Cluster,
    FailoverOptions,
    NoPrimaryError,
    RetryableWriteError,
    TransactionOutcomeUnknownError,
)
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox

TARGET = 5.0


@dataclass
class Run:
    detected: float
    promoted: float
    first_write: float
    lost: int
    acked: int
    left_behind: int


def one_run(semi_sync: bool, interval: float, threads: int, lsu: bool) -> Run:
    with Sandbox(replicas=2, semi_sync=semi_sync, log_slave_updates=lsu) as sb:
        cluster = Cluster(
            sb.primary_url,
            sb.replica_urls,
            monitor_interval=interval,
            monitor_timeout=min(interval, 1.0),
            auto_failover=True,
            failover_options=FailoverOptions(REPL_USER, REPL_PASSWORD),
        )
        try:
            with cluster.session() as s:
                s.execute(text("CREATE TABLE w (id INT PRIMARY KEY)"))
                s.commit()
            acked: list[tuple[int, float, float]] = []  # id, started, acknowledged
            failed_at: list[float] = []
            counter = iter(range(1, 10**9))
            lock = threading.Lock()
            stop = threading.Event()

            def writer() -> None:
                while not stop.is_set():
                    with lock:
                        i = next(counter)
                    started = time.monotonic()
                    try:
                        with cluster.session() as s:
                            s.execute(text("INSERT INTO w VALUES (:i)"), {"i": i})
                            s.commit()
                        acked.append((i, started, time.monotonic()))
                    except (
                        RetryableWriteError,
                        NoPrimaryError,
                        TransactionOutcomeUnknownError,
                        DBAPIError,
                    ):
                        failed_at.append(time.monotonic())
                        stop.wait(0.005)

            workers = [threading.Thread(target=writer) for _ in range(threads)]
            for w in workers:
                w.start()
            while len(acked) < 300:
                time.sleep(0.01)
            t_kill = time.monotonic()
            sb.kill("primary")
            deadline = t_kill + 30
            while time.monotonic() < deadline:
                recovered = failed_at and any(t0 > failed_at[0] for _, t0, _ in acked[-50:])
                if recovered and cluster.monitor and cluster.monitor.last_failover:
                    break
                time.sleep(0.01)
            time.sleep(0.3)  # let a few more writes land on the new primary
            stop.set()
            for w in workers:
                w.join()
            assert cluster.monitor is not None
            result = cluster.monitor.last_failover
            if result is None:
                raise SystemExit("no failover happened within 30 s")
            # The first write that began after the outage did and still succeeded.
            first = min(at for _, t0, at in acked if t0 > failed_at[0])
            new = sb.node(result.new_primary or "")
            with new.connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT id FROM rwsplit.w")
                have = {int(r[0]) for r in cur.fetchall()}
            lost = sum(1 for i, _, _ in acked if i not in have)
            return Run(
                detected=result.started_at - t_kill,
                promoted=result.started_at + result.timeline.get("writable", 0.0) - t_kill,
                first_write=first - t_kill,
                lost=lost,
                acked=len(acked),
                left_behind=len(result.skipped),
            )
        finally:
            cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per mode (median taken)")
    parser.add_argument(
        "--interval", type=float, default=0.5, help="monitor interval, seconds (default 0.5)"
    )
    parser.add_argument("--threads", type=int, default=4, help="concurrent writers")
    parser.add_argument("--mode", choices=["both", "semi-sync", "async"], default="both")
    parser.add_argument(
        "--log-slave-updates",
        choices=["both", "on", "off"],
        default="both",
        help="replicas with log-slave-updates (recommended for automated failover), without "
        "(the classic layout), or both (default)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    modes = ["semi-sync", "async"] if args.mode == "both" else [args.mode]
    lsus = {"both": [True, False], "on": [True], "off": [False]}[args.log_slave_updates]
    rows: list[tuple[str, list[Run]]] = []
    for lsu in lsus:
        for mode in modes:
            label = f"{mode}{', lsu' if lsu else ''}"
            runs = []
            for i in range(args.runs):
                print(f"  .. {label} run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
                runs.append(one_run(mode == "semi-sync", args.interval, args.threads, lsu))
            rows.append((label, runs))

    print(
        f"\nfailover after kill -9 of the primary: monitor every {args.interval}s, "
        f"3 failed probes, {args.threads} writers; median of {args.runs} runs (seconds from kill)"
    )
    print(
        f"{'replication':<16} {'detected':>9} {'promoted':>9} {'first write':>12} "
        f"{'vs 5 s aim':>11} {'lost writes (per run)':>24} {'left behind':>12}"
    )
    for mode, runs in rows:
        med = {k: statistics.median(getattr(r, k) for r in runs) for k in Run.__annotations__}
        lost = ",".join(str(r.lost) for r in runs)
        behind = ",".join(str(r.left_behind) for r in runs)
        print(
            f"{mode:<16} {med['detected']:>9.2f} {med['promoted']:>9.2f} "
            f"{med['first_write']:>12.2f} {med['first_write'] / TARGET:>10.2f}x {lost:>24} "
            f"{behind:>12}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
