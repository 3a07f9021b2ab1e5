"""``rwsplit sandbox up|status|down`` for a PostgreSQL sandbox (``--server postgresql``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import EXIT_OK, CommandLineError, _progress, print_sandbox_urls, print_status_table, yes_no

if TYPE_CHECKING:
    from ..sandbox.postgresql import PgNode

__all__ = ["is_pg_sandbox", "is_postgresql_server", "pg_up", "print_pg_status"]

_NAMES = frozenset({"postgresql", "postgres", "pg"})


def is_postgresql_server(server: str | None) -> bool:
    """True when ``--server`` asks for PostgreSQL: its name, or a path to a ``postgres``
    binary (whose directory then holds the binaries)."""
    if not server:
        return False
    return server.lower() in _NAMES or Path(server).name in ("postgres", "postmaster")


def is_pg_sandbox(base: Path) -> bool:
    """True when *base* holds a PostgreSQL sandbox's ``sandbox.json``."""
    from ..sandbox import STATE_FILE
    from ..sandbox.postgresql import FAMILY

    try:
        return bool(json.loads((base / STATE_FILE).read_text()).get("family") == FAMILY)
    except (OSError, ValueError, AttributeError):
        return False


def pg_up(args: argparse.Namespace, base: Path) -> int:
    """Start a detached PostgreSQL sandbox in *base* and print its URLs."""
    from ..sandbox.postgresql import PgSandbox

    for flag, given in (
        ("--log-slave-updates", args.log_slave_updates),
        ("--no-gtid", args.no_gtid),
    ):
        if given:
            raise CommandLineError(f"{flag} is for MariaDB/MySQL, not PostgreSQL")
    server = args.server
    bindir = None if server.lower() in _NAMES else str(Path(server).parent)
    sb = PgSandbox(
        args.replicas,
        base_dir=base,
        synchronous=args.semi_sync,
        log_statement=args.log_statement or "none",
        bindir=bindir,
        detached=True,
        progress=_progress,
    )
    sb.start()
    print_sandbox_urls(sb, args.database, _create_database)
    if args.log_statement:
        for n in sb.nodes:
            print(f"# {n.name} logs its statements in {n.log_path}", file=sys.stderr)
    print(f"# stop it with: rwsplit sandbox down --dir {base}", file=sys.stderr)
    return EXIT_OK


def _create_database(primary: PgNode, name: str) -> None:
    with contextlib.closing(primary.connect()) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def print_pg_status(rows: list[dict[str, Any]]) -> None:
    """The table of a PostgreSQL sandbox's nodes."""

    def details(r: dict[str, Any]) -> str:
        lag = r.get("lag")
        return (
            f"{yes_no(r.get('replicating')):<9} {r.get('source') or '-':<22} "
            f"{'-' if lag is None else lag!s:>5}  {r.get('lsn') or '-'}"
        )

    # "role" as the server says now: out of recovery (primary) or a standby.
    print_status_table(rows, f"{'streaming':<9} {'source':<22} {'lag':>5}  lsn", _role, details)


def _role(row: dict[str, Any]) -> str:
    if "in_recovery" not in row:
        return "-"  # stopped, hung, or did not answer
    return "standby" if row["in_recovery"] else "primary"
