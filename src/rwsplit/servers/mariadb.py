"""MariaDB 10.6+ (10.x / 11.x): GTIDs ``domain-server-seq``, ``SHOW SLAVE STATUS``,
``MASTER_USE_GTID=slave_pos``, built-in semi-sync (``rpl_semi_sync_master_*``).

>>> MariaDB().change_source("10.0.0.1", 3306, "repl", "secret").display()
"CHANGE MASTER TO MASTER_HOST = '10.0.0.1', MASTER_PORT = 3306, MASTER_USER = 'repl', \
MASTER_PASSWORD = '***', MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos"
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
)

__all__ = ["MariaDB", "MariaDBGtid"]


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

    def _wait_call(self, gtid: str, timeout: float) -> str:
        return f"MASTER_GTID_WAIT('{gtid}', {float(timeout)!r})"

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
        stmts.append(self.change_source(host, port, user, password))
        return stmts

    # ---- replication wiring
    def stop_sql_thread(self) -> Statement:
        return Statement("STOP SLAVE SQL_THREAD")

    def change_source(
        self, host: str, port: int, user: str, password: str, *, position: str | None = None
    ) -> Statement:
        # MariaDB replicas retry 100,000 times by default (master_retry_count): ~28 hours at
        # one attempt a second.
        return Statement(
            "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
            "MASTER_PASSWORD = %s, MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos",
            (host, port, user, password),
            frozenset({3}),
        )

    def source_delay(self, seconds: int) -> Statement:
        return Statement(f"CHANGE MASTER TO MASTER_DELAY = {int(seconds)}")

    def binlog_status_sql(self) -> str:
        return "SHOW MASTER STATUS"

    def position(self, cur: Cursor) -> str:
        # SHOW, not SELECT: reading it moves no Com_select counter.
        cur.execute("SHOW GLOBAL VARIABLES LIKE 'gtid_binlog_pos'")
        row = cur.fetchone()
        return str(row[1] or "") if row else ""

    def executed(self, cur: Cursor) -> str:
        cur.execute("SELECT @@gtid_current_pos")
        row = cur.fetchone()
        return str(row[0] or "") if row else ""

    def wait_position(self, cur: Cursor, position: str, timeout: float) -> bool:
        if not position:
            return True
        stmt = self.wait_for_gtid(position, timeout)
        cur.execute(stmt.sql, stmt.params)
        row = cur.fetchone()
        return bool(row) and self.wait_succeeded(row[0])

    def own_transactions(self, cur: Cursor) -> dict[str, int]:
        # Per replication domain, the sequence number of the last GTID in the node's own
        # binary log that carries its own server id.
        # SHOW, not SELECT: reading it moves no Com_select counter.
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('gtid_binlog_pos', 'server_id')")
        variables = dict(cur.fetchall())
        pos, server_id = variables.get("gtid_binlog_pos", ""), variables["server_id"]
        own: dict[str, int] = {}
        for gtid in str(pos or "").split(","):
            parts = gtid.strip().split("-")
            if len(parts) == 3 and int(parts[1]) == int(server_id):
                own[f"{parts[0]}-{parts[1]}"] = int(parts[2])
        return own

    def origin(self, cur: Cursor) -> str:
        cur.execute("SELECT @@server_id")
        return str(cur.fetchone()[0])

    def logged_from(self, cur: Cursor, origin: str) -> int:
        # The highest sequence number of origin's transactions in the node's binlog state.
        cur.execute("SELECT @@gtid_binlog_state")
        state = str(cur.fetchone()[0] or "")
        best = 0
        for gtid in filter(None, (g.strip() for g in state.split(","))):
            _domain, server, seq = gtid.split("-")
            if server == origin:
                best = max(best, int(seq))
        return best

    # ---- semi-sync (built into MariaDB 10.3+)
    def semi_sync_source(self, on: bool) -> Statement:
        return Statement(f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if on else 'OFF'}")

    def semi_sync_status(self, name: str) -> str:
        return f"Rpl_semi_sync_master_{name}"

    # ---- the sandbox
    def sandbox_init_command(
        self, server: str, install_db: Sequence[str], datadir: Path, tmpdir: Path, *, as_root: bool
    ) -> list[str]:
        cmd = [
            *install_db,
            f"--datadir={datadir}",
            f"--tmpdir={tmpdir}",
            # root@localhost, @127.0.0.1 and @::1 without a password (a local throwaway).
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]
        if as_root:
            cmd.append("--user=root")
        return cmd

    def sandbox_server_options(
        self, *, replica: bool, semi_sync: bool, log_replica_updates: bool
    ) -> list[str]:
        opts = [
            "--binlog-format=MIXED",
            "--innodb-log-file-size=16M",
            "--performance-schema=OFF",
            "--gtid-strict-mode=ON",
            "--slave-net-timeout=5",
            "--skip-slave-start",
        ]
        if log_replica_updates:
            opts.append("--log-slave-updates=ON")
        if semi_sync:
            opts += [
                # Every node acknowledges as a replica (an old primary made a replica too).
                "--rpl-semi-sync-slave-enabled=ON",
                # The waiting side is turned on only on the primary, once its replicas are
                # connected: a replica that waited for acknowledgements of what it applies
                # (log-slave-updates) would stall on every commit.
                "--rpl-semi-sync-master-enabled=OFF",
                # Never fall back to asynchronous: no timeout (the maximum, ~49 days), and
                # keep waiting when no replica is connected. An old primary whose replicas
                # are gone (it hung, or was partitioned, and was failed over) then cannot
                # acknowledge a commit on its own.
                "--rpl-semi-sync-master-timeout=4294967295",
                "--rpl-semi-sync-master-wait-no-slave=ON",
                # Wait before the commit is visible in the engine (lossless semi-sync): no
                # other session reads a row that a failover could lose.
                "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
            ]
        return opts
