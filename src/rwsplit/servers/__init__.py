"""Server families: the one place where MariaDB and MySQL (and next PostgreSQL) differ.

* :mod:`rwsplit.servers.base`: the :class:`ServerFamily` protocol and the shared types
  (:class:`Statement`, :class:`GtidSet`, :class:`NodeState`, :class:`ReplicaStatus`);
* :mod:`rwsplit.servers.mariadb`: MariaDB 10.6+;
* :mod:`rwsplit.servers.mysql`: MySQL 8.0 / 8.4 / 9.x, GTIDs on or off.

>>> family_for_version("10.11.6-MariaDB-log").name
'mariadb'
>>> f = family_for_version("mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))")
>>> f.name, f.version
('mysql', (9, 7, 4))
"""

from __future__ import annotations

from .base import (
    Cursor,
    GtidSet,
    NodeState,
    ReplicaStatus,
    ReplicationDialect,
    SemiSync,
    ServerFamily,
    Statement,
    parse_version,
)
from .mariadb import MariaDB, MariaDBGtid
from .mysql import MySQL, MySQLGtid

__all__ = [
    "Cursor",
    "GtidSet",
    "MariaDB",
    "MariaDBGtid",
    "MySQL",
    "MySQLGtid",
    "NodeState",
    "ReplicaStatus",
    "ReplicationDialect",
    "SemiSync",
    "ServerFamily",
    "Statement",
    "detect_family",
    "dialect_for_version",
    "family_for_version",
    "parse_version",
]


def family_for_version(version: str, *, gtid: bool = True) -> MariaDB | MySQL:
    """The family of a server from its ``@@version`` or ``--version`` output.

    *gtid*: for MySQL, whether the server runs with ``gtid_mode=ON``.
    """
    if "mariadb" in version.lower():
        return MariaDB()
    return MySQL(version, gtid=gtid)


def dialect_for_version(version: str) -> ReplicationDialect:
    """The family of a server from its ``@@version`` / ``SELECT VERSION()`` string."""
    return family_for_version(version)


def detect_family(cur: Cursor) -> MariaDB | MySQL:
    """The family of the server on *cur* (MySQL: with its ``gtid_mode``).

    One ``SHOW`` statement: it moves no ``Com_select`` counter (tests and the demo read those
    to see where statements ran).
    """
    cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'gtid_mode')")
    variables = {str(k): str(v) for k, v in cur.fetchall()}
    version = variables.get("version", "")
    if "mariadb" in version.lower():
        return MariaDB()
    return MySQL(version, gtid=variables.get("gtid_mode", "OFF").upper() == "ON")
