"""MySQL with ``gtid_mode=OFF`` (its default): replication by binary log file and position.

Replicas run with ``log-bin`` and without ``log_replica_updates`` (the classic layout). Causal
reads use the primary's binary log position, waited for with ``SOURCE_POS_WAIT`` only on a
replica of that primary; failover is the classic runbook, automated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from rwsplit import Cluster
from rwsplit.routing import consistency
from rwsplit.routing._tokens import BinlogToken
from rwsplit.sandbox import Sandbox

from .util import sql, sql_threads_stopped

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server("mysql", reason="binary log positions as causal tokens: MySQL, GTIDs off"),
]


def _start(base: Path, **kwargs: object) -> Iterator[Sandbox]:
    from ..fix_sandbox import require_server

    require_server()
    sb = Sandbox(replicas=2, base_dir=base, gtid=False, **kwargs)  # type: ignore[arg-type]
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def classic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One primary and two replicas, GTIDs off, shared by the non-destructive tests."""
    sb_iter = _start(tmp_path_factory.mktemp("gtidoff"))
    sb = next(sb_iter)
    with contextlib.closing(sb.primary.connect()) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app")
        cur.execute("DROP TABLE IF EXISTS app.ryw")
        cur.execute("CREATE TABLE app.ryw (id INT PRIMARY KEY, v INT NOT NULL)")
        cur.execute("INSERT INTO app.ryw VALUES (1, 0)")
    sb.wait_caught_up()
    yield sb
    with contextlib.suppress(StopIteration):
        next(sb_iter)


def _urls(sb: Sandbox) -> tuple[str, list[str]]:
    return _in_app(sb.primary_url), [_in_app(u) for u in sb.replica_urls]


def _in_app(url: str) -> str:
    return str(make_url(url).set(database="app"))


def test_sandbox_runs_without_gtids(classic: Sandbox) -> None:
    for node in [classic.primary, *classic.replicas]:
        assert sql(node, "SELECT @@global.gtid_mode")[0][0] == "OFF"


def test_no_stale_read_after_a_write_with_gtids_off(classic: Sandbox) -> None:
    """Defect: with GTIDs off the token was None and 40 of 40 reads after a write were stale."""
    primary, replicas = _urls(classic)
    stale = 0
    tokens: list[str | None] = []
    with Cluster(primary, replicas, causal_timeout=0.2) as c:
        c.refresh()  # replicas of this primary, in rotation: each read after a write waits
        with sql_threads_stopped(classic):
            for i in range(1, 21):
                with c.session() as s:
                    s.execute(text("UPDATE ryw SET v = :v WHERE id = 1"), {"v": i})
                    s.commit()
                    tokens.append(s.causal_token)
                    if s.execute(text("SELECT v FROM ryw WHERE id = 1")).scalar_one() != i:
                        stale += 1
    assert stale == 0
    assert all(t is not None and BinlogToken.parse(t) is not None for t in tokens), tokens


def _read(s: object) -> tuple[int, int]:
    """(server id that answered, v) of one autocommit read."""
    row = s.execute(text("SELECT @@server_id, v FROM ryw WHERE id = 1")).one()  # type: ignore[attr-defined]
    return int(row[0]), int(row[1])


def test_binlog_token_is_waited_for_on_a_replica_of_its_primary(classic: Sandbox) -> None:
    """The position names its primary's server_uuid; a replica of it waits and serves."""
    primary, replicas = _urls(classic)
    primary_id = int(sql(classic.primary, "SELECT @@server_id")[0][0])  # type: ignore[call-overload]
    with Cluster(primary, replicas, causal_timeout=5.0) as c:
        c.refresh()  # the replicas' Source_UUID: which primary each follows
        with c.session() as s:
            s.execute(text("UPDATE ryw SET v = v + 1 WHERE id = 1"))
            s.commit()
            token = BinlogToken.parse(s.causal_token or "")
            assert token is not None
            assert token.source_uuid == sql(classic.primary, "SELECT @@server_uuid")[0][0]
            want = int(sql(classic.primary, "SELECT v FROM app.ryw WHERE id = 1")[0][0])  # type: ignore[call-overload]
            server, v = _read(s)
            assert server != primary_id, "the read went to the primary"
            assert v == want


def test_a_token_of_another_primary_is_never_waited_for(
    classic: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A binlog position names its primary: on replicas of another, reads go to the primary."""
    primary, replicas = _urls(classic)
    primary_id = int(sql(classic.primary, "SELECT @@server_id")[0][0])  # type: ignore[call-overload]
    foreign = "binlog:00000000-0000-0000-0000-000000000000:binlog.000001:4"
    with (
        Cluster(primary, replicas, causal_timeout=5.0) as c,
        caplog.at_level(logging.INFO, "rwsplit.consistency"),
    ):
        c.refresh()
        with c.session(causal_token=foreign) as s:
            assert _read(s)[0] == primary_id
    assert "not from the writer" in caplog.text


def test_without_a_monitor_view_reads_after_a_write_go_to_the_primary(
    classic: Sandbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which primary a replica follows is unknown until a probe: never a blind wait."""
    monkeypatch.setattr(consistency, "_logged_once", set())
    primary, replicas = _urls(classic)
    primary_id = int(sql(classic.primary, "SELECT @@server_id")[0][0])  # type: ignore[call-overload]
    with (
        Cluster(primary, replicas, causal_timeout=5.0) as c,
        caplog.at_level(logging.INFO, "rwsplit.consistency"),
        c.session() as s,
    ):
        s.execute(text("UPDATE ryw SET v = v + 1 WHERE id = 1"))
        s.commit()
        assert _read(s)[0] == primary_id
    assert "which primary the replica follows is unknown" in caplog.text
