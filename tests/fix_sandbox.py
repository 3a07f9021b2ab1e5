"""Fixtures that start real MariaDB or MySQL servers through rwsplit's own sandbox.

The server is whatever the sandbox finds: ``RWSPLIT_SERVER_BIN`` (or ``RWSPLIT_MARIADBD``)
names it, e.g. the MySQL 9.7 that ``bash scripts/get-mysql`` fetches. A test that is about one
family says so with ``@pytest.mark.server("mariadb", reason=...)`` and is skipped on the
others.

* ``sandbox`` (session scope): one primary + 2 replicas shared by non-destructive tests.
* ``fresh_sandbox`` (function scope): a private cluster for tests that kill or reconfigure
  servers; stopped after the test whatever happens.
* ``cluster`` / ``fresh_cluster``: an :class:`rwsplit.Cluster` on those sandboxes.

When no server binary is installed the integration tests are skipped locally, but on CI
(``CI`` set in the environment) they fail: CI must exercise real servers.
"""

from __future__ import annotations

import functools
import os
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


def _running(base_dir: Path, **kwargs: Any) -> Iterator[Sandbox]:
    require_server()
    sb = Sandbox(replicas=2, base_dir=base_dir, **kwargs)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from _running(tmp_path_factory.mktemp("sandbox"))


@pytest.fixture
def fresh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from _running(tmp_path_factory.mktemp("fresh"))


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
