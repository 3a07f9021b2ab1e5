"""The PostgreSQL sandbox: real servers, real streaming replication, by the pids it started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from rwsplit.sandbox._pg_os import child_pids, pid_runs_postgres, wait_pids_gone
from rwsplit.sandbox.postgresql import PgNode, PgSandbox

from ..fix_pg import log_offset, require_postgresql, statements_since
from .util import wait_until

pytestmark = pytest.mark.integration


def one(node: PgNode, query: str, params: tuple[object, ...] = ()) -> object:
    with contextlib.closing(node.connect()) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _table(sb: PgSandbox) -> str:
    name = f"t_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(sb.primary.connect()) as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    return name


def test_a_row_written_on_the_primary_is_on_every_standby(pg_sandbox: PgSandbox) -> None:
    sb = pg_sandbox
    assert [n.role for n in sb.nodes] == ["primary", "standby", "standby"]
    assert sb.nodes == [sb.primary, *sb.standbys]
    assert sb.replica_urls == sb.standby_urls == [n.url for n in sb.standbys]
    assert sb.primary_url.startswith("postgresql+psycopg://rwsplit:")
    assert sb.primary_url.endswith(f"@127.0.0.1:{sb.primary.port}/rwsplit")
    assert sb.primary.address == f"127.0.0.1:{sb.primary.port}"
    table = _table(sb)
    with contextlib.closing(sb.primary.connect()) as conn:
        conn.execute(f"INSERT INTO {table} VALUES (1, 'written on the primary')")
    sb.wait_caught_up()
    for node in sb.standbys:
        assert one(node, "SELECT pg_is_in_recovery()") is True
        assert one(node, f"SELECT v FROM {table} WHERE id = 1") == "written on the primary"
    assert one(sb.primary, "SELECT pg_is_in_recovery()") is False
    assert one(sb.primary, "SELECT count(*) FROM pg_stat_replication") == 2


def test_a_standby_rejects_writes_even_from_a_superuser(pg_sandbox: PgSandbox) -> None:
    table = _table(pg_sandbox)
    pg_sandbox.wait_caught_up()
    standby = pg_sandbox.standbys[0]
    assert one(standby, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is True
    with contextlib.closing(standby.connect()) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as info:
            conn.execute(f"INSERT INTO {table} VALUES (1, 'x')")
        assert info.value.sqlstate == "25006"


def test_the_statement_log_shows_where_a_read_ran(pg_sandbox: PgSandbox) -> None:
    marker = f"where_did_i_run_{uuid.uuid4().hex[:8]}"
    offsets = {n.name: log_offset(n) for n in pg_sandbox.nodes}
    target = pg_sandbox.standbys[1]
    one(target, f"SELECT 1 AS {marker}")
    ran = {
        n.name: any(marker in s for s in statements_since(n, offsets[n.name]))
        for n in pg_sandbox.nodes
    }
    assert ran == {"primary": False, "standby1": False, "standby2": True}


def test_paused_replay_stalls_and_resumed_replay_catches_up(pg_sandbox: PgSandbox) -> None:
    sb = pg_sandbox
    table = _table(sb)
    sb.wait_caught_up()
    stalled, other = sb.standbys
    sb.pause_replay(stalled.name)
    try:
        assert one(stalled, "SELECT pg_is_wal_replay_paused()") is True
        with contextlib.closing(sb.primary.connect()) as conn:
            conn.execute(f"INSERT INTO {table} VALUES (1, 'after the pause')")
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert lsn is not None
        # The other standby has it; the paused one receives the WAL but does not apply it.
        wait_until(
            lambda: one(other, f"SELECT count(*) FROM {table}") == 1, what="the other standby"
        )
        wait_until(
            lambda: one(stalled, "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (lsn[0],)),
            what="the paused standby received the WAL",
        )
        assert one(stalled, f"SELECT count(*) FROM {table}") == 0
        with pytest.raises(Exception, match="did not replay"):
            sb.wait_caught_up(timeout=0.5)
    finally:
        sb.resume_replay(stalled.name)
    sb.wait_caught_up()
    assert one(stalled, f"SELECT count(*) FROM {table}") == 1


def test_kill_by_pid_then_start_the_node_again(fresh_pg_sandbox: PgSandbox) -> None:
    sb = fresh_pg_sandbox
    standby = sb.standbys[0]
    pid = standby.pid
    assert pid is not None and pid_runs_postgres(pid, standby.datadir)
    children = child_pids(pid)
    assert children  # its startup process, WAL receiver ...
    assert sb.pids(standby.name)[0] == pid
    # Backends come and go (a connection's, a restarted WAL receiver): every child alive
    # before and after sb.pids() was alive during it, so it must be among them.
    during = set(sb.pids(standby.name))
    assert set(children) & set(child_pids(pid)) <= during
    sb.kill(standby.name)
    assert not sb.is_running(standby)
    assert not pid_runs_postgres(pid, standby.datadir)
    assert wait_pids_gone(children, 0)  # none left (zombies waiting for init aside)
    assert sb.pids(standby.name) == []
    with pytest.raises(psycopg.OperationalError):
        standby.connect(connect_timeout=2).close()
    # The others never noticed.
    assert all(sb.is_running(n) for n in sb.nodes if n is not standby)

    table = _table(sb)
    with contextlib.closing(sb.primary.connect()) as conn:
        conn.execute(f"INSERT INTO {table} VALUES (1, 'written while it was down')")
    sb.start_node(standby.name)
    assert standby.pid != pid
    sb.wait_caught_up()
    assert one(standby, f"SELECT count(*) FROM {table}") == 1

    # stop_node / restart: a clean shutdown, same port and data.
    sb.restart(standby.name)
    assert one(standby, f"SELECT count(*) FROM {table}") == 1
    sb.stop_node(standby.name)
    assert not sb.is_running(standby)


def test_promote_by_hand_and_repoint_the_other_standby(fresh_pg_sandbox: PgSandbox) -> None:
    sb = fresh_pg_sandbox
    old_primary = sb.primary
    table = _table(sb)
    with contextlib.closing(sb.primary.connect()) as conn:
        conn.execute(f"INSERT INTO {table} VALUES (1, 'before the failover')")
    sb.wait_caught_up()
    sb.kill(old_primary.name)

    new, other = sb.standbys
    sb.promote(new.name)
    assert one(new, "SELECT pg_is_in_recovery()") is False
    assert sb.primary is new and new.role == "primary"
    assert old_primary.role == "standby"  # the sandbox's bookkeeping: it must be rebuilt

    sb.repoint(other.name, new.name)
    assert one(other, "SELECT sender_port FROM pg_stat_wal_receiver") == new.port
    with contextlib.closing(new.connect()) as conn:
        conn.execute(f"INSERT INTO {table} VALUES (2, 'on the new primary')")
    wait_until(lambda: one(other, f"SELECT count(*) FROM {table}") == 2, what="repointed")
    conf = Path(other.datadir, "postgresql.auto.conf").read_text()
    assert f"port={new.port}" in conf and f"application_name={other.application_name}" in conf

    # A node out of recovery cannot just be repointed: the message says what to do instead.
    with pytest.raises(Exception, match="pg_rewind or a new base backup"):
        sb.repoint(new.name, other.name)

    # The former primary comes back as a new standby of the new one.
    sb.rebuild(old_primary.name)
    assert old_primary.role == "standby" and sb.is_running(old_primary)
    assert one(old_primary, "SELECT sender_port FROM pg_stat_wal_receiver") == new.port
    sb.wait_caught_up()
    assert one(old_primary, f"SELECT count(*) FROM {table}") == 2
    assert sb.standbys == [old_primary, other]


def test_refresh_roles_after_a_promotion_made_elsewhere(fresh_pg_sandbox: PgSandbox) -> None:
    sb = fresh_pg_sandbox
    old, standby1, standby2 = sb.nodes
    with contextlib.closing(standby2.connect()) as conn:
        conn.execute("SELECT pg_promote(true, 60)")
    # Two nodes out of recovery: recorded, and said.
    with pytest.raises(Exception, match="split brain"):
        sb.refresh_roles()
    sb.stop_node(old.name)
    assert sb.refresh_roles() is standby2 is sb.primary
    assert [n.role for n in sb.nodes] == ["standby", "standby", "primary"]
    assert sb.standbys == [old, standby1]


def _frozen(node: PgNode) -> bool:
    """True when *node* answers no query within a second."""
    try:
        conn = node.connect(connect_timeout=1)
    except psycopg.OperationalError:
        return True
    with contextlib.closing(conn):
        conn.execute("SET statement_timeout = '1s'")
        conn.execute("SELECT 1")
    return False


def test_hang_and_resume_a_node(fresh_pg_sandbox: PgSandbox) -> None:
    sb = fresh_pg_sandbox
    standby = sb.standbys[0]
    with contextlib.closing(standby.connect()) as conn:  # opened before: its backend hangs too
        sb.hang(standby.name)
        try:
            assert sb.is_stopped(standby) and sb.is_running(standby)
            assert _frozen(standby)
        finally:
            sb.resume(standby.name)
        assert not sb.is_stopped(standby)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # A hung node stops all the same (resumed first).
    sb.hang(standby.name)
    sb.stop_node(standby.name)
    assert not sb.is_running(standby)


def test_synchronous_commits_wait_for_a_standby(tmp_path: Path) -> None:
    require_postgresql()
    with PgSandbox(standbys=1, base_dir=tmp_path / "sb", synchronous=True) as sb:
        standby = sb.standbys[0]
        assert one(sb.primary, "SHOW synchronous_standby_names") == (
            f'ANY 1 ("{sb.standbys[0].application_name}")'
        )
        assert one(sb.primary, "SELECT sync_state FROM pg_stat_replication") == "quorum"
        table = _table(sb)
        sb.stop_node(standby.name)
        done = threading.Event()

        def write() -> None:
            with contextlib.closing(sb.primary.connect()) as conn:
                conn.execute(f"INSERT INTO {table} VALUES (1, 'waits for a standby')")
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            # No standby to acknowledge: the commit waits (a bounded look, not a sync point).
            assert not done.wait(1.0)
        finally:
            sb.start_node(standby.name)
            writer.join(30)
        assert done.is_set()
        assert one(standby, f"SELECT count(*) FROM {table}") == 1


def test_stop_leaves_no_process_and_no_data(tmp_path: Path) -> None:
    require_postgresql()
    base = tmp_path / "sb"
    # On disk (not /dev/shm): the layout that depends on who can reach base_dir.
    sb = PgSandbox(standbys=1, base_dir=base, log_statement="all", in_memory=False).start()
    nodes = [(n.pid, n.datadir) for n in sb.nodes]
    children = [c for pid, _ in nodes for c in child_pids(pid or 0)]
    assert sb.data_root is not None
    data_root = sb.data_root
    if os.geteuid() == 0:
        # pytest's directories are mode 0700: the postgres OS user cannot reach them, so the
        # data directories live in a directory of their own.
        assert data_root != base and not str(data_root).startswith("/dev/shm")
        assert all(Path(d).stat().st_uid != 0 for _, d in nodes)
    # Repoint it where it is (a new primary_conninfo all the same: the password file's).
    standby = sb.standbys[0]
    with contextlib.closing(standby.connect()) as conn:
        conn.execute("ALTER SYSTEM SET primary_conninfo = 'host=nowhere'")
        conn.execute("SELECT pg_reload_conf()")
    wait_until(lambda: one(standby, "SELECT count(*) FROM pg_stat_wal_receiver") == 0)
    sb.repoint(standby.name, sb.primary.name)
    assert 'parameter "primary_conninfo" changed' in standby.log_path.read_text()
    # The password made for this sandbox is in no server log (repoint's ALTER SYSTEM included).
    assert sb.password
    for n in sb.nodes:
        assert sb.password not in n.log_path.read_text(errors="replace")
    assert sb.password not in repr(sb) + repr(sb.nodes)
    sb.stop()
    assert nodes and children
    assert not any(pid_runs_postgres(pid or 0, d) for pid, d in nodes)
    assert wait_pids_gone(children, 0)
    assert not any(Path(d).exists() for _, d in nodes)
    assert not data_root.exists() or data_root == base
    assert not (base / "sandbox.json").exists()


def test_a_port_taken_before_the_server_binds_it_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgresql()
    import rwsplit.sandbox.postgresql as module

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = iter([port])
        real = module.free_port
        monkeypatch.setattr(module, "free_port", lambda host: next(ports, None) or real(host))
        with PgSandbox(standbys=0, base_dir=tmp_path / "sb") as sb:
            assert sb.primary.port != port
            assert one(sb.primary, "SELECT 1") == 1
            assert "Address already in use" in sb.primary.log_path.read_text()


# Starts a sandbox, prints "pid:datadir" per node, then idles until it is killed.
_OWNER = """
import sys, time
from rwsplit.sandbox.postgresql import PgSandbox
sb = PgSandbox(standbys=1, base_dir=sys.argv[1]).start()
print(" ".join(f"{n.pid}:{n.datadir}" for n in sb.nodes), flush=True)
time.sleep(600)
"""


def test_servers_die_with_the_owning_process(tmp_path: Path) -> None:
    require_postgresql()
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path / "sb")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    nodes: list[tuple[int, str]] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        nodes = [(int(p), d) for p, d in (item.split(":", 1) for item in line)]
        assert len(nodes) == 2, proc.stderr.read() if proc.stderr else ""
        assert all(pid_runs_postgres(pid, d) for pid, d in nodes)
    finally:
        proc.send_signal(signal.SIGKILL)  # the owner crashes: its servers go with it
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    wait_until(
        lambda: not any(pid_runs_postgres(pid, d) for pid, d in nodes),
        timeout=30,
        what="the orphaned servers to die",
    )
    # Nobody was left to remove their data: the next sandbox's start does, when in memory.
    data_root = Path(nodes[0][1]).parent.parent
    if str(data_root).startswith("/dev/shm/"):
        assert data_root.exists()
        with PgSandbox(standbys=0, base_dir=tmp_path / "next") as sb:
            assert sb.data_root is not None and str(sb.data_root).startswith("/dev/shm/")
        assert not data_root.exists()
    shutil.rmtree(data_root, ignore_errors=True)
