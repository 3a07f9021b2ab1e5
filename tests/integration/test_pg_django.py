"""``rwsplit.django.postgresql`` on a real PostgreSQL primary and two hot standbys.

The session's ``pg_sandbox`` (``log_statement = 'all'``; tests/fix_pg.py): where a statement
ran is read from each server's own statement log, by a unique marker the statement carries (a
parameter value — psycopg binds on the client, so the server logs the full text). Every test
leaves replay running and the standbys' settings as it found them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rwsplit.sandbox.postgresql import DATABASE, PgSandbox
from tests.djangoapp import add_alias, configure, drop_alias, in_thread, pg_node_settings

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

configure()

from django.db import connections, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from rwsplit import RoutingError  # noqa: E402
from rwsplit.django import causal_scope, read_only, rwsplit_error, use_primary  # noqa: E402
from tests.djangoapp.models import Item  # noqa: E402

ALIAS = "pg"
TABLE = "rwsplit_tests_item"


@pytest.fixture(scope="module")
def sb(pg_sandbox: PgSandbox) -> PgSandbox:
    return pg_sandbox


@pytest.fixture(scope="module")
def pg(sb: PgSandbox) -> Iterator[str]:
    from django.core.management import call_command

    add_alias(ALIAS, pg_node_settings(sb, causal_timeout=0.3))
    try:
        call_command("migrate", run_syncdb=True, database=ALIAS, verbosity=0)
        sb.wait_caught_up()
        yield ALIAS
    finally:
        drop_alias(ALIAS)


def _marker() -> str:
    return f"m{uuid.uuid4().hex}"


def ran_on(sb: PgSandbox, marker: str, verb: str = "") -> list[str]:
    """The nodes whose statement log shows a statement carrying *marker* (and *verb*)."""
    out = []
    for n in sb.nodes:
        lines = n.log_path.read_text(errors="replace").splitlines()
        if any(marker in line and verb in line for line in lines):
            out.append(n.name)
    return out


_in_thread = in_thread


@contextlib.contextmanager
def _replay_paused(sb: PgSandbox) -> Iterator[None]:
    for s in sb.standbys:
        sb.pause_replay(s.name)
    try:
        yield
    finally:
        for s in sb.standbys:
            sb.resume_replay(s.name)
        sb.wait_caught_up()


def _port(cursor: Any) -> int:
    cursor.execute("SELECT current_setting('port')")  # a plain read: it runs where reads go
    return int(cursor.fetchone()[0])


def test_reads_go_to_standbys_and_never_open_the_primary(pg: str, sb: PgSandbox) -> None:
    marker = _marker()
    Item.objects.using(pg).create(name=marker)
    sb.wait_caught_up()

    def reads() -> tuple[bool, int, str]:
        conn = connections[pg]
        n = sum(Item.objects.using(pg).filter(name=marker).count() for _ in range(6))
        raw = list(Item.objects.using(pg).raw(f"SELECT * FROM {TABLE} WHERE name = %s", [marker]))
        return conn.connection is None, n, raw[0].name

    primary_untouched, n, raw_name = _in_thread(reads)
    assert primary_untouched  # a request that only reads never connects to the primary
    assert n == 6 and raw_name == marker
    where = ran_on(sb, marker, "SELECT")
    assert sb.primary.name not in where
    assert sorted(where) == sorted(s.name for s in sb.standbys)  # balanced over both


def test_writes_and_raw_cursor_writes_land_on_the_primary(pg: str, sb: PgSandbox) -> None:
    marker = _marker()

    def writes() -> tuple[int, int]:
        item = Item.objects.using(pg).create(name=marker)
        Item.objects.using(pg).filter(pk=item.pk).update(value=5)
        Item.objects.using(pg).bulk_create([Item(name=marker) for _ in range(3)])
        Item.objects.using(pg).get_or_create(name=f"{marker}-goc", defaults={"value": 7})
        with connections[pg].cursor() as cursor:
            cursor.execute(f"INSERT INTO {TABLE} (name, value) VALUES (%s, %s)", [marker, 1])
            cursor.execute(f"UPDATE {TABLE} SET value = value + 1 WHERE name = %s", [marker])
            # Read right after the writes: read-your-writes (a standby after its wait, or the
            # primary).
            cursor.execute(f"SELECT count(*), sum(value) FROM {TABLE} WHERE name = %s", [marker])
            count, total = cursor.fetchone()
        Item.objects.using(pg).filter(name=marker, value=1).delete()
        return int(count), int(total)

    assert _in_thread(writes) == (5, 5 + 1 + 3 * 1 + 2)  # (5+1) + 3*(0+1) + (1+1)
    for verb in ("INSERT", "UPDATE", "DELETE"):
        assert ran_on(sb, marker, verb) == [sb.primary.name], verb
    assert connections[pg].healed == 0  # nothing was refused by a standby


def test_atomic_and_select_for_update_run_on_the_primary(pg: str, sb: PgSandbox) -> None:
    marker = _marker()
    item = Item.objects.using(pg).create(name=marker)
    sb.wait_caught_up()

    def unit() -> int:
        with transaction.atomic(using=pg):
            Item.objects.using(pg).filter(name=marker).count()  # a read inside atomic()
            locked = Item.objects.using(pg).select_for_update().get(pk=item.pk, name=marker)
            locked.value = 42
            locked.save()
            return Item.objects.using(pg).get(pk=item.pk, name=marker).value

    assert _in_thread(unit) == 42
    assert ran_on(sb, marker) == [sb.primary.name]


def test_use_primary_reads_on_the_primary(pg: str, sb: PgSandbox) -> None:
    marker = _marker()

    def reads() -> None:
        with use_primary():
            Item.objects.using(pg).filter(name=marker).count()

    _in_thread(reads)
    assert ran_on(sb, marker) == [sb.primary.name]


def test_post_redirect_get_reads_its_write_with_replay_paused(pg: str, sb: PgSandbox) -> None:
    from django.core import signing

    with _replay_paused(sb):
        for i in range(3):
            client = Client()
            response = _in_thread(client.post, f"/{pg}/items", {"name": f"prg{i}"})
            assert response.status_code == 302
            cookie = response.cookies["rwsplit_causal"].value
            token = signing.loads(cookie, salt="rwsplit.django.causal")[pg]
            assert token.startswith("pg:")  # the WAL position of the POST's commit
            # The GET in another thread: another DatabaseWrapper, only the cookie links them.
            got = _in_thread(client.get, response["Location"])
            assert got.status_code == 200 and got.json()["name"] == f"prg{i}"
            bump = _in_thread(client.post, f"{response['Location']}/bump", {"value": i + 10})
            assert _in_thread(client.get, bump["Location"]).json()["value"] == i + 10
        # Control: without the cookie the same read runs on a standby, which lacks the row.
        control = _in_thread(Client().get, response["Location"])
    assert control.status_code == 404


def test_asgi_post_redirect_get_reads_its_write(pg: str, sb: PgSandbox) -> None:
    import asyncio

    from django.test import AsyncClient

    def call(method: str, client: AsyncClient, *args: Any) -> Any:
        async def request() -> Any:
            return await getattr(client, method)(*args)

        return asyncio.run(request())

    with _replay_paused(sb):
        client = AsyncClient()
        response = _in_thread(call, "post", client, f"/{pg}/items", {"name": "asgi"})
        assert response.status_code == 302 and "rwsplit_causal" in response.cookies
        got = _in_thread(call, "get", client, response["Location"])
        assert got.status_code == 200 and got.json()["name"] == "asgi"
        control = _in_thread(Client().get, response["Location"])
    assert control.status_code == 404


def test_causal_read_waits_on_a_standby_that_catches_up(pg: str, sb: PgSandbox) -> None:
    marker = _marker()

    def write() -> dict[str, str]:
        with causal_scope() as scope:
            Item.objects.using(pg).create(name=marker)
        return dict(scope.tokens)

    tokens = _in_thread(write)
    sb.wait_caught_up()

    def read() -> tuple[bool, dict[str, int]]:
        with causal_scope(tokens):
            found = Item.objects.using(pg).filter(name=marker).exists()
        return found, dict(connections[pg].routed)

    found, routed = _in_thread(read)
    assert found
    assert sb.primary.address not in routed  # the wait passed: the read ran on a standby
    assert len(ran_on(sb, marker, "SELECT")) == 1
    assert ran_on(sb, marker, "SELECT") != [sb.primary.name]


def test_read_only_atomic_is_one_snapshot_on_one_standby(pg: str, sb: PgSandbox) -> None:
    Item.objects.using(pg).create(name="ro-seed")
    sb.wait_caught_up()
    standby_ports = {s.port for s in sb.standbys}

    def block() -> dict[str, Any]:
        conn = connections[pg]
        with read_only(), transaction.atomic(using=pg):
            replica = conn.read_only_replica
            first = Item.objects.using(pg).count()
            with conn.cursor() as cursor:
                ports = {_port(cursor) for _ in range(3)}
                cursor.execute(
                    "SELECT current_setting('transaction_isolation'), "
                    "current_setting('transaction_read_only')"
                )
                isolation, ro = cursor.fetchone()
            # A row committed meanwhile and replayed by every standby: the block's snapshot
            # does not see it (one transaction), a read after the block does.
            with contextlib.closing(sb.primary.connect()) as direct:
                direct.execute(f"INSERT INTO {TABLE} (name, value) VALUES ('ro-new', 0)")
            sb.wait_caught_up()
            with transaction.atomic(using=pg):  # nested: a savepoint (a no-op here)
                inner = Item.objects.using(pg).count()
            second = Item.objects.using(pg).count()
        after = Item.objects.using(pg).count()
        return {
            "replica": replica,
            "ports": ports,
            "counts": (first, inner, second, after),
            "snapshot": (isolation, ro),
            "primary_opened": conn.connection is not None,
        }

    r = _in_thread(block)
    assert len(r["ports"]) == 1 and r["ports"] <= standby_ports, r
    assert r["replica"] == f"127.0.0.1:{next(iter(r['ports']))}"
    first, inner, second, after = r["counts"]
    assert first == inner == second and after == first + 1  # one snapshot
    assert r["snapshot"] == ("repeatable read", "on")
    assert not r["primary_opened"]


def test_writes_inside_read_only_raise_and_reach_no_server(pg: str, sb: PgSandbox) -> None:
    from django.db import ProgrammingError

    marker = _marker()
    item = Item.objects.using(pg).create(name="ro-target")
    sb.wait_caught_up()

    def attempts() -> list[BaseException]:
        caught: list[BaseException] = []
        steps: list[Any] = [
            lambda: Item.objects.using(pg).create(name=marker),
            lambda: Item.objects.using(pg).filter(pk=item.pk, name=marker).update(value=9),
            lambda: list(Item.objects.using(pg).select_for_update().filter(name=marker)),
            lambda: connections[pg].cursor().execute(f"SELECT nextval('{marker}')"),
            lambda: connections[pg].cursor().execute(f"SET application_name = '{marker}'"),
        ]
        for step in steps:
            with read_only():
                try:
                    with transaction.atomic(using=pg):
                        Item.objects.using(pg).count()  # the transaction is open on a standby
                        step()
                except ProgrammingError as exc:
                    caught.append(exc)
        return caught

    caught = _in_thread(attempts)
    assert len(caught) == 5, caught
    for exc in caught:
        assert isinstance(rwsplit_error(exc), RoutingError), repr(exc)
        assert "nothing was sent" in str(exc)
    assert ran_on(sb, marker) == []  # no server saw any of them


def test_read_only_atomic_waits_for_the_causal_token(pg: str, sb: PgSandbox) -> None:
    marker = _marker()

    def write() -> dict[str, str]:
        with causal_scope() as scope:
            Item.objects.using(pg).create(name=marker)
        return dict(scope.tokens)

    def block(tokens: dict[str, str] | None) -> tuple[bool, int]:
        with causal_scope(tokens), read_only(), transaction.atomic(using=pg):
            found = Item.objects.using(pg).filter(name=marker).exists()
            with connections[pg].cursor() as cursor:
                return found, _port(cursor)

    with _replay_paused(sb):
        tokens = _in_thread(write)
        # No standby replays the token within causal_timeout: the block runs on the primary
        # (read-only there too).
        assert _in_thread(block, tokens) == (True, sb.primary.port)
        found, port = _in_thread(block, None)  # control: a standby, without the row
        assert not found and port != sb.primary.port
    found, port = _in_thread(block, tokens)  # replayed now: a standby, row and all
    assert found and port != sb.primary.port


def test_migrations_run_on_the_primary_and_reach_the_standbys(pg: str, sb: PgSandbox) -> None:
    from django.core.management import call_command
    from django.db.migrations.recorder import MigrationRecorder

    # contenttypes and sessions have real migrations; take sessions back and forth.
    call_command("migrate", "sessions", "zero", database=pg, verbosity=0)
    assert not _in_thread(lambda: "django_session" in connections[pg].introspection.table_names())
    call_command("migrate", "sessions", database=pg, verbosity=0)
    sb.wait_caught_up()
    for standby in sb.standbys:
        with contextlib.closing(standby.connect()) as direct:
            row = direct.execute("SELECT to_regclass('django_session') IS NOT NULL").fetchone()
            assert row is not None and row[0], standby.name
    applied = _in_thread(
        lambda: MigrationRecorder(connections[pg]).applied_migrations().keys()  # a standby
    )
    assert ("sessions", "0001_initial") in applied
    for standby in sb.standbys:
        log = standby.log_path.read_text(errors="replace")
        assert 'CREATE TABLE "django_session"' not in log  # DDL ran on the primary only


def test_test_database_is_on_the_standbys_before_the_tests_and_gone_after(sb: PgSandbox) -> None:
    from django.conf import settings

    alias = "pgtestdb"
    add_alias(alias, {**pg_node_settings(sb), "TEST": {"NAME": "rwsplit_test_creation"}})
    settings.DATABASES[alias] = connections.settings[alias]  # create_test_db renames it there
    creation = connections[alias].creation

    def on_standbys() -> list[bool]:
        found = []
        for s in sb.standbys:  # right away: no wait of the test's own
            with contextlib.closing(s.connect()) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_database WHERE datname = 'rwsplit_test_creation'"
                ).fetchone()
                found.append(bool(row and row[0]))
        return found

    try:
        old_name = DATABASE
        name = creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        assert name == "rwsplit_test_creation"
        assert on_standbys() == [True, True]
        # The schema too: a read on a standby finds the migrated table.
        assert Item.objects.using(alias).count() == 0
        creation.destroy_test_db(old_name, verbosity=0)
        assert on_standbys() == [False, False]
    finally:
        settings.DATABASES.pop(alias, None)
        drop_alias(alias)


def test_topology_command_lists_every_node(pg: str, sb: PgSandbox) -> None:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("rwsplit_topology", database=pg, stdout=out)
    text = out.getvalue()
    assert sb.primary.address in text and "primary" in text
    for s in sb.standbys:
        assert s.address in text


def test_cluster_urls_use_the_maintenance_database(pg: str) -> None:
    urls = [n.url for n in connections[pg].cluster.topology.nodes]
    assert {u.drivername for u in urls} == {"postgresql+psycopg"}
    assert {u.database for u in urls} == {"postgres"}  # not NAME, which tests rename
    assert connections[pg].settings_dict["NAME"] == DATABASE


def _set_on_standbys(sb: PgSandbox, setting: str) -> None:
    for s in sb.standbys:
        with contextlib.closing(s.connect()) as conn:
            conn.execute(f"ALTER SYSTEM {setting}")
            conn.execute("SELECT pg_reload_conf()")


@contextlib.contextmanager
def _cancel_conflicting_reads(sb: PgSandbox) -> Iterator[None]:
    """Standbys cancel a read that holds what replay needs at once (no streaming delay)."""
    _set_on_standbys(sb, "SET max_standby_streaming_delay = 0")
    try:
        yield
    finally:
        _set_on_standbys(sb, "RESET max_standby_streaming_delay")


def test_a_read_cancelled_by_recovery_runs_again(pg: str, sb: PgSandbox) -> None:
    import threading
    import time

    with contextlib.closing(sb.primary.connect()) as conn:
        conn.execute(
            "CREATE TABLE django_conflict_t AS SELECT g AS id FROM generate_series(1, 200) g"
        )
    sb.wait_caught_up()
    slow = "SELECT count(*) FROM django_conflict_t a, django_conflict_t b, django_conflict_t c"
    altered = threading.Event()

    def lock_it_on_the_primary() -> None:
        deadline = time.monotonic() + 20
        watches = [s.connect() for s in sb.standbys]
        try:
            while time.monotonic() < deadline and not any(
                w.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT count(*) FROM django_conflict_t a%'"
                ).fetchone()
                for w in watches
            ):
                time.sleep(0.01)
        finally:
            for w in watches:
                w.close()
        with contextlib.closing(sb.primary.connect()) as primary:
            primary.execute("ALTER TABLE django_conflict_t ADD COLUMN x int")  # ACCESS EXCLUSIVE
        altered.set()

    def read() -> tuple[int, dict[str, int]]:
        with connections[pg].cursor() as cursor:
            cursor.execute(slow)
            return int(cursor.fetchone()[0]), dict(connections[pg].routed)

    with _cancel_conflicting_reads(sb):
        locker = threading.Thread(target=lock_it_on_the_primary)
        locker.start()
        try:
            count, routed = _in_thread(read)
        finally:
            locker.join(30)
    assert altered.is_set()
    assert count == 200**3
    assert sb.primary.address not in routed  # the re-run stayed on the standbys
    cluster = connections[pg].cluster
    assert all(cluster.topology.node(s.address).healthy for s in sb.standbys)
    cancelled = 0
    for s in sb.standbys:  # replay cancelled a statement there: the witness
        with contextlib.closing(s.connect()) as conn:
            row = conn.execute(
                "SELECT confl_lock FROM pg_stat_database_conflicts "
                "WHERE datname = current_database()"
            ).fetchone()
            cancelled += row[0] if row else 0
    assert cancelled >= 1


# ---------------------------------------------------------------------- failures (own cluster)


def test_failures_become_rwsplit_verdicts(fresh_pg_sandbox: PgSandbox) -> None:
    from django.core.management import call_command
    from django.db import OperationalError

    from rwsplit import NoReplicaAvailableError, RetryableWriteError
    from rwsplit.django import is_retryable, outcome_unknown

    fresh = fresh_pg_sandbox
    alias = "pgfail"
    add_alias(alias, pg_node_settings(fresh, down_retry_interval=60.0, causal_timeout=0.2))
    try:
        call_command("migrate", run_syncdb=True, database=alias, verbosity=0)
        Item.objects.using(alias).bulk_create([Item(name=f"k{i}") for i in range(5)])
        fresh.wait_caught_up()
        # A standby killed under reads: every read is answered (re-run elsewhere), the
        # standby leaves routing.
        victim = fresh.standbys[0]
        counts = [Item.objects.using(alias).count() for _ in range(4)]
        fresh.kill(victim.name)
        counts += [Item.objects.using(alias).count() for _ in range(8)]
        assert set(counts) == {5}
        cluster = connections[alias].cluster
        assert not cluster.topology.node(victim.address).healthy
        # The primary killed inside atomic(): nothing was committed, retry.
        with pytest.raises(OperationalError) as in_txn, transaction.atomic(using=alias):
            Item.objects.using(alias).create(name="in-txn")
            fresh.kill(fresh.primary.name)
            Item.objects.using(alias).create(name="in-txn-2")
        assert isinstance(rwsplit_error(in_txn.value), RetryableWriteError), in_txn.value
        assert is_retryable(in_txn.value) and not outcome_unknown(in_txn.value)
        # No primary to connect to: a write says to retry (nothing was sent).
        with pytest.raises(OperationalError) as write:
            Item.objects.using(alias).create(name="after")
        assert is_retryable(write.value), write.value
        assert "nothing was sent" in str(write.value)
        # Reads go on on the standby that is left.
        assert Item.objects.using(alias).count() == 5
        assert not isinstance(rwsplit_error(write.value), NoReplicaAvailableError)
    finally:
        drop_alias(alias)
