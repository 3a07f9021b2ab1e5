"""``may_commit``: what a lost reply may have committed (issue 17, defect 5).

The real server's answers are compared in tests/integration/test_reliability_commit.py; these
pin the lexical cases (comments, executable comments, several statements) without a server.
"""

from __future__ import annotations

import pytest

from rwsplit.routing._implicit_commit import may_commit

COMMITS = [
    "CREATE TABLE t (a INT)",
    "-- note\nCREATE TABLE t (a INT)",
    "# note\nDROP TABLE t",
    "/* note */ ALTER TABLE t ADD b INT",
    "/*!40101 CREATE TABLE t (a INT) */",
    "/*M!100100 CREATE TABLE t (a INT) */",
    "/*!80000 CREATE TABLE t (a INT) */",  # run by some servers only: either way
    "SET STATEMENT max_statement_time=1 FOR TRUNCATE t",
    "CALL p()",
    "EXECUTE s",
    "CHECK TABLE t",
    "SET PASSWORD FOR u = PASSWORD('x')",
    "SET autocommit = 1",
    "SET @x = 1, @@session.autocommit = 1",
    "set local autocommit=on",
    "COMMIT",
    "commit work",
    "BEGIN",
    "START TRANSACTION",
    "XA COMMIT 'x'",
    "LOCK TABLES t WRITE",
    "FLUSH TABLES",
    "GRANT SELECT ON *.* TO u",
    "INSERT INTO t VALUES (1); CREATE TABLE u (a INT)",
    "SOMETHING NEW",
    "BEGIN NOT ATOMIC SELECT 1; END",
    "'unterminated",
    "/* left open",
]
NEVER = [
    "SELECT 1",
    "(SELECT 1) UNION (SELECT 2)",
    "select * from t for update",
    "INSERT INTO t VALUES (1)",
    "/* app:orders */ UPDATE t SET a = 1",
    "DELETE FROM t",
    "REPLACE INTO t VALUES (1)",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "DO f()",
    "SET @x = 1",
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = ''",
    "SAVEPOINT a",
    "ROLLBACK",
    "ROLLBACK TO SAVEPOINT a",
    "RELEASE SAVEPOINT a",
    "CREATE TEMPORARY TABLE t (a INT)",
    "DROP TEMPORARY TABLE IF EXISTS t",
    "PREPARE s FROM 'COMMIT'",
    "DEALLOCATE PREPARE s",
    "SHOW TABLES",
    "/* only a comment */",
    "INSERT INTO t VALUES ('CREATE TABLE x'); UPDATE t SET a = 2",
    "SET STATEMENT max_statement_time=1 FOR SELECT 1",
]


@pytest.mark.parametrize("sql", COMMITS)
def test_may_commit(sql: str) -> None:
    assert may_commit(sql)


@pytest.mark.parametrize("sql", NEVER)
def test_cannot_commit(sql: str) -> None:
    assert not may_commit(sql)
