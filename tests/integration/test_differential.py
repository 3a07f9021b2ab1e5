"""Differential test of the classifier, with a real server as the oracle.

A corpus of real SQL, taken from MariaDB's own test suite (package ``mariadb-test``, installed
under ``/usr/share/mysql/mysql-test``) plus statements of our own, is run in order on a private
sandbox primary. After each statement (and a COMMIT, when it left a transaction open) the
primary's ``@@gtid_binlog_pos`` tells whether it wrote. Every statement that wrote must be
classified ``primary``; plain reads sent to the primary needlessly are counted and reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest

from rwsplit import Target, classify
from rwsplit.sandbox import Sandbox

from ..fix_sandbox import require_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server(
        "mariadb",
        reason="the corpus is MariaDB's own test suite, judged by MariaDB's @@in_transaction "
        "and gtid_binlog_pos",
    ),
]

MYSQL_TEST = Path(os.environ.get("RWSPLIT_MYSQL_TEST_DIR", "/usr/share/mysql/mysql-test"))

# A deterministic subset: files chosen for the statement kinds of issue 3, then every 20th file
# of the main suite in name order for variety.
CHOSEN = [
    "main/commit.test",
    "main/cte_nonrecursive.test",
    "main/cte_recursive.test",
    "main/delete.test",
    "main/func_misc.test",
    "main/insert.test",
    "main/lock.test",
    "main/select_found.test",
    "main/temp_table.test",
    "main/update.test",
    "main/user_var.test",
    "main/xa.test",
    "main/union.test",
    "main/outfile.test",
    "suite/handler/handler.inc",
    "suite/sql_sequence/next.test",
    "suite/sql_sequence/setval.test",
    "suite/sql_sequence/other.test",
    "suite/sql_sequence/lastval.test",
]
STRIDE = 20
PER_FILE = 400

# Statements of our own: what applications send that the suite exercises little.
OWN = """
CREATE TABLE own_t (id INT AUTO_INCREMENT PRIMARY KEY, a INT, note VARCHAR(40));
INSERT INTO own_t (a, note) VALUES (1, 'x'), (2, 'it''s; fine'), (3, NULL);
SELECT LAST_INSERT_ID();
SELECT * FROM own_t WHERE id = 1;
SELECT * FROM own_t WHERE id = 1 FOR UPDATE;
SELECT * FROM own_t LOCK IN SHARE MODE;
SELECT SQL_CALC_FOUND_ROWS * FROM own_t LIMIT 1;
SELECT FOUND_ROWS();
UPDATE own_t SET a = a + 1 WHERE id = 2;
SELECT ROW_COUNT();
/* app:checkout */ SELECT a FROM own_t WHERE note = 'x';
-- maxscale route to slave
SELECT COUNT(*) FROM own_t;
/* rwsplit:replica */ DELETE FROM own_t WHERE id = 3;
WITH c AS (SELECT id FROM own_t) SELECT * FROM c;
CREATE SEQUENCE own_s;
SELECT NEXTVAL(own_s);
SELECT NEXT VALUE FOR own_s;
SELECT LASTVAL(own_s);
SELECT SETVAL(own_s, 100);
SELECT PREVIOUS VALUE FOR own_s;
CREATE FUNCTION own_w() RETURNS INT DETERMINISTIC
  BEGIN INSERT INTO own_t (a) VALUES (9); RETURN 1; END;
SELECT own_w();
SELECT a FROM own_t WHERE own_w() = 1 LIMIT 1;
SET @v = own_w();
DO own_w();
SELECT test.own_w();
CREATE PROCEDURE own_p() INSERT INTO own_t (a) VALUES (10);
CALL own_p();
SELECT GET_LOCK('own', 1);
SELECT RELEASE_LOCK('own');
SELECT @x := 5;
SELECT @x;
SET @y = 1;
SELECT a INTO @z FROM own_t LIMIT 1;
CREATE TEMPORARY TABLE own_tmp (a INT);
INSERT INTO own_tmp VALUES (1);
SELECT * FROM own_tmp;
DROP TEMPORARY TABLE own_tmp;
LOCK TABLES own_t WRITE;
INSERT INTO own_t (a) VALUES (11);
UNLOCK TABLES;
PREPARE own_ps FROM 'INSERT INTO own_t (a) VALUES (12)';
EXECUTE own_ps;
DEALLOCATE PREPARE own_ps;
HANDLER own_t OPEN;
HANDLER own_t READ FIRST;
HANDLER own_t CLOSE;
/*!50000 INSERT INTO own_t (a) VALUES (13) */;
/*M!100100 UPDATE own_t SET a = 0 WHERE id = 1 */;
SELECT /*!40001 SQL_NO_CACHE */ * FROM own_t;
START TRANSACTION READ ONLY;
SELECT COUNT(*) FROM own_t;
COMMIT;
SET autocommit = 0;
INSERT INTO own_t (a) VALUES (14);
COMMIT;
SET autocommit = 1;
TABLE own_t;
VALUES ROW(1, 2);
ANALYZE TABLE own_t;
EXPLAIN SELECT * FROM own_t;
SHOW TABLES;
DESCRIBE own_t;
"""

MYSQLTEST_COMMANDS = frozenset(
    str.split(
        """
    let eval if while source echo connect connection disconnect error sleep real_sleep perl
    query_vertical send send_eval reap exec exec_in_background remove_file remove_files_wildcard
    write_file append_file cat_file file_exists copy_file copy_files_wildcard move_file mkdir
    rmdir list_files list_files_write_file replace_result replace_regex replace_column
    sorted_result vertical_results horizontal_results inc dec die exit skip change_user
    save_master_pos sync_with_master sync_slave_with_master wait_for_slave_to_stop
    shutdown_server send_shutdown character_set chmod result_format query_get_value
    query_horizontal lowercase_result disable_query_log enable_query_log disable_result_log
    enable_result_log disable_warnings enable_warnings disable_abort_on_error
    enable_abort_on_error disable_ps_protocol enable_ps_protocol disable_view_protocol
    enable_view_protocol disable_cursor_protocol enable_cursor_protocol disable_metadata
    enable_metadata disable_info enable_info disable_connect_log enable_connect_log
    disable_reconnect enable_reconnect disable_session_track_info enable_session_track_info
    dirty_close system start_timer end_timer ping delimiter
    """
    )
)

# Statements that would break the oracle (hide writes from the binary log, move it backwards,
# run writes in the background), take long, or stop the server.
UNSAFE = re.compile(
    r"sql_log_bin|gtid|reset\s+(master|slave|replica)|change\s+master|(start|stop)\s+(slave|"
    r"replica|all)|shutdown|\bkill\b|sleep\s*\(|benchmark\s*\(|event|debug|binlog|"
    r"install\s+(plugin|soname)|uninstall|wsrep|galera|innodb_|flush\s+.*logs|"
    r"set\s+global|set\s+@@global|\bsuper\b|read_only|max_statement_time|lock_wait_timeout"
    r"|mysqltest|load_file|into\s+(outfile|dumpfile)\s+'/|\bhelp\b",
    re.IGNORECASE,
)


def mysqltest_statements(path: Path) -> Iterator[str]:
    """The SQL statements of a mysqltest file, in order (mysqltest commands left out)."""
    delimiter = ";"
    buf: list[str] = []
    in_perl = False
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if in_perl:
            in_perl = line not in ("EOF", "END_OF_FILE")
            continue
        if not buf:
            low = line.lower()
            if not line or line.startswith(("#", "}", "{")):
                continue
            if line.startswith("--"):
                words = line[2:].split()
                if words and words[0].lower() == "delimiter" and len(words) > 1:
                    delimiter = words[1]
                elif words and words[0].lower() in ("perl", "write_file", "append_file"):
                    in_perl = True
                continue
            first = re.split(r"[\s(;]", low, maxsplit=1)[0]
            if first == "delimiter":
                delimiter = line.split(None, 1)[1].strip()[: -len(delimiter)].strip() or delimiter
                continue
            if first in ("perl", "write_file", "append_file"):
                in_perl = True
                continue
            if first in ("if", "while") or first.startswith(("if(", "while(")):
                continue
        buf.append(raw)
        if line.endswith(delimiter):
            stmt = "\n".join(buf).rstrip()[: -len(delimiter)].strip()
            buf = []
            first = re.split(r"[\s(;]", stmt.lower(), maxsplit=1)[0]
            if stmt and first not in MYSQLTEST_COMMANDS and "$" not in stmt:
                yield stmt


def corpus_files() -> list[Path]:
    chosen = [MYSQL_TEST / p for p in CHOSEN if (MYSQL_TEST / p).exists()]
    main = sorted((MYSQL_TEST / "main").glob("*.test"))
    return chosen + [p for p in main[::STRIDE] if p not in chosen]


@dataclass
class Outcome:
    run: int = 0
    failed: int = 0
    writers: int = 0
    misclassified: list[tuple[str, str, str, str]] = field(default_factory=list)
    needless: Counter[str] = field(default_factory=Counter)
    needless_count: int = 0
    connection_bound: int = 0
    targets: Counter[str] = field(default_factory=Counter)


# Reasons that mean "the classifier could not vouch for it", as opposed to reads that belong on
# the primary connection (FOUND_ROWS, LASTVAL, lock queries, LAST_INSERT_ID ...).
UNSURE = ("calls ", "unknown", "unparseable", "incomplete", "EXPLAIN of a statement")
READ_VERBS = ("SELECT", "WITH", "TABLE", "VALUES", "SHOW", "DESC", "EXPLAIN", "(")


class Oracle:
    """One connection to the private primary that runs statements and sees what they wrote."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.conn: pymysql.Connection | None = None  # type: ignore[type-arg]

    def reconnect(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = self.sb.primary.connect(database="test", read_timeout=10, write_timeout=10)
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION max_statement_time = 5")

    def reset_database(self) -> None:
        self.reconnect()
        assert self.conn is not None
        with self.conn.cursor() as cur:
            try:
                cur.execute("DROP DATABASE IF EXISTS test")
            except pymysql.err.OperationalError:
                # SELECT ... INTO OUTFILE 'relative' left files the server does not own.
                for leftover in (Path(self.sb.primary.datadir) / "test").iterdir():
                    leftover.unlink()
                cur.execute("DROP DATABASE IF EXISTS test")
            cur.execute("CREATE DATABASE test")
            cur.execute("USE test")

    def position(self) -> str:
        assert self.conn is not None
        with self.conn.cursor() as cur:
            cur.execute("SELECT @@in_transaction")
            row = cur.fetchone()
            if row and row[0]:
                cur.execute("COMMIT")  # the statement's write reaches the binlog at commit
            cur.execute("SELECT @@global.gtid_binlog_pos")
            row = cur.fetchone()
        value = row[0] if row else ""
        # After SET NAMES binary the server sends bytes.
        return value.decode() if isinstance(value, bytes) else str(value)

    def run(self, sql: str) -> tuple[bool, bool]:
        """Run *sql*; return (succeeded, wrote)."""
        before = self.position()
        ok = True
        try:
            assert self.conn is not None
            with self.conn.cursor() as cur:
                cur.execute(sql)
                while cur.nextset():
                    pass
        except pymysql.err.OperationalError as exc:
            ok = False
            if exc.args and exc.args[0] in (2006, 2013, 2014, 2055):
                self.reconnect()
        except (pymysql.err.MySQLError, ValueError):
            ok = False
        try:
            after = self.position()
        except pymysql.err.MySQLError:
            self.reconnect()
            after = self.position()
        return ok, after != before


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    require_server()
    if not (MYSQL_TEST / "main").is_dir():
        msg = f"MariaDB's test suite is not installed in {MYSQL_TEST} (apt install mariadb-test)"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    sb = Sandbox(replicas=0, base_dir=tmp_path_factory.mktemp("differential"))
    sb.start()
    try:
        with contextlib.closing(sb.primary.connect()) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS test")
        o = Oracle(sb)
        yield o
        if o.conn is not None:
            o.conn.close()
    finally:
        sb.stop()


def run_corpus(oracle: Oracle, sources: list[tuple[str, list[str]]], out: Outcome) -> None:
    for name, statements in sources:
        oracle.reset_database()
        previous = ""
        for sql in statements:
            if UNSAFE.search(sql):
                continue
            c = classify(sql)
            ok, wrote = oracle.run(sql)
            out.run += 1
            out.failed += not ok
            out.targets[c.target.value] += 1
            if wrote:
                out.writers += 1
                if c.target is not Target.PRIMARY:
                    out.misclassified.append((name, sql[:200], c.reason, previous[:200]))
            elif (
                c.target is Target.PRIMARY
                and ok
                and sql.lstrip().upper().startswith(READ_VERBS)
                and not c.flags  # no lock, pin, state or write flag: it looked like a plain read
            ):
                if c.reason.startswith(UNSURE):
                    out.needless_count += 1
                    out.needless[c.reason] += 1
                else:
                    out.connection_bound += 1
            previous = sql


def test_every_statement_that_writes_is_classified_primary(
    oracle: Oracle, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    own = [s.strip() for s in re.split(r";\n", OWN) if s.strip()]
    sources = [("own", own)]
    for path in corpus_files():
        statements = list(mysqltest_statements(path))[:PER_FILE]
        sources.append((str(path.relative_to(MYSQL_TEST)), statements))
    out = Outcome()
    run_corpus(oracle, sources, out)
    elapsed = time.monotonic() - t0

    with capsys.disabled():
        print(
            f"\ndifferential: {len(sources)} files, {out.run} statements run ({out.failed} "
            f"failed on the server), {out.writers} wrote, {len(out.misclassified)} writers "
            f"misclassified; {out.needless_count} plain reads sent to the primary needlessly "
            f"(classifier unsure), {out.connection_bound} reads of primary connection state; "
            f"targets {dict(out.targets)}; {elapsed:.1f}s"
        )
        for reason, n in out.needless.most_common(10):
            print(f"  needless primary x{n}: {reason}")

    assert out.run >= 1500, "the corpus is too small to mean anything"
    assert out.writers >= 300
    assert out.targets["replica"] >= 300
    assert out.misclassified == [], out.misclassified
