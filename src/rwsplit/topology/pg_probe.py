"""PostgreSQL nodes: probing one (:class:`PgProbe`), discovering a cluster, refreshing one.

The PostgreSQL counterpart of :mod:`rwsplit.topology.probe`, producing the same
:class:`~rwsplit.topology.model.Node` / :class:`~rwsplit.topology.model.Topology` values:

* role from ``pg_is_in_recovery()`` (a standby is a :attr:`~Role.REPLICA`), a writable primary
  is not in recovery *and* not ``default_transaction_read_only``; a node that is neither (a
  fenced former primary) is :attr:`~Role.UNKNOWN`; two writable nodes are two primaries, which
  the cluster refuses to write to (:class:`~rwsplit.SplitBrainError`);
* a standby's source from ``pg_stat_wal_receiver`` (``sender_host:sender_port``), its
  "threads" as ``io_running`` (``Yes`` while streaming) and ``sql_running`` (replay not
  paused);
* lag from LSNs and ``pg_last_xact_replay_timestamp()``
  (:func:`~rwsplit.servers.postgresql.replay_lag`);
* the node's WAL position as ``gtid_position`` (``pg:X/Y``, a causal token: what the cluster's
  :class:`~rwsplit.routing.consistency.AppliedTokens` records from a probe);
* discovery from any one node (:func:`discover_postgresql`): upstreams from
  ``pg_stat_wal_receiver``, standbys from ``pg_stat_replication`` at the address their
  ``application_name`` announces (:func:`standby_address`) or their client address
  (:func:`standby_guesses`), each confirmed by a probe.

The probe connects with psycopg (``pip install 'rwsplit[postgresql]'``), whatever driver the
application's URLs name.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from ..servers import postgresql as pg
from .model import Node, Replication, Role, Topology, node_name

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = [
    "PgProbe",
    "discover_postgresql",
    "nodes_from_states",
    "pg_node",
    "probe_nodes",
    "refresh_cluster",
    "standby_address",
    "standby_guesses",
]

log = logging.getLogger("rwsplit.topology")

_forgotten: list[Any] = []  # connections inherited through fork(): never freed, never closed

_ADDRESS_RE = re.compile(r"\A[\w.\-]+:\d{1,5}\Z")


def describe_pg_error(exc: BaseException) -> str:
    """A short message for a psycopg error (its text never holds the password)."""
    state = pg.sqlstate(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{state}: {text}" if state else f"{type(exc).__name__}: {text}"


class PgProbe:
    """A small admin connection (psycopg, autocommit, short timeouts) to one PostgreSQL node.

    The connection is kept between probes and re-opened after a failure; every statement has
    *timeout* seconds (``statement_timeout``; connecting: libpq's whole seconds, at least 2).
    """

    def __init__(
        self, url: URL, timeout: float = 1.0, connect_args: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url
        self.node_url: URL = url
        """The URL of the node as the cluster knows it (``url`` may use admin credentials)."""
        self.name = node_name(url)
        self.timeout = timeout
        self.connect_args: dict[str, Any] = dict(connect_args or {})
        self.last_error: BaseException | None = None
        self._conn: Any = None

    def _connect(self) -> Any:
        if self._conn is None:
            import math

            import psycopg

            self._conn = psycopg.connect(
                host=self.url.host or "localhost",
                port=self.url.port or 5432,
                user=self.url.username or "",
                password=self.url.password or "",
                dbname=self.url.database or "postgres",
                autocommit=True,
                connect_timeout=max(2, math.ceil(self.timeout)),
                options=f"-c statement_timeout={max(1, int(self.timeout * 1000))}",
                application_name="rwsplit-probe",
                **self.connect_args,
            )
        return self._conn

    def query(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        """Run *sql* (reconnecting if needed); the connection is dropped on any error."""
        try:
            conn = self._connect()
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params) or None)
                names = [d[0] for d in cur.description or ()]
                rows = [dict(zip(names, r, strict=False)) for r in cur.fetchall()]
        except BaseException as exc:
            self.last_error = exc
            self.close()
            raise
        self.last_error = None
        return rows

    def probe(self) -> pg.PgNodeState:
        """The node's role, read-only setting, WAL positions, source and standbys."""
        return pg.parse_state(self.query(pg.STATE_SQL)[0])

    def forget(self) -> None:
        """Drop the connection without a goodbye (after ``fork()``: the parent still uses it).

        libpq would send its terminate message when the connection is freed, ending the
        parent's session: the object is kept, never closed, for the life of this process.
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            _forgotten.append(conn)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> PgProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pg_node(
    name: str, url: URL, state: pg.PgNodeState, primary: pg.PgNodeState | None = None
) -> Node:
    """The :class:`Node` a successful probe describes (*primary*: the primary's state, for lag)."""
    replication = None
    lag = None
    if state.in_recovery:
        role = Role.REPLICA
        lag = pg.replay_lag(state, primary)
        source = state.source
        if source is not None:
            io = "Yes" if state.streaming else ("Connecting" if state.receiver_status else "No")
            replication = Replication(source, None, io, not state.replay_paused)
    elif state.writable:
        role = Role.PRIMARY
    else:
        role = Role.UNKNOWN  # fenced: read-only by default and not replaying
    position = state.position
    return Node(
        name,
        url,
        role,
        healthy=True,
        lag_seconds=lag,
        gtid_position=pg.lsn_token(position) if position is not None else None,
        read_only=not state.writable,
        replication=replication,
    )


def nodes_from_states(
    nodes: Iterable[Node], results: Mapping[str, pg.PgNodeState | BaseException]
) -> tuple[Node, ...]:
    """*nodes* updated from one round of probes (a state, or the error of a failed probe)."""
    writable = [s for s in results.values() if isinstance(s, pg.PgNodeState) and s.writable]
    primary = writable[0] if len(writable) == 1 else None
    out: list[Node] = []
    for node in nodes:
        r = results.get(node.name)
        if r is None:
            out.append(node)
        elif isinstance(r, pg.PgNodeState):
            out.append(pg_node(node.name, node.url, r, primary))
        else:
            out.append(node.evolve(healthy=False, error=f"unreachable: {describe_pg_error(r)}"))
    return tuple(out)


def probe_nodes(
    nodes: Sequence[Node],
    timeout: float,
    *,
    url_of: Any = None,
    connect_args_of: Any = None,
) -> dict[str, pg.PgNodeState | BaseException]:
    """Probe *nodes* in parallel, once each: their state, or the exception of a failed probe.

    *url_of(node)* / *connect_args_of(node)*: the URL and driver arguments to use (default:
    the node's own URL, none).
    """

    def one(node: Node) -> pg.PgNodeState | BaseException:
        url = url_of(node) if url_of is not None else node.url
        args = connect_args_of(node) if connect_args_of is not None else {}
        try:
            with PgProbe(url, timeout, args) as probe:
                return probe.probe()
        except Exception as exc:
            return exc

    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="rwsplit-pg-probe") as ex:
        futures = {n.name: ex.submit(one, n) for n in nodes}
        return {name: f.result() for name, f in futures.items()}


def refresh_cluster(cluster: Cluster, timeout: float = 2.0) -> Topology:
    """Probe every node of a PostgreSQL *cluster* once and publish what changed.

    What :meth:`Cluster.refresh() <rwsplit.Cluster.refresh>` does for PostgreSQL: after a
    promotion made elsewhere, writes go to the node now out of recovery and reads to the
    standbys; a node that fails its probe leaves routing.
    """
    old = cluster.topology
    results = probe_nodes(
        old.nodes,
        timeout,
        url_of=cluster.admin_url,
        connect_args_of=cluster.probe_connect_args,
    )
    updated = nodes_from_states(old.nodes, results)
    if updated == old.nodes:
        return old
    topology = Topology(updated, old.version + 1)
    for before, after in zip(old.nodes, updated, strict=True):
        if (before.role, before.healthy) != (after.role, after.healthy):
            log.info(
                "%s: %s%s -> %s%s",
                after.name,
                before.role.value,
                "" if before.healthy else " (down)",
                after.role.value,
                "" if after.healthy else f" (down: {after.error})",
            )
    cluster.publish(topology)
    return topology


# ---------------------------------------------------------------------------------- discovery

_ANNOUNCED_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})")

_IDENTITY_SQL = "SELECT pg_postmaster_start_time()::text AS started, inet_server_port() AS port"
"""What tells two names of one server apart from two servers: the postmaster's start time
(microseconds) and the port it listens on (``inet_server_port()``, not the port a NAT or a
proxy shows)."""

_MAX_PROBES = 64
"""Discovery connects at most this many times (a larger cluster is discovered in part)."""


def standby_address(application_name: str) -> tuple[str, int] | None:
    """The address a standby announces in its ``application_name`` — ``host:port`` or
    ``name@host:port`` (the part after the last ``@``; an IPv6 host in brackets) — or
    ``None`` when it announces none (``walreceiver``, ``standby1``, ``db2``).

    >>> standby_address("db2.internal:5433")
    ('db2.internal', 5433)
    >>> standby_address("standby1@10.0.0.2:5432")
    ('10.0.0.2', 5432)
    >>> standby_address("eu@[fd00::2]:5432")
    ('fd00::2', 5432)
    >>> standby_address("walreceiver") is None, standby_address("db2:99999") is None
    (True, True)
    """
    tail = application_name.strip().rpartition("@")[2]
    m = _ANNOUNCED_RE.fullmatch(tail)
    if m is None:
        return None
    host, port = m.group(1), int(m.group(2))
    if not 0 < port < 65536:
        return None
    return host.strip("[]"), port


def standby_guesses(
    standby: pg.StandbyInfo, upstream_host: str, upstream_port: int, seed_port: int
) -> list[tuple[str, int]]:
    """Where to look for a standby one ``pg_stat_replication`` row describes, best first.

    PostgreSQL knows the address a standby connects *from* (``client_addr``, and an
    ephemeral client port), not the port it listens on. So: the address its
    ``application_name`` announces (:func:`standby_address`) when it announces one, else
    ``client_addr`` (the upstream's own host for a Unix-socket connection) with the port of
    the upstream, then with the seed's port (the common case: every node on 5432). Each guess
    must still be confirmed by probing it.

    >>> row = pg.StandbyInfo("walreceiver", "10.0.0.3", "streaming", None)
    >>> standby_guesses(row, "db1", 5432, 5432)
    [('10.0.0.3', 5432)]
    >>> standby_guesses(row, "db1", 6000, 5432)
    [('10.0.0.3', 6000), ('10.0.0.3', 5432)]
    >>> standby_guesses(pg.StandbyInfo("s2@db3:5433", "10.0.0.3", "", None), "db1", 5432, 5432)
    [('db3', 5433)]
    """
    announced = standby_address(standby.application_name)
    if announced is not None:
        return [announced]
    host = standby.client_addr or upstream_host
    return [(host, port) for port in dict.fromkeys((upstream_port, seed_port))]


def _address_url(template: URL, host: str, port: int) -> URL:
    return template.set(host=host, port=port)


class _Resolver:
    """``getaddrinfo`` answers, asked once per host name during one discovery."""

    def __init__(self) -> None:
        self._cache: dict[str, frozenset[str]] = {}

    def addresses(self, host: str) -> frozenset[str]:
        import socket

        if host not in self._cache:
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
                self._cache[host] = frozenset(str(i[4][0]) for i in infos)
            except (OSError, UnicodeError):
                self._cache[host] = frozenset()
        return self._cache[host]

    def same_host(self, a: str, b: str) -> bool:
        if a.lower() == b.lower():
            return True
        return bool(self.addresses(a) & self.addresses(b))


class _Discovery:
    """One run of :func:`discover_postgresql`: what was probed, kept, and why not."""

    def __init__(self, seeds: Sequence[URL], timeout: float) -> None:
        self.template = seeds[0]
        self.seed_port = seeds[0].port or 5432
        self.timeout = timeout
        self.kept: dict[str, URL] = {}  # the nodes, in the order found
        self.states: dict[str, pg.PgNodeState | BaseException] = {}
        self.server_of: dict[tuple[str, int], str] = {}  # identity -> the name kept for it
        self.identity: dict[str, tuple[str, int]] = {}  # kept name -> identity
        self.alias: dict[str, str] = {}  # another name of a kept server -> its kept name
        self.probes = 0
        self.truncated = False  # stopped at _MAX_PROBES with nodes left to look at
        self.resolver = _Resolver()
        # (name, url) of a node to take as it is: a seed, or the upstream a standby names.
        self.queue: list[tuple[str, URL]] = [(node_name(u), u) for u in seeds]
        # Kept nodes whose upstream and standbys are still to look for: after the queue, so
        # that every seed is probed (and keeps its name) before any other name is tried.
        self.unexplored: list[str] = []

    def known(self, name: str) -> str | None:
        """The kept name of the server *name* reaches, when it was probed already."""
        if name in self.kept:
            return name
        return self.alias.get(name)

    def match(self, host: str, port: int) -> str | None:
        """The kept node at ``host:port``: by name, or a reachable one listening on *port*
        at an address *host* resolves to (a standby may name its upstream by another name
        than ours)."""
        known = self.known(f"{host}:{port}")
        if known is not None:
            return known
        for name, url in self.kept.items():
            identity = self.identity.get(name)
            if identity is None:
                continue  # unreachable: its port is not known for sure
            if port in (url.port or 5432, identity[1]) and self.resolver.same_host(
                host, url.host or "localhost"
            ):
                return name
        return None

    def look(self, url: URL) -> tuple[pg.PgNodeState, tuple[str, int]] | BaseException:
        self.probes += 1
        try:
            with PgProbe(url, self.timeout) as probe:
                state = probe.probe()
                row = probe.query(_IDENTITY_SQL)[0]
        except Exception as exc:
            return exc
        return state, (str(row["started"]), int(row["port"] or 0))

    def keep(self, name: str, url: URL, state: pg.PgNodeState, identity: tuple[str, int]) -> None:
        self.kept[name] = url
        self.states[name] = state
        self.server_of[identity] = name
        self.identity[name] = identity
        self.unexplored.append(name)

    def explore(self, name: str) -> None:
        """Queue the upstream of kept node *name*, find and confirm its standbys."""
        url, state = self.kept[name], self.states[name]
        assert isinstance(state, pg.PgNodeState)
        if state.in_recovery and state.sender_host and state.sender_port:
            # Its upstream, as the standby's WAL receiver names it (a Unix socket: a server
            # on the standby's own host).
            host = state.sender_host
            if host.startswith("/"):
                host = url.host or "localhost"
            if self.match(host, state.sender_port) is None:
                up = f"{host}:{state.sender_port}"
                self.queue.append((up, _address_url(self.template, host, state.sender_port)))
        for standby in state.standbys:
            self.find_standby(name, url, standby)

    def run(self) -> None:
        while self.probes < _MAX_PROBES:
            if not self.queue:
                if not self.unexplored:
                    return
                self.explore(self.unexplored.pop(0))
                continue
            name, url = self.queue.pop(0)
            if self.known(name) is not None:
                continue
            got = self.look(url)
            if isinstance(got, BaseException):
                # A seed, or the upstream a standby names (often the dead primary): a node
                # of the cluster all the same, reported unreachable.
                self.kept[name] = url
                self.states[name] = got
                continue
            state, identity = got
            same = self.server_of.get(identity)
            if same is not None:
                log.info("%s is %s (the same server)", name, same)
                self.alias[name] = same
                continue
            self.keep(name, url, state, identity)
        self.truncated = self.truncated or bool(self.queue or self.unexplored)

    def report(self) -> None:
        if not self.truncated:
            return
        log.warning(
            "discovery stopped after %d connections: the cluster may have more nodes than "
            "found; pass them as seeds",
            self.probes,
        )

    def streams_from(self, state: pg.PgNodeState, upstream: str) -> bool:
        """Whether a standby in *state* streams from the kept node *upstream*."""
        if not state.in_recovery or not state.sender_host or not state.sender_port:
            return False
        return self.match(state.sender_host, state.sender_port) == upstream

    def find_standby(self, upstream: str, upstream_url: URL, standby: pg.StandbyInfo) -> None:
        """Find, probe and confirm the standby one row of *upstream*'s
        ``pg_stat_replication`` describes; keep it (and follow its own standbys) when it is
        in recovery and its WAL receiver streams from *upstream*, else say why not."""
        guesses = standby_guesses(
            standby,
            upstream_url.host or "localhost",
            upstream_url.port or 5432,
            self.seed_port,
        )
        where = standby.client_addr or "a Unix socket"
        row = f"a standby named {standby.application_name!r} at {where}"
        tried: list[str] = []
        for host, port in guesses:
            name = f"{host}:{port}"
            known = self.match(host, port)
            if known == upstream:
                tried.append(f"{name} is {upstream} itself")
                continue
            if known is not None:
                seen = self.states[known]
                if isinstance(seen, BaseException) or self.streams_from(seen, upstream):
                    return  # found already (a seed, or from another node)
                tried.append(f"{name} is {known}, which does not stream from {upstream}")
                continue
            if self.probes >= _MAX_PROBES:
                self.truncated = True
                return
            url = _address_url(self.template, host, port)
            got = self.look(url)
            if isinstance(got, BaseException):
                tried.append(f"{name}: unreachable ({describe_pg_error(got)})")
                continue
            state, identity = got
            same = self.server_of.get(identity)
            if same is not None:
                if same == upstream:
                    tried.append(f"{name} is {upstream} itself")
                    continue
                self.alias[name] = same
                return  # another name of a node found already
            if not self.streams_from(state, upstream):
                what = (
                    f"streams from {state.source}"
                    if state.in_recovery and state.source
                    else "is in recovery without streaming"
                    if state.in_recovery
                    else "is not in recovery"
                )
                tried.append(f"{name} {what}, not from {upstream}")
                continue
            self.keep(name, url, state, identity)
            return
        log.warning(
            "%s streams to %s, not found (%s): set application_name='host:port' (the "
            "address clients reach the standby at) in that standby's primary_conninfo, or "
            "pass the standby as a seed",
            upstream,
            row,
            "; ".join(tried) or "not looked for",
        )


def discover_postgresql(urls: Sequence[URL], *, timeout: float = 2.0) -> Topology:
    """Every PostgreSQL node reachable from the seed *urls*, and what each one is.

    From any one node: a standby's upstream comes from its ``pg_stat_wal_receiver``
    (``sender_host:sender_port``, kept even when unreachable: often a dead primary), a node's
    standbys from its ``pg_stat_replication``, cascading standbys included. PostgreSQL knows
    the address a standby connects from, not the port it listens on: a standby is looked for
    at the ``host:port`` its ``application_name`` ends with (``host:port`` or
    ``name@host:port``, set in its ``primary_conninfo``), else at its ``client_addr`` with the
    upstream's port, then the first seed's (see :func:`standby_guesses`). A standby found so is
    kept only once probed and confirmed: in recovery, and streaming from the node that listed
    it; one that cannot be found is logged (a warning saying what to set), not an error. Two
    names of one server (the same postmaster start time and port) are one node, the name met
    first kept (the seeds' first). Discovered nodes reuse the first seed's credentials and
    database. Seeing ``sender_host`` and the standbys needs a superuser or
    ``pg_read_all_stats``.

    :raises TopologyError: when no seed can be reached.
    """
    from ..errors import TopologyError

    if not urls:
        raise TopologyError("no seed address given; pass at least one node URL")
    run = _Discovery(urls, timeout)
    run.run()
    run.report()
    if all(isinstance(s, BaseException) for s in run.states.values()):
        errors = "; ".join(
            f"{n}: {describe_pg_error(s)}"
            for n, s in run.states.items()
            if isinstance(s, BaseException)
        )
        raise TopologyError(
            f"cannot reach any seed node ({errors}); check the addresses, that the servers run, "
            "and the credentials"
        )
    nodes = [Node(n, u, Role.UNKNOWN) for n, u in run.kept.items()]
    updated = nodes_from_states(nodes, run.states)
    order = {Role.PRIMARY: 0, Role.REPLICA: 1}
    return Topology(tuple(sorted(updated, key=lambda n: (order.get(n.role, 2), n.name))))
