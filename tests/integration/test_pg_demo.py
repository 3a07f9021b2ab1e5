"""`rwsplit demo --server postgresql`: on a PostgreSQL sandbox it starts itself, the
servers' own pg_stat_statements account for every statement rwsplit sent."""

from __future__ import annotations

import re

import pytest

from rwsplit.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]

ROW = re.compile(
    r"^(?P<node>\S+)\s+(?P<role>primary|standby)\s+\|\s+(?P<reads>\d+)\s+(?P<writes>\d+)\s+"
    r"(?P<waits>\d+)\s+\|\s+(?P<s_reads>\d+)\s+(?P<s_writes>\d+)\s+(?P<s_waits>\d+)$"
)


def test_demo_on_postgresql_accounts_for_every_statement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--server", "postgresql", "--statements", "60"]) == 0
    out = capsys.readouterr().out
    assert "pg_stat_statements = what rwsplit sent, on every node" in out, out
    rows = [m.groupdict() for line in out.splitlines() if (m := ROW.match(line))]
    assert [r["role"] for r in rows] == ["primary", "standby", "standby"]
    primary, *standbys = ({k: int(v) for k, v in r.items() if v.isdigit()} for r in rows)
    assert primary["writes"] == primary["s_writes"] > 0
    for s in standbys:
        assert s["writes"] == s["s_writes"] == 0
        assert s["reads"] == s["s_reads"] > 0  # the GETs after each POST read standbys
    assert sum(s["waits"] for s in standbys) > 0  # read-your-writes at work
