"""Choosing a replica for a read among the healthy, caught-up ones.

A balancer is any object with a ``choose(nodes) -> Node`` method (:class:`Balancer`); pass one
to :class:`~rwsplit.Cluster`. It is called on the hot path, once per read, with a non-empty
tuple of readable replicas, and may be called from several threads at once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..topology.model import Node

__all__ = ["Balancer", "RandomBalancer", "RoundRobinBalancer"]


@runtime_checkable
class Balancer(Protocol):
    """Picks the replica that takes the next read."""

    def choose(self, nodes: Sequence[Node]) -> Node:
        """Return one of *nodes* (never empty)."""
        ...


class RoundRobinBalancer:
    """Each read goes to the next replica in turn (the default).

    >>> from sqlalchemy.engine import make_url
    >>> from rwsplit.topology import Node, Role
    >>> a, b = (Node(n, make_url(f"mysql+pymysql://u@{n}"), Role.REPLICA) for n in "ab")
    >>> rr = RoundRobinBalancer()
    >>> [rr.choose((a, b)).name for _ in range(3)]
    ['a', 'b', 'a']
    """

    def __init__(self) -> None:
        # next() on itertools.count is atomic under the GIL: no lock needed.
        self._counter = itertools.count()

    def choose(self, nodes: Sequence[Node]) -> Node:
        return nodes[next(self._counter) % len(nodes)]


class RandomBalancer:
    """Each read goes to a replica chosen at random, optionally weighted by node name."""

    def __init__(self, weights: dict[str, float] | None = None, seed: int | None = None) -> None:
        self._weights = dict(weights or {})
        self._random = random.Random(seed)

    def choose(self, nodes: Sequence[Node]) -> Node:
        if not self._weights:
            return nodes[self._random.randrange(len(nodes))]
        weights = [self._weights.get(n.name, 1.0) for n in nodes]
        return self._random.choices(nodes, weights=weights)[0]
