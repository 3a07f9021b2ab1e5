"""Fixtures that start real PostgreSQL servers through rwsplit's own sandbox
(:class:`rwsplit.sandbox.postgresql.PgSandbox`).

* ``pg_sandbox`` (session scope): one primary + 2 hot standbys shared by non-destructive tests,
  with ``log_statement='all'``: each node's :attr:`~rwsplit.sandbox.postgresql.PgNode.log_path`
  shows the statements it ran (:func:`statements_since` reads them).
* ``fresh_pg_sandbox`` (function scope): a private cluster for tests that kill, promote or
  repoint servers; stopped after the test whatever happens.

The binaries are ``$RWSPLIT_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``. When
none is installed the tests that use these fixtures are skipped locally, but on CI (``CI``
set in the environment) they fail: CI must exercise real servers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rwsplit.errors import ServerBinaryNotFoundError
from rwsplit.sandbox.postgresql import PgNode, PgSandbox, find_postgresql


def require_postgresql() -> None:
    """Skip (locally) or fail (on CI) when no PostgreSQL server is installed."""
    try:
        find_postgresql()
    except ServerBinaryNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but: {exc}", pytrace=False)
        pytest.skip(str(exc))


def _running(base_dir: Path, **kwargs: object) -> Iterator[PgSandbox]:
    require_postgresql()
    keep = bool(os.environ.get("RWSPLIT_KEEP_SANDBOXES"))
    sb = PgSandbox(standbys=2, base_dir=base_dir, keep=keep, **kwargs)  # type: ignore[arg-type]
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="session")
def pg_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgSandbox]:
    yield from _running(tmp_path_factory.mktemp("pg-sandbox"), log_statement="all")


@pytest.fixture
def fresh_pg_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgSandbox]:
    yield from _running(tmp_path_factory.mktemp("pg-fresh"), log_statement="all")


def log_offset(node: PgNode) -> int:
    """Where *node*'s server log ends now (pass it to :func:`statements_since`)."""
    try:
        return node.log_path.stat().st_size
    except FileNotFoundError:
        return 0


_STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)")


def statements_since(node: PgNode, offset: int) -> list[str]:
    """The statements *node* logged after *offset* (``log_statement='all'``), first line of
    each."""
    with open(node.log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [m.group(1) for m in _STATEMENT.finditer(text)]
