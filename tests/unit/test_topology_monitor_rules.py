"""Roles, failure detection, lag and candidate choice, without a server."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from rwsplit.failover import _choose
from rwsplit.monitor import ProbeResult
from sqlalchemy.engine import make_url

from rwsplit import Cluster, ConfigurationError, FailoverError, FailoverOptions, Monitor
from rwsplit.cli import main
from rwsplit.servers import MariaDB, NodeState
from rwsplit.topology import Node, Replication, Role, Topology, node_from_state, role_of

D = MariaDB()
BASE = {"server_id": 2, "version": "10.11.19-MariaDB", "read_only": 1, "own_binlog": ""}


def state(executed: str, *, replica: str | None = "Yes", read_only: int = 1) -> NodeState:
    status = []
    if replica is not None:
        status = [
            {
                "Master_Host": "db1",
                "Master_Port": 3306,
                "Slave_IO_Running": replica,
                "Slave_SQL_Running": "Yes",
                "Seconds_Behind_Master": 0 if replica == "Yes" else None,
            }
        ]
    variables = dict(BASE, executed=executed, replica_applied=executed, read_only=read_only)
    return D.parse_state(variables, status)


def test_roles() -> None:
    assert role_of(state("0-1-5")) is Role.REPLICA
    assert role_of(state("0-1-5", replica=None, read_only=0)) is Role.PRIMARY
    # Read-only and replicating from nobody: a fenced or demoted node takes no traffic.
    assert role_of(state("0-1-5", replica=None, read_only=1)) is Role.UNKNOWN
    node = node_from_state("db2:3306", make_url("mysql+pymysql://u:pw@db2"), state("0-1-5"))
    assert node.role is Role.REPLICA and node.lag_seconds == 0.0 and node.read_only


def test_choose_most_advanced_then_preferred_never_promote() -> None:
    order = ["a", "b", "c"]
    states = {"a": state("0-1-9"), "b": state("0-1-10"), "c": state("0-1-10")}
    opts = FailoverOptions("repl", "pw")
    assert _choose(states, opts, order) == "b"
    assert _choose(states, FailoverOptions("repl", "pw", preferred=("c",)), order) == "c"
    assert _choose(states, FailoverOptions("repl", "pw", preferred=("a",)), order) == "b"
    only_a = FailoverOptions("repl", "pw", never_promote=("b", "c"))
    assert _choose(states, only_a, order) == "a"
    with pytest.raises(FailoverError, match="never_promote"):
        _choose(states, FailoverOptions("repl", "pw", never_promote=tuple(order)), order)


def test_failover_options_never_show_the_password() -> None:
    opts = FailoverOptions("repl", "Top-Secret-9")
    assert "Top-Secret-9" not in repr(opts) + str(opts)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster("mysql+pymysql://u:pw@db1/app", ["mysql+pymysql://u:pw@db2/app"]) as c:
        yield c


def _results(primary_failures: int, replica_io: str) -> dict[str, ProbeResult]:
    return {
        "db1:3306": ProbeResult("db1:3306", None, "2003: refused", primary_failures),
        "db2:3306": ProbeResult("db2:3306", state("0-1-5", replica=replica_io), None, 0),
    }


def test_primary_is_dead_only_after_n_failures_and_when_replicas_lost_it(
    cluster: Cluster,
) -> None:
    m = Monitor(cluster, failure_threshold=3)
    m._primary_name = "db1:3306"
    assert not m._primary_dead(_results(2, "Connecting"))  # not enough failures yet
    assert not m._primary_dead(_results(3, "Yes"))  # replicas still stream: a partition
    assert m._primary_dead(_results(3, "Connecting"))
    assert m._primary_dead(_results(4, "No"))


def test_dead_primary_without_auto_failover_is_logged_once(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    m = Monitor(cluster, failure_threshold=3)
    m._primary_name = "db1:3306"
    caplog.set_level(logging.ERROR, logger="rwsplit.monitor")
    for failures in (3, 4, 5):
        m._failures["db1:3306"] = failures
        m._on_primary_dead(_results(failures, "Connecting"))
    assert len([r for r in caplog.records if "run 'rwsplit failover'" in r.getMessage()]) == 1


def test_gtid_lag_keeps_growing_while_a_replica_applies_nothing(cluster: Cluster) -> None:
    m = Monitor(cluster)
    primary = state("0-1-10", replica=None, read_only=0)
    m._remember_primary_position("db1:3306", primary, now=100.0)
    m._remember_primary_position("db1:3306", state("0-1-12", replica=None, read_only=0), 101.0)
    stuck = state("0-1-10", replica="Yes")
    # Position 11 appeared at t=101: a replica still at 10 is behind since then.
    assert m._lag(stuck, None, now=104.0) == 3.0
    assert m._lag(stuck, 7.0, now=104.0) == 7.0  # Seconds_Behind_Master when larger
    assert m._lag(state("0-1-12"), None, now=104.0) == 0.0


def test_monitor_option_checks(cluster: Cluster) -> None:
    with pytest.raises(ConfigurationError, match="interval"):
        Monitor(cluster, interval=0)
    with pytest.raises(ConfigurationError, match="failover_options"):
        Monitor(cluster, auto_failover=True)


def test_failover_cli_needs_a_replication_account(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RWSPLIT_REPLICATION_USER", raising=False)
    assert main(["failover", "--primary", "mysql+pymysql://u:Pw-123@db1/app"]) == 1
    err = capsys.readouterr().err
    assert "--replication-user" in err and "Pw-123" not in err


def test_switchover_needs_a_target() -> None:
    assert main(["switchover", "--primary", "mysql+pymysql://u@db1/app"]) == 2


def test_unknown_switchover_target_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RWSPLIT_REPLICATION_USER", "repl")
    args = ["switchover", "--to", "nowhere:1", "--primary", "mysql+pymysql://u:Pw-9@db1/app"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "no node called 'nowhere:1'" in err and "Pw-9" not in err


class _Ctx:
    """The parts of SQLAlchemy's ExceptionContext the handler reads."""

    def __init__(self, statement: str | None, committing: bool = False, code: int = 2013):
        import pymysql

        self.is_pre_ping = False
        self.is_disconnect = code in (2013, 2006)
        self.original_exception = pymysql.err.OperationalError(code, "Lost connection")
        self.statement = statement
        self.connection = self
        self.info: dict[str, object] = {"rwsplit.committing": True} if committing else {}

    def _is_autocommit_isolation(self) -> bool:
        return False


def test_primary_failures_say_whether_to_retry(cluster: Cluster) -> None:
    from rwsplit import RetryableWriteError, TransactionOutcomeUnknownError

    with pytest.raises(RetryableWriteError, match="retry the whole unit of work"):
        cluster._on_primary_error("db1:3306", _Ctx("INSERT INTO t VALUES (1)"))  # type: ignore[arg-type]
    with pytest.raises(TransactionOutcomeUnknownError, match="may or may not"):
        cluster._on_primary_error("db1:3306", _Ctx(None, committing=True))  # type: ignore[arg-type]
    with pytest.raises(TransactionOutcomeUnknownError):
        cluster._on_primary_error("db1:3306", _Ctx("/* x */ CREATE TABLE t (a INT)"))  # type: ignore[arg-type]
    # A rollback that fails after a successful commit: nothing unknown.
    with pytest.raises(RetryableWriteError):
        cluster._on_primary_error("db1:3306", _Ctx(None))  # type: ignore[arg-type]
    # An ordinary SQL error is left alone.
    cluster._on_primary_error("db1:3306", _Ctx("INSERT", code=1062))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- read rotation

URL1, URL2 = make_url("mysql+pymysql://u@db1"), make_url("mysql+pymysql://u@db2")


def replica_node(
    *, source: str = "db1:3306", io: str = "Yes", sql: bool = True, lag: float | None = 0.0
) -> Node:
    rep = Replication(source, 1 if io == "Yes" else None, io, sql)
    return Node("db2:3306", URL2, Role.REPLICA, lag_seconds=lag, replication=rep)


@pytest.mark.parametrize(
    ("replica", "primary_healthy", "reason"),
    [
        (replica_node(), True, None),
        (replica_node(sql=False), True, "SQL thread is not running"),
        (replica_node(io="No"), True, "IO thread is not connected (No)"),
        (replica_node(io="Connecting", lag=None), True, "IO thread is not connected"),
        (replica_node(lag=None), True, "lag is unknown"),
        (replica_node(source="db9:3306", io="No"), True, "replicates from db9:3306"),
        # While the primary it follows is down, a reconnecting replica keeps serving.
        (replica_node(io="Connecting", lag=0.4), False, None),
        (replica_node(io="Connecting", sql=False), False, "SQL thread"),
        # Without a monitor nothing is known: nothing is assumed either.
        (Node("db2:3306", URL2, Role.REPLICA), True, None),
    ],
)
def test_read_rotation_rules(replica: Node, primary_healthy: bool, reason: str | None) -> None:
    primary = Node("db1:3306", URL1, Role.PRIMARY, healthy=primary_healthy, server_id=1)
    topology = Topology((primary, replica))
    got = topology.not_readable_because(replica)
    assert (got is None) if reason is None else (got is not None and reason in got), got
    assert (replica in topology.readable_replicas()) is (reason is None)


def test_a_replica_naming_the_primary_differently_is_recognised_by_server_id() -> None:
    primary = Node("db1:3306", URL1, Role.PRIMARY, server_id=1)
    by_ip = replica_node(source="10.0.0.1:3306")  # connected, Master_Server_Id 1
    assert Topology((primary, by_ip)).readable_replicas() == (by_ip,)
    other = Node("db1:3306", URL1, Role.PRIMARY, server_id=7)
    assert Topology((other, by_ip)).readable_replicas() == ()


def test_node_from_state_records_the_replication_threads() -> None:
    node = node_from_state("db2:3306", URL2, state("0-1-5", replica="Connecting"))
    assert node.replication == Replication("db1:3306", None, "Connecting", True)
    assert node.server_id == 2


# ---------------------------------------------------------------------- hung primary check


class _FakeProbe:
    """Answers SHOW SLAVE STATUS with a scripted IO state; records statements."""

    def __init__(
        self, io_after_restart: str, errno: int = 0, semi_sync_kill: int | None = None
    ) -> None:
        self.dialect = MariaDB()
        self.io = "Yes"
        self.io_after_restart = io_after_restart
        self.errno = errno
        self.semi_sync_kill = semi_sync_kill  # None: semi-sync off on this replica
        self.ran: list[str] = []
        self.timeouts: dict[str, float | None] = {}

    def query(
        self, sql: str, params: tuple[object, ...] = (), *, timeout: float | None = None
    ) -> list[dict[str, object]]:
        if sql.startswith("SELECT @@global.rpl_semi_sync"):
            on = self.semi_sync_kill is not None
            return [{"enabled": int(on), "kill_timeout": self.semi_sync_kill or 5}]
        self.ran.append(sql % params if params else sql)
        self.timeouts[sql] = timeout
        if sql == "START SLAVE IO_THREAD":
            self.io = self.io_after_restart
        if sql == "SHOW SLAVE STATUS":
            row = {"Master_Host": "db1", "Master_Port": 3306, "Slave_IO_Running": self.io}
            return [dict(row, Slave_SQL_Running="Yes", Last_IO_Errno=self.errno)]
        return []


def _hung_monitor(cluster: Cluster, probe: _FakeProbe) -> Monitor:
    m = Monitor(
        cluster,
        timeout=0.05,
        failure_threshold=2,
        auto_failover=True,
        failover_options=FailoverOptions("repl", "pw"),
    )
    m._primary_name = "db1:3306"
    m._probes["db2:3306"] = probe  # type: ignore[assignment]
    return m


@pytest.mark.parametrize(
    ("io_after", "errno", "dead"),
    [
        ("Connecting", 0, True),  # hung or dead: it cannot get back
        ("Yes", 0, False),  # only we cannot reach it: the replica can
        ("Connecting", 1045, False),  # the primary answered (refused the account): alive
    ],
)
def test_replicas_claiming_a_connection_are_asked_by_restarting_their_io_thread(
    cluster: Cluster, io_after: str, errno: int, dead: bool
) -> None:
    probe = _FakeProbe(io_after, errno)
    m = _hung_monitor(cluster, probe)
    # One probe early (failure_threshold - 1): the IO thread is restarted, no verdict yet.
    assert m._hung_primary_confirmed(_results(1, "Yes")) is None
    assert probe.ran == ["STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"]
    assert m._hung_primary_confirmed(_results(2, "Yes")) is dead
    if not dead:  # vouched for: no restarting replication threads every round
        assert m._hung_primary_confirmed(_results(3, "Yes")) is None
        assert probe.ran.count("START SLAVE IO_THREAD") == 1


def test_semi_sync_kill_timeout_is_lowered_for_the_stop_and_put_back(cluster: Cluster) -> None:
    # A semi-sync STOP SLAVE kills its dump thread on the (hung) primary first, waiting up to
    # rpl_semi_sync_slave_kill_conn_timeout: lowered to the monitor's timeout (>= 1 s) for it.
    probe = _FakeProbe("Connecting", semi_sync_kill=5)
    m = _hung_monitor(cluster, probe)
    assert m._hung_primary_confirmed(_results(1, "Yes")) is None
    assert probe.ran == [
        "SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = 1",
        "STOP SLAVE IO_THREAD",
        "SET GLOBAL rpl_semi_sync_slave_kill_conn_timeout = 5",
        "START SLAVE IO_THREAD",
    ]
    # The STOP may take the lowered kill timeout: its read timeout is longer than that.
    stop_timeout = probe.timeouts["STOP SLAVE IO_THREAD"]
    assert stop_timeout is not None and stop_timeout > 1
    assert m._hung_primary_confirmed(_results(2, "Yes")) is True


def test_without_auto_failover_replication_threads_are_never_touched(cluster: Cluster) -> None:
    probe = _FakeProbe("Connecting")
    m = _hung_monitor(cluster, probe)
    m.auto_failover = False
    assert m._hung_primary_confirmed(_results(5, "Yes")) is None
    assert probe.ran == []
