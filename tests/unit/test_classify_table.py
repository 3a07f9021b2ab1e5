"""The wide statement table: every category of issue 3, with its target and side effects."""

from __future__ import annotations

import pytest
from sqlalchemy import column, func, literal, literal_column, select, table, text
from sqlalchemy.sql import Select

from rwsplit import Flag, Target, classify, classify_clause

P, R, A, L = Target.PRIMARY, Target.REPLICA, Target.ALL, Target.LAST
N = Flag.NONE

# (sql, target, flags that must be set)
TABLE: list[tuple[str, Target, Flag]] = [
    # -- locking reads ------------------------------------------------------------------------
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", P, Flag.LOCKING_READ),
    ("SELECT * FROM t FOR UPDATE SKIP LOCKED", P, Flag.LOCKING_READ),
    ("SELECT * FROM t FOR UPDATE NOWAIT", P, Flag.LOCKING_READ),
    ("SELECT * FROM t FOR UPDATE WAIT 5", P, Flag.LOCKING_READ),
    ("SELECT * FROM t FOR SHARE", P, Flag.LOCKING_READ),
    ("SELECT * FROM t LOCK IN SHARE MODE", P, Flag.LOCKING_READ),
    ("SELECT *\nFROM t\nWHERE a = 1\nFOR\n  UPDATE", P, Flag.LOCKING_READ),
    ("select * from t lock\n\tin share\nmode", P, Flag.LOCKING_READ),
    ("SELECT * FROM t FOR /* why */ UPDATE", P, Flag.LOCKING_READ),
    ("(SELECT a FROM t FOR UPDATE) UNION (SELECT 1)", P, Flag.LOCKING_READ),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) d", P, Flag.LOCKING_READ),
    ("WITH c AS (SELECT 1) SELECT * FROM c FOR UPDATE", P, Flag.LOCKING_READ),
    # -- SELECT ... INTO -----------------------------------------------------------------------
    ("SELECT * FROM t INTO OUTFILE '/tmp/t.txt'", P, Flag.WRITE),
    ("SELECT a INTO DUMPFILE '/tmp/a' FROM t", P, Flag.WRITE),
    ("SELECT a INTO @x FROM t LIMIT 1", P, Flag.SESSION_STATE),
    ("SELECT a, b INTO @x, @y FROM t LIMIT 1", P, Flag.SESSION_STATE),
    ("SELECT 1 INTO @one", P, Flag.SESSION_STATE),
    # -- lock functions ------------------------------------------------------------------------
    ("SELECT GET_LOCK('job', 10)", P, Flag.PIN),
    ("select get_lock('job', 0) AS ok", P, Flag.PIN),
    ("SELECT RELEASE_LOCK('job')", P, Flag.UNPIN),
    ("SELECT RELEASE_ALL_LOCKS()", P, Flag.UNPIN),
    ("SELECT IS_FREE_LOCK('job')", P, N),
    ("SELECT IS_USED_LOCK('job')", P, N),
    ("DO GET_LOCK('job', 1)", P, Flag.PIN),
    ("DO RELEASE_LOCK('job')", P, Flag.UNPIN),
    # -- last insert id, identity, gtid --------------------------------------------------------
    ("SELECT LAST_INSERT_ID()", P, N),
    ("SELECT last_insert_id() AS id", P, N),
    ("SELECT * FROM t WHERE id = LAST_INSERT_ID()", P, N),
    ("SELECT @@identity", P, N),
    ("SELECT @@IDENTITY", P, N),
    ("SELECT @@last_insert_id", P, N),
    ("SELECT @@session.last_insert_id", P, N),
    ("SELECT @@last_gtid", P, N),
    # -- SQL_CALC_FOUND_ROWS -------------------------------------------------------------------
    ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", P, N),
    ("SELECT sql_calc_found_rows a FROM t", P, N),
    # -- sequences -----------------------------------------------------------------------------
    ("SELECT NEXTVAL(s)", P, Flag.WRITE),
    ("SELECT nextval(db.s)", P, Flag.WRITE),
    ("SELECT NEXT VALUE FOR s", P, Flag.WRITE),
    ("SELECT next value for db.s, a FROM t", P, Flag.WRITE),
    ("SELECT s.nextval", P, Flag.WRITE),
    ("SELECT SETVAL(s, 100)", P, Flag.WRITE),
    ("SELECT LASTVAL(s)", P, N),
    ("SELECT PREVIOUS VALUE FOR s", P, N),
    ("INSERT INTO t VALUES (NEXT VALUE FOR s)", P, Flag.WRITE),
    # -- user variable assignment inside a read -------------------------------------------------
    ("SELECT @x := 1", P, Flag.SESSION_STATE),
    ("SELECT @rank := @rank + 1 AS r, a FROM t", P, Flag.SESSION_STATE),
    ("SELECT a FROM t WHERE (@n := @n + 1) > 0", P, Flag.SESSION_STATE),
    # -- functions that are not known read-only built-ins --------------------------------------
    ("SELECT my_udf(a) FROM t", P, N),
    ("SELECT shop.price_with_tax(1)", P, N),
    ("SELECT `my func`(1)", P, N),
    ("SELECT a FROM t WHERE check_stock(a) > 0", P, N),
    ("SELECT COUNT(*) FROM t HAVING my_agg(a) > 1", P, N),
    ("SELECT SYS_EXEC('rm -rf')", P, N),
    # -- CALL, DO, HANDLER, LOAD, LOCK TABLES, FLUSH, XA, PREPARE/EXECUTE ----------------------
    ("CALL refresh_stats()", P, Flag.WRITE),
    ("call p(1, @out)", P, Flag.WRITE),
    ("DO 1", P, N),
    ("DO SLEEP(1)", P, N),
    ("HANDLER t OPEN", P, Flag.PIN),
    ("HANDLER t OPEN AS h", P, Flag.PIN),
    ("HANDLER h READ FIRST", P, N),
    ("HANDLER h READ `PRIMARY` NEXT", P, N),
    ("HANDLER h CLOSE", P, Flag.UNPIN),
    ("LOAD DATA INFILE '/tmp/x' INTO TABLE t", P, Flag.WRITE),
    ("LOAD DATA LOCAL INFILE 'x.csv' REPLACE INTO TABLE t FIELDS TERMINATED BY ','", P, Flag.WRITE),
    ("LOAD XML INFILE 'x.xml' INTO TABLE t", P, Flag.WRITE),
    ("LOCK TABLES t READ", P, Flag.PIN),
    ("LOCK TABLE t WRITE, u READ", P, Flag.PIN),
    ("UNLOCK TABLES", P, Flag.UNPIN),
    ("FLUSH TABLES", P, Flag.WRITE),
    ("FLUSH PRIVILEGES", P, Flag.WRITE),
    ("FLUSH TABLES WITH READ LOCK", P, Flag.PIN),
    ("FLUSH LOCAL STATUS", P, Flag.WRITE),
    ("XA START 'x1'", P, Flag.TXN_BEGIN),
    ("XA END 'x1'", P, N),
    ("XA PREPARE 'x1'", P, N),
    ("XA COMMIT 'x1'", P, Flag.TXN_END),
    ("XA ROLLBACK 'x1'", P, Flag.TXN_END),
    ("XA RECOVER", P, N),
    ("PREPARE s FROM 'SELECT * FROM t WHERE id = ?'", P, Flag.PIN),
    ("PREPARE s FROM @sql", P, Flag.PIN),
    ("EXECUTE s USING @id", P, Flag.WRITE),
    ("EXECUTE IMMEDIATE 'SELECT 1'", P, Flag.WRITE),
    ("DEALLOCATE PREPARE s", P, Flag.UNPIN),
    ("DROP PREPARE s", P, Flag.UNPIN),
    # -- CTEs that write or lock ---------------------------------------------------------------
    (
        "WITH c AS (SELECT id FROM t) UPDATE t SET a = 1 WHERE id IN (SELECT id FROM c)",
        P,
        Flag.WRITE,
    ),
    ("WITH c AS (SELECT 1 AS id) DELETE FROM t WHERE id IN (SELECT id FROM c)", P, Flag.WRITE),
    ("WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c", P, Flag.WRITE),
    # -- EXPLAIN ANALYZE / ANALYZE -------------------------------------------------------------
    ("EXPLAIN ANALYZE SELECT * FROM t", P, N),
    ("ANALYZE SELECT * FROM t", P, N),
    ("ANALYZE FORMAT=JSON SELECT * FROM t", P, N),
    ("ANALYZE TABLE t", P, Flag.WRITE),
    ("ANALYZE UPDATE t SET a = 1", P, N),
    # -- replication status --------------------------------------------------------------------
    ("SHOW MASTER STATUS", P, N),
    ("SHOW BINARY LOGS", P, N),
    ("SHOW MASTER LOGS", P, N),
    ("SHOW BINLOG EVENTS", P, N),
    ("SHOW SLAVE STATUS", P, N),
    ("SHOW REPLICA STATUS", P, N),
    ("SHOW ALL SLAVES STATUS", P, N),
    ("SHOW SLAVE 'conn1' STATUS", P, N),
    ("SHOW SLAVE HOSTS", P, N),
    # -- SET GLOBAL / PASSWORD / TRANSACTION ---------------------------------------------------
    ("SET GLOBAL max_connections = 10", P, N),
    ("SET @@global.read_only = 1", P, N),
    ("SET PERSIST max_connections = 10", P, N),
    ("SET PASSWORD = PASSWORD('secret')", P, Flag.WRITE),
    ("SET PASSWORD FOR 'u'@'%' = 'hash'", P, Flag.WRITE),
    ("SET DEFAULT ROLE r FOR u", P, Flag.WRITE),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", P, N),
    ("SET TRANSACTION READ ONLY", P, N),
    # -- multi-statement -----------------------------------------------------------------------
    ("SELECT 1; SELECT 2", P, Flag.MULTI_STATEMENT),
    ("SELECT 1; DELETE FROM t", P, Flag.MULTI_STATEMENT | Flag.WRITE),
    ("SET @x = 1; SELECT @x", P, Flag.MULTI_STATEMENT | Flag.SESSION_STATE),
    ("SELECT 'a;b'; SELECT 2", P, Flag.MULTI_STATEMENT),
    # -- executable comments -------------------------------------------------------------------
    ("/*!50000 INSERT INTO t VALUES (1) */", P, Flag.WRITE),
    ("/*M!100100 DELETE FROM t */", P, Flag.WRITE),
    ("/*!40101 SET NAMES utf8 */", A, Flag.SESSION_STATE),
    ("SELECT /*!50000 a */ FROM t /*!50000 FOR UPDATE */", P, Flag.LOCKING_READ),
    ("/*!50001 CREATE ALGORITHM=UNDEFINED */ /*!50001 VIEW v AS SELECT 1 */", P, Flag.WRITE),
    # -- unparseable / empty -------------------------------------------------------------------
    ("", P, N),
    ("   \n\t ", P, N),
    (";", P, N),
    ("-- only a comment", P, N),
    ("/* only a comment */", P, N),
    ("SELECT 'unterminated", P, N),
    ('SELECT "unterminated', P, N),
    ("SELECT `unterminated", P, N),
    ("\x00\x01", P, N),
    ("!!!", P, N),
    ("42", P, N),
    ("(UPDATE t SET a = 1)", P, N),
    # -- data and schema changes ---------------------------------------------------------------
    ("INSERT INTO t (a) VALUES (1)", P, Flag.WRITE),
    ("INSERT t SET a = 1", P, Flag.WRITE),
    ("INSERT INTO t SELECT * FROM u", P, Flag.WRITE),
    ("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = VALUES(a)", P, Flag.WRITE),
    ("REPLACE INTO t VALUES (1)", P, Flag.WRITE),
    ("UPDATE t SET a = a + 1 WHERE id = 3", P, Flag.WRITE),
    ("UPDATE t JOIN u ON t.id = u.id SET t.a = u.a", P, Flag.WRITE),
    ("DELETE FROM t WHERE id = 1", P, Flag.WRITE),
    ("DELETE t FROM t JOIN u USING (id)", P, Flag.WRITE),
    ("DELETE FROM t RETURNING id", P, Flag.WRITE),
    ("TRUNCATE TABLE t", P, Flag.WRITE),
    ("CREATE TABLE t (a INT)", P, Flag.WRITE),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", P, Flag.WRITE),
    ("CREATE INDEX i ON t (a)", P, Flag.WRITE),
    ("CREATE SEQUENCE s", P, Flag.WRITE),
    ("ALTER TABLE t ADD COLUMN b INT", P, Flag.WRITE),
    ("DROP TABLE t", P, Flag.WRITE),
    ("DROP DATABASE d", P, Flag.WRITE),
    ("RENAME TABLE a TO b", P, Flag.WRITE),
    ("GRANT SELECT ON *.* TO u", P, Flag.WRITE),
    ("REVOKE ALL ON *.* FROM u", P, Flag.WRITE),
    ("OPTIMIZE TABLE t", P, Flag.WRITE),
    ("REPAIR TABLE t", P, Flag.WRITE),
    ("KILL 42", P, Flag.WRITE),
    ("PURGE BINARY LOGS BEFORE NOW()", P, Flag.WRITE),
    ("INSTALL SONAME 'ha_x'", P, Flag.WRITE),
    ("START SLAVE", P, N),
    ("STOP SLAVE", P, Flag.WRITE),
    ("BEGIN NOT ATOMIC SELECT 1; END", P, Flag.MULTI_STATEMENT),
    # -- temporary tables ----------------------------------------------------------------------
    ("CREATE TEMPORARY TABLE tmp (a INT)", P, Flag.WRITE | Flag.PIN),
    ("CREATE TEMPORARY TABLE IF NOT EXISTS tmp AS SELECT 1", P, Flag.WRITE | Flag.PIN),
    ("CREATE OR REPLACE TEMPORARY TABLE tmp (a INT)", P, Flag.WRITE | Flag.PIN),
    ("DROP TEMPORARY TABLE tmp", P, Flag.WRITE | Flag.UNPIN),
    ("DROP TEMPORARY TABLE IF EXISTS tmp", P, Flag.WRITE | Flag.UNPIN),
    # -- transactions --------------------------------------------------------------------------
    ("BEGIN", P, Flag.TXN_BEGIN),
    ("BEGIN WORK", P, Flag.TXN_BEGIN),
    ("START TRANSACTION", P, Flag.TXN_BEGIN),
    ("START TRANSACTION READ WRITE", P, Flag.TXN_BEGIN),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT", P, Flag.TXN_BEGIN),
    ("COMMIT", P, Flag.TXN_END),
    ("COMMIT WORK", P, Flag.TXN_END),
    ("ROLLBACK", P, Flag.TXN_END),
    ("COMMIT AND CHAIN", P, Flag.TXN_END | Flag.TXN_BEGIN),
    ("ROLLBACK TO SAVEPOINT sp1", P, N),
    ("SAVEPOINT sp1", P, N),
    ("RELEASE SAVEPOINT sp1", P, N),
    # -- plain reads ---------------------------------------------------------------------------
    ("SELECT 1", R, N),
    ("SELECT * FROM t WHERE id = 1", R, N),
    ("select a, b from t where c like 'x%' order by a desc limit 10", R, N),
    ("SELECT COUNT(*), MAX(a), GROUP_CONCAT(b SEPARATOR ',') FROM t GROUP BY c", R, N),
    ("SELECT a FROM t UNION SELECT b FROM u", R, N),
    ("SELECT a FROM t UNION ALL SELECT b FROM u ORDER BY 1", R, N),
    ("(SELECT a FROM t) UNION (SELECT b FROM u)", R, N),
    ("((SELECT 1))", R, N),
    ("SELECT a FROM t INTERSECT SELECT a FROM u", R, N),
    ("WITH c AS (SELECT * FROM t) SELECT * FROM c", R, N),
    (
        "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT * FROM r",
        R,
        N,
    ),
    ("WITH a AS (SELECT 1), b (x, y) AS (SELECT 1, 2) SELECT * FROM a, b", R, N),
    ("TABLE t", R, N),
    ("TABLE t ORDER BY a LIMIT 3", R, N),
    ("VALUES ROW(1, 2), ROW(3, 4)", R, N),
    ("VALUES (1, 2)", R, N),
    ("SELECT * FROM t WHERE a IN (SELECT b FROM u) AND EXISTS (SELECT 1 FROM v)", R, N),
    ("SELECT t.update, t.delete, t.insert FROM t", R, N),
    ("SELECT CAST(a AS DECIMAL(10, 2)), CONVERT(b, CHAR(10)) FROM t", R, N),
    ("SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t", R, N),
    ("SELECT a, SUM(b) OVER w FROM t WINDOW w AS (ORDER BY a)", R, N),
    ("SELECT JSON_EXTRACT(doc, '$.a'), JSON_VALUE(doc, '$.b') FROM t", R, N),
    ("SELECT * FROM JSON_TABLE('[1,2]', '$[*]' COLUMNS(a INT PATH '$')) AS jt", R, N),
    ("SELECT a FROM t USE INDEX (i1) FORCE INDEX (i2) WHERE a BETWEEN 1 AND 2", R, N),
    ("SELECT INSERT('abc', 1, 1, 'x'), REPLACE(a, 'b', 'c') FROM t", R, N),
    ("SELECT a FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2026-01-01 00:00:00'", R, N),
    ("SELECT NOW(), CURDATE(), UUID(), RAND(), CONNECTION_ID(), DATABASE()", R, N),
    ("SELECT COUNT(DISTINCT a) FROM t GROUP BY b WITH ROLLUP", R, N),
    ("SELECT @x, @y", R, N),
    ("SELECT @@version, @@session.sql_mode", R, N),
    ("SELECT a FROM t WHERE b = 'x; DELETE FROM t'", R, N),
    ("SELECT a FROM t WHERE b = 'it''s; fine' AND c = \"q;\"", R, N),
    ("SELECT 'FOR UPDATE', 'INTO @x', 'GET_LOCK(1)'", R, N),
    ("SELECT `for`, `update` FROM t", R, N),
    ("SELECT 1;", R, N),
    ("SELECT 1 ;  ", R, N),
    ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", R, N),
    ("/*+ BKA(t) */ SELECT * FROM t", R, N),
    ("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", R, N),
    ("/* app:checkout */ SELECT * FROM carts", R, N),
    ("-- a comment\nSELECT 1", R, N),
    ("# a comment\nSELECT 1", R, N),
    ("SELECT 1 -- trailing", R, N),
    ("SELECT 1 /* trailing */", R, N),
    ("SELECT * FROM t WHERE a = ? AND b = %s AND c = :c", R, N),
    ("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t", R, N),
    ("SET STATEMENT max_statement_time = 1 FOR UPDATE t SET a = 1", P, Flag.WRITE),
    # -- SHOW / DESCRIBE / EXPLAIN / HELP ------------------------------------------------------
    ("SHOW TABLES", R, N),
    ("SHOW FULL TABLES FROM d LIKE 't%'", R, N),
    ("SHOW DATABASES", R, N),
    ("SHOW COLUMNS FROM t", R, N),
    ("SHOW CREATE TABLE t", R, N),
    ("SHOW INDEX FROM t", R, N),
    ("SHOW VARIABLES LIKE 'sql_mode'", R, N),
    ("SHOW PROCESSLIST", R, N),
    ("DESCRIBE t", R, N),
    ("DESC t", R, N),
    ("DESCRIBE SELECT * FROM t", R, N),
    ("EXPLAIN SELECT * FROM t WHERE id = 1", R, N),
    ("EXPLAIN EXTENDED SELECT 1", R, N),
    ("EXPLAIN FORMAT=JSON SELECT * FROM t", R, N),
    ("EXPLAIN t", R, N),
    ("EXPLAIN UPDATE t SET a = 1", P, N),
    ("EXPLAIN SELECT * FROM t FOR UPDATE", P, N),
    ("HELP 'SELECT'", R, N),
    # -- read-only transaction -----------------------------------------------------------------
    ("START TRANSACTION READ ONLY", R, Flag.TXN_BEGIN | Flag.TXN_READ_ONLY),
    ("start transaction read only", R, Flag.TXN_BEGIN | Flag.TXN_READ_ONLY),
    (
        "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT",
        R,
        Flag.TXN_BEGIN | Flag.TXN_READ_ONLY,
    ),
    # -- session state -------------------------------------------------------------------------
    ("SET NAMES utf8mb4", A, Flag.SESSION_STATE),
    ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'", A, Flag.SESSION_STATE),
    ("SET CHARACTER SET utf8", A, Flag.SESSION_STATE),
    ("SET @x = 1", A, Flag.SESSION_STATE),
    ("SET @x = 'a', @y = 2", A, Flag.SESSION_STATE),
    ("SET SESSION sql_mode = 'STRICT_ALL_TABLES'", A, Flag.SESSION_STATE),
    ("SET sql_mode = ''", A, Flag.SESSION_STATE),
    ("SET @@session.time_zone = '+00:00'", A, Flag.SESSION_STATE),
    ("SET LOCAL wait_timeout = 10", A, Flag.SESSION_STATE),
    ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", A, Flag.SESSION_STATE),
    ("SET ROLE admin", A, Flag.SESSION_STATE),
    ("USE shop", A, Flag.SESSION_STATE),
    ("use `my-db`", A, Flag.SESSION_STATE),
    ("SET autocommit = 0", A, Flag.SESSION_STATE | Flag.TXN_BEGIN),
    ("SET autocommit=OFF", A, Flag.SESSION_STATE | Flag.TXN_BEGIN),
    ("SET @@autocommit = 0", A, Flag.SESSION_STATE | Flag.TXN_BEGIN),
    ("SET SESSION autocommit = 1", A, Flag.SESSION_STATE | Flag.TXN_END),
    ("SET @x = (SELECT MAX(id) FROM t)", P, Flag.SESSION_STATE),
    ("SET @x = NOW()", P, Flag.SESSION_STATE),
    ("SET @l = GET_LOCK('a', 1)", P, Flag.SESSION_STATE | Flag.PIN),
    # -- same connection as the previous statement ---------------------------------------------
    ("SELECT FOUND_ROWS()", L, N),
    ("SELECT ROW_COUNT()", L, N),
    ("SHOW WARNINGS", L, N),
    ("SHOW WARNINGS LIMIT 10", L, N),
    ("SHOW ERRORS", L, N),
    ("SHOW COUNT(*) WARNINGS", L, N),
    ("SHOW PROFILE", L, N),
    # -- routing hints -------------------------------------------------------------------------
    ("/* rwsplit:primary */ SELECT * FROM t", P, Flag.HINT),
    ("/*rwsplit:primary*/ SELECT 1", P, Flag.HINT),
    ("/* rwsplit:master */ SELECT 1", P, Flag.HINT),
    ("-- maxscale route to master\nSELECT * FROM t", P, Flag.HINT),
    ("SELECT * FROM t -- maxscale route to master", P, Flag.HINT),
    ("/* rwsplit:primary */ SELECT GET_LOCK('a', 1)", P, Flag.HINT | Flag.PIN),
    ("/* rwsplit:replica */ SELECT report_total(a) FROM t", R, Flag.HINT),
    ("/* rwsplit:replica */ SELECT LAST_INSERT_ID()", R, Flag.HINT),
    ("-- maxscale route to slave\nSELECT my_udf(1)", R, Flag.HINT),
    ("/* rwsplit:slave */ SELECT 1", R, Flag.HINT),
    ("# maxscale route to last\nSELECT 1", L, Flag.HINT),
    # A replica hint never sends a write, a lock or session state away from the primary.
    ("/* rwsplit:replica */ INSERT INTO t VALUES (1)", P, Flag.WRITE),
    ("/* rwsplit:replica */ SELECT * FROM t FOR UPDATE", P, Flag.LOCKING_READ),
    ("/* rwsplit:replica */ SELECT NEXTVAL(s)", P, Flag.WRITE),
    ("/* rwsplit:replica */ SELECT a INTO @x FROM t", P, Flag.SESSION_STATE),
    ("/* rwsplit:replica */ SELECT GET_LOCK('a', 1)", P, Flag.PIN),
    ("/* rwsplit:replica */ CALL p()", P, Flag.WRITE),
    ("/* rwsplit:replica */ SELECT 1; DELETE FROM t", P, Flag.MULTI_STATEMENT),
    ("-- maxscale route to slave\nUPDATE t SET a = 1", P, Flag.WRITE),
    ("/* rwsplit:replica */ SET @x = 1", A, Flag.SESSION_STATE),
    # hints inside strings are not hints
    ("SELECT '/* rwsplit:primary */'", R, N),
    ("UPDATE t SET note = '-- maxscale route to slave'", P, Flag.WRITE),
]


def test_table_covers_enough_statements() -> None:
    assert len(TABLE) >= 150
    assert {target for _, target, _ in TABLE} == set(Target)


@pytest.mark.parametrize(("sql", "target", "flags"), TABLE, ids=[s[:50] for s, _, _ in TABLE])
def test_statement_table(sql: str, target: Target, flags: Flag) -> None:
    c = classify(sql)
    assert c.target is target, c.reason
    assert c.flags & flags == flags, (c.flags, c.reason)
    assert c.reason


@pytest.mark.parametrize(
    ("sql", "resource"),
    [
        ("SELECT GET_LOCK('a', 1)", "named lock"),
        ("SELECT RELEASE_LOCK('a')", "named lock"),
        ("SELECT RELEASE_ALL_LOCKS()", "all named locks"),
        ("LOCK TABLES t READ", "LOCK TABLES"),
        ("UNLOCK TABLES", "LOCK TABLES"),
        ("FLUSH TABLES WITH READ LOCK", "LOCK TABLES"),
        ("HANDLER t OPEN", "HANDLER t"),
        ("HANDLER db.t OPEN AS h", "HANDLER h"),
        ("HANDLER h CLOSE", "HANDLER h"),
        ("PREPARE stmt1 FROM 'SELECT 1'", "prepared statement stmt1"),
        ("DEALLOCATE PREPARE stmt1", "prepared statement stmt1"),
        ("DROP PREPARE `stmt1`", "prepared statement stmt1"),
        ("CREATE TEMPORARY TABLE Tmp (a INT)", "temporary table tmp"),
        ("CREATE TEMPORARY TABLE IF NOT EXISTS db.`tmp` (a INT)", "temporary table tmp"),
        ("DROP TEMPORARY TABLE IF EXISTS tmp", "temporary table tmp"),
        ("DROP TABLE tmp", "temporary table tmp"),
    ],
)
def test_pin_resources(sql: str, resource: str) -> None:
    assert classify(sql).resource == resource


T = table("t", column("id"), column("a"))


@pytest.mark.parametrize(
    ("clause", "target"),
    [
        (select(T).where(T.c.id == 1), R),
        (select(func.count()).select_from(T), R),
        (select(func.max(T.c.a), func.coalesce(T.c.a, 0), func.now()), R),
        (select(func.lower(T.c.a)).where(func.length(T.c.a) > 2).order_by(func.rand()), R),
        (select(func.my_udf(T.c.a)), P),
        (select(T).where(func.check_stock(T.c.id) > 0), P),
        (select(func.nextval("s")), P),
        (select(func.last_insert_id()), P),
        (select(func.get_lock("a", 1)), P),
        (select(func.shop.price(1)), P),
        (select(func.found_rows()), L),
        (select(literal_column("NEXTVAL(s)")), P),
        (select(T).where(text("my_udf(a) > 1")), P),
        (select(T).where(text("a > 1")), R),
        (select(T).prefix_with("SQL_CALC_FOUND_ROWS"), P),
        (select(T).suffix_with("FOR UPDATE"), P),
        (select(T).where(T.c.id.in_(select(T.c.id).with_for_update())), P),
        (select(literal(1)).union(select(func.my_udf(1))), P),
        (select(T.c.a).where(T.c.id == select(func.max(T.c.id)).scalar_subquery()), R),
        (text("SELECT 1").columns(column("x")), R),
    ],
)
def test_select_constructs(clause: object, target: Target) -> None:
    assert classify_clause(clause).target is target, classify_clause(clause).reason


def test_select_constructs_are_cached_by_cache_key() -> None:
    def make() -> Select[tuple[object]]:
        return select(func.my_udf(T.c.a)).where(T.c.id == 5)

    assert classify_clause(make()) is classify_clause(make())
    assert classify_clause(make()).target is P
