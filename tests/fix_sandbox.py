"""Fixtures that start real MariaDB or MySQL servers through rwsplit's own sandbox.

The server is whatever the sandbox finds: ``RWSPLIT_SERVER_BIN`` (or ``RWSPLIT_MARIADBD``)
names it, e.g. the MySQL 9.7 that ``bash scripts/get-mysql`` fetches. A test that is about one
family says so with ``@pytest.mark.server("mariadb", reason=...)`` and is skipped on the
others.

* ``sandbox`` (session scope): one primary + 2 replicas shared by non-destructive tests.
* ``fresh_sandbox`` (function scope): a private cluster for tests that kill or reconfigure
  servers; stopped after the test whatever happens.
* ``semi_sync_sandbox`` (function scope): the same, with semi-synchronous replication and
  ``log_slave_updates``, as automated failover should run in production.
* :func:`running_sandbox`: for a test module's own fixture with other :class:`Sandbox`
  arguments (``yield from running_sandbox(base_dir, log_slave_updates=True)``).
* ``cluster`` / ``fresh_cluster``: an :class:`rwsplit.Cluster` on those sandboxes.

When no server binary is installed the integration tests are skipped locally, but on CI
(``CI`` set in the environment) they fail: CI must exercise real servers.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rwsplit import Cluster
from rwsplit.errors import ServerBinaryNotFoundError
from rwsplit.sandbox import Sandbox, find_server_binaries


@functools.cache
def server_family() -> str | None:
    """``"mariadb"`` or ``"mysql"``: the family of the server the sandbox runs (None: none)."""
    try:
        return find_server_binaries().flavor
    except ServerBinaryNotFoundError:
        return None


def on_mysql() -> bool:
    """The sandbox runs MySQL (for ``xfail`` / ``skipif`` conditions at import time)."""
    return server_family() == "mysql"


def tx_variable(name: str) -> str:
    """A transaction characteristic's session variable: MariaDB 10.x ``tx_isolation`` /
    ``tx_read_only``, MySQL 8+ ``transaction_isolation`` / ``transaction_read_only``."""
    return f"{'transaction' if on_mysql() else 'tx'}_{name}"


def in_transaction_sql() -> str | None:
    """A query whose one value is 1 inside an open transaction, else 0 (MariaDB's
    ``@@in_transaction``). ``None`` on MySQL, which has no such variable, and whose
    ``INNODB_TRX`` does not list read-only transactions (performance_schema, which would, is
    off in the sandbox)."""
    return None if on_mysql() else "SELECT @@in_transaction"


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("server"):
        family = server_family()
        if family is not None and family not in mark.args:
            why = mark.kwargs.get("reason", "")
            pytest.skip(f"about {' / '.join(mark.args)}, the server here is {family}: {why}")


def require_server() -> None:
    """Skip (locally) or fail (on CI) when no server binary is installed."""
    try:
        find_server_binaries()
    except ServerBinaryNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the server tests, but: {exc}", pytrace=False)
        pytest.skip(str(exc))


def running_sandbox(base_dir: Path, **kwargs: Any) -> Iterator[Sandbox]:
    """A started sandbox of one primary and 2 replicas in *base_dir* (*kwargs*: more
    :class:`Sandbox` arguments), for a fixture to ``yield from``: stopped afterwards whatever
    happens, and its files removed."""
    require_server()
    sb = Sandbox(replicas=2, base_dir=base_dir, **kwargs)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()
        # Hundreds of sandboxes per run (a MySQL node's data directory is ~100 MB): a run
        # must not fill the disk. RWSPLIT_KEEP_SANDBOXES=1 keeps them for a post-mortem.
        if not os.environ.get("RWSPLIT_KEEP_SANDBOXES"):
            shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from running_sandbox(tmp_path_factory.mktemp("sandbox"))


@pytest.fixture
def fresh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from running_sandbox(tmp_path_factory.mktemp("fresh"))


@pytest.fixture
def semi_sync_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Semi-sync with log-slave-updates: an acknowledged write survives ``kill -9``, and every
    replica can follow the promoted one, whatever it had received when the primary died."""
    yield from running_sandbox(
        tmp_path_factory.mktemp("semisync"), semi_sync=True, log_slave_updates=True
    )


@pytest.fixture
def cluster(sandbox: Sandbox) -> Iterator[Cluster]:
    with Cluster(sandbox.primary_url, sandbox.replica_urls) as c:
        yield c


@pytest.fixture
def fresh_cluster(fresh_sandbox: Sandbox) -> Iterator[Cluster]:
    with Cluster(
        fresh_sandbox.primary_url, fresh_sandbox.replica_urls, down_retry_interval=60.0
    ) as c:
        yield c
