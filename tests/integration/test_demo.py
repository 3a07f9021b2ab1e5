"""`rwsplit demo`: its table accounts for every statement, and the README shows a real run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rwsplit.cli import main

from ..fix_sandbox import require_server

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(
    r"^(?P<node>\S+)\s+(?P<role>primary|replica)\s+\|\s+(?P<reads>\d+)\s+(?P<writes>\d+)\s+"
    r"(?P<waits>\d+)\s+(?P<skipped>\d+)\s+(?P<other>\d+)\s+\|\s+(?P<com_select>\d+)\s+"
    r"(?P<own>\d+)$"
)


def _rows(text: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in text.splitlines() if (m := ROW.match(line))]


def _check(rows: list[dict[str, str]]) -> None:
    assert [r["role"] for r in rows] == ["primary", "replica", "replica"]
    primary, *replicas = ({k: int(v) for k, v in r.items() if v.isdigit()} for r in rows)
    for r in (primary, *replicas):
        assert r["com_select"] == r["reads"] + r["waits"] + r["other"], r
    assert primary["own"] == primary["writes"] > 0
    for r in replicas:
        assert r["writes"] == r["own"] == 0
        assert r["waits"] > 0 and r["reads"] > 0, r  # read-your-writes at work


def test_demo_accounts_for_every_select(capsys: pytest.CaptureFixture[str]) -> None:
    require_server()
    assert main(["demo", "--statements", "100"]) == 0
    out = capsys.readouterr().out
    assert "Com_select = reads + waits + other on every node" in out, out
    _check(_rows(out))
    header = [line for line in out.splitlines() if "|" in line][:2]
    # The README's sample is this table, from a real run: same columns, same accounting.
    readme = README.read_text()
    assert all(line in readme.splitlines() for line in header), header
    sample = readme.split("The demo prints, per node,", 1)[1].split("## ", 1)[0]
    assert "Com_select = reads + waits + other on every node" in sample
    _check(_rows(sample))
