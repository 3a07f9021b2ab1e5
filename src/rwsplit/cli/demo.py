"""``rwsplit demo``: a sandbox cluster, a mixed workload through a RoutingSession, the split.

Two views of where statements ran, side by side:

* what rwsplit sent to each node (counted by engine events the demo attaches), and
* what each server itself reports: ``Com_select`` for reads, and for writes the number of
  transactions the node logged *itself* (a replica's own binary log, or on MySQL its own
  ``server_uuid`` in ``gtid_executed``, moves only when something writes on it; replicated
  changes do not count, as replicas run without log-slave-updates).

Runs on whichever server the sandbox finds (``RWSPLIT_SERVER_BIN=/path/to/mysqld rwsplit demo``
for MySQL).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import String, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..cluster import Cluster
from ..routing.classify import Target, classify
from ..sandbox import Sandbox, SandboxNode
from ..servers import detect_family
from ..topology.model import node_name

__all__ = ["node_counters", "run_demo"]

_CAUSAL_WAITS = ("SELECT MASTER_GTID_WAIT", "SELECT WAIT_FOR_EXECUTED_GTID_SET")


class _Base(DeclarativeBase):
    pass


class Item(_Base):
    """The demo's one table."""

    __tablename__ = "demo_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    qty: Mapped[int] = mapped_column(default=0)


def node_counters(node: SandboxNode) -> dict[str, int]:
    """``Com_select``, ``Com_insert``/``update``/``delete`` of *node*, and
    ``own_binlog_writes``: the transactions it logged itself (its family's
    :meth:`~rwsplit.servers.ServerFamily.own_transactions`, summed)."""
    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('Com_select','Com_insert','Com_update','Com_delete')"
        )
        counters = {name: int(value) for name, value in cur.fetchall()}
        counters["own_binlog_writes"] = sum(detect_family(cur).own_transactions(cur).values())
    return counters


def _run_workload(cluster: Cluster, statements: int) -> None:
    Session = cluster.sessionmaker()
    rounds = max(1, statements // 10)
    ids: list[int] = []
    for i in range(rounds):
        with Session() as session:
            # A unit of work: ORM insert (flush -> primary), then reads stay on the primary.
            item = Item(name=f"item-{i}", qty=i)
            session.add(item)
            session.flush()
            session.refresh(item)  # a SELECT after the write: stays on the primary
            session.commit()
            ids.append(item.id)
        with Session() as session:
            # Plain reads -> replicas, round-robin.
            for _ in range(6):
                session.execute(select(func.count()).select_from(Item)).scalar_one()
            session.execute(text("SELECT name FROM demo_items ORDER BY id DESC LIMIT 3")).all()
        with Session() as session:
            # Core UPDATE -> primary.
            session.execute(update(Item).where(Item.id == ids[i // 2]).values(qty=Item.qty + 1))
            session.commit()


def run_demo(
    replicas: int = 2, statements: int = 300, progress: Callable[[str], None] = print
) -> int:
    """Start a sandbox, run the workload, print the split per node, stop; returns exit code 0."""
    t0 = time.monotonic()
    with (
        Sandbox(replicas, progress=progress) as sb,
        Cluster(sb.primary_url, sb.replica_urls) as cluster,
    ):
        _Base.metadata.create_all(cluster.write_engine())
        sb.wait_caught_up()
        role = {
            node_name(n.url): ("primary" if n.role.value == "primary" else "replica")
            for n in cluster.topology.nodes
        }
        sent: Counter[tuple[str, str]] = Counter()

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith(_CAUSAL_WAITS):
                kind = "wait"
            elif classify(statement).target is Target.REPLICA:
                kind = "read"
            else:
                kind = "write"
            sent[(node_name(conn.engine.url), kind)] += 1

        event.listen(Engine, "before_cursor_execute", count)
        try:
            before = {n.address: node_counters(n) for n in sb.nodes}
            progress(f"running a mixed workload (~{statements} statements)")
            _run_workload(cluster, statements)
        finally:
            event.remove(Engine, "before_cursor_execute", count)
        after = {n.address: node_counters(n) for n in sb.nodes}

        print()
        print(f"{'node':<18} {'role':<8} | {'sent by rwsplit':^23} | {'server counters':^23}")
        print(
            f"{'':<18} {'':<8} | {'reads':>7} {'writes':>7} {'waits':>7} | "
            f"{'Com_select':>11} {'own writes':>11}"
        )
        print("-" * 80)
        for n in sb.nodes:
            a, b = after[n.address], before[n.address]
            print(
                f"{n.address:<18} {role.get(n.address, '?'):<8} | "
                f"{sent[(n.address, 'read')]:>7} {sent[(n.address, 'write')]:>7} "
                f"{sent[(n.address, 'wait')]:>7} | "
                f"{a['Com_select'] - b['Com_select']:>11} "
                f"{a['own_binlog_writes'] - b['own_binlog_writes']:>11}"
            )
        print()
        print(
            "sent by rwsplit: statements the routing session sent to each node; 'waits' are\n"
            "  read-your-writes checks: a replica confirming it has applied the session's last\n"
            "  commit before it serves the session's next read."
        )
        print(
            "Com_select: the server's own count; it includes SQLAlchemy's first-connect\n"
            "  queries and the waits. The position the waits wait for comes in the commit's\n"
            "  own reply where the server sends it (session tracking), else from one query."
        )
        print(
            "own writes: transactions the node logged itself (its own binary log; MySQL: its\n"
            "  own server_uuid in gtid_executed). Replicated changes do not count, so a\n"
            "  replica shows 0 unless something wrote on it."
        )
        progress("stopping the sandbox")
    progress(f"demo finished in {time.monotonic() - t0:.1f}s")
    return 0
