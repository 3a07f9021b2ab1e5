"""The core classifier rules (the wide statement table lives in test_classify_table.py)."""

from __future__ import annotations

import pytest
import sqlparse
from sqlalchemy import column, delete, insert, literal, select, table, text, update

from rwsplit import ClassificationError, Flag, Target, classify, classify_clause

READS = [
    "SELECT 1",
    "select * from t where id = 1",
    "  SELECT a FROM t",
    "SELECT COUNT(*) FROM t",
    "SELECT a FROM t WHERE b = 'x; DELETE FROM t'",
    "SHOW TABLES",
    "DESCRIBE t",
    "DESC t",
    "EXPLAIN SELECT * FROM t",
    "(SELECT 1) UNION (SELECT 2)",
    "SELECT 1;",
]
PRIMARY = [
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "REPLACE INTO t VALUES (1)",
    "CREATE TABLE t (a INT)",
    "DROP TABLE t",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t LOCK IN SHARE MODE",
    "SELECT LAST_INSERT_ID()",
    "SELECT a INTO @x FROM t",
    "SELECT my_udf(a) FROM t",
    "SELECT 1; DELETE FROM t",
    "",
    "   ",
    "SELECT 'unterminated",
    "CALL proc()",
    "SET GLOBAL max_connections = 10",
]
SESSION_STATE = ["SET NAMES utf8mb4", "SET @x = 1", "SET SESSION sql_mode = ''", "USE db"]


@pytest.mark.parametrize("sql", READS)
def test_plain_reads_go_to_replicas(sql: str) -> None:
    assert classify(sql).target is Target.REPLICA, classify(sql).reason


@pytest.mark.parametrize("sql", PRIMARY)
def test_everything_else_goes_to_the_primary(sql: str) -> None:
    assert classify(sql).target is Target.PRIMARY


@pytest.mark.parametrize("sql", SESSION_STATE)
def test_session_state_goes_everywhere(sql: str) -> None:
    c = classify(sql)
    assert c.target is Target.ALL
    assert c.flags & Flag.SESSION_STATE


@pytest.mark.parametrize("sql", ["SELECT FOUND_ROWS()", "SHOW WARNINGS", "SELECT ROW_COUNT()"])
def test_last_connection_statements(sql: str) -> None:
    assert classify(sql).target is Target.LAST


def test_target_values_are_the_documented_strings() -> None:
    assert {t.value for t in Target} == {"primary", "replica", "all", "last"}


def test_every_classification_has_a_reason() -> None:
    for sql in READS + PRIMARY + SESSION_STATE:
        assert classify(sql).reason


def test_results_are_cached_by_text() -> None:
    assert classify("SELECT 42 FROM t") is classify("SELECT 42 FROM t")


def test_non_text_is_a_typed_error() -> None:
    with pytest.raises(ClassificationError, match="classify_clause"):
        classify(b"SELECT 1")  # type: ignore[arg-type]


def test_agrees_with_sqlparse_on_the_verb_of_simple_reads() -> None:
    for sql in ["SELECT 1", "select a from t"]:
        assert sqlparse.parse(sql)[0].get_type() == "SELECT"
        assert classify(sql).target is Target.REPLICA


T = table("t", column("id"), column("a"))


@pytest.mark.parametrize(
    ("clause", "target"),
    [
        (select(T), Target.REPLICA),
        (select(T).with_for_update(), Target.PRIMARY),
        (select(T).with_for_update(read=True), Target.PRIMARY),
        (select(literal(1)).union(select(literal(2))), Target.REPLICA),
        (insert(T).values(id=1), Target.PRIMARY),
        (update(T).values(a=1), Target.PRIMARY),
        (delete(T), Target.PRIMARY),
        (text("SELECT 1"), Target.REPLICA),
        (text("UPDATE t SET a = 1"), Target.PRIMARY),
        (object(), Target.PRIMARY),
    ],
)
def test_sqlalchemy_constructs(clause: object, target: Target) -> None:
    assert classify_clause(clause).target is target
