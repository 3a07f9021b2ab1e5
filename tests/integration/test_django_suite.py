"""The short form of benchmarks/django_suite.py: two of Django's own test apps, run with
Django's MySQL backend and with rwsplit.django on one sandbox cluster; every test that passes
on Django's backend passes on ours. (The full set is in docs/django.md.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fix_sandbox import require_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHORT_APPS = "basic,get_or_create"


def run_short_suite(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    """benchmarks/django_suite.py on :data:`SHORT_APPS`: its exit status, every test's status
    per run (``"django"``, ``"rwsplit"``)."""
    spec = importlib.util.spec_from_file_location(
        "django_suite", ROOT / "benchmarks" / "django_suite.py"
    )
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = suite  # its dataclasses look their module up there
    spec.loader.exec_module(suite)
    out = tmp_path / "results.json"
    rc = suite.main([*argv, "--apps", SHORT_APPS, "--out", str(out)])
    results: dict[str, Any] = json.loads(out.read_text())
    passed = [t for t, s in results["rwsplit"].items() if s == "ok"]
    assert len(passed) > 100  # the apps really ran
    assert results["rwsplit"].keys() == results["django"].keys()
    return rc, results


def test_django_own_tests_pass_on_rwsplit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_server()
    rc, _ = run_short_suite(tmp_path)
    assert rc == 0, capsys.readouterr().out[-3000:]
