"""What the cluster looks like now, and changing it.

* :mod:`.model` — :class:`Node`, :class:`Role`, immutable :class:`Topology` snapshots;
* :mod:`.probe` — asking a server what it is, discovering a cluster from seeds;
* :mod:`.monitor` — background health, lag and role polling; :mod:`.failover` — the runbook.

The monitor and failover depend on a narrow interface (:class:`TopologyHost`: the current
snapshot, publish, admin connections), not on :class:`rwsplit.Cluster`.
"""

from __future__ import annotations

from .model import Node, Replication, Role, Topology, TopologyHost, node_name
from .probe import NodeProbe, describe_error, discover, node_from_state, role_of

__all__ = [
    "Node",
    "NodeProbe",
    "Replication",
    "Role",
    "Topology",
    "TopologyHost",
    "describe_error",
    "discover",
    "node_from_state",
    "node_name",
    "role_of",
]
