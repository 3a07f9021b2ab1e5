"""The operating-system side of the PostgreSQL sandbox: the OS user the servers run as when
we are root, running its tools, the processes it started (by pid, guarded against reuse), and
where data directories go (a tmpfs, and sweeping those whose owner died)."""

from __future__ import annotations

import grp
import itertools
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SandboxError
from ._common import pid_alive, wait_pids_gone
from ._common import wait_gone as _wait_gone

__all__ = [
    "DATA_PREFIX",
    "OWNER_FILE",
    "SHM",
    "OsUser",
    "child_pids",
    "owned_dir",
    "pid_runs_postgres",
    "python_for",
    "run_as",
    "server_user",
    "start_time",
    "sweep_abandoned",
    "tmpfs_has_room",
    "wait_gone",
    "wait_pids_gone",
]

log = logging.getLogger("rwsplit.sandbox")


@dataclass(frozen=True)
class OsUser:
    """The unprivileged OS user the servers run as when this process is root."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def lookup(cls, name: str) -> OsUser:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise SandboxError(
                f"PostgreSQL refuses to run as root, and there is no OS user {name!r} to run "
                "it as; create one (e.g. 'useradd --system postgres') or set "
                "RWSPLIT_PG_USER to an existing unprivileged user"
            ) from None
        groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, pw.pw_uid, pw.pw_gid, frozenset(groups))

    def can_traverse(self, path: Path) -> bool:
        """True when this user can reach *path* (every directory on the way searchable)."""
        path = path.resolve()
        for d in (path, *path.parents):
            try:
                st = d.stat()
            except OSError:
                return False
            if st.st_uid == self.uid:
                ok = st.st_mode & stat.S_IXUSR
            elif st.st_gid in self.groups:
                ok = st.st_mode & stat.S_IXGRP
            else:
                ok = st.st_mode & stat.S_IXOTH
            if not ok:
                return False
        return True

    def can_run(self, path: str) -> bool:
        """True when this user can execute *path* (a symlink's target included)."""
        real = Path(os.path.realpath(path))
        if not self.can_traverse(real.parent):
            return False
        try:
            st = real.stat()
        except OSError:
            return False
        return bool(st.st_mode & stat.S_IXOTH)

    def command(self, cmd: Sequence[str]) -> list[str]:
        """*cmd* run as this user (``setpriv`` execs it: same pid)."""
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "--",
            *cmd,
        ]


def server_user() -> OsUser | None:
    """The OS user to run PostgreSQL as: ``None`` (this process's own) unless we are root."""
    if os.geteuid() != 0:
        return None
    return OsUser.lookup(os.environ.get("RWSPLIT_PG_USER", "postgres"))


def python_for(user: OsUser | None) -> str:
    """A Python interpreter *user* can run (for the parent-death-signal wrapper, which must
    run after the switch of user: changing the effective uid clears that signal)."""
    if user is None or user.can_run(sys.executable):
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")):
        if candidate and user.can_run(candidate):
            return candidate
    raise SandboxError(
        f"the {user.name} OS user can run no Python interpreter ({sys.executable} is out of "
        "its reach): install python3 system-wide, or use detached=True"
    )


def run_as(
    user: OsUser | None,
    cmd: list[str],
    log_path: Path,
    *,
    cwd: Path,
    what: str,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> None:
    """Run a PostgreSQL tool (as *user* when given) to completion, its output in *log_path*;
    :class:`SandboxError` with the log's tail when it fails."""
    argv = user.command(cmd) if user is not None else cmd
    with open(log_path, "wb") as out:
        try:
            rc = subprocess.run(
                argv,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                timeout=300,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise SandboxError(f"{what} failed (exit {rc}):\n{tail}")


SHM = Path("/dev/shm")
OWNER_FILE = ".rwsplit-owner"
DATA_PREFIX = "rwsplit-pg-data-"


def tmpfs_has_room(path: Path, room: int) -> bool:
    """True when *path* is a tmpfs (Linux) with at least *room* bytes free."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        st = os.statvfs(path)
    except OSError:
        return False
    is_tmpfs = any(m.split()[1:3] == [str(path), "tmpfs"] for m in mounts if m.strip())
    return is_tmpfs and st.f_bavail * st.f_frsize >= room


def start_time(pid: int) -> str:
    """*pid*'s start time (clock ticks since boot; tells a reused pid apart), ``""`` if gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat_line[stat_line.rfind(")") + 2 :].split()[19]


def owned_dir(parent: Path) -> Path:
    """A fresh directory in *parent* for the nodes' data, the server's OS user may search,
    marked with this process (pid and start time) as its owner."""
    root = Path(tempfile.mkdtemp(prefix=DATA_PREFIX, dir=parent))
    root.chmod(0o711)
    (root / OWNER_FILE).write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
    return root


def sweep_abandoned(parent: Path) -> None:
    """Remove the data directories in *parent* whose owner process died without stopping its
    sandbox (``kill -9``: its servers died with it, their data stayed). Only ours: the
    prefix, our uid, an owner file naming a process that is gone."""
    for d in parent.glob(f"{DATA_PREFIX}*"):
        try:
            if d.stat().st_uid != os.geteuid():
                continue
            pid, started = (d / OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue
        if start_time(int(pid)) == started:
            continue  # the owner still runs
        log.info("sandbox: removing %s (its owner, pid %s, is gone)", d, pid)
        shutil.rmtree(d, ignore_errors=True)


def pid_runs_postgres(pid: int, datadir: str) -> bool:
    """True when *pid* is alive and is a postmaster on *datadir* (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        # No /proc (macOS): alive is all that can be told.
        return not Path("/proc/self").exists() and pid_alive(pid)
    d = datadir.encode()
    return any(a == b"-D" and b == d for a, b in itertools.pairwise(cmdline))


def wait_gone(pid: int, datadir: str, timeout: float) -> bool:
    """Wait until *pid* no longer runs a postmaster on *datadir*; False after *timeout*."""
    return _wait_gone(pid, datadir, timeout, pid_runs_postgres, 0.02)


def child_pids(pid: int) -> list[int]:
    """The pids whose parent is *pid* (a postmaster's backends and helpers)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        fields = stat_line[stat_line.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found
