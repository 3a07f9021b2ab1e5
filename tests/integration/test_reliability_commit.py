"""Issue 17, defect 5: "nothing committed" must never be said of a statement that committed.

A differential test asks a real server, for each statement form, whether it commits (run it
inside an open transaction after an ``INSERT``, then ``ROLLBACK``: the row survives only if
the statement committed) and compares that with :func:`rwsplit.routing._implicit_commit.
may_commit`. Then, through a :class:`~rwsplit.Cluster`, the reply of a committing statement is
dropped after the server ran it: the application must get
:class:`~rwsplit.TransactionOutcomeUnknownError`, never :class:`~rwsplit.RetryableWriteError`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
from sqlalchemy import text

from rwsplit import Cluster, RetryableWriteError, RwSplitError, TransactionOutcomeUnknownError
from rwsplit.cluster import _FENCE_CHECK
from rwsplit.routing._implicit_commit import may_commit
from rwsplit.sandbox import Sandbox

from ..fix_sandbox import on_mysql

pytestmark = [pytest.mark.integration]

DB = "relcommit"

# Statement forms: ``{n}`` makes each run's object names unique.
FORMS = [
    # Never commit.
    "SELECT 1",
    "(SELECT 1)",
    "SELECT * FROM other FOR UPDATE",
    "INSERT INTO other VALUES (1)",
    "/* tagged */ INSERT INTO other VALUES (2)",
    "UPDATE other SET a = a",
    "DELETE FROM other WHERE a < 0",
    "REPLACE INTO other VALUES (3)",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "DO 1",
    "SET @x = 1",
    "SET NAMES utf8mb4",
    "SAVEPOINT sp",
    "SHOW TABLES",
    "EXPLAIN SELECT 1",
    "CREATE TEMPORARY TABLE tmp{n} (a INT)",
    "DROP TEMPORARY TABLE IF EXISTS nothere{n}",
    "SET STATEMENT max_statement_time = 10 FOR SELECT 1",
    "PREPARE s_tmp FROM 'SELECT 1'",
    "ROLLBACK",
    # Commit, or may (rwsplit must say "unknown" for all of them).
    "SET autocommit = 0",
    "EXECUTE s_insert",
    "CALL p_read()",
    "CREATE TABLE c{n} (a INT)",
    "-- note\nCREATE TABLE c{n} (a INT)",
    "# note\nCREATE TABLE c{n} (a INT)",
    "/* note */ CREATE TABLE c{n} (a INT)",
    "/*!40101 CREATE TABLE c{n} (a INT) */",
    "/*M!100100 CREATE TABLE c{n} (a INT) */",
    "SET STATEMENT max_statement_time = 10 FOR CREATE TABLE c{n} (a INT)",
    "ALTER TABLE other COMMENT 'c{n}'",
    "DROP TABLE IF EXISTS nothere{n}",
    "TRUNCATE TABLE trunc",
    "CREATE VIEW v{n} AS SELECT 1",
    "CREATE USER rel_u{n}",
    "GRANT SELECT ON relcommit.* TO rel_u",
    "SET PASSWORD FOR rel_u = PASSWORD('pw{n}')",
    "BEGIN",
    "START TRANSACTION",
    "COMMIT",
    "SET autocommit = 1",
    "SET @@session.autocommit = 1",
    "SET SESSION autocommit = ON",
    "LOCK TABLES other WRITE",
    "CALL p_commit()",
    "EXECUTE s_commit",
    "EXECUTE s_ddl",
    "CHECK TABLE other",
    "ANALYZE TABLE other",
    "OPTIMIZE TABLE other",
    "REPAIR TABLE other",
    "FLUSH TABLES",
]

# MySQL spells these forms its own way (the MariaDB ones are syntax errors there, or, for
# ``/*M!...*/``, a comment: an empty query).
MYSQL_FORMS = {
    "SET STATEMENT max_statement_time = 10 FOR SELECT 1": (
        "SELECT /*+ SET_VAR(max_execution_time = 10) */ 1"
    ),
    "/*M!100100 CREATE TABLE c{n} (a INT) */": "/*!80000 CREATE TABLE c{n} (a INT) */",
    "SET STATEMENT max_statement_time = 10 FOR CREATE TABLE c{n} (a INT)": (
        "CREATE TABLE IF NOT EXISTS c{n} (a INT) COMMENT 'set statement'"
    ),
    "SET PASSWORD FOR rel_u = PASSWORD('pw{n}')": "SET PASSWORD FOR rel_u = 'pw{n}'",
}


def _form(form: str) -> str:
    """*form* as the server here spells it."""
    return MYSQL_FORMS.get(form, form) if on_mysql() else form


FORMS = [_form(f) for f in FORMS]


@pytest.fixture(scope="module")
def db(sandbox: Sandbox) -> Iterator[Sandbox]:
    with contextlib.closing(sandbox.primary.connect()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB}")
        cur.execute(f"USE {DB}")
        cur.execute("CREATE TABLE probe (id INT PRIMARY KEY)")
        cur.execute("CREATE TABLE other (a INT)")
        cur.execute("CREATE TABLE trunc (a INT)")
        cur.execute("CREATE PROCEDURE p_commit() BEGIN INSERT INTO other VALUES (9); COMMIT; END")
        cur.execute("CREATE PROCEDURE p_read() SELECT 1")
        cur.execute("CREATE USER IF NOT EXISTS rel_u")
    sandbox.wait_caught_up()
    yield sandbox
    with contextlib.closing(sandbox.primary.connect()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute("SELECT user FROM mysql.user WHERE user LIKE 'rel\\_u%'")
        for (user,) in cur.fetchall():
            cur.execute(f"DROP USER '{user}'@'%'")


_ids = itertools.count(1)


def test_differential_what_a_lost_reply_is_called_against_what_the_server_did(
    db: Sandbox, cluster_db: Cluster
) -> None:
    """Every form runs after an INSERT in a session transaction, its reply is lost; the INSERT
    is on the server afterwards only if the form committed it. rwsplit's verdict is the error
    the application got."""
    verdicts: dict[str, tuple[bool, str]] = {}
    for form in FORMS:
        n = next(_ids)
        with cluster_db.session() as session:
            for prepare in (
                "PREPARE s_insert FROM 'INSERT INTO other VALUES (5)'",
                "PREPARE s_commit FROM 'COMMIT'",
                f"PREPARE s_ddl FROM 'CREATE TABLE IF NOT EXISTS p{n} (a INT)'",
            ):
                session.execute(text(prepare))
            session.execute(text("INSERT INTO probe VALUES (:n)"), {"n": n})
            drop_next_reply(session.connection().connection.dbapi_connection)
            with pytest.raises(RwSplitError) as caught:
                session.execute(text(form.format(n=n)))
            session.rollback()
        verdicts[form] = (probe_committed(db, n), type(caught.value).__name__)
    lies = [f for f, (committed, said) in verdicts.items() if committed and said != UNKNOWN]
    assert not lies, f"committed on the server, but the application was told: {lies}"
    # Both kinds are present, and what cannot commit stays retryable (the honest promise).
    assert sum(committed for committed, _ in verdicts.values()) >= 25
    assert {f: said for f, (_, said) in verdicts.items() if said != UNKNOWN} == {
        f: "RetryableWriteError" for f in FORMS[:20]
    }
    # The classifier-level answer agrees with the session's.
    assert [f for f in FORMS if not may_commit(f)] == FORMS[:20]


UNKNOWN = TransactionOutcomeUnknownError.__name__


# ---------------------------------------------------------------------------------------------
# The reply lost after the server ran the statement
# ---------------------------------------------------------------------------------------------


def drop_next_reply(dbapi: Any) -> None:
    """The next statement on PyMySQL connection *dbapi* runs on the server, and its reply is
    lost: read and thrown away, the socket closed, the driver's status left as it was before
    (the client never saw that reply), and the error a lost connection raises. rwsplit's own
    fence check before a commit (it runs first) is let through."""
    original = dbapi.query

    def dropped(sql: Any, unbuffered: bool = False) -> Any:
        text_sql = sql.decode() if isinstance(sql, bytes) else sql
        if text_sql == _FENCE_CHECK:
            return original(sql, unbuffered)
        del dbapi.query
        status = dbapi.server_status
        try:
            original(sql, unbuffered)
        finally:
            dbapi.server_status = status
            dbapi._force_close()
        raise pymysql.err.OperationalError(
            2013, "Lost connection to server during query (reply dropped by the test)"
        )

    dbapi.query = dropped


def probe_committed(sb: Sandbox, n: int) -> bool:
    with contextlib.closing(sb.primary.connect(DB)) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM probe WHERE id = %s", (n,))
        row = cur.fetchone()
        return bool(row and row[0])


@pytest.fixture
def cluster_db(db: Sandbox) -> Iterator[Cluster]:
    url = db.primary_url.rsplit("/", 1)[0] + f"/{DB}"
    with Cluster(url) as c:
        yield c


@pytest.mark.parametrize(
    "setup, form",
    [
        ((), "-- migration 12\nCREATE TABLE d{n} (a INT)"),
        ((), "/*!40101 CREATE TABLE d{n} (a INT) */"),
        ((), "CALL p_commit()"),
        ((), "CHECK TABLE other"),
        ((), _form("SET PASSWORD FOR rel_u = PASSWORD('pw{n}')")),
        (("PREPARE s_commit FROM 'COMMIT'",), "EXECUTE s_commit"),
        (("SET autocommit = 1",), "INSERT INTO other VALUES (7)"),
    ],
    ids=[
        "dash-comment-ddl",
        "executable-comment-ddl",
        "call",
        "check",
        "set-password",
        "execute-commit",
        "insert-after-set-autocommit",
    ],
)
def test_a_lost_reply_after_a_commit_is_outcome_unknown(
    db: Sandbox, cluster_db: Cluster, setup: tuple[str, ...], form: str
) -> None:
    n = next(_ids)
    with cluster_db.session() as session:
        for statement in setup:
            session.execute(text(statement))
        session.execute(text("INSERT INTO probe VALUES (:n)"), {"n": n})
        drop_next_reply(session.connection().connection.dbapi_connection)
        with pytest.raises(TransactionOutcomeUnknownError) as caught:
            session.execute(text(form.format(n=n)))
        assert not isinstance(caught.value, RetryableWriteError)
        session.rollback()
    # The case is real: the server did commit what the application was not told about.
    assert probe_committed(db, n)


def test_a_lost_reply_of_a_plain_write_in_a_transaction_stays_retryable(
    db: Sandbox, cluster_db: Cluster
) -> None:
    n = next(_ids)
    with cluster_db.session() as session:
        session.execute(text("INSERT INTO probe VALUES (:n)"), {"n": n})
        drop_next_reply(session.connection().connection.dbapi_connection)
        with pytest.raises(RetryableWriteError):
            session.execute(text("INSERT INTO other VALUES (8)"))
        session.rollback()
    assert not probe_committed(db, n)
