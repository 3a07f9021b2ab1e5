"""Interoperability with the real Jasypt (Debian ``libjasypt-java``) through its own CLI.

Values Jasypt's CLI encrypts decrypt in rwsplit, values rwsplit encrypts decrypt in Jasypt's
CLI, for PBEWithMD5AndDES and PBEWITHHMACSHA512ANDAES_256 (RandomIvGenerator). Each JVM
start costs ~0.3 s, so every Jasypt call a test needs runs in parallel, in one batch.

Skipped locally when Java or the jar is missing; on CI (``CI`` set) that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rwsplit.secrets import decrypt, encrypt

from rwsplit import Cluster

pytestmark = pytest.mark.integration

JAR = os.environ.get("RWSPLIT_JASYPT_JAR", "/usr/share/java/jasypt.jar")
CLI = "org.jasypt.intf.cli.JasyptPBEString{}CLI"
DES = "PBEWithMD5AndDES"
AES = "PBEWITHHMACSHA512ANDAES_256"
RANDOM_IV = "org.jasypt.iv.RandomIvGenerator"
KEY = "master-Key_42!"
PLAINTEXTS = ["s3cret", "pä55 wörd ✓", "with spaces, quotes ' and = signs/+", "x" * 40]


def require_jasypt() -> str:
    """The java binary; skip (locally) or fail (on CI) when Java or Jasypt is missing."""
    java = shutil.which("java")
    problem = None
    if java is None:
        problem = "no java on PATH (apt-get install default-jre-headless)"
    elif not Path(JAR).is_file():
        problem = f"no Jasypt jar at {JAR} (apt-get install libjasypt-java)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Jasypt interop tests, but: {problem}", pytrace=False)
        pytest.skip(problem)
    assert java is not None
    return java


def jasypt(java: str, calls: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Run Jasypt's CLI once per (``Encryption``|``Decryption``, args), in parallel; stdout."""
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def one(call: tuple[str, Sequence[str]]) -> str:
        kind, args = call
        proc = subprocess.run(
            [
                java,
                "-Dfile.encoding=UTF-8",
                "-Dsun.stdout.encoding=UTF-8",
                "-cp",
                JAR,
                CLI.format(kind),
                *args,
            ],
            capture_output=True,
            timeout=120,
            env=env,
            check=False,
        )
        err = proc.stderr.decode("utf-8", "replace")
        # Jasypt's CLI exits 0 even when it fails: its "ERROR" block on stderr says so.
        assert proc.returncode == 0 and "ERROR" not in err, f"Jasypt failed for {args}: {err}"
        return proc.stdout.decode("utf-8")

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, calls))


def jasypt_args(algorithm: str) -> list[str]:
    return [f"algorithm={AES}", f"ivGeneratorClassName={RANDOM_IV}"] if algorithm == AES else []


def test_both_directions_both_algorithms() -> None:
    java = require_jasypt()
    algorithms = [DES, AES]
    ours = {(a, p): encrypt(p, KEY, algorithm=a) for a in algorithms for p in PLAINTEXTS}
    calls: list[tuple[str, Sequence[str]]] = []
    for a in algorithms:
        for p in PLAINTEXTS:  # Jasypt encrypts ...
            calls.append(
                ("Encryption", [f"input={p}", f"password={KEY}", "verbose=false", *jasypt_args(a)])
            )
        for p in PLAINTEXTS:  # ... and decrypts what rwsplit encrypted
            calls.append(
                (
                    "Decryption",
                    [f"input={ours[a, p]}", f"password={KEY}", "verbose=false", *jasypt_args(a)],
                )
            )
    outputs = iter(jasypt(java, calls))
    for a in algorithms:
        for p in PLAINTEXTS:
            token = next(outputs).strip()
            assert decrypt(token, KEY, algorithm=a) == p, (a, p)
        for p in PLAINTEXTS:
            assert next(outputs) == p + "\n", (a, p)


def test_cli_output_layout_matches_jasypt(tmp_path: Path) -> None:
    java = require_jasypt()
    theirs = jasypt(java, [("Encryption", ["input=abc", f"password={KEY}"])])[0]
    proc = subprocess.run(
        [sys.executable, "-m", "rwsplit", "encrypt", "input=abc", f"password={KEY}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ours = proc.stdout

    def shape(text: str) -> list[str]:
        # Same lines, except what differs by design: the runtime, the (masked) argument
        # values, Jasypt's hash-ordered argument list, and the random ciphertext.
        lines = text.split("\n")
        out = []
        for line in lines:
            if line.startswith("Runtime: "):
                line = "Runtime: *"
            elif line.startswith(("input: ", "password: ")):
                line = line.split(":")[0] + ": *"
            elif line and not line.startswith("----"):
                line = "<value>"
            out.append(line)
        return out

    assert shape(ours) == shape(theirs)
    token = ours.split("----OUTPUT----------------------\n\n")[1].split("\n")[0]
    assert jasypt(
        java, [("Decryption", [f"input={token}", f"password={KEY}", "verbose=false"])]
    ) == ["abc\n"]


def test_properties_file_with_a_jasypt_value(tmp_path: Path) -> None:
    java = require_jasypt()
    token = jasypt(
        java,
        [("Encryption", ["input=db pass", f"password={KEY}", "verbose=false", *jasypt_args(AES)])],
    )[0].strip()
    (tmp_path / "db.properties").write_text(
        f"db.cloud.host=db1\ndb.cloud.username=app\ndb.cloud.password=ENC({token})\n"
        "db.cloud.encryptionAlgorithm=PBEWITHHMACSHA512ANDAES_256\n"
        "db.cloud.encryptionKeyFile=jasypt.key\n"
    )
    key = tmp_path / "jasypt.key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    with Cluster.from_properties(tmp_path / "db.properties", key="db.cloud") as cluster:
        assert cluster.write_engine().url.password == "db pass"
