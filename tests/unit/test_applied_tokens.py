"""The process's knowledge of what replicas applied: which causal waits it may skip."""

from __future__ import annotations

import pytest

from rwsplit import Cluster
from rwsplit.routing.consistency import AppliedTokens
from rwsplit.topology.model import Role


def test_equal_or_older_of_the_same_domain_and_server_is_covered() -> None:
    a = AppliedTokens()
    a.record("r1", "0-1-10")
    assert a.covers("r1", "0-1-10")
    assert a.covers("r1", "0-1-3")
    assert not a.covers("r1", "0-1-11")
    assert not a.covers("r1", "0-2-3")  # another server (a failover): not assumed
    assert not a.covers("r1", "1-1-3")  # another domain: applied independently
    assert not a.covers("r2", "0-1-3")  # another replica


def test_a_list_is_covered_only_entirely() -> None:
    a = AppliedTokens()
    a.record("r1", "0-1-10,1-5-7")
    assert a.covers("r1", "0-1-9,1-5-7")
    assert not a.covers("r1", "0-1-9,1-5-8")
    a.record("r1", "0-1-4")  # an older wait never moves the position back
    assert a.covers("r1", "0-1-10")


@pytest.mark.parametrize(
    "token",
    ["3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", "0-1", "0-1-x", "", "0-1-5,"],
)
def test_what_is_not_a_mariadb_gtid_is_never_covered(token: str) -> None:
    a = AppliedTokens()
    a.record("r1", token)
    a.record("r1", "0-1-100")
    assert not a.covers("r1", token)


def test_forget() -> None:
    a = AppliedTokens()
    a.record("r1", "0-1-10")
    a.record("r2", "0-1-10")
    a.forget("r1")
    assert not a.covers("r1", "0-1-1") and a.covers("r2", "0-1-1")
    a.forget()
    assert not a.covers("r2", "0-1-1")


def _cluster() -> Cluster:
    return Cluster(
        "mysql+pymysql://u:p@db1/app",
        ["mysql+pymysql://u:p@db2/app", "mysql+pymysql://u:p@db3/app"],
    )


def test_a_replica_marked_down_is_forgotten() -> None:
    with _cluster() as c:
        c._applied.record("db2:3306", "0-1-5")
        c._applied.record("db3:3306", "0-1-5")
        c.mark_down("db2:3306", "read failed")
        assert not c._applied.covers("db2:3306", "0-1-5")
        assert c._applied.covers("db3:3306", "0-1-5")


def test_a_new_primary_forgets_everything() -> None:
    with _cluster() as c:
        c._applied.record("db3:3306", "0-1-5")
        t = c.topology
        promoted = [
            t.node("db1:3306").evolve(role=Role.REPLICA),
            t.node("db2:3306").evolve(role=Role.PRIMARY, read_only=False),
        ]
        c.publish(t.with_nodes(promoted))
        assert c.topology.primary is not None and c.topology.primary.name == "db2:3306"
        assert not c._applied.covers("db3:3306", "0-1-5")


def test_knowledge_expires() -> None:
    now = [100.0]
    a = AppliedTokens(clock=lambda: now[0])
    a.record("r1", "0-1-10")
    now[0] += AppliedTokens.MAX_AGE - 0.1
    assert a.covers("r1", "0-1-10")
    now[0] += 0.2
    assert not a.covers("r1", "0-1-10")  # too old: wait again
    a.record("r1", "0-1-8")  # an older wait does not refresh the newer position's age
    assert not a.covers("r1", "0-1-10")
    a.record("r1", "0-1-10")
    assert a.covers("r1", "0-1-10")


def test_a_probed_position_covers_older_tokens_of_healthy_replicas_only() -> None:
    with _cluster() as c:
        t = c.topology
        probed = [
            t.node("db2:3306").evolve(gtid_position="0-1-9,1-2-3"),
            t.node("db3:3306").evolve(gtid_position="0-1-9", healthy=False, error="down"),
        ]
        c.publish(t.with_nodes(probed))
        assert c._applied.covers("db2:3306", "0-1-9")
        assert c._applied.covers("db2:3306", "0-1-7,1-2-3")
        assert not c._applied.covers("db2:3306", "0-1-10")  # newer than the probe saw
        assert not c._applied.covers("db3:3306", "0-1-5")  # unhealthy: not trusted
        back = [c.topology.node("db1:3306").evolve(role=Role.REPLICA)]
        back.append(c.topology.node("db2:3306").evolve(role=Role.PRIMARY, read_only=False))
        c.publish(c.topology.with_nodes(back))
        assert not c._applied.covers("db2:3306", "0-1-1")  # a new primary: nothing carries
