"""Load the shipped examples (examples/<name>/app.py) as they are; serve one under a real
HTTP server; freeze replicas' apply."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from rwsplit.sandbox import free_port

from .util import sql_threads_stopped

__all__ = ["EXAMPLES", "http_server", "load_example", "sql_threads_stopped"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, module: str = "app") -> ModuleType:
    """Import examples/<name>/<module>.py (once per test run)."""
    module_name = f"rwsplit_example_{name}_{module}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


@contextlib.contextmanager
def http_server(
    command: Callable[[int], list[str]],
    env: Mapping[str, str],
    log_path: Path,
    *,
    ready: str = "/whoami",
    stop: signal.Signals = signal.SIGTERM,
    name: str = "server",
) -> Iterator[str]:
    """Run ``command(port)`` (gunicorn, uvicorn ...) on a free loopback port; yield its base URL
    once ``GET ready`` answers 200; stop it with *stop* (its graceful stop), then SIGKILL its
    process group (which this helper created) if it lingers."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command(port),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited: {log_path.read_text(errors='replace')}")
            try:
                if httpx.get(f"{base}{ready}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not up in 60s: {log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
