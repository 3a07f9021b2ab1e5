"""``rwsplit demo``: a sandbox cluster, a mixed workload through a RoutingSession, the split.

Two views of where statements ran, side by side:

* what the demo's process sent to each node: the workload's reads and writes (engine events),
  rwsplit's read-your-writes waits and the waits it skipped, and every other ``SELECT`` that
  SQLAlchemy and rwsplit ran on their own (counted in the driver, PyMySQL's
  ``Connection.query``, so nothing escapes the table), and
* what each server itself reports: ``Com_select`` for reads, and for writes the number of
  transactions the node logged *itself* (a replica's own binary log, or on MySQL its own
  ``server_uuid`` in ``gtid_executed``, moves only when something writes on it; replicated
  changes do not count, as replicas run without log-slave-updates).

On every node ``Com_select`` = reads + waits + other: the demo checks it and says so.
Runs on whichever server the sandbox finds (``RWSPLIT_SERVER_BIN=/path/to/mysqld rwsplit demo``
for MySQL).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
from sqlalchemy import String, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..cluster import Cluster
from ..routing.classify import Target, classify
from ..routing.consistency import AppliedTokens
from ..sandbox import Sandbox, SandboxNode
from ..servers import detect_family
from ..topology.model import node_name

__all__ = ["node_counters", "run_demo"]

_CAUSAL_WAITS = ("SELECT MASTER_GTID_WAIT", "SELECT WAIT_FOR_EXECUTED_GTID_SET")
# A wait sent in front of a read, in the same round trip (rwsplit._pipelined_wait): the
# server counts two SELECTs, the wait and the read.
_PIPELINED_WAIT = re.compile(
    r"\s*SELECT CASE WHEN (?:MASTER_GTID_WAIT|WAIT_FOR_EXECUTED_GTID_SET)\(", re.IGNORECASE
)
# What the server counts in Com_select: statements that are a SELECT (comments and
# parentheses aside).
_SELECT = re.compile(r"(?:\s|/\*.*?\*/|\()*select\b", re.IGNORECASE | re.DOTALL)

_sent: Counter[tuple[str, str]] = Counter()
"""``(node, kind)`` → statements the driver sent; kind ``wait`` or ``select``."""


@contextlib.contextmanager
def _counting_driver_selects() -> Iterator[None]:
    """Count, per node, every SELECT PyMySQL sends while the block runs (all SQL text goes
    through ``Connection.query``: SQLAlchemy's, rwsplit's and the workload's; rwsplit's own
    connection class on the primary inherits it). Patched on the class for the demo's run
    only, so the connections are exactly those an application gets."""
    original = pymysql.connections.Connection.query

    def query(self: Any, sql: Any, unbuffered: bool = False) -> int:
        text_ = sql.decode(errors="replace") if isinstance(sql, bytes) else str(sql)
        if _SELECT.match(text_):
            node = f"{self.host}:{self.port}"
            if _PIPELINED_WAIT.match(text_):
                _sent[(node, "wait")] += 1  # and the read that travels with it:
                _sent[(node, "select")] += 1
            else:
                kind = "wait" if text_.lstrip().startswith(_CAUSAL_WAITS) else "select"
                _sent[(node, kind)] += 1
        return int(original(self, sql, unbuffered))

    _sent.clear()
    pymysql.connections.Connection.query = query  # type: ignore[method-assign]
    try:
        yield
    finally:
        pymysql.connections.Connection.query = original  # type: ignore[method-assign]


class _CountingApplied(AppliedTokens):
    """rwsplit's record of what each replica applied, counting the waits it made unneeded."""

    __slots__ = ("skipped",)

    def __init__(self) -> None:
        super().__init__()
        self.skipped: Counter[str] = Counter()

    def covers(self, node: str, token: str) -> bool:
        known = super().covers(node, token)
        if known:
            self.skipped[node] += 1
        return known


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
            token = session.causal_token
        # The next request of the same user (a GET after the POST's redirect): plain reads
        # -> replicas, round-robin, never older than the write above (read-your-writes).
        with Session(causal_token=token) as session:
            for _ in range(6):
                session.execute(select(func.count()).select_from(Item)).scalar_one()
            session.execute(text("SELECT name FROM demo_items ORDER BY id DESC LIMIT 3")).all()
        with Session() as session:
            # Core UPDATE -> primary.
            session.execute(update(Item).where(Item.id == ids[i // 2]).values(qty=Item.qty + 1))
            session.commit()


@contextlib.contextmanager
def _counting_workload_statements() -> Iterator[Counter[tuple[str, str]]]:
    """``(node, kind)`` → the workload's statements as the routing session sent them; kind
    ``read`` / ``write``, and ``select`` for those of them that are a SELECT."""
    sent: Counter[tuple[str, str]] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        node = node_name(conn.engine.url)
        kind = "read" if classify(statement).target is Target.REPLICA else "write"
        sent[(node, kind)] += 1
        if _SELECT.match(statement):
            sent[(node, "select")] += 1

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def _table(
    sb: Sandbox,
    role: dict[str, str],
    workload: Counter[tuple[str, str]],
    skipped: Counter[str],
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
) -> list[str]:
    """The per-node table; its last line says whether Com_select is accounted for."""
    lines = [
        f"{'node':<18} {'role':<8} | {'sent by rwsplit':^39} | {'server counters':^23}",
        f"{'':<18} {'':<8} | {'reads':>7} {'writes':>7} {'waits':>7} {'skipped':>7} "
        f"{'other':>7} | {'Com_select':>11} {'own writes':>11}",
        "-" * 96,
    ]
    off = []
    for n in sb.nodes:
        a, b = after[n.address], before[n.address]
        name = n.address
        waits = _sent[(name, "wait")]
        other = _sent[(name, "select")] - workload[(name, "select")]
        com_select = a["Com_select"] - b["Com_select"]
        if com_select != workload[(name, "select")] + waits + other:
            off.append(name)
        lines.append(
            f"{name:<18} {role.get(name, '?'):<8} | "
            f"{workload[(name, 'read')]:>7} {workload[(name, 'write')]:>7} {waits:>7} "
            f"{skipped[name]:>7} {other:>7} | "
            f"{com_select:>11} {a['own_binlog_writes'] - b['own_binlog_writes']:>11}"
        )
    lines.append("")
    if off:
        lines.append(f"Com_select differs from reads + waits + other on {', '.join(off)}")
    else:
        lines.append("Com_select = reads + waits + other on every node")
    return [line.rstrip() for line in lines]


def run_demo(
    replicas: int = 2,
    statements: int = 300,
    progress: Callable[[str], None] = print,
    server: str = "mysql",
) -> int:
    """Start a sandbox, run the workload, print the split per node, stop; returns exit code 0.

    *server*: ``mysql`` (MariaDB or MySQL, as the sandbox finds) or ``postgresql``
    (:mod:`rwsplit.cli._demo_pg`).
    """
    if server == "postgresql":
        from ._demo_pg import run_pg_demo

        return run_pg_demo(replicas, statements, progress)
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
        applied = cluster._applied = _CountingApplied()
        before = {n.address: node_counters(n) for n in sb.nodes}
        progress(f"running a mixed workload (~{statements} statements)")
        with _counting_driver_selects(), _counting_workload_statements() as workload:
            _run_workload(cluster, statements)
        after = {n.address: node_counters(n) for n in sb.nodes}

        print()
        print("\n".join(_table(sb, role, workload, applied.skipped, before, after)))
        print()
        print(
            "reads, writes: the workload's statements, where the routing session sent them\n"
            "  (on the primary, the reads are the refreshes right after each INSERT: a\n"
            "  transaction that wrote stays on the primary).\n"
            "waits: read-your-writes checks (in the same round trip as the read they guard,\n"
            "  one multi-statement, where the driver allows): before a session that has\n"
            "  written, or carries the causal token of a write (the GET after a POST), reads\n"
            "  a replica, the replica confirms it has applied that write (MASTER_GTID_WAIT,\n"
            "  WAIT_FOR_EXECUTED_GTID_SET, SOURCE_POS_WAIT).\n"
            "skipped: the same checks answered without a round trip: a wait moments earlier\n"
            "  (another session's) already saw that replica apply the write, or a later one.\n"
            "other: SELECTs SQLAlchemy and rwsplit ran themselves: when a connection opens\n"
            "  (server version, sql_mode, isolation level ...) and rwsplit's check that a\n"
            "  primary connection is writable. The causal token itself costs no statement:\n"
            "  it comes in the COMMIT's own reply (session tracking)."
        )
        print(
            "Com_select: the server's own count of SELECT statements.\n"
            "own writes: transactions the node logged itself (its own binary log; MySQL: its\n"
            "  own server_uuid in gtid_executed). Replicated changes do not count, so a\n"
            "  replica shows 0 unless something wrote on it."
        )
        progress("stopping the sandbox")
    progress(f"demo finished in {time.monotonic() - t0:.1f}s")
    return 0
