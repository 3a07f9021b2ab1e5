"""A process started from the old configuration after a failover (run as a script).

``python late_writer.py CONFIG_JSON``: opens a plain ``Cluster`` on the configured (old)
primary and replicas, inserts ids ``first``..``last`` (one transaction each, each retried a
bounded number of times on an rwsplit error that says to retry), and prints one JSON line:
the acknowledged ids, the errors it saw, and the primary it ended on.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main(config: dict[str, Any]) -> int:
    from sqlalchemy import text

    from rwsplit import Cluster, NotPrimaryError, RetryableWriteError

    acked: list[int] = []
    errors: list[str] = []
    with Cluster(config["primary"], config["replicas"]) as cluster:
        for i in range(config["first"], config["last"] + 1):
            for _attempt in range(20):
                try:
                    with cluster.session() as s:
                        s.execute(text("INSERT INTO w (id) VALUES (:i)"), {"i": i})
                        s.commit()
                except (NotPrimaryError, RetryableWriteError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.1)  # back off before the retry (bounded: 20 attempts)
                    continue
                acked.append(i)
                break
        primary = cluster.topology.primary
        print(
            json.dumps(
                {
                    "acked": acked,
                    "errors": errors,
                    "primary": primary and primary.name,
                    "fenced": sorted(cluster.fenced),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
