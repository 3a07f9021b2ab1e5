"""``manage.py rwsplit_topology``: what each rwsplit database alias sees of its cluster."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ....topology import Role


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Probe every node of each rwsplit.django database and print its role, health, lag and "
        "GTID position (exit status 1 when a cluster has no single writable primary)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", help="only this alias (default: every rwsplit alias)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument(
            "--no-probe",
            action="store_true",
            help="print what this process knows without probing the servers",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from ...base import DatabaseWrapper

        aliases = [options["database"]] if options["database"] else list(connections)
        report: dict[str, Any] = {}
        healthy = True
        for alias in aliases:
            conn = connections[alias]
            if not isinstance(conn, DatabaseWrapper):
                if options["database"]:
                    raise CommandError(f"database {alias!r} does not use rwsplit.django")
                continue
            cluster = conn.cluster
            topology = cluster.topology if options["no_probe"] else cluster.refresh()
            rows = [
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
            report[alias] = rows
            primaries = [n for n in topology.nodes if n.role is Role.PRIMARY and n.healthy]
            healthy = healthy and len(primaries) == 1
        if not report:
            raise CommandError("no database uses ENGINE 'rwsplit.django'")
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for alias, rows in report.items():
                self.stdout.write(f"database {alias!r}:")
                self.stdout.write(
                    f"  {'node':<22} {'role':<8} {'health':<7} {'read_only':<9} {'lag':>6}  gtid"
                )
                for r in rows:
                    lag = "-" if r["lag_seconds"] is None else f"{r['lag_seconds']:.1f}"
                    health = "up" if r["healthy"] else "DOWN"
                    self.stdout.write(
                        f"  {r['node']:<22} {r['role']:<8} {health:<7} {r['read_only']!s:<9} "
                        f"{lag:>6}  {r['gtid'] or '-'}"
                        + (f"  ({r['error']})" if r["error"] else "")
                    )
        if not healthy:
            raise CommandError("a cluster has no single writable primary", returncode=1)
