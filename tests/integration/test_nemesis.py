"""The nemesis, short form: one fault per test, judged by the history checker.

Each test runs the workload of tests/nemesis.py (writers, read-your-writes readers, requests
of several reads, and a second rwsplit process with ``auto_failover``) on a semi-sync sandbox,
injects one fault, and asserts the checker (tests/history.py) finds no anomaly at all — no
lost acknowledged write, no "not committed" write that committed, no duplicate, no stale
causal read, no non-monotonic read in a request, no write on a replica, no diverged replica.
The matrix over every fault (kill -9, hang, quick restart, partitions, a replica hung /
partitioned / slowed, connection storm, repeated failovers), with and without semi-sync, is
test_nemesis_matrix.py; this file keeps the two scenarios it does not cover: the hung old
primary made read-only once it answers, and the old primary restarted *after* the failover.
The long form is ``python benchmarks/bench_nemesis.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rwsplit.sandbox import Sandbox
from tests.integration.util import wait_until
from tests.nemesis import Nemesis, Report, _sql

pytestmark = [pytest.mark.integration, pytest.mark.failover]


@pytest.fixture
def sb(semi_sync_sandbox: Sandbox) -> Sandbox:
    return semi_sync_sandbox


@pytest.fixture
def nemesis(sb: Sandbox) -> Iterator[Nemesis]:
    n = Nemesis(sb)
    try:
        yield n
    finally:
        n.close()


def _assert_clean(n: Nemesis) -> Report:
    report = n.check()
    assert report.ok, report.render()
    assert report.result.reads > 0
    assert report.outage is not None, "writes never resumed"
    return report


def test_hang_of_the_primary_then_it_comes_back(sb: Sandbox, nemesis: Nemesis) -> None:
    with nemesis.traffic(seconds=60):
        nemesis.wait_for_acks(20, timeout=10)
        nemesis.fault(lambda: sb.hang("primary"))
        try:
            nemesis.wait_for_acks(20, timeout=40)  # failed over while the old one hangs
        finally:
            sb.resume("primary")  # it answers again: it must not take (or ack) writes
        nemesis.healed()
        nemesis.wait_for_acks(10, timeout=20)
    _assert_clean(nemesis)
    # Back from the hang, it is fenced on the server too (commits it held waiting for a
    # semi-sync ACK are released first), not a second primary.
    wait_until(
        lambda: _sql(sb.primary, "SELECT @@read_only")[0][0] == 1,
        timeout=30,
        what="the resumed old primary made read-only",
    )


def test_restart_of_the_old_primary_after_a_failover(sb: Sandbox, nemesis: Nemesis) -> None:
    with nemesis.traffic(seconds=60):
        nemesis.wait_for_acks(20, timeout=10)
        nemesis.fault(lambda: sb.kill("primary"))
        nemesis.wait_for_acks(20, timeout=30)
        sb.restart("primary")  # the old configuration's primary is back, writable
        nemesis.healed()
        nemesis.wait_for_acks(20, timeout=20)
    _assert_clean(nemesis)
