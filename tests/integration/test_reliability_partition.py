"""An application-side partition with the replicas on a slow link (issue 17, defect 2): the
application loses the primary while the replicas still reach it, over 100 ms round trips.
The primary is alive: no failover, so never two writable primaries.

No ``tc netem`` here (the kernel lacks ``sch_netem``), so both faults are TCP forwarders on
loopback: the application reaches the primary through one that can start swallowing
everything (:class:`~tests.integration.test_hang.BlackholeProxy`), the replicas through one
that delays every chunk, each way (:class:`DelayProxy`).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time

import pymysql
import pytest
from sqlalchemy import text

from rwsplit import Cluster, FailoverOptions
from rwsplit.sandbox import REPL_PASSWORD, REPL_USER, Sandbox

from .test_hang import BlackholeProxy
from .util import Forwarder, run, sql, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.failover]


def replicate_through(sb: Sandbox, port: int) -> None:
    """Every replica reaches the primary through the forwarder on *port*."""
    for r in sb.replicas:
        for stmt in sb.family.replicate_from("127.0.0.1", port, REPL_USER, REPL_PASSWORD):
            run(r, stmt)
        sb.wait_replica_running(r)


class DelayProxy(Forwarder):
    """A TCP forwarder to one server that delivers every chunk *delay* seconds late, each
    way (a slow link: round trips take ``2 * delay`` more), order preserved."""

    def __init__(self, port: int, delay: float) -> None:
        self.delay = delay
        super().__init__(port)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        late: queue.Queue[tuple[float, bytes] | None] = queue.Queue()

        def deliver() -> None:
            with contextlib.suppress(OSError):
                while (item := late.get()) is not None:
                    due, data = item
                    # Emulated latency, not synchronisation: the chunk is due then.
                    time.sleep(max(0.0, due - time.monotonic()))
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=deliver, daemon=True).start()
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                late.put((time.monotonic() + self.delay, data))
        late.put(None)


class OtherClient:
    """Another application that still reaches the primary: writes to it directly."""

    def __init__(self, port: int, seconds: float) -> None:
        self.port = port
        self.seconds = seconds
        self.acked: list[int] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._write()
        except pymysql.err.MySQLError as exc:  # the test asserts on it
            self.error = exc

    def _write(self) -> None:
        end = time.monotonic() + self.seconds
        i = 1_000_000
        with (
            contextlib.closing(
                pymysql.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user="root",
                    database="rwsplit",
                    autocommit=True,
                )
            ) as conn,
            conn.cursor() as cur,
        ):
            while time.monotonic() < end:
                cur.execute("INSERT INTO w (id) VALUES (%s)", (i,))
                self.acked.append(i)
                i += 1
                time.sleep(0.01)  # a steady trickle, not a flood

    def join(self) -> None:
        self._thread.join(self.seconds + 10)


def test_app_side_partition_with_replicas_on_a_slow_link_is_not_failed_over(
    fresh_sandbox: Sandbox,
) -> None:
    sb = fresh_sandbox
    primary, replicas = sb.primary, sb.replicas
    app_link = BlackholeProxy(primary.port)
    slow_link = DelayProxy(primary.port, 0.05)  # 100 ms round trips
    primary_url = sb.primary_url.replace(f":{primary.port}/", f":{app_link.port}/")
    cluster = Cluster(
        primary_url,
        sb.replica_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
        failover_options=FailoverOptions(REPL_USER, REPL_PASSWORD),
        engine_options={"connect_args": {"connect_timeout": 2, "read_timeout": 2}},
    )
    try:
        with cluster.session() as s:
            s.execute(text("CREATE TABLE w (id INT PRIMARY KEY)"))
            s.commit()
        sb.wait_caught_up()
        replicate_through(sb, slow_link.port)  # the replicas reach the primary slowly
        monitor = cluster.monitor
        assert monitor is not None
        wait_until(lambda: monitor.rounds >= 3, what="monitor rounds")
        # Another client writes to the primary for a while, then stops: the replicas see it
        # alive both while it streams and while it is idle.
        other = OtherClient(primary.port, seconds=8)
        t_cut = time.monotonic()
        app_link.cut.set()
        wait_until(
            lambda: not cluster.topology.node(app_link_name(primary_url)).healthy,
            timeout=10,
            what="the primary unreachable from this process",
        )
        deadline = t_cut + 25.0
        while time.monotonic() < deadline:  # observing an absence: bounded, polled
            assert monitor.last_failover is None, monitor.last_failover.describe()
            time.sleep(0.1)
        other.join()
        assert other.error is None
        assert len(other.acked) > 50
        # One primary only: the replicas are still read-only replicas of it.
        assert sql(primary, "SELECT @@read_only")[0][0] == 0
        for r in replicas:
            assert sql(r, "SELECT @@read_only")[0][0] == 1
        have = {int(str(r[0])) for r in sql(primary, "SELECT id FROM rwsplit.w")}
        assert [i for i in other.acked if i not in have] == []
        print(
            f"app-side partition, 100 ms replica links: no failover in 25 s; "
            f"{len(other.acked)} writes of another client acknowledged, none lost"
        )
    finally:
        cluster.close()
        app_link.close()
        slow_link.close()


def app_link_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"{u.host}:{u.port}"


def test_a_dead_primary_behind_a_slow_link_is_still_failed_over(fresh_sandbox: Sandbox) -> None:
    """The other side of the veto: replicas on the same 100 ms link, the primary killed -9
    while another client writes — no replica receives anything more: failed over."""
    sb = fresh_sandbox
    primary, replicas = sb.primary, sb.replicas
    slow_link = DelayProxy(primary.port, 0.05)
    cluster = Cluster(
        sb.primary_url,
        sb.replica_urls,
        monitor_interval=0.2,
        monitor_timeout=0.5,
        auto_failover=True,
        failover_options=FailoverOptions(REPL_USER, REPL_PASSWORD),
    )
    try:
        with cluster.session() as s:
            s.execute(text("CREATE TABLE w (id INT PRIMARY KEY)"))
            s.commit()
        sb.wait_caught_up()
        replicate_through(sb, slow_link.port)
        monitor = cluster.monitor
        assert monitor is not None
        other = OtherClient(primary.port, seconds=30)
        wait_until(lambda: len(other.acked) > 20, what="writes before the kill")
        t_kill = time.monotonic()
        sb.kill(primary.name)
        wait_until(lambda: monitor.last_failover is not None, timeout=20, what="a failover")
        assert monitor.last_failover is not None
        decided = monitor.last_failover.started_at - t_kill
        assert monitor.last_failover.new_primary in [r.address for r in replicas]
        other.join()
        print(f"dead primary behind a 100 ms link: failover started {decided:.2f}s after kill -9")
    finally:
        cluster.close()
        slow_link.close()
