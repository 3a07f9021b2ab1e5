"""Hung servers (``SIGSTOP``): the monitor ejects a hung replica and fails over a hung
primary, also when replication runs with the server's defaults (``slave_net_timeout=60``),
and never fails over a primary that only this process cannot reach."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from rwsplit import Cluster, FailoverOptions, RwSplitError
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox, SandboxNode

from .util import Forwarder, fenced, replica_status, run, sql, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.failover]

OPTIONS = FailoverOptions(REPL_USER, REPL_PASSWORD)
# Statements on a hung server must not hang the test: bounded driver timeouts.
BOUNDED = {"connect_args": {"connect_timeout": 2, "read_timeout": 2, "write_timeout": 2}}


@contextlib.contextmanager
def hung(node: SandboxNode) -> Iterator[None]:
    """``SIGSTOP`` the node's server for the block, ``SIGCONT`` whatever happens."""
    assert node.pid is not None
    os.kill(node.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(node.pid, signal.SIGCONT)


def io_running(node: SandboxNode) -> str:
    status = replica_status(node)
    return "None" if status is None else status.io_running


def use_server_default_replication(sb: Sandbox) -> None:
    """Replication as someone else set it up: ``slave_net_timeout`` 60 s (the sandbox uses
    5 s), heartbeat every 30 s (its default, half of it). A replica of a hung primary then
    reports ``Slave_IO_Running=Yes`` for a minute."""
    for r in sb.replicas:
        run(r, lambda f: f.stop_replication())
        if sb.family.name == "mysql":
            sql(r, "SET GLOBAL replica_net_timeout = 60")
            sql(r, "CHANGE REPLICATION SOURCE TO SOURCE_HEARTBEAT_PERIOD = 30")
        else:
            sql(r, "SET GLOBAL slave_net_timeout = 60")
            sql(r, "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 30")
        run(r, lambda f: f.start_replication())
        sb.wait_replica_running(r)


def make_table(c: Cluster, sb: Sandbox) -> None:
    with c.session() as s:
        s.execute(text("CREATE TABLE w (id INT PRIMARY KEY)"))
        s.commit()
    sb.wait_caught_up()


def test_hung_replica_is_ejected_within_an_interval_plus_the_timeout(
    fresh_sandbox: Sandbox,
) -> None:
    interval, timeout = 0.3, 0.5
    victim, other = fresh_sandbox.replicas
    with Cluster(
        fresh_sandbox.primary_url,
        fresh_sandbox.replica_urls,
        monitor_interval=interval,
        monitor_timeout=timeout,
        engine_options=BOUNDED,
    ) as c:
        wait_until(lambda: len(c.topology.readable_replicas()) == 2, what="both replicas read")
        with hung(victim):
            t0 = time.monotonic()
            # One round may have just started: the bound is interval + timeout, plus slack.
            wait_until(
                lambda: not c.topology.node(victim.address).healthy,
                timeout=interval + timeout + 1.0,
                what="the hung replica ejected",
            )
            ejected = time.monotonic() - t0
            assert [n.name for n in c.topology.readable_replicas()] == [other.address]
            for _ in range(20):
                route = c.read_route()
                assert route is not None and route[0].name == other.address
        wait_until(lambda: c.topology.node(victim.address).healthy, timeout=10, what="back")
        wait_until(
            lambda: victim.address in [n.name for n in c.topology.readable_replicas()],
            timeout=10,
            what="back in the read rotation",
        )
    print(f"hung replica ejected after {ejected:.2f}s (interval {interval}, timeout {timeout})")


def test_hung_primary_is_failed_over_with_server_default_replication(
    fresh_sandbox: Sandbox,
) -> None:
    sb = fresh_sandbox
    use_server_default_replication(sb)
    old = sb.primary
    ids = itertools.count(1)
    # Default monitor options: every second, 1 s probe timeout, 3 failed probes.
    with Cluster(
        sb.primary_url,
        sb.replica_urls,
        auto_failover=True,
        failover_options=OPTIONS,
        engine_options=BOUNDED,
    ) as c:
        make_table(c, sb)
        monitor = c.monitor
        assert monitor is not None

        def write() -> bool:
            try:
                with c.session() as s:
                    s.execute(text("INSERT INTO w (id) VALUES (:i)"), {"i": next(ids)})
                    s.commit()
            except (RwSplitError, DBAPIError):
                return False
            return True

        assert write()
        with hung(old):
            t0 = time.monotonic()
            # What defeated the old rule: the replicas still claim a live connection.
            assert {io_running(r) for r in sb.replicas} == {"Yes"}
            wait_until(write, timeout=30, what="a write on a new primary")
            outage = time.monotonic() - t0
            # Writes resume once the promoted node is published, before the failover ends.
            wait_until(lambda: monitor.last_failover is not None, what="the failover's result")
            assert monitor.last_failover is not None
            new = sb.node(monitor.last_failover.new_primary or "")
            assert new in sb.replicas
            assert c.topology.primary is not None and c.topology.primary.name == new.address
        started = monitor.last_failover.started_at - t0
        print(
            f"hung primary: writes resumed on {new.address} after {outage:.2f}s; failover "
            f"started at {started:.2f}s, its steps: {monitor.last_failover.timeline}"
        )
        wait_until(lambda: fenced(old), what="old primary fenced")
        assert sql(new, "SELECT COUNT(*) FROM rwsplit.w")[0][0] >= 2


class BlackholeProxy(Forwarder):
    """A TCP forwarder to one server that can start swallowing everything (a one-way cut
    between this process and the server; the replicas still reach it directly)."""

    stop_when_server_refuses = True

    def __init__(self, port: int) -> None:
        self.cut = threading.Event()
        super().__init__(port)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.cut.is_set():
                    dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def heal(self) -> None:
        """End the cut: new connections pass again. Those open during it lost bytes (their
        streams can never resume), so they are reset, as TCP gives up on them after a long
        partition."""
        stale, self._sockets = self._sockets, []
        for s in stale:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked on it
            with contextlib.suppress(OSError):
                s.close()
        self.cut.clear()


def test_primary_cut_off_from_this_process_only_is_not_failed_over(
    fresh_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sb = fresh_sandbox
    use_server_default_replication(sb)
    proxy = BlackholeProxy(sb.primary.port)
    primary_url = sb.primary_url.replace(f":{sb.primary.port}/", f":{proxy.port}/")
    caplog.set_level(logging.WARNING, logger="rwsplit.monitor")
    try:
        with Cluster(
            primary_url,
            sb.replica_urls,
            monitor_interval=0.2,
            monitor_timeout=0.5,
            auto_failover=True,
            failover_options=OPTIONS,
            engine_options=BOUNDED,
        ) as c:
            monitor = c.monitor
            assert monitor is not None
            wait_until(lambda: monitor.rounds >= 2, what="2 rounds")
            # Replicas name the real port, the cluster the proxy's: recognised by server id.
            assert len(c.topology.readable_replicas()) == 2
            proxy.cut.set()
            wait_until(
                lambda: any("reconnected to it: it is alive" in r.message for r in caplog.records),
                timeout=15,
                what="the replicas vouching for the primary",
            )
            wait_until(lambda: {io_running(r) for r in sb.replicas} == {"Yes"}, what="streaming")
            assert monitor.last_failover is None
            assert not c.fenced
            assert sql(sb.primary, "SELECT @@read_only")[0][0] == 0
            assert all(sql(r, "SELECT @@read_only")[0][0] == 1 for r in sb.replicas)
    finally:
        proxy.close()


def test_a_statement_in_use_on_a_replaced_primary_is_cut_not_waited_out(
    fresh_sandbox: Sandbox,
) -> None:
    """Once another node is published as the primary, a statement still waiting on the old
    one fails at once (retryable: nothing was committed) instead of after its read timeout."""
    from rwsplit import RetryableWriteError, Role, Topology

    sb = fresh_sandbox
    old, new = sb.primary, sb.replicas[0]
    # No read timeout: only the cut can end the statement before the lock wait (100 s) does.
    with Cluster(sb.primary_url, sb.replica_urls, primary_read_timeout=None) as c:
        make_table(c, sb)
        with contextlib.closing(old.connect()) as holder, holder.cursor() as cur:
            cur.execute("SELECT GET_LOCK('rwsplit_t', 0)")
            outcome: list[object] = []

            def blocked() -> None:
                try:
                    with c.session() as s:
                        s.execute(text("INSERT INTO w (id) VALUES (1)"))
                        s.execute(text("SELECT GET_LOCK('rwsplit_t', 100)"))  # waits on holder
                        s.commit()
                    outcome.append("committed")
                except Exception as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=blocked)
            thread.start()
            wait_until(
                lambda: (
                    sql(
                        old,
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                        "WHERE COMMAND = 'Query' AND STATE = 'User lock'",
                    )[0][0]
                    == 1
                ),
                what="the session waiting on the old primary",
            )
            # What a failover publishes: another node is the primary, the old one fenced.
            nodes = tuple(
                n.evolve(role=Role.PRIMARY, healthy=True, read_only=False)
                if n.name == new.address
                else n.evolve(role=Role.UNKNOWN, healthy=False)
                if n.name == old.address
                else n
                for n in c.topology.nodes
            )
            c.publish(Topology(nodes, c.topology.version + 1))
            thread.join(30)
            assert not thread.is_alive(), "the statement on the old primary was not cut"
            # The lock is still held: the cut ended the statement, not the lock or a timeout.
            cur.execute("SELECT IS_USED_LOCK('rwsplit_t') = CONNECTION_ID()")
            assert cur.fetchone() == (1,)
        (result,) = outcome
        assert isinstance(result, RetryableWriteError), result
        # The server rolled the uncommitted insert back when the connection went.
        wait_until(
            lambda: sql(old, "SELECT COUNT(*) FROM rwsplit.w WHERE id = 1")[0][0] == 0,
            what="the insert rolled back on the old primary",
        )
