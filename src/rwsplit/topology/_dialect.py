"""Moved to :mod:`rwsplit.servers` (one module per server family); kept so that older imports
(``from rwsplit.topology._dialect import MariaDB``, ``rwsplit._dialect``) keep working."""

from ..servers import (
    GtidSet,
    MariaDB,
    MariaDBGtid,
    MySQL,
    MySQLGtid,
    NodeState,
    ReplicaStatus,
    ReplicationDialect,
    Statement,
    dialect_for_version,
)

__all__ = [
    "GtidSet",
    "MariaDB",
    "MariaDBGtid",
    "MySQL",
    "MySQLGtid",
    "NodeState",
    "ReplicaStatus",
    "ReplicationDialect",
    "Statement",
    "dialect_for_version",
]
