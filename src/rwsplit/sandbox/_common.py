"""What the MariaDB/MySQL sandbox (``rwsplit.sandbox``) and the PostgreSQL one
(``rwsplit.sandbox.postgresql``) share: forking servers that die with their owner, waiting for
processes, the state file, data-directory templates built once, and :class:`SandboxBase` — the
process control both run. Each kind supplies only its own commands and probes."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from ..errors import SandboxError

__all__ = [
    "SPAWNER",
    "STATE_FILE",
    "TERMINATING",
    "NodeBase",
    "Progress",
    "SandboxBase",
    "build_template",
    "check_node_count",
    "free_port",
    "log_tail",
    "node_names",
    "pid_alive",
    "poll",
    "proc_state",
    "read_state",
    "run_in_threads",
    "wait_gone",
    "wait_pids_gone",
    "with_parent_death_signal",
    "write_state",
]

log = logging.getLogger("rwsplit.sandbox")

Progress = Callable[[str], None]

STATE_FILE = "sandbox.json"

# Signals after which kill() waits for the server to be gone; any other (SIGSTOP, SIGCONT,
# SIGHUP ...) is sent and kill() returns at once.
TERMINATING = frozenset(
    {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGABRT}
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on *host* that the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ servers die with us

# Run in a fresh interpreter between fork and the server's exec: set the parent-death signal,
# give up if the owner is already gone, then become the server (same pid). A fresh process, so
# the owner's at-fork hooks (rwsplit's monitors, logging ...) never run in a forked copy of it.
_PDEATHSIG_EXEC = (
    "import ctypes, os, sys\n"
    "if ctypes.CDLL(None, use_errno=True).prctl(1, 9) != 0:\n"  # PR_SET_PDEATHSIG, SIGKILL
    "    sys.exit('prctl(PR_SET_PDEATHSIG) failed')\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the owner died before prctl
    "    os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"  # PATH lookup, as Popen does
)


def with_parent_death_signal(
    cmd: list[str], parent: int, *, python: str = sys.executable
) -> list[str]:
    r"""*cmd*, started so that it gets SIGKILL when the thread that forked it ends (Linux).

    No ``preexec_fn``: CPython runs the process's at-fork child hooks before a
    ``preexec_fn``, in a forked copy of a threaded process (rwsplit's monitor threads), which
    can deadlock before ``exec``. A small ``python -c`` sets the signal instead and ``exec``\ s
    the server. Unchanged where there is no ``prctl`` (not Linux). *python*: the interpreter
    that does it (one the server's OS user can run, when a root process drops privileges
    before: changing the effective uid clears the signal).
    """
    if not sys.platform.startswith("linux"):
        return cmd
    return [python, "-I", "-S", "-c", _PDEATHSIG_EXEC, str(parent), *cmd]


_Job = tuple[Callable[[], "subprocess.Popen[bytes]"], "Future[subprocess.Popen[bytes]]"]


class _Spawner:
    """Forks child processes from one daemon thread that lives as long as the process.

    Servers owned by this process carry a parent-death signal, which Linux ties to the
    forking thread; forking them all here keeps them alive while the process lives, whichever
    thread asked (a test's worker thread, a web app's request thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()

    def popen(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """Run *start* (which calls ``subprocess.Popen``) on the spawner thread."""
        if threading.current_thread() is self._thread:
            return start()
        future: Future[subprocess.Popen[bytes]] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                # First use, or a forked child (which has no copy of the thread).
                self._pid = os.getpid()
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._jobs,),
                    name="sandbox-spawner",
                    daemon=True,
                )
                self._thread.start()
            self._jobs.put((start, future))
        return future.result(timeout=120)

    @staticmethod
    def _run(jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            start, future = jobs.get()
            try:
                future.set_result(start())
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)


SPAWNER = _Spawner()


# ------------------------------------------------------------------ processes, by pid


def pid_alive(pid: int) -> bool:
    """True when a process *pid* exists (all that can be told of it without ``/proc``)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def proc_state(pid: int) -> str:
    """The process state letter from ``/proc/PID/stat`` (``T``: stopped), ``""`` if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ")".
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]


def wait_gone(
    pid: int,
    datadir: str,
    timeout: float,
    runs_server: Callable[[int, str], bool],
    interval: float,
) -> bool:
    """Wait until *pid* no longer runs a server on *datadir* (as *runs_server* tells); reap
    it when it is our child. False after *timeout*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not runs_server(pid, datadir):
            return True
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(interval)
    return False


def wait_pids_gone(pids: Iterable[int], timeout: float) -> bool:
    """Wait until none of *pids* exists (after their postmaster died: they follow it)."""
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending:
        pending = [p for p in pending if Path(f"/proc/{p}").exists() and proc_state(p) != "Z"]
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def poll(
    condition: Callable[[], bool],
    timeout: float,
    message: str,
    *,
    delay: float = 0.005,
    max_delay: float = 0.1,
) -> None:
    """Poll *condition* (short back-off) until true; ``SandboxError(message)`` after *timeout*."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SandboxError(message)
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def run_in_threads(fn: Callable[[Any], None], items: Sequence[Any]) -> None:
    """Call *fn* on every item at once, one thread each; return when all have returned."""
    threads = [threading.Thread(target=fn, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def log_tail(path: Path, missing: str) -> str:
    """The end of a server's log for an error message (*missing* when it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-1500:]
    except OSError:
        return missing


def check_node_count(count: int, kind: str, *, waits: bool, waits_option: str) -> None:
    """``SandboxError`` unless a sandbox can have *count* nodes of *kind* (``replica``,
    ``standby``) besides its primary, and one to wait for when *waits* (*waits_option*)."""
    if count < 0:
        raise SandboxError(f"{kind}s must be >= 0, got {count}")
    if waits and count == 0:
        raise SandboxError(
            f"{waits_option} needs at least one {kind}: the primary waits for one to "
            "acknowledge every commit"
        )


def node_names(others: int, other: str) -> list[tuple[int, str, str]]:
    """``(index, name, role)`` of a primary and *others* nodes of role *other* (``replica``
    or ``standby``), named ``primary``, ``replica1`` ..."""
    return [(0, "primary", "primary")] + [(i, f"{other}{i}", other) for i in range(1, others + 1)]


# ------------------------------------------------------------------ files


def read_state(base_dir: str | os.PathLike[str], up_command: str) -> dict[str, Any]:
    """The ``sandbox.json`` in *base_dir*; ``SandboxError`` naming *up_command* when absent."""
    path = Path(base_dir) / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise SandboxError(
            f"no sandbox in {base_dir} ({path} does not exist); start one with '{up_command}'"
        ) from None
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read {path}: {exc}") from None
    return state


def write_state(base_dir: Path, state: dict[str, Any], mode: int = 0o666) -> None:
    """Write ``sandbox.json`` in *base_dir*; a new file gets *mode* (less the umask)."""
    fd = os.open(base_dir / STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(state, indent=2))


def build_template(
    root: Path,
    key_parts: Sequence[str],
    build: Callable[[Path], Path],
    *,
    lock: threading.Lock,
    mode: int,
) -> Path:
    """A data directory built once per *key_parts* (binary, version, layout) in *root*, to copy.

    Built under a file lock (other processes may start sandboxes at the same time) and
    *lock* (other threads of this one): ``build(work)`` makes it in a scratch directory and
    returns its path there, which is then renamed into place. *root* gets *mode*.
    """
    key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:16]
    final, done = root / key, root / f"{key}.done"
    if done.exists() and final.is_dir():
        return final
    root.mkdir(mode=mode, parents=True, exist_ok=True)
    root.chmod(mode)
    with lock, open(root / f"{key}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if done.exists() and final.is_dir():
            return final
        work = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            built = build(work)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(built, final)
            done.touch()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


# ------------------------------------------------------------------ the sandbox


class NodeBase:
    """What every sandbox node (``SandboxNode``, ``PgNode``: dataclasses) has, whatever its
    server."""

    name: str
    port: int
    datadir: str
    host: str
    pid: int | None

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def address(self) -> str:
        """``host:port`` (the rwsplit node name)."""
        return f"{self.host}:{self.port}"

    @property
    def base(self) -> Path:
        """The node's directory: its data directory and its logs."""
        return Path(self.datadir).parent


NodeT = TypeVar("NodeT", bound=NodeBase)
_S = TypeVar("_S", bound="SandboxBase[Any]")


class SandboxBase(Generic[NodeT]):
    """Process control of a sandbox's servers, whatever they are.

    A kind of sandbox supplies its nodes and how to start and probe one server: ``start``,
    ``stop``, ``_spawn`` (by ``_popen``), ``_accepts``, ``_runs_server``, ``_log_tail``,
    ``_write_state`` and ``primary``; ``_children`` when a server has child processes.
    """

    _REPR_NAME = "Sandbox"
    _POLL = 0.05
    """Seconds between two checks that a server accepts connections, or is gone."""

    def __init__(
        self,
        *,
        base_dir: str | os.PathLike[str] | None,
        tmp_prefix: str,
        detached: bool,
        progress: Progress | None,
        host: str,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix=tmp_prefix))
        self.detached = detached
        self.progress: Progress = progress or (lambda msg: log.info("%s", msg))
        self.host = host
        self.nodes: list[NodeT] = []
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._atexit_registered = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ each kind's own

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self, *, purge: bool = False) -> None:
        raise NotImplementedError

    @property
    def primary(self) -> NodeT:
        raise NotImplementedError

    def _spawn(self, node: NodeT) -> None:
        raise NotImplementedError

    def _accepts(self, node: NodeT, password: str | None = None) -> bool:
        """True when *node* accepts a connection now."""
        raise NotImplementedError

    def _runs_server(self, pid: int, datadir: str) -> bool:
        """True when *pid* is alive and is a server on *datadir* (guards against pid reuse)."""
        raise NotImplementedError

    def _log_tail(self, node: NodeT) -> str:
        raise NotImplementedError

    def _write_state(self) -> None:
        raise NotImplementedError

    def _children(self, pid: int) -> list[int]:
        """The child processes of server *pid* (that must be gone too after a kill)."""
        return []

    # ------------------------------------------------------------------ accessors

    @property
    def primary_url(self) -> str:
        return self.primary.url

    def node(self, name: str) -> NodeT:
        """The node called *name* (``primary``, ``replica1``, ``standby1`` ...) or with
        address *name*."""
        for n in self.nodes:
            if name in (n.name, n.address):
                return n
        raise SandboxError(
            f"no sandbox node called {name!r}; nodes: " + ", ".join(n.name for n in self.nodes)
        )

    # ------------------------------------------------------------------ start

    def _bring_up(self, steps: Callable[[], None], t0: float) -> None:
        """Run *steps* (start and wire up the nodes); stop everything if they fail."""
        if not self.detached and not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            steps()
        except BaseException:
            self.stop()
            raise
        self.progress(f"sandbox up in {time.monotonic() - t0:.1f}s")

    def _parallel(self, fn: Callable[[NodeT], None], nodes: Sequence[NodeT] | None = None) -> None:
        """*fn* on every node (of *nodes*, else all) at once; raise the first error."""
        errors: list[BaseException] = []

        def run(n: NodeT) -> None:
            try:
                fn(n)
            except BaseException as exc:  # collected and re-raised below
                errors.append(exc)

        run_in_threads(run, self.nodes if nodes is None else nodes)
        if errors:
            raise errors[0]

    def _popen(self, node: NodeT, argv: list[str], output: Path, cwd: Path | None = None) -> None:
        """Start *node*'s server (*argv*, output appended to *output*) and record its pid."""
        out = open(output, "ab")  # noqa: SIM115
        detached = self.detached

        def start() -> subprocess.Popen[bytes]:
            # No preexec_fn (see with_parent_death_signal): no Python code runs in the child.
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )

        try:
            proc = start() if detached else SPAWNER.popen(start)
        finally:
            out.close()
        self._procs[node.name] = proc
        node.pid = proc.pid

    def _wait_ready(self, node: NodeT, timeout: float = 60.0, password: str | None = None) -> None:
        """Return once *node* accepts connections; ``SandboxError`` with its log's tail when
        its server exits, or after *timeout*."""
        deadline = time.monotonic() + timeout
        proc = self._procs.get(node.name)
        while True:
            if proc is not None and proc.poll() is not None:
                raise SandboxError(
                    f"{node.name} exited with code {proc.returncode} during start-up:\n"
                    f"{self._log_tail(node)}"
                )
            if self._accepts(node, password):
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{node.name} did not accept connections on port {node.port} within "
                    f"{timeout:.0f}s:\n{self._log_tail(node)}"
                )
            time.sleep(self._POLL)

    def _start_stopped(self, name: str, timeout: float = 60.0) -> NodeT:
        """Start node *name* again on its port and data directory (nothing if it runs)."""
        node = self.node(name)
        if self.is_running(node):
            return node
        self._spawn(node)
        self._wait_ready(node, timeout)
        self._write_state()
        return node

    # ------------------------------------------------------------------ process control

    def is_running(self, node: NodeT) -> bool:
        """True when *node*'s server process (the one this sandbox started) is alive."""
        proc = self._procs.get(node.name)
        if proc is not None:
            return proc.poll() is None
        return node.pid is not None and self._runs_server(node.pid, node.datadir)

    def is_stopped(self, node: NodeT) -> bool:
        """True when *node*'s server is alive but frozen (``SIGSTOP``, ``hang``)."""
        return node.pid is not None and self.is_running(node) and proc_state(node.pid) == "T"

    def _running_node(self, name: str, hint: str) -> NodeT:
        """Node *name*, which must be running (else ``SandboxError`` ending with *hint*)."""
        node = self.node(name)
        if node.pid is None or not self.is_running(node):
            raise SandboxError(f"{node.name} is not running; {hint}")
        return node

    def _kill(self, name: str, sig: int) -> None:
        """Send *sig* to node *name*'s server; after one of ``TERMINATING`` return once it
        (and its children) are gone."""
        node = self.node(name)
        if node.pid is None or not self.is_running(node):
            return
        children = self._children(node.pid)
        os.kill(node.pid, sig)
        if sig not in TERMINATING:
            return
        if sig != signal.SIGKILL:
            # A SIGSTOPped process keeps other signals pending until it runs again.
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGCONT)
        if not self._wait_exit(node, 60) or not wait_pids_gone(children, 30):
            raise SandboxError(
                f"{node.name} (pid {node.pid}) still runs 60s after signal {sig}; "
                f"'kill -9 {node.pid}' stops it"
            )

    def _wait_exit(self, node: NodeT, timeout: float) -> bool:
        proc = self._procs.get(node.name)
        if proc is None:
            return node.pid is None or wait_gone(
                node.pid, node.datadir, timeout, self._runs_server, self._POLL
            )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _stop_servers(self, stop_one: Callable[[NodeT], None]) -> None:
        """*stop_one* on every node at once (nothing needs them to stop in order; a MySQL
        primary takes seconds), then forget the processes. The caller holds the lock."""
        run_in_threads(stop_one, self.nodes)
        self._procs.clear()

    # ------------------------------------------------------------------ status

    def _status_rows(self, ask: Callable[[NodeT], dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per node: name, address, pid, running, hung, url, and what *ask* (the
        server's own view) adds for a node that runs and is not hung."""
        rows = []
        for n in self.nodes:
            row: dict[str, Any] = {
                "name": n.name,
                "address": n.address,
                "pid": n.pid,
                "running": self.is_running(n),
                "hung": self.is_stopped(n),
                "url": n.url,
            }
            if row["running"] and not row["hung"]:
                row.update(ask(n))
            rows.append(row)
        return rows

    def __enter__(self: _S) -> _S:
        if not self.nodes:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        nodes = ", ".join(f"{n.name}@{n.port}" for n in self.nodes)
        return f"<{self._REPR_NAME} {self.base_dir} {nodes}>"
