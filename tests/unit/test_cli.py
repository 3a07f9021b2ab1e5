"""The rwsplit command: help everywhere, stable exit codes."""

from __future__ import annotations

import argparse

import pytest

from rwsplit.cli import build_parser, main


def _all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=" ".join)
def test_every_command_has_help(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: rwsplit" in out


def test_top_level_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error() -> None:
    assert main(["no-such-command"]) == 2


def test_missing_command_is_a_usage_error() -> None:
    assert main([]) == 2


def test_classify_prints_target_and_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "SELECT * FROM t FOR UPDATE"]) == 0
    target, reason = capsys.readouterr().out.strip().split("\t")
    assert target == "primary"
    assert "FOR UPDATE" in reason


def test_sandbox_status_without_a_sandbox(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "status", "--dir", str(tmp_path)]) == 3


def test_sandbox_down_without_a_sandbox_is_fine(tmp_path: object) -> None:
    assert main(["sandbox", "down", "--dir", str(tmp_path)]) == 0


def test_missing_server_binary_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("rwsplit.sandbox._SEARCH_DIRS", ())
    monkeypatch.delenv("RWSPLIT_MARIADBD", raising=False)
    assert main(["sandbox", "up", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "apt-get install mariadb-server" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from rwsplit import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rwsplit {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["sandbox", "up", "--replica", "3"],  # not --replicas
        ["sandbox", "down", "--pur"],
        ["topology", "--prim", "mysql+pymysql://u@db1/a"],
        ["failover", "--replication-us", "repl", "--primary", "mysql+pymysql://u@db1/a"],
        ["classify", "--det", "SELECT 1"],
    ],
    ids=" ".join,
)
def test_options_are_never_abbreviated(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    assert main(argv) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql+pymysql//app:s3cret@db1/a", "not a valid SQLAlchemy URL"),
        ("mssql+pyodbc://app:s3cret@db1/a", "rwsplit is for MySQL/MariaDB"),  # PostgreSQL is fine
        ("sqlite:///s3cret.db", "rwsplit is for MySQL/MariaDB"),
        ("mysql+pymysql://app:s3cret@/a", "has no host"),
    ],
)
@pytest.mark.parametrize("option", ["--primary", "--replica"])
def test_a_bad_url_on_the_command_line_is_a_usage_error(
    url: str, message: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["topology", option, url]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err
    assert message in err
    assert "environment" not in err
    assert "s3cret" not in err


def test_plural() -> None:
    from rwsplit.cli import plural

    assert [plural(n, "replica") for n in (0, 1, 2)] == ["0 replicas", "1 replica", "2 replicas"]
    assert plural(1, "directory", "directories") == "1 directory"
    assert plural(3, "directory", "directories") == "3 directories"


def test_yes_no() -> None:
    from rwsplit.cli import yes_no

    assert [yes_no(v) for v in (True, False, None, 1, 0)] == ["yes", "no", "-", "yes", "no"]


def test_monitor_without_a_replication_account_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RWSPLIT_REPLICATION_USER", raising=False)
    argv = ["monitor", "--auto-failover", "--primary", "mysql+pymysql://u@db1/a"]
    assert main(argv) == 1
    assert "no replication account" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_monitor_interval_must_be_positive(value: str) -> None:
    assert main(["monitor", "--interval", value, "--primary", "mysql+pymysql://u@db1/a"]) == 2
