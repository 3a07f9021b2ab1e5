"""The short form of ``benchmarks/django_suite.py --server postgresql``: two of Django's own
test apps (``manage.py test``'s runner, test databases and all), run with Django's postgresql
backend and with rwsplit.django.postgresql on one PostgreSQL sandbox; every test that passes on
Django's backend passes on ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fix_pg import require_postgresql
from tests.integration.test_django_suite import run_short_suite

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]


def test_django_own_tests_pass_on_rwsplit_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_postgresql()  # skipped locally, a failure on CI
    rc, _ = run_short_suite(tmp_path, "--server", "postgresql")
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    # The rwsplit run read on the standbys (their statement logs counted the SELECTs).
    assert "replicas: 0 SELECTs" not in out.split("== rwsplit")[-1], out[-3000:]
