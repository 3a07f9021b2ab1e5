"""MySQL without GTIDs, and MySQL's commit tokens: the pieces that need no server."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rwsplit._gtid_track import last_gtid_from_ok
from rwsplit.errors import FailoverError
from rwsplit.routing import consistency
from rwsplit.routing._tokens import PRIMARY_ONLY, BinlogToken
from rwsplit.routing.consistency import (
    commit_token,
    may_wait,
    unwaitable_reason,
    wait_reached,
    wait_statement,
)
from rwsplit.servers import MySQL, MySQLGtid, NodeState, ReplicaStatus, SemiSync, Statement
from rwsplit.topology import failover as fo
from rwsplit.topology.model import Node, Replication, Role, Topology

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4f22ab58-71ca-11e1-9e33-c80aa9429563"


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.row: Any = None

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.sent.append(sql)
        answer = self.conn.answers[sql]
        if isinstance(answer, Exception):
            raise answer
        self.row = answer

    def fetchone(self) -> Any:
        return self.row

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.sent: list[str] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)


MODE = "SELECT @@global.gtid_mode, @@server_uuid, @@global.log_bin"


@pytest.fixture(autouse=True)
def _fresh_log_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consistency, "_logged_once", set())


def test_gtids_off_token_is_the_primarys_binlog_position_asked_once_per_connection() -> None:
    conn = FakeConnection(
        {
            MODE: ("OFF", U1.upper(), 1),
            "SHOW BINARY LOG STATUS": ("binlog.000003", 1574, "", "", ""),
        }
    )
    cache: dict[str, Any] = {}
    for _ in range(3):
        token = commit_token(conn, cache, mariadb=False, version="9.7.4", node="db1:3306")
        assert token == f"binlog:{U1}:binlog.000003:1574"
    assert conn.sent.count(MODE) == 1  # gtid_mode: once per connection
    assert conn.sent.count("SHOW BINARY LOG STATUS") == 3


def test_gtids_off_on_mysql_8_0_asks_show_master_status() -> None:
    conn = FakeConnection(
        {MODE: ("OFF_PERMISSIVE", U1, 1), "SHOW MASTER STATUS": ("mysql-bin.000001", 99)}
    )
    token = commit_token(conn, {}, mariadb=False, version="8.0.36", node="db1:3306")
    assert token == f"binlog:{U1}:mysql-bin.000001:99"


def test_gtids_on_token_is_the_executed_set() -> None:
    conn = FakeConnection({MODE: ("ON", U1, 1), "SELECT @@global.gtid_executed": (f"{U1}:1-42",)})
    assert commit_token(conn, {}, mariadb=False, version="9.7.4", node="n") == f"{U1}:1-42"


def test_no_privilege_for_the_position_reads_on_the_primary_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    denied = Exception(1227, "Access denied; you need the REPLICATION CLIENT privilege")
    conn = FakeConnection({MODE: ("OFF", U1, 1), "SHOW BINARY LOG STATUS": denied})
    with caplog.at_level(logging.WARNING, "rwsplit.consistency"):
        for _ in range(3):
            assert commit_token(conn, {}, mariadb=False, version="9.7", node="db1") == PRIMARY_ONLY
    warnings = [r for r in caplog.records if "REPLICATION CLIENT" in r.getMessage()]
    assert len(warnings) == 1
    assert "reads after a write go to the primary" in warnings[0].getMessage()


def test_no_binary_log_reads_on_the_primary() -> None:
    conn = FakeConnection({MODE: ("OFF", U1, 0)})
    assert commit_token(conn, {}, mariadb=False, version="9.7", node="db1") == PRIMARY_ONLY


def test_a_failed_query_never_leaves_the_session_without_a_token() -> None:
    conn = FakeConnection({MODE: ("OFF", U1, 1), "SHOW BINARY LOG STATUS": OSError("gone")})
    assert commit_token(conn, {}, mariadb=False, version="9.7", node="db1") == PRIMARY_ONLY


def _replica(name: str, source_uuid: str | None) -> Node:
    rep = Replication("db1:3306", 1, "Yes", True, source_uuid)
    return Node(name, None, Role.REPLICA, replication=rep)  # type: ignore[arg-type]


def test_a_binlog_position_is_waited_for_only_on_a_replica_of_its_primary() -> None:
    token = f"binlog:{U1}:binlog.000003:1574"
    assert unwaitable_reason(token, _replica("r1", U1)) is None
    assert "not from the writer" in str(unwaitable_reason(token, _replica("r1", U2)))
    assert "unknown" in str(unwaitable_reason(token, _replica("r1", None)))
    assert "unknown" in str(unwaitable_reason(token, None))
    assert unwaitable_reason(PRIMARY_ONLY, _replica("r1", U1)) is not None
    # GTIDs carry their own identity: no look-up at all.
    assert unwaitable_reason(f"{U2}:1-5", _replica("r1", None)) is None
    assert unwaitable_reason("0-1-5", None) is None


def test_may_wait_looks_the_replica_up_in_the_topology(caplog: pytest.LogCaptureFixture) -> None:
    topo = Topology((_replica("r1", U1), _replica("r2", U2)))
    token = f"binlog:{U1}:binlog.000003:1574"
    with caplog.at_level(logging.INFO, "rwsplit.consistency"):
        assert may_wait(token, "r1", topo)
        assert not may_wait(token, "r2", topo)
        assert not may_wait(token, "r2", topo)
        assert not may_wait(token, "gone", topo)
    assert sum("r2" in r.getMessage() for r in caplog.records) == 1  # said once


def test_wait_statements_by_token_kind() -> None:
    sql, params = wait_statement(
        f"binlog:{U1}:binlog.000003:1574", 0.25, mariadb=False, version="9.7.4"
    )
    assert sql == "SELECT SOURCE_POS_WAIT(%s, %s, %s)" and params == ("binlog.000003", 1574, 0.25)
    sql, params = wait_statement(f"binlog:{U1}:b.000001:4", 0, mariadb=False, version="8.0.20")
    assert sql.startswith("SELECT MASTER_POS_WAIT") and params[2] > 0  # never 0: forever
    assert wait_statement("0-1-5", 1.0, mariadb=True, version="")[0].startswith(
        "SELECT MASTER_GTID_WAIT"
    )
    assert (
        "WAIT_FOR_EXECUTED_GTID_SET" in wait_statement(f"{U1}:5", 1, mariadb=False, version="")[0]
    )
    b = f"binlog:{U1}:f.000001:4"
    assert wait_reached(b, 0) and wait_reached(b, 12)
    assert not wait_reached(b, -1) and not wait_reached(b, None)  # timeout, SQL thread stopped
    assert wait_reached("0-1-5", 0) and not wait_reached("0-1-5", -1)


def test_binlog_tokens_parse_and_order() -> None:
    t = BinlogToken.parse(f"binlog:{U1.upper()}:host-bin.000010:4")
    assert t is not None and t.source_uuid == U1
    assert t.covers(BinlogToken(U1, "host-bin.000009", 999999))
    assert not t.covers(BinlogToken(U2, "host-bin.000009", 1))
    assert not t.covers(BinlogToken(U1, "other-bin.000001", 1))
    for bad in ("binlog:", f"binlog:{U1}", f"binlog:{U1}:f:x", "0-1-1", PRIMARY_ONLY):
        assert BinlogToken.parse(bad) is None


def test_mysql_own_gtid_from_the_ok_packet() -> None:
    gtid = f"{U1}:42".encode()
    data = b"\x00" + bytes([len(gtid)]) + gtid  # encoding 0, lenenc GTIDs
    state = b"\x03" + bytes([len(data)]) + data  # SESSION_TRACK_GTIDS
    rest = b"\x00" + bytes([len(state)]) + state  # empty info, then the state
    assert last_gtid_from_ok(0x4000, rest) == f"{U1}:42"
    assert last_gtid_from_ok(0x0000, rest) is None  # no SERVER_SESSION_STATE_CHANGED


# ---------------------------------------------------------------------------------- the family


def test_promotion_without_gtids_resets_the_binary_log_by_version() -> None:
    off = NodeState(1, "9.7.4", True, True, MySQLGtid(""), MySQLGtid(""), "", None, gtid_mode="OFF")
    on = NodeState(1, "9.7.4", True, True, MySQLGtid(""), MySQLGtid(""), "", None)
    assert "RESET BINARY LOGS AND GTIDS" in [s.sql for s in MySQL("9.7.4").promote(off)]
    assert "RESET MASTER" in [s.sql for s in MySQL("8.0.36").promote(off)]
    assert not any("RESET BINARY" in s.sql or "MASTER" in s.sql for s in MySQL().promote(on))


def test_point_at_position_masks_the_password() -> None:
    stmts = MySQL("9.7.4").point_at_position("db2", 3306, "repl", "s3cret", "binlog.000001", 4)
    shown = " ; ".join(s.display() for s in stmts)
    assert "s3cret" not in shown and "'***'" in shown
    assert stmts[1].sql == "RESET REPLICA"
    assert "SOURCE_AUTO_POSITION = 0, SOURCE_LOG_FILE = 'binlog.000001', SOURCE_LOG_POS = 4" in (
        stmts[2].display()
    )


def test_semi_sync_switch_named_by_the_loaded_plugin() -> None:
    rows = [
        {"Variable_name": "rpl_semi_sync_source_enabled", "Value": "OFF"},
        {"Variable_name": "rpl_semi_sync_replica_enabled", "Value": "ON"},
    ]
    semi = MySQL().parse_semi_sync(rows)
    assert semi == SemiSync("rpl_semi_sync_source_enabled", source_on=False, replica_on=True)
    assert semi.source(True) == Statement("SET GLOBAL rpl_semi_sync_source_enabled = ON")
    assert semi.source(False) is None  # off already
    none = MySQL().parse_semi_sync([])  # no plugin loaded
    assert none == SemiSync() and none.source(True) is None


def test_probe_state_reads_gtid_mode_and_log_replica_updates() -> None:
    variables = {
        "server_id": 2,
        "version": "9.7.4",
        "read_only": 1,
        "super_read_only": 0,
        "executed": "",
        "server_uuid": U2.upper(),
        "gtid_mode": "OFF",
        "log_bin": 1,
        "log_replica_updates": 0,
        "applier_lag": "0.250000",
    }
    status = {
        "Source_Host": "db1",
        "Source_Port": 3306,
        "Replica_IO_Running": "Yes",
        "Replica_SQL_Running": "Yes",
        "Seconds_Behind_Source": 0,
        "Source_UUID": U1.upper(),
        "Source_Log_File": "binlog.000002",
        "Read_Source_Log_Pos": 900,
        "Relay_Source_Log_File": "binlog.000002",
        "Exec_Source_Log_Pos": 800,
    }
    state = MySQL("9.7.4").parse_state(variables, [status])
    assert not state.gtids and state.log_replica_updates is False and state.server_uuid == U2
    assert state.applier_lag == 0.25
    rs = state.replica
    assert rs is not None and rs.source_uuid == U1
    assert (rs.read_file, rs.read_pos, rs.exec_file, rs.exec_pos) == (
        "binlog.000002",
        900,
        "binlog.000002",
        800,
    )
    assert "@@log_slave_updates" in MySQL("8.0.25").variables_sql
    assert "@@log_replica_updates" in MySQL("8.0.26").variables_sql


# ---------------------------------------------------------------------------------- failover


def _state(
    exec_file: str, exec_pos: int, *, gtid_mode: str = "OFF", lru: bool = False
) -> NodeState:
    rs = ReplicaStatus("db1", 3306, "No", True, None, exec_file=exec_file, exec_pos=exec_pos)
    g = MySQLGtid("")
    return NodeState(
        2, "9.7.4", True, False, g, g, "", rs, gtid_mode=gtid_mode, log_replica_updates=lru
    )


def test_the_furthest_replica_is_promoted_preferred_among_equals() -> None:
    options = fo.FailoverOptions("repl", "pw", preferred=("c",), never_promote=("d",))
    candidates = {
        "a": _state("binlog.000002", 9000),
        "b": _state("binlog.000003", 4),
        "c": _state("binlog.000003", 4),
        "d": _state("binlog.000004", 4),  # furthest, but never promoted
    }
    assert fo._choose(candidates, options, ["a", "b", "c", "d"], positional=True) == "c"
    options = fo.FailoverOptions("repl", "pw", never_promote=("d",))
    assert fo._choose(candidates, options, ["a", "b", "c", "d"], positional=True) == "b"


def test_gtids_off_with_log_replica_updates_is_refused_before_anything() -> None:
    states = {"old": None, "a": _state("b.000001", 4, lru=True), "b": _state("b.000001", 4)}
    with pytest.raises(FailoverError, match=r"log_replica_updates=OFF.*gtid_mode=ON"):
        fo._by_position(states, {"old"})
    mixed = {"a": _state("b.000001", 4, gtid_mode="ON"), "b": _state("b.000001", 4)}
    with pytest.raises(FailoverError, match="gtid_mode differs"):
        fo._by_position(mixed, set())
    assert fo._by_position({"a": _state("b.000001", 4)}, set())
    assert not fo._by_position({"a": _state("b.000001", 4, gtid_mode="ON")}, set())
