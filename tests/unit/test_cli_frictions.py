"""Frictions a new user met with the rwsplit command (issue 19), each pinned."""

from __future__ import annotations

import logging

import pymysql
import pytest
from sqlalchemy.engine import make_url

from rwsplit.cli import _current_role, main
from rwsplit.cli._cluster import _change_logger, _print_result
from rwsplit.config import settings_from_dict
from rwsplit.errors import ConfigurationError
from rwsplit.topology.failover import FailoverResult
from rwsplit.topology.model import Node, Role, Topology
from rwsplit.topology.probe import describe_error


@pytest.fixture(autouse=True)
def _no_cluster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RWSPLIT_PRIMARY_URL", "RWSPLIT_REPLICA_URLS", "RWSPLIT_HOST"):
        monkeypatch.delenv(var, raising=False)


def test_a_command_without_a_cluster_is_a_command_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["topology"]) == 2  # the README: 2 for a bad command line
    err = capsys.readouterr().err
    assert err.startswith("usage: rwsplit topology")
    assert "rwsplit topology: error: no cluster given" in err


def test_an_unknown_option_shows_the_subcommands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sandbox", "up", "--replica", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rwsplit sandbox up")
    assert "rwsplit sandbox up: error: unrecognized arguments: --replica 3" in err


def test_bench_help_names_the_default_clients(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    assert "(default 1,4,16; --quick: 4)" in " ".join(capsys.readouterr().out.split())


def test_decrypt_takes_the_value_as_written_in_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encrypt", "--input", "s3cret", "--password", "k"]) == 0
    encrypted = capsys.readouterr().out.strip()
    assert main(["decrypt", f"input=ENC({encrypted})", "password=k", "verbose=false"]) == 0
    assert capsys.readouterr().out.strip() == "s3cret"


def test_a_configuration_error_names_its_place_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings_from_dict(
            {"primary_url": "mysql+pymysql://u@h/db", "max_replica_lag": "abc"},
            source="app.config",
        )
    assert str(info.value).count("app.config") == 1, info.value
    assert str(info.value).startswith("bad configuration in app.config: max_replica_lag:")


def test_a_missing_privilege_is_not_an_unreachable_node() -> None:
    exc = pymysql.err.OperationalError(
        1227, "Access denied; you need (at least one of) the SUPER, SLAVE MONITOR privilege(s)"
    )
    text = describe_error(exc)
    assert "the node answered" in text and "GRANT SLAVE MONITOR" in text


def _topology(*nodes: tuple[str, Role, bool, str | None]) -> Topology:
    return Topology(
        tuple(
            Node(name, make_url(f"mysql+pymysql://u@{name}/db"), role, healthy=up, error=err)
            for name, role, up, err in nodes
        )
    )


def test_monitor_logs_changes_of_state_not_of_counters(caplog: pytest.LogCaptureFixture) -> None:
    logged: list[Topology] = []
    listener = _change_logger(logged)
    primary = ("db1:3306", Role.PRIMARY, True, None)
    with caplog.at_level(logging.INFO, logger="rwsplit.cli"):
        listener(None, _topology(primary, ("db2:3306", Role.REPLICA, True, None)))
        for failures in range(1, 6):  # a dead replica stays dead: its error text changes
            dead = ("db2:3306", Role.REPLICA, False, f"{failures} failed probes")
            listener(None, _topology(primary, dead))
        listener(None, _topology(primary, ("db2:3306", Role.REPLICA, True, None)))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("topology:")]
    assert len(lines) == 3, lines  # up, down, up again
    assert "DOWN (1 failed probes)" in lines[1]


@pytest.mark.parametrize(
    ("row", "role"),
    [
        ({"running": True, "read_only": False, "replicating": False}, "primary"),
        ({"running": True, "read_only": True, "replicating": True}, "replica"),
        ({"running": True, "read_only": True, "replicating": False}, "-"),
        ({"running": False}, "-"),
    ],
)
def test_sandbox_status_shows_the_current_role(row: dict[str, object], role: str) -> None:
    assert _current_role(row) == role


def test_failover_output_says_where_it_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    r = FailoverResult("failover", "db1:3306", "db2:3306", epoch=3)
    r.timeline["promoted"] = 0.1
    _print_result(r)
    out = capsys.readouterr().out
    assert "recorded: epoch 3 in rwsplit.failover_log on db2:3306" in out
    assert "created if missing" in out
