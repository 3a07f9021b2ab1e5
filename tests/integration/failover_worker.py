"""One application process for the multi-process failover test (run as a script).

``python failover_worker.py CONFIG_JSON``: opens a ``Cluster`` with ``auto_failover=True``,
runs writer threads (each insert its own transaction, ids from this process's range) and
writes its status to ``<out>.status`` (acknowledged count, current primary) about every
50 ms, until ``<out>.stop`` exists (bounded: 120 s). Then it writes ``<out>`` (JSON): every
acknowledged id, every failover result its monitor produced, its final primary.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def main(config: dict[str, Any]) -> int:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from rwsplit import (
        Cluster,
        FailoverOptions,
        FailoverResult,
        NoPrimaryError,
        RetryableWriteError,
        TransactionOutcomeUnknownError,
    )

    out = Path(config["out"])
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(created).3f %(name)s %(message)s"
    )
    options = FailoverOptions(
        config["repl_user"], config["repl_password"], coordinate=config.get("coordinate", True)
    )
    cluster = Cluster(
        config["primary"],
        config["replicas"],
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
        failover_options=options,
    )
    results: list[dict[str, Any]] = []

    def on_failover(r: FailoverResult) -> None:
        results.append(
            {
                "new_primary": r.new_primary,
                "promoted": r.promoted,
                "followed": r.followed,
                "nothing_to_do": r.nothing_to_do,
                "epoch": r.epoch,
                "locked_on": r.locked_on,
            }
        )

    assert cluster.monitor is not None
    cluster.monitor.failover_listeners.append(on_failover)
    acked: list[int] = []
    acked_at: list[float] = []  # wall clock (comparable across processes)
    unknown: list[int] = []
    unexpected: list[str] = []
    stop = threading.Event()
    counter = iter(range(config["first_id"], config["first_id"] + 10_000_000))
    lock = threading.Lock()

    def write() -> None:
        while not stop.is_set():
            with lock:
                i = next(counter)
            try:
                with cluster.session() as s:
                    s.execute(text("INSERT INTO w (id) VALUES (:i)"), {"i": i})
                    s.commit()
                acked.append(i)
                acked_at.append(time.time())
            except TransactionOutcomeUnknownError:
                unknown.append(i)
            except (RetryableWriteError, NoPrimaryError, DBAPIError):
                stop.wait(0.01)
            except BaseException as exc:
                unexpected.append(repr(exc))
                return

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    stop_file = Path(str(out) + ".stop")
    status = Path(str(out) + ".status")
    while not stop_file.exists() and time.monotonic() < deadline:
        primary = cluster.topology.primary
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"acked": len(acked), "primary": primary and primary.name}))
        os.replace(tmp, status)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    primary = cluster.topology.primary
    out.write_text(
        json.dumps(
            {
                "acked": acked,
                "unknown": unknown,
                "unexpected": unexpected,
                "failovers": results,
                "primary": primary and primary.name,
                "acked_at": acked_at,
            }
        )
    )
    cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
