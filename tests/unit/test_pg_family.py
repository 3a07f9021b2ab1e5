"""The PostgreSQL family without a server: LSNs, causal tokens, state parsing, lag, errors,
and the Cluster's choice of family from its URLs."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.engine import make_url

from rwsplit import Cluster, ConfigurationError
from rwsplit.routing.consistency import AppliedTokens, unwaitable_reason
from rwsplit.servers import postgresql as pg
from rwsplit.servers.family import MySQLRouting, PostgreSQLRouting, family_for_url
from rwsplit.topology.model import Node, Role
from rwsplit.topology.pg_probe import nodes_from_states, pg_node

Lsn = pg.Lsn


# ---------------------------------------------------------------------------------- LSN


@pytest.mark.parametrize(
    ("text", "value"),
    [("0/0", 0), ("0/3000060", 0x3000060), ("16/B374D848", (0x16 << 32) | 0xB374D848)],
)
def test_lsn_parses_and_formats(text: str, value: int) -> None:
    lsn = Lsn.parse(text)
    assert lsn.value == value
    assert str(lsn) == text
    assert Lsn.parse(text.lower()) == lsn


def test_lsn_orders_across_the_high_half() -> None:
    assert Lsn.parse("1/0") > Lsn.parse("0/FFFFFFFF")
    assert Lsn.parse("1/0") - Lsn.parse("0/FFFFFFFF") == 1
    assert max(Lsn.parse("A/1"), Lsn.parse("9/FFFFFFFF")) == Lsn.parse("A/1")


@pytest.mark.parametrize(
    "text", ["", "16", "16/", "/1", "G/1", "1/2/3", "123456789/0", " 1/1; DROP", "0-1-42"]
)
def test_lsn_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL LSN"):
        Lsn.parse(text)


def test_lsn_maybe() -> None:
    assert Lsn.maybe(None) is None
    assert Lsn.maybe("") is None
    assert Lsn.maybe("0/10") == Lsn(16)


# ---------------------------------------------------------------------------------- tokens


def test_tokens_are_distinguishable_from_mysql_ones() -> None:
    token = pg.lsn_token(Lsn.parse("16/B374D848"))
    assert token == "pg:16/B374D848"
    assert pg.parse_token(token) == Lsn.parse("16/B374D848")
    for other in (
        "0-1-42",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42",
        "binlog:3e11fa47-71ca-11e1-9e33-c80aa9429562:binlog.000003:1574",
        "primary-only",
        "pg:",
        "pg:1/2'; DROP TABLE t; --",
        "16/B374D848",
    ):
        assert pg.parse_token(other) is None, other


def test_family_token_ownership() -> None:
    assert PostgreSQLRouting().owns_token("pg:0/10")
    assert not PostgreSQLRouting().owns_token("0-1-42")
    assert MySQLRouting().owns_token("0-1-42")
    assert not MySQLRouting().owns_token("pg:0/10")


def test_wait_sql_quotes_only_a_parsed_lsn_and_bounds_the_wait() -> None:
    sql = pg.wait_sql(Lsn.parse("16/B374D848"), 0.5)
    assert sql.startswith("DO $rwsplit$")
    assert "'16/B374D848'::pg_lsn" in sql
    assert "interval '500 milliseconds'" in sql
    assert pg.WAIT_TIMEOUT_SQLSTATE in sql
    assert "pg_last_wal_replay_lsn()" in sql


def test_wait_for_a_foreign_token_asks_nothing() -> None:
    class NoCursor:
        def cursor(self) -> None:
            raise AssertionError("no statement for a token that is not an LSN")

    assert PostgreSQLRouting().wait_for_token(NoCursor(), "0-1-42", 0.5) is False


def test_applied_tokens_understand_lsns() -> None:
    applied = AppliedTokens()
    applied.record("db2:5432", "pg:0/3000060")
    assert applied.covers("db2:5432", "pg:0/3000000")
    assert applied.covers("db2:5432", "pg:0/3000060")
    assert not applied.covers("db2:5432", "pg:0/3000061")
    assert not applied.covers("db3:5432", "pg:0/3000000")
    assert not applied.covers("db2:5432", "0-1-1")


def test_a_token_of_the_other_family_is_unwaitable_with_a_reason() -> None:
    pg_node_ = Node("db2:5432", make_url("postgresql+psycopg://u@db2/x"), Role.REPLICA)
    my_node = Node("db2:3306", make_url("mysql+pymysql://u@db2/x"), Role.REPLICA)
    assert unwaitable_reason("pg:0/10", pg_node_) is None
    reason = unwaitable_reason("0-1-42", pg_node_)
    assert reason is not None and "not a PostgreSQL WAL position" in reason
    reason = unwaitable_reason("pg:0/10", my_node)
    assert reason is not None and "not a MySQL/MariaDB position" in reason


# ---------------------------------------------------------------------------------- state


def _row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "version": "15.10",
        "in_recovery": True,
        "read_only": False,
        "current_lsn": None,
        "receive_lsn": "0/3000060",
        "replay_lsn": "0/3000060",
        "replay_age": 42.0,
        "replay_paused": False,
        "sender_host": "10.0.0.1",
        "sender_port": 5432,
        "receiver_status": "streaming",
        "standbys": "[]",
    }
    row.update(kw)
    return row


def test_parse_a_standby() -> None:
    s = pg.parse_state(_row())
    assert s.in_recovery and not s.writable
    assert s.source == "10.0.0.1:5432"
    assert s.position == Lsn.parse("0/3000060")
    node = pg_node("db2:5432", make_url("postgresql+psycopg://u@db2/x"), s)
    assert node.role is Role.REPLICA
    assert node.replication is not None
    assert node.replication.io_connected and node.replication.sql_running
    assert node.gtid_position == "pg:0/3000060"
    assert node.lag_seconds == 0.0  # streaming, replayed all it received: idle, not late


def test_parse_a_primary_with_standbys() -> None:
    standbys = [
        {"application_name": "db2:5432", "client_addr": "10.0.0.2", "state": "streaming"},
        {"application_name": "walreceiver", "client_addr": None, "state": "catchup"},
    ]
    s = pg.parse_state(
        _row(
            in_recovery=False,
            current_lsn="0/4000000",
            receive_lsn=None,
            replay_lsn=None,
            replay_age=None,
            sender_host=None,
            sender_port=None,
            receiver_status=None,
            standbys=json.dumps(standbys),
        )
    )
    assert s.writable and s.source is None
    assert [x.application_name for x in s.standbys] == ["db2:5432", "walreceiver"]
    node = pg_node("db1:5432", make_url("postgresql+psycopg://u@db1/x"), s)
    assert node.role is Role.PRIMARY and node.lag_seconds is None
    assert node.gtid_position == "pg:0/4000000"


def test_a_fenced_primary_takes_no_role() -> None:
    s = pg.parse_state(_row(in_recovery=False, read_only=True, current_lsn="0/1"))
    assert not s.writable
    node = pg_node("db1:5432", make_url("postgresql+psycopg://u@db1/x"), s)
    assert node.role is Role.UNKNOWN


def test_paused_replay_stops_the_sql_thread() -> None:
    s = pg.parse_state(_row(replay_paused=True, receive_lsn="0/4000000"))
    node = pg_node("db2:5432", make_url("postgresql+psycopg://u@db2/x"), s)
    assert node.replication is not None and not node.replication.sql_running
    assert node.lag_seconds == 42.0  # behind what it received: the last replay's age


def test_replay_lag_rules() -> None:
    def standby(**kw: object) -> pg.PgNodeState:
        return pg.parse_state(_row(**kw))

    primary = pg.parse_state(_row(in_recovery=False, current_lsn="0/3000060"))
    ahead = pg.parse_state(_row(in_recovery=False, current_lsn="0/5000000"))
    # Idle primary: replay == receive == primary's position → 0 however old the last commit.
    assert pg.replay_lag(standby(replay_age=3600.0), primary) == 0.0
    # Streaming and everything received replayed: WAL still in flight is not lag.
    assert pg.replay_lag(standby(), ahead) == 0.0
    # Not streaming and behind the primary: the age of the last replayed commit.
    assert pg.replay_lag(standby(receiver_status=None), ahead) == 42.0
    assert pg.replay_lag(standby(receiver_status=None), primary) == 0.0
    assert pg.replay_lag(standby(receiver_status=None), None) == 42.0
    # Behind what it received.
    assert pg.replay_lag(standby(receive_lsn="0/3000100"), primary) == 42.0
    # Never replayed a transaction and behind: unknown.
    assert pg.replay_lag(standby(receive_lsn="0/3000100", replay_age=None), primary) is None
    assert pg.replay_lag(standby(replay_lsn=None), primary) is None


def test_nodes_from_states_marks_failed_probes_down_and_finds_two_primaries() -> None:
    urls = {n: make_url(f"postgresql+psycopg://u@{n.split(':')[0]}/x") for n in ("a:1", "b:1")}
    nodes = [Node(n, u, Role.PRIMARY) for n, u in urls.items()]
    writable = pg.parse_state(_row(in_recovery=False, current_lsn="0/1"))
    out = nodes_from_states(nodes, {"a:1": writable, "b:1": writable})
    assert [n.role for n in out] == [Role.PRIMARY, Role.PRIMARY]
    out = nodes_from_states(nodes, {"a:1": writable, "b:1": OSError("connection refused")})
    assert out[1].healthy is False and out[1].error is not None
    assert "connection refused" in out[1].error


# ---------------------------------------------------------------------------------- errors


class _PgError(Exception):
    def __init__(self, sqlstate: str | None, msg: str = "x") -> None:
        super().__init__(msg)
        self.sqlstate = sqlstate


class OperationalError(Exception):
    """Named as the drivers name a lost connection (psycopg / SQLAlchemy's adapters)."""


def test_error_classes() -> None:
    assert pg.is_read_only_rejection(_PgError("25006"))
    assert not pg.is_read_only_rejection(_PgError("23505"))
    assert pg.is_connection_lost(_PgError("08006"))
    assert pg.is_connection_lost(_PgError("57P01"))
    assert pg.is_connection_lost(OperationalError("server closed the connection unexpectedly"))
    assert not pg.is_connection_lost(_PgError("23505"))
    assert not pg.is_connection_lost(_PgError("25006"))
    assert pg.is_replica_unusable(_PgError("28P01"))
    assert pg.is_replica_unusable(_PgError("53300"))
    assert not pg.is_replica_unusable(_PgError("42P01"))
    assert pg.is_wait_timeout(_PgError(pg.WAIT_TIMEOUT_SQLSTATE))
    assert pg.server_answered(_PgError("53300")) and not pg.server_answered(_PgError("08006"))


def test_sqlstate_through_sqlalchemy_wrappers() -> None:
    class Wrapper(Exception):
        orig = _PgError("25006")

    assert pg.sqlstate(Wrapper()) == "25006"
    assert pg.sqlstate(None) is None


# ---------------------------------------------------------------------------------- cluster


def test_the_family_comes_from_the_url() -> None:
    assert family_for_url(make_url("postgresql+asyncpg://u@db1/x")).name == "postgresql"
    assert family_for_url(make_url("mariadb+pymysql://u@db1/x")).name == "mysql"
    with Cluster(
        "postgresql+psycopg://app:pw@db1/shop", ["postgresql+psycopg://app:pw@db2:5433/shop"]
    ) as cluster:
        assert cluster.family.name == "postgresql"
        assert [n.name for n in cluster.topology.nodes] == ["db1:5432", "db2:5433"]
        assert repr(cluster) == "<Cluster db1:5432(primary), db2:5433(replica)>"


def test_a_cluster_runs_one_family() -> None:
    with pytest.raises(ConfigurationError, match="same server family"):
        Cluster("postgresql+psycopg://app@db1/shop", ["mysql+pymysql://app@db2/shop"])


def test_a_postgresql_cluster_gets_the_postgresql_monitor() -> None:
    from rwsplit.topology.pg_monitor import PgMonitor

    # auto_failover needs no replication account on PostgreSQL (standbys keep their own).
    cluster = Cluster("postgresql+psycopg://app@127.0.0.1:1/shop", auto_failover=True)
    try:
        assert isinstance(cluster.monitor, PgMonitor)
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("driver", "expected"),
    [
        ("postgresql+psycopg", {"connect_timeout": 3}),
        ("postgresql+psycopg_async", {"connect_timeout": 2}),
        ("postgresql+asyncpg", {"timeout": 1.5}),
    ],
)
def test_timeouts(driver: str, expected: dict[str, object]) -> None:
    connect = 2.5 if expected.get("connect_timeout") == 3 else (1.5 if "timeout" in expected else 1)
    assert PostgreSQLRouting().timeout_args(driver, connect, 10.0, 10.0) == expected


def test_what_commits_on_postgresql() -> None:
    from rwsplit.cluster import _pg_may_commit_cached
    from rwsplit.routing.classify import classify

    def commits(sql: str) -> bool:
        return _pg_may_commit_cached(sql, classify(sql, "postgresql").flags)

    assert commits("COMMIT") and commits("END") and commits("COMMIT PREPARED 'x'")
    assert commits("PREPARE TRANSACTION 'x'")  # durable from here on: fence-checked first
    assert not commits("ROLLBACK") and not commits("ABORT")
    assert not commits("INSERT INTO t VALUES (1)")


def test_recovery_conflicts() -> None:
    msg = "canceling statement due to conflict with recovery"
    assert pg.is_recovery_conflict(_PgError("40001", msg))
    assert pg.is_recovery_conflict(_PgError("40P01", msg))
    assert not pg.is_recovery_conflict(_PgError("40001", "could not serialize access"))
    assert not pg.is_recovery_conflict(_PgError("25006", msg))
