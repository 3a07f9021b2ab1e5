"""The rwsplit.django backend on real sandbox clusters, Django configured in-process.

Where statements ran is read from the servers themselves: ``Com_select`` for reads, each
node's own binary log for writes (a replica's own binlog only moves when a write ran on it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rwsplit.sandbox import DATABASE, REPL_PASSWORD, REPL_USER, Sandbox
from tests.djangoapp import add_alias, configure, drop_alias, in_thread, node_settings
from tests.integration.counters import delta, snapshot
from tests.integration.util import general_log, position, run, sql, wait_position, wait_until

pytestmark = pytest.mark.integration

configure()

from django.db import connections, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from rwsplit import RetryableWriteError, TransactionOutcomeUnknownError  # noqa: E402
from rwsplit.django import (  # noqa: E402
    causal_scope,
    is_retryable,
    outcome_unknown,
    read_only,
    rwsplit_error,
    use_primary,
)
from tests.djangoapp.models import Item  # noqa: E402

DB = "django_rw"


def _create_schema(alias: str, sb: Sandbox) -> None:
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, database=alias, verbosity=0)
    sb.wait_caught_up()


_in_thread = in_thread


@pytest.fixture(scope="module")
def rw(sandbox: Sandbox) -> Iterator[str]:
    """Alias ``rw``: the shared sandbox, its own database."""
    sql(sandbox.primary, f"CREATE DATABASE IF NOT EXISTS {DB}")
    entry = node_settings(sandbox, causal_timeout=0.2)
    entry["NAME"] = DB
    add_alias("rw", entry)
    try:
        _create_schema("rw", sandbox)
        yield "rw"
    finally:
        drop_alias("rw")
        sql(sandbox.primary, f"DROP DATABASE IF EXISTS {DB}")
        sandbox.wait_caught_up()


def _own_writes(sb: Sandbox) -> dict[str, int]:
    return {name: c["own_binlog_writes"] for name, c in snapshot(sb).items()}


def test_queryset_reads_go_to_replicas_and_never_open_the_primary(
    rw: str, sandbox: Sandbox
) -> None:
    Item.objects.using(rw).create(name="seed")
    sandbox.wait_caught_up()

    def reads() -> tuple[bool, int]:
        conn = connections[rw]
        total = sum(Item.objects.using(rw).filter(value__gte=0).count() for _ in range(20))
        return conn.connection is None, total

    before = snapshot(sandbox)
    primary_untouched, total = _in_thread(reads)
    d = delta(before, snapshot(sandbox))
    assert primary_untouched  # a request that only reads never connects to the primary
    assert total >= 20
    assert d[sandbox.primary.name]["Com_select"] == 0
    replica_selects = [d[r.name]["Com_select"] for r in sandbox.replicas]
    assert sum(replica_selects) >= 20
    assert all(n > 0 for n in replica_selects)  # balanced over both


def test_writes_and_raw_cursor_writes_land_on_the_primary_only(rw: str, sandbox: Sandbox) -> None:
    before = _own_writes(sandbox)

    def writes() -> int:
        item = Item.objects.using(rw).create(name="w1")
        Item.objects.using(rw).filter(pk=item.pk).update(value=5)
        Item.objects.using(rw).bulk_create([Item(name=f"b{i}") for i in range(3)])
        Item.objects.using(rw).get_or_create(name="goc", defaults={"value": 7})
        with connections[rw].cursor() as cursor:
            cursor.execute("INSERT INTO rwsplit_tests_item (name, value) VALUES (%s, %s)", ["r", 1])
            cursor.execute("UPDATE rwsplit_tests_item SET value = value + 1 WHERE name = %s", ["r"])
            cursor.execute("SELECT value FROM rwsplit_tests_item WHERE name = %s", ["r"])
            row = cursor.fetchone()
        Item.objects.using(rw).filter(name__startswith="b").delete()
        return int(row[0])

    # The raw SELECT right after the raw writes reads them (read-your-writes).
    assert _in_thread(writes) == 2
    after = _own_writes(sandbox)
    assert after[sandbox.primary.name] - before[sandbox.primary.name] >= 7
    for r in sandbox.replicas:
        assert after[r.name] == before[r.name], f"a write ran on replica {r.name}"


def test_atomic_and_select_for_update_run_on_the_primary(rw: str, sandbox: Sandbox) -> None:
    item = Item.objects.using(rw).create(name="locked")
    sandbox.wait_caught_up()

    def unit() -> int:
        with transaction.atomic(using=rw):
            Item.objects.using(rw).filter(pk=item.pk).count()  # a read inside atomic()
            locked = Item.objects.using(rw).select_for_update().get(pk=item.pk)
            locked.value = 42
            locked.save()
            return Item.objects.using(rw).get(pk=item.pk).value

    before = snapshot(sandbox)
    assert _in_thread(unit) == 42
    d = delta(before, snapshot(sandbox))
    assert d[sandbox.primary.name]["Com_select"] >= 3
    for r in sandbox.replicas:
        assert d[r.name]["Com_select"] == 0, f"a statement of atomic() ran on {r.name}"
        assert d[r.name]["own_binlog_writes"] == 0


def test_use_primary_as_block_and_decorator(rw: str, sandbox: Sandbox) -> None:
    @use_primary()
    def decorated() -> int:
        return Item.objects.using(rw).count()

    def reads() -> None:
        with use_primary():
            for _ in range(5):
                Item.objects.using(rw).count()
        for _ in range(5):
            decorated()

    before = snapshot(sandbox)
    _in_thread(reads)
    d = delta(before, snapshot(sandbox))
    assert d[sandbox.primary.name]["Com_select"] >= 10
    assert all(d[r.name]["Com_select"] == 0 for r in sandbox.replicas)


@contextlib.contextmanager
def _sql_threads_stopped(sb: Sandbox) -> Iterator[None]:
    for r in sb.replicas:
        run(r, lambda f: f.stop_sql_thread())
    try:
        yield
    finally:
        for r in sb.replicas:
            run(r, lambda f: f.start_sql_thread())
        sb.wait_caught_up()


def test_post_redirect_get_reads_its_write_with_replicas_stalled(rw: str, sandbox: Sandbox) -> None:
    rounds = 10
    stale = 0
    with _sql_threads_stopped(sandbox):
        for i in range(rounds):
            client = Client()
            response = _in_thread(client.post, f"/{rw}/items", {"name": f"prg{i}"})
            assert response.status_code == 302
            assert "rwsplit_causal" in response.cookies
            # The GET in another thread: another DatabaseWrapper, only the cookie links them.
            got = _in_thread(client.get, response["Location"])
            if got.status_code != 200 or got.json()["name"] != f"prg{i}":
                stale += 1
            bump = _in_thread(client.post, f"{response['Location']}/bump", {"value": i + 10})
            got = _in_thread(client.get, bump["Location"])
            if got.json().get("value") != i + 10:
                stale += 1
        # Control: without the cookie the same read is stale (the replicas lack the row),
        # so the test above can fail.
        control = _in_thread(Client().get, response["Location"])
    assert stale == 0
    assert control.status_code == 404


def test_session_store_carries_the_token(rw: str, sandbox: Sandbox) -> None:
    from django.test import override_settings

    with override_settings(RWSPLIT_CAUSAL_STORE="session"), _sql_threads_stopped(sandbox):
        client = Client()
        response = _in_thread(client.post, f"/{rw}/items", {"name": "in-session"})
        assert "rwsplit_causal" not in response.cookies
        got = _in_thread(client.get, response["Location"])
        assert got.status_code == 200 and got.json()["name"] == "in-session"


def test_errors_carry_rwsplit_verdicts() -> None:
    from django.db import OperationalError

    from rwsplit.django.base import django_error

    exc = django_error(RetryableWriteError("retry"), OSError(2013, "lost"))
    assert isinstance(exc, OperationalError)
    assert exc.args[0] == 2013
    assert is_retryable(exc) and not outcome_unknown(exc)
    assert isinstance(exc.__cause__, RetryableWriteError)
    unknown = django_error(TransactionOutcomeUnknownError("check"))
    assert outcome_unknown(unknown) and rwsplit_error(unknown) is unknown.__cause__


def test_topology_command_lists_every_node(rw: str, sandbox: Sandbox) -> None:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("rwsplit_topology", database=rw, stdout=out)
    text = out.getvalue()
    assert f"{sandbox.primary.address:<22} primary  up      no " in text
    for r in sandbox.replicas:
        assert f"{r.address:<22} replica  up      yes " in text  # as `rwsplit topology`
    assert "True" not in text and "False" not in text


# ---------------------------------------------------------------------- read_only() atomic()


def _binlog_positions(sb: Sandbox) -> dict[str, tuple[str, int]]:
    """Each replica's own binary log position: it moves only with a write executed on it
    (replicas run without log-slave-updates)."""
    out = {}
    for r in sb.replicas:
        row = sql(r, sb.family.binlog_status_sql())[0]
        out[r.name] = (str(row[0]), int(str(row[1])))
    return out


def test_read_only_atomic_runs_in_one_replica_transaction(rw: str, sandbox: Sandbox) -> None:
    Item.objects.using(rw).create(name="ro-seed")
    sandbox.wait_caught_up()
    by_port = {r.port: r for r in sandbox.replicas}

    def block() -> dict[str, Any]:
        conn = connections[rw]
        ports = set()
        with read_only(), transaction.atomic(using=rw):
            replica = conn.read_only_replica
            assert replica is not None and not conn.on_primary
            first = Item.objects.using(rw).count()
            with conn.cursor() as cursor:
                for _ in range(5):
                    cursor.execute("SELECT @@port")
                    ports.add(int(cursor.fetchone()[0]))
            # A row committed meanwhile, applied by this very replica: the block's snapshot
            # does not see it (one transaction), a read after the block does.
            sql(
                sandbox.primary,
                f"INSERT INTO {DB}.rwsplit_tests_item (name, value) VALUES ('x', 0)",
            )
            # (SHOW, not SELECT: the primary's Com_select must stay the block's own, zero.)
            pos = position(sandbox.primary)
            node = by_port[next(iter(ports))]
            assert wait_position(node, pos, 20)
            with transaction.atomic(using=rw):  # nested: a savepoint
                inner = Item.objects.using(rw).count()
                ports.add(int(Item.objects.using(rw).raw("SELECT 1 AS id, @@port AS p")[0].p))
            second = Item.objects.using(rw).count()
        after = Item.objects.using(rw).count()
        return {
            "ports": ports,
            "counts": (first, inner, second, after),
            "primary_opened": conn.connection is not None,
            "replica": replica,
            "routed": dict(conn.routed),
        }

    before = snapshot(sandbox)
    result = _in_thread(block)
    d = delta(before, snapshot(sandbox))
    assert len(result["ports"]) == 1, result  # every statement on one node ...
    port = next(iter(result["ports"]))
    assert port in by_port  # ... a replica
    assert result["replica"] == by_port[port].address
    first, inner, second, after = result["counts"]
    assert first == inner == second  # one snapshot
    assert after == first + 1
    assert not result["primary_opened"]  # the block never connected to the primary
    assert d[sandbox.primary.name]["Com_select"] == 0


def test_writes_inside_read_only_raise_and_reach_no_server(rw: str, sandbox: Sandbox) -> None:
    from django.db import ProgrammingError

    from rwsplit import RoutingError

    item = Item.objects.using(rw).create(name="ro-target")
    sandbox.wait_caught_up()
    binlogs = _binlog_positions(sandbox)
    writes = _own_writes(sandbox)

    def attempts() -> list[BaseException]:
        caught: list[BaseException] = []
        table = "rwsplit_tests_item"
        steps: list[Any] = [
            lambda: Item.objects.using(rw).create(name="ro-write"),
            lambda: Item.objects.using(rw).filter(pk=item.pk).update(value=99),
            lambda: list(Item.objects.using(rw).select_for_update().filter(pk=item.pk)),
            lambda: (
                connections[rw].cursor().execute(f"DELETE FROM {table} WHERE id = %s", [item.pk])
            ),
            lambda: connections[rw].cursor().execute("SET @x = 1"),
            lambda: connections[rw].cursor().execute("COMMIT"),
        ]
        for step in steps:
            with read_only():
                try:
                    with transaction.atomic(using=rw):
                        Item.objects.using(rw).count()  # the transaction is open on a replica
                        step()
                except ProgrammingError as exc:
                    caught.append(exc)
        # Outside atomic(), the same screen: a write in read_only() raises, reads work.
        with read_only():
            try:
                Item.objects.using(rw).filter(pk=item.pk).update(value=98)
            except ProgrammingError as exc:
                caught.append(exc)
            assert Item.objects.using(rw).get(pk=item.pk).value == 0
        return caught

    caught = _in_thread(attempts)
    assert len(caught) == 7, caught
    for exc in caught:
        assert isinstance(rwsplit_error(exc), RoutingError), repr(exc)
        assert "read_only()" in str(exc) and "nothing was sent" in str(exc)
    assert "locking read" in str(caught[2])
    assert _binlog_positions(sandbox) == binlogs  # nothing was written on any replica
    assert _own_writes(sandbox)[sandbox.primary.name] == writes[sandbox.primary.name]
    assert Item.objects.using(rw).get(pk=item.pk).value == 0
    assert not Item.objects.using(rw).filter(name="ro-write").exists()


def test_read_only_atomic_waits_for_the_causal_token(rw: str, sandbox: Sandbox) -> None:
    primary_port = sandbox.primary.port
    replica_ports = {r.port for r in sandbox.replicas}

    def write() -> dict[str, str]:
        with causal_scope() as scope:
            Item.objects.using(rw).create(name="causal-ro")
        return dict(scope.tokens)

    def block(tokens: dict[str, str] | None) -> tuple[bool, int]:
        with causal_scope(tokens), read_only(), transaction.atomic(using=rw):
            found = Item.objects.using(rw).filter(name="causal-ro").exists()
            with connections[rw].cursor() as cursor:
                cursor.execute("SELECT @@port")
                return found, int(cursor.fetchone()[0])

    with _sql_threads_stopped(sandbox):
        tokens = _in_thread(write)
        assert tokens.get(rw)
        # No replica applies the token within causal_timeout: the block reads the primary.
        assert _in_thread(block, tokens) == (True, primary_port)
        # Control: without the token the block runs on a replica, which lacks the row.
        found, port = _in_thread(block, None)
        assert (found, port in replica_ports) == (False, True)
    # Replicas caught up (the context manager waited): the block runs on one, row and all.
    found, port = _in_thread(block, tokens)
    assert found and port in replica_ports


def test_read_only_atomic_on_the_primary_is_read_only_too(rw: str, sandbox: Sandbox) -> None:
    from django.db import ProgrammingError

    item = Item.objects.using(rw).create(name="ro-primary")

    def block() -> tuple[int, int, int, str | None, bool]:
        conn = connections[rw]
        with use_primary(), read_only(), transaction.atomic(using=rw):
            first = Item.objects.using(rw).count()
            with conn.cursor() as cursor:
                cursor.execute("SELECT @@port")
                port = int(cursor.fetchone()[0])
            # The primary enforces it as well (a write the classifier cannot see, in a stored
            # function's body say): the server refuses a write on the block's own connection.
            raw = conn.connection.cursor()
            try:
                raw.execute(f"INSERT INTO {DB}.rwsplit_tests_item (name, value) VALUES ('z', 0)")
                server_refused = False
            except Exception as exc:
                server_refused = exc.args[0] == 1792  # in a READ ONLY transaction
            finally:
                raw.close()
            sql(
                sandbox.primary,
                f"INSERT INTO {DB}.rwsplit_tests_item (name, value) VALUES ('y', 0)",
            )
            second = Item.objects.using(rw).count()
            try:
                with transaction.atomic(using=rw):
                    Item.objects.using(rw).filter(pk=item.pk).update(value=7)
                raised = False
            except ProgrammingError:
                raised = True
        return first, second, port, conn.read_only_replica, raised and server_refused

    first, second, port, replica, refused = _in_thread(block)
    assert port == sandbox.primary.port and replica is None
    assert first == second  # one snapshot on the primary as well
    assert refused
    assert Item.objects.using(rw).get(pk=item.pk).value == 0


# ---------------------------------------------------------------------- failures (own clusters)


@pytest.fixture
def fresh_alias(fresh_sandbox: Sandbox) -> Iterator[tuple[str, Sandbox]]:
    yield "fresh", fresh_sandbox
    drop_alias("fresh")


@pytest.mark.failover
def test_replica_killed_under_read_load_fails_no_request(
    fresh_alias: tuple[str, Sandbox],
) -> None:
    alias, sb = fresh_alias
    add_alias(alias, node_settings(sb, down_retry_interval=60.0, causal_timeout=0.2))
    _create_schema(alias, sb)
    Item.objects.using(alias).bulk_create([Item(name=f"k{i}") for i in range(10)])
    sb.wait_caught_up()
    victim = sb.replicas[0]
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            for _ in range(2000):
                if stop.is_set():
                    return
                counts.append(Item.objects.using(alias).count())
        except BaseException as exc:  # recorded: the assertion below names it
            errors.append(exc)
        finally:
            connections[alias].close()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(counts) > 100, what="reads before the kill")
        sb.kill(victim.name)
        n = len(counts)
        wait_until(lambda: len(counts) > n + 300 or errors, what="reads after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert set(counts) == {10}
    cluster = connections[alias].cluster
    assert not cluster.topology.node(victim.address).healthy


@pytest.mark.failover
def test_primary_kill_9_with_auto_failover(fresh_alias: tuple[str, Sandbox]) -> None:
    alias, sb = fresh_alias
    options = {
        "monitor_interval": 0.2,
        "monitor_timeout": 0.5,
        "failure_threshold": 2,
        "auto_failover": True,
        "failover_options": {"replication_user": REPL_USER, "replication_password": REPL_PASSWORD},
    }
    add_alias(alias, node_settings(sb, **options))
    _create_schema(alias, sb)
    Item.objects.using(alias).create(name="before")
    sb.wait_caught_up()
    old = sb.primary
    # A transaction open across the kill: its next statement fails, nothing was committed.
    from django.db import OperationalError

    with pytest.raises(OperationalError) as in_txn, transaction.atomic(using=alias):
        Item.objects.using(alias).create(name="in-txn")
        sb.kill(old.name)
        Item.objects.using(alias).create(name="in-txn-2")
    assert isinstance(rwsplit_error(in_txn.value), RetryableWriteError), repr(in_txn.value)
    failures: list[BaseException] = []
    written = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            written = Item.objects.using(alias).create(name="after")
            break
        except Exception as exc:  # the documented errors, until the new primary is published
            failures.append(exc)
            time.sleep(0.05)
    assert written is not None, f"no write succeeded after the kill: {failures[-3:]}"
    assert failures, "the kill went unnoticed"
    # Every failure is an OperationalError that says whether a retry is safe.
    for exc in failures:
        assert isinstance(exc, OperationalError), repr(exc)
        assert is_retryable(exc) or outcome_unknown(exc), repr(exc)
    cluster = connections[alias].cluster
    new = cluster.topology.primary
    assert new is not None and new.name != old.address
    target = next(n for n in sb.nodes if n.address == new.name)
    rows = sql(target, f"SELECT COUNT(*) FROM {DATABASE}.rwsplit_tests_item WHERE name = 'after'")
    assert rows[0][0] == 1
    rows = sql(
        target, f"SELECT COUNT(*) FROM {DATABASE}.rwsplit_tests_item WHERE name LIKE 'in-txn%'"
    )
    assert rows[0][0] == 0  # the transaction cut by the kill left nothing


def test_asgi_post_redirect_get_reads_its_write(rw: str, sandbox: Sandbox) -> None:
    import asyncio

    from django.test import AsyncClient

    def round_trip(client: AsyncClient, i: int) -> Any:
        async def post() -> Any:
            return await client.post(f"/{rw}/items", {"name": f"asgi{i}"})

        return asyncio.run(post())

    def read(client: AsyncClient, location: str) -> Any:
        async def get() -> Any:
            return await client.get(location)

        return asyncio.run(get())

    with _sql_threads_stopped(sandbox):
        for i in range(3):
            client = AsyncClient()
            response = _in_thread(round_trip, client, i)
            assert response.status_code == 302
            # The token crossed from the view's sync thread back to the async middleware.
            assert "rwsplit_causal" in response.cookies
            got = _in_thread(read, client, response["Location"])
            assert got.status_code == 200 and got.json()["name"] == f"asgi{i}"
        # asgiref runs every sync view in one thread here; a control in another thread (a
        # fresh DatabaseWrapper, no cookie) shows the replicas really lack the row.
        control = _in_thread(Client().get, response["Location"])
    assert control.status_code == 404


_PYMYSQL_SCRIPT = """
import json, sys
import pymysql
pymysql.install_as_MySQLdb()
from tests.djangoapp import add_alias, configure
configure()
entry = json.loads(sys.argv[1])
add_alias("pm", entry)
from django.db import connections
from tests.djangoapp.models import Item
item = Item.objects.using("pm").create(name="pymysql")
got = Item.objects.using("pm").get(pk=item.pk).name
conn = connections["pm"]
print(json.dumps({"driver": conn.Database.__name__, "got": got, "routed": conn.routed}))
"""


def test_pymysql_in_place_of_mysqlclient(rw: str, sandbox: Sandbox) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    from django.db import connections as conns

    entry = {k: v for k, v in conns.settings[rw].items() if k != "TEST"}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _PYMYSQL_SCRIPT, json.dumps(entry)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["driver"] == "pymysql"
    assert result["got"] == "pymysql"  # read back through the causal wait, or the primary
    assert sum(result["routed"].values()) >= 2


_LATE_SCRIPT = """
import json, sys
from tests.djangoapp import add_alias, configure
configure()
add_alias("late", json.loads(sys.argv[1]))
from django.db import connections
from tests.djangoapp.models import Item
Item.objects.using("late").create(name="late")
conn = connections["late"]
print(json.dumps({"primary": conn._primary_node, "fenced": sorted(conn.cluster.fenced)}))
"""


@pytest.mark.failover
def test_process_from_the_old_configuration_writes_to_the_new_primary(
    fresh_alias: tuple[str, Sandbox],
) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.integration.test_failover import own_gtid_seq
    from tests.integration.test_failover_fencing import _auto, _fail_over

    alias, sb = fresh_alias
    old_config = node_settings(sb)
    add_alias(alias, old_config)
    _create_schema(alias, sb)
    drop_alias(alias)
    old = sb.primary
    with _auto(sb) as first:  # the process that fails over, then goes away
        new = _fail_over(sb, first)
    # The old primary restarts writable, as after a crash; nobody fenced it, and its own
    # failover log (it was down) does not know of the failover: only the others' logs do.
    sb.restart(old.name)
    assert sql(old, "SELECT @@read_only")[0][0] == 0
    before = own_gtid_seq(old)
    out = subprocess.run(
        [sys.executable, "-c", _LATE_SCRIPT, json.dumps(old_config)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"primary": new.address, "fenced": [old.address]}
    table = f"{DATABASE}.rwsplit_tests_item"
    assert sql(new, f"SELECT COUNT(*) FROM {table} WHERE name = 'late'")[0][0] == 1
    assert sql(old, f"SELECT COUNT(*) FROM {table} WHERE name = 'late'")[0][0] == 0
    assert own_gtid_seq(old) == before  # not one write executed on the old primary


@pytest.mark.failover
def test_replica_killed_inside_a_read_only_block(fresh_alias: tuple[str, Sandbox]) -> None:
    from django.db import OperationalError
    from django.db.transaction import TransactionManagementError

    from rwsplit import ReadFailedError

    alias, sb = fresh_alias
    add_alias(alias, node_settings(sb, down_retry_interval=60.0))
    _create_schema(alias, sb)
    Item.objects.using(alias).create(name="k")
    sb.wait_caught_up()
    conn = connections[alias]
    with pytest.raises(OperationalError) as failed, read_only(), transaction.atomic(using=alias):
        assert Item.objects.using(alias).count() == 1
        victim = next(r for r in sb.replicas if r.address == conn.read_only_replica)
        sb.kill(victim.name)
        try:
            Item.objects.using(alias).count()  # its snapshot died with the replica
        finally:
            # Not moved to another node mid-transaction: Django refuses the block's rest.
            with pytest.raises(TransactionManagementError):
                Item.objects.using(alias).count()
    assert isinstance(rwsplit_error(failed.value), ReadFailedError)
    assert "retry the whole block" in str(failed.value)
    # Retried, the block runs on the replica that is left.
    with read_only(), transaction.atomic(using=alias):
        assert Item.objects.using(alias).count() == 1
        assert conn.read_only_replica not in (None, victim.address)


@contextlib.contextmanager
def _replica_queries(sb: Sandbox) -> Iterator[list[str]]:
    """The SELECTs clients sent to the replicas while the block ran (their general logs; one
    entry per ``COM_QUERY``: MySQL's ``log_raw`` logs a multi-statement query as it came)."""
    seen: list[str] = []
    logs: list[list[str]] = []
    try:
        with contextlib.ExitStack() as stack:
            logs.extend(stack.enter_context(general_log(r, raw=True)) for r in sb.replicas)
            yield seen
    finally:
        seen.extend(q for log in logs for q in log if q.startswith("SELECT"))


def test_causal_read_waits_in_the_same_round_trip(rw: str, sandbox: Sandbox) -> None:
    def post_then_get() -> str:
        with causal_scope():
            item = Item.objects.using(rw).create(name="one-trip")
            return str(Item.objects.using(rw).get(pk=item.pk).name)

    _in_thread(post_then_get)  # warm-up: the replica connections exist
    with _replica_queries(sandbox) as log:
        assert _in_thread(post_then_get) == "one-trip"
    waits = [q for q in log if "GTID_WAIT" in q or "WAIT_FOR_EXECUTED_GTID_SET" in q]
    assert len(waits) == 1, log
    assert "rwsplit_tests_item" in waits[0]  # the read travelled with the wait
