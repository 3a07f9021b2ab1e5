"""MySQL 8.0 / 8.4 / 9.x: GTID sets ``uuid:1-10`` (or binlog file/position with GTIDs off),
``SHOW REPLICA STATUS``, ``super_read_only``, the semi-sync plugins.

Statement and variable names follow the server's version: ``REPLICA`` / ``SOURCE`` from 8.0.22
/ 8.0.23 (``SLAVE`` / ``MASTER`` before), ``rpl_semi_sync_source_*`` from 8.0.26
(``rpl_semi_sync_master_*`` before), ``SHOW BINARY LOG STATUS`` from 8.2 (``SHOW MASTER
STATUS`` before).

>>> MySQL("8.0.20").stop_replication().sql
'STOP SLAVE'
>>> MySQL("9.7.4").change_source("10.0.0.1", 3306, "repl", "secret").display()
"CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.1', SOURCE_PORT = 3306, \
SOURCE_USER = 'repl', SOURCE_PASSWORD = '***', SOURCE_CONNECT_RETRY = 1, \
SOURCE_RETRY_COUNT = 31536000, GET_SOURCE_PUBLIC_KEY = 1, SOURCE_AUTO_POSITION = 1"
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import (
    Cursor,
    GtidSet,
    NodeState,
    ReplicationDialect,
    Statement,
    _bool,
    _int,
    dict_rows,
    parse_version,
)

__all__ = ["MySQL", "MySQLGtid"]

RETRY_COUNT = 31_536_000
"""``SOURCE_RETRY_COUNT`` (the maximum: a year of one attempt a second). MySQL's default is 10:
with ``SOURCE_CONNECT_RETRY = 1`` a replica would give up on a source that is away ~10 s."""

_NEWEST = (99, 0, 0)


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


_APPLIER_LAG = (
    # Sub-second lag from the applier's timestamps (8.0+): 0 when everything queued is
    # applied, else how old the oldest transaction being applied is (the source's commit
    # time; the last applied one's between two transactions). NULL without data.
    "(SELECT CASE"
    " WHEN UNIX_TIMESTAMP(MAX(c.LAST_QUEUED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP)) = 0"
    " THEN NULL"
    " WHEN UNIX_TIMESTAMP(MAX(w.LAST_APPLIED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP))"
    " >= UNIX_TIMESTAMP(MAX(c.LAST_QUEUED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP)) THEN 0"
    " ELSE UNIX_TIMESTAMP(NOW(6)) - COALESCE("
    "MIN(NULLIF(UNIX_TIMESTAMP(w.APPLYING_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP), 0)),"
    " UNIX_TIMESTAMP(MAX(w.LAST_APPLIED_TRANSACTION_ORIGINAL_COMMIT_TIMESTAMP))) END"
    " FROM performance_schema.replication_connection_status c"
    " JOIN performance_schema.replication_applier_status_by_worker w"
    " ON w.CHANNEL_NAME = c.CHANNEL_NAME WHERE c.CHANNEL_NAME = '')"
)


class MySQL(ReplicationDialect):
    """MySQL 8.0 / 8.4 / 9.x: ``SHOW REPLICA STATUS``, ``SOURCE_AUTO_POSITION``,
    ``super_read_only``.

    :param version: the server's version string (names of statements and variables follow
        it); the newest syntax when empty.
    :param gtid: the server runs with ``gtid_mode=ON`` (else replication by binlog file and
        position).
    """

    name = "mysql"
    gtid_class = MySQLGtid

    def __init__(self, version: str = "", *, gtid: bool = True) -> None:
        self.version = parse_version(version) if version else _NEWEST
        if self.version == (0, 0, 0):
            self.version = _NEWEST
        self.gtid = gtid
        v = self.version
        self._replica = "REPLICA" if v >= (8, 0, 22) else "SLAVE"
        self._source_syntax = v >= (8, 0, 23)
        self._new_semi_sync = v >= (8, 0, 26)
        self._new_names = v >= (8, 0, 26)  # options: replica-net-timeout, skip-replica-start
        self.replica_status_sql = f"SHOW {self._replica} STATUS"
        self.variables_sql = (
            "SELECT @@server_id AS server_id, @@version AS version, @@read_only AS read_only, "
            "@@super_read_only AS super_read_only, @@gtid_executed AS executed, "
            "@@server_uuid AS server_uuid, @@global.gtid_mode AS gtid_mode, "
            "@@log_bin AS log_bin, "
            + ("@@log_replica_updates" if self._new_names else "@@log_slave_updates")
            + " AS log_replica_updates"
        )
        self.variables_sql_with_lag = self.variables_sql + ", " + _APPLIER_LAG + " AS applier_lag"
        """:attr:`variables_sql` with the sub-second applier lag (needs SELECT on
        ``performance_schema``; NULL when it is off or nothing was queued yet)."""

    replica_status_sql = "SHOW REPLICA STATUS"

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
            applier_lag=(
                None if variables.get("applier_lag") is None else float(variables["applier_lag"])
            ),
        )

    def stop_io_thread(self) -> Statement:
        return Statement(f"STOP {self._replica} IO_THREAD")

    def start_io_thread(self) -> Statement:
        return Statement(f"START {self._replica} IO_THREAD")

    def start_sql_thread(self) -> Statement:
        return Statement(f"START {self._replica} SQL_THREAD")

    def stop_replication(self) -> Statement:
        return Statement(f"STOP {self._replica}")

    def start_replication(self) -> Statement:
        return Statement(f"START {self._replica}")

    def reset_replication(self) -> Statement:
        return Statement(f"RESET {self._replica} ALL")

    def wait_for_gtid(self, gtid: str, timeout: float) -> Statement:
        # WAIT_FOR_EXECUTED_GTID_SET returns 0 when reached, 1 on timeout; whole seconds.
        return Statement(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (gtid, max(1, round(timeout)))
        )

    def wait_succeeded(self, value: Any) -> bool:
        return value is not None and int(value) == 0

    def _wait_call(self, gtid: str, timeout: float) -> str:
        return f"WAIT_FOR_EXECUTED_GTID_SET('{gtid}', {max(1, round(timeout))})"

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
        return [self.stop_replication(), self.change_source(host, port, user, password)]

    # ---- replication wiring
    def stop_sql_thread(self) -> Statement:
        return Statement(f"STOP {self._replica} SQL_THREAD")

    def change_source(
        self, host: str, port: int, user: str, password: str, *, position: str | None = None
    ) -> Statement:
        s = "SOURCE" if self._source_syntax else "MASTER"
        sql = (
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %s, "
            if self._source_syntax
            else "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, "
        )
        # Retry every second, for a year (MySQL's default count, 10, gives up after ~10 s).
        # caching_sha2_password over a connection without TLS needs the source's RSA key.
        sql += (
            f"{s}_USER = %s, {s}_PASSWORD = %s, {s}_CONNECT_RETRY = 1, "
            f"{s}_RETRY_COUNT = {RETRY_COUNT}, GET_{s}_PUBLIC_KEY = 1, "
        )
        params: tuple[object, ...] = (host, port, user, password)
        if self.gtid:
            sql += f"{s}_AUTO_POSITION = 1"
        else:
            file, _, pos = (position or "").rpartition(":")
            if not file or not pos.isdigit():
                raise ValueError(
                    "replication without GTIDs needs a binlog position 'file:pos', "
                    f"got {position!r}"
                )
            sql += f"{s}_AUTO_POSITION = 0, {s}_LOG_FILE = %s, {s}_LOG_POS = %s"
            params += (file, int(pos))
        return Statement(sql, params, frozenset({3}))

    def source_delay(self, seconds: int) -> Statement:
        """
        >>> MySQL("9.7.4").source_delay(60).sql
        'CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 60'
        >>> MySQL("8.0.20").source_delay(60).sql
        'CHANGE MASTER TO MASTER_DELAY = 60'
        """
        if self._source_syntax:
            return Statement(f"CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {int(seconds)}")
        return Statement(f"CHANGE MASTER TO MASTER_DELAY = {int(seconds)}")

    def binlog_status_sql(self) -> str:
        # SHOW MASTER STATUS is gone in 8.4.
        return "SHOW BINARY LOG STATUS" if self.version >= (8, 2, 0) else "SHOW MASTER STATUS"

    # ---- GTIDs off: binary log file and position (causal reads, failover)
    def binlog_status(self) -> Statement:
        """The node's own binary log position (columns ``File``, ``Position``)."""
        return Statement(self.binlog_status_sql())

    def reset_binary_log(self) -> Statement:
        if self.version >= (8, 2, 0):
            return Statement("RESET BINARY LOGS AND GTIDS")
        return Statement("RESET MASTER")

    def wait_for_position(self, file: str, position: int, timeout: float) -> Statement:
        """A ``SELECT`` that waits until the SQL thread applied the source's *file*:*position*.

        Returns the number of events waited for (>= 0), -1 on timeout, ``NULL`` when the
        node does not replicate or its SQL thread is stopped: see :meth:`position_reached`.

        >>> MySQL("8.0.25").wait_for_position("binlog.000002", 157, 1.5).sql
        'SELECT MASTER_POS_WAIT(%s, %s, %s)'
        """
        fn = "SOURCE_POS_WAIT" if self._new_names else "MASTER_POS_WAIT"
        # Fractions of a second are honoured; a timeout of 0 waits forever: never pass it.
        return Statement(f"SELECT {fn}(%s, %s, %s)", (file, int(position), max(timeout, 0.001)))

    @staticmethod
    def position_reached(value: Any) -> bool:
        return value is not None and int(value) >= 0

    def point_at_position(
        self, host: str, port: int, user: str, password: str, file: str, position: int
    ) -> list[Statement]:
        """Replicate from ``host:port`` starting at its *file*:*position* (GTIDs off).

        ``RESET REPLICA`` first: the (applied) relay logs and the old source's coordinates
        go; a new source also clears ``Source_UUID`` until the IO thread connects, so no
        position of the old primary is ever waited for on this node meanwhile.
        """
        positional = MySQL(".".join(str(v) for v in self.version), gtid=False)
        return [
            self.stop_replication(),
            Statement(f"RESET {self._replica}"),
            positional.change_source(host, port, user, password, position=f"{file}:{position}"),
        ]

    def position(self, cur: Cursor) -> str:
        if self.gtid:
            # SHOW, not SELECT: reading it moves no Com_select counter.
            cur.execute("SHOW GLOBAL VARIABLES LIKE 'gtid_executed'")
            row = cur.fetchone()
            return re.sub(r"\s+", "", str(row[1] or "")) if row else ""
        cur.execute(self.binlog_status_sql())
        rows = dict_rows(cur)
        if not rows or not rows[0].get("File"):
            return ""
        return f"{rows[0]['File']}:{rows[0]['Position']}"

    def first_position(self, cur: Cursor) -> str:
        """The start of the oldest binary log the node on *cur* still has (``file:4``): where
        a fresh replica begins without GTIDs."""
        cur.execute("SHOW BINARY LOGS")
        rows = dict_rows(cur)
        if not rows:
            return ""
        return f"{rows[0]['Log_name']}:4"

    def executed(self, cur: Cursor) -> str:
        if self.gtid:
            return self.position(cur)
        status = self.replica_status(cur)
        if status is not None:
            cur.execute(self.replica_status_sql)
            row = dict_rows(cur)[0]
            file = row.get("Relay_Source_Log_File") or row.get("Relay_Master_Log_File")
            return f"{file}:{row.get('Exec_Source_Log_Pos') or row.get('Exec_Master_Log_Pos')}"
        return self.position(cur)

    def wait_position(self, cur: Cursor, position: str, timeout: float) -> bool:
        if not position:
            return True
        if self.gtid:
            stmt = self.wait_for_gtid(position, timeout)
            cur.execute(stmt.sql, stmt.params)
            row = cur.fetchone()
            return bool(row) and self.wait_succeeded(row[0])
        file, _, pos = position.rpartition(":")
        fn = "SOURCE_POS_WAIT" if self._new_names else "MASTER_POS_WAIT"
        cur.execute(f"SELECT {fn}(%s, %s, %s)", (file, int(pos), max(1, round(timeout))))
        row = cur.fetchone()
        # >= 0: events waited for; -1: timeout; NULL: the SQL thread is not running.
        return bool(row) and row[0] is not None and int(row[0]) >= 0

    def own_transactions(self, cur: Cursor) -> dict[str, int]:
        if self.gtid:
            # Transactions executed on the node carry its own server_uuid in gtid_executed
            # (replicated ones keep their origin's).
            # SHOW, not SELECT: reading it moves no Com_select counter.
            cur.execute(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('server_uuid', 'gtid_executed')"
            )
            variables = dict(cur.fetchall())
            uuid, executed = variables["server_uuid"], variables.get("gtid_executed", "")
            gtids = MySQLGtid(str(executed or ""))
            own = gtids.sets.get(str(uuid).lower(), [])
            return {str(uuid): sum(hi - lo + 1 for lo, hi in own)} if own else {}
        # Without GTIDs: the transactions in the node's own binary logs (replicas run without
        # log_replica_updates, so only what executed on the node is there).
        cur.execute("SHOW BINARY LOGS")
        files = [r["Log_name"] for r in dict_rows(cur)]
        count = 0
        for f in files:
            cur.execute(f"SHOW BINLOG EVENTS IN '{f}'")
            count += sum(
                1 for r in dict_rows(cur) if r.get("Event_type") in ("Anonymous_Gtid", "Gtid")
            )
        return {"binlog": count} if count else {}

    def origin(self, cur: Cursor) -> str:
        cur.execute("SELECT @@server_uuid")
        return str(cur.fetchone()[0]).lower()

    def logged_from(self, cur: Cursor, origin: str) -> int:
        # The number of origin's transactions in the node's gtid_executed.
        cur.execute("SELECT @@global.gtid_executed")
        gtids = MySQLGtid(str(cur.fetchone()[0] or ""))
        return sum(hi - lo + 1 for lo, hi in gtids.sets.get(origin.lower(), []))

    # ---- semi-sync (the semisync_source / semisync_replica plugins)
    def _semi(self, side: str) -> str:
        if self._new_semi_sync:
            return {"source": "rpl_semi_sync_source", "replica": "rpl_semi_sync_replica"}[side]
        return {"source": "rpl_semi_sync_master", "replica": "rpl_semi_sync_slave"}[side]

    def semi_sync_source(self, on: bool) -> Statement:
        return Statement(f"SET GLOBAL {self._semi('source')}_enabled = {'ON' if on else 'OFF'}")

    def semi_sync_status(self, name: str) -> str:
        return f"{self._semi('source').capitalize()}_{name}"

    # ---- the sandbox
    def sandbox_init_command(
        self, server: str, install_db: Sequence[str], datadir: Path, tmpdir: Path, *, as_root: bool
    ) -> list[str]:
        # --initialize-insecure creates only root@localhost, which a TCP connection from
        # 127.0.0.1 does not match under --skip-name-resolve: add root@'%' (no password; the
        # sandbox listens on loopback or a test's private address only).
        init_file = datadir.parent / "initialize.sql"
        init_file.write_text(
            "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '';\n"
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
        )
        cmd = [
            server,
            "--no-defaults",
            "--initialize-insecure",
            f"--datadir={datadir}",
            f"--tmpdir={tmpdir}",
            f"--init-file={init_file}",
            "--secure-file-priv=",
            *self._small_files(),
        ]
        if as_root:
            cmd.append("--user=root")
        return cmd

    def _small_files(self) -> list[str]:
        # A sandbox node is a test fixture: the default 100 MB of redo log per node (a test
        # suite starts hundreds) would fill a disk; 8 MB is the smallest allowed.
        if self.version >= (8, 0, 30):
            return ["--innodb-redo-log-capacity=8M"]
        return ["--innodb-log-file-size=4M", "--innodb-log-files-in-group=2"]

    def sandbox_server_options(
        self, *, replica: bool, semi_sync: bool, log_replica_updates: bool
    ) -> list[str]:
        new = self._new_names
        opts = [
            # Else it aborts looking for /var/lib/mysql-files (a distribution's default).
            "--secure-file-priv=",
            # Else every node also listens on 33060 (the X protocol).
            "--mysqlx=OFF",
            "--performance-schema=OFF",
            *self._small_files(),
            "--replica-net-timeout=5" if new else "--slave-net-timeout=5",
            "--skip-replica-start" if new else "--skip-slave-start",
            # MySQL logs what a replica applies by default: the classic layout turns it off.
            f"--log-{'replica' if new else 'slave'}-updates="
            + ("ON" if log_replica_updates else "OFF"),
        ]
        if self.gtid:
            opts += ["--gtid-mode=ON", "--enforce-gtid-consistency=ON"]
        else:
            opts += ["--gtid-mode=OFF"]
            # A replica reports the source position it applied (what SOURCE_POS_WAIT, the
            # causal wait without GTIDs, waits for) only at each checkpoint: every 300 ms by
            # default, which a read after a write would wait out.
            opts.append(f"--{'replica' if new else 'slave'}-checkpoint-period=10")
        if semi_sync:
            source = self._semi("source").replace("_", "-")
            acker = self._semi("replica").replace("_", "-")
            plugins = (
                ("semisync_source.so", "semisync_replica.so")
                if self._new_semi_sync
                else ("semisync_master.so", "semisync_slave.so")
            )
            no_replicas = "replica" if self._new_semi_sync else "slave"
            opts += [
                *(f"--plugin-load-add={p}" for p in plugins),
                # Every node acknowledges as a replica; only the primary waits (see MariaDB).
                f"--{acker}-enabled=ON",
                f"--{source}-enabled=OFF",
                # Never fall back to asynchronous replication.
                f"--{source}-timeout=4294967295",
                f"--{source}-wait-no-{no_replicas}=ON",
                f"--{source}-wait-point=AFTER_SYNC",
            ]
        return opts
