"""The failover locks' shared protocol (`MajorityLock`) without servers: in-memory servers
that grant one lock per session, so acquisition order, quorum, confirm and release show."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy.engine import make_url

from rwsplit.topology._coordination import Acquired, LockTarget, MajorityLock

_sessions = itertools.count(1)


class _Server:
    def __init__(self) -> None:
        self.up = True
        self.holder: int | None = None


class _Session:
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.id = next(_sessions)

    def check(self) -> _Server:
        if not self.server.up:
            raise ConnectionError("server gone")
        return self.server


class _MemoryLock(MajorityLock[str, _Session]):
    def __init__(self, servers: dict[str, _Server], quorum: str = "majority_of_running") -> None:
        targets = [LockTarget(n, make_url(f"mysql://u@{n}/")) for n in servers]
        super().__init__("test", targets, quorum=quorum)
        self.servers = servers

    def _open(self, target: LockTarget) -> _Session:
        server = self.servers[target.name]
        if not server.up:
            raise ConnectionError(f"{target.name} refused")
        return _Session(server)

    def _try_lock(self, conn: _Session) -> bool:
        server = conn.check()
        if server.holder in (None, conn.id):
            server.holder = conn.id
            return True
        return False

    def _is_mine(self, conn: _Session) -> bool:
        return conn.check().holder == conn.id

    def _unlock(self, conn: _Session) -> None:
        server = conn.check()
        if server.holder == conn.id:
            server.holder = None

    def _describe(self, exc: BaseException) -> str:
        return str(exc)


@pytest.fixture
def servers() -> dict[str, _Server]:
    return {n: _Server() for n in ("c", "a", "e", "b", "d")}


def test_the_first_lock_wins_and_the_second_takes_nothing(servers: dict[str, _Server]) -> None:
    with _MemoryLock(servers) as first, _MemoryLock(servers) as second:
        assert first.acquire() is Acquired.HELD
        assert first.held == ["a", "b", "c", "d", "e"]  # node-name order
        assert second.acquire() is Acquired.BUSY
        assert second.busy_on == "a"
        assert second.held == []
        first.release()
        assert all(s.holder is None for s in servers.values())
        assert second.acquire() is Acquired.HELD


def test_the_quorum_counts_running_or_all_servers(servers: dict[str, _Server]) -> None:
    servers["a"].up = servers["b"].up = servers["c"].up = False
    with _MemoryLock(servers) as running, _MemoryLock(servers, quorum="majority_of_all") as every:
        assert running.acquire() is Acquired.HELD
        assert (running.running, running.needed()) == (["d", "e"], 2)
        running.close()
        assert every.acquire() is Acquired.NO_QUORUM
        assert every.needed() == 3
        assert all(s.holder is None for s in servers.values())


def test_confirm_drops_lost_connections_and_needs_a_majority(servers: dict[str, _Server]) -> None:
    with _MemoryLock(servers) as lock:
        assert lock.acquire() is Acquired.HELD
        servers["a"].up = False
        assert lock.confirm()
        assert lock.held == ["b", "c", "d", "e"]
        servers["b"].up = servers["c"].up = False
        assert not lock.confirm()
        assert lock.held == ["d", "e"]


def test_an_unknown_quorum_is_refused(servers: dict[str, _Server]) -> None:
    with pytest.raises(ValueError, match="quorum must be one of"):
        _MemoryLock(servers, quorum="most")
