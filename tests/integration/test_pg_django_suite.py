"""The short form of ``benchmarks/django_suite.py --server postgresql``: two of Django's own
test apps (``manage.py test``'s runner, test databases and all), run with Django's postgresql
backend and with rwsplit.django.postgresql on one PostgreSQL sandbox; every test that passes on
Django's backend passes on ours."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

ROOT = Path(__file__).resolve().parents[2]


def test_django_own_tests_pass_on_rwsplit_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location(
        "django_suite", ROOT / "benchmarks" / "django_suite.py"
    )
    assert spec is not None and spec.loader is not None
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    out = tmp_path / "results.json"
    rc = suite.main(["--server", "postgresql", "--apps", "basic,get_or_create", "--out", str(out)])
    results = json.loads(out.read_text())
    assert rc == 0, capsys.readouterr().out[-3000:]
    passed = [t for t, s in results["rwsplit"].items() if s == "ok"]
    assert len(passed) > 100  # the apps really ran
    assert results["rwsplit"].keys() == results["django"].keys()
    # The rwsplit run read on the standbys (the statement logs counted them).
    assert "replicas: 0 SELECTs" not in capsys.readouterr().out.split("== rwsplit")[-1]
