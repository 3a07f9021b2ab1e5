"""The member list (rwsplit.cluster_nodes) and how the failover command reports its outcome."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url

from rwsplit.cli._cluster import _conclude, _primary_of
from rwsplit.topology._ledger import member_statements, record_members
from rwsplit.topology.failover import FailoverResult
from rwsplit.topology.model import Node, Replication, Role, Topology
from rwsplit.topology.probe import NodeProbe


def test_member_statements_add_and_remove() -> None:
    stmts = member_statements(["db2:3306", "db3:3307"], ["db1:3306"], "rwsplit")
    assert [s.sql.split(" (")[0] for s in stmts] == [
        "CREATE DATABASE IF NOT EXISTS `rwsplit`",
        "CREATE TABLE IF NOT EXISTS `rwsplit`.`cluster_nodes`",
        "DELETE FROM `rwsplit`.`cluster_nodes` WHERE host = %s AND port = %s",
        "INSERT IGNORE INTO `rwsplit`.`cluster_nodes`",
    ]
    assert stmts[2].params == ("db1", 3306)
    assert stmts[3].params == ("db2", 3306, "db3", 3307)


class _FakeProbe(NodeProbe):
    """Stands in for a NodeProbe on the primary: a member table and the statements run."""

    name = "db1:3306"

    def __init__(self, rows: list[tuple[str, int]]) -> None:  # no connection
        self.rows = rows
        self.ran: list[str] = []

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        if sql.startswith("SELECT host, port"):
            return [{"host": h, "port": p} for h, p in self.rows]
        self.ran.append(sql.split(" ")[0])
        return []


def test_record_members_writes_only_a_change() -> None:
    probe = _FakeProbe([("db1", 3306), ("db2", 3306)])
    assert not record_members(probe, ["db1:3306", "db2:3306"])
    assert probe.ran == []  # no write (no binlog event) when nothing changed
    assert record_members(probe, ["db1:3306", "db2:3306", "db3:3306"])
    assert probe.ran == ["CREATE", "CREATE", "INSERT"]


def _node(name: str, role: Role, healthy: bool = True, source: str | None = None) -> Node:
    repl = Replication(source, None, "No", True) if source else None
    url = make_url(f"mysql+pymysql://u@{name}/db")
    return Node(name, url, role, healthy=healthy, replication=repl)


def test_the_dead_primary_is_the_source_the_replicas_name_not_a_dead_sibling() -> None:
    topology = Topology(
        (
            _node("db2:3306", Role.REPLICA, source="db1:3306"),
            _node("db3:3306", Role.UNKNOWN, healthy=False),  # a sibling, down too
            _node("db1:3306", Role.UNKNOWN, healthy=False),
        )
    )
    assert _primary_of(topology, None).name == "db1:3306"


def test_a_finished_rerun_does_not_claim_a_promotion() -> None:
    r = FailoverResult("failover", "db2:3306", "db2:3306", repointed=["db3:3306"])
    assert r.describe().splitlines() == [
        "failover: db2:3306 was already the primary; finished the job",
        "replicas repointed: db3:3306",
    ]
    r.timeline["promoted"] = 1.0
    assert r.describe().splitlines()[0] == "failover: promoted db2:3306 (old primary db2:3306)"


def test_exit_code_4_names_the_replicas_left_behind(capsys: pytest.CaptureFixture[str]) -> None:
    r = FailoverResult("failover", "db1:3306", "db2:3306", dry_run=True)
    r.skipped.append(("db3:3306", "unreachable; repoint it when it is back"))
    assert _conclude(r, Topology(()), 1.0) == 4
    err = capsys.readouterr().err
    assert "failover would be incomplete: db3:3306 does not follow db2:3306" in err


def test_dry_run_with_nothing_to_do_plans_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    r = FailoverResult("failover", "db1:3306", "db1:3306", dry_run=True, nothing_to_do=True)
    assert _conclude(r, Topology(()), 1.0) == 0
    out, err = capsys.readouterr()
    assert out == "nothing to do: db1:3306 is the primary\n"
    assert "planned" not in err and "dry run: nothing to do, nothing was changed" in err
