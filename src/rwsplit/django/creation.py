"""Test databases on a cluster: Django creates the schema on the primary, the replicas must
have it before a test reads there (MySQL's wait here; PostgreSQL's in its backend)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.mysql.creation import DatabaseCreation as MySQLDatabaseCreation

__all__ = ["DatabaseCreation", "ReplicatedCreation", "wait_for_replicas"]

log = logging.getLogger("rwsplit.django")

REPLICA_WAIT = 30.0
"""Seconds each replica may take to apply what the primary has logged."""


def wait_for_replicas(connection: Any, timeout: float = REPLICA_WAIT) -> list[str]:
    """Wait until every healthy replica applied everything the primary has logged.

    Reads the primary's ``@@gtid_binlog_pos`` and waits with ``MASTER_GTID_WAIT`` on each
    replica (MySQL: ``@@global.gtid_executed`` / ``WAIT_FOR_EXECUTED_GTID_SET``). Returns
    the replicas waited for.

    :raises ImproperlyConfigured: a replica did not get there in time (replication broken?).
    """
    primary = connection._primary_connection()
    mariadb = "mariadb" in str(primary.get_server_info()).lower()
    with contextlib.closing(primary.cursor()) as cursor:
        cursor.execute("SELECT @@gtid_binlog_pos" if mariadb else "SELECT @@global.gtid_executed")
        row = cursor.fetchone()
    position = str(row[0]) if row and row[0] else ""
    waited: list[str] = []
    if not position:
        return waited
    for node in connection.cluster.topology.replicas:
        if not node.healthy:
            continue
        replica = connection._replica_connection(node.name)
        with contextlib.closing(replica.cursor()) as cursor:
            if mariadb:
                cursor.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
            else:
                cursor.execute(
                    "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (position, max(1, round(timeout)))
                )
            result = cursor.fetchone()
        if not result or result[0] != 0:
            raise ImproperlyConfigured(
                f"replica {node.name} did not apply the primary's GTID {position} within "
                f"{timeout:.0f}s: is it replicating? (check with 'manage.py rwsplit_topology')"
            )
        waited.append(node.name)
    log.info("replicas %s applied GTID %s", ", ".join(waited) or "(none)", position)
    return waited


class ReplicatedCreation:
    """Test-database creation on a cluster (a mixin before Django's own creation class): the
    replicas have the schema before any test runs, and the test database is gone from them
    after teardown."""

    connection: Any

    def create_test_db(self, *args: Any, **kwargs: Any) -> str:
        name: str = super().create_test_db(*args, **kwargs)  # type: ignore[misc]
        self.connection.wait_for_replicas(REPLICA_WAIT)
        return name

    def destroy_test_db(self, *args: Any, **kwargs: Any) -> None:
        super().destroy_test_db(*args, **kwargs)  # type: ignore[misc]
        # Django dropped the database on the primary; the replicas drop it when they apply
        # that: wait, so that nothing of the run outlives teardown. NAME is the non-test
        # database again (it may not exist): wait on a connection to no database.
        from django.db.backends.base.base import NO_DB_ALIAS

        conn = type(self.connection)({**self.connection.settings_dict, "NAME": None}, NO_DB_ALIAS)
        try:
            conn.wait_for_replicas(REPLICA_WAIT)
        finally:
            conn.close()


class DatabaseCreation(ReplicatedCreation, MySQLDatabaseCreation):  # type: ignore[misc]
    """Django's MySQL test-database creation on a cluster."""
