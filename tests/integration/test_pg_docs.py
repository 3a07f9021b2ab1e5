"""The example of docs/postgresql.md runs as written, on a PostgreSQL sandbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rwsplit.sandbox.postgresql import PgSandbox

from ..fix_pg import require_postgresql

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "postgresql.md"


def test_the_documented_example_runs() -> None:
    code = DOC.read_text().split("```python\n", 1)[1].split("\n```", 1)[0]
    urls = re.findall(r'"(postgresql\+psycopg://[^"]+)"', code)
    assert len(urls) == 3
    require_postgresql()
    with PgSandbox(standbys=2) as sb:
        for documented, real in zip(urls, [sb.primary.url, *sb.standby_urls], strict=True):
            code = code.replace(f'"{documented}"', repr(real))
        exec(compile(code, str(DOC), "exec"), {})  # our own documentation
