"""Server families: statement and option names by family and version (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rwsplit.servers import (
    MariaDB,
    MySQL,
    ServerFamily,
    detect_family,
    family_for_version,
    parse_version,
)


class FakeCursor:
    """Answers queries from a dict of SQL prefix -> rows."""

    def __init__(self, answers: dict[str, list[tuple[Any, ...]]]) -> None:
        self.answers = answers
        self.executed: list[str] = []
        self._rows: list[tuple[Any, ...]] = []
        self.description: Any = None

    def execute(self, query: str, args: Any = None) -> int:
        self.executed.append(query)
        self._rows = next(rows for prefix, rows in self.answers.items() if query.startswith(prefix))
        return len(self._rows)

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> Any:
        return list(self._rows)


def test_both_families_implement_the_protocol() -> None:
    assert isinstance(MariaDB(), ServerFamily)
    assert isinstance(MySQL(), ServerFamily)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "/usr/sbin/mysqld  Ver 8.0.36-0ubuntu0.22.04.1 for Linux on x86_64 ((Ubuntu))",
            (8, 0, 36),
        ),
        ("mariadbd  Ver 10.11.6-MariaDB-0+deb12u1-log for debian-linux-gnu", (10, 11, 6)),
        ("", (0, 0, 0)),
    ],
)
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version


def test_family_from_the_version_output() -> None:
    assert family_for_version("mariadbd  Ver 10.11.6-MariaDB").name == "mariadb"
    mysql = family_for_version("mysqld  Ver 8.4.3 for Linux", gtid=False)
    assert isinstance(mysql, MySQL) and mysql.version == (8, 4, 3) and not mysql.gtid


def test_detect_family_uses_show_only() -> None:
    # SHOW statements move no Com_select: the demo and the tests count those.
    cur = FakeCursor({"SHOW GLOBAL VARIABLES": [("gtid_mode", "OFF"), ("version", "9.7.4-2")]})
    f = detect_family(cur)
    assert isinstance(f, MySQL) and not f.gtid and f.version == (9, 7, 4)
    cur = FakeCursor({"SHOW GLOBAL VARIABLES": [("version", "10.11.6-MariaDB-log")]})
    assert isinstance(detect_family(cur), MariaDB)
    assert all(q.startswith("SHOW") for q in cur.executed)


def test_mysql_names_follow_the_version() -> None:
    old, new = MySQL("8.0.21"), MySQL("9.7.4")
    assert old.stop_replication().sql == "STOP SLAVE"
    assert new.stop_replication().sql == "STOP REPLICA"
    assert old.replica_status_sql == "SHOW SLAVE STATUS"
    assert new.stop_sql_thread().sql == "STOP REPLICA SQL_THREAD"
    assert old.change_source("h", 1, "u", "p").sql.startswith(
        "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
        "MASTER_PASSWORD = %s, MASTER_CONNECT_RETRY = 1, MASTER_RETRY_COUNT = 31536000"
    )
    assert MySQL("8.0.25").semi_sync_source(True).sql == (
        "SET GLOBAL rpl_semi_sync_master_enabled = ON"
    )
    assert new.semi_sync_source(False).sql == "SET GLOBAL rpl_semi_sync_source_enabled = OFF"
    assert new.semi_sync_status("clients") == "Rpl_semi_sync_source_clients"
    assert MariaDB().semi_sync_status("clients") == "Rpl_semi_sync_master_clients"
    assert new.binlog_status_sql() == "SHOW BINARY LOG STATUS"
    assert MySQL("8.0.36").binlog_status_sql() == "SHOW MASTER STATUS"


def test_mysql_without_gtids_replicates_from_a_position() -> None:
    d = MySQL("9.7.4", gtid=False)
    stmt = d.change_source("10.0.0.1", 3306, "repl", "pw", position="binlog.000002:157")
    assert "SOURCE_AUTO_POSITION = 0, SOURCE_LOG_FILE = %s, SOURCE_LOG_POS = %s" in stmt.sql
    assert stmt.params[-2:] == ("binlog.000002", 157)
    assert "pw" not in stmt.display()
    with pytest.raises(ValueError, match="file:pos"):
        d.change_source("10.0.0.1", 3306, "repl", "pw")


def test_mysql_sandbox_options() -> None:
    opts = MySQL("9.7.4").sandbox_server_options(
        replica=True, semi_sync=True, log_replica_updates=False
    )
    assert "--secure-file-priv=" in opts and "--mysqlx=OFF" in opts
    assert "--log-replica-updates=OFF" in opts and "--gtid-mode=ON" in opts
    assert "--plugin-load-add=semisync_source.so" in opts
    assert "--rpl-semi-sync-source-wait-no-replica=ON" in opts
    assert not any("innodb-log-file-size" in o for o in opts)
    old = MySQL("8.0.20", gtid=False).sandbox_server_options(
        replica=False, semi_sync=True, log_replica_updates=True
    )
    assert "--log-slave-updates=ON" in old and "--gtid-mode=OFF" in old
    assert "--plugin-load-add=semisync_master.so" in old
    assert "--rpl-semi-sync-master-wait-no-slave=ON" in old


def test_mysql_init_adds_a_root_account_for_tcp(tmp_path: Path) -> None:
    datadir = tmp_path / "node" / "data"
    datadir.parent.mkdir()
    cmd = MySQL().sandbox_init_command(
        "/opt/mysql/bin/mysqld", [], datadir, tmp_path / "tmp", as_root=False
    )
    assert cmd[:3] == ["/opt/mysql/bin/mysqld", "--no-defaults", "--initialize-insecure"]
    init = next(c for c in cmd if c.startswith("--init-file=")).split("=", 1)[1]
    assert "'root'@'%'" in Path(init).read_text()


def test_own_transactions_mysql_counts_its_own_uuid() -> None:
    own, other = "aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"
    cur = FakeCursor(
        {
            "SHOW GLOBAL VARIABLES": [
                ("gtid_executed", f"{other}:1-100,\n{own}:1-3:5"),
                ("server_uuid", own),
            ]
        }
    )
    assert MySQL().own_transactions(cur) == {own: 4}


def test_own_transactions_mariadb_reads_its_server_id() -> None:
    cur = FakeCursor(
        {"SHOW GLOBAL VARIABLES": [("gtid_binlog_pos", "0-1-57,1-2-3"), ("server_id", "2")]}
    )
    assert MariaDB().own_transactions(cur) == {"1-2": 3}
