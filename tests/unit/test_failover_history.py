"""Can a returning old primary follow the new one? (GTID history, no server needed.)"""

from __future__ import annotations

import pytest
from rwsplit.failover import FailoverOptions, _history_gap

from rwsplit.errors import ConfigurationError
from rwsplit.servers import MariaDBGtid, MySQLGtid, NodeState


def _maria(executed: str, binlog_state: str = "") -> NodeState:
    g = MariaDBGtid(executed)
    return NodeState(1, "10.11-MariaDB", False, False, g, g, binlog_state, None)


def _mysql(executed: str) -> NodeState:
    g = MySQLGtid(executed)
    return NodeState(1, "8.0", False, False, g, g, g.text, None)


def test_mariadb_same_sequence_number_from_another_server_is_errant() -> None:
    # The old primary (server 1) wrote 0-1-101 alone; the new primary (server 2) then wrote
    # 0-2-101...105. By number the new primary "contains" 0-1-101; by history it does not.
    new = _maria("0-2-105", "0-1-100,0-2-105")
    gap = _history_gap(_maria("0-1-101"), new, "db2:3306")
    assert gap is not None and "0-1-101" in gap and "errant" in gap
    assert _history_gap(_maria("0-1-100"), new, "db2:3306") is None
    assert _history_gap(_maria(""), new, "db2:3306") is None


def test_mariadb_unknown_domain_is_errant() -> None:
    new = _maria("0-2-105", "0-1-100,0-2-105")
    assert _history_gap(_maria("0-1-100,7-1-3"), new, "db2:3306") is not None


def test_mysql_uses_set_containment() -> None:
    u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    v = "4e11fa47-71ca-11e1-9e33-c80aa9429562"
    new = _mysql(f"{u}:1-100,{v}:1-5")
    assert _history_gap(_mysql(f"{u}:1-100"), new, "db2:3306") is None
    assert _history_gap(_mysql(f"{u}:1-101"), new, "db2:3306") is not None


def test_options_reject_a_bad_quorum_or_schema() -> None:
    with pytest.raises(ConfigurationError, match="quorum"):
        FailoverOptions("repl", "pw", quorum="half")
    with pytest.raises(ConfigurationError, match="ledger_schema"):
        FailoverOptions("repl", "pw", ledger_schema="a; DROP TABLE x")
