"""The PostgreSQL classifier: statement kinds, lexing, constructs and the router's reading."""

from __future__ import annotations

import pytest
from sqlalchemy import column, delete, func, insert, literal, select, table, text, update

from rwsplit import ClassificationError, Flag, Target, classify, classify_clause
from rwsplit.routing.classify_pg import classify_clause_pg, classify_pg
from rwsplit.routing.router import Router

from ..pg_corpus import pg_corpus

R, P, A = Target.REPLICA, Target.PRIMARY, Target.ALL
W, L, S = Flag.WRITE, Flag.LOCKING_READ, Flag.SESSION_STATE

# (sql, target, flags that must be set, resource)
TABLE: list[tuple[str, Target, Flag, str | None]] = [
    # plain reads
    ("SELECT 1", R, Flag.NONE, None),
    ("select * from t where id = %s", R, Flag.NONE, None),
    ("SELECT * FROM t WHERE id = %(id)s AND name = %(name)s", R, Flag.NONE, None),
    ("SELECT * FROM t WHERE id = $1", R, Flag.NONE, None),
    ("VALUES (1, 'a'), (2, 'b')", R, Flag.NONE, None),
    ("TABLE t", R, Flag.NONE, None),
    ("(SELECT a FROM t) UNION ALL (SELECT b FROM u)", R, Flag.NONE, None),
    ("SELECT a::numeric(10, 2), CAST(b AS character varying(20)) FROM t", R, Flag.NONE, None),
    ("SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS g(x, n)", R, Flag.NONE, None),
    ("WITH RECURSIVE c(n) AS (SELECT 1 UNION SELECT n + 1 FROM c) SELECT * FROM c", R, 0, None),
    ("WITH w AS MATERIALIZED (SELECT 1) SELECT * FROM w", R, Flag.NONE, None),
    ("SELECT substring(x FROM 1 FOR 2), overlay(x PLACING 'y' FROM 1 FOR 1) FROM t", R, 0, None),
    ("SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d", R, 0, None),
    ("SELECT a FROM t WHERE b OPERATOR(pg_catalog.~) '^x$'", R, Flag.NONE, None),
    ("SELECT doc -> 'a' ->> 'b', tags @> ARRAY['x'], ts @@ q FROM t", R, Flag.NONE, None),
    ('SELECT "lower"(name) FROM t', R, Flag.NONE, None),
    ("SELECT 1 -- FOR UPDATE", R, Flag.NONE, None),
    ("SELECT 1 /* /* nested */ FOR UPDATE */", R, Flag.NONE, None),
    ("SELECT $$ FOR UPDATE; DELETE FROM t $$", R, Flag.NONE, None),
    ("SELECT $q$ $$ FOR UPDATE $$ $q$", R, Flag.NONE, None),
    ("SELECT E'\\' FOR UPDATE'", R, Flag.NONE, None),
    ("SELECT 'it''s; DELETE FROM t'", R, Flag.NONE, None),
    ("SELECT a$b$ FROM t", R, Flag.NONE, None),
    ("SELECT t.update, t.delete FROM t", R, Flag.NONE, None),
    ("SELECT 1;", R, Flag.NONE, None),
    ("SHOW search_path", R, Flag.NONE, None),
    ("SHOW TIME ZONE", R, Flag.NONE, None),
    ("EXPLAIN SELECT * FROM t", R, Flag.NONE, None),
    ("EXPLAIN (ANALYZE, BUFFERS, FORMAT json) SELECT * FROM t", R, Flag.NONE, None),
    ("COPY t TO STDOUT", R, Flag.NONE, None),
    ("COPY t (a, b) TO STDOUT WITH (FORMAT csv, HEADER)", R, Flag.NONE, None),
    ("COPY (SELECT * FROM t WHERE a > 1) TO STDOUT", R, Flag.NONE, None),
    ("BEGIN READ ONLY", R, Flag.TXN_BEGIN | Flag.TXN_READ_ONLY, None),
    ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", R, Flag.TXN_READ_ONLY, None),
    # locking reads
    ("SELECT * FROM t FOR UPDATE", P, L, None),
    ("SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED", P, L, None),
    ("SELECT * FROM t FOR SHARE OF t NOWAIT", P, L, None),
    ("SELECT * FROM t FOR KEY SHARE", P, L, None),
    ("select * from t\nfor\nupdate", P, L, None),
    ("SELECT * FROM t /* x */ FOR /* y */ UPDATE", P, L, None),
    ("SELECT * FROM t -- x\r FOR UPDATE", P, L, None),  # a CR ends a -- comment
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", P, L, None),
    ("LOCK TABLE t IN ACCESS SHARE MODE", P, L, None),
    ("LOCK t", P, L, None),
    # sequences
    ("SELECT nextval('s')", P, W, None),
    ("SELECT setval('s', 10)", P, W, None),
    ("SELECT currval('s')", P, Flag.NONE, None),
    ("SELECT lastval()", P, Flag.NONE, None),
    ("SELECT \"nextval\"('s')", P, W, None),
    ("SELECT pg_catalog.nextval('s')", P, W, None),
    ("INSERT INTO t (id) VALUES (nextval('s'))", P, W, None),
    # advisory locks
    ("SELECT pg_advisory_lock(1)", P, Flag.PIN, "advisory lock"),
    ("SELECT pg_try_advisory_lock(1, 2)", P, Flag.PIN, "advisory lock"),
    ("SELECT pg_advisory_lock_shared(1)", P, Flag.PIN, "advisory lock"),
    ("SELECT pg_advisory_unlock(1)", P, Flag.UNPIN, "advisory lock"),
    ("SELECT pg_advisory_unlock_all()", P, Flag.UNPIN, "all advisory locks"),
    ("SELECT pg_advisory_xact_lock(1)", P, L, None),
    ("SELECT pg_try_advisory_xact_lock_shared(1)", P, L, None),
    # session state
    ("SET search_path TO app, public", A, S, None),
    ("SET SESSION statement_timeout = '5s'", A, S, None),
    ("SET TIME ZONE 'UTC'", A, S, None),
    ("SET ROLE app", A, S, None),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", A, S, None),
    ("RESET ALL", A, S, None),
    ("RESET search_path", A, S, None),
    ("DISCARD PLANS", A, S, None),
    ("DISCARD ALL", P, S | W, None),
    ("DISCARD TEMP", P, S | W, None),
    ("SET LOCAL statement_timeout = '5s'", P, Flag.NONE, None),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", P, Flag.NONE, None),
    ("SET CONSTRAINTS ALL DEFERRED", P, Flag.NONE, None),
    ("SELECT set_config('search_path', 'app', false)", P, S, None),
    ("LOAD 'auto_explain'", P, S, None),
    # LISTEN / NOTIFY
    ("LISTEN jobs", P, Flag.PIN | S, "LISTEN jobs"),
    ('LISTEN "Jobs"', P, Flag.PIN, "LISTEN Jobs"),
    ("UNLISTEN jobs", P, Flag.UNPIN, "LISTEN jobs"),
    ("UNLISTEN *", P, Flag.NONE, None),
    ("NOTIFY jobs, 'payload'", P, W, None),
    ("SELECT pg_notify('jobs', 'payload')", P, W, None),
    # COPY
    ("COPY t FROM STDIN", P, W, None),
    ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", P, W, None),
    ("COPY t TO '/tmp/t.csv'", P, W, None),
    ("COPY t TO PROGRAM 'gzip > /tmp/t.gz'", P, W, None),
    ("COPY (SELECT nextval('s')) TO STDOUT", P, W, None),
    ("COPY (DELETE FROM t RETURNING *) TO STDOUT", P, W, None),
    ("COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", P, L, None),
    # temporary objects
    ("CREATE TEMP TABLE tmp (a int)", P, W | Flag.PIN, "temporary table tmp"),
    ("CREATE TEMPORARY TABLE IF NOT EXISTS tmp (a int)", P, Flag.PIN, "temporary table tmp"),
    ("CREATE LOCAL TEMP TABLE tmp AS SELECT 1", P, Flag.PIN, "temporary table tmp"),
    ("CREATE GLOBAL TEMPORARY TABLE tmp (a int)", P, Flag.PIN, "temporary table tmp"),
    ("CREATE UNLOGGED TABLE u (a int)", P, W, None),
    ("CREATE TABLE pg_temp.tmp (a int)", P, Flag.PIN, "temporary table tmp"),
    ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", P, Flag.PIN, "temporary view v"),
    ("CREATE TEMP SEQUENCE ts", P, Flag.PIN, "temporary sequence ts"),
    ('CREATE TEMP TABLE "Tmp" (a int)', P, Flag.PIN, "temporary table Tmp"),
    ("DROP TABLE IF EXISTS tmp", P, W | Flag.UNPIN, "temporary table tmp"),
    ("DROP TABLE pg_temp.tmp", P, Flag.UNPIN, "temporary table tmp"),
    ("SELECT * INTO TEMP tmp FROM t", P, W | Flag.PIN, "temporary table tmp"),
    ("SELECT * INTO TEMPORARY TABLE tmp FROM t", P, Flag.PIN, "temporary table tmp"),
    # SELECT INTO, data-modifying CTEs, functions
    ("SELECT * INTO newt FROM t", P, W, None),
    ("SELECT * INTO UNLOGGED newt FROM t", P, W, None),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d", P, W, None),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u", P, W, None),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i", P, W, None),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", P, W, None),
    ("SELECT my_func(1)", P, Flag.NONE, None),
    ("SELECT app.my_func(1)", P, Flag.NONE, None),
    ('SELECT "MyFunc"(1)', P, Flag.NONE, None),
    ('SELECT "NOW"()', P, Flag.NONE, None),
    ("SELECT * FROM t WHERE a = some_udf(b)", P, Flag.NONE, None),
    ("SELECT a === b FROM t", P, Flag.NONE, None),
    ("SELECT a OPERATOR(app.+) b FROM t", P, Flag.NONE, None),
    ("SELECT operator(1)", P, Flag.NONE, None),  # a user's function named like a keyword
    ("SELECT over(1), key(2)", P, Flag.NONE, None),
    ("SELECT path(p) FROM t", R, Flag.NONE, None),  # the built-in path(polygon)
    ("SELECT like(1)", P, Flag.NONE, None),
    ("SELECT by(1)", P, Flag.NONE, None),
    ("SELECT rollup(1)", P, Flag.NONE, None),
    ("SELECT * FROM t ORDER BY rollup(a)", P, Flag.NONE, None),
    ("SELECT * FROM my_srf(1) AS (a int)", P, Flag.NONE, None),  # column definition list
    ("SELECT * FROM t, my_srf(1) AS (a int)", P, Flag.NONE, None),
    ("WITH c AS (SELECT 1) SELECT * FROM c, my_srf(1) AS (a int)", P, Flag.NONE, None),
    ("SELECT * FROM json_to_record('{}') AS (a int)", R, Flag.NONE, None),
    ("WITH a(x) AS (SELECT 1), b(y) AS NOT MATERIALIZED (SELECT 2) TABLE a", R, 0, None),
    ("SELECT row_number() OVER (ORDER BY a) FROM t", R, Flag.NONE, None),
    ("SELECT count(*) FILTER (WHERE a > 1) FROM t", R, Flag.NONE, None),
    ("SELECT a FROM t WHERE a LIKE ('x%') OR (a, a) OVERLAPS (a, a)", R, Flag.NONE, None),
    ("SELECT * FROM t ORDER BY (a + 1) FETCH FIRST (2) ROWS ONLY", R, Flag.NONE, None),
    ("SELECT a, count(*) FROM t GROUP BY ROLLUP (a)", R, Flag.NONE, None),
    ("SELECT a FROM t GROUP BY GROUPING SETS ((a), ())", R, Flag.NONE, None),
    ("SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)", R, Flag.NONE, None),
    ("SELECT now() AT TIME ZONE ('UTC')", R, Flag.NONE, None),
    ("SELECT CAST(a AS character varying(10)) FROM t", R, Flag.NONE, None),
    ('SELECT a OPERATOR("pg_catalog".+) b FROM t', R, Flag.NONE, None),
    ("SELECT txid_current()", P, W, None),
    ("SELECT pg_current_wal_lsn()", P, Flag.NONE, None),
    ("SELECT \u017fum(a) FROM t", P, Flag.NONE, None),  # not SUM: the server folds ASCII only
    # procedural code
    ("DO $$ BEGIN PERFORM 1; END $$", P, W | S, None),
    ("DO LANGUAGE plpgsql 'BEGIN NULL; END'", P, W | S, None),
    ("CALL my_proc(1)", P, W | S, None),
    # prepared statements
    ("PREPARE q (int) AS SELECT * FROM t WHERE id = $1", P, Flag.PIN | S, "prepared statement q"),
    ("EXECUTE q(1)", P, W, None),
    ("DEALLOCATE q", P, Flag.UNPIN, "prepared statement q"),
    ("DEALLOCATE PREPARE q", P, Flag.UNPIN, "prepared statement q"),
    ("DEALLOCATE ALL", P, Flag.NONE, None),
    ("EXPLAIN EXECUTE q(1)", P, Flag.NONE, None),
    # cursors
    ("DECLARE c CURSOR FOR SELECT * FROM t", P, L, None),
    ("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", P, Flag.PIN | S, "cursor c"),
    ("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", P, L, None),
    ("DECLARE c CURSOR FOR SELECT nextval('s')", P, W | L, None),
    ("FETCH 10 FROM c", P, Flag.NONE, None),
    ("MOVE NEXT IN c", P, Flag.NONE, None),
    ("CLOSE c", P, Flag.UNPIN, "cursor c"),
    ("CLOSE ALL", P, Flag.NONE, None),
    # transactions
    ("BEGIN", P, Flag.TXN_BEGIN, None),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ", P, Flag.TXN_BEGIN, None),
    ("START TRANSACTION READ WRITE", P, Flag.TXN_BEGIN, None),
    ("BEGIN READ ONLY ISOLATION LEVEL SERIALIZABLE", P, Flag.TXN_BEGIN, None),
    ("COMMIT", P, Flag.TXN_END, None),
    ("END", P, Flag.TXN_END, None),
    ("ROLLBACK", P, Flag.TXN_END, None),
    ("ABORT", P, Flag.TXN_END, None),
    ("COMMIT AND CHAIN", P, Flag.TXN_END | Flag.TXN_BEGIN, None),
    ("SAVEPOINT s1", P, Flag.NONE, None),
    ("RELEASE SAVEPOINT s1", P, Flag.NONE, None),
    ("ROLLBACK TO SAVEPOINT s1", P, Flag.NONE, None),
    ("PREPARE TRANSACTION 'gid'", P, W | Flag.TXN_END, None),
    ("COMMIT PREPARED 'gid'", P, W, None),
    ("ROLLBACK PREPARED 'gid'", P, W, None),
    # maintenance and DDL
    ("VACUUM t", P, W, None),
    ("VACUUM (VERBOSE, ANALYZE) t", P, W, None),
    ("ANALYZE t", P, W, None),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", P, W, None),
    ("REINDEX TABLE t", P, W, None),
    ("CLUSTER t USING i", P, W, None),
    ("CHECKPOINT", P, W, None),
    ("CREATE INDEX CONCURRENTLY i ON t (a)", P, W, None),
    ("ALTER TABLE t ADD COLUMN b int", P, W, None),
    ("COMMENT ON TABLE t IS 'x'", P, W, None),
    ("GRANT SELECT ON t TO r", P, W, None),
    ("TRUNCATE t", P, W, None),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", P, W, None),
    ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a", P, W, None),
    ("EXPLAIN ANALYZE DELETE FROM t", P, W, None),
    ("EXPLAIN (ANALYZE) UPDATE t SET a = 1", P, W, None),
    ("EXPLAIN INSERT INTO t VALUES (1)", P, Flag.NONE, None),
    ("SHOW transaction_read_only", P, Flag.NONE, None),
    ("SHOW TRANSACTION ISOLATION LEVEL", P, Flag.NONE, None),
    # several statements, unknown and broken text
    ("SELECT 1; SELECT 2", P, Flag.MULTI_STATEMENT, None),
    ("SELECT 1; DELETE FROM t", P, Flag.MULTI_STATEMENT | W, None),
    ("SELECT 1; SET search_path = x", P, Flag.MULTI_STATEMENT | S, None),
    ("", P, Flag.NONE, None),
    ("   ", P, Flag.NONE, None),
    ("SELECT 'unterminated", P, Flag.NONE, None),
    ("SELECT $$ unterminated", P, Flag.NONE, None),
    ("SELECT 1 /* unterminated", P, Flag.NONE, None),
    ("SELECT 1 /* 1 /* 2 /* 3 /* 4 /* 5 */ */ */ */ */", P, Flag.NONE, None),  # too deep
    ("FROB the widgets", P, W, None),
    ("SELECT 1 /* rwsplit:primary */", P, Flag.HINT, None),
    ("/* rwsplit:replica */ SELECT my_func()", R, Flag.HINT, None),
    ("/* rwsplit:replica */ DELETE FROM t", P, W, None),
]


@pytest.mark.parametrize(("sql", "target", "flags", "resource"), TABLE, ids=repr)
def test_statement_kinds(sql: str, target: Target, flags: Flag, resource: str | None) -> None:
    c = classify(sql, dialect="postgresql")
    assert c.target is target, c
    assert c.flags & flags == flags, c
    assert c.resource == resource, c
    assert c.reason
    if target is Target.REPLICA and not flags:
        assert not c.flags, c  # a plain read carries no side effect


def test_the_entry_points_agree() -> None:
    for sql, *_ in TABLE:
        assert classify_pg(sql) == classify(sql, dialect="postgresql")


def test_dialect_names() -> None:
    sql = "SELECT * FROM t FOR NO KEY UPDATE"
    assert classify(sql, dialect="mysql") == classify(sql) == classify(sql, dialect="mariadb")
    assert classify("SELECT `a` FROM t", dialect="mysql").target is Target.REPLICA
    assert classify("SELECT `a` FROM t", dialect="postgresql").target is Target.PRIMARY
    with pytest.raises(ClassificationError, match="postgresql"):
        classify("SELECT 1", dialect="oracle")
    with pytest.raises(ClassificationError, match="str"):
        classify(b"SELECT 1", dialect="postgresql")  # type: ignore[arg-type]


def test_lexing_differences_from_mysql() -> None:
    """Text the two families read differently is routed as each server reads it."""
    # MySQL: "#" starts a comment, backslash escapes in '...'; PostgreSQL: neither.
    pg = "postgresql"
    assert classify("SELECT 1 # FOR UPDATE", dialect=pg).target is Target.PRIMARY
    assert classify("SELECT 1 # FOR UPDATE").target is Target.REPLICA
    # "--" without a space is a comment on PostgreSQL only.
    assert classify("SELECT 1 --x\nFROM t", dialect=pg).target is Target.REPLICA
    # Nested comments: the first "*/" does not end the comment on PostgreSQL.
    nested = "SELECT 1 /* a /* b */ FOR UPDATE */"
    assert classify(nested, dialect=pg).target is Target.REPLICA
    assert classify(nested).target is Target.PRIMARY
    # An operator run stops before "--": "=--" is "=" and a comment.
    assert classify("SELECT 1 =-- c\n1 FROM t FOR UPDATE", dialect=pg).flags & Flag.LOCKING_READ


def test_standard_conforming_strings_off_is_read_both_ways() -> None:
    """A backslash in a plain string: with the setting off the server reads one string where
    it reads two with it on; the text goes to the primary if the readings differ."""
    two_ways = "SELECT a FROM t WHERE b <> 'x\\' AND b <> ' FOR UPDATE --'"
    c = classify(two_ways, dialect="postgresql")
    assert c.target is Target.PRIMARY and c.flags & Flag.LOCKING_READ, c
    same = "SELECT a FROM t WHERE b ~ '\\d+'"  # a backslash that changes nothing
    assert classify(same, dialect="postgresql").target is Target.REPLICA


def test_operators_are_split_as_the_server_splits_them() -> None:
    from rwsplit.routing._lexer_pg import lex

    ops = [t.text for t in lex("SELECT 1*-2, a@-b, c<=-d, e !~~* f").toks if t.kind == 7]
    assert ops == ["*", "-", "@-", "<=", "-", "!~~*"]


def test_every_corpus_statement_classifies() -> None:
    statements = pg_corpus()
    assert len(statements) >= 400
    for sql in statements:
        c = classify_pg(sql)
        assert c.reason


CLAUSES = [
    (select(literal(1)), Target.REPLICA),
    (select(func.now(), func.count(column("a"))).select_from(table("t")), Target.REPLICA),
    (select(column("a")).select_from(table("t")).with_for_update(key_share=True), Target.PRIMARY),
    (select(column("a")).select_from(table("t")).with_for_update(read=True), Target.PRIMARY),
    (select(func.nextval("s")), Target.PRIMARY),
    (select(func.pg_advisory_lock(1)), Target.PRIMARY),
    (select(func.my_udf(1)), Target.PRIMARY),
    (select(func.app.fn(1)), Target.PRIMARY),
    (select(func.pg_catalog.lower("A")), Target.REPLICA),
    (select(text("nextval('s')")), Target.PRIMARY),
    (insert(table("t", column("a"))).values(a=1), Target.PRIMARY),
    (update(table("t", column("a"))).values(a=1), Target.PRIMARY),
    (delete(table("t")), Target.PRIMARY),
    (text("SELECT 1"), Target.REPLICA),
    (text("SELECT 1 FOR UPDATE"), Target.PRIMARY),
]


@pytest.mark.parametrize(("clause", "target"), CLAUSES, ids=lambda x: str(x)[:40])
def test_constructs(clause: object, target: Target) -> None:
    assert classify_clause_pg(clause).target is target
    assert classify_clause(clause, dialect="postgresql") == classify_clause_pg(clause)


def test_a_data_changing_cte_in_a_select_construct_is_a_write() -> None:
    t = table("t", column("a"))
    cte = delete(t).returning(t.c.a).cte("d")
    c = classify_clause_pg(select(cte.c.a))
    assert c.target is Target.PRIMARY and c.flags & Flag.WRITE


def router() -> Router:
    return Router(lambda: "standby1", lambda node, token: True)


def test_session_advisory_locks_pin_until_each_is_released() -> None:
    r = router()
    r.route(classify_pg("SELECT pg_advisory_lock(1)"))
    r.route(classify_pg("SELECT pg_advisory_lock(2)"))
    r.end_transaction()
    assert r.pins == {"advisory lock"}
    r.route(classify_pg("SELECT pg_advisory_unlock(1)"))
    r.end_transaction()
    assert r.route(classify_pg("SELECT 1")).route.value == "primary"  # lock 2 still held
    r.route(classify_pg("SELECT pg_advisory_unlock(2)"))
    r.end_transaction()
    assert not r.pins
    assert r.route(classify_pg("SELECT 1")).node == "standby1"


def test_unlock_all_releases_every_advisory_lock() -> None:
    r = router()
    for key in (1, 2, 3):
        r.route(classify_pg(f"SELECT pg_advisory_lock({key})"))
    r.route(classify_pg("SELECT pg_advisory_unlock_all()"))
    r.end_transaction()
    assert not r.pins


def test_transaction_advisory_locks_keep_the_transaction_on_the_primary() -> None:
    r = router()
    r.route(classify_pg("SELECT pg_advisory_xact_lock(1)"))
    assert r.route(classify_pg("SELECT 1")).route.value == "primary"
    r.end_transaction()
    assert not r.pins
    assert r.route(classify_pg("SELECT 1")).node == "standby1"


@pytest.mark.parametrize(
    ("take", "release"),
    [
        ("CREATE TEMP TABLE tmp (a int)", "DROP TABLE tmp"),
        ("LISTEN jobs", None),
        ("PREPARE q AS SELECT 1", None),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", None),
        ("SET search_path = app", None),
        ("DO $$ BEGIN END $$", None),
    ],
)
def test_connection_bound_state_pins_the_session(take: str, release: str | None) -> None:
    r = router()
    r.route(classify_pg(take))
    r.end_transaction()
    assert r.pinned
    assert r.route(classify_pg("SELECT * FROM tmp")).route.value == "primary"
    if release is not None:
        r.route(classify_pg(release))
        r.end_transaction()
        assert not r.pinned


def test_set_local_keeps_only_its_transaction_on_the_primary() -> None:
    r = router()
    r.route(classify_pg("SET LOCAL statement_timeout = '1s'"))
    assert r.route(classify_pg("SELECT 1")).route.value == "primary"
    r.end_transaction()
    assert not r.pinned
    assert r.route(classify_pg("SELECT 1")).node == "standby1"


def test_a_read_only_transaction_runs_on_one_standby() -> None:
    r = router()
    d = r.route(classify_pg("BEGIN READ ONLY"))
    assert d.opens_read_only and d.node == "standby1"
    assert r.route(classify_pg("SELECT 1")).node == "standby1"
    assert r.route(classify_pg("COMMIT")).node == "standby1"
    assert r.read_only_node is None


def test_the_routing_rules_page_examples_hold() -> None:
    """The ``>>>`` examples of docs/postgresql.md's routing-rules section."""
    import doctest
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "postgresql.md").read_text()
    section = page.split("## Routing rules on PostgreSQL", 1)[1].split("\n## ", 1)[0]
    section = section.replace("\n```", "\n\n```")  # a fence ends an expected output
    test = doctest.DocTestParser().get_doctest(section, {}, "postgresql.md", None, 0)
    assert test.examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_the_cli_classifies_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    from rwsplit.cli import main

    sql = "SELECT pg_advisory_lock(7)"
    assert main(["classify", "--dialect", "postgresql", "--details", sql]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "primary\tpg_advisory_lock() takes a session advisory lock"
    assert lines[2].split() == ["resource:", "advisory", "lock"]
    assert main(["classify", "--dialect", "postgresql", "--each", "SET x = 1; SELECT $$;$$"]) == 0
    targets = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert targets == ["all", "replica"]
