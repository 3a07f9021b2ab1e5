"""The monitor on real servers: health, lag, roles, external promotion, split brain."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from rwsplit import Cluster, NoPrimaryError, Role, SplitBrainError, Topology, discover
from rwsplit.cli import main
from rwsplit.sandbox import Sandbox, SandboxNode

from .util import own_writes, position, run, sql, wait_until

pytestmark = pytest.mark.integration


def own_binlog_pos(node: SandboxNode) -> str:
    return position(node)


@pytest.fixture
def monitored(fresh_sandbox: Sandbox) -> Iterator[Cluster]:
    with Cluster(
        fresh_sandbox.primary_url,
        fresh_sandbox.replica_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        max_replica_lag=1.0,
    ) as c:
        with c.session() as s:
            s.execute(text("CREATE TABLE m (id INT PRIMARY KEY AUTO_INCREMENT, v INT)"))
            s.commit()
        fresh_sandbox.wait_caught_up()
        wait_until(lambda: c.monitor is not None and c.monitor.rounds >= 2, what="2 rounds")
        yield c


def test_discovery_from_one_replica_finds_everything(sandbox: Sandbox) -> None:
    topology = discover([sandbox.replicas[1].url])
    roles = {n.name: n.role for n in topology.nodes}
    assert roles == {
        sandbox.primary.address: Role.PRIMARY,
        sandbox.replicas[0].address: Role.REPLICA,
        sandbox.replicas[1].address: Role.REPLICA,
    }
    assert all(n.healthy and n.gtid_position for n in topology.nodes)


def test_topology_command_never_prints_the_password(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "Zq-topology-s3cret"
    sql(sandbox.primary, f"CREATE USER IF NOT EXISTS 'watcher'@'%' IDENTIFIED BY '{secret}'")
    privileges = (
        "SLAVE MONITOR, REPLICATION MASTER ADMIN, SELECT"
        if sandbox.family.name == "mariadb"
        else "REPLICATION CLIENT, REPLICATION SLAVE, SELECT"
    )
    sql(sandbox.primary, f"GRANT {privileges} ON *.* TO 'watcher'@'%'")
    sandbox.wait_caught_up()
    p = sandbox.primary
    url = f"mysql+pymysql://watcher:{secret}@{p.host}:{p.port}/rwsplit"
    assert main(["-v", "topology", "--primary", url]) == 0
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    assert out.out.count(" replica ") == 2 and out.out.count(" primary ") == 1
    # A node that does not answer: exit 1, still no password.
    dead = f"mysql+pymysql://watcher:{secret}@127.0.0.1:1/rwsplit"
    assert main(["topology", "--primary", dead, "--timeout", "0.5"]) == 1
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    assert "cannot reach any seed" in out.err


def test_monitor_publishes_roles_and_subscribers_hear_changes(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    changes: list[tuple[Topology, Topology]] = []
    monitored.subscribe(lambda old, new: changes.append((old, new)))
    victim = fresh_sandbox.replicas[0]
    fresh_sandbox.kill(victim.name)
    wait_until(lambda: not monitored.topology.node(victim.address).healthy, what="marked down")
    assert any(
        o.node(victim.address).healthy and not n.node(victim.address).healthy for o, n in changes
    )
    fresh_sandbox.restart(victim.name)
    # Restarted with --skip-slave-start: it answers, but is not replicating yet.
    fresh_sandbox.point_replica(victim, fresh_sandbox.primary)
    wait_until(lambda: monitored.topology.node(victim.address).healthy, what="re-admitted")
    assert monitored.topology.node(victim.address).role is Role.REPLICA


def test_killing_a_replica_under_read_load_fails_no_read(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    with monitored.session() as s:
        s.execute(text("INSERT INTO m (v) VALUES (1)"))
        s.commit()
    fresh_sandbox.wait_caught_up()
    failures: list[BaseException] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        Session = monitored.sessionmaker()
        while not stop.is_set():
            try:
                with Session() as s:
                    assert s.execute(text("SELECT COUNT(*) FROM m")).scalar_one() == 1
                reads += 1
            except BaseException as exc:  # every failure is a test failure
                failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: reads > 200, what="reads before the kill")
        fresh_sandbox.kill("replica1")
        at_kill = reads
        wait_until(lambda: reads > at_kill + 400, what="reads after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    dead = fresh_sandbox.node("replica1").address
    assert not monitored.topology.node(dead).healthy


def test_stopped_sql_thread_is_ejected_over_the_lag_limit_and_readmitted(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    lagger = fresh_sandbox.replicas[1]
    run(lagger, lambda f: f.stop_sql_thread())
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            with monitored.session() as s:
                s.execute(text("INSERT INTO m (v) VALUES (2)"))
                s.commit()
            stop.wait(0.02)  # a steady trickle of writes, not a synchronisation

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until(
            lambda: (
                lagger.address not in [n.name for n in monitored.topology.readable_replicas(1.0)]
            ),
            what="lagging replica ejected",
        )
        # Out at once (its SQL thread stopped); its lag keeps being measured meanwhile.
        wait_until(
            lambda: (monitored.topology.node(lagger.address).lag_seconds or 0.0) > 1.0,
            what="lag measured past the limit",
        )
        assert monitored.topology.node(lagger.address).healthy
        # While ejected it takes no reads.
        replica_engines = {
            monitored.engine_for(lagger.address, writable=False),
        }
        for _ in range(20):
            assert monitored.read_engine() not in replica_engines
        run(lagger, lambda f: f.start_sql_thread())
        wait_until(
            lambda: lagger.address in [n.name for n in monitored.topology.readable_replicas(1.0)],
            what="caught-up replica re-admitted",
        )
    finally:
        stop.set()
        t.join()


def test_external_promotion_moves_writes_without_restart(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    old, new, other = fresh_sandbox.nodes
    # The operator's runbook, by hand: old primary read-only, promote `new`, repoint `other`.
    sql(old, "SET GLOBAL read_only = ON")
    fresh_sandbox.wait_caught_up()
    run(new, lambda f: f.stop_replication())
    run(new, lambda f: f.reset_replication())
    sql(new, "SET GLOBAL read_only = OFF")
    fresh_sandbox.point_replica(other, new)
    wait_until(
        lambda: (p := monitored.topology.primary) is not None and p.name == new.address,
        timeout=5,
        what="writes moved to the promoted node",
    )
    before_old, before_new = own_binlog_pos(old), own_writes(new)
    with monitored.session() as s:
        s.execute(text("INSERT INTO m (v) VALUES (3)"))
        s.commit()
    assert own_binlog_pos(old) == before_old  # nothing was written on the old primary
    assert own_writes(new) > before_new  # the insert ran on the promoted node


def test_two_writable_nodes_are_a_split_brain_and_refused(
    fresh_sandbox: Sandbox, monitored: Cluster
) -> None:
    rogue = fresh_sandbox.replicas[0]
    run(rogue, lambda f: f.stop_replication())
    run(rogue, lambda f: f.reset_replication())
    sql(rogue, "SET GLOBAL read_only = OFF")
    wait_until(lambda: len(monitored.topology.primaries) == 2, timeout=5, what="split brain")
    with (
        pytest.raises(SplitBrainError, match="all claim to be the primary"),
        monitored.session() as s,
    ):
        s.execute(text("INSERT INTO m (v) VALUES (4)"))
    sql(rogue, "SET GLOBAL read_only = ON")
    wait_until(lambda: monitored.topology.primary is not None, timeout=5, what="one primary")
    assert monitored.topology.primary.name == fresh_sandbox.primary.address


def test_read_only_primary_takes_no_writes(fresh_sandbox: Sandbox, monitored: Cluster) -> None:
    sql(fresh_sandbox.primary, "SET GLOBAL read_only = ON")
    wait_until(lambda: monitored.topology.primary is None, timeout=5, what="primary demoted")
    before = own_binlog_pos(fresh_sandbox.primary)
    with pytest.raises(NoPrimaryError, match="no writable primary"), monitored.session() as s:
        s.execute(text("INSERT INTO m (v) VALUES (5)"))
    assert own_binlog_pos(fresh_sandbox.primary) == before


def test_monitor_thread_stops_with_the_cluster(fresh_sandbox: Sandbox) -> None:
    c = Cluster(fresh_sandbox.primary_url, fresh_sandbox.replica_urls, monitor_interval=0.05)
    assert c.monitor is not None
    wait_until(lambda: c.monitor is not None and c.monitor.rounds >= 1, what="a round")
    c.close()
    assert not c.monitor.running
    assert not [t for t in threading.enumerate() if t.name.startswith("rwsplit-")]


def test_probe_errors_hold_no_password(sandbox: Sandbox) -> None:
    p = sandbox.primary
    url = f"mysql+pymysql://nobody:Wrong-pw-123@{p.host}:{p.port}/rwsplit"
    with Cluster(url, [], monitor_interval=0.1) as c:
        wait_until(lambda: not c.topology.nodes[0].healthy, what="auth failure seen")
        error = c.topology.nodes[0].error or ""
        assert "Access denied" in error and "Wrong-pw-123" not in error
        assert "Wrong-pw-123" not in repr(c) + repr(c.topology)


def test_unprivileged_app_account_with_an_admin_account_for_the_monitor(
    sandbox: Sandbox,
) -> None:
    secret = "App-pw-4-monitor"
    sql(sandbox.primary, f"CREATE USER IF NOT EXISTS 'shop'@'%' IDENTIFIED BY '{secret}'")
    sql(sandbox.primary, "GRANT SELECT, INSERT ON rwsplit.* TO 'shop'@'%'")
    sandbox.wait_caught_up()
    urls = [f"mysql+pymysql://shop:{secret}@{n.host}:{n.port}/rwsplit" for n in sandbox.nodes]
    # The app account cannot read replication status: every node is unknown, with a hint.
    with Cluster(urls[0], urls[1:], monitor_interval=0.1) as c:
        wait_until(lambda: not any(n.healthy for n in c.topology.nodes), what="probes fail")
        assert "SLAVE MONITOR" in (c.topology.nodes[0].error or "")
        assert secret not in repr(c.topology)
    # With an admin account for the monitor, the app account still runs the statements.
    with Cluster(urls[0], urls[1:], monitor_interval=0.1, admin_user="root") as c:
        wait_until(lambda: c.monitor is not None and c.monitor.rounds >= 2, what="2 rounds")
        assert c.topology.primary is not None
        assert c.topology.primary.name == sandbox.primary.address
        assert len(c.topology.readable_replicas()) == 2
        with c.session() as s:
            assert s.execute(text("SELECT CURRENT_USER()")).scalar_one().startswith("shop@")
