"""pytest fixtures for your own tests against a real replicated cluster.

Installed with rwsplit and registered through the ``pytest11`` entry point: a test suite gets
a primary + replicas of real ``mariadbd`` or ``mysqld`` processes (``$RWSPLIT_SERVER_BIN`` picks
the binary) with one fixture argument::

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
  ``rwsplit_log_slave_updates``. No server binary: the tests that use it are skipped, or fail
  with ``--rwsplit-require-server`` / ``rwsplit_require_server = true`` (for CI).
* ``rwsplit_cluster`` (function scope): a :class:`~rwsplit.Cluster` on it, closed after the
  test; override the ``rwsplit_cluster_options`` fixture to pass :class:`~rwsplit.Cluster`
  keyword arguments.

Helpers (context managers that put the shared sandbox back as it was): :func:`replica_lag`
(stop replicas' SQL threads), :func:`killed` (``kill -9`` a node, restart it after),
:func:`hung` (``SIGSTOP`` a node: it accepts TCP but never answers), and
:func:`assert_no_replica_writes` (fails if anything was executed *on* a replica, witnessed by
the replica's own binary log, or on MySQL with GTIDs its own ``server_uuid`` in
``gtid_executed``). They work on MariaDB and MySQL alike: the server's family
(:mod:`rwsplit.servers`) supplies the SQL.

The plugin costs nothing in a run that uses none of its fixtures: it imports rwsplit and
starts servers only when a fixture is requested.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .cluster import Cluster
    from .sandbox import Sandbox, SandboxNode
    from .servers import Statement

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
    parser.addini(
        "rwsplit_require_server", "fail instead of skip when no server binary exists", type="bool"
    )


def pytest_configure(config: pytest.Config) -> None:
    _replica_count(config)  # a bad value is a usage error at start-up, not in the first test


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
def rwsplit_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A real primary + replicas for the whole test session (started on first use)."""
    from .errors import ServerBinaryNotFoundError
    from .sandbox import Sandbox, find_server_binaries

    config = request.config
    try:
        find_server_binaries()
    except ServerBinaryNotFoundError as exc:
        if _setting(config, "rwsplit_require_server"):
            pytest.fail(f"rwsplit_sandbox needs a server binary: {exc}", pytrace=False)
        pytest.skip(f"rwsplit_sandbox: {exc}")
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
    rwsplit_sandbox: Sandbox, rwsplit_cluster_options: dict[str, Any]
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


def _replicas(sandbox: Sandbox, names: tuple[str, ...]) -> list[SandboxNode]:
    return [sandbox.node(n) for n in names] if names else list(sandbox.replicas)


@contextlib.contextmanager
def replica_lag(sandbox: Sandbox, *names: str) -> Iterator[list[SandboxNode]]:
    """Make replicas (all, or those named) lag: their SQL threads stop for the block.

    They keep receiving the primary's binary log, but apply nothing until the block ends; a
    read there sees the data as it was when the block began.
    """
    nodes = _replicas(sandbox, names)
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
def killed(sandbox: Sandbox, name: str) -> Iterator[SandboxNode]:
    """``kill -9`` one node for the block; restart it afterwards (a replica replicates again).

    Only the process the sandbox started is signalled.
    """
    node = sandbox.node(name)
    sandbox.kill(name)
    try:
        yield node
    finally:
        sandbox.restart(name)
        if node in sandbox.replicas:
            _run(node, sandbox.family.start_replication())
            sandbox.wait_replica_running(node)


@contextlib.contextmanager
def hung(sandbox: Sandbox, name: str) -> Iterator[SandboxNode]:
    """Freeze one node for the block (``SIGSTOP``: connections open, nothing answers).

    Models a server stuck on I/O or swapping; clients see timeouts, not refused connections.
    ``SIGCONT`` at the end of the block.
    """
    node = sandbox.node(name)
    if node.pid is None or not sandbox.is_running(node):
        raise RuntimeError(f"cannot hang {name}: it is not running")
    pid = node.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield node
    finally:
        os.kill(pid, signal.SIGCONT)


def own_binlog_gtids(node: SandboxNode) -> dict[str, int]:
    """How far *node* got in transactions it logged *itself* (executed on it, not replicated
    to it), per origin: what :meth:`~rwsplit.servers.ServerFamily.own_transactions` says.

    MariaDB: per replication domain (``"domain-server_id"``), the sequence number of the last
    GTID with the node's own server id; replicas without ``log-slave-updates`` log only their
    own writes, and with it replicated transactions carry the primary's server id. MySQL with
    GTIDs: the number of transactions with the node's own ``server_uuid`` in
    ``gtid_executed``; without GTIDs, the transactions in its own binary logs. Either way the
    number grows only when something writes *on* the node.
    """
    from .servers import detect_family

    with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
        return detect_family(cur).own_transactions(cur)


@contextlib.contextmanager
def assert_no_replica_writes(sandbox: Sandbox) -> Iterator[None]:
    """Fail if anything was written *on* a replica during the block.

    The witness is :func:`own_binlog_gtids` (MariaDB: the replica's own binary log gaining a
    GTID with its server id; MySQL: its own ``server_uuid`` in ``gtid_executed``), which
    replication itself never moves; counters such as ``Com_insert`` would also count the
    writes replication applies.
    """
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
