"""``rwsplit sandbox up|status|down`` for a PostgreSQL sandbox (``--server postgresql``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from . import (
    EXIT_FAILED,
    EXIT_OK,
    CommandLineError,
    _progress,
    plural,
    status_exit,
    yes_no,
)

__all__ = ["is_pg_sandbox", "is_postgresql_server", "pg_down", "pg_status", "pg_up"]

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
    urls = {n.name: n.url for n in sb.nodes}
    if args.database:
        with contextlib.closing(sb.primary.connect()) as conn:
            conn.execute(f'CREATE DATABASE "{args.database}"')
        sb.wait_caught_up()
        _progress(f"created database {args.database} (replicated)")
        urls = {name: f"{url.rsplit('/', 1)[0]}/{args.database}" for name, url in urls.items()}
    for name, url in urls.items():
        print(f"{name:<10} {url}")
    print(f"{'replication':<10} {sb.replication_user} {sb.replication_password}")
    if args.log_statement:
        for n in sb.nodes:
            print(f"# {n.name} logs its statements in {n.log_path}", file=sys.stderr)
    print(f"# stop it with: rwsplit sandbox down --dir {base}", file=sys.stderr)
    return EXIT_OK


def pg_down(args: argparse.Namespace, base: Path) -> int:
    """Stop the PostgreSQL sandbox recorded in *base*."""
    from ..sandbox.postgresql import PgSandbox

    sb = PgSandbox.load(base)
    running = [n.name for n in sb.nodes if sb.is_running(n)]
    sb.stop(purge=args.purge)
    if any(sb.is_running(n) for n in sb.nodes):
        print(f"rwsplit: error: some servers in {base} did not stop", file=sys.stderr)
        return EXIT_FAILED
    dead = [n.name for n in sb.nodes if n.name not in running]
    line = f"stopped {plural(len(running), 'server')} in {base}"
    if dead:
        line += f" ({', '.join(dead)} {'was' if len(dead) == 1 else 'were'} not running)"
    print(line)
    if args.purge:
        print(f"removed their data directories in {sb.data_root}")
    return EXIT_OK


def pg_status(args: argparse.Namespace, base: Path) -> int:
    """Show the nodes of the PostgreSQL sandbox in *base* (exit 3 unless every node runs)."""
    from ..sandbox.postgresql import PgSandbox

    sb = PgSandbox.load(base)
    rows = sb.status()
    # "role" as the server says now: out of recovery (primary) or a standby.
    print(
        f"{'node':<10} {'role':<8} {'address':<22} {'pid':>8} {'state':<8} {'streaming':<9} "
        f"{'source':<22} {'lag':>5}  lsn"
    )
    for r in rows:
        state = "stopped" if not r["running"] else "hung" if r.get("hung") else "running"
        lag = r.get("lag")
        print(
            f"{r['name']:<10} {_role(r):<8} {r['address']:<22} {r['pid'] or '-':>8} "
            f"{state:<8} {yes_no(r.get('replicating')):<9} {r.get('source') or '-':<22} "
            f"{'-' if lag is None else lag!s:>5}  {r.get('lsn') or '-'}"
            + (f"  ({r['error']})" if r.get("error") else "")
        )
    print(f"replication account: {sb.replication_user} {sb.replication_password}")
    return status_exit(rows, base)


def _role(row: dict[str, Any]) -> str:
    if "in_recovery" not in row:
        return "-"  # stopped, hung, or did not answer
    return "standby" if row["in_recovery"] else "primary"
