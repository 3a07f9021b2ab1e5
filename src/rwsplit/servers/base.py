"""What every server family answers: the :class:`ServerFamily` protocol and shared types.

A *server family* (:class:`~rwsplit.servers.mariadb.MariaDB`,
:class:`~rwsplit.servers.mysql.MySQL`) is the one place where servers differ. The monitor,
the failover code, the sandbox, the pytest plugin, the demo and the bench never spell a
server's replication SQL themselves: they ask the family for it, and hand it the raw rows the
server returned to parse. Positions are compared as :class:`GtidSet` values, which know each
family's GTID syntax (MariaDB ``domain-server-seq`` lists, MySQL ``uuid:1-10`` sets).

Statements that carry a password are :class:`Statement` values: the password travels as a
bound parameter and :meth:`Statement.display` masks it, so plans, logs and dry runs never show
it.

>>> from rwsplit.servers import MySQL, family_for_version
>>> d = family_for_version("10.11.6-MariaDB-log")
>>> d.name, d.stop_io_thread().sql
('mariadb', 'STOP SLAVE IO_THREAD')
>>> MySQL().stop_io_thread().sql
'STOP REPLICA IO_THREAD'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Cursor",
    "GtidSet",
    "NodeState",
    "ReplicaStatus",
    "ReplicationDialect",
    "SemiSync",
    "ServerFamily",
    "Statement",
    "parse_version",
]

_MASK = "'***'"
# GTID text that may become a quoted literal: MariaDB "0-1-5,1-2-9", MySQL "uuid:1-5:7,..."
# (tags too); no quote, backslash, "%" or ";" can get through.
_GTID_TEXT_RE = re.compile(r"[0-9A-Za-z_:,\- \t\r\n]+\Z")


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement to run on a node; ``params`` are bound client-side by PyMySQL.

    >>> s = Statement("SET GLOBAL read_only = ON")
    >>> s.display()
    'SET GLOBAL read_only = ON'
    """

    sql: str
    params: tuple[object, ...] = ()
    secret_params: frozenset[int] = field(default_factory=frozenset)
    """Indexes of ``params`` that are secrets, shown as ``'***'``."""

    def display(self) -> str:
        """The statement as it would run, with every secret masked."""
        if not self.params:
            return self.sql
        shown: list[str] = []
        for i, p in enumerate(self.params):
            if i in self.secret_params:
                shown.append(_MASK)
            elif isinstance(p, str):
                shown.append("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'")
            else:
                shown.append(str(p))
        return self.sql % tuple(shown)

    def __repr__(self) -> str:
        return f"Statement({self.display()!r})"


# ---------------------------------------------------------------------------------- GTIDs


class GtidSet:
    """A set of executed transactions, comparable across nodes of one cluster."""

    text: str

    def contains(self, other: GtidSet) -> bool:
        """True when every transaction of *other* is in this set."""
        raise NotImplementedError

    @property
    def progress(self) -> int:
        """A number that grows with every transaction applied (for lag and ordering)."""
        raise NotImplementedError

    def __bool__(self) -> bool:
        return bool(self.text)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GtidSet):
            return NotImplemented
        return self.contains(other) and other.contains(self)

    def __hash__(self) -> int:
        return hash(self.progress)


# ---------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """The parts of ``SHOW SLAVE STATUS`` / ``SHOW REPLICA STATUS`` rwsplit uses."""

    source_host: str
    source_port: int
    io_running: str
    """``"Yes"``, ``"No"`` or ``"Connecting"``."""
    sql_running: bool
    seconds_behind: int | None
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    received: str = ""
    """What the IO thread has received (MariaDB ``Gtid_IO_Pos``, MySQL ``Retrieved_Gtid_Set``)."""
    sql_state: str = ""
    source_server_id: int = 0
    """``Master_Server_Id``: the id of the server the IO thread last connected to (0: none)."""
    source_uuid: str = ""
    """MySQL ``Source_UUID``: the ``server_uuid`` of the source ("" when unknown / MariaDB)."""
    read_file: str = ""
    """``Source_Log_File``: the source's binary log file the IO thread reads."""
    read_pos: int = 0
    """``Read_Source_Log_Pos``: how far the IO thread has read in it."""
    exec_file: str = ""
    """``Relay_Source_Log_File``: the source's file of the last event the SQL thread applied."""
    exec_pos: int = 0
    """``Exec_Source_Log_Pos``: the position in it after that event."""

    @property
    def source(self) -> str:
        """The source as an rwsplit node name, ``host:port``."""
        return f"{self.source_host}:{self.source_port}"

    @property
    def io_connected(self) -> bool:
        return self.io_running == "Yes"


@dataclass(frozen=True, slots=True)
class NodeState:
    """What one probe of a server found."""

    server_id: int
    version: str
    read_only: bool
    super_read_only: bool
    executed: GtidSet
    """Every transaction the node has applied or written."""
    own_binlog: GtidSet
    """What the node's own binary log holds (MariaDB ``gtid_binlog_pos``)."""
    binlog_state: str
    replica: ReplicaStatus | None
    replica_applied: GtidSet | None = None
    """What the replication SQL thread applied (MariaDB ``gtid_slave_pos``)."""
    flush_log_at_trx_commit: int | None = None
    server_uuid: str = ""
    """MySQL ``@@server_uuid`` ("" on MariaDB)."""
    gtid_mode: str = "ON"
    """MySQL ``@@gtid_mode`` (``OFF``, ``OFF_PERMISSIVE``, ``ON_PERMISSIVE``, ``ON``); MariaDB
    always has GTIDs: ``ON``."""
    log_bin: bool = True
    log_replica_updates: bool | None = None
    """Whether the node writes what it replicates to its own binary log (``None``: unknown)."""
    applier_lag: float | None = None
    """MySQL: seconds behind, to the microsecond, from ``performance_schema``'s applier
    timestamps (``None``: not available; ``Seconds_Behind_Source`` is used)."""

    @property
    def gtids(self) -> bool:
        """Transactions carry GTIDs: positions compare across nodes, replicas auto-position."""
        return self.gtid_mode in ("ON", "ON_PERMISSIVE")

    @property
    def writable(self) -> bool:
        return not self.read_only and not self.super_read_only

    @property
    def is_replicating(self) -> bool:
        """Replication is configured (threads may be stopped)."""
        return self.replica is not None


@dataclass(frozen=True, slots=True)
class SemiSync:
    """A node's semi-synchronous replication switches, named as its server names them.

    >>> on = SemiSync("rpl_semi_sync_source_enabled", source_on=True, replica_on=True)
    >>> on.source(False).sql
    'SET GLOBAL rpl_semi_sync_source_enabled = OFF'
    >>> on.source(True) is None  # on already
    True
    """

    source_switch: str | None = None
    """The waiting (source) side's variable: MariaDB and MySQL before 8.0.26
    ``rpl_semi_sync_master_enabled``, MySQL's ``semisync_source`` plugin
    ``rpl_semi_sync_source_enabled``. ``None``: this server has no source side (MySQL without
    the plugin loaded), or its settings could not be read."""
    source_on: bool = False
    """The node waits for an acknowledgement of each commit (as a primary)."""
    replica_on: bool = False
    """The node acknowledges what it receives (as a replica)."""

    def source(self, on: bool) -> Statement | None:
        """The statement that turns the source side *on* / off; ``None`` when it already is
        so, or when the node has no source side."""
        if self.source_switch is None or self.source_on == on:
            return None
        return Statement(f"SET GLOBAL {self.source_switch} = {'ON' if on else 'OFF'}")


def _get(row: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return default


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    return int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(value)


def parse_version(text: str) -> tuple[int, int, int]:
    """The first ``X.Y.Z`` in a server's version string (``(0, 0, 0)`` when there is none).

    >>> parse_version("mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))")
    (9, 7, 4)
    >>> parse_version("10.11.6-MariaDB-0+deb12u1-log")
    (10, 11, 6)
    """
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)))


class Cursor(Protocol):
    """The part of a DB-API cursor (PyMySQL's) a family runs its SQL through."""

    @property
    def description(self) -> Any: ...

    def execute(self, query: str, args: Any = ...) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


def run(cur: Cursor, stmt: Statement) -> None:
    """Execute *stmt* on *cur* (its parameters bound client-side)."""
    cur.execute(stmt.sql, stmt.params or None)


def dict_rows(cur: Cursor) -> list[dict[str, Any]]:
    """The rows of the last statement as ``{column: value}`` whatever the cursor class."""
    rows = list(cur.fetchall())
    if rows and isinstance(rows[0], Mapping):
        return [dict(r) for r in rows]
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, r, strict=False)) for r in rows]


# ---------------------------------------------------------------------------------- dialects


class ReplicationDialect:
    """The replication statements and status parsing of one server flavour."""

    name: str = "?"
    gtid_class: type[GtidSet] = GtidSet
    promoted_binlog_has_history: bool = True
    """Does a promoted replica's binary log hold the transactions it replicated? (MySQL 8:
    yes, ``log_replica_updates`` is on by default. MariaDB replicas without
    ``log-slave-updates``: no, so a replica behind it at promotion cannot catch up.)"""

    # ---- probing
    variables_sql: str = ""
    replica_status_sql: str = ""

    def parse_gtid(self, text: str | None) -> GtidSet:
        return self.gtid_class(text)  # type: ignore[call-arg]

    def parse_state(
        self, variables: Mapping[str, Any], status_rows: Sequence[Mapping[str, Any]]
    ) -> NodeState:
        raise NotImplementedError

    def parse_replica_status(self, rows: Sequence[Mapping[str, Any]]) -> ReplicaStatus | None:
        """The replication status of the default channel, or ``None`` if not a replica."""
        if not rows:
            return None
        row = rows[0]
        host = _get(row, "Source_Host", "Master_Host", default="") or ""
        if not host:
            return None
        return ReplicaStatus(
            source_host=host,
            source_port=_int(_get(row, "Source_Port", "Master_Port"), 3306),
            io_running=str(_get(row, "Replica_IO_Running", "Slave_IO_Running", default="No")),
            sql_running=_get(row, "Replica_SQL_Running", "Slave_SQL_Running") == "Yes",
            seconds_behind=(
                None
                if _get(row, "Seconds_Behind_Source", "Seconds_Behind_Master") is None
                else _int(_get(row, "Seconds_Behind_Source", "Seconds_Behind_Master"))
            ),
            last_io_errno=_int(_get(row, "Last_IO_Errno")),
            last_io_error=str(_get(row, "Last_IO_Error", default="") or ""),
            last_sql_errno=_int(_get(row, "Last_SQL_Errno")),
            last_sql_error=str(_get(row, "Last_SQL_Error", default="") or ""),
            received=str(_get(row, "Gtid_IO_Pos", "Retrieved_Gtid_Set", default="") or ""),
            sql_state=str(
                _get(row, "Slave_SQL_Running_State", "Replica_SQL_Running_State", default="") or ""
            ),
            source_server_id=_int(_get(row, "Source_Server_Id", "Master_Server_Id")),
            source_uuid=str(_get(row, "Source_UUID", "Master_UUID", default="") or "").lower(),
            read_file=str(_get(row, "Source_Log_File", "Master_Log_File", default="") or ""),
            read_pos=_int(_get(row, "Read_Source_Log_Pos", "Read_Master_Log_Pos")),
            exec_file=str(
                _get(row, "Relay_Source_Log_File", "Relay_Master_Log_File", default="") or ""
            ),
            exec_pos=_int(_get(row, "Exec_Source_Log_Pos", "Exec_Master_Log_Pos")),
        )

    # ---- statements
    def stop_io_thread(self) -> Statement:
        raise NotImplementedError

    def start_io_thread(self) -> Statement:
        raise NotImplementedError

    def start_sql_thread(self) -> Statement:
        raise NotImplementedError

    def stop_replication(self) -> Statement:
        raise NotImplementedError

    def start_replication(self) -> Statement:
        raise NotImplementedError

    def reset_replication(self) -> Statement:
        raise NotImplementedError

    def wait_for_gtid(self, gtid: str, timeout: float) -> Statement:
        """A ``SELECT`` that waits until *gtid* is applied; see :meth:`wait_succeeded`."""
        raise NotImplementedError

    def wait_succeeded(self, value: Any) -> bool:
        raise NotImplementedError

    def wait_before_read(self, gtid: str, timeout: float) -> str | None:
        """The wait for *gtid* as SQL to send ahead of a read in one multi-statement.

        It returns one row ``(1,)`` when *gtid* was applied within *timeout*; otherwise it
        fails (error 1242, its ``ELSE`` branch's subquery) and the server runs nothing after
        it (MaxScale's ``causal_reads`` does the same). ``None`` when *gtid* is not plain GTID
        text: no literal is ever built from anything else.
        """
        if not _GTID_TEXT_RE.match(gtid):
            return None
        return (
            f"SELECT CASE WHEN {self._wait_call(gtid, timeout)} = 0 THEN 1 "
            "ELSE (SELECT 1 FROM INFORMATION_SCHEMA.ENGINES) END"
        )

    def _wait_call(self, gtid: str, timeout: float) -> str:
        raise NotImplementedError

    def set_read_only(self, on: bool) -> list[Statement]:
        raise NotImplementedError

    def promote(self, state: NodeState) -> list[Statement]:
        """Turn a replica whose relay log is applied into a writable primary."""
        raise NotImplementedError

    def point_at(
        self, state: NodeState, host: str, port: int, user: str, password: str
    ) -> list[Statement]:
        """Make a node replicate from ``host:port`` with GTID positioning (threads stopped).

        *state* is the node's state now: a former primary (no replication configured) first
        takes its own binary log position as its replication position.
        """
        raise NotImplementedError

    # ---- replication wiring (the sandbox, the pytest plugin, the tests)
    def stop_sql_thread(self) -> Statement:
        raise NotImplementedError

    def change_source(
        self, host: str, port: int, user: str, password: str, *, position: str | None = None
    ) -> Statement:
        """Point replication at ``host:port`` (retrying its source every second, for long).

        *position*: where to start without GTIDs (``file:pos``, see :meth:`position`); with
        GTIDs the server finds its place itself and *position* is ignored.
        """
        raise NotImplementedError

    def source_delay(self, seconds: int) -> Statement:
        """Make the replica apply each transaction *seconds* after its source committed it
        (a delayed replica; replication stopped first)."""
        raise NotImplementedError

    def replicate_from(
        self, host: str, port: int, user: str, password: str, *, position: str | None = None
    ) -> list[Statement]:
        """Stop replication, point it at ``host:port`` and start it."""
        return [
            self.stop_replication(),
            self.change_source(host, port, user, password, position=position),
            self.start_replication(),
        ]

    def replica_status(self, cur: Cursor) -> ReplicaStatus | None:
        """Ask the node on *cur* for its replication status (``None``: not a replica)."""
        cur.execute(self.replica_status_sql)
        return self.parse_replica_status(dict_rows(cur))

    def binlog_status_sql(self) -> str:
        """The statement that shows the node's own binary log file and position."""
        raise NotImplementedError

    def position(self, cur: Cursor) -> str:
        """What the node on *cur* has written to its binary log, as a token its replicas can
        wait for with :meth:`wait_position` (a GTID position, or ``file:pos``). Read with a
        ``SHOW`` statement: it moves no ``Com_select`` counter."""
        raise NotImplementedError

    def executed(self, cur: Cursor) -> str:
        """Everything the node on *cur* has applied or written, for display."""
        raise NotImplementedError

    def wait_position(self, cur: Cursor, position: str, timeout: float) -> bool:
        """On a replica: wait (bounded) until it applied *position*; ``False`` on timeout."""
        raise NotImplementedError

    def own_transactions(self, cur: Cursor) -> dict[str, int]:
        """How far the node on *cur* got in transactions it logged *itself* (executed on it,
        not replicated to it), per origin; grows only when something writes on the node."""
        raise NotImplementedError

    def origin(self, cur: Cursor) -> str:
        """How the GTIDs of transactions executed on the node on *cur* name it (MariaDB: its
        server id; MySQL: its ``server_uuid``)."""
        raise NotImplementedError

    def logged_from(self, cur: Cursor, origin: str) -> int:
        """How far the node on *cur* holds the transactions that originated on *origin* (see
        :meth:`origin`): comparable across the nodes of one cluster, as a difference."""
        raise NotImplementedError

    # ---- the applier's threads
    applier_threads_sql: str = "SHOW PROCESSLIST"
    """Lists the replication threads with their states (another account's threads, and the
    replication threads, only with the ``PROCESS`` privilege)."""

    def parse_applier_states(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """The states of the replication threads in :attr:`applier_threads_sql` rows.

        A multi-threaded applier (MySQL 8.0.27+ by default, MariaDB with
        ``slave_parallel_threads``) reports only its coordinator in the replica status
        ("has read all relay log"): what a worker waits for shows here.

        >>> ReplicationDialect().parse_applier_states([
        ...     {"User": "system user", "State": "Waiting for semi-sync ACK from replica"},
        ...     {"User": "app", "State": "Sending data"}])
        ['Waiting for semi-sync ACK from replica']
        """
        return [
            str(_get(r, "State", "STATE", default="") or "")
            for r in rows
            if _get(r, "User", "USER") == "system user"
        ]

    # ---- semi-synchronous replication
    semi_sync_sql: str = "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%_enabled'"
    """Both semi-sync switches, named as the server has them: MariaDB's built-in
    ``rpl_semi_sync_master_*`` / ``rpl_semi_sync_slave_*``; MySQL's plugins
    (``semisync_source`` / ``semisync_replica`` from 8.0.26, ``semisync_master`` /
    ``semisync_slave`` before, either pair on 8.0.26+): no rows without a plugin."""

    def parse_semi_sync(self, rows: Sequence[Mapping[str, Any]]) -> SemiSync:
        """:attr:`semi_sync_sql` rows as a :class:`SemiSync`.

        >>> ReplicationDialect().parse_semi_sync([
        ...     {"Variable_name": "rpl_semi_sync_master_enabled", "Value": "ON"},
        ...     {"Variable_name": "rpl_semi_sync_slave_enabled", "Value": "OFF"}])
        SemiSync(source_switch='rpl_semi_sync_master_enabled', source_on=True, replica_on=False)
        """
        source: str | None = None
        source_on = replica_on = False
        for row in rows:
            name = str(_get(row, "Variable_name", "VARIABLE_NAME", default="")).lower()
            on = _bool(_get(row, "Value", "VARIABLE_VALUE"))
            if name in ("rpl_semi_sync_source_enabled", "rpl_semi_sync_master_enabled"):
                source, source_on = name, on
            elif name in ("rpl_semi_sync_replica_enabled", "rpl_semi_sync_slave_enabled"):
                replica_on = on
        return SemiSync(source, source_on, replica_on)

    def semi_sync(self, cur: Cursor) -> SemiSync:
        """The semi-sync switches of the node on *cur*."""
        cur.execute(self.semi_sync_sql)
        return self.parse_semi_sync(dict_rows(cur))

    def semi_sync_source(self, on: bool) -> Statement:
        """Turn the waiting (source) side of semi-sync on or off, by the name this version's
        plugin would have (what the sandbox loads; see :meth:`semi_sync` for the name a
        running server has)."""
        raise NotImplementedError

    def semi_sync_clients(self, cur: Cursor) -> int:
        """How many semi-sync replicas are connected to the node on *cur*."""
        cur.execute(f"SHOW GLOBAL STATUS LIKE '{self.semi_sync_status('clients')}'")
        row = cur.fetchone()
        return int(row[1]) if row else 0

    def semi_sync_status(self, name: str) -> str:
        """The name of the source side's status variable *name* (``"clients"``,
        ``"status"``, ``"yes_tx"`` ...): ``Rpl_semi_sync_master_clients`` and the like."""
        raise NotImplementedError

    # ---- the sandbox
    def sandbox_init_command(
        self, server: str, install_db: Sequence[str], datadir: Path, tmpdir: Path, *, as_root: bool
    ) -> list[str]:
        """The command that creates a fresh data directory (root without password, reachable
        over TCP from the loopback address)."""
        raise NotImplementedError

    def sandbox_server_options(
        self, *, replica: bool, semi_sync: bool, log_replica_updates: bool
    ) -> list[str]:
        """The family's own server options for a sandbox node (after the common ones)."""
        raise NotImplementedError


@runtime_checkable
class ServerFamily(Protocol):
    """One server family: everything rwsplit asks that differs by server.

    Implemented by :class:`~rwsplit.servers.mariadb.MariaDB` and
    :class:`~rwsplit.servers.mysql.MySQL` (both :class:`ReplicationDialect` subclasses).
    """

    name: str
    gtid_class: type[GtidSet]
    promoted_binlog_has_history: bool
    variables_sql: str
    replica_status_sql: str

    def parse_gtid(self, text: str | None) -> GtidSet: ...
    def parse_state(
        self, variables: Mapping[str, Any], status_rows: Sequence[Mapping[str, Any]]
    ) -> NodeState: ...
    def parse_replica_status(self, rows: Sequence[Mapping[str, Any]]) -> ReplicaStatus | None: ...
    def stop_io_thread(self) -> Statement: ...
    def start_io_thread(self) -> Statement: ...
    def stop_sql_thread(self) -> Statement: ...
    def start_sql_thread(self) -> Statement: ...
    def stop_replication(self) -> Statement: ...
    def start_replication(self) -> Statement: ...
    def reset_replication(self) -> Statement: ...
    def wait_for_gtid(self, gtid: str, timeout: float) -> Statement: ...
    def wait_succeeded(self, value: Any) -> bool: ...
    def wait_before_read(self, gtid: str, timeout: float) -> str | None: ...
    def set_read_only(self, on: bool) -> list[Statement]: ...
    def promote(self, state: NodeState) -> list[Statement]: ...
    def point_at(
        self, state: NodeState, host: str, port: int, user: str, password: str
    ) -> list[Statement]: ...
    def change_source(
        self, host: str, port: int, user: str, password: str, *, position: str | None = None
    ) -> Statement: ...
    def source_delay(self, seconds: int) -> Statement: ...
    def replicate_from(
        self, host: str, port: int, user: str, password: str, *, position: str | None = None
    ) -> list[Statement]: ...
    def replica_status(self, cur: Cursor) -> ReplicaStatus | None: ...
    def binlog_status_sql(self) -> str: ...
    def position(self, cur: Cursor) -> str: ...
    def executed(self, cur: Cursor) -> str: ...
    def wait_position(self, cur: Cursor, position: str, timeout: float) -> bool: ...
    def own_transactions(self, cur: Cursor) -> dict[str, int]: ...
    def origin(self, cur: Cursor) -> str: ...
    def logged_from(self, cur: Cursor, origin: str) -> int: ...

    applier_threads_sql: str

    def parse_applier_states(self, rows: Sequence[Mapping[str, Any]]) -> list[str]: ...

    semi_sync_sql: str

    def parse_semi_sync(self, rows: Sequence[Mapping[str, Any]]) -> SemiSync: ...
    def semi_sync(self, cur: Cursor) -> SemiSync: ...
    def semi_sync_source(self, on: bool) -> Statement: ...
    def semi_sync_clients(self, cur: Cursor) -> int: ...
    def semi_sync_status(self, name: str) -> str: ...
    def sandbox_init_command(
        self, server: str, install_db: Sequence[str], datadir: Path, tmpdir: Path, *, as_root: bool
    ) -> list[str]: ...
    def sandbox_server_options(
        self, *, replica: bool, semi_sync: bool, log_replica_updates: bool
    ) -> list[str]: ...
