"""``rwsplit demo --server postgresql``: the demo's workload on a PostgreSQL sandbox.

The same mixed workload as the MariaDB/MySQL demo (:mod:`rwsplit.cli.demo`) runs through
routing sessions on a primary and hot standbys; the table puts side by side what the demo's
process sent to each node (SQLAlchemy's engine events, and rwsplit's own read-your-writes
waits) and what each server itself counted in ``pg_stat_statements`` (loaded by the sandbox;
per server: a standby counts the statements it ran, replay runs none). The demo checks that
the two agree on every node and says so.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from ..cluster import Cluster
from ..sandbox.postgresql import DATABASE, PgNode, PgSandbox
from ..topology.model import node_name

__all__ = ["run_pg_demo", "server_counts"]

_TABLE = "demo_items"
_VERB = re.compile(r"\s*(select|insert|update|delete)\b", re.IGNORECASE)
# rwsplit's wait for an LSN on a standby (rwsplit.servers.postgresql.wait_sql).
_WAIT_PREFIX = "DO $rwsplit$"

_COUNTS_SQL = f"""
SELECT coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*select' AND query LIKE '%{_TABLE}%'), 0),
       coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*(insert|update|delete)'
                                   AND query LIKE '%{_TABLE}%'), 0),
       coalesce(sum(calls) FILTER (WHERE query LIKE '{_WAIT_PREFIX}%'), 0)
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
 WHERE d.datname = '{DATABASE}'
"""


def server_counts(node: PgNode) -> dict[str, int]:
    """What *node* itself counted (``pg_stat_statements``, the demo's database): ``reads``
    and ``writes`` of the demo's table, and rwsplit's ``waits``."""
    with contextlib.closing(node.connect()) as conn:
        row = conn.execute(_COUNTS_SQL).fetchone()
    assert row is not None
    return {"reads": int(row[0]), "writes": int(row[1]), "waits": int(row[2])}


@contextlib.contextmanager
def _counting_sent() -> Iterator[Counter[tuple[str, str]]]:
    """``(node, kind)`` → the workload's statements on the demo's table, as sent."""
    sent: Counter[tuple[str, str]] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        m = _VERB.match(statement)
        if m is None or _TABLE not in statement:
            return
        kind = "reads" if m.group(1).lower() == "select" else "writes"
        sent[(node_name(conn.engine.url), kind)] += 1

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def _table(
    sb: PgSandbox,
    sent: Counter[tuple[str, str]],
    waits: dict[str, int],
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
) -> list[str]:
    lines = [
        f"{'node':<18} {'role':<8} | {'sent by rwsplit':^23} | {'pg_stat_statements':^23}",
        f"{'':<18} {'':<8} | {'reads':>7} {'writes':>7} {'waits':>7} | "
        f"{'reads':>7} {'writes':>7} {'waits':>7}",
        "-" * 78,
    ]
    off = []
    for n in sb.nodes:
        name = n.address
        mine = {"reads": sent[(name, "reads")], "writes": sent[(name, "writes")]}
        mine["waits"] = waits.get(name, 0)
        theirs = {k: after[name][k] - before[name][k] for k in ("reads", "writes", "waits")}
        if mine != theirs:
            off.append(name)
        role = "primary" if n.role == "primary" else "standby"
        lines.append(
            f"{name:<18} {role:<8} | {mine['reads']:>7} {mine['writes']:>7} "
            f"{mine['waits']:>7} | {theirs['reads']:>7} {theirs['writes']:>7} "
            f"{theirs['waits']:>7}"
        )
    lines.append("")
    if off:
        lines.append(f"pg_stat_statements differs from what rwsplit sent on {', '.join(off)}")
    else:
        lines.append("pg_stat_statements = what rwsplit sent, on every node")
    return [line.rstrip() for line in lines]


def run_pg_demo(replicas: int, statements: int, progress: Callable[[str], None]) -> int:
    """The demo on a PostgreSQL sandbox it starts (and stops); returns exit code 0."""
    from .demo import _Base, _run_workload

    t0 = time.monotonic()
    with (
        PgSandbox(
            replicas,
            progress=progress,
            settings={"shared_preload_libraries": "pg_stat_statements"},
        ) as sb,
        Cluster(sb.primary_url, sb.standby_urls) as cluster,
    ):
        with contextlib.closing(sb.primary.connect()) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        _Base.metadata.create_all(cluster.write_engine())
        sb.wait_caught_up()
        before = {n.address: server_counts(n) for n in sb.nodes}
        progress(f"running a mixed workload (~{statements} statements)")
        with _counting_sent() as sent:
            _run_workload(cluster, statements)
        after = {n.address: server_counts(n) for n in sb.nodes}
        waits = {
            name: int(n["causal_waits"]) for name, n in cluster.stats().to_dict()["nodes"].items()
        }
        print()
        print("\n".join(_table(sb, sent, waits, before, after)))
        print()
        print(
            "reads, writes: the workload's statements on demo_items, where the routing\n"
            "  session sent them (on the primary, the reads are the refreshes right after\n"
            "  each INSERT: a transaction that wrote stays on the primary).\n"
            "waits: read-your-writes checks on standbys: before a session that carries the\n"
            "  causal token of a write (the primary's WAL position after its COMMIT) reads a\n"
            "  standby, one DO block waits there, bounded, until pg_last_wal_replay_lsn()\n"
            "  reaches it (rwsplit's own count, cluster.stats()).\n"
            "pg_stat_statements: each server's own count of the statements it ran. A hot\n"
            "  standby refuses every write: its writes column stays 0."
        )
        progress("stopping the sandbox")
    progress(f"demo finished in {time.monotonic() - t0:.1f}s")
    return 0
