"""Rules of issue 17's reliability fixes, without a server: which errors prove a live
server, and which replicas' evidence keeps a failover from running."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
from rwsplit.failover import (
    _check_replicas_lost_it,
    _cluster_semi_sync,
    _semi_sync_to_turn_on,
    _with_semi_sync,
    fence_statements,
    semi_sync_source_off,
)
from rwsplit.monitor import ProbeResult

from rwsplit import Cluster, FailoverError, FailoverOptions, Monitor
from rwsplit.servers import MariaDB, MySQL, NodeState, SemiSync, Statement
from rwsplit.topology.probe import server_answered

D = MariaDB()


def replica_of(
    host: str = "db1",
    port: int = 3306,
    *,
    io: str = "Yes",
    errno: int = 0,
    source_id: int = 1,
    applied: str = "0-1-5",
    received: str = "0-1-5",
    sql_state: str = "Slave has read all relay log; waiting for more updates",
) -> NodeState:
    status: list[dict[str, Any]] = [
        {
            "Master_Host": host,
            "Master_Port": port,
            "Slave_IO_Running": io,
            "Slave_SQL_Running": "Yes",
            "Seconds_Behind_Master": 0,
            "Last_IO_Errno": errno,
            "Last_IO_Error": "Too many connections" if errno == 1040 else "",
            "Master_Server_Id": source_id,
            "Gtid_IO_Pos": received,
            "Slave_SQL_Running_State": sql_state,
        }
    ]
    variables = {"server_id": 2, "version": "10.11.6-MariaDB", "read_only": 1}
    return D.parse_state(dict(variables, executed=applied, replica_applied=applied), status)


@pytest.mark.parametrize("code", [1040, 1203, 1226, 1129, 1130, 1045, 1044, 1927])
def test_errors_only_a_live_server_sends(code: int) -> None:
    assert server_answered(pymysql.err.OperationalError(code, "refused"))


@pytest.mark.parametrize("code", [2003, 2006, 2013, 1053])
def test_errors_a_dead_or_unreachable_server_gives(code: int) -> None:
    assert not server_answered(pymysql.err.OperationalError(code, "gone"))
    assert not server_answered(TimeoutError("timed out"))
    assert not server_answered(None)


def test_a_replica_refused_by_the_primary_saw_it_alive() -> None:
    states = {"db1:3306": None, "db2:3306": replica_of(io="Connecting", errno=1040)}
    with pytest.raises(FailoverError, match="alive"):
        _check_replicas_lost_it(states, "db1:3306")
    lost = {"db1:3306": None, "db2:3306": replica_of(io="Connecting", errno=2003)}
    _check_replicas_lost_it(lost, "db1:3306")


def test_a_streaming_replica_is_matched_by_server_id_too() -> None:
    # The replica names the primary by another address (an IP, a DNS alias): its server id
    # still says it streams from the primary.
    states = {"db1:3306": None, "db2:3306": replica_of("10.0.0.1", source_id=1)}
    _check_replicas_lost_it(states, "db1:3306")  # name unknown, no id: not matched
    with pytest.raises(FailoverError, match="partition"):
        _check_replicas_lost_it(states, "db1:3306", old_server_id=1)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster("mysql+pymysql://u:pw@db1/app", ["mysql+pymysql://u:pw@db2/app"]) as c:
        yield c


def test_a_busy_primary_is_never_suspect(cluster: Cluster) -> None:
    m = Monitor(cluster, failure_threshold=1)
    m._primary_name = "db1:3306"
    busy = {
        "db1:3306": ProbeResult("db1:3306", None, "1040: Too many connections", 0, answered=True),
        "db2:3306": ProbeResult("db2:3306", replica_of(io="Connecting", errno=2003), None, 0),
    }
    assert not m._primary_dead(busy)
    # Replicas refused by it (1040) saw it alive, whatever this process saw.
    refused = dict(busy)
    refused["db1:3306"] = ProbeResult("db1:3306", None, "2013: lost", 5)
    refused["db2:3306"] = ProbeResult("db2:3306", replica_of(io="Connecting", errno=1040), None, 0)
    assert not m._primary_dead(refused)
    refused["db2:3306"] = ProbeResult("db2:3306", replica_of(io="Preparing"), None, 0)
    assert not m._primary_dead(refused)  # connected, registering on a slow link


def test_a_busy_primary_after_a_failed_probe_takes_writes_again(cluster: Cluster) -> None:
    """A KILLed kept connection reads as lost (2013, MySQL): the primary leaves routing; the
    next probe refused for want of slots (1040) proves it alive: back in routing."""
    m = Monitor(cluster, failure_threshold=3)
    replica = ProbeResult("db2:3306", replica_of(), None, 0)
    lost = ProbeResult("db1:3306", None, "2013: lost", 1)
    m._publish({"db1:3306": lost, "db2:3306": replica})
    assert cluster.topology.primary is None
    refused = ProbeResult(
        "db1:3306", None, "1040: Too many connections", 0, answered=True, busy=True
    )
    m._publish({"db1:3306": refused, "db2:3306": replica})
    primary = cluster.topology.primary
    assert primary is not None and primary.name == "db1:3306" and primary.error is None


def test_replicas_still_receiving_veto_a_failover(cluster: Cluster) -> None:
    m = Monitor(cluster, failure_threshold=1)
    m._primary_name = "db1:3306"

    class _Probe:
        dialect = D

    m._probes["db2:3306"] = _Probe()  # type: ignore[assignment]

    def results(received: str) -> dict[str, ProbeResult]:
        lost = replica_of(io="Connecting", errno=2003, received=received)
        return {
            "db1:3306": ProbeResult("db1:3306", None, "2013: timed out", 3),
            "db2:3306": ProbeResult("db2:3306", lost, None, 0),
        }

    m._note_received(results("0-1-5"))
    m._note_received(results("0-1-9"))  # it received more since the last round: alive
    assert not m._primary_dead(results("0-1-9"))
    m._note_received(results("0-1-9"))  # nothing new
    assert m._primary_dead(results("0-1-9"))
    m._note_received(results("0-1-7"))  # a restarted IO thread went back: not progress
    assert m._primary_dead(results("0-1-7"))


def test_a_replica_whose_applied_position_stops_is_stuck(cluster: Cluster) -> None:
    m = Monitor(cluster, interval=0.1)
    waiting = "Waiting for semi-sync ACK from slave"
    behind = replica_of(applied="0-1-5", received="0-1-9", sql_state=waiting)
    assert m._sql_thread_stuck("db2:3306", behind, now=100.0) is None
    assert m._sql_thread_stuck("db2:3306", behind, now=100.5) is None  # not for long yet
    why = m._sql_thread_stuck("db2:3306", behind, now=101.2)
    assert why is not None and "SQL thread is stuck" in why
    moving = replica_of(applied="0-1-6", received="0-1-9", sql_state=waiting)
    assert m._sql_thread_stuck("db2:3306", moving, now=101.3) is None
    idle = replica_of(applied="0-1-9", received="0-1-9")  # nothing to apply: not stuck
    assert m._sql_thread_stuck("db2:3306", idle, now=110.0) is None
    assert m._sql_thread_stuck("db2:3306", idle, now=120.0) is None


def test_a_slow_sql_thread_is_lag_not_stuck(cluster: Cluster) -> None:
    """Blocked on a lock or a long transaction: max_replica_lag decides, not this rule."""
    m = Monitor(cluster, interval=0.1)
    locked = replica_of(
        applied="0-1-5", received="0-1-9", sql_state="Waiting for table metadata lock"
    )
    assert m._sql_thread_stuck("db2:3306", locked, now=100.0) is None
    assert m._sql_thread_stuck("db2:3306", locked, now=130.0) is None


def test_a_worker_of_a_multi_threaded_applier_waiting_for_an_ack_is_stuck(
    cluster: Cluster,
) -> None:
    """MySQL's applier is multi-threaded by default: its coordinator "has read all relay
    log" while a worker waits for the ACK; the process list says so."""
    m = Monitor(cluster, interval=0.1)
    asked: list[str] = []
    threads = [
        {"User": "system user", "State": "Replica has read all relay log; waiting for more"},
        {"User": "system user", "State": "Waiting for semi-sync ACK from replica"},
        {"User": "app", "State": "Waiting for semi-sync ACK from replica"},  # not the applier
    ]

    class _Probe:
        dialect = D

        def query(self, sql: str) -> list[dict[str, Any]]:
            asked.append(sql)
            return threads

    m._probes["db2:3306"] = _Probe()  # type: ignore[assignment]
    behind = replica_of(applied="0-1-5", received="0-1-9")
    assert m._sql_thread_stuck("db2:3306", behind, now=100.0) is None
    assert asked == []  # only once the position stood still
    why = m._sql_thread_stuck("db2:3306", behind, now=101.2)
    assert why is not None and "Waiting for semi-sync ACK from replica" in why
    assert asked == ["SHOW PROCESSLIST"]
    threads[1]["State"] = "Waiting for table metadata lock"  # slow, not stuck: lag
    assert m._sql_thread_stuck("db2:3306", behind, now=102.0) is None


def test_semi_sync_is_turned_on_before_the_promoted_node_takes_writes() -> None:
    promote = [Statement("STOP SLAVE"), Statement("SET GLOBAL read_only = OFF")]
    off = SemiSync("rpl_semi_sync_master_enabled", source_on=False)
    assert [s.sql for s in _with_semi_sync(promote, D, off)] == [
        "STOP SLAVE",
        "SET GLOBAL rpl_semi_sync_master_enabled = ON",
        "SET GLOBAL read_only = OFF",
    ]
    assert _with_semi_sync(promote, D, None) == promote
    mysql = MySQL("9.7.4")
    promote = mysql.promote(replica_of())  # ends with super_read_only / read_only OFF
    source = SemiSync("rpl_semi_sync_source_enabled", source_on=False, replica_on=True)
    assert [s.sql for s in _with_semi_sync(promote, mysql, source)][-3:] == [
        "SET GLOBAL rpl_semi_sync_source_enabled = ON",
        "SET GLOBAL super_read_only = OFF",
        "SET GLOBAL read_only = OFF",
    ]


class _SemiSyncProbe:
    """A node probe that answers the semi-sync questions from *switches* and *waiting*."""

    def __init__(self, dialect: Any, switches: dict[str, str], waiting: int = 0) -> None:
        self.name = "db1:3306"
        self.dialect = dialect
        self.switches = switches
        self.waiting = waiting

    def query(self, sql: str) -> list[dict[str, Any]]:
        if sql == self.dialect.semi_sync_sql:
            return [{"Variable_name": k, "Value": v} for k, v in self.switches.items()]
        if "wait_sessions" in sql:
            return [{"Variable_name": sql.split("'")[1], "Value": str(self.waiting)}]
        raise AssertionError(sql)


MARIADB_ON = {"rpl_semi_sync_master_enabled": "ON", "rpl_semi_sync_slave_enabled": "ON"}
MYSQL_ON = {"rpl_semi_sync_source_enabled": "ON", "rpl_semi_sync_replica_enabled": "ON"}
OLD_MYSQL_ON = {"rpl_semi_sync_master_enabled": "ON", "rpl_semi_sync_slave_enabled": "ON"}


@pytest.mark.parametrize(
    "dialect, switches, off, read_only",
    [
        (D, MARIADB_ON, "rpl_semi_sync_master_enabled", "read_only"),
        (MySQL("9.7.4"), MYSQL_ON, "rpl_semi_sync_source_enabled", "super_read_only"),
        # MySQL 8.0.26+ with the old plugins loaded: the name the server has, not the version's.
        (MySQL("8.4.0"), OLD_MYSQL_ON, "rpl_semi_sync_master_enabled", "super_read_only"),
    ],
)
def test_fencing_turns_the_semi_sync_source_side_off_for_good(
    dialect: Any, switches: dict[str, str], off: str, read_only: str, caplog: Any
) -> None:
    probe = _SemiSyncProbe(dialect, switches, waiting=2)
    assert [s.sql for s in fence_statements(probe)] == [  # type: ignore[arg-type]
        f"SET GLOBAL {off} = OFF",
        f"SET GLOBAL {read_only} = ON",
    ]
    assert "2 commits wait for a semi-sync ACK" in caplog.text
    # Source side off already, or no semi-sync at all: only read-only.
    quiet = dict(switches, **{off: "OFF"})
    for probe in (_SemiSyncProbe(dialect, quiet), _SemiSyncProbe(dialect, {})):
        assert [s.sql for s in fence_statements(probe)] == [  # type: ignore[arg-type]
            f"SET GLOBAL {read_only} = ON"
        ]
        assert semi_sync_source_off(probe) == []  # type: ignore[arg-type]


def test_whether_the_cluster_ran_semi_sync(cluster: Cluster) -> None:
    """Options first, then the monitor's last read of the old primary, then whether the
    node being promoted acknowledged as a semi-sync replica (same rules on both servers)."""
    acks = _SemiSyncProbe(MySQL(), {"rpl_semi_sync_replica_enabled": "ON"})
    silent = _SemiSyncProbe(D, {"rpl_semi_sync_slave_enabled": "OFF"})
    user = FailoverOptions("repl", "pw")
    assert _cluster_semi_sync(cluster, user, acks)  # type: ignore[arg-type]
    assert not _cluster_semi_sync(cluster, user, silent)  # type: ignore[arg-type]
    forced = FailoverOptions("repl", "pw", semi_sync=False)
    assert not _cluster_semi_sync(cluster, forced, acks)  # type: ignore[arg-type]
    m = Monitor(cluster)
    cluster.monitor = m
    m._primary_semi_sync = True
    assert _cluster_semi_sync(cluster, user, silent)  # type: ignore[arg-type]
    m._primary_semi_sync = False
    assert not _cluster_semi_sync(cluster, user, acks)  # type: ignore[arg-type]


def test_no_semi_sync_source_side_to_turn_on_is_said(caplog: Any) -> None:
    no_plugin = _SemiSyncProbe(MySQL(), {})
    assert _semi_sync_to_turn_on(no_plugin, True, "the cluster ran semi-sync") is None  # type: ignore[arg-type]
    assert "load the semisync_source plugin" in caplog.text
    on = _SemiSyncProbe(MySQL(), MYSQL_ON)
    assert _semi_sync_to_turn_on(on, True, "x") is None  # type: ignore[arg-type]  # on already
    off = _SemiSyncProbe(MySQL(), dict(MYSQL_ON, rpl_semi_sync_source_enabled="OFF"))
    semi = _semi_sync_to_turn_on(off, True, "x")  # type: ignore[arg-type]
    assert semi is not None and semi.source_switch == "rpl_semi_sync_source_enabled"
    assert _semi_sync_to_turn_on(off, False, "x") is None  # type: ignore[arg-type]
