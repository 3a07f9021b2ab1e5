"""The ``rwsplit`` command.

Exit codes (stable, for scripts):

* ``0`` success;
* ``1`` the operation failed (an rwsplit error: no server binary, cluster unreachable ...);
* ``2`` the command line is wrong (unknown command or option, bad value);
* ``3`` ``sandbox status``: the sandbox is not (fully) running;
* ``4`` ``failover`` / ``switchover``: the new primary is in place but some replicas do not
  follow it yet (named in the output; re-run once they are back).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, RwSplitError

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..config import ClusterSettings
    from ..sandbox import Sandbox, SandboxNode
    from ..sandbox.postgresql import PgSandbox

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_INCOMPLETE = 4

Handler = Callable[[argparse.Namespace], int]


class CommandLineError(ConfigurationError):
    """The command line itself is incomplete (exit 2 with the command's usage, not 1)."""


class _Parser(argparse.ArgumentParser):
    """Every parser of the command: no silent prefix matching of options (``--replica 3``
    must not be taken as ``--replicas 3``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 replica``, ``2 replicas``."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def yes_no(value: object) -> str:
    """``yes`` / ``no`` for a flag, ``-`` when unknown (how tables show booleans)."""
    if value is None:
        return "-"
    return "yes" if value else "no"


def url_argument(value: str) -> str:
    """An ``argparse`` type: a MySQL/MariaDB/PostgreSQL SQLAlchemy (or JDBC) URL, else a usage
    error.

    The message never repeats the value: it may hold a password.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from .._drivers import EXAMPLE_URL, unsupported_backend

    if value.startswith("jdbc:"):
        return value  # checked with the rest of the configuration
    try:
        url = make_url(value)
    except ArgumentError:
        raise argparse.ArgumentTypeError(
            f"not a valid SQLAlchemy URL; expected a URL such as '{EXAMPLE_URL}'"
        ) from None
    unsupported = unsupported_backend(url)
    if unsupported is not None and url.get_backend_name() != "postgresql":
        raise argparse.ArgumentTypeError(unsupported)
    if not url.host:
        raise argparse.ArgumentTypeError(
            f"the URL ({url.render_as_string(hide_password=True)}) has no host; "
            "rwsplit needs host and port to tell the nodes apart"
        )
    return value


def _version() -> str:
    from .. import __version__

    return f"rwsplit {__version__}"


def _default_sandbox_dir() -> Path:
    import getpass
    import tempfile

    return Path(tempfile.gettempdir()) / f"rwsplit-sandbox-{getpass.getuser()}"


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- sandbox


def _recorded_sandbox(base: Path) -> Any:
    """The sandbox recorded in *base*'s ``sandbox.json`` (a ``Sandbox`` or a ``PgSandbox``),
    ``None`` when there is no such file."""
    from ..sandbox import STATE_FILE, Sandbox
    from ..sandbox.postgresql import PgSandbox
    from ._pg_sandbox import is_pg_sandbox

    if not (base / STATE_FILE).exists():
        return None
    return PgSandbox.load(base) if is_pg_sandbox(base) else Sandbox.load(base)


def _cmd_sandbox_up(args: argparse.Namespace) -> int:
    from ..sandbox import Sandbox
    from ._pg_sandbox import is_postgresql_server, pg_up

    base = Path(args.dir)
    existing = _recorded_sandbox(base)
    if existing is not None and any(existing.is_running(n) for n in existing.nodes):
        print(
            f"a sandbox is already running in {base}; 'rwsplit sandbox down --dir {base}' stops it",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if is_postgresql_server(args.server):
        return pg_up(args, base)
    if args.log_statement:
        raise CommandLineError("--log-statement is for PostgreSQL (--server postgresql)")
    sb = Sandbox(
        args.replicas,
        base_dir=base,
        semi_sync=args.semi_sync,
        log_slave_updates=args.log_slave_updates,
        gtid=not args.no_gtid,
        server_binary=args.server,
        detached=True,
        progress=_progress,
    )
    sb.start()
    _remember_sandbox(sb.primary_url, sb.replica_urls)
    print_sandbox_urls(sb, args.database, _create_database)
    replicas = " ".join(f"--replica {u}" for u in sb.replica_urls)
    print(
        f"# try a failover: RWSPLIT_REPLICATION_USER={sb.replication_user} "
        f"RWSPLIT_REPLICATION_PASSWORD={sb.replication_password} rwsplit failover --dry-run "
        f"--primary {sb.primary_url} {replicas}".rstrip(),
        file=sys.stderr,
    )
    print(f"# stop it with: rwsplit sandbox down --dir {base}", file=sys.stderr)
    return EXIT_OK


def _database_name(value: str) -> str:
    """An ``argparse`` type: a plain database name (it goes into ``CREATE DATABASE``)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", value):
        raise argparse.ArgumentTypeError(
            f"expected a plain database name (letters, digits, _), got {value!r}"
        )
    return value


def _create_database(primary: SandboxNode, name: str) -> None:
    """``CREATE DATABASE`` on a MariaDB/MySQL sandbox's primary."""
    import contextlib

    with contextlib.closing(primary.connect()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")


def print_sandbox_urls(
    sb: Sandbox | PgSandbox, database: str | None, create: Callable[[Any, str], None]
) -> None:
    """Print ``name URL`` for every node of a new sandbox, then its replication account.

    *database*: first *create* it on the primary and wait until every replica has it; the
    URLs then name it.
    """
    urls = {n.name: n.url for n in sb.nodes}
    if database:
        create(sb.primary, database)
        sb.wait_caught_up()
        _progress(f"created database {database} (replicated)")
        urls = {name: f"{url.rsplit('/', 1)[0]}/{database}" for name, url in urls.items()}
    for name, url in urls.items():
        print(f"{name:<10} {url}")
    # After the "name URL" lines (scripts read those first): the account replicas use, which
    # failover and switchover need.
    print(f"{'replication':<10} {sb.replication_user} {sb.replication_password}")


def _remember_sandbox(primary: str, replicas: Sequence[str]) -> None:
    """Record the new cluster's members on its primary (``rwsplit.cluster_nodes``), so that
    a failover started from one replica finds the others, as on a cluster of one's own."""
    from ..errors import TopologyError
    from ..topology.probe import discover
    from ._cluster import remember_members

    if not replicas:  # nothing to find (and a lone semi-sync primary would wait on the write)
        return
    try:
        remember_members(discover([primary, *replicas]))
    except TopologyError as exc:  # best effort, as for any cluster
        logging.getLogger("rwsplit.cli").info("sandbox: members not recorded: %s", exc)


def _cmd_sandbox_down(args: argparse.Namespace) -> int:
    from ..sandbox.postgresql import PgSandbox

    base = Path(args.dir)
    sb = _recorded_sandbox(base)
    if sb is None:
        print(f"no sandbox in {base}: nothing to stop")
        return EXIT_OK
    # A PostgreSQL sandbox's data directories may live elsewhere (see PgSandbox.data_root).
    data_dir = sb.data_root if isinstance(sb, PgSandbox) else base
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
        print(f"removed their data directories in {data_dir}")
    return EXIT_OK


def _cmd_sandbox_status(args: argparse.Namespace) -> int:
    from ..sandbox.postgresql import PgSandbox
    from ._pg_sandbox import print_pg_status

    base = Path(args.dir)
    sb = _recorded_sandbox(base)
    if sb is None:
        print(f"no sandbox in {base}")
        return EXIT_NOT_RUNNING
    rows = sb.status()
    (print_pg_status if isinstance(sb, PgSandbox) else _print_status)(rows)
    print(f"replication account: {sb.replication_user} {sb.replication_password}")
    return status_exit(rows, base)


def _print_status(rows: list[dict[str, Any]]) -> None:
    """The table of a MariaDB/MySQL sandbox's nodes."""

    def details(r: dict[str, Any]) -> str:
        lag = r.get("lag")
        return (
            f"{yes_no(r.get('read_only')):<9} {yes_no(r.get('replicating')):<11} "
            f"{'-' if lag is None else lag!s:>4}  {r.get('gtid') or '-'}"
        )

    # "node" is the name the node was started with; "role" what it is now (a switchover or
    # failover changes it), as the server says: writable and replicating from nobody, or not.
    print_status_table(
        rows, f"{'read_only':<9} {'replicating':<11} {'lag':>4}  gtid", _current_role, details
    )


def print_status_table(
    rows: list[dict[str, Any]],
    columns: str,
    role: Callable[[dict[str, Any]], str],
    details: Callable[[dict[str, Any]], str],
) -> None:
    """``sandbox status``'s table: node, role (as *role* reads a row), address, pid, state,
    then the kind's own *columns* (a row's from *details*) and any error."""
    print(f"{'node':<10} {'role':<8} {'address':<22} {'pid':>8} {'state':<8} {columns}")
    for r in rows:
        if not r["running"]:
            state = "stopped"
        elif r.get("hung"):
            state = "hung"
        else:
            state = "running"
        print(
            f"{r['name']:<10} {role(r):<8} {r['address']:<22} {r['pid'] or '-':>8} "
            f"{state:<8} {details(r)}" + (f"  ({r['error']})" if r.get("error") else "")
        )


def status_exit(rows: list[dict[str, Any]], base: Path) -> int:
    """``sandbox status``'s exit code (0 all running, 3 not), naming what is stopped."""
    stopped = [r["name"] for r in rows if not r["running"]]
    if not stopped:
        return EXIT_OK
    if len(stopped) == len(rows):
        print(f"rwsplit: no server of the sandbox in {base} is running", file=sys.stderr)
    else:
        print(
            f"rwsplit: {len(rows) - len(stopped)} of {len(rows)} servers running; "
            f"stopped: {', '.join(stopped)}",
            file=sys.stderr,
        )
    return EXIT_NOT_RUNNING


def _current_role(row: dict[str, Any]) -> str:
    """``primary`` / ``replica`` as the server says now, ``-`` when it cannot be told."""
    if row.get("replicating"):
        return "replica"
    if row.get("read_only") is False and row.get("replicating") is False:
        return "primary"
    return "-"  # stopped, hung, or read-only and replicating from nobody


# ---------------------------------------------------------------------------------- classify


def _cmd_classify(args: argparse.Namespace) -> int:
    import sqlparse

    from ..routing.classify import classify

    dialect = _classify_dialect(args)
    sql = args.sql if args.sql != "-" else sys.stdin.read()
    # --each: sqlparse splits the text (off the hot path: this is a tool for people).
    texts = [t for t in sqlparse.split(sql) if t.strip()] if args.each else [sql]
    for text in texts or [sql]:
        c = classify(text, dialect=dialect)
        print(f"{c.target.value}\t{c.reason}")
        if args.details:
            flags = [f.name for f in type(c.flags) if f and f in c.flags and f.name]
            print(f"  flags:     {', '.join(flags) or '-'}")
            if c.resource:
                print(f"  resource:  {c.resource}")
            pretty = sqlparse.format(text, reindent=True, keyword_case="upper").strip()
            print("  statement: " + pretty.replace("\n", "\n             "))
    return EXIT_OK


def _classify_dialect(args: argparse.Namespace) -> str:
    """``--dialect``, else the backend of ``--url`` / ``$RWSPLIT_PRIMARY_URL``, else MySQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from ..routing.classify import MYSQL, POSTGRESQL

    if args.dialect:
        return POSTGRESQL if args.dialect == "postgresql" else MYSQL
    url = args.url or os.environ.get("RWSPLIT_PRIMARY_URL")
    if url and not url.startswith("jdbc:"):
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            raise CommandLineError(
                "$RWSPLIT_PRIMARY_URL is not a valid SQLAlchemy URL; pass --dialect"
            ) from None
        if backend == "postgresql":
            return POSTGRESQL
    return MYSQL


# ---------------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        replicas=args.replicas, statements=args.statements, progress=_progress, server=args.server
    )


# ---------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rwsplit`` command."""
    parser = _Parser(
        prog="rwsplit",
        description="Read/write splitting for MySQL/MariaDB and PostgreSQL clusters, inside "
        "SQLAlchemy.",
        epilog="exit codes: 0 ok, 1 operation failed, 2 bad command line, "
        "3 sandbox not (fully) running (sandbox status), 4 failover/switchover done but "
        "some replicas not repointed",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what rwsplit does")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # sandbox
    p_sb = sub.add_parser(
        "sandbox",
        help="start / stop a local primary + replicas cluster",
        description="Manage a local cluster of real server processes: mariadbd / mysqld, "
        "or PostgreSQL with --server postgresql.",
    )
    sb_sub = p_sb.add_subparsers(dest="sandbox_command", metavar="ACTION")
    sb_sub.required = True
    dir_help = f"sandbox directory (default: {_default_sandbox_dir()})"

    p_up = sb_sub.add_parser(
        "up",
        help="start a sandbox and print the URL of every node",
        description="Start one primary and N replicas on loopback, with a database 'rwsplit' (and "
        "--database NAME); returns when replication runs. Prints 'name URL' per node, then "
        "'replication USER PASSWORD' (the account replicas use, for failover). "
        "With --server postgresql: a PostgreSQL primary and N hot standbys "
        "(streaming replication; the binaries of $RWSPLIT_PG_BINDIR, else the newest "
        "/usr/lib/postgresql/*/bin).",
    )
    p_up.add_argument(
        "--replicas",
        "--standbys",
        dest="replicas",
        type=int,
        default=2,
        help="number of replicas (PostgreSQL: hot standbys; default 2)",
    )
    p_up.add_argument(
        "--semi-sync",
        "--synchronous",
        dest="semi_sync",
        action="store_true",
        help="semi-synchronous replication (no acknowledged write lost on failover); "
        "PostgreSQL: synchronous_standby_names = 'ANY 1 (standbys)'",
    )
    p_up.add_argument(
        "--log-statement",
        choices=("none", "ddl", "mod", "all"),
        help="PostgreSQL only: log_statement on every node (each node's log file is printed)",
    )
    p_up.add_argument(
        "--log-slave-updates",
        action="store_true",
        help="replicas log what they apply (lets every replica follow a promoted one)",
    )
    p_up.add_argument(
        "--database",
        metavar="NAME",
        type=_database_name,
        help="also create database NAME (replicated) and print URLs naming it "
        "(default: only the 'rwsplit' database)",
    )
    p_up.add_argument(
        "--no-gtid",
        action="store_true",
        help="MySQL only: gtid_mode=OFF, replicas replicate by binlog file and position",
    )
    p_up.add_argument(
        "--server",
        metavar="PATH",
        help="'postgresql' (or a path to a postgres binary) for PostgreSQL; else the server "
        "binary, mariadbd or mysqld (default: $RWSPLIT_SERVER_BIN, $RWSPLIT_MARIADBD, "
        "else PATH)",
    )
    p_up.add_argument("--dir", default=str(_default_sandbox_dir()), help=dir_help)
    p_up.set_defaults(func=_cmd_sandbox_up)

    p_down = sb_sub.add_parser(
        "down",
        help="stop every server the sandbox started",
        description="Stop the servers recorded in the sandbox directory.",
    )
    p_down.add_argument("--dir", default=str(_default_sandbox_dir()), help=dir_help)
    p_down.add_argument(
        "--purge",
        action="store_true",
        help="also remove the nodes' data directories (about 35 MB each)",
    )
    p_down.set_defaults(func=_cmd_sandbox_down)

    p_status = sb_sub.add_parser(
        "status",
        help="show the sandbox's nodes (exit 3 unless every node runs)",
        description="Show each node's process, its current role (primary / replica, as the "
        "server says: a switchover or failover changes it), replication, and the "
        "replication account. Exit 0 when every node runs, 3 otherwise (a last line on "
        "stderr says which are stopped).",
    )
    p_status.add_argument("--dir", default=str(_default_sandbox_dir()), help=dir_help)
    p_status.set_defaults(func=_cmd_sandbox_status)

    # classify
    p_cls = sub.add_parser(
        "classify",
        help="print where a statement would be routed, and why",
        description="Classify SQL text: prints TARGET<TAB>REASON (target: primary, replica, "
        "all = session state, last = the previous statement's connection).",
    )
    p_cls.add_argument("sql", help="the SQL text ('-' reads it from standard input)")
    p_cls.add_argument(
        "--details",
        action="store_true",
        help="also print the flags, the pinned resource and the formatted statement",
    )
    p_cls.add_argument(
        "--each",
        action="store_true",
        help="split the text into statements and classify each (one line per statement)",
    )
    p_cls.add_argument(
        "--dialect",
        choices=("mysql", "mariadb", "postgresql"),
        help="the server's SQL (default: the backend of --url or $RWSPLIT_PRIMARY_URL, else mysql)",
    )
    p_cls.add_argument(
        "--url",
        metavar="URL",
        type=url_argument,
        help="a node's SQLAlchemy URL: its backend (mysql, mariadb, postgresql) is the "
        "dialect; nothing connects",
    )
    p_cls.set_defaults(func=_cmd_classify)

    # demo
    p_demo = sub.add_parser(
        "demo",
        help="start a sandbox, run a mixed workload, show the split",
        description="Start a sandbox cluster, run a short mixed workload "
        "through a RoutingSession, print statements per node, stop it.",
    )
    p_demo.add_argument("--replicas", type=int, default=2, help="number of replicas (default 2)")
    p_demo.add_argument(
        "--statements",
        type=int,
        default=300,
        help="approximate number of statements in the workload (default 300)",
    )
    p_demo.add_argument(
        "--server",
        choices=("mysql", "postgresql"),
        default="mysql",
        help="mysql: MariaDB or MySQL servers ($RWSPLIT_SERVER_BIN picks the binary; the "
        "default); postgresql: a PostgreSQL primary and hot standbys",
    )
    p_demo.set_defaults(func=_cmd_demo)

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each command's parser in its own defaults (``args._parser``), for usage errors found
    after parsing: the message then shows that command's usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(_parser=sub)
                _remember_parsers(sub)


# Modules that add their own commands: each has ``register(subparsers) -> None``.
_COMMAND_MODULES: list[str] = [
    "rwsplit.cli._secrets",
    "rwsplit.cli._cluster",
    "rwsplit.cli._stats",
    "rwsplit.cli.bench",
]


# ---------------------------------------------------------------------------------- cluster args


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that say which cluster a command talks to (shared by every such command)."""
    g = parser.add_argument_group("cluster")
    g.add_argument(
        "--primary",
        metavar="URL",
        type=url_argument,
        help="SQLAlchemy URL of the primary (default: $RWSPLIT_PRIMARY_URL)",
    )
    g.add_argument(
        "--replica",
        metavar="URL",
        action="append",
        type=url_argument,
        default=None,
        help="SQLAlchemy URL of a replica; repeat for each "
        "(default: $RWSPLIT_REPLICA_URLS, comma-separated)",
    )
    g.add_argument(
        "--config",
        metavar="FILE",
        help="read the cluster's settings from a TOML file (*.toml) or a Java .properties "
        "file; the $RWSPLIT_* cluster options are then not read (the encryption key "
        "variables still are), --primary/--replica still override the file's nodes",
    )
    g.add_argument(
        "--key",
        metavar="PREFIX",
        help="with --config: the key prefix in a .properties file (e.g. db.cloud; found "
        "automatically when the file has one) or the table in a TOML file (default rwsplit)",
    )


def settings_from_args(args: argparse.Namespace, *, seeds_only: bool = False) -> ClusterSettings:
    """The settings named by :func:`add_cluster_arguments` options.

    Where the nodes are: ``--primary`` / ``--replica``, else ``--config FILE`` (or, without
    it, the ``RWSPLIT_*`` environment variables). The other options come from the file (or
    the environment). *seeds_only*: the nodes are only where discovery starts, so
    ``--replica URL`` alone is enough (the first replica stands in for the primary; discovery
    follows its replication source to the real one).
    """
    from ..config import load_settings, settings_from_env

    config = getattr(args, "config", None)
    key = getattr(args, "key", None)
    overrides: dict[str, Any] = {}
    if args.primary:
        overrides["primary_url"] = args.primary
    if args.replica:
        overrides["replica_urls"] = args.replica
    if config:
        return load_settings(config, key=key, overrides=overrides)
    if key is not None:
        raise CommandLineError("--key needs --config FILE")
    if not args.primary and not (
        os.environ.get("RWSPLIT_PRIMARY_URL") or os.environ.get("RWSPLIT_HOST")
    ):
        if not (seeds_only and args.replica):
            raise CommandLineError(
                "no cluster given: pass --primary URL (and --replica URL ...), --config FILE, "
                "or set RWSPLIT_PRIMARY_URL / RWSPLIT_REPLICA_URLS (or RWSPLIT_HOST ...)"
            )
        overrides["primary_url"], *rest = args.replica
        overrides["replica_urls"] = rest
    return settings_from_env(overrides=overrides)


def cluster_from_args(args: argparse.Namespace, **options: Any) -> Cluster:
    """Build the :class:`~rwsplit.Cluster` named by :func:`add_cluster_arguments` options,
    with the nodes as given (see :func:`settings_from_args`; commands that discover the
    cluster use :func:`rwsplit.cli._cluster.discovered_cluster`). *options*, which the
    command itself needs, win over the configured ones.
    """
    from ..cluster import Cluster

    return Cluster.from_settings(settings_from_args(args), **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rwsplit`` command; returns the exit code."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        command_parser: argparse.ArgumentParser = getattr(args, "_parser", parser)
        if unknown:  # with the usage of the command that was given, not the top level's
            command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    handler: Handler = args.func
    try:
        return handler(args)
    except CommandLineError as exc:
        command_parser.print_usage(sys.stderr)
        print(f"{command_parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RwSplitError as exc:
        print(f"rwsplit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("rwsplit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
