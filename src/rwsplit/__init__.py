"""rwsplit: use a replicated MySQL/MariaDB cluster from SQLAlchemy as if it were one database.

Writes go to the primary, plain reads are balanced over healthy, caught-up replicas.

>>> import rwsplit
>>> rwsplit.classify("SELECT 1").target.value
'replica'
"""

from __future__ import annotations

from .cluster import Cluster
from .config import ClusterSettings, TLSConfig
from .errors import (
    ClassificationError,
    ConfigurationError,
    FailoverError,
    FencedNodeError,
    NoPrimaryError,
    NoReplicaAvailableError,
    NotPrimaryError,
    PrimaryFailedError,
    ReadFailedError,
    RetryableWriteError,
    RoutingError,
    RwSplitError,
    SandboxError,
    SecretError,
    ServerBinaryNotFoundError,
    SplitBrainError,
    TopologyError,
    TransactionOutcomeUnknownError,
)
from .integrations.sqlalchemy import RoutingSession, healed_statements
from .routing.balance import Balancer, RandomBalancer, RoundRobinBalancer
from .routing.classify import Classification, Flag, Target, classify, classify_clause
from .routing.router import EXECUTION_OPTION
from .topology.failover import FailoverOptions, FailoverResult, failover, switchover
from .topology.model import Node, Role, Topology
from .topology.monitor import Monitor
from .topology.probe import discover

__version__ = "0.1.0"

# The package was one flat folder before 0.2: keep the old module paths importing the same
# module objects (``from rwsplit.session import RoutingSession`` and the like).
_MOVED = {
    "balance": "routing.balance",
    "classify": "routing.classify",
    "consistency": "routing.consistency",
    "router": "routing.router",
    "monitor": "topology.monitor",
    "failover": "topology.failover",
    "_dialect": "topology._dialect",
    "secrets": "config.secrets",
    "_validate": "config._validate",
    "session": "integrations.sqlalchemy",
    "_sa_compat": "integrations._sa_compat",
}


def _alias_moved_modules() -> None:
    import importlib
    import sys

    package = sys.modules[__name__]
    for old, new in _MOVED.items():
        module = importlib.import_module(f"{__name__}.{new}")
        sys.modules.setdefault(f"{__name__}.{old}", module)
        if not hasattr(package, old):  # rwsplit.classify / rwsplit.failover are functions
            setattr(package, old, module)


_alias_moved_modules()

__all__ = [
    "EXECUTION_OPTION",
    "Balancer",
    "Classification",
    "ClassificationError",
    "Cluster",
    "ClusterSettings",
    "ConfigurationError",
    "FailoverError",
    "FencedNodeError",
    "FailoverOptions",
    "FailoverResult",
    "Flag",
    "Monitor",
    "NoPrimaryError",
    "NoReplicaAvailableError",
    "Node",
    "NotPrimaryError",
    "PrimaryFailedError",
    "RandomBalancer",
    "ReadFailedError",
    "RetryableWriteError",
    "Role",
    "RoundRobinBalancer",
    "RoutingError",
    "RoutingSession",
    "RwSplitError",
    "SandboxError",
    "SecretError",
    "ServerBinaryNotFoundError",
    "SplitBrainError",
    "TLSConfig",
    "Target",
    "Topology",
    "TopologyError",
    "TransactionOutcomeUnknownError",
    "__version__",
    "classify",
    "classify_clause",
    "healed_statements",
    "discover",
    "failover",
    "switchover",
]
