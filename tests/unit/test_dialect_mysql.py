"""MySQL 8 replication SQL, checked against output recorded from MySQL 8.0 servers."""

from __future__ import annotations

import pytest

from rwsplit.servers import MariaDB, MySQL, MySQLGtid, dialect_for_version
from rwsplit.topology import Role, role_of

UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
UUID_B = "8a94f357-aab4-11df-86ab-c80aa9429562"

# SHOW REPLICA STATUS on a MySQL 8.0.36 replica (one row, DictCursor), abridged to the
# columns a real server returns, in its order.
MYSQL8_REPLICA_STATUS = {
    "Replica_IO_State": "Waiting for source to send event",
    "Source_Host": "10.0.0.11",
    "Source_User": "repl",
    "Source_Port": 3306,
    "Connect_Retry": 60,
    "Source_Log_File": "binlog.000003",
    "Read_Source_Log_Pos": 8812,
    "Relay_Log_File": "relay.000004",
    "Relay_Log_Pos": 4190,
    "Relay_Source_Log_File": "binlog.000003",
    "Replica_IO_Running": "Yes",
    "Replica_SQL_Running": "Yes",
    "Replicate_Do_DB": "",
    "Last_Errno": 0,
    "Last_Error": "",
    "Skip_Counter": 0,
    "Exec_Source_Log_Pos": 8812,
    "Relay_Log_Space": 4613,
    "Until_Condition": "None",
    "Seconds_Behind_Source": 3,
    "Source_SSL_Verify_Server_Cert": "No",
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Source_Server_Id": 1,
    "Source_UUID": UUID_A,
    "SQL_Delay": 0,
    "SQL_Remaining_Delay": None,
    "Replica_SQL_Running_State": "Replica has read all relay log; waiting for more updates",
    "Source_Retry_Count": 86400,
    "Retrieved_Gtid_Set": f"{UUID_A}:1-42",
    "Executed_Gtid_Set": f"{UUID_A}:1-40,\n{UUID_B}:1-5",
    "Auto_Position": 1,
    "Channel_Name": "",
}

# The same replica after its source was killed: the IO thread is reconnecting.
MYSQL8_SOURCE_LOST = dict(
    MYSQL8_REPLICA_STATUS,
    Replica_IO_State="Reconnecting after a failed source event read",
    Replica_IO_Running="Connecting",
    Seconds_Behind_Source=None,
    Last_IO_Errno=2003,
    Last_IO_Error="error reconnecting to source 'repl@10.0.0.11:3306' - retry-time: 60 "
    "retries: 1 message: Can't connect to MySQL server on '10.0.0.11:3306' (111)",
)

# MySQL 8.0.22 and older name the columns after "master" / "slave".
MYSQL57_SLAVE_STATUS = {
    "Slave_IO_State": "Waiting for master to send event",
    "Master_Host": "db1",
    "Master_Port": 3307,
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "No",
    "Seconds_Behind_Master": None,
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 1062,
    "Last_SQL_Error": "Duplicate entry '1' for key 'PRIMARY'",
    "Retrieved_Gtid_Set": f"{UUID_A}:1-10",
    "Executed_Gtid_Set": f"{UUID_A}:1-9",
}

MYSQL8_VARIABLES_REPLICA = {
    "server_id": 2,
    "version": "8.0.36",
    "read_only": 1,
    "super_read_only": 1,
    "executed": f"{UUID_A}:1-40,\n{UUID_B}:1-5",
}
MYSQL8_VARIABLES_PRIMARY = {
    "server_id": 1,
    "version": "8.0.36-0ubuntu0.22.04.1",
    "read_only": 0,
    "super_read_only": 0,
    "executed": f"{UUID_A}:1-42,\n{UUID_B}:1-5",
}


def test_version_picks_the_dialect() -> None:
    assert isinstance(dialect_for_version("8.0.36-0ubuntu0.22.04.1"), MySQL)
    assert isinstance(dialect_for_version("10.11.6-MariaDB-0+deb12u1-log"), MariaDB)


def test_parse_mysql8_replica() -> None:
    d = MySQL()
    state = d.parse_state(MYSQL8_VARIABLES_REPLICA, [MYSQL8_REPLICA_STATUS])
    assert state.replica is not None
    assert state.replica.source == "10.0.0.11:3306"
    assert state.replica.io_connected and state.replica.sql_running
    assert state.replica.seconds_behind == 3
    assert state.replica.received == f"{UUID_A}:1-42"
    assert state.read_only and state.super_read_only and not state.writable
    assert state.executed.progress == 45
    assert role_of(state) is Role.REPLICA


def test_parse_mysql8_primary() -> None:
    state = MySQL().parse_state(MYSQL8_VARIABLES_PRIMARY, [])
    assert state.replica is None and state.writable
    assert role_of(state) is Role.PRIMARY


def test_super_read_only_alone_is_not_writable() -> None:
    variables = dict(MYSQL8_VARIABLES_PRIMARY, read_only="OFF", super_read_only="ON")
    state = MySQL().parse_state(variables, [])
    assert not state.writable
    assert role_of(state) is Role.UNKNOWN


def test_source_lost_is_seen() -> None:
    state = MySQL().parse_state(MYSQL8_VARIABLES_REPLICA, [MYSQL8_SOURCE_LOST])
    assert state.replica is not None
    assert not state.replica.io_connected
    assert state.replica.last_io_errno == 2003
    assert state.replica.seconds_behind is None


def test_old_column_names_still_parse() -> None:
    status = MySQL().parse_replica_status([MYSQL57_SLAVE_STATUS])
    assert status is not None
    assert status.source == "db1:3307"
    assert status.io_connected and not status.sql_running
    assert status.last_sql_errno == 1062


def test_reset_replica_leaves_an_empty_row_that_means_not_a_replica() -> None:
    # After RESET REPLICA (without ALL) MySQL still returns a row with an empty host.
    assert MySQL().parse_replica_status([dict(MYSQL8_REPLICA_STATUS, Source_Host="")]) is None


def test_mysql_gtid_sets() -> None:
    primary = MySQLGtid(MYSQL8_VARIABLES_PRIMARY["executed"])  # type: ignore[arg-type]
    replica = MySQLGtid(MYSQL8_VARIABLES_REPLICA["executed"])  # type: ignore[arg-type]
    assert primary.contains(replica) and not replica.contains(primary)
    assert primary.progress - replica.progress == 2
    assert MySQLGtid(f"{UUID_A}:1-5:7-9").contains(MySQLGtid(f"{UUID_A.upper()}:8"))
    assert not MySQLGtid(f"{UUID_A}:1-5:7-9").contains(MySQLGtid(f"{UUID_A}:5-7"))
    assert MySQLGtid("").progress == 0 and not MySQLGtid("")
    with pytest.raises(ValueError, match="not a MySQL GTID"):
        MySQLGtid("nonsense")


def test_mysql_statements() -> None:
    d = MySQL()
    assert d.stop_io_thread().sql == "STOP REPLICA IO_THREAD"
    assert d.start_replication().sql == "START REPLICA"
    assert d.reset_replication().sql == "RESET REPLICA ALL"
    wait = d.wait_for_gtid(f"{UUID_A}:1-42", 2.4)
    assert wait.sql == "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"
    assert wait.params == (f"{UUID_A}:1-42", 2)
    assert d.wait_succeeded(0) and not d.wait_succeeded(1)
    assert [s.sql for s in d.set_read_only(True)] == ["SET GLOBAL super_read_only = ON"]


def test_mysql_promote_and_repoint() -> None:
    d = MySQL()
    state = d.parse_state(MYSQL8_VARIABLES_REPLICA, [MYSQL8_REPLICA_STATUS])
    assert [s.display() for s in d.promote(state)] == [
        "STOP REPLICA",
        "RESET REPLICA ALL",
        "SET GLOBAL super_read_only = OFF",
        "SET GLOBAL read_only = OFF",
    ]
    shown = [s.display() for s in d.point_at(state, "10.0.0.12", 3306, "repl", "pw-Secret")]
    assert shown[0] == "STOP REPLICA"
    assert shown[1] == (
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '10.0.0.12', SOURCE_PORT = 3306, "
        "SOURCE_USER = 'repl', SOURCE_PASSWORD = '***', SOURCE_CONNECT_RETRY = 1, "
        # MySQL's default (10 retries) gives up on a source that is away ~10 s.
        "SOURCE_RETRY_COUNT = 31536000, GET_SOURCE_PUBLIC_KEY = 1, SOURCE_AUTO_POSITION = 1"
    )
    change = d.point_at(state, "10.0.0.12", 3306, "repl", "pw-Secret")[1]
    assert "pw-Secret" in change.params  # sent to the server as a bound parameter ...
    assert "pw-Secret" not in repr(change) + change.display()  # ... and shown nowhere
