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

from sqlalchemy.engine import URL

__all__ = ["Node", "Role", "Topology", "node_name"]


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
        """Healthy replicas whose known lag is within *max_lag* seconds."""
        return tuple(
            n
            for n in self.nodes
            if n.role is Role.REPLICA
            and n.healthy
            and (max_lag is None or n.lag_seconds is None or n.lag_seconds <= max_lag)
        )

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
