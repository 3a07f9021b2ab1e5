"""Statement classification: SQL text or a SQLAlchemy construct → :class:`Classification`.

Pure and cached, no I/O. The rule that keeps it correct: *unknown means primary*. A statement
goes to a replica only when it is positively known to be a plain read; anything the lexer cannot
follow, any verb it does not know, any function it cannot vouch for, goes to the primary.

Text is handled in two steps, both single passes:

1. :func:`_lex` turns the text into a list of :class:`_Tok` with one compiled regular
   expression (hand-written token grammar, MySQL/MariaDB lexical rules: quoting, escapes,
   comments, executable comments ``/*! ... */``, optimizer hints ``/*+ ... */``).
2. :func:`_classify_tokens` dispatches on the first keyword to a rule function in
   :data:`_VERB_RULES`; rules inspect the tokens they need.

Results are cached by statement text (:func:`functools.lru_cache`), so a statement seen before
costs one dictionary lookup.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import CompoundSelect, Select

from .errors import ClassificationError

__all__ = ["Classification", "Flag", "Target", "classify", "classify_clause"]


class Target(enum.Enum):
    """Where a statement must run."""

    PRIMARY = "primary"
    """The writable primary."""
    REPLICA = "replica"
    """Any healthy, caught-up replica."""
    ALL = "all"
    """Session state (``SET``, ``USE``): every connection the session uses must see it."""
    LAST = "last"
    """The connection that ran the previous statement (``FOUND_ROWS()``, ``SHOW WARNINGS``)."""


class Flag(enum.IntFlag):
    """Side effects of a statement on the routing state of its session."""

    NONE = 0
    WRITE = enum.auto()
    """Changes data or schema."""
    LOCKING_READ = enum.auto()
    """Takes row locks (``FOR UPDATE``): the unit of work must stay on the primary."""
    TXN_BEGIN = enum.auto()
    """Opens a transaction (``BEGIN``, ``START TRANSACTION``)."""
    TXN_READ_ONLY = enum.auto()
    """Opens a read-only transaction (``START TRANSACTION READ ONLY``)."""
    TXN_END = enum.auto()
    """Ends a transaction (``COMMIT``, ``ROLLBACK``)."""
    SESSION_STATE = enum.auto()
    """Changes session state (``SET``, ``USE``)."""
    PIN = enum.auto()
    """Creates connection-bound state (locks, temporary tables, prepared statements)."""
    UNPIN = enum.auto()
    """Releases connection-bound state created by a :attr:`PIN` statement."""
    MULTI_STATEMENT = enum.auto()
    """Several statements in one text."""
    HINT = enum.auto()
    """The target comes from a routing hint in a comment, not from the classifier."""


@dataclass(frozen=True, slots=True)
class Classification:
    """The routing decision for one statement.

    >>> c = classify("SELECT * FROM t WHERE id = 1")
    >>> c.target.value, c.reason
    ('replica', 'plain read')
    """

    target: Target
    reason: str
    flags: Flag = Flag.NONE

    @property
    def is_read(self) -> bool:
        """True when the statement may run on a replica."""
        return self.target is Target.REPLICA


# ---------------------------------------------------------------------------------------------
# Lexer
# ---------------------------------------------------------------------------------------------

# Token kinds. Keywords and identifiers are both WORD (upper-cased in ``up``); the rules decide.
WORD, QUOTED_ID, STRING, NUMBER, SYSVAR, USERVAR, HINT, OP, SEMI, LPAREN, RPAREN, COMMA, DOT = (
    range(13)
)


class _Tok(NamedTuple):
    kind: int
    text: str
    up: str  # upper-cased text for WORD / SYSVAR, else the text itself


_TOKEN_RE = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<linecomment>(?:--(?=[\s]|$)|\#)[^\n]*)
    | (?P<hint>/\*\+.*?\*/)
    | (?P<execopen>/\*M?!\d*)
    | (?P<blockcomment>/\*.*?\*/)
    | (?P<execclose>\*/)
    | (?P<string>[nN]?'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<quotedid>`(?:[^`]|``)*`)
    | (?P<sysvar>@@(?:(?:global|session|local)\.)?[A-Za-z0-9_$]+)
    | (?P<uservar>@(?:[A-Za-z0-9_$.]+|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`))
    | (?P<number>(?:0x[0-9A-Fa-f]+|0b[01]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
                 (?![A-Za-z_$]))
    | (?P<word>[^\W\d][\w$]*|\d+[A-Za-z_$][\w$]*|\$[\w$]*)
    | (?P<semi>;)
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<comma>,)
    | (?P<dot>\.)
    | (?P<op>:=|<=>|<<|>>|<=|>=|<>|!=|&&|\|\||->>|->|[-+*/%=<>!~^&|?:{}\[\]\\])
    """,
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)

_KIND_OF_GROUP = {
    "hint": HINT,
    "string": STRING,
    "quotedid": QUOTED_ID,
    "sysvar": SYSVAR,
    "uservar": USERVAR,
    "number": NUMBER,
    "word": WORD,
    "semi": SEMI,
    "lparen": LPAREN,
    "rparen": RPAREN,
    "comma": COMMA,
    "dot": DOT,
    "op": OP,
}
_SKIPPED = frozenset({"ws", "linecomment", "blockcomment", "execopen", "execclose"})


class _LexError(Exception):
    """The text is not lexically valid SQL (unterminated string or comment, stray byte)."""


def _lex(sql: str) -> list[_Tok]:
    """Split *sql* into tokens, dropping whitespace and comments; raise :class:`_LexError`."""
    toks: list[_Tok] = []
    append = toks.append
    pos = 0
    end = len(sql)
    match = _TOKEN_RE.match
    while pos < end:
        m = match(sql, pos)
        if m is None:
            raise _LexError(f"cannot read the text at offset {pos}")
        group = m.lastgroup
        assert group is not None
        pos = m.end()
        if group in _SKIPPED:
            continue
        text = m.group()
        kind = _KIND_OF_GROUP[group]
        append(_Tok(kind, text, text.upper() if kind in (WORD, SYSVAR) else text))
    return toks


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------

_Rule = Callable[[list[_Tok]], Classification]

PRIMARY_UNKNOWN = "unknown statement: sent to the primary"

# Built-in functions known to read nothing but their arguments and the data they are given.
# Anything called like a function that is not here (stored functions, UDFs) goes to the
# primary: it may write. Grow this list rather than special-casing at call sites.
_READ_ONLY_FUNCTIONS = frozenset(
    [
        "ABS",
        "ACOS",
        "ADDDATE",
        "ADDTIME",
        "AES_DECRYPT",
        "AES_ENCRYPT",
        "ANY_VALUE",
        "ASCII",
        "ASIN",
        "ATAN",
        "ATAN2",
        "AVG",
        "BENCHMARK",
        "BIN",
        "BIT_AND",
        "BIT_COUNT",
        "BIT_LENGTH",
        "BIT_OR",
        "BIT_XOR",
        "CAST",
        "CEIL",
        "CEILING",
        "CHAR",
        "CHARSET",
        "CHAR_LENGTH",
        "CHARACTER_LENGTH",
        "COALESCE",
        "COERCIBILITY",
        "COLLATION",
        "COMPRESS",
        "CONCAT",
        "CONCAT_WS",
        "CONNECTION_ID",
        "CONV",
        "CONVERT",
        "CONVERT_TZ",
        "COS",
        "COT",
        "COUNT",
        "CRC32",
        "CURDATE",
        "CURRENT_DATE",
        "CURRENT_ROLE",
        "CURRENT_TIME",
        "CURRENT_TIMESTAMP",
        "CURRENT_USER",
        "CURTIME",
        "DATABASE",
        "DATE",
        "DATEDIFF",
        "DATE_ADD",
        "DATE_FORMAT",
        "DATE_SUB",
        "DAY",
        "DAYNAME",
        "DAYOFMONTH",
        "DAYOFWEEK",
        "DAYOFYEAR",
        "DECODE",
        "DEGREES",
        "DENSE_RANK",
        "ELT",
        "ENCODE",
        "EXP",
        "EXPORT_SET",
        "EXTRACT",
        "FIELD",
        "FIND_IN_SET",
        "FIRST_VALUE",
        "FLOOR",
        "FORMAT",
        "FROM_BASE64",
        "FROM_DAYS",
        "FROM_UNIXTIME",
        "GREATEST",
        "GROUP_CONCAT",
        "HEX",
        "HOUR",
        "IF",
        "IFNULL",
        "INET6_ATON",
        "INET6_NTOA",
        "INET_ATON",
        "INET_NTOA",
        "INSERT",
        "INSTR",
        "INTERVAL",
        "ISNULL",
        "JSON_ARRAY",
        "JSON_ARRAYAGG",
        "JSON_CONTAINS",
        "JSON_CONTAINS_PATH",
        "JSON_DEPTH",
        "JSON_EXTRACT",
        "JSON_KEYS",
        "JSON_LENGTH",
        "JSON_OBJECT",
        "JSON_OBJECTAGG",
        "JSON_QUOTE",
        "JSON_SEARCH",
        "JSON_TYPE",
        "JSON_UNQUOTE",
        "JSON_VALID",
        "JSON_VALUE",
        "LAG",
        "LAST_DAY",
        "LAST_VALUE",
        "LCASE",
        "LEAD",
        "LEAST",
        "LEFT",
        "LENGTH",
        "LN",
        "LOCALTIME",
        "LOCALTIMESTAMP",
        "LOCATE",
        "LOG",
        "LOG10",
        "LOG2",
        "LOWER",
        "LPAD",
        "LTRIM",
        "MAKEDATE",
        "MAKETIME",
        "MAX",
        "MD5",
        "MICROSECOND",
        "MID",
        "MIN",
        "MINUTE",
        "MOD",
        "MONTH",
        "MONTHNAME",
        "NOW",
        "NTH_VALUE",
        "NTILE",
        "NULLIF",
        "OCT",
        "OCTET_LENGTH",
        "ORD",
        "PERCENT_RANK",
        "PERIOD_ADD",
        "PERIOD_DIFF",
        "PI",
        "POSITION",
        "POW",
        "POWER",
        "QUARTER",
        "QUOTE",
        "RADIANS",
        "RAND",
        "RANK",
        "REGEXP_INSTR",
        "REGEXP_REPLACE",
        "REGEXP_SUBSTR",
        "REPEAT",
        "REPLACE",
        "REVERSE",
        "RIGHT",
        "ROUND",
        "ROW_NUMBER",
        "RPAD",
        "RTRIM",
        "SCHEMA",
        "SEC_TO_TIME",
        "SECOND",
        "SESSION_USER",
        "SHA",
        "SHA1",
        "SHA2",
        "SIGN",
        "SIN",
        "SLEEP",
        "SOUNDEX",
        "SPACE",
        "SQRT",
        "STD",
        "STDDEV",
        "STDDEV_POP",
        "STDDEV_SAMP",
        "STRCMP",
        "STR_TO_DATE",
        "SUBDATE",
        "SUBSTR",
        "SUBSTRING",
        "SUBSTRING_INDEX",
        "SUBTIME",
        "SUM",
        "SYSDATE",
        "SYSTEM_USER",
        "TAN",
        "TIME",
        "TIMEDIFF",
        "TIMESTAMP",
        "TIMESTAMPADD",
        "TIMESTAMPDIFF",
        "TIME_FORMAT",
        "TIME_TO_SEC",
        "TO_BASE64",
        "TO_DAYS",
        "TO_SECONDS",
        "TRIM",
        "TRUNCATE",
        "UCASE",
        "UNCOMPRESS",
        "UNCOMPRESSED_LENGTH",
        "UNHEX",
        "UNIX_TIMESTAMP",
        "UPPER",
        "USER",
        "UTC_DATE",
        "UTC_TIME",
        "UTC_TIMESTAMP",
        "UUID",
        "UUID_SHORT",
        "VALUES",
        "VARIANCE",
        "VAR_POP",
        "VAR_SAMP",
        "VERSION",
        "WEEK",
        "WEEKDAY",
        "WEEKOFYEAR",
        "YEAR",
        "YEARWEEK",
    ]
)

# Keywords that may stand right before "(" without being a function call.
_PAREN_KEYWORDS = frozenset(
    [
        "EXISTS",
        "IN",
        "NOT",
        "AND",
        "OR",
        "XOR",
        "IS",
        "LIKE",
        "RLIKE",
        "REGEXP",
        "BETWEEN",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "ANY",
        "ALL",
        "SOME",
        "ROW",
        "OVER",
        "USING",
        "ON",
        "AS",
        "FROM",
        "WHERE",
        "SELECT",
        "DISTINCT",
        "JOIN",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "LATERAL",
        "WITH",
        "RECURSIVE",
        "VALUES",
        "HAVING",
        "BY",
        "WINDOW",
        "PARTITION",
        "LIMIT",
        "OFFSET",
        "DIV",
        "MOD",
        "ESCAPE",
        "STRAIGHT_JOIN",
    ]
)

# Functions whose result depends on the connection that ran the previous statement.
_LAST_CONNECTION_FUNCTIONS = frozenset({"FOUND_ROWS", "ROW_COUNT"})

# Session / system variables whose value belongs to the primary connection.
_PRIMARY_SYSVARS = frozenset(
    {"@@IDENTITY", "@@LAST_INSERT_ID", "@@LAST_GTID", "@@SESSION.LAST_INSERT_ID"}
)


def _primary(reason: str, flags: Flag = Flag.NONE) -> Classification:
    return Classification(Target.PRIMARY, reason, flags)


_PLAIN_READ = Classification(Target.REPLICA, "plain read")
_EMPTY = _primary("empty statement: sent to the primary")


def _scan_read(toks: list[_Tok]) -> Classification:
    """Check a SELECT-like statement for anything that makes it more than a plain read."""
    n = len(toks)
    for i, tok in enumerate(toks):
        kind = tok.kind
        if kind == WORD:
            up = tok.up
            nxt = toks[i + 1] if i + 1 < n else None
            if nxt is not None and nxt.kind == LPAREN and (i == 0 or toks[i - 1].kind != DOT):
                if up in _LAST_CONNECTION_FUNCTIONS:
                    return Classification(Target.LAST, f"{up}() reads the previous statement")
                if up not in _READ_ONLY_FUNCTIONS and up not in _PAREN_KEYWORDS:
                    return _primary(f"calls {up}(), which is not a known read-only built-in")
                continue
            if up == "FOR" and nxt is not None and nxt.kind == WORD:
                if nxt.up == "UPDATE":
                    return _primary("locking read (FOR UPDATE)", Flag.LOCKING_READ)
                if nxt.up == "SHARE":
                    return _primary("locking read (FOR SHARE)", Flag.LOCKING_READ)
            elif up == "LOCK" and nxt is not None and nxt.up == "IN":
                return _primary("locking read (LOCK IN SHARE MODE)", Flag.LOCKING_READ)
            elif up == "INTO":
                return _primary("SELECT ... INTO writes a file or variable")
            elif up == "SQL_CALC_FOUND_ROWS":
                return _primary("SQL_CALC_FOUND_ROWS is read back on the same connection")
            elif up in _WRITE_VERBS and i > 0 and toks[i - 1].kind == RPAREN:
                # WITH cte AS (...) UPDATE / DELETE / INSERT ...
                return _primary(f"{up} inside a read statement writes", Flag.WRITE)
        elif kind == SYSVAR:
            if tok.up in _PRIMARY_SYSVARS:
                return _primary(f"{tok.text} belongs to the primary connection")
        elif kind == OP and tok.text == ":=":
            return _primary("assigns a user variable inside a read")
    return _PLAIN_READ


_WRITE_VERBS = frozenset({"UPDATE", "DELETE", "INSERT", "REPLACE"})


def _rule_select(toks: list[_Tok]) -> Classification:
    return _scan_read(toks)


def _rule_show(toks: list[_Tok]) -> Classification:
    words = [t.up for t in toks[1:4] if t.kind == WORD]
    if words[:1] in (["WARNINGS"], ["ERRORS"]) or words[:2] in (
        ["COUNT", "WARNINGS"],
        ["COUNT", "ERRORS"],
    ):
        return Classification(Target.LAST, "SHOW WARNINGS/ERRORS reads the previous statement")
    if words[:2] in (["MASTER", "STATUS"], ["BINARY", "LOGS"], ["BINLOG", "STATUS"]) or (
        len(words) >= 2 and words[0] in ("SLAVE", "REPLICA", "ALL") and words[-1] == "STATUS"
    ):
        return _primary("replication status belongs to the primary")
    return Classification(Target.REPLICA, "SHOW reads metadata")


def _rule_describe(toks: list[_Tok]) -> Classification:
    return Classification(Target.REPLICA, "DESCRIBE reads metadata")


def _rule_explain(toks: list[_Tok]) -> Classification:
    rest = toks[1:]
    if rest and rest[0].kind == WORD and rest[0].up in ("ANALYZE", "FORMAT", "EXTENDED"):
        if rest[0].up == "ANALYZE":
            return _primary("EXPLAIN ANALYZE executes the statement")
        # EXPLAIN FORMAT=JSON SELECT / EXPLAIN EXTENDED SELECT
        while rest and rest[0].up not in ("SELECT", "WITH", "TABLE", "VALUES", "("):
            rest = rest[1:]
    if not rest:
        return Classification(Target.REPLICA, "EXPLAIN reads metadata")
    if rest[0].kind == WORD and rest[0].up not in ("SELECT", "WITH", "TABLE", "VALUES"):
        if rest[0].up in _WRITE_VERBS:
            return _primary(f"EXPLAIN {rest[0].up} is planned where it would run")
        # EXPLAIN tbl  == DESCRIBE tbl
        return Classification(Target.REPLICA, "EXPLAIN reads metadata")
    inner = _scan_read(rest)
    if inner.target is Target.REPLICA:
        return Classification(Target.REPLICA, "EXPLAIN of a plain read")
    return _primary(f"EXPLAIN of a statement that is not a plain read ({inner.reason})")


def _rule_set(toks: list[_Tok]) -> Classification:
    second = toks[1].up if len(toks) > 1 else ""
    if second in ("GLOBAL", "PERSIST", "PERSIST_ONLY") or (
        len(toks) > 1 and toks[1].kind == SYSVAR and toks[1].up.startswith("@@GLOBAL.")
    ):
        return _primary("SET GLOBAL changes the server, not the session")
    if second in ("PASSWORD", "ROLE", "DEFAULT"):
        return _primary(f"SET {second} changes accounts")
    if second == "TRANSACTION":
        return _primary("SET TRANSACTION applies to the next transaction")
    if second == "STATEMENT":
        return _primary("SET STATEMENT ... FOR runs a statement")
    for tok in toks:
        if (tok.kind == WORD and tok.up == "SELECT") or tok.kind == LPAREN:
            return _primary("SET with a subquery or function call: value computed on the primary")
    return Classification(
        Target.ALL, "session state: every connection must see it", Flag.SESSION_STATE
    )


def _rule_use(toks: list[_Tok]) -> Classification:
    return Classification(Target.ALL, "USE changes the default database", Flag.SESSION_STATE)


def _rule_help(toks: list[_Tok]) -> Classification:
    return Classification(Target.REPLICA, "HELP reads the help tables")


def _rule_begin(toks: list[_Tok]) -> Classification:
    return _primary("opens a transaction", Flag.TXN_BEGIN)


def _rule_end_txn(toks: list[_Tok]) -> Classification:
    return _primary("ends a transaction", Flag.TXN_END)


_VERB_RULES: dict[str, _Rule] = {
    "SELECT": _rule_select,
    "WITH": _rule_select,
    "TABLE": _rule_select,
    "VALUES": _rule_select,
    "SHOW": _rule_show,
    "DESCRIBE": _rule_describe,
    "DESC": _rule_describe,
    "EXPLAIN": _rule_explain,
    "SET": _rule_set,
    "USE": _rule_use,
    "HELP": _rule_help,
    "BEGIN": _rule_begin,
    "START": _rule_begin,
    "COMMIT": _rule_end_txn,
    "ROLLBACK": _rule_end_txn,
}


def _classify_tokens(toks: list[_Tok]) -> Classification:
    if not toks:
        return _EMPTY
    # A trailing ';' is harmless; a second statement after it is not.
    while toks and toks[-1].kind == SEMI:
        toks = toks[:-1]
    if not toks:
        return _EMPTY
    for tok in toks:
        if tok.kind == SEMI:
            return _primary("several statements in one text", Flag.MULTI_STATEMENT)
    first = toks[0]
    if first.kind == LPAREN:
        # (SELECT ...) UNION (SELECT ...)
        i = 0
        while i < len(toks) and toks[i].kind == LPAREN:
            i += 1
        if i < len(toks) and toks[i].up in ("SELECT", "WITH", "VALUES", "TABLE"):
            return _scan_read(toks)
        return _primary(PRIMARY_UNKNOWN)
    if first.kind != WORD:
        return _primary(PRIMARY_UNKNOWN)
    rule = _VERB_RULES.get(first.up)
    if rule is None:
        return _primary(f"{first.up} is not a plain read", Flag.WRITE)
    return rule(toks)


@functools.lru_cache(maxsize=8192)
def _classify_text(sql: str) -> Classification:
    try:
        toks = _lex(sql)
    except _LexError as exc:
        return _primary(f"unparseable ({exc}): sent to the primary")
    return _classify_tokens(toks)


def classify(sql: str) -> Classification:
    """Classify one SQL text.

    Plain reads go to replicas; session state to every connection; anything not positively
    known to be a plain read goes to the primary. Results are cached by text.

    >>> classify("SELECT id FROM users WHERE id = 1").target.value
    'replica'
    >>> classify("UPDATE users SET name = 'x'").target.value
    'primary'
    >>> classify("SET NAMES utf8mb4").target.value
    'all'

    :raises ClassificationError: if *sql* is not a ``str``.
    """
    if type(sql) is not str:
        if isinstance(sql, str):
            sql = str(sql)
        else:
            raise ClassificationError(
                f"classify() takes SQL text (str), got {type(sql).__name__}; "
                "for SQLAlchemy constructs use classify_clause()"
            )
    return _classify_text(sql)


# ---------------------------------------------------------------------------------------------
# SQLAlchemy constructs
# ---------------------------------------------------------------------------------------------

_WRITE_CLAUSE = Classification(Target.PRIMARY, "INSERT/UPDATE/DELETE construct", Flag.WRITE)
_LOCKING_SELECT = Classification(Target.PRIMARY, "Select with FOR UPDATE", Flag.LOCKING_READ)
_PLAIN_SELECT = Classification(Target.REPLICA, "Select construct")
_UNKNOWN_CLAUSE = Classification(Target.PRIMARY, "construct not known to be a read")


def classify_clause(clause: Any) -> Classification:
    """Classify a SQLAlchemy statement from its own attributes, falling back to its text.

    ``Insert``/``Update``/``Delete`` → primary; ``Select`` with ``with_for_update()`` →
    primary; other ``Select`` → replica; ``text()`` → :func:`classify` of its text; anything
    else → primary.

    >>> from sqlalchemy import select, literal
    >>> classify_clause(select(literal(1))).target.value
    'replica'
    """
    if isinstance(clause, Select):
        if clause._for_update_arg is not None:
            return _LOCKING_SELECT
        return _PLAIN_SELECT
    if isinstance(clause, TextClause):
        return classify(clause.text)
    if isinstance(clause, UpdateBase):
        return _WRITE_CLAUSE
    if isinstance(clause, CompoundSelect):
        if clause._for_update_arg is not None:
            return _LOCKING_SELECT
        return _PLAIN_SELECT
    if isinstance(clause, str):
        return classify(clause)
    return _UNKNOWN_CLAUSE
