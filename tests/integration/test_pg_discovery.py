"""PostgreSQL discovery from any one node, on real servers: from the primary alone (its
``pg_stat_replication``), from one standby alone (its ``pg_stat_wal_receiver``, then back
down), through a cascading standby, after a promotion made by hand; a standby that announces
no address is warned about, not fatal. Each test gets its own sandbox (a primary and two hot
standbys, whose ``application_name`` is ``standbyN@127.0.0.1:PORT``)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from rwsplit import Role, Topology
from rwsplit.sandbox.postgresql import PgNode, PgSandbox
from rwsplit.topology.probe import discover

from ..fix_pg import require_postgresql

pytestmark = pytest.mark.integration


@pytest.fixture
def sb() -> Iterator[PgSandbox]:
    require_postgresql()
    with PgSandbox(standbys=2) as sandbox:
        yield sandbox


def _roles(topology: Topology) -> dict[str, tuple[str, bool, str | None]]:
    return {
        n.name: (n.role.value, n.healthy, n.replication.source if n.replication else None)
        for n in topology.nodes
    }


def _expected(primary: PgNode, *standbys: tuple[PgNode, PgNode]) -> dict[str, object]:
    roles: dict[str, object] = {primary.address: ("primary", True, None)}
    for standby, source in standbys:
        roles[standby.address] = ("replica", True, source.address)
    return roles


def _set_application_name(node: PgNode, value: str) -> None:
    """Restart *node*'s WAL receiver with another ``application_name`` (same upstream)."""
    from psycopg import sql

    with contextlib.closing(node.connect()) as conn:
        row = conn.execute("SHOW primary_conninfo").fetchone()
        assert row is not None
        old = next(p for p in row[0].split() if p.startswith("application_name="))
        conninfo = row[0].replace(old, f"application_name={value}")
        conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(conninfo))
        conn.execute("SELECT pg_reload_conf()")


def _listed(primary: PgNode) -> set[str]:
    with contextlib.closing(primary.connect()) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def test_discovery_from_the_primary_alone_finds_every_standby(sb: PgSandbox) -> None:
    s1, s2 = sb.standbys
    assert _listed(sb.primary) == {s1.application_name, s2.application_name}
    topology = discover([sb.primary_url])
    assert _roles(topology) == _expected(sb.primary, (s1, sb.primary), (s2, sb.primary))
    # Found nodes carry the seed's credentials and database.
    for node in topology.nodes:
        assert node.url.password == make_url(sb.primary_url).password
        assert node.url.database == make_url(sb.primary_url).database
    assert [n.name for n in topology.readable_replicas()] == sorted([s1.address, s2.address])


def test_discovery_from_one_standby_alone_finds_the_primary_and_its_sibling(
    sb: PgSandbox,
) -> None:
    s1, s2 = sb.standbys
    for seed in (s1, s2):
        topology = discover([seed.url])
        assert _roles(topology) == _expected(sb.primary, (s1, sb.primary), (s2, sb.primary))


def test_discovery_through_a_cascading_standby(sb: PgSandbox) -> None:
    s1, s2 = sb.standbys
    sb.repoint(s2.name, s1.name)  # s2 now streams from s1, a standby
    _wait(lambda: _listed(s1) == {s2.application_name}, "s1 to list s2")
    expected = _expected(sb.primary, (s1, sb.primary), (s2, s1))
    for seed in (sb.primary, s1, s2):
        assert _roles(discover([seed.url])) == expected, seed.name


def test_discovery_after_a_promotion_by_hand(sb: PgSandbox) -> None:
    old, (new, other) = sb.primary, sb.standbys
    sb.kill(old.name)
    sb.promote(new.name)
    sb.repoint(other.name, new.name)
    _wait(lambda: _listed(new) == {other.application_name}, "the new primary to list the other")
    expected = _expected(new, (other, new))
    for seed in (new, other):
        assert _roles(discover([seed.url])) == expected, seed.name
    # Given the old primary too, it is there, unreachable; the cluster is the same.
    topology = discover([old.url, other.url])
    assert topology.node(old.address).healthy is False
    assert topology.primary is not None and topology.primary.name == new.address
    assert {n.name for n in topology.replicas} == {other.address}


def test_a_standby_that_announces_no_address_is_warned_about_not_fatal(
    sb: PgSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    s1, s2 = sb.standbys
    _set_application_name(s2, "walreceiver")
    _wait(lambda: _listed(sb.primary) == {s1.application_name, "walreceiver"}, "the rename")
    with caplog.at_level(logging.WARNING, logger="rwsplit.topology"):
        topology = discover([sb.primary_url])
    # Its client address with the primary's port is the primary itself: not found, said so.
    assert _roles(topology) == _expected(sb.primary, (s1, sb.primary))
    assert f"{sb.primary.address} is {sb.primary.address} itself" in caplog.text
    assert "set application_name='host:port'" in caplog.text
    assert sb.password not in caplog.text
    # Seeded with it, it is there all the same (its WAL receiver names the primary).
    topology = discover([sb.primary_url, s2.url])
    assert topology.node(s2.address).role is Role.REPLICA


def test_a_synchronous_sandbox_lists_its_standbys_by_their_announced_names() -> None:
    require_postgresql()
    with PgSandbox(standbys=2, synchronous=True) as sandbox:
        with contextlib.closing(sandbox.primary.connect()) as conn:
            row = conn.execute("SHOW synchronous_standby_names").fetchone()
            states = conn.execute(
                "SELECT application_name, sync_state FROM pg_stat_replication"
            ).fetchall()
        names = ", ".join(f'"{s.application_name}"' for s in sandbox.standbys)
        assert row == (f"ANY 1 ({names})",)
        assert {str(a): str(s) for a, s in states} == {
            s.application_name: "quorum" for s in sandbox.standbys
        }
        assert len(discover([sandbox.primary_url]).replicas) == 2
