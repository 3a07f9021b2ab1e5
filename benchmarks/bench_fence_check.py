"""What the fence check before each commit costs a write transaction, as ratios in the same run.

Run:  python benchmarks/bench_fence_check.py [--transactions 400] [--rounds 5]

Before the commit of a transaction that wrote, a Cluster's primary engine runs
``DO 'a' REGEXP IF(@@global.read_only, '(', 'a')``, which fails when the server is read-only
(issue 17, defect 6: pooled connections of a Cluster without a monitor must not write to a
primary that another process fenced; ``SUPER`` writes through ``read_only``). Measured on a
sandbox primary over loopback, per transaction (``INSERT`` + ``COMMIT`` in a session; and a
read-only one on the primary: ``SELECT`` + ``COMMIT``):

* **plain Session**: SQLAlchemy alone, the reference;
* **rwsplit, no check**: a RoutingSession with the check replaced by nothing (the baseline:
  everything else rwsplit does, the same run);
* **rwsplit**: what a RoutingSession does.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from rwsplit import Cluster, RoutingSession
from rwsplit.sandbox import Sandbox


def run(fn: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--transactions", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    print("starting a sandbox (1 primary) ...", file=sys.stderr)
    options: dict[str, Any] = {"pool_size": 1, "max_overflow": 0}
    with (
        Sandbox(replicas=0) as sb,
        Cluster(sb.primary_url, [], engine_options=options) as checked,
        Cluster(sb.primary_url, [], engine_options=options) as unchecked,
    ):
        unchecked._check_still_writable = lambda name, conn: None  # type: ignore[method-assign]
        plain = create_engine(sb.primary_url, **options)
        with plain.begin() as conn:
            conn.execute(text("CREATE TABLE b (id INT PRIMARY KEY)"))
        ids = itertools.count()

        def write(make: Callable[[], Session]) -> Callable[[], None]:
            def go() -> None:
                with make() as s:
                    s.execute(text("INSERT INTO b VALUES (:i)"), {"i": next(ids)})
                    s.commit()

            return go

        def read(make: Callable[[], RoutingSession]) -> Callable[[], None]:
            def go() -> None:
                with make() as s, s.use_primary():
                    s.execute(text("SELECT id FROM b WHERE id = 1")).all()
                    s.commit()

            return go

        cases = {
            "write, plain Session": write(lambda: Session(plain)),
            "write, rwsplit no check": write(unchecked.session),
            "write, rwsplit": write(checked.session),
            "read on primary, rwsplit no check": read(unchecked.session),
            "read on primary, rwsplit": read(checked.session),
        }
        for fn in cases.values():  # warm up: connections, caches
            run(fn, 20)
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):  # interleaved: the machine's load hits every case alike
            for name, fn in cases.items():
                times[name].append(run(fn, args.transactions))
        plain.dispose()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"per transaction ({args.transactions} x {args.rounds} rounds, median)")
    print(f"{'case':36} {'time':>9} {'vs no check':>12}")
    for name, t in med.items():
        base = med[
            "read on primary, rwsplit no check" if "read" in name else "write, rwsplit no check"
        ]
        print(f"{name:36} {t * 1e6:7.0f}us {t / base:11.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
