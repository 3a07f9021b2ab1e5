"""scripts/install-deps: what the README's test command installs first, or names and stops.

The script is run with a PATH of stubs: the machine's own tools stand in for a fresh one
where gcc and pkg-config are missing (the failure a new user met: mysqlclient would not build).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-deps"
# What the script itself runs; gcc and pkg-config are deliberately not among them.
TOOLS = ("bash", "env", "cat", "true")


def _fresh_path(tmp_path: Path, *, uid: int, sudo: bool = False) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    calls = tmp_path / "apt-calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    if sudo:
        (bin_dir / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    for stub in bin_dir.iterdir():
        if not stub.is_symlink():
            stub.chmod(0o755)
    env = {"PATH": str(bin_dir), "PYTHON": "python3", "HOME": str(tmp_path)}
    return env, calls


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_root_it_stops_naming_the_exact_command(tmp_path: Path) -> None:
    env, calls = _fresh_path(tmp_path, uid=1000)
    out = _run(env)
    assert out.returncode == 1, out
    assert "gcc" in out.stderr and "pkg-config" in out.stderr
    assert "sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install" in (
        out.stderr
    )
    assert not calls.exists(), "nothing may be installed without root"


@pytest.mark.parametrize("sudo", [False, True], ids=["root", "sudo"])
def test_as_root_or_with_sudo_it_installs_what_is_missing(tmp_path: Path, sudo: bool) -> None:
    env, calls = _fresh_path(tmp_path, uid=1000 if sudo else 0, sudo=sudo)
    out = _run(env)
    assert out.returncode == 0, out
    update, install = calls.read_text().splitlines()
    assert update == "update -qq"
    assert install.startswith("install -y -qq --no-install-recommends")
    assert {"gcc", "pkg-config"} <= set(install.split())


def test_nothing_missing_installs_nothing(tmp_path: Path) -> None:
    """On this machine (CI's) everything is there: no apt-get update on every check run."""
    if not (shutil.which("gcc") and shutil.which("pkg-config")):
        pytest.skip("this machine lacks the build tools itself")
    env = dict(os.environ)
    stub = tmp_path / "apt-get"
    stub.write_text(f"#!/bin/sh\necho called > {tmp_path / 'called'}\nexit 1\n")
    stub.chmod(0o755)
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    missing = subprocess.run(
        ["bash", str(SCRIPT), "--print"], env=env, capture_output=True, text=True, check=True
    ).stdout
    if missing:
        pytest.skip(f"this machine lacks some packages itself: {missing}")
    assert _run(env).returncode == 0
    assert not (tmp_path / "called").exists()
