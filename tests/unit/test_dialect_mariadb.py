"""MariaDB replication SQL, on output recorded from the sandbox's MariaDB 10.11."""

from __future__ import annotations

import pytest

from rwsplit.servers import MariaDB, MariaDBGtid, Statement

# SHOW SLAVE STATUS of a sandbox replica (MariaDB 10.11.19), abridged.
STATUS = {
    "Slave_IO_State": "Waiting for master to send event",
    "Master_Host": "127.0.0.1",
    "Master_User": "repl",
    "Master_Port": 38127,
    "Connect_Retry": 1,
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Last_Errno": 0,
    "Seconds_Behind_Master": 0,
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Master_Server_Id": 1,
    "Using_Gtid": "Slave_Pos",
    "Gtid_IO_Pos": "0-1-9",
    "Slave_SQL_Running_State": "Slave has read all relay log; waiting for more updates",
}
# The same replica right after its primary was killed with SIGKILL.
LOST = dict(
    STATUS,
    Slave_IO_Running="Connecting",
    Seconds_Behind_Master=None,
    Last_IO_Errno=2003,
    Last_IO_Error="error reconnecting to master 'repl@127.0.0.1:38127' - retry-time: 1  "
    "maximum-retries: 100000  message: Can't connect to server on '127.0.0.1' "
    '(111 "Connection refused")',
)
VARIABLES = {
    "server_id": 3,
    "version": "10.11.19-MariaDB-0+deb12u1-log",
    "read_only": 1,
    "executed": "0-1-9",
    "own_binlog": "",
    "binlog_state": "",
    "replica_applied": "0-1-9",
    "flush_log_at_trx_commit": 2,
}


def test_parse_replica_and_lost_source() -> None:
    d = MariaDB()
    state = d.parse_state(VARIABLES, [STATUS])
    assert state.replica is not None and state.replica.io_connected
    assert state.replica.source == "127.0.0.1:38127"
    assert state.replica.received == "0-1-9"
    lost = d.parse_state(VARIABLES, [LOST])
    assert lost.replica is not None and not lost.replica.io_connected
    assert lost.replica.last_io_errno == 2003


def test_gtid_positions_compare_per_domain() -> None:
    a = MariaDBGtid("0-1-100,1-2-5")
    assert a.contains(MariaDBGtid("0-3-100"))  # seq numbers, whatever the server id
    assert not a.contains(MariaDBGtid("0-1-101"))
    assert not a.contains(MariaDBGtid("2-1-1"))
    assert a.progress == 105
    assert MariaDBGtid("0-1-9").merged(MariaDBGtid("0-2-12,1-1-1")).text == "0-2-12,1-1-1"
    with pytest.raises(ValueError, match="not a MariaDB GTID"):
        MariaDBGtid("0-1")


def test_promote_seeds_the_binlog_state_with_what_was_applied() -> None:
    d = MariaDB()
    state = d.parse_state(VARIABLES, [STATUS])
    assert [s.display() for s in d.promote(state)] == [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL innodb_flush_log_at_trx_commit = 1",
        "FLUSH LOCAL ENGINE LOGS",
        "SET GLOBAL gtid_binlog_state = '0-1-9'",
        "SET GLOBAL innodb_flush_log_at_trx_commit = 2",
        "SET GLOBAL read_only = OFF",
    ]


def test_promote_resets_a_binlog_that_has_gtids() -> None:
    d = MariaDB()
    state = d.parse_state(
        dict(VARIABLES, own_binlog="0-3-4", binlog_state="0-3-4", flush_log_at_trx_commit=1),
        [STATUS],
    )
    shown = [s.display() for s in d.promote(state)]
    assert shown[2:] == [
        "FLUSH LOCAL ENGINE LOGS",
        "RESET MASTER",
        "FLUSH LOCAL ENGINE LOGS",
        "SET GLOBAL gtid_binlog_state = '0-1-9'",
        "SET GLOBAL read_only = OFF",
    ]


def test_promote_again_after_a_crash_is_minimal() -> None:
    # Half-promoted already: replication reset, binlog state seeded, still read-only.
    d = MariaDB()
    state = d.parse_state(dict(VARIABLES, own_binlog="0-1-9", binlog_state="0-1-9"), [])
    assert [s.display() for s in d.promote(state)] == ["SET GLOBAL read_only = OFF"]


def test_point_at_a_former_primary_takes_its_binlog_position() -> None:
    d = MariaDB()
    old_primary = d.parse_state(
        dict(VARIABLES, read_only=0, own_binlog="0-1-20", executed="0-1-20"), []
    )
    shown = [s.display() for s in d.point_at(old_primary, "127.0.0.1", 3307, "repl", "S3cret!")]
    assert shown == [
        "STOP SLAVE",
        "SET GLOBAL gtid_slave_pos = '0-1-20'",
        "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 3307, "
        "MASTER_USER = 'repl', MASTER_PASSWORD = '***', MASTER_CONNECT_RETRY = 1, "
        "MASTER_USE_GTID = slave_pos",
    ]
    replica = d.parse_state(VARIABLES, [STATUS])
    assert len(d.point_at(replica, "h", 1, "u", "p")) == 2  # a replica keeps gtid_slave_pos


def test_statement_display_escapes_and_masks() -> None:
    s = Statement("SELECT %s, %s, %s", ("it's", 3, "pw"), frozenset({2}))
    assert s.display() == "SELECT 'it\\'s', 3, '***'"
    assert "pw'" not in repr(s)


def test_promote_keeps_a_binlog_that_already_holds_the_replicated_history() -> None:
    # A replica running with log-slave-updates: its binlog has every event it applied, which
    # lagging replicas may still need: no RESET MASTER.
    d = MariaDB()
    state = d.parse_state(dict(VARIABLES, own_binlog="0-1-9", binlog_state="0-1-9,0-3-2"), [STATUS])
    assert [s.display() for s in d.promote(state)] == [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL read_only = OFF",
    ]
