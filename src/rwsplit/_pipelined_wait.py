"""Read-your-writes in one round trip: the causal wait and the read as one multi-statement.

A causal read used to cost two round trips on its replica: ``MASTER_GTID_WAIT`` (MySQL:
``WAIT_FOR_EXECUTED_GTID_SET``), then the read. Here both travel in one ``COM_QUERY``, the
wait first, built by :meth:`ReplicationDialect.wait_before_read
<rwsplit.servers.base.ReplicationDialect.wait_before_read>`: it returns one row when the
replica applied the token in time and fails otherwise, and a multi-statement stops at its first
error, so on a timeout the read never runs there (nothing to discard, no partial result); the
caller re-runs it on the primary (:class:`WaitMissed`). Replica connections are autocommit and
the wait sets nothing, so nothing of a failed attempt stays on the connection.

Multi-statements need ``CLIENT_MULTI_STATEMENTS`` on the connection, which would also let a
statement with its own ``;`` run as several. Replica connections that have the flag therefore
send every statement through :func:`checked_text`: the exact text the server receives
(parameters interpolated first) must be one statement, else :class:`~rwsplit.RoutingError`
and nothing is sent. Only rwsplit's own wait is ever put in front of a statement, and only in
front of a plain read (the router decides that).
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._server_errors import REPLICA_UNUSABLE_CODES
from .errors import RoutingError
from .routing import _lexer
from .servers import MariaDB

_MARIADB = MariaDB()

__all__ = ["PENDING", "PendingWait", "WaitMissed", "checked_text", "several_statements"]

MULTI_STATEMENTS = 1 << 16
"""``CLIENT_MULTI_STATEMENTS``: the same bit in PyMySQL, aiomysql and mysqlclient."""
WAIT_MISSED_CODE = 1242
"""The server's error when the wait's ``ELSE`` branch runs: "Subquery returns more than 1 row"."""

_statement_end = _lexer.STATEMENT_END_RE.match
_WS = " \t\n\r\f\v;"


def several_statements(text: str) -> bool:
    """True unless *text* is certainly one statement (an optional trailing ``;`` aside).

    Strings, quoted names and comments are skipped as the server's lexer skips them; text the
    scan cannot vouch for (a string left open, anything after the first ``;`` that ends a
    statement) counts as several.

    >>> several_statements("SELECT ';' FROM t"), several_statements("SELECT 1; DROP TABLE t")
    (False, True)
    """
    if ";" not in text:
        return False
    m = _statement_end(text)
    end = m.end() if m is not None else 0
    if end >= len(text):
        return False
    return text[end] != ";" or bool(text[end + 1 :].strip(_WS))


def checked_text(text: str) -> str:
    """*text* if it is one statement; else raise :class:`~rwsplit.RoutingError`."""
    if ";" in text and several_statements(text):
        raise RoutingError(
            "rwsplit does not send several statements in one call to a replica (its "
            "connections accept multi-statements only for rwsplit's own causal wait); send "
            "them one by one"
        )
    return text


class WaitMissed(Exception):
    """The wait sent ahead of a read did not succeed in time: the read did not run there."""

    def __init__(self, node: str, token: str, code: int) -> None:
        super().__init__(f"replica {node} has not applied {token} in time (error {code})")
        self.node = node
        self.token = token
        self.code = code


@dataclass(slots=True)
class PendingWait:
    """A causal wait to put in front of the next statement sent on *engine* in this context."""

    engine: Any
    """The replica's engine (its sync face under asyncio)."""
    node: str
    token: str
    sql: str
    """:meth:`wait_before_read` text."""
    passed: Callable[[PendingWait, float], None]
    """Called when the wait succeeded (with the seconds it took together with the read)."""
    sent: bool = False


PENDING: contextvars.ContextVar[PendingWait | None] = contextvars.ContextVar(
    "rwsplit_pending_wait", default=None
)
"""The wait the statement about to run on a replica must carry (set by the session's
``get_bind``, consumed by the first statement on that engine, cleared after the execution)."""


def is_gtid_text(token: str) -> bool:
    """True when *token* may be quoted into the wait (see ``wait_before_read``)."""
    return _MARIADB.wait_before_read(token, 0) is not None


def error_code(exc: BaseException) -> int | None:
    args: tuple[object, ...] = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    orig = getattr(exc, "orig", None)  # SQLAlchemy's asyncio adapter wraps the driver's error
    return error_code(orig) if isinstance(orig, BaseException) else None


def run_with_wait(cursor: Any, text: str, pending: PendingWait) -> None:
    """Execute the wait and *text* as one multi-statement on *cursor*; leave the cursor on
    *text*'s result. :raises WaitMissed: the wait timed out (the read did not run)."""
    pending.sent = True
    started = time.monotonic()
    try:
        cursor.execute(pending.sql + ";\n" + text)
    except Exception as exc:
        # An error of the first statement is the wait's: timed out (1242), or a token this
        # server cannot parse. Unless the replica itself is unusable (then the caller takes
        # it out and retries), the read goes to the primary, as after a standalone wait.
        code = error_code(exc)
        if code is None or code in REPLICA_UNUSABLE_CODES:
            raise
        raise WaitMissed(pending.node, pending.token, code) from None
    row = cursor.fetchone()
    cursor.nextset()
    if row is None or row[0] != 1 or cursor.description is None:  # pragma: no cover - guard
        raise RoutingError(
            f"the causal wait on replica {pending.node} answered {row!r}; expected (1,) and "
            "then the read's rows"
        )
    pending.passed(pending, time.monotonic() - started)


# ------------------------------------------------------------------ SQLAlchemy engines


def _enable_multi_statements(dialect: Any, rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    cparams["client_flag"] = int(cparams.get("client_flag", 0)) | MULTI_STATEMENTS


def _do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    raw = getattr(cursor, "_cursor", cursor)  # the driver's cursor under the asyncio adapter
    text = raw.mogrify(statement, parameters) if parameters is not None else statement
    checked_text(text)
    pending = PENDING.get()
    if pending is not None and not pending.sent and pending.engine is context.engine:
        run_with_wait(cursor, text, pending)
    else:
        cursor.execute(text)
    return True


def _do_execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
    return _do_execute(cursor, statement, None, context)


def _do_executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    checked_text(statement)  # each row's values are escaped: the template decides
    return False  # the dialect runs it as usual


_watched: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_replica_engine(engine: Any) -> None:
    """Give a replica engine multi-statements for the causal wait, and the one-statement
    check for everything else (PyMySQL and aiomysql engines only; see :func:`supported`)."""
    from sqlalchemy import event

    event.listen(engine, "do_connect", _enable_multi_statements)
    event.listen(engine, "do_execute", _do_execute)
    event.listen(engine, "do_execute_no_params", _do_execute_no_params)
    event.listen(engine, "do_executemany", _do_executemany)
    _watched.add(engine)


def supported(url: Any) -> bool:
    """Drivers whose cursor rwsplit can drive through a multi-statement."""
    driver = url.get_driver_name()
    if driver == "aiomysql":
        return _async_cursor_has_nextset()
    return bool(driver == "pymysql")


def _async_cursor_has_nextset() -> bool:
    # SQLAlchemy's asyncio adapter for aiomysql gained nextset() after 2.0.16: without it
    # the read cannot be reached behind the wait, so the wait is sent on its own.
    try:
        from sqlalchemy.dialects.mysql import aiomysql
    except ImportError:  # pragma: no cover - aiomysql's dialect always ships
        return False
    cursor = getattr(aiomysql, "AsyncAdapt_aiomysql_cursor", None)
    return cursor is not None and hasattr(cursor, "nextset")


def pipelined(engine: Any) -> bool:
    """True when *engine* was set up by :func:`watch_replica_engine`."""
    return engine in _watched
