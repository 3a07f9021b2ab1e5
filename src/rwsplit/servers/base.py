"""MariaDB and MySQL 8 replication SQL behind one interface.

The monitor and the failover code never spell a replication statement themselves: they ask a
:class:`ReplicationDialect` (:class:`MariaDB` or :class:`MySQL`) for it, and hand it the raw
rows the server returned to parse. Positions are compared as :class:`GtidSet` values, which
know each flavour's GTID syntax (MariaDB ``domain-server-seq`` lists, MySQL ``uuid:1-10``
sets).

Statements that carry a password are :class:`Statement` values: the password travels as a
bound parameter and :meth:`Statement.display` masks it, so plans, logs and dry runs never show
it.

>>> d = dialect_for_version("10.11.6-MariaDB-log")
>>> d.name, d.stop_io_thread().sql
('mariadb', 'STOP SLAVE IO_THREAD')
>>> MySQL().stop_io_thread().sql
'STOP REPLICA IO_THREAD'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GtidSet",
    "MariaDB",
    "MariaDBGtid",
    "MySQL",
    "MySQLGtid",
    "NodeState",
    "ReplicaStatus",
    "ReplicationDialect",
    "Statement",
    "dialect_for_version",
]

_MASK = "'***'"


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


class MariaDBGtid(GtidSet):
    """A MariaDB GTID position: the last ``domain-server-seq`` per replication domain.

    >>> a = MariaDBGtid("0-1-100,1-5-7")
    >>> a.contains(MariaDBGtid("0-3-99")), a.contains(MariaDBGtid("0-1-101")), a.progress
    (True, False, 107)
    """

    def __init__(self, text: str | None) -> None:
        self.text = (text or "").strip()
        self.domains: dict[int, tuple[int, int]] = {}
        """domain id → (server id, sequence number) of the latest transaction."""
        for part in filter(None, (p.strip() for p in self.text.split(","))):
            m = re.fullmatch(r"(\d+)-(\d+)-(\d+)", part)
            if not m:
                raise ValueError(f"not a MariaDB GTID position: {part!r}")
            domain, server, seq = (int(g) for g in m.groups())
            if domain not in self.domains or seq >= self.domains[domain][1]:
                self.domains[domain] = (server, seq)

    def contains(self, other: GtidSet) -> bool:
        if not isinstance(other, MariaDBGtid):
            raise TypeError("cannot compare GTIDs of different server flavours")
        return all(
            d in self.domains and self.domains[d][1] >= seq for d, (_, seq) in other.domains.items()
        )

    @property
    def progress(self) -> int:
        return sum(seq for _, seq in self.domains.values())

    def merged(self, other: MariaDBGtid) -> MariaDBGtid:
        """Per domain, the further of the two positions."""
        out = dict(self.domains)
        for d, (server, seq) in other.domains.items():
            if d not in out or seq > out[d][1]:
                out[d] = (server, seq)
        return MariaDBGtid(",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(out.items())))


class MySQLGtid(GtidSet):
    """A MySQL GTID set: ``source_uuid:interval[:interval...]`` per source.

    >>> a = MySQLGtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7")
    >>> a.progress, a.contains(MySQLGtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:2-4"))
    (6, True)
    """

    def __init__(self, text: str | None) -> None:
        self.text = re.sub(r"\s+", "", text or "")
        self.sets: dict[str, list[tuple[int, int]]] = {}
        for part in filter(None, self.text.split(",")):
            uuid, *intervals = part.split(":")
            if not intervals:
                raise ValueError(f"not a MySQL GTID set: {part!r}")
            ranges = self.sets.setdefault(uuid.lower(), [])
            for iv in intervals:
                lo, _, hi = iv.partition("-")
                if not lo.isdigit() or (hi and not hi.isdigit()):
                    raise ValueError(f"not a MySQL GTID interval: {iv!r} in {part!r}")
                ranges.append((int(lo), int(hi or lo)))
        for ranges in self.sets.values():
            ranges.sort()

    def _has(self, uuid: str, lo: int, hi: int) -> bool:
        # Intervals in a server's output are disjoint and sorted: one must cover [lo, hi].
        return any(a <= lo and hi <= b for a, b in self.sets.get(uuid, ()))

    def contains(self, other: GtidSet) -> bool:
        if not isinstance(other, MySQLGtid):
            raise TypeError("cannot compare GTIDs of different server flavours")
        return all(self._has(u, lo, hi) for u, rs in other.sets.items() for lo, hi in rs)

    @property
    def progress(self) -> int:
        return sum(hi - lo + 1 for rs in self.sets.values() for lo, hi in rs)


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


class MariaDB(ReplicationDialect):
    """MariaDB 10.x / 11.x: ``SHOW SLAVE STATUS``, ``MASTER_USE_GTID=slave_pos``."""

    name = "mariadb"
    gtid_class = MariaDBGtid
    promoted_binlog_has_history = False
    variables_sql = (
        "SELECT @@server_id AS server_id, @@version AS version, @@read_only AS read_only, "
        "@@gtid_current_pos AS executed, @@gtid_binlog_pos AS own_binlog, "
        "@@gtid_binlog_state AS binlog_state, @@gtid_slave_pos AS replica_applied, "
        "@@innodb_flush_log_at_trx_commit AS flush_log_at_trx_commit"
    )
    replica_status_sql = "SHOW SLAVE STATUS"

    def parse_state(
        self, variables: Mapping[str, Any], status_rows: Sequence[Mapping[str, Any]]
    ) -> NodeState:
        return NodeState(
            server_id=_int(variables.get("server_id")),
            version=str(variables.get("version", "")),
            read_only=_bool(variables.get("read_only")),
            super_read_only=False,
            executed=MariaDBGtid(variables.get("executed")),
            own_binlog=MariaDBGtid(variables.get("own_binlog")),
            binlog_state=str(variables.get("binlog_state") or ""),
            replica=self.parse_replica_status(status_rows),
            replica_applied=MariaDBGtid(variables.get("replica_applied")),
            flush_log_at_trx_commit=_int(variables.get("flush_log_at_trx_commit"), 1),
        )

    def stop_io_thread(self) -> Statement:
        return Statement("STOP SLAVE IO_THREAD")

    def start_io_thread(self) -> Statement:
        return Statement("START SLAVE IO_THREAD")

    def start_sql_thread(self) -> Statement:
        return Statement("START SLAVE SQL_THREAD")

    def stop_replication(self) -> Statement:
        return Statement("STOP SLAVE")

    def start_replication(self) -> Statement:
        return Statement("START SLAVE")

    def reset_replication(self) -> Statement:
        return Statement("RESET SLAVE ALL")

    def wait_for_gtid(self, gtid: str, timeout: float) -> Statement:
        # MASTER_GTID_WAIT returns 0 when reached, -1 on timeout.
        return Statement("SELECT MASTER_GTID_WAIT(%s, %s)", (gtid, float(timeout)))

    def wait_succeeded(self, value: Any) -> bool:
        return value is not None and int(value) == 0

    def set_read_only(self, on: bool) -> list[Statement]:
        return [Statement(f"SET GLOBAL read_only = {'ON' if on else 'OFF'}")]

    def promote(self, state: NodeState) -> list[Statement]:
        # Replicas have log-bin but no log-slave-updates: the promoted node's binary log does
        # not hold the transactions it replicated, and with gtid_strict_mode a replica asking
        # for "everything after 0-1-100" is refused unless that GTID is in the new primary's
        # binlog state. RESET MASTER then seeding gtid_binlog_state with what the node applied
        # makes its first binlog file start "at" that position, so the other replicas
        # (MASTER_USE_GTID=slave_pos) continue exactly where they stopped.
        #
        # Both statements wait for InnoDB to confirm a binlog checkpoint, which with
        # innodb_flush_log_at_trx_commit=2 only comes with the once-a-second redo flush: a
        # synchronous FLUSH ENGINE LOGS first makes that wait (up to 1 s) disappear.
        applied = state.replica_applied or MariaDBGtid("")
        seed = MariaDBGtid(state.own_binlog.text).merged(applied)  # type: ignore[arg-type]
        stmts: list[Statement] = []
        if state.replica is not None:
            stmts += [self.stop_replication(), self.reset_replication()]
        # With log-slave-updates the binlog already holds what was applied: keep it (other
        # replicas may still need those events); so does a node promoted half-way before.
        if not state.own_binlog.contains(applied):
            flush = state.flush_log_at_trx_commit
            fast = flush is not None and flush != 1
            flush_logs = Statement("FLUSH LOCAL ENGINE LOGS")
            if fast:
                stmts.append(Statement("SET GLOBAL innodb_flush_log_at_trx_commit = 1"))
            if state.own_binlog:
                stmts += [flush_logs, Statement("RESET MASTER")]
            if seed:
                stmts += [flush_logs, Statement("SET GLOBAL gtid_binlog_state = %s", (seed.text,))]
            if fast:
                stmts.append(Statement(f"SET GLOBAL innodb_flush_log_at_trx_commit = {flush}"))
        stmts += self.set_read_only(False)
        return stmts

    def point_at(
        self, state: NodeState, host: str, port: int, user: str, password: str
    ) -> list[Statement]:
        stmts = [self.stop_replication()]
        if state.replica is None and state.own_binlog:
            # A former primary: what it wrote is in its own binlog, not in gtid_slave_pos.
            stmts.append(Statement("SET GLOBAL gtid_slave_pos = %s", (state.executed.text,)))
        stmts.append(
            Statement(
                "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
                "MASTER_PASSWORD = %s, MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos",
                (host, port, user, password),
                frozenset({3}),
            )
        )
        return stmts


class MySQL(ReplicationDialect):
    """MySQL 8.0.23+ / 8.4 / 9.x: ``SHOW REPLICA STATUS``, ``super_read_only``; GTIDs on
    (``SOURCE_AUTO_POSITION``) or off (binary log file and position).

    Statement names follow the server's version: ``SHOW BINARY LOG STATUS`` and ``RESET
    BINARY LOGS AND GTIDS`` from 8.2 (``SHOW MASTER STATUS`` / ``RESET MASTER`` before, removed
    in 8.4), ``SOURCE_POS_WAIT`` from 8.0.26 (``MASTER_POS_WAIT`` before).

    >>> MySQL("8.0.36").binlog_status().sql, MySQL("9.7.0").binlog_status().sql
    ('SHOW MASTER STATUS', 'SHOW BINARY LOG STATUS')
    >>> MySQL("8.0.25").wait_for_position("binlog.000002", 157, 1.5).sql
    'SELECT MASTER_POS_WAIT(%s, %s, %s)'
    """

    name = "mysql"
    gtid_class = MySQLGtid
    replica_status_sql = "SHOW REPLICA STATUS"

    def __init__(self, version: str = "8.4.0") -> None:
        self.version = _version_tuple(version)
        modern = self.version >= (8, 0, 26)
        self.variables_sql = (
            "SELECT @@server_id AS server_id, @@version AS version, @@read_only AS read_only, "
            "@@super_read_only AS super_read_only, @@gtid_executed AS executed, "
            "@@server_uuid AS server_uuid, @@global.gtid_mode AS gtid_mode, "
            "@@log_bin AS log_bin, "
            + ("@@log_replica_updates" if modern else "@@log_slave_updates")
            + " AS log_replica_updates"
        )

    def parse_state(
        self, variables: Mapping[str, Any], status_rows: Sequence[Mapping[str, Any]]
    ) -> NodeState:
        executed = MySQLGtid(variables.get("executed"))
        lru = variables.get("log_replica_updates")
        return NodeState(
            server_id=_int(variables.get("server_id")),
            version=str(variables.get("version", "")),
            read_only=_bool(variables.get("read_only")),
            super_read_only=_bool(variables.get("super_read_only")),
            executed=executed,
            # log_replica_updates is ON by default in MySQL 8: the binlog holds everything.
            own_binlog=executed,
            binlog_state=executed.text,
            replica=self.parse_replica_status(status_rows),
            replica_applied=executed,
            server_uuid=str(variables.get("server_uuid") or "").lower(),
            gtid_mode=str(variables.get("gtid_mode") or "ON").upper(),
            log_bin=_bool(variables.get("log_bin", 1)),
            log_replica_updates=None if lru is None else _bool(lru),
        )

    def stop_io_thread(self) -> Statement:
        return Statement("STOP REPLICA IO_THREAD")

    def start_io_thread(self) -> Statement:
        return Statement("START REPLICA IO_THREAD")

    def start_sql_thread(self) -> Statement:
        return Statement("START REPLICA SQL_THREAD")

    def stop_replication(self) -> Statement:
        return Statement("STOP REPLICA")

    def start_replication(self) -> Statement:
        return Statement("START REPLICA")

    def reset_replication(self) -> Statement:
        return Statement("RESET REPLICA ALL")

    def wait_for_gtid(self, gtid: str, timeout: float) -> Statement:
        # WAIT_FOR_EXECUTED_GTID_SET returns 0 when reached, 1 on timeout; whole seconds.
        return Statement(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (gtid, max(1, round(timeout)))
        )

    def wait_succeeded(self, value: Any) -> bool:
        return value is not None and int(value) == 0

    def set_read_only(self, on: bool) -> list[Statement]:
        if on:
            # super_read_only implies read_only and also stops SUPER / admin accounts.
            return [Statement("SET GLOBAL super_read_only = ON")]
        return [
            Statement("SET GLOBAL super_read_only = OFF"),
            Statement("SET GLOBAL read_only = OFF"),
        ]

    def promote(self, state: NodeState) -> list[Statement]:
        stmts = [self.stop_replication(), self.reset_replication()]
        if not state.gtids:
            # GTIDs off: the promoted node's binary log starts afresh, so "its first
            # position" is where every replica that applied exactly what it applied goes on.
            stmts.append(self.reset_binary_log())
        return [*stmts, *self.set_read_only(False)]

    def point_at(
        self, state: NodeState, host: str, port: int, user: str, password: str
    ) -> list[Statement]:
        return [
            self.stop_replication(),
            Statement(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %s, "
                "SOURCE_USER = %s, SOURCE_PASSWORD = %s, SOURCE_CONNECT_RETRY = 1, "
                "SOURCE_AUTO_POSITION = 1, GET_SOURCE_PUBLIC_KEY = 1",
                (host, port, user, password),
                frozenset({3}),
            ),
        ]

    # ---- GTIDs off: binary log file and position

    def binlog_status(self) -> Statement:
        """The node's own binary log position (``File``, ``Position``)."""
        if self.version >= (8, 2):
            return Statement("SHOW BINARY LOG STATUS")
        return Statement("SHOW MASTER STATUS")

    def reset_binary_log(self) -> Statement:
        if self.version >= (8, 2):
            return Statement("RESET BINARY LOGS AND GTIDS")
        return Statement("RESET MASTER")

    def wait_for_position(self, file: str, position: int, timeout: float) -> Statement:
        """A ``SELECT`` that waits until the SQL thread applied the source's *file*:*position*.

        Returns the number of events waited for (>= 0), -1 on timeout, ``NULL`` when the
        node does not replicate or its SQL thread stopped: see :meth:`position_reached`.
        """
        fn = "SOURCE_POS_WAIT" if self.version >= (8, 0, 26) else "MASTER_POS_WAIT"
        # A timeout of 0 waits forever: never pass it.
        return Statement(f"SELECT {fn}(%s, %s, %s)", (file, int(position), max(timeout, 0.001)))

    @staticmethod
    def position_reached(value: Any) -> bool:
        return value is not None and int(value) >= 0

    def point_at_position(
        self, host: str, port: int, user: str, password: str, file: str, position: int
    ) -> list[Statement]:
        """Replicate from ``host:port`` starting at its *file*:*position* (GTIDs off).

        ``RESET REPLICA`` first: the relay logs (applied) and the old source's coordinates
        and ``Source_UUID`` go, so nothing of the old primary is taken for the new one's.
        """
        return [
            self.stop_replication(),
            Statement("RESET REPLICA"),
            Statement(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %s, "
                "SOURCE_USER = %s, SOURCE_PASSWORD = %s, SOURCE_CONNECT_RETRY = 1, "
                "SOURCE_AUTO_POSITION = 0, SOURCE_LOG_FILE = %s, SOURCE_LOG_POS = %s, "
                "GET_SOURCE_PUBLIC_KEY = 1",
                (host, port, user, password, file, int(position)),
                frozenset({3}),
            ),
        ]

    # ---- semi-synchronous replication

    semi_sync_variables_sql = "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%_enabled'"

    @staticmethod
    def semi_sync_source_variable(rows: Sequence[Mapping[str, Any]]) -> tuple[str, bool] | None:
        """From :attr:`semi_sync_variables_sql`'s rows: the source-side switch's name (the
        plugin decides: ``rpl_semi_sync_source_enabled`` or ``..._master_enabled``) and
        whether it is on; ``None`` without a source-side semi-sync plugin."""
        for row in rows:
            name = str(_get(row, "Variable_name", "VARIABLE_NAME", default=""))
            if name in ("rpl_semi_sync_source_enabled", "rpl_semi_sync_master_enabled"):
                return name, _bool(_get(row, "Value", "VALUE"))
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"8.0.36-0ubuntu0.22.04.1"`` → ``(8, 0, 36)``.

    >>> _version_tuple("9.7.0-debug"), _version_tuple("")
    ((9, 7, 0), (8, 4, 0))
    """
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        return (8, 4, 0)
    return tuple(int(g or 0) for g in m.groups())


def dialect_for_version(version: str) -> ReplicationDialect:
    """The dialect of a server from its ``@@version`` / ``SELECT VERSION()`` string."""
    return MariaDB() if "mariadb" in version.lower() else MySQL(version)
