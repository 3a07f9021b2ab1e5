"""PostgreSQL discovery without a server: which address a standby's ``application_name``
announces, where a standby is looked for, and what a discovery over a fake cluster keeps
(confirmed standbys only; unfound ones warned, never fatal; one node per server)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import pytest
from sqlalchemy.engine import URL, make_url

from rwsplit import Role, TopologyError
from rwsplit.servers import postgresql as pg
from rwsplit.topology import pg_probe
from rwsplit.topology.pg_probe import (
    discover_postgresql,
    standby_address,
    standby_guesses,
)

Lsn = pg.Lsn


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("db2:5432", ("db2", 5432)),
        ("db2.internal.example:5433", ("db2.internal.example", 5433)),
        ("10.0.0.2:5432", ("10.0.0.2", 5432)),
        ("standby1@127.0.0.1:41873", ("127.0.0.1", 41873)),
        ("eu-west@db_3:5432", ("db_3", 5432)),
        ("a@b@db4:6543", ("db4", 6543)),  # after the last '@'
        ("[fd00::2]:5432", ("fd00::2", 5432)),
        ("s2@[::1]:5432", ("::1", 5432)),
        ("  db2:5432 ", ("db2", 5432)),
        ("walreceiver", None),  # libpq's default for a WAL receiver
        ("standby1", None),
        ("db2", None),
        ("db2:", None),
        (":5432", None),
        ("db2:0", None),
        ("db2:65536", None),
        ("db2:123456", None),
        ("db 2:5432", None),
        ("db2:5432/x", None),
        ("fd00::2:5432", None),  # an IPv6 host must be in brackets
        ("", None),
    ],
)
def test_the_address_an_application_name_announces(
    name: str, address: tuple[str, int] | None
) -> None:
    assert standby_address(name) == address


def _row(app: str, client: str | None) -> pg.StandbyInfo:
    return pg.StandbyInfo(app, client, "streaming", None)


def test_where_a_standby_is_looked_for() -> None:
    # Announced: only there.
    assert standby_guesses(_row("s1@db2:6000", "10.0.0.2"), "db1", 5432, 5432) == [("db2", 6000)]
    # Not announced: its client address, with the upstream's port, then the seed's.
    assert standby_guesses(_row("walreceiver", "10.0.0.2"), "db1", 5432, 5432) == [
        ("10.0.0.2", 5432)
    ]
    assert standby_guesses(_row("standby1", "10.0.0.2"), "db1", 6000, 5432) == [
        ("10.0.0.2", 6000),
        ("10.0.0.2", 5432),
    ]
    # A Unix-socket connection (no client address): on the upstream's own host.
    assert standby_guesses(_row("walreceiver", None), "db1", 5432, 5432) == [("db1", 5432)]


# ---------------------------------------------------------------------------------- fake cluster


def _primary(*standbys: pg.StandbyInfo) -> pg.PgNodeState:
    return pg.PgNodeState("15", False, False, Lsn(900), None, None, None, standbys=standbys)


def _standby(
    sender: str | None, *standbys: pg.StandbyInfo, in_recovery: bool = True
) -> pg.PgNodeState:
    host, _, port = (sender or "").rpartition(":")
    return pg.PgNodeState(
        "15",
        in_recovery,
        in_recovery,
        None if in_recovery else Lsn(900),
        Lsn(900),
        Lsn(900),
        0.0,
        sender_host=host or None,
        sender_port=int(port) if port else None,
        receiver_status="streaming" if sender else None,
        standbys=standbys,
    )


class _Fake:
    """Servers by address; an address may lead to one server under several names."""

    def __init__(self) -> None:
        self.servers: dict[str, tuple[pg.PgNodeState, tuple[str, int]]] = {}
        self.probed: list[str] = []

    def add(self, state: pg.PgNodeState, *names: str) -> None:
        identity = (f"started {names[0]}", int(names[0].rpartition(":")[2]))
        for name in names:
            self.servers[name] = (state, identity)

    def look(self, url: URL) -> tuple[pg.PgNodeState, tuple[str, int]] | BaseException:
        name = f"{url.host}:{url.port}"
        self.probed.append(name)
        if name in self.servers:
            return self.servers[name]
        return ConnectionRefusedError(f"connection to {name} refused")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Fake]:
    cluster = _Fake()

    def look(
        self: pg_probe._Discovery, url: URL
    ) -> tuple[pg.PgNodeState, tuple[str, int]] | BaseException:
        self.probes += 1
        return cluster.look(url)

    monkeypatch.setattr(pg_probe._Discovery, "look", look)
    resolved = {"db1": {"10.0.0.1"}, "db2": {"10.0.0.2"}, "db3": {"10.0.0.3"}}
    monkeypatch.setattr(
        pg_probe._Resolver,
        "addresses",
        lambda self, host: frozenset(resolved.get(host, {host})),
    )
    yield cluster


def _url(name: str) -> URL:
    return make_url(f"postgresql+psycopg://app:secret@{name}/shop")


def _discover(*seeds: str) -> Mapping[str, tuple[Role, bool, str | None]]:
    topology = discover_postgresql([_url(s) for s in seeds], timeout=0.1)
    return {
        n.name: (n.role, n.healthy, n.replication.source if n.replication else None)
        for n in topology.nodes
    }


def test_every_node_on_5432_is_found_from_the_primary_by_client_address(fake: _Fake) -> None:
    fake.add(_primary(_row("walreceiver", "10.0.0.2"), _row("walreceiver", "10.0.0.3")), "db1:5432")
    fake.add(_standby("db1:5432"), "10.0.0.2:5432")
    fake.add(_standby("10.0.0.1:5432"), "10.0.0.3:5432")  # names the primary by its address
    assert _discover("db1:5432") == {
        "db1:5432": (Role.PRIMARY, True, None),
        "10.0.0.2:5432": (Role.REPLICA, True, "db1:5432"),
        "10.0.0.3:5432": (Role.REPLICA, True, "10.0.0.1:5432"),
    }


def test_announced_addresses_and_a_cascading_standby(fake: _Fake) -> None:
    fake.add(_primary(_row("s1@db2:6000", "10.0.0.2")), "db1:5432")
    fake.add(_standby("db1:5432", _row("walreceiver", "10.0.0.3")), "db2:6000", "10.0.0.2:6000")
    fake.add(_standby("10.0.0.2:6000"), "10.0.0.3:5432")  # not on 6000: the seed's port
    assert _discover("db1:5432") == {
        "db1:5432": (Role.PRIMARY, True, None),
        "db2:6000": (Role.REPLICA, True, "db1:5432"),
        "10.0.0.3:5432": (Role.REPLICA, True, "10.0.0.2:6000"),
    }
    assert "10.0.0.3:6000" in fake.probed  # the upstream's port was tried first
    # From the cascading standby alone: up through its upstream, and back down.
    # (its upstream keeps the name the standby gives it; the primary's "s1@db2:6000" is the
    # same server, not a fourth node).
    assert set(_discover("10.0.0.3:5432")) == {"10.0.0.3:5432", "10.0.0.2:6000", "db1:5432"}


def test_a_guess_that_is_not_the_standby_is_warned_and_left_out(
    fake: _Fake, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(
        _primary(
            _row("walreceiver", "10.0.0.5"),  # another cluster's primary listens there
            _row("walreceiver", "10.0.0.6"),  # a standby of another primary
            _row("db7:5432", "10.0.0.7"),  # unreachable from here
            _row("walreceiver", "10.0.0.2"),
        ),
        "db1:5432",
    )
    fake.add(_primary(), "10.0.0.5:5432")
    fake.add(_standby("db9:5432"), "10.0.0.6:5432")
    fake.add(_standby("db1:5432"), "10.0.0.2:5432")
    with caplog.at_level(logging.WARNING, logger="rwsplit.topology"):
        found = _discover("db1:5432")
    assert set(found) == {"db1:5432", "10.0.0.2:5432"}
    text = caplog.text
    assert "10.0.0.5:5432 is not in recovery, not from db1:5432" in text
    assert "10.0.0.6:5432 streams from db9:5432, not from db1:5432" in text
    assert "db7:5432: unreachable" in text
    assert "set application_name='host:port'" in text and "primary_conninfo" in text
    assert "secret" not in text


def test_a_standby_connected_over_a_unix_socket(
    fake: _Fake, caplog: pytest.LogCaptureFixture
) -> None:
    # Its upstream is on its own host; the upstream cannot tell the standby's port.
    fake.add(_primary(_row("walreceiver", None)), "db1:5432")
    fake.add(_standby("/var/run/postgresql:5432"), "db1:5433")
    found = _discover("db1:5433")
    assert found["db1:5432"][0] is Role.PRIMARY and found["db1:5433"][0] is Role.REPLICA
    with caplog.at_level(logging.WARNING, logger="rwsplit.topology"):
        assert set(_discover("db1:5432")) == {"db1:5432"}
    assert "db1:5432 is db1:5432 itself" in caplog.text


def test_two_names_of_one_server_are_one_node_the_seeds_name_kept(fake: _Fake) -> None:
    fake.add(_primary(_row("10.0.0.2:5432", "10.0.0.2")), "db1:5432", "10.0.0.1:5432")
    fake.add(_standby("10.0.0.1:5432"), "db2:5432", "10.0.0.2:5432")
    assert set(_discover("db2:5432")) == {"db2:5432", "10.0.0.1:5432"}
    assert set(_discover("db1:5432", "db2:5432")) == {"db1:5432", "db2:5432"}


def test_a_dead_upstream_is_kept_unreachable_and_unfound_standbys_are_not_fatal(
    fake: _Fake,
) -> None:
    fake.add(_standby("db1:5432"), "db2:5432")
    found = _discover("db2:5432")
    assert found["db1:5432"][1] is False  # the dead primary: a node all the same
    fake.add(_primary(_row("db8:5432", "10.0.0.8")), "db3:5432")
    assert set(_discover("db3:5432")) == {"db3:5432"}
    with pytest.raises(TopologyError, match="cannot reach any seed"):
        _discover("db9:5432")


def test_discovery_is_bounded(fake: _Fake, caplog: pytest.LogCaptureFixture) -> None:
    # A chain of 100 cascading standbys: discovery stops at 64 connections and says so.
    fake.add(_primary(_row("n1:5432", "10.1.0.1")), "n0:5432")
    for i in range(1, 100):
        fake.add(
            _standby(f"n{i - 1}:5432", _row(f"n{i + 1}:5432", f"10.1.0.{i + 1}")), f"n{i}:5432"
        )
    with caplog.at_level(logging.WARNING, logger="rwsplit.topology"):
        found = _discover("n0:5432")
    assert len(fake.probed) == 64 and len(found) == 64
    assert "discovery stopped after 64 connections" in caplog.text
