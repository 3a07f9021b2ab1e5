"""A sandbox whose servers live in their own network namespaces, for partition tests.

Each server runs in a namespace of its own (``ip netns exec``), joined to a bridge in this
(the test's) namespace by a veth pair: the servers and the application reach each other only
through addresses this module assigns inside ``10.231.0.0/24``. A *partition* takes one
server's veth down: neither the application nor the other servers reach it, while its
process keeps running (and keeps its clients' half-open connections) — the network fault
that ``kill`` and ``SIGSTOP`` do not model.

Needs root (CAP_NET_ADMIN) and iproute2; :func:`available` says whether this machine has
them. Everything created is named with this run's prefix and removed by :meth:`stop`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from rwsplit.sandbox import Sandbox, SandboxNode, ServerBinaries

SUBNET = "10.231.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


def available() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2 is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"rwsprobe{uuid.uuid4().hex[:6]}"
    probe = _ip("netns", "add", name, check=False)
    if probe.returncode != 0:
        return f"ip netns add failed: {probe.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class NetnsSandbox(Sandbox):
    """A :class:`Sandbox` with every server in its own network namespace."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"rwsbr{tag}"
        self._tag = tag
        self._ns: dict[str, str] = {}
        self._veth: dict[str, str] = {}
        self._made = False

    # ------------------------------------------------------------------ network

    def _network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made = True
        _ip("addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, node in enumerate(self.nodes):
            ns = f"rws{self._tag}{i}"
            host_end, ns_end = f"rwh{self._tag}{i}", f"rwn{self._tag}{i}"
            _ip("netns", "add", ns)
            self._ns[node.name] = ns
            _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            self._veth[node.name] = host_end
            _ip("link", "set", ns_end, "netns", ns)
            _ip("link", "set", host_end, "master", self.bridge)
            _ip("link", "set", host_end, "up")
            address = f"{SUBNET}.{i + 2}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", ns_end)
            _ip("-n", ns, "link", "set", ns_end, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            node.host = address

    def start(self) -> Sandbox:
        # Nodes are made by Sandbox.start(); the network must exist before the servers
        # start, so it is built in server_command, on the first node.
        return super().start()

    def server_command(self, binaries: ServerBinaries, node: SandboxNode) -> list[str]:
        if not self._made:
            self._network()
        init = Path(node.datadir).parent / "init.sql"
        # Root over the bridge (not only from localhost); not binlogged: no GTID of its own.
        init.write_text(
            "SET sql_log_bin = 0;\n"
            "CREATE USER IF NOT EXISTS 'root'@'%';\n"
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
        )
        cmd = super().server_command(binaries, node)
        return ["ip", "netns", "exec", self._ns[node.name], *cmd, f"--init-file={init}"]

    # ------------------------------------------------------------------ faults

    def partition(self, name: str) -> None:
        """Cut node *name* off from everyone (its veth goes down); it keeps running."""
        _ip("link", "set", self._veth[name], "down")

    def heal(self, name: str) -> None:
        _ip("link", "set", self._veth[name], "up")

    def stop(self, *args: Any, **kwargs: Any) -> None:
        for name in list(self._veth):
            with contextlib.suppress(Exception):
                self.heal(name)
        try:
            super().stop(*args, **kwargs)
        finally:
            for ns in self._ns.values():
                _ip("netns", "del", ns, check=False)
            for veth in self._veth.values():
                _ip("link", "del", veth, check=False)
            if self._made:
                _ip("link", "del", self.bridge, check=False)
            self._ns.clear()
            self._veth.clear()
            self._made = False
