"""pytest fixtures for your own tests against a real replicated cluster.

Installed with rwsplit and registered through the ``pytest11`` entry point: a test suite gets
a primary + replicas of real ``mariadbd`` or ``mysqld`` processes (``$RWSPLIT_SERVER_BIN`` picks
the binary), or a PostgreSQL primary + hot standbys (``--rwsplit-server postgresql``), with one
fixture argument::

    def test_orders_page(rwsplit_cluster):
        with rwsplit_cluster.session() as s:
            ...

    def test_no_write_leaks(rwsplit_sandbox, rwsplit_cluster):
        with assert_no_replica_writes(rwsplit_sandbox):
            run_the_checkout(rwsplit_cluster)

Fixtures:

* ``rwsplit_sandbox`` (session scope): a :class:`~rwsplit.sandbox.Sandbox`, started the first
  time a test asks for it and stopped at the end of the run. Its shape comes from the command
  line or the ini file: ``--rwsplit-replicas N`` / ``rwsplit_replicas`` (default 2),
  ``--rwsplit-semi-sync`` / ``rwsplit_semi_sync``, ``--rwsplit-log-slave-updates`` /
  ``rwsplit_log_slave_updates``. ``--rwsplit-server postgresql`` / ``rwsplit_server =
  postgresql`` makes it a :class:`~rwsplit.sandbox.postgresql.PgSandbox` (a primary and hot
  standbys from the PostgreSQL binaries on the machine) instead. No server binary: the tests
  that use it are skipped, or fail with ``--rwsplit-require-server`` /
  ``rwsplit_require_server = true`` (for CI).
* ``rwsplit_cluster`` (function scope): a :class:`~rwsplit.Cluster` on it, closed after the
  test; override the ``rwsplit_cluster_options`` fixture to pass :class:`~rwsplit.Cluster`
  keyword arguments.

Helpers (context managers that put the shared sandbox back as it was): :func:`replica_lag`
(stop replicas' SQL threads), :func:`killed` (``kill -9`` a node, restart it after),
:func:`hung` (``SIGSTOP`` a node: it accepts TCP but never answers), and
:func:`assert_no_replica_writes` (fails if anything was executed *on* a replica, witnessed by
the replica's own binary log, or on MySQL with GTIDs its own ``server_uuid`` in
``gtid_executed``). They work on MariaDB and MySQL alike: the server's family
(:mod:`rwsplit.servers`) supplies the SQL. On PostgreSQL, :func:`replica_lag` pauses the
standbys' replay (``pg_wal_replay_pause()``), :func:`hung` freezes the postmaster and its
backends, and :func:`assert_no_replica_writes` checks that every standby stayed a hot standby
(in recovery, same postmaster) through the block: a hot standby refuses every write, even a
superuser's.

The plugin costs nothing in a run that uses none of its fixtures: it imports rwsplit and
starts servers only when a fixture is requested.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from .cluster import Cluster
    from .sandbox import Sandbox, SandboxNode
    from .sandbox.postgresql import PgNode, PgSandbox
    from .servers import Statement

    AnySandbox = Sandbox | PgSandbox
    AnyNode = SandboxNode | PgNode

SERVERS = ("mysql", "postgresql")
"""What ``--rwsplit-server`` takes: ``mysql`` (MariaDB or MySQL, by ``$RWSPLIT_SERVER_BIN``)
or ``postgresql``."""

__all__ = [
    "assert_no_replica_writes",
    "hung",
    "killed",
    "own_binlog_gtids",
    "replica_lag",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rwsplit", "rwsplit: a real replicated cluster for your tests")
    group.addoption(
        "--rwsplit-replicas",
        type=int,
        default=None,
        metavar="N",
        help="replicas in the rwsplit_sandbox cluster (ini: rwsplit_replicas; default 2)",
    )
    group.addoption(
        "--rwsplit-semi-sync",
        action="store_true",
        default=None,
        help="semi-synchronous replication in rwsplit_sandbox (ini: rwsplit_semi_sync)",
    )
    group.addoption(
        "--rwsplit-log-slave-updates",
        action="store_true",
        default=None,
        help="replicas with log-slave-updates (ini: rwsplit_log_slave_updates)",
    )
    group.addoption(
        "--rwsplit-server",
        choices=SERVERS,
        default=None,
        help="the rwsplit_sandbox cluster's servers: mysql (MariaDB or MySQL, the default) "
        "or postgresql (ini: rwsplit_server)",
    )
    group.addoption(
        "--rwsplit-require-server",
        action="store_true",
        default=None,
        help="fail, not skip, when no MariaDB/MySQL server binary is installed "
        "(ini: rwsplit_require_server)",
    )
    parser.addini("rwsplit_replicas", "replicas in the rwsplit_sandbox cluster", default="2")
    parser.addini("rwsplit_semi_sync", "semi-sync replication in rwsplit_sandbox", type="bool")
    parser.addini(
        "rwsplit_log_slave_updates",
        "replicas with log-slave-updates in rwsplit_sandbox",
        type="bool",
    )
    parser.addini("rwsplit_server", "mysql (default) or postgresql", default="mysql")
    parser.addini(
        "rwsplit_require_server", "fail instead of skip when no server binary exists", type="bool"
    )


def pytest_configure(config: pytest.Config) -> None:
    # Bad values are usage errors at start-up, not in the first test.
    _replica_count(config)
    _server(config)


def _server(config: pytest.Config) -> str:
    server = str(_setting(config, "rwsplit_server") or "mysql").strip().lower()
    if server not in SERVERS:
        raise pytest.UsageError(
            f"rwsplit_server must be one of {', '.join(SERVERS)}, got {server!r}"
        )
    return server


def _setting(config: pytest.Config, name: str) -> Any:
    """The command line wins over the ini file."""
    value = config.getoption(name)  # the option's dest is the ini name
    return value if value is not None else config.getini(name)


def _replica_count(config: pytest.Config) -> int:
    raw = _setting(config, "rwsplit_replicas")
    try:
        count = int(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"rwsplit_replicas must be a whole number, got {raw!r}") from None
    if count < 0:
        raise pytest.UsageError(f"rwsplit_replicas must be >= 0, got {count}")
    return count


@pytest.fixture(scope="session")
def rwsplit_sandbox(request: pytest.FixtureRequest) -> Iterator[AnySandbox]:
    """A real primary + replicas for the whole test session (started on first use)."""
    from .errors import ServerBinaryNotFoundError
    from .sandbox import Sandbox, find_server_binaries
    from .sandbox.postgresql import PgSandbox, find_postgresql

    config = request.config
    postgresql = _server(config) == "postgresql"
    try:
        find_postgresql() if postgresql else find_server_binaries()
    except ServerBinaryNotFoundError as exc:
        if _setting(config, "rwsplit_require_server"):
            pytest.fail(f"rwsplit_sandbox needs a server binary: {exc}", pytrace=False)
        pytest.skip(f"rwsplit_sandbox: {exc}")
    if postgresql:
        pg = PgSandbox(standbys=_replica_count(config))
        pg.start()
        try:
            yield pg
        finally:
            pg.stop()
        return
    sb = Sandbox(
        replicas=_replica_count(config),
        # Its own short temporary directory (removed by stop()): pytest's tmp_path is often
        # too long for a server's Unix socket path (107 bytes).
        semi_sync=bool(_setting(config, "rwsplit_semi_sync")),
        log_slave_updates=bool(_setting(config, "rwsplit_log_slave_updates")),
    )
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def rwsplit_cluster_options() -> dict[str, Any]:
    """Keyword arguments for the ``rwsplit_cluster`` fixture's :class:`~rwsplit.Cluster`
    (override this fixture to set options)."""
    return {}


@pytest.fixture
def rwsplit_cluster(
    rwsplit_sandbox: AnySandbox, rwsplit_cluster_options: dict[str, Any]
) -> Iterator[Cluster]:
    """A :class:`~rwsplit.Cluster` on ``rwsplit_sandbox``, closed after the test."""
    from .cluster import Cluster

    with Cluster(
        rwsplit_sandbox.primary_url, rwsplit_sandbox.replica_urls, **rwsplit_cluster_options
    ) as cluster:
        yield cluster


# ---------------------------------------------------------------------------------- helpers


def _run(node: SandboxNode, statement: Statement) -> None:
    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        cur.execute(statement.sql, statement.params or None)


def _replicas(sandbox: AnySandbox, names: tuple[str, ...]) -> list[Any]:
    return [sandbox.node(n) for n in names] if names else list(sandbox.replicas)


def _postgresql(sandbox: AnySandbox) -> PgSandbox | None:
    from .sandbox.postgresql import PgSandbox

    return sandbox if isinstance(sandbox, PgSandbox) else None


@contextlib.contextmanager
def replica_lag(sandbox: AnySandbox, *names: str) -> Iterator[list[Any]]:
    """Make replicas (all, or those named) lag: their SQL threads stop for the block
    (PostgreSQL: their replay is paused, ``pg_wal_replay_pause()``).

    They keep receiving the primary's binary log (WAL), but apply nothing until the block
    ends; a read there sees the data as it was when the block began.
    """
    nodes = _replicas(sandbox, names)
    pg = _postgresql(sandbox)
    if pg is not None:
        paused = []
        try:
            for n in nodes:
                pg.pause_replay(n.name)
                paused.append(n)
            yield nodes
        finally:
            for n in paused:
                if pg.is_running(n) and not pg.is_stopped(n):
                    pg.resume_replay(n.name)
        return
    sandbox = cast("Sandbox", sandbox)
    family = sandbox.family
    for n in nodes:
        _run(n, family.stop_sql_thread())
    try:
        yield nodes
    finally:
        for n in nodes:
            if sandbox.is_running(n):
                _run(n, family.start_sql_thread())


@contextlib.contextmanager
def killed(sandbox: AnySandbox, name: str) -> Iterator[Any]:
    """``kill -9`` one node for the block; restart it afterwards (a replica replicates again).

    Only the process the sandbox started is signalled (PostgreSQL: the postmaster; its
    backends follow it).
    """
    node = sandbox.node(name)
    sandbox.kill(name)
    pg = _postgresql(sandbox)
    if pg is not None:
        try:
            yield node
        finally:
            pg.start_node(name)  # a standby streams again by itself
            if node in pg.standbys:
                pg.wait_caught_up()
        return
    sandbox = cast("Sandbox", sandbox)
    try:
        yield node
    finally:
        sandbox.restart(name)
        if node in sandbox.replicas:
            _run(node, sandbox.family.start_replication())
            sandbox.wait_replica_running(node)


@contextlib.contextmanager
def hung(sandbox: AnySandbox, name: str) -> Iterator[Any]:
    """Freeze one node for the block (``SIGSTOP``: connections open, nothing answers).

    Models a server stuck on I/O or swapping; clients see timeouts, not refused connections.
    ``SIGCONT`` at the end of the block. PostgreSQL: the postmaster and every backend it
    has.
    """
    node = sandbox.node(name)
    pg = _postgresql(sandbox)
    if pg is not None:
        pg.hang(name)
        try:
            yield node
        finally:
            pg.resume(name)
        return
    sandbox = cast("Sandbox", sandbox)
    node = sandbox.node(name)
    if node.pid is None or not sandbox.is_running(node):
        raise RuntimeError(f"cannot hang {name}: it is not running")
    pid = node.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield node
    finally:
        os.kill(pid, signal.SIGCONT)


def own_binlog_gtids(node: AnyNode) -> dict[str, int]:
    """How far *node* got in transactions it logged *itself* (executed on it, not replicated
    to it), per origin: what :meth:`~rwsplit.servers.ServerFamily.own_transactions` says.

    MariaDB: per replication domain (``"domain-server_id"``), the sequence number of the last
    GTID with the node's own server id; replicas without ``log-slave-updates`` log only their
    own writes, and with it replicated transactions carry the primary's server id. MySQL with
    GTIDs: the number of transactions with the node's own ``server_uuid`` in
    ``gtid_executed``; without GTIDs, the transactions in its own binary logs. Either way the
    number grows only when something writes *on* the node. MariaDB and MySQL only: a
    PostgreSQL standby has no log of its own (:func:`assert_no_replica_writes` works there).
    """
    from .sandbox.postgresql import PgNode
    from .servers import detect_family

    if isinstance(node, PgNode):
        raise TypeError(
            "own_binlog_gtids() is about MariaDB/MySQL binary logs; on PostgreSQL use "
            "assert_no_replica_writes(sandbox): a hot standby refuses every write"
        )

    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        return detect_family(cur).own_transactions(cur)


@contextlib.contextmanager
def assert_no_replica_writes(sandbox: AnySandbox) -> Iterator[None]:
    """Fail if anything was written *on* a replica during the block.

    The witness is :func:`own_binlog_gtids` (MariaDB: the replica's own binary log gaining a
    GTID with its server id; MySQL: its own ``server_uuid`` in ``gtid_executed``), which
    replication itself never moves; counters such as ``Com_insert`` would also count the
    writes replication applies. PostgreSQL: every standby was in recovery, under the same
    postmaster, before and after the block (a hot standby refuses every write; one promoted
    or restarted meanwhile could have taken some).
    """
    pg = _postgresql(sandbox)
    if pg is not None:
        with _standbys_stay_standbys(pg):
            yield
        return
    sandbox = cast("Sandbox", sandbox)
    before = {n.name: own_binlog_gtids(n) for n in sandbox.replicas if sandbox.is_running(n)}
    yield
    wrote = []
    for n in sandbox.replicas:
        if n.name not in before or not sandbox.is_running(n):
            continue
        after = own_binlog_gtids(n)
        new = {d: s for d, s in after.items() if s > before[n.name].get(d, 0)}
        if new:
            gtids = ", ".join(f"{d}: {before[n.name].get(d, 0) + 1}..{s}" for d, s in new.items())
            wrote.append(f"{n.name} ({n.address}) logged its own transactions {gtids}")
    if wrote:
        raise AssertionError("writes executed on replicas: " + "; ".join(wrote))


@contextlib.contextmanager
def _standbys_stay_standbys(sandbox: PgSandbox) -> Iterator[None]:
    def state() -> dict[str, tuple[int | None, bool]]:
        out = {}
        for n in sandbox.standbys:
            if sandbox.is_running(n) and not sandbox.is_stopped(n):
                with contextlib.closing(n.connect()) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                out[n.name] = (n.pid, bool(row and row[0]))
        return out

    before = state()
    yield
    after = state()
    wrote = []
    for name, (pid, in_recovery) in before.items():
        now = after.get(name)
        if not in_recovery:
            wrote.append(f"{name} was not a standby (out of recovery) when the block began")
        elif now is not None and (now[0] != pid or not now[1]):
            wrote.append(f"{name} left recovery or restarted during the block: it could write")
    if wrote:
        raise AssertionError("standbys could take writes: " + "; ".join(wrote))
