"""The PostgreSQL sandbox's parts that need no server: quoting, settings, finding binaries,
who can reach a directory, what ``--server`` means, abandoned data directories."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rwsplit.cli._pg_sandbox import is_postgresql_server
from rwsplit.errors import SandboxError, ServerBinaryNotFoundError
from rwsplit.sandbox._pg_os import OWNER_FILE, OsUser, sweep_abandoned
from rwsplit.sandbox.postgresql import (
    PgNode,
    PgSandbox,
    _conninfo_quote,
    _replication_conninfo,
    _setting_value,
    find_postgresql,
)


def test_conninfo_values_are_quoted_only_when_needed() -> None:
    assert _conninfo_quote("127.0.0.1") == "127.0.0.1"
    assert _conninfo_quote("/tmp/x/pgpass") == "/tmp/x/pgpass"
    assert _conninfo_quote("two words") == "'two words'"
    assert _conninfo_quote("it's") == r"'it\'s'"
    assert _conninfo_quote("") == "''"


def test_the_replication_conninfo_names_a_passfile_not_the_password() -> None:
    node = PgNode("standby1", 5001, "/d/standby1/data", "standby", password="s3cret")
    source = PgNode("primary", 5000, "/d/primary/data", "primary", password="s3cret")
    conninfo = _replication_conninfo(node, source)
    assert conninfo == (
        "host=127.0.0.1 port=5000 user=rwsplit passfile=/d/standby1/pgpass "
        "application_name=standby1@127.0.0.1:5001"
    )
    assert node.application_name == "standby1@127.0.0.1:5001"
    assert "s3cret" not in conninfo + repr(node)
    assert node.url == "postgresql+psycopg://rwsplit:s3cret@127.0.0.1:5001/rwsplit"
    assert node.log_path == Path("/d/standby1/postgres.log")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("32MB", "32MB"),
        ("on", "on"),
        ("100ms", "100ms"),
        ("-1", "-1"),
        ("pg_stat_statements", "pg_stat_statements"),
        ("a, b", "'a, b'"),
        ("%m [%p] ", "'%m [%p] '"),
        ("it's", "'it''s'"),
    ],
)
def test_setting_values_for_postgresql_conf(value: str, written: str) -> None:
    assert _setting_value(value) == written


def test_bad_options_are_refused_with_what_to_do() -> None:
    with pytest.raises(SandboxError, match="at least one standby"):
        PgSandbox(standbys=0, synchronous=True, base_dir="/nonexistent")
    with pytest.raises(SandboxError, match="log_statement must be one of none, ddl, mod, all"):
        PgSandbox(log_statement="everything", base_dir="/nonexistent")
    with pytest.raises(SandboxError, match="standbys must be >= 0"):
        PgSandbox(standbys=-1, base_dir="/nonexistent")


def test_no_postgresql_binaries_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ServerBinaryNotFoundError, match="RWSPLIT_PG_BINDIR"):
        find_postgresql(tmp_path)
    for tool in ("postgres", "initdb", "pg_basebackup"):
        (tmp_path / tool).write_text("")
    assert find_postgresql(tmp_path) == tmp_path


@pytest.mark.parametrize(
    ("server", "postgresql"),
    [
        ("postgresql", True),
        ("PostgreSQL", True),
        ("pg", True),
        ("/usr/lib/postgresql/15/bin/postgres", True),
        ("/usr/sbin/mariadbd", False),
        ("mysqld", False),
        (None, False),
    ],
)
def test_what_server_asks_for_postgresql(server: str | None, postgresql: bool) -> None:
    assert is_postgresql_server(server) is postgresql


def test_who_can_traverse_a_directory() -> None:
    nobody = OsUser("nobody", 65534, 65534, frozenset({65534}))
    # Not pytest's tmp_path: its base directory is 0700 when we are root.
    with tempfile.TemporaryDirectory() as d:
        top = Path(d)
        top.chmod(0o711)
        private = top / "private"
        private.mkdir(mode=0o700)
        searchable = top / "searchable"
        searchable.mkdir()
        searchable.chmod(0o711)
        assert not nobody.can_traverse(private / "data")
        assert nobody.can_traverse(searchable)
        top.chmod(0o700)
        assert not nobody.can_traverse(searchable)
    assert nobody.command(["postgres", "-D", "x"])[-3:] == ["postgres", "-D", "x"]


def test_only_abandoned_data_directories_are_swept(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    abandoned = tmp_path / "rwsplit-pg-data-abandoned"
    mine = tmp_path / "rwsplit-pg-data-mine"
    unmarked = tmp_path / "rwsplit-pg-data-unmarked"
    other = tmp_path / "something-else"
    for d in (abandoned, mine, unmarked, other):
        d.mkdir()
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    started = stat[stat.rfind(")") + 2 :].split()[19]
    (abandoned / OWNER_FILE).write_text(f"{dead_pid} 1\n")
    (mine / OWNER_FILE).write_text(f"{os.getpid()} {started}\n")
    (other / OWNER_FILE).write_text(f"{dead_pid} 1\n")
    sweep_abandoned(tmp_path)
    assert not abandoned.exists()
    assert mine.exists() and unmarked.exists() and other.exists()
