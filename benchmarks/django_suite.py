"""Django's own test suite on rwsplit's Django backend, side by side with Django's own.

Run:  python benchmarks/django_suite.py [--server mariadb|postgresql] [--apps basic,...]
      [--out results.json]

Downloads the source distribution of the installed Django (``pip download --no-binary :all:``,
kept in ``~/.cache/rwsplit``), starts a sandbox cluster (primary + 2 replicas: MariaDB, or
PostgreSQL with ``--server postgresql``), then runs Django's ``tests/runtests.py`` for the
chosen test apps twice on it:

* **django**: Django's backend (``django.db.backends.mysql`` / ``.postgresql``) on the primary;
* **rwsplit**: ``rwsplit.django`` / ``rwsplit.django.postgresql`` with the two replicas.

It prints a table per app and lists every test that passes on Django's backend but not on
rwsplit's (exit status 1 when there is one). Not part of the CI suite: the full set takes
minutes (``--apps basic`` is the short form).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rwsplit.cli.demo import node_counters
from rwsplit.sandbox import Sandbox
from rwsplit.sandbox.postgresql import USER as PG_USER
from rwsplit.sandbox.postgresql import PgSandbox

DEFAULT_APPS = (
    "basic",
    "queries",
    "transactions",
    "transaction_hooks",
    "select_for_update",
    "raw_query",
    "migrations",
    "bulk_create",
    "get_or_create",
    "update",
    "delete",
    "aggregation",
    "model_fields",
)

_RESULT = re.compile(
    r"^(?P<name>\w+) \((?P<where>[\w.]+)\)(?:\n.*?)?\s\.\.\.\s(?P<status>ok|FAIL|ERROR|skipped|"
    r"expected failure|unexpected success)",
    re.MULTILINE,
)

_SETTINGS = """
import os
DATABASES = {{
    "default": {default},
    "other": {other},
}}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
"""


def django_source(cache: Path) -> Path:
    """The ``tests`` folder of the installed Django's source distribution."""
    import django

    version = django.__version__
    root = cache / f"django-{version}"
    tests = root / "tests"
    if tests.is_dir():
        return tests
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:"),
            *("--no-deps", f"django=={version}", "-d", str(cache)),
        ],
        check=True,
    )
    with tarfile.open(cache / f"django-{version}.tar.gz") as tar:
        tar.extractall(cache, filter="data")
    return tests


@dataclass(frozen=True)
class Server:
    """One server family's sandbox and the two engines compared on it."""

    name: str
    django_engine: str
    rwsplit_engine: str
    user: str
    test_options: dict[str, str]

    def sandbox(self) -> Any:
        if self.name == "postgresql":
            # Every statement in each node's log: the witness of where the suite's reads ran.
            return PgSandbox(standbys=2, log_statement="all")
        return Sandbox(replicas=2)

    def replica_activity(self, sb: Any) -> dict[str, int]:
        """Per replica: statements it ran (PostgreSQL: its statement log; MariaDB:
        Com_select) and writes it executed itself (always 0 on a hot standby)."""
        if self.name == "postgresql":
            return {
                "reads": sum(
                    r.log_path.read_text(errors="replace").count("LOG:  statement: SELECT")
                    for r in sb.replicas
                ),
                "writes": 0,
            }
        counters = [node_counters(r) for r in sb.replicas]
        return {
            "reads": sum(c["Com_select"] for c in counters),
            "writes": sum(c["own_binlog_writes"] for c in counters),
        }


SERVERS = {
    "mariadb": Server(
        "mariadb", "django.db.backends.mysql", "rwsplit.django", "root", {"CHARSET": "utf8mb4"}
    ),
    "postgresql": Server(
        "postgresql",
        "django.db.backends.postgresql",
        "rwsplit.django.postgresql",
        PG_USER,
        {},
    ),
}


def _entry(server: Server, engine: str, sb: Any, name: str) -> dict[str, object]:
    entry: dict[str, object] = {
        "ENGINE": engine,
        "NAME": name,
        "USER": server.user,
        "PASSWORD": getattr(sb.primary, "password", ""),
        "HOST": sb.primary.host,
        "PORT": sb.primary.port,
        "TEST": {"NAME": f"test_{name}", **server.test_options},
    }
    if engine == server.rwsplit_engine:
        entry["REPLICAS"] = [{"HOST": r.host, "PORT": r.port} for r in sb.replicas]
        entry["RWSPLIT"] = {"causal_timeout": 1.0}
    return entry


def write_settings(folder: Path, server: Server, engine: str, sb: Any, label: str) -> str:
    module = f"settings_{label}"
    text = _SETTINGS.format(
        default=repr(_entry(server, engine, sb, f"{label}_default")),
        other=repr(_entry(server, engine, sb, f"{label}_other")),
    )
    (folder / f"{module}.py").write_text(text)
    return module


def run_suite(
    tests: Path, settings: str, folder: Path, apps: list[str], log: Path
) -> tuple[dict[str, str], float, int]:
    """Run the apps; every test's status by id, the wall time, the runner's exit status."""
    env = dict(os.environ)
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(src), env.get("PYTHONPATH", "")])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            [
                *(sys.executable, "runtests.py", f"--settings={settings}", "--parallel=1"),
                *("-v", "2", "--noinput", *apps),
            ],
            cwd=tests,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=3600,
            check=False,
        )
    elapsed = time.monotonic() - t0
    text = log.read_text(errors="replace")
    results = {m["where"]: m["status"] for m in _RESULT.finditer(text)}
    return results, elapsed, proc.returncode


def _passed(status: str) -> bool:
    return status in ("ok", "expected failure")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", default=",".join(DEFAULT_APPS))
    parser.add_argument("--server", choices=sorted(SERVERS), default="mariadb")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "rwsplit")
    parser.add_argument("--out", type=Path, help="write every test's status as JSON")
    parser.add_argument("--keep-logs", type=Path, help="keep the runners' output here")
    args = parser.parse_args(argv)
    apps = [a for a in args.apps.split(",") if a]
    server = SERVERS[args.server]
    tests = django_source(args.cache)
    import django

    with tempfile.TemporaryDirectory(prefix="rwsplit-django-") as tmp, server.sandbox() as sb:
        folder = Path(tmp)
        logs = args.keep_logs or folder
        logs.mkdir(parents=True, exist_ok=True)
        runs = {}
        for label, engine in (("django", server.django_engine), ("rwsplit", server.rwsplit_engine)):
            settings = write_settings(folder, server, engine, sb, label)
            print(f"== {label}: {engine} on {sb!r}", flush=True)
            before = server.replica_activity(sb)
            runs[label] = run_suite(tests, settings, folder, apps, logs / f"{label}.log")
            after = server.replica_activity(sb)
            results, elapsed, rc = runs[label]
            selects = after["reads"] - before["reads"]
            writes = after["writes"] - before["writes"]
            print(f"   {len(results)} tests in {elapsed:.0f}s (runner exit {rc})", flush=True)
            print(f"   replicas: {selects} SELECTs, {writes} writes executed on them")
    base, ours = runs["django"][0], runs["rwsplit"][0]
    print(f"\nDjango {django.__version__}, {server.name} sandbox; passed / run (skipped)\n")
    print(f"| app | tests | {server.django_engine} | {server.rwsplit_engine} | regressions |")
    print("| --- | ---: | ---: | ---: | ---: |")
    regressions = sorted(t for t, s in base.items() if _passed(s) and not _passed(ours.get(t, "")))
    for app in apps:
        ids = [t for t in base if t.split(".", 1)[0] == app]
        b = [base[t] for t in ids]
        o = [ours.get(t, "missing") for t in ids]
        reg = sum(1 for t in ids if t in set(regressions))
        print(
            f"| {app} | {len(ids)} | {sum(map(_passed, b))} ({b.count('skipped')}) "
            f"| {sum(map(_passed, o))} ({o.count('skipped')}) | {reg} |"
        )
    fixed = sorted(t for t, s in ours.items() if _passed(s) and not _passed(base.get(t, "")))
    print(f"\nregressions (pass on Django's backend, not on rwsplit's): {len(regressions)}")
    for t in regressions:
        print(f"  {t}: {base[t]} -> {ours.get(t, 'missing')}")
    if fixed:
        print(f"pass on rwsplit's backend only: {len(fixed)}")
        for t in fixed:
            print(f"  {t}: {base.get(t, 'missing')} -> {ours[t]}")
    if args.out:
        args.out.write_text(json.dumps({"django": base, "rwsplit": ours}, indent=1))
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
