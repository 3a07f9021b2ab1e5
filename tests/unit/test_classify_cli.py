"""``rwsplit classify``: target, reason, details, one line per statement."""

from __future__ import annotations

import io

import pytest

from rwsplit.cli import main


def test_details_show_flags_resource_and_the_formatted_statement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["classify", "--details", "select get_lock('job', 1) from dual"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "primary\tGET_LOCK() takes a named lock"
    assert lines[1].split() == ["flags:", "PIN"]
    assert lines[2].split() == ["resource:", "named", "lock"]
    assert "SELECT get_lock('job', 1)" in lines[3]
    assert lines[4].strip() == "FROM dual"


def test_each_classifies_every_statement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--each", "SET @x = 1; SELECT 'a;b'; DELETE FROM t"]) == 0
    targets = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert targets == ["all", "replica", "primary"]


def test_without_each_a_multi_statement_text_is_one_primary_statement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["classify", "SELECT 1; SELECT 2"]) == 0
    assert capsys.readouterr().out == "primary\tseveral statements in one text\n"


def test_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("-- maxscale route to master\nSELECT 1\n"))
    assert main(["classify", "-"]) == 0
    assert capsys.readouterr().out.startswith("primary\trouting hint: primary")
