"""Read a server's own counters: where statements really ran."""

from __future__ import annotations

from rwsplit.cli.demo import node_counters
from rwsplit.sandbox import Sandbox

__all__ = ["delta", "node_counters", "snapshot"]


def snapshot(sb: Sandbox) -> dict[str, dict[str, int]]:
    """Counters of every running node, by node name."""
    return {n.name: node_counters(n) for n in sb.nodes if sb.is_running(n)}


def delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        name: {k: after[name][k] - before[name][k] for k in after[name]}
        for name in after
        if name in before
    }
