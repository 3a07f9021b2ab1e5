"""Nodes, roles and immutable :class:`Topology` snapshots.

A :class:`Topology` is a value: readers take the current snapshot from the
:class:`~rwsplit.Cluster` without a lock; whoever learns something new (the routing session
after a failed connection, the monitor after a poll) publishes a new snapshot.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pymysql
from sqlalchemy.engine import URL

from ._dialect import MariaDB, NodeState, ReplicationDialect, dialect_for_version

__all__ = [
    "Node",
    "NodeProbe",
    "Replication",
    "Role",
    "Topology",
    "discover",
    "node_name",
    "role_of",
]

log = logging.getLogger("rwsplit.topology")


class Role(enum.Enum):
    """What a node is in the replication topology."""

    PRIMARY = "primary"
    REPLICA = "replica"
    UNKNOWN = "unknown"


def node_name(url: URL) -> str:
    """The name rwsplit gives a node: ``host:port`` (stable across role changes).

    >>> from sqlalchemy.engine import make_url
    >>> node_name(make_url("mysql+pymysql://app:secret@db1:3307/shop"))
    'db1:3307'
    """
    return f"{url.host or 'localhost'}:{url.port or 3306}"


@dataclass(frozen=True, slots=True)
class Replication:
    """What a replica's replication threads were doing when it was last probed."""

    source: str
    """``Master_Host:Master_Port`` as an rwsplit node name."""
    source_server_id: int | None
    """``Master_Server_Id``: the server id of the source the IO thread last talked to."""
    io_running: str
    """``"Yes"``, ``"Connecting"`` or ``"No"``."""
    sql_running: bool

    @property
    def io_connected(self) -> bool:
        return self.io_running == "Yes"


@dataclass(frozen=True, slots=True)
class Node:
    """One server as rwsplit last saw it. Immutable; change it with :meth:`evolve`.

    ``url`` is a SQLAlchemy :class:`~sqlalchemy.engine.URL`, whose ``repr`` hides the password.
    """

    name: str
    url: URL = field(repr=False)
    role: Role
    healthy: bool = True
    lag_seconds: float | None = None
    gtid_position: str | None = None
    read_only: bool | None = None
    error: str | None = None
    """Why the node is unhealthy (a message without credentials), or ``None``."""
    server_id: int | None = None
    """``@@server_id`` at the last probe (``None``: never probed)."""
    replication: Replication | None = None
    """The replica's source and threads at the last probe; ``None`` when it is not a replica
    or was never probed (without a monitor nothing is known, and nothing is assumed)."""

    def evolve(self, **changes: object) -> Node:
        """A copy of this node with *changes* applied."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def safe_url(self) -> str:
        """The node's URL with the password masked, for display."""
        return self.url.render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class Topology:
    """An immutable snapshot of the cluster: its nodes, their roles and health.

    >>> from sqlalchemy.engine import make_url
    >>> p = Node("db1:3306", make_url("mysql+pymysql://u@db1"), Role.PRIMARY)
    >>> r = Node("db2:3306", make_url("mysql+pymysql://u@db2"), Role.REPLICA)
    >>> t = Topology((p, r))
    >>> t.primary.name, [n.name for n in t.replicas]
    ('db1:3306', ['db2:3306'])
    """

    nodes: tuple[Node, ...]
    version: int = 0
    taken_at: float = field(default_factory=time.time, compare=False)

    @property
    def primaries(self) -> tuple[Node, ...]:
        """Every healthy node that claims to be the primary (more than one is a split brain)."""
        return tuple(n for n in self.nodes if n.role is Role.PRIMARY and n.healthy)

    @property
    def primary(self) -> Node | None:
        """The one healthy primary, or ``None`` when there is none or more than one."""
        primaries = self.primaries
        return primaries[0] if len(primaries) == 1 else None

    @property
    def replicas(self) -> tuple[Node, ...]:
        """Every node in the replica role, healthy or not."""
        return tuple(n for n in self.nodes if n.role is Role.REPLICA)

    def readable_replicas(self, max_lag: float | None = None) -> tuple[Node, ...]:
        """Healthy replicas that may take reads: see :meth:`not_readable_because`."""
        followed = self._followed_primary()
        return tuple(
            n
            for n in self.nodes
            if n.role is Role.REPLICA
            and n.healthy
            and self._rotation_problem(n, followed, max_lag) is None
        )

    def not_readable_because(self, node: Node, max_lag: float | None = None) -> str | None:
        """Why *node* takes no reads, or ``None`` when it may.

        A replica takes reads when it is healthy, its known lag is within *max_lag*, and —
        when a probe saw its replication state (a monitor owns health) — it replicates from
        the current primary with both threads running and a known lag. While that primary is
        itself down, a replica still reconnecting to it keeps serving (its data is the newest
        any replica has, and its lag keeps growing from the primary's last known position);
        once another node is the primary, a replica still attached to the old one is out.
        """
        if node.role is not Role.REPLICA:
            return f"it is not a replica ({node.role.value})"
        if not node.healthy:
            return node.error or "it is down"
        return self._rotation_problem(node, self._followed_primary(), max_lag)

    def _followed_primary(self) -> Node | None:
        # The node in the primary role, up or down: replicas must follow that one.
        primaries = [n for n in self.nodes if n.role is Role.PRIMARY]
        return primaries[0] if len(primaries) == 1 else None

    @staticmethod
    def _rotation_problem(node: Node, primary: Node | None, max_lag: float | None) -> str | None:
        lag = node.lag_seconds
        rep = node.replication
        if rep is not None:
            if primary is not None and not _follows(rep, primary):
                return f"it replicates from {rep.source}, not from the primary {primary.name}"
            if not rep.sql_running:
                return "its SQL thread is not running"
            if not rep.io_connected and (primary is None or primary.healthy):
                return f"its IO thread is not connected ({rep.io_running})"
            if lag is None:
                return "its lag is unknown"
        if max_lag is not None and lag is not None and lag > max_lag:
            return f"it lags {lag:.3g}s (more than max_replica_lag={max_lag:g})"
        return None

    def node(self, name: str) -> Node:
        """The node called *name*; :class:`KeyError` if there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def with_nodes(self, nodes: Iterable[Node]) -> Topology:
        """A newer snapshot where each given node replaces the one with the same name."""
        changed = {n.name: n for n in nodes}
        merged = tuple(changed.pop(n.name, n) for n in self.nodes) + tuple(changed.values())
        return Topology(merged, self.version + 1)


def _follows(rep: Replication, primary: Node) -> bool:
    """Does a replica with status *rep* replicate from *primary*?

    By name (``host:port``, as the topology names nodes) or, when its IO thread is connected,
    by the source's server id: a replica configured with a host name the application spells
    differently (an IP address, an alias) is still recognised.
    """
    if rep.source == primary.name:
        return True
    return (
        rep.io_connected
        and primary.server_id is not None
        and rep.source_server_id is not None
        and rep.source_server_id == primary.server_id
    )


# ---------------------------------------------------------------------------------- discovery


def role_of(state: NodeState) -> Role:
    """The role a probed server plays.

    * replication configured (``SHOW SLAVE STATUS`` has a source) → replica;
    * writable (``read_only=OFF``, ``super_read_only=OFF``) and not replicating → primary;
    * read-only and not replicating (a fenced former primary, a primary being switched
      over) → unknown: it takes neither writes nor reads.
    """
    if state.replica is not None:
        return Role.REPLICA
    if state.writable:
        return Role.PRIMARY
    return Role.UNKNOWN


class NodeProbe:
    """A small admin connection to one node that reads its replication state.

    The connection is kept between probes (one round trip per query) and re-opened after a
    failure; every call has *timeout* seconds to connect, read and write.
    """

    def __init__(
        self, url: URL, timeout: float = 1.0, connect_args: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url
        self.connect_args: dict[str, Any] = dict(connect_args or {})
        """Extra PyMySQL ``connect()`` arguments (the cluster's TLS settings for this node)."""
        self.node_url: URL = url
        """The URL of the node as the cluster knows it (``url`` may use admin credentials)."""
        self.name = node_name(url)
        self.timeout = timeout
        self._conn: pymysql.Connection[Any] | None = None
        self.dialect: ReplicationDialect | None = None

    def _connect(self) -> pymysql.Connection[Any]:
        if self._conn is None:
            self._conn = pymysql.connect(
                host=self.url.host or "localhost",
                port=self.url.port or 3306,
                user=self.url.username or "",
                password=self.url.password or "",
                autocommit=True,
                connect_timeout=max(self.timeout, 0.001),
                read_timeout=self.timeout,
                write_timeout=self.timeout,
                cursorclass=pymysql.cursors.DictCursor,
                **self.connect_args,
            )
        return self._conn

    def query(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        """Run *sql* on the node (reconnecting if needed); the connection is dropped on error."""
        try:
            conn = self._connect()
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params) or None)
                return list(cur.fetchall())
        except BaseException:
            self.close()
            raise

    def probe(self) -> NodeState:
        """Read the node's role, read_only, GTID positions and replication status."""
        if self.dialect is None:
            version = str(self.query("SELECT @@version AS v")[0]["v"])
            self.dialect = dialect_for_version(version)
        d = self.dialect
        variables = self.query(d.variables_sql)[0]
        status = self.query(d.replica_status_sql)
        return d.parse_state(variables, status)

    def forget(self) -> None:
        """Drop the connection without telling the server (after ``fork()``: the parent still
        uses it, and a ``COM_QUIT`` from the child would end the parent's session)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn._force_close()  # type: ignore[attr-defined]  # closes this process's descriptor only

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> NodeProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_error(exc: BaseException) -> str:
    """A short message for *exc* that never includes credentials."""
    args: tuple[object, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[0]}: {args[1]}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _with_address(url: URL, address: str) -> URL:
    host, _, port = address.rpartition(":")
    return url.set(host=host, port=int(port))


def discover(seeds: Iterable[str | URL], *, timeout: float = 2.0) -> Topology:
    """Find every node of the cluster reachable from the *seeds* and what each one is.

    From a replica, its source (``Master_Host:Master_Port``) is followed; from a primary, the
    replicas it lists in ``SHOW SLAVE HOSTS`` / ``SHOW REPLICAS`` (those started with
    ``report_host`` / ``report_port``). Discovered nodes reuse the first seed's credentials.

    :raises TopologyError: when no seed can be reached.

    Example (needs a reachable node)::

        topology = discover(["mysql+pymysql://root@127.0.0.1:3307/app"])
        topology.primary.name, [n.name for n in topology.replicas]
    """
    from . import _validate as validate
    from .errors import TopologyError

    urls = [validate.url(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
    if not urls:
        raise TopologyError("no seed address given; pass at least one node URL")
    template = urls[0]
    pending = {node_name(u): u for u in urls}
    seen: dict[str, Node] = {}
    errors: list[str] = []
    while pending:
        name, url = pending.popitem()
        if name in seen:
            continue
        with NodeProbe(url, timeout) as p:
            try:
                state = p.probe()
            except Exception as exc:
                errors.append(f"{name}: {describe_error(exc)}")
                seen[name] = Node(name, url, Role.UNKNOWN, healthy=False, error=describe_error(exc))
                continue
            extra: list[dict[str, Any]] = []
            if state.replica is None:
                mariadb = isinstance(p.dialect, MariaDB)
                try:
                    extra = p.query("SHOW SLAVE HOSTS" if mariadb else "SHOW REPLICAS")
                except Exception as exc:  # needs REPLICATION MASTER ADMIN: optional
                    log.info("%s: cannot list its replicas: %s", name, describe_error(exc))
        seen[name] = node_from_state(name, url, state)
        found = [state.replica.source] if state.replica else []
        for row in extra:
            host = row.get("Host") or ""
            port = int(row.get("Port") or 0)
            if host and port:
                found.append(f"{host}:{port}")
        for address in found:
            if address not in seen and address not in pending:
                pending[address] = _with_address(template, address)
    if all(not n.healthy for n in seen.values()):
        raise TopologyError(
            "cannot reach any seed node (" + "; ".join(errors) + "); check the addresses, "
            "that the servers run, and the credentials"
        )
    return Topology(tuple(sorted(seen.values(), key=_order)))


def _order(n: Node) -> tuple[int, str]:
    return ({Role.PRIMARY: 0, Role.REPLICA: 1}.get(n.role, 2), n.name)


def node_from_state(name: str, url: URL, state: NodeState, **changes: object) -> Node:
    """The :class:`Node` a successful probe describes."""
    lag = None
    replication = None
    rs = state.replica
    if rs is not None:
        if rs.seconds_behind is not None:
            lag = float(rs.seconds_behind)
        replication = Replication(
            rs.source, rs.source_server_id or None, rs.io_running, rs.sql_running
        )
    node = Node(
        name,
        url,
        role_of(state),
        healthy=True,
        lag_seconds=lag,
        gtid_position=state.executed.text or None,
        read_only=not state.writable,
        server_id=state.server_id or None,
        replication=replication,
    )
    return node.evolve(**changes) if changes else node
