"""What connection hygiene costs a session that sets state, as ratios in the same run.

Run:  python benchmarks/bench_hygiene.py [--sessions 400] [--rounds 5]

A session that runs ``SET @x`` (or any statement that may leave session state) must not hand
its primary connection to the next session as is. Two ways to clean it, both measured here on
a sandbox primary over loopback, per session (``SET @x = 1``; ``SELECT @x``; close):

* **rwsplit** (what a ``RoutingSession`` does): ``COM_RESET_CONNECTION`` at check-in, then
  PyMySQL's connect-time set-up and every ``connect`` listener of the engine again
  (rwsplit.cluster._clean_dirty); other drivers' connections are discarded;
* **reset by hand**: ``COM_RESET_CONNECTION`` plus ``SET autocommit=0`` / ``SET NAMES`` on a
  plain engine — the floor for an in-place reset;
* **discard**: the connection is closed at check-in and the pool opens a new one for the next
  session (what rwsplit does for drivers it cannot reset).

Baseline: the same session on a connection that set no state (nothing to clean).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from rwsplit import Cluster
from rwsplit.sandbox import Sandbox

_COM_RESET_CONNECTION = 0x1F


def _reset_at_checkin(dbapi_connection: Any, record: Any) -> None:
    if dbapi_connection is None:
        return
    dbapi_connection._execute_command(_COM_RESET_CONNECTION, b"")
    dbapi_connection._read_ok_packet()
    cur = dbapi_connection.cursor()
    cur.execute("SET autocommit = 0")
    cur.execute("SET NAMES utf8mb4")
    cur.close()


def _discard_at_checkin(dbapi_connection: Any, record: Any) -> None:
    if dbapi_connection is not None:
        record.invalidate()


def run(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--sessions", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    print("starting a sandbox (1 primary) ...", file=sys.stderr)
    with Sandbox(replicas=0) as sb, Cluster(sb.primary_url, []) as cluster:
        options = {"pool_size": 1, "max_overflow": 0}
        reset_engine = create_engine(sb.primary_url, **options)
        event.listen(reset_engine, "checkin", _reset_at_checkin)
        discard_engine = create_engine(sb.primary_url, **options)
        event.listen(discard_engine, "checkin", _discard_at_checkin)
        rw = Cluster(sb.primary_url, [], engine_options=options)

        def rwsplit() -> None:
            with rw.session() as s:
                s.execute(text("SET @x = 1"))
                s.execute(text("SELECT @x")).scalar()

        def discard() -> None:
            with Session(discard_engine) as s:
                s.execute(text("SET @x = 1"))
                s.execute(text("SELECT @x")).scalar()

        def reset() -> None:
            with Session(reset_engine) as s:
                s.execute(text("SET @x = 1"))
                s.execute(text("SELECT @x")).scalar()

        def clean() -> None:
            with rw.session() as s, s.use_primary():
                s.execute(text("SELECT 1")).scalar()
                s.execute(text("SELECT 1")).scalar()

        cases = {
            "no state (baseline)": clean,
            "state, rwsplit": rwsplit,
            "state, reset by hand": reset,
            "state, discard": discard,
        }
        for fn in cases.values():
            run(fn, 20)  # warm up
        best: dict[str, list[float]] = {name: [] for name in cases}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            for name, fn in cases.items():
                best[name].append(run(fn, args.sessions))
        base = statistics.median(best["no state (baseline)"])
        print(f"\nper session ({args.sessions} sessions x {args.rounds} rounds, median)")
        print(f"{'case':<24}{'time':>10}{'vs baseline':>14}")
        for name in cases:
            t = statistics.median(best[name])
            print(f"{name:<24}{t * 1e6:>8.0f}us{t / base:>13.2f}x")
        rw.close()
        reset_engine.dispose()
        discard_engine.dispose()
        del cluster
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
