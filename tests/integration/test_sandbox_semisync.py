"""The sandbox's semi-synchronous mode really waits for a replica's acknowledgement."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from rwsplit.sandbox import Sandbox

from ..fix_sandbox import require_server

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
        assert _status(cur, "Rpl_semi_sync_master_status") == "ON"
        assert int(_status(cur, "Rpl_semi_sync_master_clients")) == 2
        before = int(_status(cur, "Rpl_semi_sync_master_yes_tx"))
        cur.execute("CREATE TABLE rwsplit.ack (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO rwsplit.ack VALUES (1)")
        assert int(_status(cur, "Rpl_semi_sync_master_yes_tx")) == before + 2
