"""The sandbox's semi-synchronous mode really waits for a replica's acknowledgement, and
never acknowledges a commit alone."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from rwsplit.sandbox import Sandbox, SandboxNode

from ..fix_sandbox import require_server
from .util import run, sql, wait_until

pytestmark = pytest.mark.integration


def _status(cur: object, name: str) -> str:
    cur.execute(f"SHOW GLOBAL STATUS LIKE '{name}'")  # type: ignore[attr-defined]
    return str(cur.fetchone()[1])  # type: ignore[attr-defined]


def test_semi_sync_commits_are_acknowledged(tmp_path: Path) -> None:
    require_server()
    with (
        Sandbox(2, base_dir=tmp_path, semi_sync=True) as sb,
        contextlib.closing(sb.primary.connect()) as conn,
        conn.cursor() as cur,
    ):
        assert _status(cur, sb.family.semi_sync_status("status")) == "ON"
        assert int(_status(cur, sb.family.semi_sync_status("clients"))) == 2
        before = int(_status(cur, sb.family.semi_sync_status("yes_tx")))
        cur.execute("CREATE TABLE rwsplit.ack (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO rwsplit.ack VALUES (1)")
        assert int(_status(cur, sb.family.semi_sync_status("yes_tx"))) == before + 2


def test_semi_sync_primary_never_acknowledges_alone(tmp_path: Path) -> None:
    """With its only replica gone, a commit waits (no fallback to asynchronous replication)
    and stays invisible (AFTER_SYNC) until a replica has it; then it returns."""
    require_server()
    with Sandbox(1, base_dir=tmp_path, semi_sync=True) as sb:
        primary, replica = sb.primary, sb.replicas[0]
        sql(primary, "CREATE TABLE rwsplit.ack (id INT PRIMARY KEY)")
        no_tx = _status_of(primary, sb.family.semi_sync_status("no_tx"))
        sb.kill(replica.name)
        wait_until(
            lambda: _status_of(primary, sb.family.semi_sync_status("clients")) == "0",
            what="the primary losing its replica",
        )
        done = threading.Event()

        def write() -> None:
            sql(primary, "INSERT INTO rwsplit.ack VALUES (1)")
            done.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        wait_until(
            lambda: _status_of(primary, sb.family.semi_sync_status("wait_sessions")) == "1",
            what="the commit waiting for an acknowledgement",
        )
        assert not done.is_set()
        assert _status_of(primary, sb.family.semi_sync_status("status")) == "ON"
        assert _status_of(primary, sb.family.semi_sync_status("no_tx")) == no_tx
        assert sql(primary, "SELECT COUNT(*) FROM rwsplit.ack") == [(0,)]
        # A replica comes back: it receives the transaction, acknowledges, the commit returns.
        sb.restart(replica.name)
        run(replica, lambda f: f.start_replication())
        wait_until(done.is_set, what="the commit acknowledged")
        writer.join(10)
        assert sql(primary, "SELECT COUNT(*) FROM rwsplit.ack") == [(1,)]
        assert _status_of(primary, sb.family.semi_sync_status("no_tx")) == no_tx
        sb.wait_caught_up()
        assert sql(replica, "SELECT COUNT(*) FROM rwsplit.ack") == [(1,)]


def _status_of(node: SandboxNode, name: str) -> str:
    return str(sql(node, f"SHOW GLOBAL STATUS LIKE '{name}'")[0][1])
