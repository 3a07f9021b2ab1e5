"""The failover log: where every process of the cluster finds who the primary is now.

A process's memory (``Cluster.fenced``) dies with the process, and a configuration file names
the primary of the day it was written. So every failover and switchover appends one row to a
small table **on the new primary**, once the other replicas follow it; replication copies it
to every node that follows that primary, and a process started later from an old
configuration reads
it before its first write (:func:`rwsplit.failover.follow_current_primary`), as does the
check a primary connection runs when it opens (:func:`rwsplit.failover.verify_writable_primary`)::

    CREATE TABLE rwsplit.failover_log (
      epoch        BIGINT UNSIGNED NOT NULL PRIMARY KEY,  -- 1, 2, 3 ... one per change
      primary_host VARCHAR(255) NOT NULL,                 -- the primary from this epoch on
      primary_port INT UNSIGNED NOT NULL,
      old_primary  VARCHAR(300) NULL,                     -- host:port it replaced
      kind         VARCHAR(16) NOT NULL,                  -- failover | switchover
      writer       VARCHAR(300) NOT NULL,                 -- host:pid of the process
      at           DATETIME(6) NOT NULL                   -- UTC, the server's clock
    )

Privileges: the failover's account needs ``CREATE`` and ``INSERT`` on the schema (``rwsplit``
by default); readers need ``SELECT`` on the table. A reader without it, or a cluster where no
failover ever ran, simply finds no record.

Beside it, the cluster's last known members, so that a failover started from one surviving
replica finds its siblings (a replica knows only its own source, and a dead primary cannot be
asked for ``SHOW SLAVE HOSTS``). The ``rwsplit`` commands that see a live primary
(``sandbox up``, ``topology``, ``monitor``, ``failover``, ``switchover``) add the nodes they
found, on the primary, when the set changed; a failover removes the primary it replaced::

    CREATE TABLE rwsplit.cluster_nodes (
      host     VARCHAR(255) NOT NULL,
      port     INT UNSIGNED NOT NULL,
      added_at DATETIME(6) NOT NULL,                      -- UTC, the server's clock
      PRIMARY KEY (host, port)
    )

A node retired for good: ``DELETE FROM rwsplit.cluster_nodes WHERE host=... AND port=...``
on the primary (else a failover reports it unreachable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..servers import Statement
from .probe import NodeProbe, describe_error

__all__ = [
    "DEFAULT_SCHEMA",
    "Record",
    "current_epoch",
    "history",
    "member_statements",
    "members",
    "record_members",
    "record_statements",
]

log = logging.getLogger("rwsplit.failover")

DEFAULT_SCHEMA = "rwsplit"
TABLE = "failover_log"
MEMBERS_TABLE = "cluster_nodes"
# No table / no database / no privilege on it: the node simply has no readable record.
_NO_LEDGER = frozenset({1044, 1049, 1142, 1146})
_COLUMNS = "epoch, primary_host, primary_port, old_primary, kind, writer, at"


@dataclass(frozen=True, slots=True)
class Record:
    """One row of the failover log."""

    epoch: int
    primary_host: str
    primary_port: int
    old_primary: str | None
    kind: str = "failover"
    writer: str = ""
    at: datetime | None = None

    @property
    def primary(self) -> str:
        """The primary's node name, ``host:port``."""
        return f"{self.primary_host}:{self.primary_port}"


def _table(schema: str, table: str = TABLE) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_$]{1,64}", schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return f"`{schema}`.`{table}`"


def record_statements(
    primary_host: str,
    primary_port: int,
    old_primary: str | None,
    kind: str,
    schema: str = DEFAULT_SCHEMA,
) -> list[Statement]:
    """The statements that append a record on the new primary (the epoch is the next one)."""
    table = _table(schema)
    writer = f"{socket.gethostname()}:{os.getpid()}"
    return [
        Statement(f"CREATE DATABASE IF NOT EXISTS `{schema}`"),
        Statement(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "epoch BIGINT UNSIGNED NOT NULL PRIMARY KEY, "
            "primary_host VARCHAR(255) NOT NULL, primary_port INT UNSIGNED NOT NULL, "
            "old_primary VARCHAR(300) NULL, kind VARCHAR(16) NOT NULL, "
            "writer VARCHAR(300) NOT NULL, at DATETIME(6) NOT NULL) ENGINE=InnoDB"
        ),
        Statement(
            f"INSERT INTO {table} ({_COLUMNS}) "
            "SELECT COALESCE(MAX(epoch), 0) + 1, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6) "
            f"FROM {table}",
            (primary_host, primary_port, old_primary, kind, writer),
        ),
    ]


def query_rows(conn: Any, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
    """Rows as dicts from a :class:`NodeProbe` or any DBAPI connection (tuple or dict rows)."""
    if isinstance(conn, NodeProbe):
        return conn.query(sql, params)
    cursor = conn.cursor()
    try:
        cursor.execute(sql, tuple(params) or None)
        names = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchall()
        return [r if isinstance(r, dict) else dict(zip(names, r, strict=True)) for r in rows]
    finally:
        with contextlib.suppress(Exception):
            cursor.close()


def _record(row: dict[str, Any]) -> Record:
    return Record(
        epoch=int(row["epoch"]),
        primary_host=str(row["primary_host"]),
        primary_port=int(row["primary_port"]),
        old_primary=None if row.get("old_primary") is None else str(row["old_primary"]),
        kind=str(row.get("kind") or "failover"),
        writer=str(row.get("writer") or ""),
        at=row.get("at"),
    )


def history(conn_or_probe: Any, schema: str = DEFAULT_SCHEMA, limit: int = 100) -> list[Record]:
    """The newest *limit* records on this node, newest first; ``[]`` when it has none.

    :param conn_or_probe: a :class:`~rwsplit.topology.NodeProbe` or a DBAPI connection.
    """
    sql = f"SELECT {_COLUMNS} FROM {_table(schema)} ORDER BY epoch DESC LIMIT {int(limit)}"
    try:
        return [_record(r) for r in query_rows(conn_or_probe, sql)]
    except Exception as exc:
        code = getattr(exc, "args", (None,))[:1]
        if code and code[0] in _NO_LEDGER:
            log.debug("no readable failover log: %s", describe_error(exc))
            return []
        raise


def current_epoch(conn_or_probe: Any, schema: str = DEFAULT_SCHEMA) -> Record | None:
    """The newest record this node holds, or ``None`` (no failover recorded, or unreadable).

    A node only holds the records written while it followed the primary that wrote them:
    compare across nodes (the highest epoch wins) before trusting one node's answer.
    """
    found = history(conn_or_probe, schema, limit=1)
    return found[0] if found else None


def replaced_by(records: Sequence[Record], node: str) -> Record | None:
    """The record that replaced *node* as primary, if its latest mention is as the old one.

    >>> r = [Record(2, "db1", 3306, "db2:3306"), Record(1, "db2", 3306, "db1:3306")]
    >>> replaced_by(r, "db2:3306").epoch, replaced_by(r, "db1:3306")
    (2, None)
    """
    for rec in sorted(records, key=lambda r: -r.epoch):
        if rec.primary == node:
            return None
        if rec.old_primary == node:
            return rec
    return None


# ---------------------------------------------------------------------------------- members


def _address(name: str) -> tuple[str, int]:
    host, _, port = name.rpartition(":")
    return host, int(port)


def member_statements(
    add: Sequence[str], remove: Sequence[str] = (), schema: str = DEFAULT_SCHEMA
) -> list[Statement]:
    """The statements that add the nodes *add* (``host:port``) to the member list and drop
    *remove*, on the primary (replication copies them to every node)."""
    table = _table(schema, MEMBERS_TABLE)
    stmts = [
        Statement(f"CREATE DATABASE IF NOT EXISTS `{schema}`"),
        Statement(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "host VARCHAR(255) NOT NULL, port INT UNSIGNED NOT NULL, "
            "added_at DATETIME(6) NOT NULL, PRIMARY KEY (host, port)) ENGINE=InnoDB"
        ),
    ]
    for name in remove:
        where = "WHERE host = %s AND port = %s"
        stmts.append(Statement(f"DELETE FROM {table} {where}", _address(name)))
    if add:
        values = ", ".join(["(%s, %s, UTC_TIMESTAMP(6))"] * len(add))
        params = tuple(v for name in add for v in _address(name))
        insert = f"INSERT IGNORE INTO {table} (host, port, added_at) VALUES {values}"
        stmts.append(Statement(insert, params))
    return stmts


def members(conn_or_probe: Any, schema: str = DEFAULT_SCHEMA) -> list[str]:
    """The member list this node holds (``host:port``, sorted); ``[]`` when it has none."""
    sql = f"SELECT host, port FROM {_table(schema, MEMBERS_TABLE)} ORDER BY host, port"
    try:
        rows = query_rows(conn_or_probe, sql)
    except Exception as exc:
        code = getattr(exc, "args", (None,))[:1]
        if code and code[0] in _NO_LEDGER:
            log.debug("no readable member list: %s", describe_error(exc))
            return []
        raise
    return [f"{r['host']}:{int(r['port'])}" for r in rows]


def record_members(
    probe: NodeProbe,
    nodes: Sequence[str],
    remove: Sequence[str] = (),
    schema: str = DEFAULT_SCHEMA,
) -> bool:
    """Add *nodes* to the member list on the primary *probe* (and drop *remove*), writing
    only when that changes it. ``True`` when something was written.
    """
    known = set(members(probe, schema))
    add = sorted(set(nodes) - known - set(remove))
    drop = sorted(set(remove) & known)
    if not add and not drop:
        return False
    for stmt in member_statements(add, drop, schema):
        probe.query(stmt.sql, stmt.params)
    log.info("%s: member list: added %s, removed %s", probe.name, add or "-", drop or "-")
    return True
