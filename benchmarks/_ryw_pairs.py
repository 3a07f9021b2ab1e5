"""Worker of ``bench_ryw.py --interleaved``: POST -> GET units, plain and rwsplit in turn.

Run with the rwsplit under test on ``PYTHONPATH``:
``python _ryw_pairs.py PRIMARY_URL REPLICA_URL... --clients N --workers threads|processes
--units K``. Every client runs K pairs of units, one on plain SQLAlchemy (the primary) and one
through rwsplit, alternating which goes first: whatever load the machine has at that moment
hits both alike, so the ratio of their median latencies holds under load. It also counts the
commands each unit sent to the servers (PyMySQL ``_execute_command``: one per round trip) and
the stale reads. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pymysql.connections
from sqlalchemy import create_engine, insert, select

from rwsplit.cli.bench import TargetSpec, _unit, build_target, ryw_rows

_local = threading.local()
_original = pymysql.connections.Connection._execute_command


def _counting(self: Any, command: int, sql: Any) -> Any:
    _local.commands = getattr(_local, "commands", 0) + 1
    return _original(self, command, sql)


pymysql.connections.Connection._execute_command = _counting  # type: ignore[method-assign]


def _client(args: tuple[str, list[str], int, int, int]) -> dict[str, list[float]]:
    primary, replicas, client, units, pool = args
    targets = {
        setup: build_target(TargetSpec(setup, primary, tuple(replicas), pool))
        for setup in ("plain", "rwsplit")
    }
    out: dict[str, list[float]] = {f"{s}_{k}": [] for s in targets for k in ("ms", "rt", "stale")}
    rng = random.Random(client)
    try:
        for setup in targets:  # warm-up: connections, first-connect queries
            _unit(targets[setup], "ryw", client, rng, 1)
        for i in range(units):
            order = ("plain", "rwsplit") if i % 2 == 0 else ("rwsplit", "plain")
            for setup in order:
                _local.commands = 0
                t0 = time.perf_counter()
                fresh = _unit(targets[setup], "ryw", client, rng, 1)
                out[f"{setup}_ms"].append((time.perf_counter() - t0) * 1e3)
                out[f"{setup}_rt"].append(_local.commands)
                out[f"{setup}_stale"].append(0 if fresh else 1)
    finally:
        for t in targets.values():
            t.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("primary")
    p.add_argument("replicas", nargs="+")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--workers", default="threads")
    p.add_argument("--units", type=int, default=500)
    a = p.parse_args()
    engine = create_engine(a.primary)
    ryw_rows.drop(engine, checkfirst=True)
    ryw_rows.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(ryw_rows), [{"client": i, "value": 0} for i in range(a.clients)])
        conn.execute(select(ryw_rows.c.client)).all()
    engine.dispose()
    time.sleep(1.0)  # the replicas get the table (the first units would fall back anyway)
    jobs = [(a.primary, a.replicas, c, a.units, 2) for c in range(a.clients)]
    pool_cls = ThreadPoolExecutor if a.workers == "threads" else ProcessPoolExecutor
    with pool_cls(max_workers=a.clients) as pool:
        parts = list(pool.map(_client, jobs))
    merged: dict[str, list[float]] = {}
    for part in parts:
        for k, v in part.items():
            merged.setdefault(k, []).extend(v)
    result = {
        "plain_p50": statistics.median(merged["plain_ms"]),
        "rwsplit_p50": statistics.median(merged["rwsplit_ms"]),
        "plain_rt": statistics.mean(merged["plain_rt"]),
        "rwsplit_rt": statistics.mean(merged["rwsplit_rt"]),
        "stale": sum(merged["rwsplit_stale"]),
        "units": len(merged["rwsplit_ms"]),
    }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
