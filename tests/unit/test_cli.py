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
