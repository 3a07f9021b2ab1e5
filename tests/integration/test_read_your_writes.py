"""Read-your-writes across transactions, on real replication with real lag."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.exc import ObjectDeletedError

from rwsplit import Cluster
from rwsplit.sandbox import Sandbox

from .counters import delta, snapshot

pytestmark = pytest.mark.integration


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(40))


@contextlib.contextmanager
def sql_threads_stopped(sb: Sandbox) -> Iterator[None]:
    """Freeze replication apply on every replica: they lag until the block ends."""
    for r in sb.replicas:
        with contextlib.closing(r.connect()) as c, c.cursor() as cur:
            cur.execute("STOP SLAVE SQL_THREAD")
    try:
        yield
    finally:
        for r in sb.replicas:
            with contextlib.closing(r.connect()) as c, c.cursor() as cur:
                cur.execute("START SLAVE SQL_THREAD")


@pytest.fixture
def notes(sandbox: Sandbox) -> Iterator[Sandbox]:
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as c:
        Base.metadata.drop_all(c.write_engine())
        Base.metadata.create_all(c.write_engine())
    sandbox.wait_caught_up()
    yield sandbox
    sandbox.wait_caught_up()


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
            assert token and token.startswith("0-1-")
            assert s.execute(select(Note.body).where(Note.body == "x")).scalar_one() == "x"
        d = delta(before, snapshot(notes))
        assert d["primary"]["Com_select"] == 1  # SELECT @@last_gtid after the commit
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
