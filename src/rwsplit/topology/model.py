"""Nodes, roles and immutable :class:`Topology` snapshots.

A :class:`Topology` is a value: readers take the current snapshot from the
:class:`~rwsplit.Cluster` without a lock; whoever learns something new (the routing session
after a failed connection, the monitor after a poll) publishes a new snapshot.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy.engine import URL

if TYPE_CHECKING:
    from .failover import FailoverOptions
    from .monitor import Monitor

__all__ = ["Node", "Replication", "Role", "Topology", "TopologyHost", "node_name"]


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
    >>> node_name(make_url("postgresql+psycopg://app@db1/shop"))
    'db1:5432'
    """
    if url.port:
        return f"{url.host or 'localhost'}:{url.port}"
    default = 5432 if url.drivername.partition("+")[0] == "postgresql" else 3306
    return f"{url.host or 'localhost'}:{default}"


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
    source_uuid: str | None = None
    """MySQL ``Source_UUID``: the ``server_uuid`` of its source (``None``: unknown, MariaDB).
    A binary log position (GTIDs off) is only meaningful on a replica of that very source."""

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


@runtime_checkable
class TopologyHost(Protocol):
    """What the monitor and failover need from whoever owns the topology (a ``Cluster``).

    A narrow interface: the current snapshot, a way to publish a new one, the set of fenced
    former primaries, and how to reach a node as an administrator.
    """

    fenced: set[str]
    monitor: Monitor | None
    failover_options: FailoverOptions | None

    @property
    def topology(self) -> Topology: ...

    def publish(self, topology: Topology) -> None: ...

    def admin_url(self, node: Node) -> URL: ...

    def probe_connect_args(self, node: Node) -> dict[str, Any]: ...
