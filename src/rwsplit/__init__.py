"""rwsplit: use a replicated MySQL/MariaDB cluster from SQLAlchemy as if it were one database.

Writes go to the primary, plain reads are balanced over healthy, caught-up replicas.

>>> import rwsplit
>>> rwsplit.classify("SELECT 1").target.value
'replica'
"""

from __future__ import annotations

from .balance import Balancer, RandomBalancer, RoundRobinBalancer
from .classify import Classification, Flag, Target, classify, classify_clause
from .cluster import Cluster
from .config import ClusterSettings, TLSConfig
from .errors import (
    ClassificationError,
    ConfigurationError,
    FailoverError,
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
from .failover import FailoverOptions, FailoverResult, failover, switchover
from .monitor import Monitor
from .router import EXECUTION_OPTION
from .session import RoutingSession, healed_statements
from .topology import Node, Role, Topology, discover

__version__ = "0.1.0"

__all__ = [
    "EXECUTION_OPTION",
    "Balancer",
    "Classification",
    "ClassificationError",
    "Cluster",
    "ClusterSettings",
    "ConfigurationError",
    "FailoverError",
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
