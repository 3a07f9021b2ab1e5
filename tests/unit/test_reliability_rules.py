"""Rules of issue 17's reliability fixes, without a server: which errors prove a live
server, and which replicas' evidence keeps a failover from running."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
from rwsplit._dialect import MariaDB, NodeState
from rwsplit.failover import _check_replicas_lost_it

from rwsplit import FailoverError
from rwsplit.topology.probe import server_answered

D = MariaDB()


def replica_of(
    host: str = "db1", port: int = 3306, *, io: str = "Yes", errno: int = 0, source_id: int = 1
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
        }
    ]
    variables = {"server_id": 2, "version": "10.11.6-MariaDB", "read_only": 1}
    return D.parse_state(dict(variables, executed="0-1-5", replica_applied="0-1-5"), status)


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
