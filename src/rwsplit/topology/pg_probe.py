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
  :class:`~rwsplit.routing.consistency.AppliedTokens` records from a probe).

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


def _with_address(url: URL, address: str) -> URL:
    host, _, port = address.rpartition(":")
    return url.set(host=host, port=int(port))


def discover_postgresql(urls: Sequence[URL], *, timeout: float = 2.0) -> Topology:
    """Every PostgreSQL node reachable from the seed *urls*, and what each one is.

    From a standby its upstream (``pg_stat_wal_receiver``) is followed; from a primary the
    standbys it streams to (``pg_stat_replication``), named by their ``application_name`` when
    that is a ``host:port`` address (set ``application_name`` in each standby's
    ``primary_conninfo`` to the address clients reach it at; PostgreSQL knows a standby's
    client address, not the port it listens on). Discovered nodes reuse the first seed's
    credentials and database. Seeing ``sender_host`` and the standbys needs a superuser or
    ``pg_read_all_stats``.

    :raises TopologyError: when no seed can be reached.
    """
    from ..errors import TopologyError

    if not urls:
        raise TopologyError("no seed address given; pass at least one node URL")
    template = urls[0]
    pending = {node_name(u): u for u in urls}
    states: dict[str, pg.PgNodeState | BaseException] = {}
    seen: dict[str, URL] = {}
    for _ in range(64):  # bounded: a cluster larger than that is discovered in part
        if not pending:
            break
        name, url = pending.popitem()
        if name in seen:
            continue
        seen[name] = url
        try:
            with PgProbe(url, timeout) as probe:
                state = probe.probe()
        except Exception as exc:
            states[name] = exc
            continue
        states[name] = state
        found = [state.source] if state.source else []
        for standby in state.standbys:
            if _ADDRESS_RE.match(standby.application_name):
                found.append(standby.application_name)
            else:
                log.info(
                    "%s streams to a standby at %s named %r: not a host:port address, not followed",
                    name,
                    standby.client_addr,
                    standby.application_name,
                )
        for address in found:
            if address not in seen and address not in pending:
                pending[address] = _with_address(template, address)
    if all(isinstance(s, BaseException) for s in states.values()):
        errors = "; ".join(
            f"{n}: {describe_pg_error(s)}"
            for n, s in states.items()
            if isinstance(s, BaseException)
        )
        raise TopologyError(
            f"cannot reach any seed node ({errors}); check the addresses, that the servers run, "
            "and the credentials"
        )
    nodes = [Node(n, u, Role.UNKNOWN) for n, u in seen.items()]
    updated = nodes_from_states(nodes, states)
    order = {Role.PRIMARY: 0, Role.REPLICA: 1}
    return Topology(tuple(sorted(updated, key=lambda n: (order.get(n.role, 2), n.name))))
