"""The topology as ``rwsplit topology`` and ``manage.py rwsplit_topology`` print it."""

from __future__ import annotations

from typing import Any

from ..topology.model import Role, Topology
from . import yes_no

__all__ = ["has_one_primary", "topology_lines", "topology_rows"]


def topology_rows(topology: Topology) -> list[dict[str, Any]]:
    """One JSON-ready row per node (the ``--json`` output's ``nodes``)."""
    return [
        {
            "node": n.name,
            "role": n.role.value,
            "healthy": n.healthy,
            "read_only": n.read_only,
            "lag_seconds": n.lag_seconds,
            "gtid": n.gtid_position,
            "error": n.error,
        }
        for n in topology.nodes
    ]


def topology_lines(rows: list[dict[str, Any]], indent: str = "") -> list[str]:
    """*rows* as a table: a header line, then one line per node."""
    lines = [f"{indent}{'node':<22} {'role':<8} {'health':<7} {'read_only':<9} {'lag':>6}  gtid"]
    for r in rows:
        lag = "-" if r["lag_seconds"] is None else f"{r['lag_seconds']:.1f}"
        health = "up" if r["healthy"] else "DOWN"
        error = f"  ({r['error']})" if r["error"] else ""
        lines.append(
            f"{indent}{r['node']:<22} {r['role']:<8} {health:<7} {yes_no(r['read_only']):<9} "
            f"{lag:>6}  {r['gtid'] or '-'}{error}"
        )
    return lines


def has_one_primary(topology: Topology) -> bool:
    """Exactly one healthy writable primary (what both commands' exit status reports)."""
    return sum(1 for n in topology.nodes if n.role is Role.PRIMARY and n.healthy) == 1
