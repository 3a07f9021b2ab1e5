"""A real local replication cluster for demos, tests and benchmarks.

:class:`Sandbox` starts one primary and *N* replicas as real ``mariadbd`` (or ``mysqld``)
processes on loopback ports, each with its own data directory, server id and binary log,
replicating with GTIDs (MariaDB ``MASTER_USE_GTID=slave_pos``, MySQL ``SOURCE_AUTO_POSITION``;
or, on MySQL with ``gtid=False``, by binary log file and position). Replicas run
``read_only=ON`` and without ``log-slave-updates`` (the classic layout), so a replica's own
binary log moves only when something writes *on* it.

The server binary is ``$RWSPLIT_SERVER_BIN`` (or its older name ``$RWSPLIT_MARIADBD``), else
``mariadbd`` / ``mysqld`` on ``PATH``; its family (MariaDB or MySQL, and the version) comes
from its ``--version``, and everything that differs by server (initialising a data directory,
options, replication SQL) is asked of that family (:mod:`rwsplit.servers`). Every server is
started with ``--no-defaults`` first, so no system ``my.cnf`` leaks in.

No orphans:

* a sandbox owned by a Python process (``Sandbox(...).start()``, the test suite, the demo)
  starts its servers with a parent-death signal, so they die with the process even after
  ``kill -9``; :meth:`Sandbox.stop` and an ``atexit`` hook stop them on a clean exit. Linux
  sends that signal when the *thread* that forked the server ends, so every server is forked
  by one long-lived thread of the process (``sandbox-spawner``): a sandbox started
  from a short-lived worker thread lives as long as the process, not as long as that thread;
* a detached sandbox (``rwsplit sandbox up``) records every pid in ``sandbox.json`` in its
  directory; ``rwsplit sandbox down`` stops exactly those processes, checking each pid still
  runs a server on that data directory before signalling it.

Example (prints e.g. ``mysql+pymysql://root@127.0.0.1:41873/rwsplit``)::

    from rwsplit.sandbox import Sandbox

    with Sandbox(replicas=2) as sb:
        print(sb.primary_url)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from ..errors import SandboxError, ServerBinaryNotFoundError
from ..servers import MariaDB, MySQL, family_for_version
from ._common import STATE_FILE as STATE_FILE  # re-exported: the CLI reads it
from ._common import (
    NodeBase,
    Progress,
    SandboxBase,
    build_template,
    check_node_count,
    log_tail,
    node_names,
    pid_alive,
    poll,
    read_state,
    wait_gone,
    with_parent_death_signal,
    write_state,
)
from ._common import free_port as free_port  # re-exported: the benchmarks use it

__all__ = ["Sandbox", "SandboxNode", "find_server_binaries"]

DATABASE = "rwsplit"
"""The database the sandbox creates on the primary (replicated to every replica)."""
REPL_USER = "repl"
REPL_PASSWORD = "repl-sandbox"

_SEARCH_DIRS = (
    "/usr/sbin",
    "/usr/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/local/mysql/bin",
    "/opt/homebrew/bin",
    "/opt/homebrew/sbin",
)


@dataclass(frozen=True)
class ServerBinaries:
    """The server and initialisation commands found on this machine."""

    server: str
    install_db: list[str]
    """Command (without datadir) that creates a fresh data directory."""
    flavor: str
    """``"mariadb"`` or ``"mysql"``."""
    version: str = ""
    """The server's ``--version`` output."""

    def family(self, *, gtid: bool = True) -> MariaDB | MySQL:
        """The server family (:mod:`rwsplit.servers`) of this binary; *gtid*: MySQL only."""
        if self.flavor == "mariadb":
            return MariaDB()
        return MySQL(self.version, gtid=gtid)


def _which(names: Sequence[str]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for d in _SEARCH_DIRS:
            candidate = Path(d) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def find_server_binaries(server: str | None = None) -> ServerBinaries:
    """Find ``mariadbd`` / ``mysqld`` and the matching data-directory initialiser.

    :param server: an explicit server binary path (else ``$RWSPLIT_SERVER_BIN``,
        ``$RWSPLIT_MARIADBD`` or ``PATH``).
    :raises ServerBinaryNotFoundError: with what to install.
    """
    server = (
        server
        or os.environ.get("RWSPLIT_SERVER_BIN")
        or os.environ.get("RWSPLIT_MARIADBD")
        or _which(["mariadbd", "mysqld"])
    )
    if not server:
        raise ServerBinaryNotFoundError(
            "no MariaDB or MySQL server binary (mariadbd / mysqld) was found on PATH or in "
            "/usr/sbin; install one, e.g. 'apt-get install mariadb-server' (Debian/Ubuntu), "
            "'brew install mariadb' (macOS), or set RWSPLIT_SERVER_BIN=/path/to/mariadbd "
            "(or a mysqld; 'bash scripts/get-mysql' fetches MySQL 9.7 into a private prefix)"
        )
    try:
        out = subprocess.run(
            [server, "--no-defaults", "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except OSError as exc:
        raise ServerBinaryNotFoundError(f"cannot run {server}: {exc}") from None
    if not out.strip():
        raise ServerBinaryNotFoundError(f"{server} --version printed nothing: is it a server?")
    if family_for_version(out).name == "mariadb":
        install = _which(["mariadb-install-db", "mysql_install_db"])
        if not install:
            raise ServerBinaryNotFoundError(
                f"found {server} but not mariadb-install-db; install the full server package "
                "('apt-get install mariadb-server')"
            )
        return ServerBinaries(server, [install, "--no-defaults"], "mariadb", out.strip())
    return ServerBinaries(
        server, [server, "--no-defaults", "--initialize-insecure"], "mysql", out.strip()
    )


@dataclass
class SandboxNode(NodeBase):
    """One server of the sandbox."""

    name: str
    port: int
    server_id: int
    datadir: str
    role: str  # "primary" | "replica" (as started; failover may change it)
    host: str = "127.0.0.1"
    pid: int | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of this node (user ``root``, no password: a local throwaway)."""
        return f"mysql+pymysql://root@{self.host}:{self.port}/{DATABASE}"

    def connect(self, database: str | None = None, **kwargs: Any) -> pymysql.Connection[Any]:
        """A plain PyMySQL admin connection to this node (autocommit)."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user="root",
            password="",
            database=database,
            autocommit=True,
            connect_timeout=5,
            **kwargs,
        )


class Sandbox(SandboxBase[SandboxNode]):
    """A local primary + replicas cluster of real server processes.

    :param replicas: number of replicas (default 2).
    :param base_dir: where data directories live; a fresh temporary directory by default
        (removed by :meth:`stop` unless ``keep=True``).
    :param log_slave_updates: replicas also write what they apply to their own binary log.
        Off by default (the classic layout, where a replica's own binlog witnesses writes made
        on it). Turn it on to test automated failover the way it should run in production: a
        replica that was behind the promoted one can then catch up from it.
    :param gtid: MySQL only: run with ``gtid_mode=ON`` (the default) or OFF, where replicas
        replicate by binary log file and position (MariaDB always has GTIDs).
    :param semi_sync: turn on lossless semi-synchronous replication: a commit on the primary
        returns only once a replica has acknowledged it (``wait_point=AFTER_SYNC``), and it
        never falls back to asynchronous replication (no timeout, also while no replica is
        connected). So an old primary whose replicas left it (it hung or was partitioned
        and was failed over) cannot acknowledge a write alone: the commit waits, and the
        application's read timeout reports it as an error, never as a success. Every node
        acknowledges as a replica; only the node started as primary waits for
        acknowledgements (a replica waiting on what it applies would stall). A promoted
        replica waits only after the family's ``semi_sync_source(True)`` (MariaDB
        ``rpl_semi_sync_master_enabled``, MySQL 8.0.26+ ``rpl_semi_sync_source_enabled``),
        and a node restarted with :meth:`restart` starts with it ``OFF``.
    :param detached: servers outlive this Python process (used by ``rwsplit sandbox up``).
    :param progress: called with a short line for every step (the CLI prints them).
    :param server_args: extra server options for every node.
    :param server_binary: the server binary (else found as :func:`find_server_binaries` does).
    """

    def __init__(
        self,
        replicas: int = 2,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        semi_sync: bool = False,
        log_slave_updates: bool = False,
        gtid: bool = True,
        detached: bool = False,
        keep: bool = False,
        progress: Progress | None = None,
        server_args: Sequence[str] = (),
        server_binary: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        check_node_count(replicas, "replica", waits=semi_sync, waits_option="semi_sync")
        super().__init__(
            base_dir=base_dir,
            tmp_prefix="rwsplit-",
            detached=detached,
            progress=progress,
            host=host,
        )
        self.replica_count = replicas
        self.semi_sync = semi_sync
        self.log_slave_updates = log_slave_updates
        self.gtid = gtid
        self.keep = keep or detached
        self.server_args = list(server_args)
        self.server_binary = server_binary
        self._binaries: ServerBinaries | None = None

    # ------------------------------------------------------------------ accessors

    @property
    def binaries(self) -> ServerBinaries:
        """The server binary this sandbox runs (found on first use)."""
        if self._binaries is None:
            self._binaries = find_server_binaries(self.server_binary)
        return self._binaries

    @property
    def family(self) -> MariaDB | MySQL:
        """The server family (:mod:`rwsplit.servers`): ask it for anything server-specific
        (replication SQL, positions, the witness of writes on a node)."""
        return self.binaries.family(gtid=self.gtid)

    @property
    def primary(self) -> SandboxNode:
        """The node started as primary."""
        return self.nodes[0]

    @property
    def replicas(self) -> list[SandboxNode]:
        """The nodes started as replicas."""
        return self.nodes[1:]

    @property
    def replica_urls(self) -> list[str]:
        return [n.url for n in self.replicas]

    @property
    def replication_user(self) -> str:
        """The account the replicas use (created on every node; for failover options)."""
        return REPL_USER

    @property
    def replication_password(self) -> str:
        """Its password (a fixed throwaway: the sandbox listens on loopback only)."""
        return REPL_PASSWORD

    # ------------------------------------------------------------------ start

    def start(self) -> Sandbox:
        """Create, start and wire up every node; return when replication is running."""
        t0 = time.monotonic()
        binaries = self.binaries
        if not self.gtid and binaries.flavor != "mysql":
            raise SandboxError(
                "gtid=False (replication by binlog file and position) is for MySQL; "
                f"{binaries.server} is {binaries.flavor}"
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.nodes = [
            SandboxNode(
                name=name,
                port=free_port(self.host),
                server_id=i + 1,
                datadir=str(self.base_dir / name / "data"),
                role=role,
                host=self.host,
            )
            for i, name, role in node_names(self.replica_count, "replica")
        ]
        self._bring_up(lambda: self._start_servers(binaries), t0)
        return self

    def _start_servers(self, binaries: ServerBinaries) -> None:
        count = len(self.nodes)
        what = "data directory" if count == 1 else "data directories"
        self.progress(f"initialising {count} {what} in {self.base_dir}")
        self._parallel(lambda n: self._install(binaries, n))
        self.progress("starting servers")
        for n in self.nodes:
            self._spawn(n)
        self._parallel(self._wait_ready)
        self._write_state()
        self.progress("configuring the primary")
        self._setup_primary()
        if self.replicas:
            count = len(self.replicas)
            self.progress(f"starting replication on {count} replica{'s' * (count != 1)}")
            self._parallel(self._setup_replica, self.replicas)
            self._parallel(self.wait_replica_running, self.replicas)
        if self.semi_sync:
            self._enable_semi_sync()

    def _install(self, binaries: ServerBinaries, node: SandboxNode) -> None:
        datadir = Path(node.datadir)
        if datadir.exists():
            shutil.rmtree(datadir)
        datadir.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = datadir.parent / "tmp"
        tmpdir.mkdir(exist_ok=True)
        if binaries.flavor == "mysql" and os.environ.get("RWSPLIT_SANDBOX_TEMPLATE") != "0":
            # mysqld --initialize costs seconds of CPU per node: copy a data directory
            # initialised once per binary instead, without its server_uuid (auto.cnf), which
            # each node then makes for itself at its first start.
            shutil.copytree(_mysql_template(binaries, self.gtid), datadir, symlinks=True)
            with contextlib.suppress(FileNotFoundError):
                (datadir / "auto.cnf").unlink()
            return
        _initialise(binaries, self.gtid, datadir, tmpdir, node.name)

    def server_command(self, binaries: ServerBinaries, node: SandboxNode) -> list[str]:
        """The full command line that starts *node* (``--no-defaults`` first)."""
        d = Path(node.datadir).parent
        cmd = [
            binaries.server,
            "--no-defaults",
            f"--datadir={node.datadir}",
            f"--port={node.port}",
            f"--bind-address={node.host}",
            f"--socket={d / 'mysqld.sock'}",
            f"--pid-file={d / 'mysqld.pid'}",
            f"--log-error={d / 'error.log'}",
            f"--tmpdir={d / 'tmp'}",
            f"--server-id={node.server_id}",
            "--log-bin=binlog",
            "--relay-log=relay",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--max-connections=300",
            # Replicas announce their real address, so discovery can find them from the primary.
            f"--report-host={node.host}",
            f"--report-port={node.port}",
            *binaries.family(gtid=self.gtid).sandbox_server_options(
                replica=node.role == "replica",
                semi_sync=self.semi_sync,
                log_replica_updates=self.log_slave_updates,
            ),
        ]
        if node.role == "replica":
            cmd.append("--read-only=ON")
        if os.geteuid() == 0:
            cmd.append("--user=root")
        return cmd + self.server_args + node.extra_args

    def _spawn(self, node: SandboxNode) -> None:
        cmd = self.server_command(self.binaries, node)
        argv = cmd if self.detached else with_parent_death_signal(cmd, os.getpid())
        self._popen(node, argv, node.base / "stdout.log")

    def _accepts(self, node: SandboxNode, password: str | None = None) -> bool:
        try:
            node.connect().close()
        except pymysql.err.OperationalError:
            return False
        return True

    def _log_tail(self, node: SandboxNode) -> str:
        return log_tail(node.base / "error.log", "(no error log)")

    def _setup_primary(self) -> None:
        with contextlib.closing(self.primary.connect()) as conn, conn.cursor() as cur:
            cur.execute(
                f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'"
            )
            cur.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPL_USER}'@'%'")
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")

    def _enable_semi_sync(self) -> None:
        """Make the primary wait for a replica's acknowledgement of every commit."""
        with contextlib.closing(self.primary.connect()) as conn, conn.cursor() as cur:
            stmt = self.family.semi_sync_source(True)
            cur.execute(stmt.sql, stmt.params or None)
        self._wait_semi_sync_clients()

    def _wait_semi_sync_clients(self, timeout: float = 30.0) -> None:
        """Return once every replica is connected as a semi-sync replica of the primary."""
        with contextlib.closing(self.primary.connect()) as conn, conn.cursor() as cur:
            deadline = time.monotonic() + timeout
            while True:
                clients = self.family.semi_sync_clients(cur)
                if clients >= len(self.replicas):
                    return
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"semi-sync replicas did not connect within {timeout:.0f}s "
                        f"({clients} of {len(self.replicas)})"
                    )
                time.sleep(0.05)

    def _setup_replica(self, node: SandboxNode) -> None:
        self.point_replica(node, self.primary)

    def point_replica(
        self, node: SandboxNode, source: SandboxNode, *, position: str | None = None
    ) -> None:
        """(Re)point *node* at *source* and start replicating.

        With GTIDs the server finds its place; without (MySQL ``gtid=False``) replication
        starts at *position* (``file:pos``), by default at the start of *source*'s oldest
        binary log (right for a fresh replica of a fresh source).
        """
        family = self.family
        if not self.gtid and position is None and isinstance(family, MySQL):
            with contextlib.closing(source.connect()) as conn, conn.cursor() as cur:
                position = family.first_position(cur)
        stmts = family.replicate_from(
            source.host, source.port, REPL_USER, REPL_PASSWORD, position=position
        )
        with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
            for stmt in stmts:
                cur.execute(stmt.sql, stmt.params or None)

    def wait_replica_running(self, node: SandboxNode, timeout: float = 30.0) -> None:
        """Wait until both replication threads of *node* run."""
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
                status = self.family.replica_status(cur)
            if status is not None and status.io_connected and status.sql_running:
                return
            time.sleep(0.05)
        if status is None:
            raise SandboxError(f"{node.name} is not a replica (no replication configured)")
        raise SandboxError(
            f"replication on {node.name} did not start within {timeout:.0f}s: "
            f"IO={status.io_running} SQL={'Yes' if status.sql_running else 'No'} "
            f"error={status.last_io_error or status.last_sql_error}"
        )

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every running replica has applied everything the primary has logged."""
        family = self.family
        with contextlib.closing(self.primary.connect()) as conn, conn.cursor() as cur:
            pos = family.position(cur)
        if not pos:
            return
        for node in self.replicas:
            if not self.is_running(node):
                continue
            with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
                if not family.wait_position(cur, pos, timeout):
                    raise SandboxError(f"{node.name} did not reach {pos} in {timeout}s")

    # ------------------------------------------------------------------ state file

    def _write_state(self) -> None:
        state = {
            "owner_pid": os.getpid(),
            "detached": self.detached,
            "semi_sync": self.semi_sync,
            "log_slave_updates": self.log_slave_updates,
            "gtid": self.gtid,
            "server": self.binaries.server,
            "nodes": [asdict(n) for n in self.nodes],
        }
        write_state(self.base_dir, state)

    @classmethod
    def load(cls, base_dir: str | os.PathLike[str]) -> Sandbox:
        """Re-open a sandbox started earlier (``rwsplit sandbox up``) from its directory."""
        state = read_state(base_dir, "rwsplit sandbox up")
        sb = cls(
            replicas=len(state["nodes"]) - 1,
            base_dir=base_dir,
            semi_sync=state.get("semi_sync", False),
            log_slave_updates=state.get("log_slave_updates", False),
            gtid=state.get("gtid", True),
            server_binary=state.get("server"),
            detached=True,
        )
        sb.nodes = [SandboxNode(**n) for n in state["nodes"]]
        return sb

    # ------------------------------------------------------------------ process control

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send *sig* (``kill -9`` by default) to one node's server process, by pid.

        After a signal that ends the server (``SIGKILL``, ``SIGTERM``, ``SIGINT``,
        ``SIGQUIT``, ``SIGABRT``) this returns once the process is gone (a stopped server is
        resumed so that it can act on it); any other signal (``SIGSTOP``, ``SIGCONT``,
        ``SIGHUP`` ...) is sent and this returns at once.
        """
        self._kill(name, sig)

    def hang(self, name: str) -> None:
        """Freeze one node (``SIGSTOP``), as a stalled disk or a long pause does.

        Its sockets stay open but nothing answers: connections and queries time out. Returns
        once the kernel reports the process stopped. :meth:`resume` undoes it; :meth:`stop`
        and :meth:`kill` work on a hung node too.
        """
        node = self._signal_own(name, signal.SIGSTOP)
        self._wait_state(node, stopped=True)

    def resume(self, name: str) -> None:
        """Let a node frozen by :meth:`hang` run again (``SIGCONT``)."""
        node = self._signal_own(name, signal.SIGCONT)
        self._wait_state(node, stopped=False)

    def _signal_own(self, name: str, sig: int) -> SandboxNode:
        node = self._running_node(name, "'restart' starts it again")
        assert node.pid is not None
        os.kill(node.pid, sig)
        return node

    def _wait_state(self, node: SandboxNode, *, stopped: bool, timeout: float = 10.0) -> None:
        poll(
            lambda: self.is_stopped(node) == stopped,
            timeout,
            f"{node.name} (pid {node.pid}) did not {'stop' if stopped else 'resume'} "
            f"within {timeout:.0f}s",
            max_delay=0.005,
        )

    def _runs_server(self, pid: int, datadir: str) -> bool:
        return _pid_runs_server(pid, datadir)

    def restart(self, name: str) -> SandboxNode:
        """Start a stopped node again on the same port and data directory."""
        return self._start_stopped(name)

    def stop(self, *, purge: bool = False) -> None:
        """Stop every server this sandbox started (SIGTERM, then SIGKILL) and clean up.

        A hung (``SIGSTOP``) server is resumed first so that it can shut down. *purge*: also
        remove the nodes' data directories (always done for a temporary directory this
        sandbox made, unless ``keep=True``).
        """
        with self._lock:
            self._stop_servers(self._stop_node)
            if self._own_dir and not self.keep and self.base_dir.exists():
                shutil.rmtree(self.base_dir, ignore_errors=True)
                return
            if any(self.is_running(n) for n in self.nodes):
                return
            with contextlib.suppress(FileNotFoundError):
                (self.base_dir / STATE_FILE).unlink()
            if purge:
                for node in self.nodes:
                    shutil.rmtree(node.base, ignore_errors=True)
                with contextlib.suppress(OSError):
                    self.base_dir.rmdir()  # only when nothing else is left in it

    def _stop_node(self, node: SandboxNode) -> None:
        proc = self._procs.get(node.name)
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a hung server acts on SIGTERM once resumed
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            return
        if node.pid is not None and _pid_runs_server(node.pid, node.datadir):
            os.kill(node.pid, signal.SIGTERM)
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGCONT)
            if not self._wait_exit(node, 20):
                os.kill(node.pid, signal.SIGKILL)
                self._wait_exit(node, 10)

    def status(self) -> list[dict[str, Any]]:
        """One row per node: name, address, pid, running, hung, and as the server sees it:
        read_only, gtid, replicating, lag (not asked of a hung node)."""
        return self._status_rows(self._server_status)

    def _server_status(self, node: SandboxNode) -> dict[str, Any]:
        try:
            family = self.family
            with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
                cur.execute("SELECT @@read_only")
                (ro,) = cur.fetchone()
                gtid = family.executed(cur)
                s = family.replica_status(cur)
        except pymysql.err.Error as exc:
            return {"error": str(exc)}
        return {
            "read_only": bool(ro),
            "gtid": gtid,
            "replicating": s is not None and s.sql_running,
            "lag": s.seconds_behind if s is not None else None,
        }


def _initialise(
    binaries: ServerBinaries, gtid: bool, datadir: Path, tmpdir: Path, name: str
) -> None:
    """Create a fresh data directory (the family's command; log in ``install.log`` beside it)."""
    # A private tmpdir: parallel initialisations must not share temporary table names.
    cmd = binaries.family(gtid=gtid).sandbox_init_command(
        binaries.server, binaries.install_db, datadir, tmpdir, as_root=os.geteuid() == 0
    )
    log_path = datadir.parent / "install.log"
    with open(log_path, "wb") as out:
        rc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, timeout=180, check=False
        ).returncode
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise SandboxError(f"initialising {name} failed ({' '.join(cmd)}):\n{tail}")


_TEMPLATE_LOCK = threading.Lock()


def _mysql_template(binaries: ServerBinaries, gtid: bool) -> Path:
    """A MySQL data directory initialised once per server binary and version, to copy.

    Kept in ``$TMPDIR/rwsplit-templates-UID/`` (see ``_common.build_template``).
    ``RWSPLIT_SANDBOX_TEMPLATE=0`` initialises every node instead.
    """

    def build(work: Path) -> Path:
        (work / "tmp").mkdir()
        _initialise(binaries, gtid, work / "data", work / "tmp", "a MySQL data directory")
        return work / "data"

    # The layout version (2: the small redo log) is part of the key: an older template is
    # never copied under options it was not initialised with.
    return build_template(
        Path(tempfile.gettempdir()) / f"rwsplit-templates-{os.geteuid()}",
        (binaries.server, binaries.version, "layout-2"),
        build,
        lock=_TEMPLATE_LOCK,
        mode=0o700,
    )


def _pid_runs_server(pid: int, datadir: str) -> bool:
    """True when *pid* is alive and is a server on *datadir* (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not sys.platform.startswith("linux") and pid_alive(pid)
    return f"--datadir={datadir}".encode() in cmdline


def _wait_gone(pid: int, datadir: str, timeout: float) -> bool:
    """Wait until *pid* no longer runs a server on *datadir*; False after *timeout*."""
    return wait_gone(pid, datadir, timeout, _pid_runs_server, Sandbox._POLL)
