"""May this statement have committed? For errors only: what a lost reply leaves unknown.

When the connection to the primary fails under a statement, rwsplit must tell the application
whether anything can have been committed: :class:`~rwsplit.RetryableWriteError` promises
*nothing was*, :class:`~rwsplit.TransactionOutcomeUnknownError` says *check first*. The promise
is only honest for statements that cannot commit: the server commits implicitly before (and
often after) DDL, account management, ``LOCK TABLES``, ``BEGIN``, ``SET autocommit=1``,
``CHECK TABLE`` and more (MariaDB: "SQL statements that cause an implicit commit"), and a
``CALL`` or an ``EXECUTE`` runs statements this text does not show.

So :func:`may_commit` lists what is positively known **not** to commit (reads, DML, ``SET`` of
other variables, savepoints, ``ROLLBACK``, ``PREPARE`` ...) and answers ``True`` for everything
else, unknown verbs included. The text is read by the classifier's lexer: comments are dropped,
executable comments (``/*!40101 ... */``, ``/*M!100100 ... */``) are code, and a statement whose
executable comments a server may run or skip is read both ways. Off the hot path: it runs only
after a failure. ``tests/integration/test_reliability_commit.py`` compares it with what a real
server does for each statement form.
"""

from __future__ import annotations

from ._lexer import LPAREN, RPAREN, SEMI, SYSVAR, WORD, LexError, Tok, lex, skipped_view

__all__ = ["may_commit"]

# First words of statements that never commit by themselves. DML may call stored functions,
# and a function cannot commit (the server refuses COMMIT and implicit commits there: 1422).
_NEVER_COMMITS = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "REPLACE",
        "WITH",
        "VALUES",
        "TABLE",
        "DO",
        "SHOW",
        "DESCRIBE",
        "DESC",
        "EXPLAIN",
        "HELP",
        "USE",
        "SAVEPOINT",
        "ROLLBACK",
        "RELEASE",  # RELEASE SAVEPOINT
        "PREPARE",
        "DEALLOCATE",
        "HANDLER",
        "SIGNAL",
        "RESIGNAL",
        "GET",  # GET DIAGNOSTICS
    }
)
_AUTOCOMMIT_NAMES = frozenset(
    {"AUTOCOMMIT", "@@AUTOCOMMIT", "@@SESSION.AUTOCOMMIT", "@@LOCAL.AUTOCOMMIT"}
)


def may_commit(sql: str) -> bool:
    """True unless *sql* is positively known not to commit (nor run a commit) on the server.

    It says nothing of autocommit: an ``INSERT`` on an autocommit connection commits, and
    the caller asks the connection for that.

    >>> may_commit("INSERT INTO t VALUES (1)"), may_commit("-- note\\nCREATE TABLE t (a INT)")
    (False, True)
    >>> may_commit("/*!40101 ALTER TABLE t ADD b INT */"), may_commit("CALL p()")
    (True, True)
    >>> may_commit("SET @x = 1"), may_commit("SET STATEMENT max_statement_time=1 FOR DROP TABLE t")
    (False, True)
    """
    try:
        lexed = lex(sql)
        readings = [lexed.toks]
        if lexed.maybe:
            skipped, unsure = skipped_view(sql, lexed.maybe)
            if unsure:
                return True
            readings.append(lex(skipped).toks)
    except LexError:
        return True
    return any(_statements_may_commit(toks) for toks in readings)


def _statements_may_commit(toks: list[Tok]) -> bool:
    start = 0
    for i, tok in enumerate(toks):
        if tok.kind == SEMI:
            if _statement_may_commit(toks[start:i]):
                return True
            start = i + 1
    return _statement_may_commit(toks[start:])


def _statement_may_commit(toks: list[Tok]) -> bool:
    i = 0
    while i < len(toks) and toks[i].kind == LPAREN:  # (SELECT ...) UNION (SELECT ...)
        i += 1
    if i == len(toks):
        return False  # empty: only comments, or a skipped executable comment
    first = toks[i]
    if first.kind != WORD:
        return True
    verb = first.up
    if verb == "SET":
        return _set_may_commit(toks[i:])
    if verb in ("CREATE", "DROP"):
        # CREATE / DROP TEMPORARY TABLE do not commit; everything else CREATE / DROP does.
        return not (i + 1 < len(toks) and toks[i + 1].up == "TEMPORARY")
    return verb not in _NEVER_COMMITS


def _set_may_commit(toks: list[Tok]) -> bool:
    second = toks[1].up if len(toks) > 1 else ""
    if second == "STATEMENT":
        # SET STATEMENT var=value[, ...] FOR <statement>: as <statement>.
        depth = 0
        for i, tok in enumerate(toks):
            if tok.kind == LPAREN:
                depth += 1
            elif tok.kind == RPAREN:
                depth -= 1
            elif depth == 0 and tok.kind == WORD and tok.up == "FOR":
                return _statement_may_commit(toks[i + 1 :])
        return True
    if second in ("PASSWORD", "ROLE", "DEFAULT"):  # account management
        return True
    # SET autocommit = 1 commits the open transaction; any assignment in the list may be it.
    return any(
        (tok.kind == WORD or tok.kind == SYSVAR) and tok.up in _AUTOCOMMIT_NAMES for tok in toks
    )
