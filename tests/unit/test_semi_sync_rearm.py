"""Semi-sync turned back on on a primary promoted without it: the decision, without a server.

A failover with no other replica promotes its node with the semi-sync source side off; the
monitor turns it back on once a semi-sync replica follows it, through the server's family
(MariaDB ``rpl_semi_sync_master_enabled``, MySQL ``rpl_semi_sync_source_enabled``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from rwsplit.monitor import ProbeResult

from rwsplit import Cluster, FailoverOptions, Monitor
from rwsplit.servers import MariaDB, MySQL, NodeState, ReplicationDialect
from rwsplit.topology._semi_sync import SemiSyncDebt, count_now, owes_semi_sync
from rwsplit.topology.failover import _cluster_semi_sync, _owe_semi_sync

P1, P2, R = "db1:3306", "db2:3306", "db3:3306"


# ------------------------------------------------------------------ the rules alone


@pytest.mark.parametrize(
    ("configured", "owed", "changed", "was_on", "now_on", "expected"),
    [
        # Promoted after a primary that waited for ACKs, and it does not: owed.
        (None, False, True, True, False, True),
        # A failover of this process said so (whatever the monitor saw before).
        (None, True, True, None, False, True),
        (None, True, False, False, False, True),  # still off at a later read: still owed
        # A cluster that never ran semi-sync: never.
        (None, False, True, False, False, False),
        (None, False, True, None, False, False),
        # An operator turned it off on the same primary: left alone.
        (None, False, False, True, False, False),
        # On already, or never wanted.
        (None, True, False, False, True, False),
        (False, True, True, True, False, False),
        # Configured: every primary runs it.
        (True, False, False, None, False, True),
        # Unreadable (or no source side) now: keep what was known.
        (None, True, False, False, None, True),
        (None, False, True, True, None, False),
    ],
)
def test_owes_semi_sync(
    configured: bool | None,
    owed: bool,
    changed: bool,
    was_on: bool | None,
    now_on: bool | None,
    expected: bool,
) -> None:
    got = owes_semi_sync(
        configured=configured, owed=owed, changed=changed, was_on=was_on, now_on=now_on
    )
    assert got is expected


def test_count_now_only_when_the_followers_change_then_ever_less_often() -> None:
    f = frozenset({R})
    assert not count_now(None, frozenset(), 1, 30)  # nobody follows: nothing to ask
    assert count_now(None, f, 1, 30)
    assert count_now((frozenset({"db4:3306"}), 1, 5), f, 2, 30)  # another set: at once
    asked_at = [r for r in range(1, 200) if count_now((f, 0, 0), f, r, 30)]
    assert asked_at[0] == 2
    waits = [min(30, 2 << t) for t in range(8)]
    assert waits == [2, 4, 8, 16, 30, 30, 30, 30]
    assert not count_now((f, 100, 7), f, 129, 30) and count_now((f, 100, 7), f, 130, 30)


def test_debt_note() -> None:
    debt = SemiSyncDebt()
    assert debt.note(P2, True) is True  # news
    assert debt.note(P2, True) is False
    debt.asked = (frozenset({R}), 3, 0)
    assert debt.note(P1, False) is False and debt.owed is None  # another primary: void
    assert debt.asked is None


# ------------------------------------------------------------------ the monitor


class _Primary:
    """A primary's admin connection: answers the semi-sync reads, records what runs."""

    def __init__(self, dialect: ReplicationDialect, source_var: str, on: bool) -> None:
        self.dialect = dialect
        self.source_var = source_var
        self.on = on
        self.clients = 0
        self.ran: list[str] = []

    def query(
        self, sql: str, params: tuple[object, ...] = (), *, timeout: float | None = None
    ) -> list[dict[str, object]]:
        self.ran.append(sql)
        if sql == self.dialect.semi_sync_sql:
            replica_var = self.source_var.replace("source", "replica").replace("master", "slave")
            return [
                {"Variable_name": self.source_var, "Value": "ON" if self.on else "OFF"},
                {"Variable_name": replica_var, "Value": "ON"},
            ]
        if sql.startswith("SHOW GLOBAL STATUS LIKE"):
            assert self.dialect.semi_sync_status("clients") in sql
            return [{"Variable_name": "x", "Value": str(self.clients)}]
        if sql == f"SET GLOBAL {self.source_var} = ON":
            self.on = True
            return []
        raise AssertionError(f"unexpected statement {sql!r}")


FAMILIES = [
    pytest.param(MariaDB(), "rpl_semi_sync_master_enabled", "Slave", id="mariadb"),
    pytest.param(MySQL("9.7.0"), "rpl_semi_sync_source_enabled", "Replica", id="mysql-9.7"),
]


def _primary_state(d: ReplicationDialect) -> NodeState:
    return d.parse_state(
        {"server_id": 2, "version": "v", "read_only": 0, "executed": "", "own_binlog": ""}, []
    )


def _replica_state(d: ReplicationDialect, word: str, io: str) -> NodeState:
    source = "Master" if word == "Slave" else "Source"
    status = {
        f"{source}_Host": "db2",
        f"{source}_Port": 3306,
        f"{word}_IO_Running": io,
        f"{word}_SQL_Running": "Yes",
        f"{source}_Server_Id": 2,
    }
    variables = {"server_id": 3, "version": "v", "read_only": 1, "executed": "", "own_binlog": ""}
    return d.parse_state(variables, [status])


def _results(d: ReplicationDialect, word: str, io: str | None) -> dict[str, ProbeResult]:
    results = {
        P1: ProbeResult(P1, None, "2003: refused", 9),
        P2: ProbeResult(P2, _primary_state(d), None, 0),
    }
    if io is not None:
        results[R] = ProbeResult(R, _replica_state(d, word, io), None, 0)
    return results


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster(
        "mysql+pymysql://u:pw@db1/app",
        ["mysql+pymysql://u:pw@db2/app", "mysql+pymysql://u:pw@db3/app"],
    ) as c:
        yield c


def _monitor(cluster: Cluster, new: _Primary, old_on: bool, **options: object) -> Monitor:
    m = Monitor(cluster, failover_options=FailoverOptions("repl", "pw", **options))  # type: ignore[arg-type]
    old = _Primary(new.dialect, new.source_var, old_on)
    m._probes[P1] = old  # type: ignore[assignment]
    m._probes[P2] = new  # type: ignore[assignment]
    m._read_semi_sync(P1)  # the monitor saw the old primary
    m.rounds += 1
    m._primary_name = P2  # then a failover promoted db2 (no replica: semi-sync left off)
    m._primary_server_id = 2
    m._read_semi_sync(P2)
    return m


def _round(m: Monitor, results: dict[str, ProbeResult]) -> None:
    m.rounds += 1
    m._semi_sync_back_on(results)


@pytest.mark.parametrize(("d", "var", "word"), FAMILIES)
def test_the_monitor_turns_semi_sync_back_on_once_a_semi_sync_replica_follows(
    cluster: Cluster,
    caplog: pytest.LogCaptureFixture,
    d: ReplicationDialect,
    var: str,
    word: str,
) -> None:
    caplog.set_level(logging.INFO, logger="rwsplit.monitor")
    new = _Primary(d, var, on=False)
    m = _monitor(cluster, new, old_on=True)
    assert m._semi_sync_debt.owed == P2
    assert any("runs without semi-sync" in r.getMessage() for r in caplog.records)
    # A later failover counts this cluster as semi-sync, though db2 reads "off".
    assert _cluster_semi_sync(cluster, FailoverOptions("repl", "pw"), new) is True  # type: ignore[arg-type]
    new.ran.clear()
    # No replica follows it (the other one is down, or still names the dead primary).
    for _ in range(5):
        _round(m, _results(d, word, None))
        _round(m, _results(d, word, "Connecting"))
    assert new.ran == [] and not new.on
    # A replica follows it but has not registered as a semi-sync one yet: asked once, then
    # only after 2, 4 ... rounds.
    for _ in range(7):
        _round(m, _results(d, word, "Yes"))
    counts = [s for s in new.ran if s.startswith("SHOW GLOBAL STATUS")]
    assert len(counts) == 3 and len(new.ran) == 3 and not new.on  # rounds 1, 3, 7
    # It acknowledges now: the source side goes back on, by the family's name for it.
    new.clients = 1
    for _ in range(16):  # the next count is due 8 rounds after the last one
        _round(m, _results(d, word, "Yes"))
    assert new.on
    assert new.ran.count(f"SET GLOBAL {var} = ON") == 1
    assert m._semi_sync_debt.owed is None and m._primary_semi_sync is True
    assert any(
        r.levelno == logging.WARNING
        and "semi-sync re-armed" in r.getMessage()
        and P2 in r.getMessage()
        for r in caplog.records
    )
    # Idempotent and free from now on: no statement in later rounds.
    new.ran.clear()
    for _ in range(40):
        _round(m, _results(d, word, "Yes"))
    assert new.ran == []


@pytest.mark.parametrize(
    ("old_on", "options"),
    [
        (False, {}),  # the cluster never ran semi-sync
        (True, {"semi_sync": False}),  # told never to
    ],
)
def test_semi_sync_is_never_turned_on_for_a_cluster_that_did_not_run_it(
    cluster: Cluster, old_on: bool, options: dict[str, object]
) -> None:
    new = _Primary(MariaDB(), "rpl_semi_sync_master_enabled", on=False)
    new.clients = 1
    m = _monitor(cluster, new, old_on=old_on, **options)
    assert m._semi_sync_debt.owed is None
    new.ran.clear()
    for _ in range(40):
        _round(m, _results(MariaDB(), "Slave", "Yes"))
    assert new.ran == [] and not new.on


def test_an_operator_turning_it_off_on_the_same_primary_is_left_alone(cluster: Cluster) -> None:
    new = _Primary(MariaDB(), "rpl_semi_sync_master_enabled", on=True)
    new.clients = 1
    m = _monitor(cluster, new, old_on=True)
    assert m._semi_sync_debt.owed is None
    new.on = False
    m.rounds += 100  # the periodic re-read of the same primary
    m._read_semi_sync(P2)
    assert m._primary_semi_sync is False and m._semi_sync_debt.owed is None


def test_a_failover_that_leaves_semi_sync_off_tells_the_monitor(cluster: Cluster) -> None:
    m = Monitor(cluster)
    cluster.monitor = m
    try:
        assert _owe_semi_sync(cluster, P2, dry_run=True).startswith("the monitor turns")
        assert m._semi_sync_debt.owed is None  # a dry run changes nothing
        assert "monitor turns" in _owe_semi_sync(cluster, P2, dry_run=False)
        assert m._semi_sync_debt.owed == P2
    finally:
        cluster.monitor = None
        m.stop()
    assert "once a replica follows it" in _owe_semi_sync(cluster, P2, dry_run=False)
