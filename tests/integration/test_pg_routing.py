"""PostgreSQL streaming replication under the Cluster API: routing, causal reads by LSN, lag.

One sandbox (a primary and two hot standbys, ``log_statement = 'all'``) for the module: every
test leaves replay running and the data it made. Where a statement ran is read from each
server's own statement log (a unique marker comment in the SQL).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import Cluster, NoReplicaAvailableError
from rwsplit.sandbox.postgresql import PgNode, PgSandbox
from rwsplit.servers import postgresql as pg
from rwsplit.topology.pg_probe import PgProbe

from ..fix_pg import require_postgresql
from .pg_util import set_setting

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sb() -> Iterator[PgSandbox]:
    require_postgresql()
    with PgSandbox(standbys=2, log_statement="all") as sandbox:
        with sandbox.primary.connect() as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        sandbox.wait_caught_up()
        yield sandbox


@pytest.fixture
def cluster(sb: PgSandbox) -> Iterator[Cluster]:
    with Cluster(sb.primary.url, sb.standby_urls, causal_timeout=0.5) as c:
        yield c


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    v: Mapped[str] = mapped_column(String)


def _marker() -> str:
    return f"m{uuid.uuid4().hex}"


def ran_on(sb: PgSandbox, marker: str) -> list[str]:
    """The nodes whose statement log shows a statement carrying *marker*."""
    return [n.name for n in sb.nodes if marker in n.log_path.read_text(errors="replace")]


def _next_id() -> int:
    return uuid.uuid4().int % 2_000_000_000


def test_reads_run_on_standbys_writes_on_the_primary(sb: PgSandbox, cluster: Cluster) -> None:
    reads = [_marker() for _ in range(4)]
    write = _marker()
    with cluster.session() as s:
        for m in reads:
            s.execute(text(f"SELECT /* {m} */ count(*) FROM items"))
        s.execute(text(f"INSERT /* {write} */ INTO items VALUES ({_next_id()}, 'w')"))
        s.commit()
    standbys = {n.name for n in sb.standbys}
    for m in reads:
        where = ran_on(sb, m)
        assert len(where) == 1 and where[0] in standbys, (m, where)
    # Round robin: both standbys took reads.
    assert {ran_on(sb, m)[0] for m in reads} == standbys
    assert ran_on(sb, write) == [sb.primary.name]
    stats = cluster.stats().to_dict()["nodes"]
    assert stats[sb.primary.address]["writes"] == 1
    assert sum(stats[n.address]["reads"] for n in sb.standbys) == 4


def test_a_standby_cannot_write_and_replica_connections_are_read_only(
    sb: PgSandbox, cluster: Cluster
) -> None:
    import psycopg

    from rwsplit.integrations.sqlalchemy import is_connection_failure, is_read_only_rejection

    with sb.standbys[0].connect() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        try:
            conn.execute("INSERT INTO items VALUES (-1, 'never')")
        except psycopg.Error as exc:  # what the session heals on: re-run on the primary
            assert is_read_only_rejection(exc) and not is_connection_failure(exc)
            raise
    with cluster.session() as s:
        value = s.execute(
            text("SELECT current_setting('transaction_read_only')"),
            execution_options={"rwsplit_target": "replica"},
        ).scalar()
    assert value == "on"


def test_overrides_send_reads_to_the_primary(sb: PgSandbox, cluster: Cluster) -> None:
    a, b = _marker(), _marker()
    with cluster.session() as s:
        with s.use_primary():
            s.execute(text(f"SELECT /* {a} */ 1"))
        s.execute(text(f"SELECT /* {b} */ 1"), execution_options={"rwsplit_target": "primary"})
    assert ran_on(sb, a) == [sb.primary.name]
    assert ran_on(sb, b) == [sb.primary.name]


def test_pg_classifier_keeps_locking_reads_and_sequences_on_the_primary(
    sb: PgSandbox, cluster: Cluster
) -> None:
    a, b = _marker(), _marker()
    with cluster.session() as s:
        s.execute(text(f"SELECT /* {a} */ * FROM items FOR NO KEY UPDATE"))
        s.rollback()
        s.execute(text(f"SELECT /* {b} */ pg_advisory_xact_lock(42)"))
        s.rollback()
    assert ran_on(sb, a) == [sb.primary.name]
    assert ran_on(sb, b) == [sb.primary.name]


def _write(s: object, row: int, value: str) -> None:
    s.execute(text("INSERT INTO items VALUES (:i, :v)"), {"i": row, "v": value})  # type: ignore[attr-defined]
    s.commit()  # type: ignore[attr-defined]


def test_causal_read_waits_then_reads_the_primary_when_replay_is_paused(
    sb: PgSandbox, cluster: Cluster
) -> None:
    row = _next_id()
    for n in sb.standbys:
        sb.pause_replay(n.name)
    try:
        with cluster.session() as s:
            _write(s, row, "paused")
            token = s.causal_token
            assert token is not None and pg.parse_token(token) is not None
            marker = _marker()
            started = time.monotonic()
            got = s.execute(text(f"SELECT /* {marker} */ v FROM items WHERE id = {row}")).scalar()
            elapsed = time.monotonic() - started
        assert got == "paused"  # never a stale read
        assert ran_on(sb, marker) == [sb.primary.name]
        assert elapsed >= 0.45  # it waited (about causal_timeout) before giving up
        stats = cluster.stats().to_dict()["nodes"]
        assert sum(stats[n.address]["causal_timeouts"] for n in sb.standbys) == 1
        # Without read-your-writes the same read on a standby is stale: the wait mattered.
        with sb.standbys[0].connect() as conn:
            stale = conn.execute(f"SELECT v FROM items WHERE id = {row}").fetchone()
        assert stale is None
    finally:
        for n in sb.standbys:
            sb.resume_replay(n.name)
    sb.wait_caught_up()


def test_causal_read_on_a_standby_sees_the_write_and_is_not_asked_twice(
    sb: PgSandbox, cluster: Cluster
) -> None:
    row = _next_id()
    with cluster.session() as s:
        _write(s, row, "fresh")
        reads = [_marker() for _ in range(4)]
        for m in reads:
            got = s.execute(text(f"SELECT /* {m} */ v FROM items WHERE id = {row}")).scalar()
            assert got == "fresh"
    standbys = {n.name for n in sb.standbys}
    assert all(ran_on(sb, m)[0] in standbys for m in reads)
    stats = cluster.stats().to_dict()["nodes"]
    # One wait per standby at most: a standby that replayed the token is not asked again.
    assert sum(stats[n.address]["causal_waits"] for n in sb.standbys) <= 2
    assert sum(stats[n.address]["causal_timeouts"] for n in sb.standbys) == 0


def test_the_token_carries_to_another_session(sb: PgSandbox, cluster: Cluster) -> None:
    row = _next_id()
    with cluster.session() as s:
        _write(s, row, "carried")
        token = s.causal_token
    sb.pause_replay(sb.standbys[0].name)
    sb.pause_replay(sb.standbys[1].name)
    try:
        with cluster.session(causal_token=token) as s2:
            marker = _marker()
            # Replay may have passed the write before the pause: either a standby shows it,
            # or the read went to the primary. Never a read without it.
            got = s2.execute(text(f"SELECT /* {marker} */ v FROM items WHERE id = {row}"))
            assert got.scalar() == "carried"
    finally:
        for n in sb.standbys:
            sb.resume_replay(n.name)


def test_a_mysql_token_on_a_postgresql_cluster_reads_the_primary(
    sb: PgSandbox, cluster: Cluster
) -> None:
    marker = _marker()
    with cluster.session(causal_token="0-1-42") as s:
        s.execute(text(f"SELECT /* {marker} */ 1"))
    assert ran_on(sb, marker) == [sb.primary.name]


def test_read_your_writes_primary_and_off(sb: PgSandbox) -> None:
    row = _next_id()
    for n in sb.standbys:
        sb.pause_replay(n.name)
    try:
        with Cluster(sb.primary.url, sb.standby_urls, read_your_writes="primary") as c:
            with c.session() as s:
                _write(s, row, "sticky")
                marker = _marker()
                got = s.execute(text(f"SELECT /* {marker} */ v FROM items WHERE id = {row}"))
                assert got.scalar() == "sticky"
            assert ran_on(sb, marker) == [sb.primary.name]
        with Cluster(sb.primary.url, sb.standby_urls, read_your_writes="off") as c:
            with c.session() as s:
                _write(s, row + 1, "unseen")
                marker = _marker()
                got = s.execute(text(f"SELECT /* {marker} */ v FROM items WHERE id = {row + 1}"))
                assert got.scalar() is None  # "off": the standby's stale answer, as documented
            assert ran_on(sb, marker)[0] in {n.name for n in sb.standbys}
    finally:
        for n in sb.standbys:
            sb.resume_replay(n.name)
    sb.wait_caught_up()


def _state(node: PgNode) -> pg.PgNodeState:
    from sqlalchemy.engine import make_url

    with PgProbe(make_url(node.url), 5.0) as probe:
        return probe.probe()


def test_an_idle_primary_does_not_make_a_caught_up_standby_look_late(
    sb: PgSandbox, cluster: Cluster
) -> None:
    with cluster.session() as s:
        _write(s, _next_id(), "last")
    sb.wait_caught_up()
    deadline = time.monotonic() + 15
    while True:  # until the last replayed commit is over a second old
        state = _state(sb.standbys[0])
        if state.replay_age is not None and state.replay_age > 1.2:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    topology = cluster.refresh()
    for n in sb.standbys:
        assert topology.node(n.address).lag_seconds == 0.0
    assert len(topology.readable_replicas(max_lag=0.5)) == 2


def test_a_lagging_standby_is_ejected_and_readmitted(sb: PgSandbox) -> None:
    late = sb.standbys[0]
    set_setting(late, "recovery_min_apply_delay", "3000")
    try:
        with Cluster(sb.primary.url, sb.standby_urls, max_replica_lag=1.0) as c:
            with c.session() as s:
                _write(s, _next_id(), "delayed")
            deadline = time.monotonic() + 10
            while True:
                node = c.refresh().node(late.address)
                if node.lag_seconds is not None and node.lag_seconds > 1.0:
                    break
                assert time.monotonic() < deadline, node
                time.sleep(0.1)
            readable = [n.name for n in c.topology.readable_replicas(c.max_replica_lag)]
            assert readable == [sb.standbys[1].address]
            markers = [_marker() for _ in range(3)]
            with c.session(causal_token=None) as s:
                for m in markers:
                    s.execute(text(f"SELECT /* {m} */ 1"))
            assert all(ran_on(sb, m) == [sb.standbys[1].name] for m in markers)
            deadline = time.monotonic() + 15
            while c.refresh().node(late.address).lag_seconds != 0.0:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert len(c.topology.readable_replicas(c.max_replica_lag)) == 2
    finally:
        set_setting(late, "recovery_min_apply_delay", None)
        sb.wait_caught_up()


def test_no_standby_and_no_fallback_raises(sb: PgSandbox) -> None:
    with (
        Cluster(sb.primary.url, [], fallback_to_primary=False) as c,
        c.session() as s,
        pytest.raises(NoReplicaAvailableError),
    ):
        s.execute(text("SELECT 1"))


def test_shadow_mode_runs_everything_on_the_primary_and_counts_where_reads_would_go(
    sb: PgSandbox,
) -> None:
    markers = [_marker() for _ in range(2)]
    with Cluster(sb.primary.url, sb.standby_urls, routing="shadow") as c:
        with c.session() as s:
            for m in markers:
                s.execute(text(f"SELECT /* {m} */ 1"))
        stats = c.stats().to_dict()
    assert stats["routing"] == "shadow"
    assert all(ran_on(sb, m) == [sb.primary.name] for m in markers)
    assert sum(stats["nodes"][n.address]["reads"] for n in sb.standbys) == 2


def test_orm_sessionmaker_reloads_an_expired_object_with_its_own_write(sb: PgSandbox) -> None:
    row = _next_id()
    for n in sb.standbys:
        sb.pause_replay(n.name)
    try:
        with Cluster(sb.primary.url, sb.standby_urls, causal_timeout=0.2) as c:
            Session = c.sessionmaker()
            with Session() as s:
                item = Item(id=row, v="orm")
                s.add(item)
                s.commit()  # expires item: the next attribute access reloads it
                assert item.v == "orm"  # from the primary: no standby replayed it
    finally:
        for n in sb.standbys:
            sb.resume_replay(n.name)
    sb.wait_caught_up()


def test_an_unprivileged_application_account(sb: PgSandbox) -> None:
    """No superuser, no pg_read_all_stats: routing, causal reads and refresh still work (the
    probe sees no sender_host, so no source is assumed)."""
    from sqlalchemy.engine import make_url

    with sb.primary.connect() as conn:
        conn.execute("CREATE ROLE plain_app LOGIN PASSWORD 'app-pw'")
        conn.execute("GRANT SELECT, INSERT ON items TO plain_app")
    sb.wait_caught_up()

    def as_app(url: str) -> str:
        return (
            make_url(url)
            .set(username="plain_app", password="app-pw")
            .render_as_string(hide_password=False)
        )

    row = _next_id()
    with Cluster(as_app(sb.primary.url), [as_app(u) for u in sb.standby_urls]) as c:
        topology = c.refresh()
        assert topology.primary is not None and topology.primary.name == sb.primary.address
        assert all(n.replication is None for n in topology.replicas)
        assert len(topology.readable_replicas()) == 2
        with c.session() as s:
            _write(s, row, "plain")
            assert (s.causal_token or "").startswith("pg:")
            marker = _marker()
            got = s.execute(text(f"SELECT /* {marker} */ v FROM items WHERE id = {row}"))
            assert got.scalar() == "plain"
        assert ran_on(sb, marker)[0] in {n.name for n in sb.standbys}
