"""Routing rules of RoutingSession.get_bind, without a server (engines never connect here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Integer, String, insert, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rwsplit import (
    Cluster,
    ConfigurationError,
    NoPrimaryError,
    NoReplicaAvailableError,
    Role,
    RoutingError,
    Topology,
)

P = "mysql+pymysql://app:s3cret@db1:3306/shop"
R1 = "mysql+pymysql://app:s3cret@db2:3306/shop"
R2 = "mysql+pymysql://app:s3cret@db3:3306/shop"


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster(P, [R1, R2]) as c:
        yield c


def host(engine: object) -> str:
    return engine.url.host  # type: ignore[attr-defined,no-any-return]


def test_reads_round_robin_over_replicas(cluster: Cluster) -> None:
    s = cluster.session()
    hosts = [host(s.get_bind(clause=select(User))) for _ in range(4)]
    assert hosts == ["db2", "db3", "db2", "db3"]


def test_writes_go_to_the_primary_and_stick(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s.get_bind(clause=insert(User).values(name="x"))) == "db1"
    # Sticky after write: a read in the same unit of work stays on the primary.
    assert host(s.get_bind(clause=select(User))) == "db1"


def test_sticky_ends_with_the_transaction(cluster: Cluster) -> None:
    s = cluster.session()
    s.get_bind(clause=update(User).values(name="y"))
    assert s.on_primary
    s.begin()
    s.rollback()
    assert not s.on_primary
    assert host(s.get_bind(clause=select(User))) in ("db2", "db3")


def test_flush_goes_to_the_primary(cluster: Cluster) -> None:
    s = cluster.session()
    s._flushing = True
    assert host(s.get_bind(User)) == "db1"
    s._flushing = False
    assert s.on_primary


def test_locking_read_goes_to_the_primary(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s.get_bind(clause=select(User).with_for_update())) == "db1"
    assert s.on_primary


def test_text_is_classified(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s.get_bind(clause=text("SELECT * FROM users"))) in ("db2", "db3")
    assert host(s.get_bind(clause=text("DELETE FROM users"))) == "db1"


def test_use_primary_block(cluster: Cluster) -> None:
    s = cluster.session()
    with s.use_primary():
        assert host(s.get_bind(clause=select(User))) == "db1"
    assert host(s.get_bind(clause=select(User))) in ("db2", "db3")


def test_execution_option_forces_primary(cluster: Cluster) -> None:
    s = cluster.session()
    stmt = select(User).execution_options(rwsplit_target="primary")
    assert host(s.get_bind(clause=stmt)) == "db1"
    assert host(s.get_bind(clause=select(User), rwsplit_target="primary")) == "db1"


def test_replica_option_refuses_a_write(cluster: Cluster) -> None:
    s = cluster.session()
    with pytest.raises(RoutingError, match="never go to a replica"):
        s.get_bind(clause=update(User).values(name="z").execution_options(rwsplit_target="replica"))


def test_bad_execution_option_value(cluster: Cluster) -> None:
    s = cluster.session()
    with pytest.raises(ConfigurationError, match="'primary' or 'replica'"):
        s.get_bind(clause=select(User).execution_options(rwsplit_target="master"))


def test_session_state_pins_the_session(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s.get_bind(clause=text("SET @x = 1"))) == "db1"
    assert s.pins
    assert host(s.get_bind(clause=select(User))) == "db1"


def test_no_replica_falls_back_to_primary(cluster: Cluster) -> None:
    for r in cluster.topology.replicas:
        cluster.mark_down(r.name, "test")
    s = cluster.session()
    assert host(s.get_bind(clause=select(User))) == "db1"


def test_no_replica_raises_when_fallback_is_off() -> None:
    with Cluster(P, [R1], fallback_to_primary=False, down_retry_interval=60) as c:
        c.mark_down("db2:3306", "test")
        with pytest.raises(NoReplicaAvailableError, match="fallback"):
            c.session().get_bind(clause=select(User))


def test_down_replica_is_readmitted_after_the_interval() -> None:
    with Cluster(P, [R1, R2], down_retry_interval=0) as c:
        c.mark_down("db2:3306", "test")
        s = c.session()
        hosts = {host(s.get_bind(clause=select(User))) for _ in range(4)}
        assert hosts == {"db2", "db3"}


def test_no_primary_is_a_typed_error(cluster: Cluster) -> None:
    t = cluster.topology
    cluster.publish(t.with_nodes([t.primary.evolve(healthy=False)]))  # type: ignore[union-attr]
    with pytest.raises(NoPrimaryError, match="retry"):
        cluster.session().get_bind(clause=insert(User).values(name="x"))


def test_two_primaries_refuse_writes(cluster: Cluster) -> None:
    from rwsplit import SplitBrainError

    t = cluster.topology
    r = t.replicas[0].evolve(role=Role.PRIMARY)
    cluster.publish(t.with_nodes([r]))
    with pytest.raises(SplitBrainError, match="claim to be the primary"):
        cluster.write_engine()


def test_topology_listeners_hear_changes(cluster: Cluster) -> None:
    seen: list[tuple[Topology, Topology]] = []
    cluster.subscribe(lambda old, new: seen.append((old, new)))
    cluster.mark_down("db2:3306", "gone")
    assert len(seen) == 1
    assert not seen[0][1].node("db2:3306").healthy


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"primary": "not a url"}, "not a valid SQLAlchemy URL"),
        ({"primary": "mysql+pymysql://u:pw@/db"}, "has no host"),
        ({"primary": P, "replicas": R1}, "list of URLs"),
        ({"primary": P, "replicas": [P]}, "appears twice"),
        ({"primary": P, "max_replica_lag": -1}, "max_replica_lag"),
        ({"primary": 42}, "URL string"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Cluster(**kwargs)  # type: ignore[arg-type]


def test_passwords_never_in_reprs_or_errors(cluster: Cluster) -> None:
    assert "s3cret" not in repr(cluster)
    assert "s3cret" not in repr(cluster.topology)
    with pytest.raises(ConfigurationError) as info:
        Cluster("mysql+pymysql://u:s3cret@/db")
    assert "s3cret" not in str(info.value)


def test_bind_arguments_are_refused() -> None:
    with Cluster(P) as c, pytest.raises(ConfigurationError, match="bind"):
        c.session(bind=c.write_engine())


def test_read_your_writes_option_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="'gtid', 'primary', 'off'"):
        Cluster(P, read_your_writes="sometimes")
    with pytest.raises(ConfigurationError, match="causal_timeout"):
        Cluster(P, causal_timeout=-1)


def test_primary_window_reads_primary_after_a_write() -> None:
    with Cluster(P, [R1], read_your_writes="primary", sticky_window=60) as c:
        s = c.session()
        s._router.committed(None)  # as after a commit that wrote
        assert host(s.get_bind(clause=select(User))) == "db1"


def test_causal_token_is_kept_from_the_constructor(cluster: Cluster) -> None:
    assert cluster.session(causal_token="0-1-42").causal_token == "0-1-42"
    assert cluster.session().causal_token is None


def test_bulk_operations_and_connection_stick_to_the_primary(cluster: Cluster) -> None:
    s = cluster.session()
    assert host(s.get_bind(User)) == "db1"  # mapper only, no statement: bulk save, connection()
    assert host(s.get_bind(clause=select(User))) == "db1"
