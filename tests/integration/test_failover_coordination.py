"""Many processes, one failover: three real processes with ``auto_failover=True``, and
``kill -9`` or a hang (``SIGSTOP`` ... ``SIGCONT``) of the primary."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox

from .test_failover import ids_on, source_port, sql_running
from .util import fenced, position, sql, wait_position, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.failover]

WORKER = Path(__file__).with_name("failover_worker.py")


def _status(out: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(Path(str(out) + ".status").read_text()))
    except (OSError, ValueError):
        return {}


def _outage(acked_at: list[float], t_kill: float) -> float:
    """The longest pause between two acknowledged writes around the kill."""
    times = sorted(t for t in acked_at if t > t_kill - 1)
    return round(max((b - a for a, b in itertools.pairwise(times)), default=0.0), 3)


def _three_processes(sb: Sandbox, tmp_path: Path, *, hang: bool) -> None:
    """Three auto-failover processes write; the primary is killed (or hung, then resumed)."""
    old = sb.primary
    sql(old, "CREATE TABLE rwsplit.w (id INT PRIMARY KEY)")
    sb.wait_caught_up()
    outs = [tmp_path / f"worker{i}.json" for i in range(3)]
    procs = []
    logs = []
    for i, out in enumerate(outs):
        config = {
            "primary": sb.primary_url,
            "replicas": sb.replica_urls,
            "repl_user": REPL_USER,
            "repl_password": REPL_PASSWORD,
            "first_id": (i + 1) * 10_000_000,
            "out": str(out),
        }
        logs.append(open(str(out) + ".log", "wb"))  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(config)],
                stdout=subprocess.DEVNULL,
                stderr=logs[-1],
            )
        )
    hung = False
    try:
        wait_until(
            lambda: all(_status(o).get("acked", 0) > 100 for o in outs),
            timeout=60,
            what="every process writing",
        )
        before = [_status(o)["acked"] for o in outs]
        t_fault = time.time()
        if hang:
            sb.hang(old.name)
            hung = True
        else:
            sb.kill(old.name)
        wait_until(
            lambda: all(
                (s := _status(o)).get("primary") not in (None, old.address)
                and s.get("acked", 0) > b + 100
                for o, b in zip(outs, before, strict=True)
            ),
            timeout=60,
            what="every process writing to a new primary",
        )
        if hang:
            # It answers again, writable as it was when it stopped: the monitors must fence
            # or rejoin it, never take it as a second primary.
            sb.resume(old.name)
            hung = False
            resumed = [_status(o)["acked"] for o in outs]
            wait_until(
                lambda: fenced(old),
                timeout=30,
                what="the resumed old primary made read-only",
            )
            wait_until(
                lambda: all(
                    (s := _status(o)).get("primary") not in (None, old.address)
                    and s.get("acked", 0) > b + 100
                    for o, b in zip(outs, resumed, strict=True)
                ),
                timeout=60,
                what="every process still writing to the new primary after the resume",
            )
    finally:
        if hung:
            sb.resume(old.name)
        for out in outs:
            Path(str(out) + ".stop").touch()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    reports = [json.loads(o.read_text()) for o in outs]
    for r, o in zip(reports, outs, strict=True):
        assert r["unexpected"] == [], Path(str(o) + ".log").read_text()[-3000:]
    promotions = [f for r in reports for f in r["failovers"] if f["promoted"]]
    print("failover results per process:", [r["failovers"] for r in reports])
    assert len(promotions) == 1
    new_name = promotions[0]["new_primary"]
    assert {r["primary"] for r in reports} == {new_name}
    new = sb.node(new_name)
    (other,) = [n for n in sb.replicas if n is not new]
    # The servers agree: one record in the failover log, the other replica follows it.
    log_rows = sql(new, "SELECT epoch, primary_port, old_primary FROM rwsplit.failover_log")
    assert log_rows == [(1, new.port, old.address)]
    wait_until(lambda: sql_running(other))
    assert source_port(other) == new.port
    pos = position(new)
    assert wait_position(other, pos, 20)
    assert sql(other, "SELECT COUNT(*) FROM rwsplit.failover_log")[0][0] == 1
    # Nothing acknowledged lost, in any process: on the final primary and its replica.
    have = ids_on(new)
    acked = [i for r in reports for i in r["acked"]]
    assert len(acked) > 600
    assert [i for i in acked if i not in have] == []
    assert ids_on(other) == have
    if hang:
        # The old primary is not a second primary: read-only, and either a replica of the new
        # one or left fenced; what it holds beyond the new primary are only commits whose
        # outcome the applications were told is unknown (in flight when it stopped).
        assert sql(old, "SELECT @@read_only")[0][0] == 1
        port = source_port(old)
        assert port is None or port == new.port, port
        unknown = {i for r in reports for i in r["unknown"]}
        assert ids_on(old) - have <= unknown
    print(f"{len(acked)} acknowledged writes in 3 processes, 0 lost, 1 promotion")
    print(f"write outage per process (s): {[_outage(r['acked_at'], t_fault) for r in reports]}")


def test_three_processes_one_promotion_nothing_lost(
    semi_sync_sandbox: Sandbox, tmp_path: Path
) -> None:
    _three_processes(semi_sync_sandbox, tmp_path, hang=False)


def test_three_processes_hung_primary_one_promotion_nothing_lost(
    semi_sync_sandbox: Sandbox, tmp_path: Path
) -> None:
    """The same with a hang (``SIGSTOP``) of the primary, resumed (``SIGCONT``) at the end."""
    _three_processes(semi_sync_sandbox, tmp_path, hang=True)


def test_lock_is_exclusive_and_needs_a_majority(semi_sync_sandbox: Sandbox) -> None:
    from sqlalchemy.engine import make_url

    from rwsplit.topology._coordination import Acquired, FailoverLock, LockTarget

    sb = semi_sync_sandbox
    targets = [LockTarget(n.address, make_url(n.url)) for n in sb.nodes]
    with (
        FailoverLock("rwsplit_failover_t", targets) as a,
        FailoverLock("rwsplit_failover_t", targets) as b,
    ):
        assert a.acquire() is Acquired.HELD and len(a.held) == 3
        assert b.acquire() is Acquired.BUSY and b.held == []
        assert a.confirm()
        a.release()
        assert b.acquire() is Acquired.HELD
        b.release()
        # A server down: 2 of 2 running is a majority of the running ones, not of all three.
        sb.kill(sb.replicas[1].name)
        assert a.acquire() is Acquired.HELD and len(a.held) == 2
        a.release()
        with FailoverLock(
            "rwsplit_failover_t", targets[:1], quorum="majority_of_all", total=3
        ) as strict:
            assert strict.acquire() is Acquired.NO_QUORUM and strict.held == []


def test_a_waiting_process_promotes_nothing_until_the_holder_is_gone(
    fresh_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import threading

    from sqlalchemy.engine import make_url

    from rwsplit import Cluster, FailoverOptions, FailoverResult, failover
    from rwsplit.topology._coordination import Acquired, FailoverLock, LockTarget, lock_name

    from .test_failover import make_table

    caplog.set_level(logging.INFO, logger="rwsplit.failover")
    sb = fresh_sandbox
    options = FailoverOptions(REPL_USER, REPL_PASSWORD, confirm_interval=0.05)
    with Cluster(sb.primary_url, sb.replica_urls) as cluster:
        make_table(cluster, sb)
        sb.wait_caught_up()
        sb.kill(sb.primary.name)
        # Another process holds the lock (and then dies without doing anything).
        holder = FailoverLock(
            lock_name("default"), [LockTarget(n.address, make_url(n.url)) for n in sb.replicas]
        )
        assert holder.acquire() is Acquired.HELD
        outcome: list[FailoverResult | BaseException] = []

        def run() -> None:
            try:
                outcome.append(failover(cluster, options, confirmed=True))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            wait_until(
                lambda: any("waiting to follow" in r.getMessage() for r in caplog.records),
                what="the failover waiting for the lock",
            )
            assert outcome == []
            assert all(sql(n, "SELECT @@read_only")[0][0] == 1 for n in sb.replicas)
        finally:
            holder.close()  # the holder's connections end: the server releases its locks
            thread.join(60)
        (result,) = outcome
        assert isinstance(result, FailoverResult), result
        assert result.promoted and not result.followed
        assert sorted(result.locked_on) == sorted(n.address for n in sb.replicas)
        new = sb.node(result.new_primary or "")
        assert sql(new, "SELECT @@read_only")[0][0] == 0
        assert sql(new, "SELECT epoch, old_primary FROM rwsplit.failover_log") == [
            (1, sb.primary.address)
        ]
