"""``manage.py rwsplit_topology``: what each rwsplit database alias sees of its cluster."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ....cli._topology_table import has_one_primary, topology_lines, topology_rows


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
        from ..._routing import RoutingWrapper

        aliases = [options["database"]] if options["database"] else list(connections)
        report: dict[str, Any] = {}
        healthy = True
        for alias in aliases:
            conn = connections[alias]
            if not isinstance(conn, RoutingWrapper):
                if options["database"]:
                    raise CommandError(f"database {alias!r} does not use an rwsplit ENGINE")
                continue
            cluster = conn.cluster
            topology = cluster.topology if options["no_probe"] else cluster.refresh()
            rows = topology_rows(topology)
            report[alias] = rows
            healthy = healthy and has_one_primary(topology)
        if not report:
            raise CommandError(
                "no database uses an rwsplit ENGINE ('rwsplit.django.mysql', "
                "'rwsplit.django.postgresql')"
            )
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for alias, rows in report.items():
                self.stdout.write(f"database {alias!r}:")
                for line in topology_lines(rows, indent="  "):
                    self.stdout.write(line)
        if not healthy:
            raise CommandError("a cluster has no single writable primary", returncode=1)
