"""Issue 17 through the Django backend.

* Defect 7: a read that outlives ``replica_read_timeout`` runs once, raises
  ``OperationalError`` carrying :class:`~rwsplit.ReadFailedError`, and ejects no replica.
* Defect 6: persistent connections (``CONN_MAX_AGE``) to a primary that another process has
  since fenced never commit a write there (the ``root`` account has ``SUPER`` and writes
  through ``read_only``): refused with :class:`~rwsplit.RetryableWriteError`, and the retry
  goes to the new primary. The witness is the old primary's own binary log.
* A connection storm: a primary out of connection slots (1040) gives
  :class:`~rwsplit.RetryableWriteError` naming the node, not a raw driver error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from rwsplit.sandbox import Sandbox
from tests.djangoapp import add_alias, configure, drop_alias, node_settings
from tests.integration.test_reliability_fence import binlog_pos, count, fail_over_elsewhere
from tests.integration.test_reliability_reads import general_log, runs

pytestmark = pytest.mark.integration

configure()

from django.db import (  # noqa: E402
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)

from rwsplit import ReadFailedError, RetryableWriteError  # noqa: E402
from rwsplit.django import rwsplit_error  # noqa: E402


@pytest.fixture
def slow_alias(sandbox: Sandbox) -> Iterator[str]:
    add_alias("slowreads", node_settings(sandbox, replica_read_timeout=1))
    try:
        yield "slowreads"
    finally:
        drop_alias("slowreads")


def test_a_slow_read_runs_once_and_ejects_no_replica(slow_alias: str, sandbox: Sandbox) -> None:
    marker = f"django-slow-{uuid.uuid4().hex}"
    conn = connections[slow_alias]
    with general_log(sandbox):
        with pytest.raises(OperationalError) as caught, conn.cursor() as cursor:
            cursor.execute(f"SELECT SLEEP(1.5) /* {marker} */")
        err = rwsplit_error(caught.value)
        assert isinstance(err, ReadFailedError), caught.value
        assert "replica_read_timeout" in str(err)
        ran = runs(sandbox, marker)
        assert sum(ran.values()) == 1, f"the slow read ran {ran}"
        assert ran[sandbox.primary.address] == 0
        assert all(n.healthy for n in conn.cluster.topology.nodes)


@pytest.fixture
def kept_alias(fresh_sandbox: Sandbox) -> Iterator[str]:
    """No monitor, connections kept across requests for ten minutes."""
    entry = node_settings(fresh_sandbox)
    entry["CONN_MAX_AGE"] = 600
    add_alias("kept", entry)
    try:
        yield "kept"
    finally:
        drop_alias("kept")


@pytest.mark.failover
@pytest.mark.server(
    "mariadb", reason="the failover elsewhere is MariaDB SQL (test_reliability_fence's helper)"
)
@pytest.mark.parametrize("in_atomic", [False, True], ids=["autocommit", "atomic"])
def test_persistent_connections_never_write_to_a_fenced_primary(
    kept_alias: str, fresh_sandbox: Sandbox, in_atomic: bool
) -> None:
    sb = fresh_sandbox
    old = sb.primary
    conn = connections[kept_alias]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE f (id INT PRIMARY KEY)")
        cursor.execute("INSERT INTO f VALUES (1)")
    close_old_connections()  # the end of a request: CONN_MAX_AGE keeps the connection
    kept = conn.connection
    assert kept is not None
    new = fail_over_elsewhere(sb)
    before = binlog_pos(old)

    with pytest.raises(OperationalError, match="read-only") as caught:
        if in_atomic:
            with transaction.atomic(using=kept_alias), conn.cursor() as cursor:
                cursor.execute("INSERT INTO f VALUES (2)")
        else:
            with conn.cursor() as cursor:
                cursor.execute("INSERT INTO f VALUES (2)")
    assert isinstance(rwsplit_error(caught.value), RetryableWriteError), caught.value
    assert binlog_pos(old) == before, "a write was executed on the fenced old primary"
    assert count(old, "f") == 1

    # Rediscovered without a monitor: the retry goes to the new primary.
    assert conn.cluster.primary_name == new.address
    with transaction.atomic(using=kept_alias), conn.cursor() as cursor:
        cursor.execute("INSERT INTO f VALUES (2)")
    assert count(new, "f") == 2
    assert binlog_pos(old) == before


@pytest.fixture
def storm_alias(fresh_sandbox: Sandbox) -> Iterator[str]:
    add_alias("storm", node_settings(fresh_sandbox))
    try:
        yield "storm"
    finally:
        drop_alias("storm")


def test_a_full_primary_gives_a_typed_error(storm_alias: str, fresh_sandbox: Sandbox) -> None:
    """The primary refuses new connections (1040 Too many connections): the write that needs
    one gets ``OperationalError`` carrying :class:`~rwsplit.RetryableWriteError` that names
    the node and the cause; a plain read goes to a replica; writes go on once slots free."""
    import pymysql

    sb = fresh_sandbox
    primary = sb.primary
    conn = connections[storm_alias]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE storm (id INT PRIMARY KEY)")
    sb.wait_caught_up()
    close_old_connections()
    conn.close()
    admin = primary.connect()  # taken before the fill: it restores the limit
    held = [admin]
    try:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL max_connections = 10")
        for _ in range(300):  # bounded: the server allows 10 (+1 for SUPER)
            try:
                held.append(primary.connect())
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == 1040, exc
                break
        else:
            raise AssertionError("the primary accepted 300 connections")
        with pytest.raises(OperationalError) as caught, conn.cursor() as cursor:
            cursor.execute("INSERT INTO storm VALUES (1)")
        err = rwsplit_error(caught.value)
        assert isinstance(err, RetryableWriteError), caught.value
        assert f"primary {primary.address} refused a new connection" in str(err)
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM storm")
            assert cursor.fetchone() == (0,)
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL max_connections = 300")
    finally:
        for c in held:
            c.close()
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO storm VALUES (2)")
    assert count(primary, "storm") == 1
