"""PostgreSQL: following a promotion made by hand, split brain, the fence check, lost primaries,
discovery. Each test gets its own sandbox (a primary and two hot standbys): they kill, promote
and fence its servers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from rwsplit import (
    Cluster,
    NoPrimaryError,
    RetryableWriteError,
    Role,
    SplitBrainError,
)
from rwsplit.sandbox.postgresql import PgSandbox
from rwsplit.topology.probe import discover

from ..fix_pg import require_postgresql
from .pg_util import set_read_only_default, set_setting

pytestmark = pytest.mark.integration


@pytest.fixture
def sb() -> Iterator[PgSandbox]:
    require_postgresql()
    with PgSandbox(standbys=2) as sandbox:
        with sandbox.primary.connect() as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        sandbox.wait_caught_up()
        yield sandbox


def _rows(sb: PgSandbox, name: str) -> list[tuple[int, str]]:
    with sb.node(name).connect() as conn:
        return [tuple(r) for r in conn.execute("SELECT id, v FROM items ORDER BY id")]  # type: ignore[misc]


def test_reads_and_writes_follow_a_promotion_after_refresh(sb: PgSandbox) -> None:
    old, new, other = sb.primary, sb.standbys[0], sb.standbys[1]
    with Cluster(old.url, [new.url, other.url]) as cluster:
        with cluster.session() as s:
            s.execute(text("INSERT INTO items VALUES (1, 'before')"))
            s.commit()
        sb.kill(old.name)
        sb.promote(new.name)
        sb.repoint(other.name, new.name)
        topology = cluster.refresh()
        assert topology.primary is not None and topology.primary.name == new.address
        assert [n.name for n in topology.readable_replicas()] == [other.address]
        with cluster.session() as s:
            s.execute(text("INSERT INTO items VALUES (2, 'after')"))
            s.commit()
            token = s.causal_token
            assert token is not None and token.startswith("pg:")
            marker = f"m{uuid.uuid4().hex}"
            got = s.execute(text(f"SELECT /* {marker} */ v FROM items WHERE id = 2")).scalar()
            assert got == "after"
        assert _rows(sb, new.name) == [(1, "before"), (2, "after")]
        assert cluster.stats().to_dict()["nodes"][other.address]["reads"] == 1


def test_two_writable_nodes_is_a_split_brain_and_nothing_is_written(sb: PgSandbox) -> None:
    old, promoted = sb.primary, sb.standbys[0]
    with Cluster(old.url, [s.url for s in sb.standbys]) as cluster:
        sb.promote(promoted.name)  # the old primary still runs, writable
        topology = cluster.refresh()
        assert {n.name for n in topology.primaries} == {old.address, promoted.address}
        with (
            cluster.session() as s,
            pytest.raises(SplitBrainError, match="claim to be the primary"),
        ):
            s.execute(text("INSERT INTO items VALUES (7, 'split')"))
    assert _rows(sb, old.name) == []
    assert _rows(sb, promoted.name) == []


def test_a_primary_fenced_by_another_process_refuses_the_commit(sb: PgSandbox) -> None:
    primary = sb.primary
    with Cluster(primary.url, [s.url for s in sb.standbys]) as cluster:
        with cluster.session() as s:
            s.execute(text("INSERT INTO items VALUES (1, 'pooled')"))
            s.commit()  # the pool now holds a checked connection to the primary
        with cluster.session() as s:
            s.execute(text("INSERT INTO items VALUES (2, 'fenced')"))
            set_read_only_default(primary, True)  # another process fences it meanwhile
            with pytest.raises(RetryableWriteError, match="read-only"):
                s.commit()
        # The fenced node is out of the write path: no writable primary is left.
        assert cluster.topology.primary is None
        with cluster.session() as s, pytest.raises(NoPrimaryError):
            s.execute(text("INSERT INTO items VALUES (3, 'nowhere')"))
    assert _rows(sb, primary.name) == [(1, "pooled")]


def test_a_new_connection_to_a_fenced_primary_is_refused(sb: PgSandbox) -> None:
    primary = sb.primary
    set_read_only_default(primary, True)
    with Cluster(primary.url, [s.url for s in sb.standbys]) as cluster:
        with cluster.session() as s, pytest.raises(NoPrimaryError):
            s.execute(text("INSERT INTO items VALUES (1, 'x')"))
        assert cluster.topology.node(primary.address).role is Role.UNKNOWN


def test_a_lost_primary_before_the_commit_is_a_retryable_write(sb: PgSandbox) -> None:
    with Cluster(sb.primary.url, [s.url for s in sb.standbys]) as cluster:
        with cluster.session() as s:
            s.execute(text("INSERT INTO items VALUES (1, 'lost')"))
            sb.kill(sb.primary.name)
            with pytest.raises(RetryableWriteError, match="nothing was committed"):
                s.commit()
        with cluster.session() as s, pytest.raises(RetryableWriteError):
            s.execute(text("INSERT INTO items VALUES (2, 'lost')"))


def test_a_read_whose_standby_died_runs_elsewhere(sb: PgSandbox) -> None:
    dead, alive = sb.standbys
    with Cluster(sb.primary.url, [dead.url, alive.url]) as cluster:
        with cluster.session() as s:  # open a pooled connection on each standby
            for _ in range(2):
                s.execute(text("SELECT 1"))
        sb.kill(dead.name)
        with cluster.session() as s:
            for _ in range(3):
                assert s.execute(text("SELECT 1")).scalar() == 1
        assert not cluster.topology.node(dead.address).healthy


def test_discovery_from_a_standby(sb: PgSandbox) -> None:
    topology = discover([sb.standbys[0].url])
    assert topology.primary is not None and topology.primary.name == sb.primary.address
    standby = topology.node(sb.standbys[0].address)
    assert standby.role is Role.REPLICA
    assert standby.replication is not None and standby.replication.source == sb.primary.address
    assert make_url(sb.primary.url).password == topology.primary.url.password


def test_a_primary_lost_during_the_commit_leaves_the_outcome_unknown(sb: PgSandbox) -> None:
    import threading
    import time

    from rwsplit import TransactionOutcomeUnknownError

    primary = sb.primary
    with primary.connect() as conn:
        # A deferred constraint trigger runs inside COMMIT: the server is busy committing.
        conn.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON items DEFERRABLE INITIALLY "
            "DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        )
    killed = threading.Event()

    def kill_when_committing() -> None:
        with primary.connect() as watch:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                row = watch.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                    "AND query ILIKE 'COMMIT%'"
                ).fetchone()
                if row is not None:
                    break
                time.sleep(0.02)
        sb.kill(primary.name)
        killed.set()

    with Cluster(primary.url, [s.url for s in sb.standbys]) as cluster, cluster.session() as s:
        s.execute(text("INSERT INTO items VALUES (1, 'unknown')"))
        killer = threading.Thread(target=kill_when_committing)
        killer.start()
        try:
            with pytest.raises(TransactionOutcomeUnknownError, match="may or may not"):
                s.commit()
        finally:
            killer.join(30)
    assert killed.is_set()


def test_a_read_on_a_lost_primary_is_a_read_failure(sb: PgSandbox) -> None:
    from rwsplit import ReadFailedError

    with (
        Cluster(sb.primary.url, [s.url for s in sb.standbys]) as cluster,
        cluster.session() as s,
        s.use_primary(),
    ):
        assert s.execute(text("SELECT count(*) FROM items")).scalar() == 0
        s.rollback()  # the pooled connection goes back, checked and open
        sb.kill(sb.primary.name)
        with pytest.raises(ReadFailedError, match="retry it"):
            s.execute(text("SELECT count(*) FROM items"))


def test_a_read_cancelled_by_recovery_runs_again(sb: PgSandbox) -> None:
    """A hot standby cancels a read that holds a lock replay needs (here at once:
    max_standby_streaming_delay = 0): the read runs again, the standby stays in routing."""
    import threading
    import time

    standby = sb.standbys[0]
    with sb.primary.connect() as conn:
        conn.execute("CREATE TABLE conflict_t AS SELECT g AS id FROM generate_series(1, 300) g")
    set_setting(standby, "max_standby_streaming_delay", "0")
    sb.wait_caught_up()
    slow = "SELECT count(*) FROM conflict_t a, conflict_t b, conflict_t c"
    altered = threading.Event()

    def lock_it_on_the_primary() -> None:
        with standby.connect() as watch:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if watch.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT count(*) FROM conflict_t a%'"
                ).fetchone():
                    break
                time.sleep(0.01)
        with sb.primary.connect() as primary:
            primary.execute("ALTER TABLE conflict_t ADD COLUMN x int")  # ACCESS EXCLUSIVE
        altered.set()

    with Cluster(sb.primary.url, [standby.url]) as cluster, cluster.session() as s:
        locker = threading.Thread(target=lock_it_on_the_primary)
        locker.start()
        try:
            assert s.execute(text(slow)).scalar() == 300**3
        finally:
            locker.join(30)
        assert altered.is_set()
        stats = cluster.stats().to_dict()["nodes"][standby.address]
        assert stats["retried"] == 1 and stats["reads"] == 2
        assert cluster.topology.node(standby.address).healthy
    with standby.connect() as conn:  # replay cancelled one statement there: the witness
        cancelled = conn.execute(
            "SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = current_database()"
        ).fetchone()
    assert cancelled is not None and cancelled[0] >= 1
