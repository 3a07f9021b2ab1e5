"""The history checker (tests/history.py): each anomaly kind, planted, is reported."""

from __future__ import annotations

import itertools

import pytest

from tests.history import Anomaly, History, Kind, NodeState, Op, Status, check, outage

_ids = itertools.count(1)


def w(value: int, status: Status = Status.OK, *, p: str = "w1", at: float = 0.0) -> Op:
    return Op(next(_ids), p, Kind.WRITE, at, at + 0.01, status, value=value)


def causal(observed: int | None, *, p: str, at: float) -> Op:
    return Op(next(_ids), p, Kind.CAUSAL_READ, at, at + 0.01, Status.OK, observed=observed)


def rread(observed: int, request: int, at: float) -> Op:
    return Op(
        next(_ids), "q1", Kind.REQUEST_READ, at, at + 0.01, Status.OK, observed=observed,
        request=request,
    )  # fmt: skip


def primary(values: list[int], **kw: object) -> NodeState:
    return NodeState("db1", values, was_primary=True, is_final_primary=True, **kw)  # type: ignore[arg-type]


def replica(name: str, values: list[int], **kw: object) -> NodeState:
    defaults: dict[str, object] = {"was_primary": False, "follows_final_primary": True}
    defaults.update(kw)
    return NodeState(name, values, **defaults)  # type: ignore[arg-type]


# A clean history: 3 acknowledged writes, one not committed (absent), one unknown (present
# on the primary, absent on nothing else), fresh causal reads and monotonic request reads.
CLEAN_OPS = [
    w(1, at=0.0),
    w(2, at=0.1),
    w(3, Status.NOT_COMMITTED, at=0.2),
    w(4, Status.UNKNOWN, at=0.3),
    w(5, p="r1", at=0.4),
    causal(5, p="r1", at=0.5),
    rread(2, request=100, at=0.6),
    rread(2, request=100, at=0.7),
    rread(5, request=100, at=0.8),
]
CLEAN_NODES = [
    primary([1, 2, 4, 5], own_before=10, own_after=14),
    replica("db2", [1, 2, 4, 5], own_before=3, own_after=3),
    replica("db3", [1, 2, 4, 5]),
]


def test_a_clean_history_reports_nothing() -> None:
    result = check(CLEAN_OPS, CLEAN_NODES)
    assert result.ok, result.render()
    assert result.counts == {}
    assert result.final_primary == "db1"
    assert result.writes == {Status.OK: 3, Status.NOT_COMMITTED: 1, Status.UNKNOWN: 1}
    assert "no anomalies" in result.render()


def test_an_unknown_write_may_be_absent() -> None:
    nodes = [primary([1, 2, 5]), replica("db2", [1, 2, 5]), replica("db3", [1, 2, 5])]
    assert check(CLEAN_OPS, nodes).ok


def test_lost_acknowledged_write() -> None:
    nodes = [primary([1, 4, 5]), replica("db2", [1, 4, 5])]
    result = check(CLEAN_OPS, nodes)
    assert result.counts == {Anomaly.LOST: 1}
    (f,) = result.of(Anomaly.LOST)
    assert [o.value for o in f.ops] == [2]
    assert "write 2" in result.render() and "[lost]" in result.render()


def test_lie_retryable_write_that_committed() -> None:
    nodes = [primary([1, 2, 3, 4, 5]), replica("db2", [1, 2, 3, 4, 5])]
    result = check(CLEAN_OPS, nodes)
    assert result.counts == {Anomaly.LIE: 1}
    (f,) = result.of(Anomaly.LIE)
    assert [o.value for o in f.ops] == [3]


def test_lie_found_on_an_old_primary_only() -> None:
    """The flake's shape: a 'not committed' write left only on the replaced primary."""
    old = NodeState("db0", [1, 2, 3], was_primary=True, own_before=0, own_after=3)
    nodes = [primary([1, 2, 4, 5]), replica("db2", [1, 2, 4, 5]), old]
    result = check(CLEAN_OPS, nodes)
    assert result.counts == {Anomaly.LIE: 1}
    assert "db0" in result.of(Anomaly.LIE)[0].summary


def test_unknown_write_left_on_an_old_primary_is_a_note_not_an_anomaly() -> None:
    old = NodeState("db0", [1, 2, 4], was_primary=True)
    nodes = [primary([1, 2, 5]), replica("db2", [1, 2, 5]), old]
    result = check(CLEAN_OPS, nodes)
    assert result.ok, result.render()
    assert any("db0" in n and "unknown" in n for n in result.notes)


@pytest.mark.parametrize("value", [1, 4])  # acknowledged, and outcome-unknown: never twice
def test_duplicate(value: int) -> None:
    values = [1, 2, 4, 5, value]
    nodes = [primary(values), replica("db2", values)]
    result = check(CLEAN_OPS, nodes)
    assert result.counts == {Anomaly.DUPLICATE: 2}  # on the primary and on its replica
    assert all(f.ops[0].value == value for f in result.of(Anomaly.DUPLICATE))


def test_stale_causal_read() -> None:
    ops = [*CLEAN_OPS, w(6, p="r1", at=1.0), causal(5, p="r1", at=1.1)]
    nodes = [primary([1, 2, 4, 5, 6]), replica("db2", [1, 2, 4, 5, 6])]
    result = check(ops, nodes)
    assert result.counts == {Anomaly.STALE_READ: 2}  # the write, then the read
    f = result.of(Anomaly.STALE_READ)[0]
    assert [o.kind for o in f.ops] == [Kind.WRITE, Kind.CAUSAL_READ]
    assert f.ops[0].value == 6 and f.ops[1].observed == 5


def test_causal_read_that_saw_nothing_is_stale() -> None:
    ops = [w(1, p="r1", at=0.0), causal(None, p="r1", at=0.1)]
    result = check(ops, [primary([1])])
    assert result.count(Anomaly.STALE_READ) == 2


def test_causal_read_concurrent_with_the_write_is_not_stale() -> None:
    # The read began before the write was acknowledged: it need not see it.
    ops = [w(1, p="r1", at=0.0), Op(99, "r1", Kind.CAUSAL_READ, 0.005, 0.02, Status.OK)]
    assert check(ops, [primary([1])]).ok


def test_another_sessions_write_is_not_required() -> None:
    ops = [w(7, p="w9", at=0.0), causal(None, p="r1", at=1.0)]
    assert check(ops, [primary([7])]).ok


def test_non_monotonic_reads_within_a_request() -> None:
    ops = [*CLEAN_OPS, rread(5, request=200, at=1.0), rread(2, request=200, at=1.1)]
    result = check(ops, CLEAN_NODES)
    assert result.counts == {Anomaly.NON_MONOTONIC: 2}
    f = result.of(Anomaly.NON_MONOTONIC)[0]
    assert [o.observed for o in f.ops] == [5, 2]


def test_reads_of_different_requests_may_go_back() -> None:
    ops = [*CLEAN_OPS, rread(5, request=300, at=1.0), rread(2, request=301, at=1.1)]
    assert check(ops, CLEAN_NODES).ok


def test_write_on_a_node_that_was_never_the_primary() -> None:
    ops = [*CLEAN_OPS, w(6, at=1.0)]
    values = [1, 2, 4, 5, 6]
    nodes = [
        primary([1, 2, 4, 5], server_id=1),
        replica("db2", values, own_before=3, own_after=4, origin={6: 2}, server_id=2),
    ]
    result = check(ops, nodes)
    assert Anomaly.NON_PRIMARY in result.counts
    (f,) = result.of(Anomaly.NON_PRIMARY)
    assert f.node == "db2" and [o.value for o in f.ops] == [6]
    # It is also a lost write (not on the primary) and a divergence (db2 has a value more).
    assert result.count(Anomaly.LOST) == 1 and result.count(Anomaly.DIVERGED) == 1


def test_own_transactions_of_a_promoted_node_are_legitimate() -> None:
    nodes = [primary([1, 2, 4, 5], own_before=0, own_after=4), replica("db2", [1, 2, 4, 5])]
    assert check(CLEAN_OPS, nodes).ok


def test_diverged_replica() -> None:
    nodes = [primary([1, 2, 4, 5]), replica("db2", [1, 2, 5]), replica("db3", [1, 2, 4, 5])]
    result = check(CLEAN_OPS, nodes)
    assert result.counts == {Anomaly.DIVERGED: 1}
    (f,) = result.of(Anomaly.DIVERGED)
    assert f.node == "db2" and [o.value for o in f.ops] == [4]


def test_a_replica_not_following_the_primary_is_not_judged_for_divergence() -> None:
    nodes = [primary([1, 2, 4, 5]), replica("db2", [1], follows_final_primary=False)]
    assert check(CLEAN_OPS, nodes).ok


def test_a_raw_driver_error_is_an_anomaly() -> None:
    raw = Op(
        next(_ids), "w1", Kind.WRITE, 0.9, 0.91, Status.FAILED, value=6,
        error="OperationalError: (1040, 'Too many connections')", untyped=True,
    )  # fmt: skip
    typed = Op(
        next(_ids), "w1", Kind.WRITE, 0.92, 0.93, Status.NOT_COMMITTED, value=7,
        error="RetryableWriteError: the primary db1 refused a new connection",
    )  # fmt: skip
    result = check([*CLEAN_OPS, raw, typed], CLEAN_NODES)
    assert result.counts == {Anomaly.UNTYPED_ERROR: 1}
    (f,) = result.of(Anomaly.UNTYPED_ERROR)
    assert f.ops == (raw,)
    assert "OperationalError" in f.summary and "[untyped-error]" in result.render()


def test_every_kind_is_covered_by_a_test() -> None:
    tested = {
        Anomaly.LOST, Anomaly.LIE, Anomaly.DUPLICATE, Anomaly.STALE_READ,
        Anomaly.NON_MONOTONIC, Anomaly.NON_PRIMARY, Anomaly.DIVERGED, Anomaly.UNTYPED_ERROR,
    }  # fmt: skip
    assert tested == set(Anomaly)


def test_recorder_and_outage() -> None:
    h = History()
    a, b = h.value(), h.value()
    assert a != b
    h.add(process="w1", kind=Kind.WRITE, invoked=0.0, completed=1.0, status=Status.OK, value=a)
    h.add(process="w1", kind=Kind.WRITE, invoked=1.0, completed=4.0, status=Status.OK, value=b)
    h.add(process="w1", kind=Kind.WRITE, invoked=4.0, completed=4.5, status=Status.OK, value=9)
    assert len(h) == 3 and [o.id for o in h] == [1, 2, 3]
    assert outage(h.ops, since=0.5) == pytest.approx(3.0)
    assert outage(h.ops, since=5.0) is None
    text = check(h.ops, [primary([a, b, 9])], origin=0.5).render()
    assert "3 operations" in text and "no anomalies" in text


def test_lost_names_where_the_write_is() -> None:
    old = NodeState("db0", [1, 2], was_primary=True)
    result = check(CLEAN_OPS, [primary([1, 4, 5]), replica("db2", [1, 4, 5]), old])
    assert "found on db0: 1" in result.of(Anomaly.LOST)[0].summary


def test_async_excuses_only_writes_lost_before_the_primary_changed() -> None:
    from tests.nemesis import Report

    ops = [w(1, p="r1", at=0.0), causal(None, p="r2", at=0.1), w(2, p="r1", at=5.0)]
    ops.append(causal(None, p="r1", at=0.02))  # misses write 1
    result = check(ops, [primary([])])
    early = Report(result, "db1", 1, 1.0, changed_at=3.0)
    before, after = early.lost()
    assert [o.value for o in before] == [1] and [o.value for o in after] == [2]
    # write 2 was acknowledged after the change (by a replaced primary): not excused
    assert early.beyond_async() == {Anomaly.LOST: 1}
    late = Report(result, "db1", 1, 1.0, changed_at=10.0)
    assert late.beyond_async() == {}


def test_repeated_failovers_excuse_only_writes_of_a_primary_replaced_later() -> None:
    """With several failovers each lost write is judged by the node that acknowledged it."""
    from dataclasses import replace

    from tests.nemesis import Report

    def on(node: str, value: int, at: float) -> Op:
        return replace(w(value, at=at), node=node)

    ops = [
        on("db1", 1, 1.0),  # db1 was the primary, replaced at 3: async may lose it
        on("db2", 2, 4.0),  # db2 the primary from 3, replaced at 6: excused too
        on("db1", 3, 5.0),  # db1 after it was replaced: never excused
        on("db3", 4, 7.0),  # the last primary's own write: never excused
    ]
    result = check(ops, [primary([])])
    report = Report(
        result, "db3", 2, 1.0, changed_at=3.0, changes=[(0.0, "db1"), (3.0, "db2"), (6.0, "db3")]
    )
    early, late = report.lost()
    assert [o.value for o in early] == [1, 2]
    assert [o.value for o in late] == [3, 4]
    assert report.beyond_async() == {Anomaly.LOST: 2}
