"""Shared by the PostgreSQL tests of the public surface (web integrations, pytest plugin, CLI):
a module's sandbox, replay paused on standbys, and where plain reads went."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rwsplit import Cluster
from rwsplit.sandbox.postgresql import PgSandbox

__all__ = ["SECRET", "replay_paused", "reads_by_node"]

SECRET = "test-secret-not-for-production"


@contextlib.contextmanager
def replay_paused(sb: PgSandbox) -> Iterator[None]:
    """Every standby receives WAL but applies none for the block (``pg_wal_replay_pause()``):
    a read there sees the data as it was when the block began."""
    paused = []
    try:
        for n in sb.standbys:
            sb.pause_replay(n.name)
            paused.append(n)
        yield
    finally:
        for n in paused:
            sb.resume_replay(n.name)
        sb.wait_caught_up()


def reads_by_node(cluster: Cluster) -> dict[str, int]:
    """``cluster.stats()``'s reads per node address."""
    return {name: n["reads"] for name, n in cluster.stats().to_dict()["nodes"].items()}
