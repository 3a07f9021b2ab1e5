"""Read-your-writes across transactions, on real replication with real lag."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.exc import ObjectDeletedError

from rwsplit import Cluster
from rwsplit.pytest_plugin import replica_lag
from rwsplit.routing.consistency import _positions
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot
from .util import general_log, position, sql, tables

pytestmark = pytest.mark.integration


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(40))


def sql_threads_stopped(sb: Sandbox) -> contextlib.AbstractContextManager[object]:
    """Freeze replication apply on every replica: they lag until the block ends."""
    return replica_lag(sb)


@pytest.fixture
def notes(sandbox: Sandbox) -> Iterator[Sandbox]:
    yield from tables(sandbox, Base.metadata)


def _write_then_reload(cluster: Cluster) -> str:
    with cluster.session() as s:
        note = Note(body="v1")
        s.add(note)
        s.commit()
        note.body = "v2"
        s.commit()
        # expire_on_commit: this attribute access reloads the row in a new transaction.
        return note.body


def test_lagging_replica_is_not_read_after_commit(notes: Sandbox) -> None:
    with (
        Cluster(notes.primary_url, notes.replica_urls, causal_timeout=0.2) as c,
        sql_threads_stopped(notes),
    ):
        assert _write_then_reload(c) == "v2"


def test_without_read_your_writes_the_hole_is_real(notes: Sandbox) -> None:
    """The control: the same code with the feature off reads the stale replica."""
    with (
        Cluster(notes.primary_url, notes.replica_urls, read_your_writes="off") as c,
        sql_threads_stopped(notes),
        c.session() as s,
    ):
        note = Note(body="v1")
        s.add(note)
        s.commit()
        with pytest.raises(ObjectDeletedError):
            _ = note.body  # the replica has not applied the insert yet


def test_caught_up_replica_serves_the_read(notes: Sandbox) -> None:
    with Cluster(notes.primary_url, notes.replica_urls, causal_timeout=5) as c:
        with c.session() as s:  # warm-up: SQLAlchemy's first-connect queries on each engine
            s.add(Note(body="warm-up"))
            s.commit()
            s.execute(select(Note)).all()
            s.execute(select(Note)).all()
        before = snapshot(notes)
        with c.session() as s:
            s.add(Note(body="x"))
            s.commit()
            token = s.causal_token
            assert s.execute(select(Note.body).where(Note.body == "x")).scalar_one() == "x"
        d = delta(before, snapshot(notes))
        # The primary's newest GTID (MariaDB: its position; MySQL: the commit's own GTID,
        # the newest of the primary's set).
        assert token and _positions(token) == _positions(position(notes.primary))
        # The token came in the COMMIT's OK packet: no SELECT @@last_gtid on the primary.
        assert d["primary"]["Com_select"] == 0
        assert sum(d[r.name]["Com_select"] for r in notes.replicas) == 2  # wait + read


def test_token_carries_to_another_session(notes: Sandbox) -> None:
    with Cluster(notes.primary_url, notes.replica_urls, causal_timeout=0.2) as c:
        with c.session() as s:
            s.add(Note(body="carried"))
            s.commit()
            token = s.causal_token
        with sql_threads_stopped(notes):
            with c.session() as s:
                s.add(Note(body="later"))
                s.commit()
                token = s.causal_token
            with c.session(causal_token=token) as s2:
                got = s2.scalars(select(Note.body).where(Note.body == "later")).all()
            assert got == ["later"]


def test_primary_window_mode(notes: Sandbox) -> None:
    with (
        Cluster(
            notes.primary_url, notes.replica_urls, read_your_writes="primary", sticky_window=30
        ) as c,
        sql_threads_stopped(notes),
    ):
        assert _write_then_reload(c) == "v2"


# ---------------------------------------------------------------------- the token's source


def _last_gtid_queries(log: list[str]) -> int:
    return sum(1 for q in log if "@@last_gtid" in q.lower() and "session_track" not in q.lower())


def _binlog_gtid(sb: Sandbox) -> str:
    """The primary's newest GTID (domain 0), as @@last_gtid of its writer says."""
    return str(sql(sb.primary, "SELECT @@global.gtid_binlog_pos")[0][0])


@pytest.mark.server("mariadb", reason="the token is MariaDB's @@last_gtid, from session tracking")
def test_token_from_the_commit_packet_equals_last_gtid(notes: Sandbox) -> None:
    with Cluster(notes.primary_url, notes.replica_urls) as c, general_log(notes.primary) as log:
        tokens = []
        for i in range(5):
            with c.session() as s:
                s.add(Note(body=f"packet-{i}"))
                s.commit()
                assert s.causal_token == _binlog_gtid(notes)
                # The session's own connection agrees (the same pooled connection is reused).
                with s.connection() as conn:
                    last = conn.exec_driver_sql("SELECT @@last_gtid").scalar()
                assert s.causal_token == last
                tokens.append(s.causal_token)
    assert len(set(tokens)) == 5
    queries = [q for q in log if q.startswith("SELECT @@last_gtid")]
    assert len(queries) == 5  # only the test's own checks above, none from rwsplit
    assert any("session_track_system_variables" in q for q in log)


@pytest.mark.server("mariadb", reason="the token is MariaDB's @@last_gtid, from session tracking")
def test_token_falls_back_to_the_query_without_tracking(
    notes: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with the packet's GTID unavailable, the query runs once per commit."""
    import rwsplit.routing.consistency as consistency

    monkeypatch.setattr(consistency, "take_commit_gtid", lambda dbapi_connection: None)
    with Cluster(notes.primary_url, notes.replica_urls) as c, general_log(notes.primary) as log:
        for i in range(3):
            with c.session() as s:
                s.add(Note(body=f"query-{i}"))
                s.commit()
                assert s.causal_token == _binlog_gtid(notes)
    assert _last_gtid_queries(log) == 3


@pytest.mark.server("mariadb", reason="the token is MariaDB's @@last_gtid, from session tracking")
def test_commit_without_a_gtid_asks_the_server(notes: Sandbox) -> None:
    """A commit that wrote nothing to the binary log reports no GTID: the query says which."""
    with Cluster(notes.primary_url, notes.replica_urls) as c:
        with c.session() as s:
            s.add(Note(body="locked"))
            s.commit()
            written = s.causal_token
        with general_log(notes.primary) as log, c.session() as s:
            # A locking read counts as a write for read-your-writes; nothing is binlogged.
            s.execute(select(Note).where(Note.body == "locked").with_for_update()).all()
            s.commit()
            assert s.causal_token == written
    assert _last_gtid_queries(log) == 1


@pytest.mark.server("mariadb", reason="the token is MariaDB's @@last_gtid, from session tracking")
def test_tracking_survives_the_check_in_reset(notes: Sandbox) -> None:
    """COM_RESET_CONNECTION drops session variables: tracking is set again after it."""
    with Cluster(
        notes.primary_url,
        notes.replica_urls,
        engine_options={"pool_size": 1, "max_overflow": 0},
    ) as c:
        with c.session() as s:  # the pool's one connection, made and tracked
            s.add(Note(body="before-reset"))
            s.commit()
        with general_log(notes.primary) as log:
            with c.session() as s:
                s.execute(text("SET @dirty = 1"))  # pins; the connection is reset at check-in
                s.add(Note(body="dirty"))
                s.commit()
                assert s.causal_token == _binlog_gtid(notes)
            for i in range(3):
                with c.session() as s:
                    s.add(Note(body=f"after-reset-{i}"))
                    s.commit()
                    assert s.causal_token == _binlog_gtid(notes)
    assert _last_gtid_queries(log) == 0
    assert sum("session_track_system_variables" in q for q in log) == 1  # once, after the reset


def _waits(c: Cluster) -> int:
    return sum(n["causal_waits"] for n in c.stats().to_dict()["nodes"].values())


def test_a_wait_already_seen_applied_is_skipped(
    notes: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a replica was seen to apply a token, sessions with it (or older) do not wait."""
    from rwsplit.routing.consistency import AppliedTokens

    monkeypatch.setattr(AppliedTokens, "MAX_AGE", 300.0)  # a slow machine must not expire it
    with Cluster(notes.primary_url, notes.replica_urls, causal_timeout=5) as c:
        with c.session() as s:
            s.add(Note(body="first"))
            s.commit()
            older = s.causal_token
            s.add(Note(body="skip"))
            s.commit()
            token = s.causal_token
        assert older is not None and token is not None
        for _ in range(2 * len(notes.replicas)):  # round robin: each replica at least twice
            with c.session(causal_token=token) as s2:
                assert s2.scalars(select(Note.body).where(Note.body == "skip")).all() == ["skip"]
        assert _waits(c) == len(notes.replicas)  # one per replica, the others skipped
        with c.session(causal_token=older) as s3:
            s3.scalars(select(Note.body)).all()
        assert _waits(c) == len(notes.replicas)  # older: covered too
        with sql_threads_stopped(notes):
            with c.session() as s:
                s.add(Note(body="newer"))
                s.commit()
                newer = s.causal_token
            c.causal_timeout = 0.2
            with c.session(causal_token=newer) as s4:
                # Not known applied: it waits, times out, and reads its write on the primary.
                got = s4.scalars(select(Note.body).where(Note.body == "newer")).all()
            assert got == ["newer"]
        assert _waits(c) == len(notes.replicas) + 1


def test_a_wait_the_replica_refuses_reads_from_the_primary(notes: Sandbox) -> None:
    """A token the replica cannot parse: the driver's error is caught, the read goes on."""
    with Cluster(notes.primary_url, notes.replica_urls) as c:
        with c.session() as s:
            s.add(Note(body="refused"))
            s.commit()
        before = snapshot(notes)
        with c.session(causal_token="not-a-gtid") as s2:
            got = s2.scalars(select(Note.body).where(Note.body == "refused")).all()
        assert got == ["refused"]
        d = delta(before, snapshot(notes))
        assert d["primary"]["Com_select"] == 1  # the read fell back to the primary
        assert c.topology.readable_replicas(c.max_replica_lag)  # no replica was taken out
