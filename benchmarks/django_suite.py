"""Django's own test suite on rwsplit.django, side by side with Django's MySQL backend.

Run:  python benchmarks/django_suite.py [--apps basic,queries,...] [--out results.json]

Downloads the source distribution of the installed Django (``pip download --no-binary :all:``,
kept in ``~/.cache/rwsplit``), starts a sandbox cluster (primary + 2 replicas), then runs
Django's ``tests/runtests.py`` for the chosen test apps twice on it:

* **django**: ``ENGINE = "django.db.backends.mysql"`` on the primary;
* **rwsplit**: ``ENGINE = "rwsplit.django"`` with the two replicas.

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
from pathlib import Path

from rwsplit.cli.demo import node_counters
from rwsplit.sandbox import Sandbox

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


def _entry(engine: str, sb: Sandbox, name: str) -> dict[str, object]:
    entry: dict[str, object] = {
        "ENGINE": engine,
        "NAME": name,
        "USER": "root",
        "PASSWORD": "",
        "HOST": sb.primary.host,
        "PORT": sb.primary.port,
        "TEST": {"NAME": f"test_{name}", "CHARSET": "utf8mb4"},
    }
    if engine == "rwsplit.django":
        entry["REPLICAS"] = [{"HOST": r.host, "PORT": r.port} for r in sb.replicas]
        entry["RWSPLIT"] = {"causal_timeout": 1.0}
    return entry


def write_settings(folder: Path, engine: str, sb: Sandbox, label: str) -> str:
    module = f"settings_{label}"
    text = _SETTINGS.format(
        default=repr(_entry(engine, sb, f"{label}_default")),
        other=repr(_entry(engine, sb, f"{label}_other")),
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
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "rwsplit")
    parser.add_argument("--out", type=Path, help="write every test's status as JSON")
    parser.add_argument("--keep-logs", type=Path, help="keep the runners' output here")
    args = parser.parse_args(argv)
    apps = [a for a in args.apps.split(",") if a]
    tests = django_source(args.cache)
    import django

    with tempfile.TemporaryDirectory(prefix="rwsplit-django-") as tmp, Sandbox(replicas=2) as sb:
        folder = Path(tmp)
        logs = args.keep_logs or folder
        logs.mkdir(parents=True, exist_ok=True)
        runs = {}
        for label, engine in (
            ("django", "django.db.backends.mysql"),
            ("rwsplit", "rwsplit.django"),
        ):
            settings = write_settings(folder, engine, sb, label)
            print(f"== {label}: {engine} on {sb!r}", flush=True)
            before = {n.name: node_counters(n) for n in sb.replicas}
            runs[label] = run_suite(tests, settings, folder, apps, logs / f"{label}.log")
            after = {n.name: node_counters(n) for n in sb.replicas}
            results, elapsed, rc = runs[label]
            selects = sum(after[n]["Com_select"] - before[n]["Com_select"] for n in after)
            writes = sum(
                after[n]["own_binlog_writes"] - before[n]["own_binlog_writes"] for n in after
            )
            print(f"   {len(results)} tests in {elapsed:.0f}s (runner exit {rc})", flush=True)
            print(f"   replicas: {selects} SELECTs, {writes} writes in their own binlogs")
    base, ours = runs["django"][0], runs["rwsplit"][0]
    print(f"\nDjango {django.__version__}, MariaDB sandbox; passed / run (skipped)\n")
    print("| app | tests | Django's mysql backend | rwsplit.django | regressions |")
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
    print(f"\nregressions (pass on Django's backend, not on rwsplit.django): {len(regressions)}")
    for t in regressions:
        print(f"  {t}: {base[t]} -> {ours.get(t, 'missing')}")
    if fixed:
        print(f"pass on rwsplit.django only: {len(fixed)}")
        for t in fixed:
            print(f"  {t}: {base.get(t, 'missing')} -> {ours[t]}")
    if args.out:
        args.out.write_text(json.dumps({"django": base, "rwsplit": ours}, indent=1))
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
