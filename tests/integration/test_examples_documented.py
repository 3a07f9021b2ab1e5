"""Every example's documented commands, run as written (issue: examples that did not run).

The shell lines are read from the example itself (the ``::`` block of its docstring, or the
```` ```bash ```` block of its README) and run by bash, in order, from the repository root:
``rwsplit sandbox up`` (in a temporary ``$TMPDIR``, so its default directory is this test's),
the exports with the ports it printed filled in for the placeholders (``PORT``, ``PORT2``,
``<primary port>``, ``<p1>``, ``<p2>``), the app's own commands, the server line in the
background (on a free port instead of 8000), the ``curl`` line, and ``rwsplit sandbox down``.
``pip install`` lines are not run (this environment is the dev install); what they name is
checked against what the other lines need.
"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rwsplit.sandbox import Sandbox, _pid_runs_server

from ..fix_sandbox import require_server
from .examples import http_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SERVERS = ("gunicorn", "uvicorn")


def documented_commands(path: Path) -> list[str]:
    """The shell lines an example documents, comments dropped."""
    text = path.read_text()
    if path.suffix == ".md":
        block = text.split("```bash\n", 1)[1].split("\n```", 1)[0].splitlines()
    else:
        lines = text.split('"""', 2)[1].splitlines()
        start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("::"))
        block = []
        for line in lines[start + 1 :]:
            if line.strip() and not line.startswith("    "):
                break
            block.append(line)
    commands = [re.split(r"\s{2,}# ", line.strip(), maxsplit=1)[0] for line in block]
    return [c for c in commands if c]


def _bash(script: str, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n--- exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.parametrize(
    "doc",
    [
        "django_project/README.md",
        "fastapi_app/app.py",
        "fastapi_app/async_app.py",
        "flask_app/app.py",
    ],
)
def test_documented_commands_run_as_written(doc: str, tmp_path: Path) -> None:
    require_server()
    commands = documented_commands(EXAMPLES / doc)
    pip = [c for c in commands if c.startswith("pip install")]
    commands = [c for c in commands if not c.startswith("pip install")]
    server_at = next(i for i, c in enumerate(commands) if c.startswith(SERVERS))
    server = commands[server_at]
    # What a user must install is named: the server the example is run with.
    assert pip and server.split()[0] in pip[0], (pip, server)
    cd, up = commands[0], commands[1]
    assert cd.startswith("cd examples/") and up.startswith("rwsplit sandbox up"), commands
    assert commands[-1] == "rwsplit sandbox down", commands

    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RWSPLIT_", "SHOP_"))}
    env.update(
        TMPDIR=str(tmp_path),  # `rwsplit sandbox up`'s default directory: this test's own
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        PYTHONPATH=str(ROOT / "src"),
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = _bash(f"{cd}\n{up}", env)
    urls = dict(
        line.split()[:2] for line in out.splitlines() if line.startswith(("primary", "rep"))
    )
    ports = {
        name: url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        for name, url in urls.items()
        if name != "replication"
    }
    sandbox_dir = tmp_path / f"rwsplit-sandbox-{getpass.getuser()}"  # `sandbox up`'s default
    nodes = Sandbox.load(sandbox_dir).nodes

    def fill(line: str, http_port: int = 8000) -> str:
        for placeholder, value in (
            ("<primary port>", ports["primary"]),
            ("<p1>", ports["replica1"]),
            ("<p2>", ports["replica2"]),
            ("PORT2", ports["replica1"]),
            ("PORT", ports["primary"]),
            ("127.0.0.1:8000", f"127.0.0.1:{http_port}"),
        ):
            line = line.replace(placeholder, value)
        return line

    try:
        # Everything up to the server line, in one shell (cd and exports carry on); its
        # environment and directory are what the server line runs with.
        setup = [fill(c) for c in commands[2:server_at]]
        state = tmp_path / "state"
        _bash("\n".join([cd, *setup, f"env -0 > {state}.env", f"pwd > {state}.cwd"]), env)
        run_env = dict(
            item.split("=", 1) for item in Path(f"{state}.env").read_text().split("\0") if item
        )
        cwd = Path(f"{state}.cwd").read_text().strip()

        def command(port: int) -> list[str]:
            line = fill(server, port)
            if "-b " not in line:  # gunicorn / uvicorn default to 127.0.0.1:8000
                line += (
                    f" -b 127.0.0.1:{port}" if line.startswith("gunicorn") else f" --port {port}"
                )
            return ["bash", "-c", f"cd {cwd} && exec {line}"]

        ready = "/orders/count" if "django" in doc else "/whoami"
        with http_server(command, run_env, tmp_path / "server.log", ready=ready) as base:
            http_port = int(base.rsplit(":", 1)[1])
            for line in commands[server_at + 1 : -1]:
                shown = _bash(f"cd {cwd}\n{fill(line, http_port)}", run_env, timeout=60)
                status = int(shown.split()[1])
                assert status in (302, 303), shown  # the POST's redirect, not a 500
                location = re.search(r"(?im)^location: (\S+)", shown)
                cookies = re.findall(r"(?im)^set-cookie: ([^;]+)", shown)
                assert location and cookies, shown
                got = httpx.get(
                    httpx.URL(base).join(location.group(1)),
                    headers={"Cookie": "; ".join(cookies)},
                    timeout=10,
                )
                assert got.status_code == 200, got.text  # the redirect reads its own write
    finally:
        down = subprocess.run(
            ["bash", "-c", f"{cd} && {commands[-1]}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(n.pid and _pid_runs_server(n.pid, n.datadir) for n in nodes)
