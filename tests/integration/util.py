"""Small helpers shared by the integration tests.

Everything server-specific is asked of the server's family (:mod:`rwsplit.servers`), so the
same test runs on MariaDB and MySQL.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar, TypeVar

import pymysql
from sqlalchemy import MetaData

from rwsplit import Cluster
from rwsplit.pytest_plugin import replica_lag
from rwsplit.sandbox import Sandbox, SandboxNode, free_port
from rwsplit.servers import Cursor, MariaDB, MySQL, ReplicaStatus, Statement, detect_family

from ..fix_sandbox import on_mysql

__all__ = [
    "Forwarder",
    "ask",
    "family",
    "general_log",
    "monitor_privilege",
    "own_writes",
    "position",
    "replica_status",
    "replicating",
    "run",
    "semi_sync_source_on",
    "semi_sync_status",
    "sql",
    "sql_unlogged",
    "sql_threads_stopped",
    "tables",
    "wait_position",
    "wait_until",
]

T = TypeVar("T")


def wait_until(cond: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll *cond* until true (never a bare sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(0.02)


def sql(node: SandboxNode, statement: str) -> list[tuple[object, ...]]:
    """Run *statement* on *node* over a fresh admin connection; return all rows."""
    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return list(cur.fetchall())


def fenced(node: SandboxNode) -> bool:
    """*node* says it is read-only; ``False`` too when the connection asking was ended.

    For polling while a failover fences *node*: fencing ends every client session on it
    (:func:`~rwsplit.topology.failover.kill_client_connections`), the poll's own included —
    that is "not seen yet", not a failure.
    """
    try:
        return sql(node, "SELECT @@read_only")[0][0] == 1
    except pymysql.err.OperationalError:
        return False


def sql_unlogged(node: SandboxNode, statement: str) -> None:
    """Run *statement* on *node* without writing it to the node's binary log.

    MySQL logs ``TRUNCATE mysql.general_log``, ``FLUSH`` and ``ANALYZE`` as transactions of
    their own: run on a replica, they would be errant transactions (GTIDs of the replica's
    ``server_uuid`` that no other node has), which a failover or switchover rightly refuses
    to repoint over, in every later test on the same sandbox."""
    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(statement)


def ask(node: SandboxNode, question: Callable[[MariaDB | MySQL, Cursor], T]) -> T:
    """Ask *question* of *node*'s family over a fresh admin connection."""
    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        return question(detect_family(cur), cur)


def family(node: SandboxNode) -> MariaDB | MySQL:
    """The server family of *node* (MySQL: with its gtid_mode)."""
    return ask(node, lambda f, cur: f)


def monitor_privilege(sb: Sandbox) -> str:
    """The privilege that lets an account read replication status (``SHOW SLAVE STATUS`` /
    ``SHOW REPLICA STATUS``): MariaDB 10.5+ ``SLAVE MONITOR``, MySQL ``REPLICATION CLIENT``."""
    return "SLAVE MONITOR" if sb.family.name == "mariadb" else "REPLICATION CLIENT"


def run(node: SandboxNode, statement: Statement | Callable[[MariaDB | MySQL], Statement]) -> None:
    """Run a family statement on *node*: ``run(n, lambda f: f.stop_io_thread())``."""

    def go(f: MariaDB | MySQL, cur: Cursor) -> None:
        stmt = statement if isinstance(statement, Statement) else statement(f)
        cur.execute(stmt.sql, stmt.params or None)

    ask(node, go)


def replica_status(node: SandboxNode) -> ReplicaStatus | None:
    """*node*'s replication status (``None``: it replicates from nobody)."""
    return ask(node, lambda f, cur: f.replica_status(cur))


def replicating(node: SandboxNode) -> bool:
    """Both replication threads of *node* run."""
    s = replica_status(node)
    return s is not None and s.io_connected and s.sql_running


def position(node: SandboxNode) -> str:
    """What *node* has written to its binary log, as a token its replicas can wait for."""
    return ask(node, lambda f, cur: f.position(cur))


def wait_position(node: SandboxNode, pos: str, timeout: float = 10.0) -> bool:
    """On replica *node*: wait (bounded) until it applied *pos*."""
    return ask(node, lambda f, cur: f.wait_position(cur, pos, timeout))


def own_writes(node: SandboxNode) -> int:
    """Transactions *node* logged itself (executed on it, not replicated to it)."""
    return ask(node, lambda f, cur: sum(f.own_transactions(cur).values()))


@contextlib.contextmanager
def general_log(node: SandboxNode, *, raw: bool = False) -> Iterator[list[str]]:
    """The statements *node* received while the block ran (its general log, as a table),
    filled in when the block ends; the log is emptied before and after.

    *raw*, on MySQL: ``log_raw`` on for the block, so that each ``COM_QUERY`` is one entry,
    as it came (as MariaDB logs it), not each statement of a multi-statement query on its
    own, once parsed."""
    raw = raw and on_mysql()
    seen: list[str] = []
    sql(node, "SET GLOBAL log_output = 'TABLE'")
    sql_unlogged(node, "TRUNCATE mysql.general_log")
    if raw:
        sql(node, "SET GLOBAL log_raw = ON")
    sql(node, "SET GLOBAL general_log = 1")
    try:
        yield seen
    finally:
        sql(node, "SET GLOBAL general_log = 0")
        if raw:
            sql(node, "SET GLOBAL log_raw = OFF")
        rows = sql(
            node,
            "SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log "
            "WHERE command_type = 'Query'",
        )
        seen.extend(str(r[0]) for r in rows)
        sql_unlogged(node, "TRUNCATE mysql.general_log")


def tables(sb: Sandbox, metadata: MetaData) -> Iterator[Sandbox]:
    """For a fixture to ``yield from``: *metadata*'s tables dropped and created afresh on *sb*,
    the replicas caught up before the test and again after it."""
    with Cluster(sb.primary_url, sb.replica_urls) as c:
        metadata.drop_all(c.write_engine())
        metadata.create_all(c.write_engine())
    sb.wait_caught_up()
    yield sb
    sb.wait_caught_up()


@contextlib.contextmanager
def sql_threads_stopped(sb: Sandbox) -> Iterator[None]:
    """Replicas receive but do not apply: anything written in the block is missing there
    (the pytest plugin's :func:`~rwsplit.pytest_plugin.replica_lag`, on every replica)."""
    with replica_lag(sb):
        yield


def semi_sync_source_on(node: SandboxNode) -> bool:
    """The waiting (source) side of semi-sync is on at *node* (False without the plugin)."""

    return ask(node, lambda f, cur: f.semi_sync(cur).source_on)


def semi_sync_status(node: SandboxNode, name: str) -> str:
    """The source side's status variable *name* at *node* (``"status"``, ``"yes_tx"`` ...:
    ``Rpl_semi_sync_master_status`` on MariaDB, ``Rpl_semi_sync_source_status`` on MySQL)."""

    def read(f: MariaDB | MySQL, cur: Cursor) -> str:
        cur.execute(f"SHOW GLOBAL STATUS LIKE '{f.semi_sync_status(name)}'")
        row = cur.fetchone()
        return str(row[1]) if row else ""

    return ask(node, read)


class Forwarder:
    """A TCP forwarder on loopback to the server on *port*: a link that can fail in ways this
    kernel cannot emulate (it has no ``netem``). Subclasses say how bytes pass (:meth:`_pump`,
    one thread each way of each connection)."""

    stop_when_server_refuses: ClassVar[bool] = False
    """When the server refuses a connection: stop accepting any (else drop that one client's
    connection and accept the next)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = free_port()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:  # the server is down: so is the link, for this connection
                client.close()
                if self.stop_when_server_refuses:
                    return
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Carry what *src* sends to *dst* until *src* ends."""
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        for s in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                s.close()
