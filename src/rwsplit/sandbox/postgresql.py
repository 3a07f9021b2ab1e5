"""A real local PostgreSQL primary and hot standbys, for demos, tests and benchmarks.

:class:`PgSandbox` starts one primary and *N* hot standbys as real ``postgres`` processes
(PostgreSQL 13 or later; the binaries of ``$RWSPLIT_PG_BINDIR``, else the newest
``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``, else ``PATH``) on loopback ports,
each with its own data directory. The standbys are made with ``pg_basebackup`` from the
running primary and replicate by physical streaming replication, without slots (the primary
keeps ``wal_keep_size`` of WAL for them).

Every node has a superuser ``rwsplit`` whose password is made for this sandbox (scram over
TCP; the nodes open no Unix socket), and a database ``rwsplit``. The password is in every
node's :attr:`PgNode.url`, in ``sandbox.json`` (mode 0600) and in the standbys'
``primary_conninfo``, never in a log line or a repr.

PostgreSQL refuses to run as root. When this process is root the servers and their tools run
as the ``postgres`` OS user (``$RWSPLIT_PG_USER`` names another) through ``setpriv``, with
data directories it owns; when the sandbox directory is not reachable by that user (pytest's
``/tmp/pytest-of-root`` is mode 0700) the data directories go in a directory of their own
under the system's temporary directory, removed by :meth:`PgSandbox.stop`.

No orphans, as in :mod:`rwsplit.sandbox`: a sandbox owned by a Python process starts its
servers with a parent-death signal (they die with the process, even after ``kill -9``) and
stops them at exit; a detached sandbox (``rwsplit sandbox up --server postgresql``) records
every pid in ``sandbox.json``, and ``rwsplit sandbox down`` stops exactly those.

Example::

    from rwsplit.sandbox.postgresql import PgSandbox

    with PgSandbox(standbys=2) as sb:
        print(sb.primary_url)  # postgresql+psycopg://rwsplit:...@127.0.0.1:41873/rwsplit
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SandboxError, ServerBinaryNotFoundError
from ._common import (
    STATE_FILE,
    NodeBase,
    Progress,
    SandboxBase,
    build_template,
    check_node_count,
    free_port,
    log_tail,
    node_names,
    poll,
    read_state,
    wait_pids_gone,
    with_parent_death_signal,
    write_state,
)
from ._pg_os import (
    SHM,
    OsUser,
    child_pids,
    owned_dir,
    pid_runs_postgres,
    python_for,
    run_as,
    server_user,
    sweep_abandoned,
    tmpfs_has_room,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["DATABASE", "USER", "PgNode", "PgSandbox", "find_postgresql"]

log = logging.getLogger("rwsplit.sandbox")

DATABASE = "rwsplit"
"""The database the sandbox creates on the primary (replicated to every standby)."""
USER = "rwsplit"
"""The superuser every node has (it also replicates: the standbys connect as it)."""
FAMILY = "postgresql"
"""The ``family`` recorded in ``sandbox.json`` (a MariaDB/MySQL sandbox records none)."""

# The template is initialised with this password; every sandbox sets its own at start-up.
_BOOTSTRAP_PASSWORD = "rwsplit-template"
# Bumped whenever what a template holds changes: an older one is never copied.
_TEMPLATE_LAYOUT = "pg-layout-2"
_LOG_STATEMENT = ("none", "ddl", "mod", "all")

# What every node runs with (the sandbox's options and ``settings`` come after, and win).
_BASE_SETTINGS: dict[str, str] = {
    "wal_level": "replica",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "max_wal_senders": "16",
    "max_replication_slots": "16",
    "wal_keep_size": "256MB",
    # A throwaway cluster: durability buys nothing, start-up and commits are faster.
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    # Dynamic shared memory in the data directory, not /dev/shm/PostgreSQL.*: a killed
    # server's segments go with its data directory instead of staying in memory.
    "dynamic_shared_memory_type": "mmap",
    "max_connections": "200",
    # Standbys report their positions often and re-connect quickly after a repoint.
    "wal_receiver_status_interval": "1s",
    "wal_retrieve_retry_interval": "100ms",
    "logging_collector": "off",
    "log_line_prefix": "'%m [%p] %q%u@%d %a: '",
    "log_checkpoints": "off",
}


def find_postgresql(bindir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding ``postgres``, ``initdb`` and ``pg_basebackup``.

    :param bindir: an explicit directory (else ``$RWSPLIT_PG_BINDIR``, the newest
        ``/usr/lib/postgresql/*/bin``, ``pg_config --bindir``, then ``PATH``).
    :raises ServerBinaryNotFoundError: with what to install.
    """
    candidates: list[Path] = []
    explicit = bindir or os.environ.get("RWSPLIT_PG_BINDIR")
    if explicit:
        candidates.append(Path(explicit))
    else:
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        candidates.extend(versions)
        pg_config = shutil.which("pg_config")
        if pg_config:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run(
                    [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
                ).stdout.strip()
                if out:
                    candidates.append(Path(out))
        postgres = shutil.which("postgres")
        if postgres:
            candidates.append(Path(postgres).parent)
    for d in candidates:
        if all((d / tool).is_file() for tool in ("postgres", "initdb", "pg_basebackup")):
            return d
    where = f"in {explicit}" if explicit else "in /usr/lib/postgresql/*/bin or on PATH"
    raise ServerBinaryNotFoundError(
        f"no PostgreSQL server (postgres, initdb, pg_basebackup) was found {where}; install "
        "one, e.g. 'apt-get install postgresql' (Debian/Ubuntu), 'brew install postgresql' "
        "(macOS), or set RWSPLIT_PG_BINDIR to the directory that holds them"
    )


@dataclass
class PgNode(NodeBase):
    """One PostgreSQL server of the sandbox."""

    name: str
    port: int
    datadir: str
    role: str  # "primary" | "standby": as started, or as promote() made it
    host: str = "127.0.0.1"
    pid: int | None = None
    password: str = field(default="", repr=False, compare=False)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of this node: ``postgresql+psycopg://rwsplit:PASSWORD@host:port/rwsplit``."""
        return f"postgresql+psycopg://{USER}:{self.password}@{self.host}:{self.port}/{DATABASE}"

    @property
    def application_name(self) -> str:
        """``name@host:port`` (``standby1@127.0.0.1:41873``): the ``application_name`` a
        standby streams with — how discovery (:func:`rwsplit.discover`) finds it from its
        upstream's ``pg_stat_replication``, and the name ``synchronous_standby_names`` lists
        (double-quoted there: it holds ``:``)."""
        return f"{self.name}@{self.address}"

    @property
    def log_path(self) -> Path:
        """The server's log (its standard error): with ``log_statement='all'`` every
        statement it ran, one ``... LOG:  statement: SQL`` line each."""
        return self.base / "postgres.log"

    def conninfo(self, **extra: str) -> str:
        """A libpq connection string for this node, as the ``rwsplit`` superuser."""
        params = {
            "host": self.host,
            "port": str(self.port),
            "user": USER,
            "password": self.password,
            "dbname": DATABASE,
            **extra,
        }
        return " ".join(f"{k}={_conninfo_quote(v)}" for k, v in params.items())

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A plain psycopg connection to this node as the superuser (autocommit)."""
        import psycopg

        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": USER,
            "password": self.password,
            "dbname": DATABASE,
            "autocommit": True,
            "connect_timeout": 5,
            **kwargs,
        }
        return psycopg.connect(**params)


def _conninfo_quote(value: str) -> str:
    if value and re.fullmatch(r"[A-Za-z0-9_.:/@+-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PgSandbox(SandboxBase[PgNode]):
    """A local PostgreSQL primary + hot standbys cluster of real server processes.

    :param standbys: number of hot standbys (default 2).
    :param base_dir: where the sandbox lives (``sandbox.json``, and the data directories when
        the server's OS user can reach it); a fresh temporary directory by default.
    :param synchronous: once every standby streams, the primary waits for one of them to
        acknowledge each commit (``synchronous_standby_names = 'ANY 1 (...)'``, each standby's
        :attr:`PgNode.application_name` double-quoted).
    :param progress: called with a short line for every step (the CLI prints them).
    :param detached: servers outlive this Python process (``rwsplit sandbox up``).
    :param keep: :meth:`stop` leaves the data directories (a detached sandbox keeps them
        unless ``stop(purge=True)``).
    :param log_statement: PostgreSQL's ``log_statement`` on every node (``none``, ``ddl``,
        ``mod``, ``all``): with ``all`` each node's :attr:`PgNode.log_path` shows every
        statement it ran, the witness of where a read went.
    :param settings: more server settings for every node (``{"wal_sender_timeout": "5s"}``);
        they win over the sandbox's own.
    :param bindir: the PostgreSQL binaries (else found as :func:`find_postgresql` does).
    :param host: the loopback address every node listens on.
    :param in_memory: put the data directories on ``/dev/shm`` (a tmpfs: copies and base
        backups several times faster than on a busy disk). By default (``None``) yes for a
        sandbox owned by this process when ``/dev/shm`` is a tmpfs with 1 GiB free, unless
        ``keep`` or ``$RWSPLIT_PG_IN_MEMORY=0``; never for a detached one (its data stays in
        its directory). Such data directories are removed by :meth:`stop`, and by the next
        sandbox's start when their owner died without stopping them.
    """

    _REPR_NAME = "PgSandbox"
    _POLL = 0.02

    def __init__(
        self,
        standbys: int = 2,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        synchronous: bool = False,
        progress: Progress | None = None,
        detached: bool = False,
        keep: bool | None = None,
        log_statement: str = "none",
        settings: Mapping[str, str] | None = None,
        bindir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        in_memory: bool | None = None,
    ) -> None:
        check_node_count(standbys, "standby", waits=synchronous, waits_option="synchronous")
        if log_statement not in _LOG_STATEMENT:
            raise SandboxError(
                f"log_statement must be one of {', '.join(_LOG_STATEMENT)}, got {log_statement!r}"
            )
        super().__init__(
            base_dir=base_dir,
            tmp_prefix="rwsplit-pg-",
            detached=detached,
            progress=progress,
            host=host,
        )
        self.standby_count = standbys
        self.synchronous = synchronous
        self.keep = detached if keep is None else keep
        self.log_statement = log_statement
        self.settings = dict(settings or {})
        self._bindir_arg = bindir
        self._bindir: Path | None = None
        self.in_memory = in_memory
        self.password = ""
        self.data_root: Path | None = None
        self._own_data_root = False
        self._user = server_user()

    # ------------------------------------------------------------------ accessors

    @property
    def bindir(self) -> Path:
        """The directory of the PostgreSQL binaries this sandbox runs (found on first use)."""
        if self._bindir is None:
            self._bindir = find_postgresql(self._bindir_arg)
        return self._bindir

    @property
    def primary(self) -> PgNode:
        """The node started as primary, or the one :meth:`promote` made primary since."""
        for n in self.nodes:
            if n.role == "primary":
                return n
        raise SandboxError("the sandbox has no primary (not started?)")

    @property
    def standbys(self) -> list[PgNode]:
        """Every other node, in the order they were started."""
        primary = self.primary
        return [n for n in self.nodes if n is not primary]

    @property
    def replicas(self) -> list[PgNode]:
        """:attr:`standbys`, by the name :class:`~rwsplit.sandbox.Sandbox` uses."""
        return self.standbys

    @property
    def standby_urls(self) -> list[str]:
        return [n.url for n in self.standbys]

    @property
    def replica_urls(self) -> list[str]:
        """:attr:`standby_urls` (the MariaDB/MySQL sandbox's name)."""
        return self.standby_urls

    @property
    def replication_user(self) -> str:
        """The role the standbys replicate as (the superuser)."""
        return USER

    @property
    def replication_password(self) -> str:
        """Its password (made for this sandbox)."""
        return self.password

    # ------------------------------------------------------------------ start

    def start(self) -> PgSandbox:
        """Create and start the primary, clone and start every standby; return once every
        standby streams (and, with ``synchronous``, acknowledges)."""
        t0 = time.monotonic()
        bindir = self.bindir
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.password = secrets.token_hex(16)
        self._prepare_data_root()
        assert self.data_root is not None
        data_root = self.data_root
        self.nodes = [
            PgNode(
                name=name,
                port=free_port(self.host),
                datadir=str(data_root / name / "data"),
                role=role,
                host=self.host,
                password=self.password,
            )
            for _, name, role in node_names(self.standby_count, "standby")
        ]
        self._bring_up(lambda: self._start_servers(bindir), t0)
        return self

    def _start_servers(self, bindir: Path) -> None:
        template = _pg_template(bindir, self._user, self.progress)
        primary = self.primary
        self.progress(f"creating the primary in {self.data_root}")
        self._make_node_dir(primary)
        run_as(
            self._user,
            ["cp", "-a", str(template), primary.datadir],
            primary.base / "copy.log",
            cwd=primary.base,
            what="copying the template data directory",
        )
        self._write_settings(Path(primary.datadir))
        self.progress(f"starting the primary on port {primary.port}")
        self._start_first_time(primary, password=_BOOTSTRAP_PASSWORD)
        self._setup_primary()
        self._write_state()
        if self.standbys:
            count = len(self.standbys)
            self.progress(
                f"cloning {count} standby{'s' * (count != 1)} (pg_basebackup) and "
                "starting streaming replication"
            )
            self._parallel(self._make_node_dir, self.standbys)
            self._parallel(lambda n: self._clone_and_start(n, self.primary), self.standbys)
            self._write_state()
            self._parallel(lambda n: self._wait_streaming(n, self.primary), self.standbys)
        if self.synchronous:
            self.progress("making commits wait for one standby (synchronous_standby_names)")
            self._make_synchronous()

    def _prepare_data_root(self) -> None:
        """Where the nodes' directories go: in the sandbox directory when the server's OS
        user can reach it, else in a directory of its own (removed by :meth:`stop`)."""
        if self._own_dir:
            self.base_dir.chmod(0o711)
        if self._use_memory():
            sweep_abandoned(SHM)
            self.data_root = owned_dir(SHM)
            self._own_data_root = True
            return
        if self._user is None or self._user.can_traverse(self.base_dir):
            self.data_root = self.base_dir
            self._own_data_root = False
            return
        root = owned_dir(Path(tempfile.gettempdir()))
        if not self._user.can_traverse(root):
            shutil.rmtree(root, ignore_errors=True)
            raise SandboxError(
                f"the {self._user.name} OS user cannot reach {self.base_dir} nor {root}: "
                "give it search (x) permission on a directory and pass it as base_dir"
            )
        self.data_root = root
        self._own_data_root = True

    def _use_memory(self) -> bool:
        if self.detached:
            return False
        if self.in_memory is not None:
            return self.in_memory
        if self.keep:
            return False  # kept data must outlive this process (the sweep would take it)
        env = os.environ.get("RWSPLIT_PG_IN_MEMORY")
        if env is not None:
            return env not in ("", "0", "false", "no")
        return tmpfs_has_room(SHM, 1 << 30)

    def _make_node_dir(self, node: PgNode) -> None:
        if node.base.exists():
            shutil.rmtree(node.base)
        node.base.mkdir(parents=True)
        # The password the node's WAL receiver connects with: in a file, not in
        # primary_conninfo, whose every change the server logs in full.
        passfile = node.base / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:{USER}:{self.password}\n")
        if self._user is not None:
            os.chown(node.base, self._user.uid, self._user.gid)
            os.chown(passfile, self._user.uid, self._user.gid)

    def _write_settings(self, datadir: Path) -> None:
        settings = {**_BASE_SETTINGS, "log_statement": f"'{self.log_statement}'"}
        settings.update({k: _setting_value(v) for k, v in self.settings.items()})
        lines = ["", "# rwsplit sandbox (later lines win)"]
        lines += [f"{k} = {v}" for k, v in settings.items()]
        with open(datadir / "postgresql.conf", "a") as f:
            f.write("\n".join(lines) + "\n")

    def _setup_primary(self) -> None:
        with contextlib.closing(self.primary.connect(password=_BOOTSTRAP_PASSWORD)) as conn:
            # The password must not reach the statement log.
            conn.execute("SET log_statement = 'none'")
            _execute_literal(conn, f"ALTER ROLE {USER} PASSWORD {{}}", self.password)

    def _clone_and_start(self, node: PgNode, source: PgNode) -> None:
        """Make *node* a hot standby of *source* (``pg_basebackup``) and start it."""
        cmd = [
            str(self.bindir / "pg_basebackup"),
            "-D",
            node.datadir,
            "--checkpoint=fast",  # else it waits for a spread checkpoint (minutes)
            "--wal-method=stream",
            "--write-recovery-conf",
            "--no-sync",
            "-d",
            # No password here: it would show in ps, and be written into primary_conninfo.
            _replication_conninfo(node, source),
        ]
        run_as(
            self._user,
            cmd,
            node.base / "pg_basebackup.log",
            cwd=node.base,
            what=f"pg_basebackup for {node.name}",
            env={"PGPASSFILE": str(node.base / "pgpass")},
        )
        self._start_first_time(node)

    def _make_synchronous(self) -> None:
        # Quoted: an application_name with ':' or '@' is not a plain identifier there.
        names = ", ".join(f'"{n.application_name}"' for n in self.standbys)
        with contextlib.closing(self.primary.connect()) as conn:
            _execute_literal(
                conn, "ALTER SYSTEM SET synchronous_standby_names = {}", f"ANY 1 ({names})"
            )
            conn.execute("SELECT pg_reload_conf()")
            want = {n.application_name for n in self.standbys}
            poll(
                lambda: (
                    want
                    <= {
                        r[0]
                        for r in conn.execute(
                            "SELECT application_name FROM pg_stat_replication "
                            "WHERE sync_state IN ('sync', 'quorum')"
                        ).fetchall()
                    }
                ),
                30.0,
                f"the standbys did not become synchronous within 30s ({names})",
            )

    # ------------------------------------------------------------------ processes

    def server_command(self, node: PgNode) -> list[str]:
        """The ``postgres`` command line of *node* (as the server's OS user runs it)."""
        return [
            str(self.bindir / "postgres"),
            "-D",
            node.datadir,
            "-p",
            str(node.port),
            "-c",
            f"listen_addresses={node.host}",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"cluster_name={node.name}",
        ]

    def _spawn(self, node: PgNode) -> None:
        cmd = self.server_command(node)
        if not self.detached:
            python = python_for(self._user)
            cmd = with_parent_death_signal(cmd, os.getpid(), python=python)
        if self._user is not None:
            cmd = self._user.command(cmd)
        # The postmaster keeps the output it is given: a file, never a pipe.
        self._popen(node, cmd, node.log_path, cwd=node.base)

    def _start_first_time(self, node: PgNode, password: str | None = None) -> None:
        """Start *node* on its port, or on another free one when something took that port
        between :func:`free_port` and the server's bind (nothing knows the port yet)."""
        for attempt in range(3):
            self._spawn(node)
            try:
                self._wait_ready(node, password=password)
                return
            except SandboxError:
                proc = self._procs.get(node.name)
                lost_port = "Address already in use" in self._log_tail(node)
                if attempt == 2 or proc is None or proc.poll() is None or not lost_port:
                    raise
                log.info("sandbox: %s lost port %d to another process", node.name, node.port)
                node.port = free_port(node.host)

    def _accepts(self, node: PgNode, password: str | None = None) -> bool:
        import psycopg

        try:
            node.connect(password=password or node.password, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def _log_tail(self, node: PgNode) -> str:
        return log_tail(node.log_path, "(no server log)")

    def _runs_server(self, pid: int, datadir: str) -> bool:
        return pid_runs_postgres(pid, datadir)

    def _children(self, pid: int) -> list[int]:
        return child_pids(pid)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send *sig* (``kill -9`` by default) to one node's postmaster, by pid.

        After a signal that ends it (``SIGKILL``, ``SIGTERM``, ``SIGINT``, ``SIGQUIT``,
        ``SIGABRT``) this returns once the postmaster and its children are gone, so the node
        can be started again at once; any other signal is sent and this returns at once.
        PostgreSQL reads them as: ``SIGTERM`` a smart shutdown (it waits for every session to
        end), ``SIGINT`` a fast one (what :meth:`stop_node` sends), ``SIGQUIT`` an immediate
        one (crash recovery at the next start), ``SIGKILL`` a crash.
        """
        self._kill(name, sig)

    def pids(self, name: str) -> list[int]:
        """The pids of node *name*: its postmaster's first, then its children's (startup,
        WAL sender/receiver, checkpointer, one per session ...), e.g. to cap them all in one
        cgroup (a backend forked later inherits its postmaster's cgroup). Empty when the node
        does not run."""
        node = self.node(name)
        if node.pid is None or not self.is_running(node):
            return []
        return [node.pid, *child_pids(node.pid)]

    def hang(self, name: str) -> None:
        """Freeze one node's postmaster and its backends (``SIGSTOP``); :meth:`resume`."""
        node = self._running(name)
        for pid in (node.pid or 0, *child_pids(node.pid or 0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        poll(lambda: self.is_stopped(node), 10.0, f"{node.name} did not stop within 10s")

    def resume(self, name: str) -> None:
        """Let a node frozen by :meth:`hang` run again (``SIGCONT``)."""
        node = self._running(name)
        for pid in (node.pid or 0, *child_pids(node.pid or 0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        poll(lambda: not self.is_stopped(node), 10.0, f"{node.name} did not resume within 10s")

    def _running(self, name: str) -> PgNode:
        return self._running_node(name, f"start_node({name!r}) starts it")

    def stop_node(self, name: str, timeout: float = 30.0) -> None:
        """Shut one node down (fast shutdown: ``SIGINT``; ``SIGKILL`` after *timeout*)."""
        node = self.node(name)
        if node.pid is None or not self.is_running(node):
            return
        children = child_pids(node.pid)
        for pid in (node.pid, *children):  # a hung server acts on the signal once resumed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.kill(node.pid, signal.SIGINT)
        if not self._wait_exit(node, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
            self._wait_exit(node, 10)
        wait_pids_gone(children, 10)

    def start_node(self, name: str, timeout: float = 60.0) -> PgNode:
        """Start a stopped node again on the same port and data directory; return once it
        accepts connections."""
        return self._start_stopped(name, timeout)

    def restart(self, name: str) -> PgNode:
        """:meth:`stop_node` then :meth:`start_node`."""
        self.stop_node(name)
        return self.start_node(name)

    def stop(self, *, purge: bool = False) -> None:
        """Stop every server this sandbox started and clean up.

        The data directories are removed unless ``keep`` (a detached sandbox keeps them
        unless *purge*).
        """
        with self._lock:
            self._stop_servers(lambda n: self.stop_node(n.name))
            if any(self.is_running(n) for n in self.nodes):
                return
            if self.keep and not purge:
                return
            for node in self.nodes:
                shutil.rmtree(node.base, ignore_errors=True)
            if self._own_data_root and self.data_root is not None:
                shutil.rmtree(self.data_root, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.base_dir / STATE_FILE).unlink()
            if self._own_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    self.base_dir.rmdir()  # only when nothing else is left in it

    # ------------------------------------------------------------------ replication

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every running standby has replayed the primary's current WAL position."""
        with contextlib.closing(self.primary.connect()) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        lsn = row[0]
        deadline = time.monotonic() + timeout
        for node in self.standbys:
            if not self.is_running(node) or self.is_stopped(node):
                continue
            with contextlib.closing(node.connect()) as conn:
                if not _fetch1(conn, "SELECT pg_is_in_recovery()"):
                    continue  # a former primary still running: it replays nothing
                poll(
                    functools.partial(_replayed, conn, lsn),
                    max(0.0, deadline - time.monotonic()),
                    f"{node.name} did not replay up to {lsn} within {timeout:.0f}s",
                )

    def pause_replay(self, name: str) -> None:
        """Stop *name* applying WAL (``pg_wal_replay_pause()``); it still receives it."""
        with contextlib.closing(self.node(name).connect()) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self, name: str) -> None:
        """Let *name* apply WAL again (``pg_wal_replay_resume()``)."""
        with contextlib.closing(self.node(name).connect()) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    def promote(self, name: str, timeout: float = 60.0) -> PgNode:
        """Promote standby *name* as an operator would (``pg_promote()``); return once it is
        out of recovery. The sandbox takes it for the primary from now on; the former
        primary, if it still runs, is left as it is (stop it: it would be a split brain)."""
        node = self.node(name)
        with contextlib.closing(node.connect()) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and row[0]:
                conn.execute("SELECT pg_promote(true, %s)", (int(timeout),))
            poll(
                lambda: not _fetch1(conn, "SELECT pg_is_in_recovery()"),
                timeout,
                f"{node.name} did not leave recovery within {timeout:.0f}s",
            )
        for n in self.nodes:
            n.role = "primary" if n is node else "standby"
        self._write_state()
        return node

    def refresh_roles(self) -> PgNode:
        """Ask every running node whether it is in recovery and record its role (after a
        promotion this sandbox did not make: rwsplit's own failover, a test's SQL); return
        the primary. Stopped and hung nodes keep the role they had.

        :raises SandboxError: when more than one node is out of recovery (a split brain;
            the roles are recorded all the same).
        """
        answers: dict[str, bool] = {}
        for n in self.nodes:
            if self.is_running(n) and not self.is_stopped(n):
                with contextlib.closing(n.connect()) as conn:
                    answers[n.name] = bool(_fetch1(conn, "SELECT pg_is_in_recovery()"))
        primaries = [name for name, in_recovery in answers.items() if not in_recovery]
        if primaries:
            for n in self.nodes:
                if n.name in answers:
                    n.role = "standby" if answers[n.name] else "primary"
                elif n.role == "primary":
                    n.role = "standby"  # a stopped former primary: rebuild() it
        self._write_state()
        if len(primaries) > 1:
            raise SandboxError(
                f"{' and '.join(primaries)} are all out of recovery (a split brain): stop or "
                "rebuild() the ones that must not be the primary"
            )
        return self.primary

    def repoint(self, name: str, to_name: str, timeout: float = 30.0) -> None:
        """Make standby *name* stream from *to_name* (``primary_conninfo`` by ``ALTER SYSTEM``
        and a reload); return once it streams from it."""
        node, source = self.node(name), self.node(to_name)
        with contextlib.closing(node.connect()) as conn:
            if not _fetch1(conn, "SELECT pg_is_in_recovery()"):
                raise SandboxError(
                    f"{node.name} is not a standby (it is out of recovery): it cannot follow "
                    f"{source.name} without pg_rewind or a new base backup"
                )
            conninfo = _replication_conninfo(node, source)
            if _fetch1(conn, "SHOW primary_conninfo") == conninfo:
                self._wait_streaming(node, source, timeout)
                return
            # A changed primary_conninfo restarts the WAL receiver: wait for a new one, not
            # for the old one still streaming from the same place.
            receiver = _fetch1(conn, "SELECT pid FROM pg_stat_wal_receiver")
            _execute_literal(conn, "ALTER SYSTEM SET primary_conninfo = {}", conninfo)
            # PostgreSQL 13+ applies a new primary_conninfo on reload (no restart).
            conn.execute("SELECT pg_reload_conf()")
        self._wait_streaming(node, source, timeout, not_pid=receiver)

    def rebuild(self, name: str, timeout: float = 60.0) -> PgNode:
        """Make node *name* a new hot standby of the current :attr:`primary`: stop it, throw
        its data directory away, clone it again (``pg_basebackup``), start it; return once
        it streams. What an operator does with a former primary that cannot follow the new
        one (instead of ``pg_rewind``). Its server log is kept."""
        node, source = self.node(name), self.primary
        if node is source:
            raise SandboxError(f"{node.name} is the primary: promote another node first")
        self.stop_node(node.name)
        shutil.rmtree(node.datadir, ignore_errors=True)
        node.role = "standby"
        self._clone_and_start(node, source)
        self._write_state()
        self._wait_streaming(node, source, timeout)
        return node

    def _wait_streaming(
        self, node: PgNode, source: PgNode, timeout: float = 30.0, not_pid: int | None = None
    ) -> None:
        """Return once *node*'s WAL receiver (not the one with pid *not_pid*) streams from
        *source*."""
        with contextlib.closing(node.connect()) as conn:
            poll(
                lambda: (
                    conn.execute(
                        "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming' "
                        "AND sender_port = %s AND pid IS DISTINCT FROM %s",
                        (source.port, not_pid),
                    ).fetchone()
                    is not None
                ),
                timeout,
                f"{node.name} does not stream from {source.name} after {timeout:.0f}s:\n"
                f"{self._log_tail(node)}",
            )

    # ------------------------------------------------------------------ state file

    def _write_state(self) -> None:
        state = {
            "family": FAMILY,
            "owner_pid": os.getpid(),
            "detached": self.detached,
            "synchronous": self.synchronous,
            "log_statement": self.log_statement,
            "bindir": str(self.bindir),
            "host": self.host,
            "password": self.password,
            "data_root": str(self.data_root),
            "own_data_root": self._own_data_root,
            "nodes": [
                {
                    "name": n.name,
                    "port": n.port,
                    "datadir": n.datadir,
                    "role": n.role,
                    "host": n.host,
                    "pid": n.pid,
                }
                for n in self.nodes
            ],
        }
        write_state(self.base_dir, state, 0o600)

    @classmethod
    def load(cls, base_dir: str | os.PathLike[str]) -> PgSandbox:
        """Re-open a sandbox started earlier (``rwsplit sandbox up --server postgresql``)."""
        state = read_state(base_dir, "rwsplit sandbox up --server postgresql")
        if state.get("family") != FAMILY:
            raise SandboxError(f"the sandbox in {base_dir} is not a PostgreSQL sandbox")
        sb = cls(
            standbys=len(state["nodes"]) - 1,
            base_dir=base_dir,
            synchronous=state.get("synchronous", False),
            detached=True,
            log_statement=state.get("log_statement", "none"),
            bindir=state.get("bindir"),
            host=state.get("host", "127.0.0.1"),
        )
        sb.password = state["password"]
        sb.data_root = Path(state["data_root"])
        sb._own_data_root = bool(state.get("own_data_root"))
        sb.nodes = [PgNode(**n, password=sb.password) for n in state["nodes"]]
        return sb

    # ------------------------------------------------------------------ status

    def status(self) -> list[dict[str, Any]]:
        """One row per node: name, address, pid, running, hung, url, and as the server sees
        it: in_recovery, replicating (its WAL receiver streams), source (``host:port``),
        lsn (current on a primary, replayed on a standby), lag (seconds; 0 when it has
        replayed all it received). Hung nodes are not asked."""
        return self._status_rows(self._server_status)

    def _server_status(self, node: PgNode) -> dict[str, Any]:
        import psycopg

        try:
            with contextlib.closing(node.connect(connect_timeout=3)) as conn:
                r = conn.execute(_STATUS_SQL).fetchone()
        except psycopg.Error as exc:
            return {"error": str(exc).strip()}
        assert r is not None
        in_recovery, lsn, streaming, src_host, src_port, lag = r
        return {
            "in_recovery": bool(in_recovery),
            "lsn": lsn,
            "replicating": bool(streaming),
            "source": f"{src_host}:{src_port}" if src_host else None,
            "lag": None if lag is None else round(float(lag), 1),
        }


_STATUS_SQL = """
SELECT pg_is_in_recovery(),
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
             ELSE pg_current_wal_lsn() END)::text,
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'),
       (SELECT sender_host FROM pg_stat_wal_receiver),
       (SELECT sender_port FROM pg_stat_wal_receiver),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END
"""


def _replication_conninfo(node: PgNode, source: PgNode) -> str:
    """*node*'s ``primary_conninfo`` to stream from *source*: its password in *node*'s
    passfile, its :attr:`PgNode.application_name` (``name@host:port``: discovery finds it by
    that address, ``synchronous_standby_names`` names it)."""
    params = {
        "host": source.host,
        "port": str(source.port),
        "user": USER,
        "passfile": str(node.base / "pgpass"),
        "application_name": node.application_name,
    }
    return " ".join(f"{k}={_conninfo_quote(v)}" for k, v in params.items())


def _setting_value(value: str) -> str:
    """A value for ``postgresql.conf``: quoted unless a plain number, word or size."""
    if re.fullmatch(r"-?[0-9.]+[A-Za-z]*|[A-Za-z_]+", value):
        return value
    return "'" + value.replace("'", "''") + "'"


def _execute_literal(conn: psycopg.Connection[Any], template: str, value: str) -> None:
    """Run a utility statement (no bind parameters) with *value* as a quoted literal."""
    from psycopg import sql

    conn.execute(sql.SQL(template).format(sql.Literal(value)))


def _fetch1(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def _replayed(conn: psycopg.Connection[Any], lsn: str) -> bool:
    row = conn.execute(
        "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", (lsn,)
    ).fetchone()
    return bool(row and row[0])


def _pg_template(bindir: Path, user: OsUser | None, progress: Progress) -> Path:
    """A data directory initialised once per PostgreSQL binary and version, to copy.

    Kept in ``$TMPDIR/rwsplit-pg-templates-UID/`` (see ``_common.build_template``).
    """
    postgres = bindir / "postgres"
    version = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    if not version:
        raise ServerBinaryNotFoundError(f"{postgres} --version printed nothing: is it a server?")

    def build(work: Path) -> Path:
        progress(f"initialising a PostgreSQL data directory template ({version}; once)")
        work.chmod(0o711)
        pwfile = work / "pw"
        pwfile.write_text(_BOOTSTRAP_PASSWORD + "\n")
        if user is not None:
            os.chown(work, user.uid, user.gid)
            os.chown(pwfile, user.uid, user.gid)
        cmd = [
            str(bindir / "initdb"),
            "-D",
            str(work / "data"),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            # 1 MB WAL segments (not 16): smaller copies, faster base backups.
            "--wal-segsize=1",
        ]
        run_as(user, cmd, work / "initdb.log", cwd=work, what="initdb")
        # The database too, in single-user mode: no server to start and stop.
        single = [str(postgres), "--single", "-D", str(work / "data"), "postgres"]
        run_as(
            user,
            single,
            work / "single.log",
            cwd=work,
            what="creating the rwsplit database",
            stdin=f"CREATE DATABASE {DATABASE};\n".encode(),
        )
        (work / "data" / "pg_hba.conf").write_text(_PG_HBA)
        if user is not None:
            os.chown(work / "data" / "pg_hba.conf", user.uid, user.gid)
        return work / "data"

    return build_template(
        Path(tempfile.gettempdir()) / f"rwsplit-pg-templates-{os.geteuid()}",
        (str(bindir), version, _TEMPLATE_LAYOUT),
        build,
        lock=_TEMPLATE_LOCK,
        mode=0o711,  # the server's OS user builds in it
    )


_TEMPLATE_LOCK = threading.Lock()


# Passwords (scram) from anywhere: each node listens on one loopback address only.
_PG_HBA = """\
# rwsplit sandbox
host all all all scram-sha-256
host replication all all scram-sha-256
"""
