"""Statement classification: SQL text or a SQLAlchemy construct → :class:`Classification`.

Pure and cached, no I/O. The rule that keeps it correct: *unknown means primary*. A statement
goes to a replica only when it is positively known to be a plain read; anything the lexer cannot
follow, any verb it does not know, any function it cannot vouch for, goes to the primary.

Text is handled by :func:`_classify_uncached`, which decides from as little of the text as the
grammar allows (shortcuts in :mod:`rwsplit._lexer`, each checked by a property test to agree
with the general path):

* a write verb (``INSERT``, ``UPDATE`` ...) decides from the first word;
* a plain ``SELECT`` / ``WITH`` is recognised without tokens;
* long reads that are not plain are scanned with coarse tokens;
* everything else takes the general path: :func:`rwsplit._lexer.lex` (one compiled regular
  expression, MySQL/MariaDB lexical rules) and :func:`_classify_tokens`, which dispatches on
  the first keyword to a rule function in :data:`_VERB_RULES`.

Results are cached by statement text in a :class:`~rwsplit._textcache.TextCache` bounded in
bytes (:data:`CACHE_MAX_BYTES`; texts longer than :data:`CACHE_MAX_KEY_CHARS` are keyed by a
digest), so a statement seen before costs one dictionary lookup.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement, ColumnClause, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CompoundSelect, Select, TextualSelect

from ..errors import ClassificationError
from . import _lexer
from ._lexer import (
    DOT,
    HINT,
    LPAREN,
    OP,
    QUOTED_ID,
    RPAREN,
    SEMI,
    SYSVAR,
    WORD,
    LexError,
    Tok,
    lex,
)
from ._textcache import TextCache

__all__ = ["MYSQL", "POSTGRESQL", "Classification", "Flag", "Target", "classify", "classify_clause"]


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
    resource: str | None = None
    """For :attr:`Flag.PIN` / :attr:`Flag.UNPIN`: the connection-bound resource taken or released
    (``"named lock"``, ``"LOCK TABLES"``, ``"HANDLER h"``, ``"prepared statement s"``,
    ``"temporary table t"``)."""

    @property
    def is_read(self) -> bool:
        """True when the statement may run on a replica."""
        return self.target is Target.REPLICA


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------

_Rule = Callable[[list[Tok]], Classification]


def _words(text: str) -> list[str]:
    return text.split()


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
) | frozenset(
    # MariaDB / MySQL built-ins beyond the common core (string, JSON, GIS, window, Oracle mode).
    _words("""
    ADD_MONTHS AGAINST ASTEXT ASWKT BIT_LENGTH CHR COLUMN_CHECK COLUMN_CREATE COLUMN_EXISTS
    COLUMN_GET COLUMN_JSON COLUMN_LIST CUME_DIST DECODE_ORACLE DES_DECRYPT DES_ENCRYPT
    ENCRYPT FORMAT_BYTES FORMAT_PICO_TIME GEOMETRYCOLLECTION GEOMFROMTEXT GET_FORMAT GROUPING
    IS_IPV4 IS_IPV4_COMPAT IS_IPV4_MAPPED IS_IPV6 JSON_ARRAY_APPEND JSON_ARRAY_INSERT
    JSON_ARRAY_INTERSECT JSON_COMPACT JSON_DETAILED JSON_EQUALS JSON_EXISTS JSON_INSERT
    JSON_KEY_VALUE JSON_LOOSE JSON_MERGE JSON_MERGE_PATCH JSON_MERGE_PRESERVE JSON_NORMALIZE
    JSON_OBJECT_FILTER_KEYS JSON_OBJECT_TO_ARRAY JSON_OVERLAPS JSON_PRETTY JSON_REMOVE
    JSON_REPLACE JSON_SCHEMA_VALID JSON_SET JSON_TABLE KDF LENGTHB LINESTRING LOAD_FILE
    LTRIM_ORACLE MAKE_SET MATCH MBRCONTAINS MBRDISJOINT MBREQUALS MBRINTERSECTS MBROVERLAPS
    MBRTOUCHES MBRWITHIN MEDIAN MULTILINESTRING MULTIPOINT MULTIPOLYGON NAME_CONST
    NATURAL_SORT_KEY NVL NVL2 OLD_PASSWORD PASSWORD PERCENTILE_CONT PERCENTILE_DISC POINT
    POLYGON RANDOM_BYTES REGEXP_LIKE REPLACE_ORACLE ROLLUP ROWNUM RTRIM_ORACLE SFORMAT
    SUBSTR_ORACLE SYS_GUID TO_CHAR TRIM_ORACLE WEIGHT_STRING X Y
    ST_AREA ST_ASBINARY ST_ASGEOJSON ST_ASTEXT ST_ASWKB ST_ASWKT ST_BOUNDARY ST_BUFFER
    ST_CENTROID ST_CONTAINS ST_CONVEXHULL ST_CROSSES ST_DIFFERENCE ST_DIMENSION ST_DISJOINT
    ST_DISTANCE ST_DISTANCE_SPHERE ST_ENDPOINT ST_ENVELOPE ST_EQUALS ST_EXTERIORRING
    ST_GEOMFROMGEOJSON ST_GEOMFROMTEXT ST_GEOMFROMWKB ST_GEOMETRYN ST_GEOMETRYTYPE
    ST_INTERIORRINGN ST_INTERSECTION ST_INTERSECTS ST_ISCLOSED ST_ISEMPTY ST_ISRING
    ST_ISSIMPLE ST_LENGTH ST_LINEFROMTEXT ST_NUMGEOMETRIES ST_NUMINTERIORRINGS ST_NUMPOINTS
    ST_OVERLAPS ST_POINTFROMTEXT ST_POINTN ST_POLYFROMTEXT ST_RELATE ST_SRID ST_STARTPOINT
    ST_SYMDIFFERENCE ST_TOUCHES ST_UNION ST_WITHIN ST_X ST_Y ST_GEOMCOLLFROMTEXT
    ST_GEOMCOLLFROMWKB ST_LINEFROMWKB ST_POINTFROMWKB ST_POLYFROMWKB ST_MLINEFROMTEXT
    ST_MPOINTFROMTEXT ST_MPOLYFROMTEXT ST_ISVALID ST_VALIDATE ST_SIMPLIFY ST_COLLECT
    ST_LATFROMGEOHASH ST_LONGFROMGEOHASH ST_POINTFROMGEOHASH ST_GEOHASH ST_NUMINTERIORRING
    AREA ASBINARY BOUNDARY BUFFER CENTROID CONTAINS CONVEXHULL CROSSES DIMENSION DISJOINT
    ENDPOINT ENVELOPE EQUALS EXTERIORRING GEOMCOLLFROMTEXT GEOMETRYFROMTEXT GEOMETRYFROMWKB
    GEOMETRYN GEOMETRYTYPE GEOMFROMWKB GLENGTH INTERIORRINGN INTERSECTS ISCLOSED ISEMPTY
    ISRING ISSIMPLE LINEFROMTEXT MBREQUAL NUMGEOMETRIES NUMINTERIORRINGS NUMPOINTS OVERLAPS
    POINTFROMTEXT POINTN POLYFROMTEXT SRID STARTPOINT TOUCHES WITHIN EXTRACTVALUE UPDATEXML
    """)
)

# Words that may stand right before "(" without being a function call: keywords, and type
# names inside CAST(x AS DECIMAL(10, 2)).
_PAREN_KEYWORDS = frozenset(
    _words("""
    EXISTS IN NOT AND OR XOR IS LIKE RLIKE REGEXP BETWEEN CASE WHEN THEN ELSE END ANY ALL SOME
    ROW OVER USING ON AS FROM WHERE SELECT DISTINCT JOIN UNION INTERSECT EXCEPT LATERAL WITH
    RECURSIVE VALUES HAVING BY WINDOW PARTITION LIMIT OFFSET DIV MOD ESCAPE STRAIGHT_JOIN
    INDEX KEY FOR COLUMNS NESTED PATH ORDINALITY TABLE ROWS RANGE PRECEDING FOLLOWING
    DECIMAL DEC NUMERIC FIXED BINARY CHAR CHARACTER VARCHAR NCHAR VARBINARY DATETIME TIME
    TIMESTAMP FLOAT DOUBLE REAL INT INTEGER SIGNED UNSIGNED BIGINT SMALLINT TINYINT
    INTERVAL SEPARATOR FILTER WITHIN GROUP RETURNING INTO SET IGNORE FORCE AT
    """)
)

# Functions whose result depends on the connection that ran the previous statement.
_LAST_CONNECTION_FUNCTIONS = frozenset({"FOUND_ROWS", "ROW_COUNT"})

# Functions that take or release a named lock: the lock belongs to the connection.
_LOCK_TAKING_FUNCTIONS = frozenset({"GET_LOCK"})
_LOCK_RELEASING_FUNCTIONS = frozenset({"RELEASE_LOCK", "RELEASE_ALL_LOCKS"})
_LOCK_QUERY_FUNCTIONS = frozenset({"IS_FREE_LOCK", "IS_USED_LOCK"})

# Sequence functions: NEXTVAL/SETVAL advance the sequence (a write); LASTVAL reads the value
# this connection last took.
_SEQUENCE_WRITE_FUNCTIONS = frozenset({"NEXTVAL", "SETVAL", "NEXT_VALUE"})
_SEQUENCE_READ_FUNCTIONS = frozenset({"LASTVAL", "CURRVAL"})

# Session / system variables whose value belongs to the primary connection.
_PRIMARY_SYSVARS = frozenset(
    {
        "@@IDENTITY",
        "@@LAST_INSERT_ID",
        "@@LAST_GTID",
        "@@SESSION.LAST_INSERT_ID",
        "@@SESSION.IDENTITY",
        "@@SESSION.LAST_GTID",
        "@@INSERT_ID",
    }
)

# Diagnostics of the previous statement: read where it ran.
_LAST_SYSVARS = frozenset(
    f"@@{scope}{name}"
    for scope in ("", "SESSION.", "LOCAL.")
    for name in ("WARNING_COUNT", "ERROR_COUNT")
)

_WRITE_VERBS = frozenset({"UPDATE", "DELETE", "INSERT", "REPLACE"})
_READ_VERBS = frozenset({"SELECT", "WITH", "TABLE", "VALUES", "SHOW", "DESCRIBE", "DESC", "HELP"})
_READ_START_WORDS = ("SELECT", "WITH", "TABLE", "VALUES")  # the same in PostgreSQL
_READ_STARTS = frozenset(_READ_START_WORDS)

# Words that, in a read, mean it is not a plain read; checked with one set lookup per word.
_READ_TRIGGERS = frozenset(
    {"FOR", "LOCK", "INTO", "SQL_CALC_FOUND_ROWS", "NEXT", "PREVIOUS"} | _WRITE_VERBS
)


def _primary(reason: str, flags: Flag = Flag.NONE, resource: str | None = None) -> Classification:
    return Classification(Target.PRIMARY, reason, flags, resource)


_PLAIN_READ = Classification(Target.REPLICA, "plain read")
_EMPTY = _primary("empty statement: sent to the primary")
_ONLY_HINTS = _primary("empty statement: sent to the primary")


def _matching_paren(toks: list[Tok], i: int) -> int:
    """Index of the ``)`` closing the ``(`` at *i*, or ``len(toks)``."""
    depth = 0
    for j in range(i, len(toks)):
        kind = toks[j].kind
        if kind == LPAREN:
            depth += 1
        elif kind == RPAREN:
            depth -= 1
            if depth == 0:
                return j
    return len(toks)


def _function_call(toks: list[Tok], i: int, up: str) -> Classification | None:
    """Classify a call of *up* at *i* (the token after it is ``(``); ``None``: a plain read."""
    if up in _READ_ONLY_FUNCTIONS or up in _PAREN_KEYWORDS:
        return None
    if up in _LAST_CONNECTION_FUNCTIONS:
        return Classification(Target.LAST, f"{up}() reads the previous statement")
    if up in _LOCK_TAKING_FUNCTIONS:
        return _primary(f"{up}() takes a named lock", Flag.PIN, "named lock")
    if up in _LOCK_RELEASING_FUNCTIONS:
        resource = "all named locks" if up == "RELEASE_ALL_LOCKS" else "named lock"
        return _primary(f"{up}() releases a named lock", Flag.UNPIN, resource)
    if up in _LOCK_QUERY_FUNCTIONS:
        return _primary(f"{up}() asks about locks held on the primary")
    if up == "LAST_INSERT_ID":
        return _primary("LAST_INSERT_ID() belongs to the primary connection")
    if up in _SEQUENCE_WRITE_FUNCTIONS:
        return _primary(f"{up}() advances a sequence", Flag.WRITE)
    if up in _SEQUENCE_READ_FUNCTIONS:
        return _primary(f"{up}() reads this connection's last sequence value")
    # ``cte (a, b) AS (...)``: a CTE's column list, not a call.
    close = _matching_paren(toks, i + 1)
    if (
        close + 2 < len(toks)
        and toks[close + 1].up == "AS"
        and toks[close + 2].kind == LPAREN
        and (i == 0 or toks[i - 1].kind != DOT)
    ):
        return None
    return _primary(f"calls {up}(), which is not a known read-only built-in")


_up_of = itemgetter(2)
_kind_of = itemgetter(0)
_LPAREN_TOK = Tok(LPAREN, "(", "(")
_KNOWN_CALLS = _READ_ONLY_FUNCTIONS | _PAREN_KEYWORDS


def _calls_only_known(toks: list[Tok]) -> bool:
    """True when every word called in *toks* is an unqualified known read-only built-in (or a
    keyword before "("), and no quoted name is called: then _scan_read's loop finds no call."""
    index = toks.index
    i = 0
    try:
        while True:
            i = index(_LPAREN_TOK, i)  # a C-level search; an LPAREN token is always this value
            if i:
                prev = toks[i - 1]
                if prev.kind == WORD:
                    if prev.up not in _KNOWN_CALLS or (i > 1 and toks[i - 2].kind == DOT):
                        return False
                elif prev.kind == QUOTED_ID:
                    return False
            i += 1
    except ValueError:
        return True


def _scan_read(toks: list[Tok]) -> Classification:
    """Check a SELECT-like statement for anything that makes it more than a plain read.

    The first finding that needs the primary decides. A finding that needs the previous
    statement's connection (``FOUND_ROWS()``, ``@@warning_count``) does not stop the scan: the
    rest may still need the primary (a lock must not be taken on a replica).
    """
    # Most reads hold none of what the loop below looks for: tell that from the sets of
    # their tokens' kinds and upper-cased texts, built in C ("(" and ":=" are their own text),
    # and from the word before each "(".
    ups = set(map(_up_of, toks))
    if (
        ":=" not in ups
        and ups.isdisjoint(_READ_TRIGGERS)
        and SYSVAR not in (kinds := set(map(_kind_of, toks)))
        and (DOT not in kinds or ups.isdisjoint(_SEQUENCE_ATTRS))
        and ("(" not in ups or _calls_only_known(toks))
    ):
        return _PLAIN_READ
    return _scan_read_tokens(toks)


def _scan_read_tokens(toks: list[Tok]) -> Classification:
    """:func:`_scan_read` token by token."""
    last: Classification | None = None
    n = len(toks)
    for i, tok in enumerate(toks):
        kind = tok.kind
        if kind == WORD:
            up = tok.up
            nxt = toks[i + 1] if i + 1 < n else None
            if nxt is not None and nxt.kind == LPAREN:
                if i > 0 and toks[i - 1].kind == DOT:
                    return _primary(f"calls stored function {toks[i - 2].text}.{tok.text}()")
                if up in _READ_ONLY_FUNCTIONS and up not in _READ_TRIGGERS:
                    continue
                found = _function_call(toks, i, up)
                if found is not None:
                    if found.target is Target.LAST:
                        last = last or found
                        continue
                    return found
                continue
            if up not in _READ_TRIGGERS:
                if i > 0 and toks[i - 1].kind == DOT and up in _SEQUENCE_ATTRS:
                    return _primary(f"{toks[i - 2].text}.{tok.text} reads a sequence", Flag.WRITE)
                continue
            found = _read_trigger(toks, i, up, nxt)
            if found is not None:
                return found
        elif kind == SYSVAR:
            if tok.up in _PRIMARY_SYSVARS:
                return _primary(f"{tok.text} belongs to the primary connection")
            if tok.up in _LAST_SYSVARS and last is None:
                last = Classification(Target.LAST, f"{tok.text} reads the previous statement")
        elif kind == OP:
            if tok.text == ":=":
                return _primary("assigns a user variable inside a read", Flag.SESSION_STATE)
        elif kind == QUOTED_ID and i + 1 < n and toks[i + 1].kind == LPAREN:
            return _primary(f"calls stored function {tok.text}()")
    return last or _PLAIN_READ


# seq.NEXTVAL / seq.CURRVAL (Oracle mode), also read as columns of a sequence.
_SEQUENCE_ATTRS = frozenset({"NEXTVAL", "CURRVAL", "LASTVAL"})


def _read_trigger(toks: list[Tok], i: int, up: str, nxt: Tok | None) -> Classification | None:
    """The slow path of :func:`_scan_read`: a word that may make a read more than a read."""
    prev = toks[i - 1] if i > 0 else None
    if prev is not None and prev.kind == DOT:
        return None  # t.update: a column named like a keyword
    nxt_up = nxt.up if nxt is not None else ""
    if up == "FOR":
        if nxt_up == "UPDATE":
            return _primary("locking read (FOR UPDATE)", Flag.LOCKING_READ)
        if nxt_up == "SHARE":
            return _primary("locking read (FOR SHARE)", Flag.LOCKING_READ)
        return None
    if up == "LOCK":
        if nxt_up == "IN":
            return _primary("locking read (LOCK IN SHARE MODE)", Flag.LOCKING_READ)
        return None
    if up == "INTO":
        if nxt_up in ("OUTFILE", "DUMPFILE"):
            return _primary(f"SELECT ... INTO {nxt_up} writes a file", Flag.WRITE)
        return _primary("SELECT ... INTO sets variables on the connection", Flag.SESSION_STATE)
    if up == "SQL_CALC_FOUND_ROWS":
        return _primary("SQL_CALC_FOUND_ROWS is read back on the same connection")
    if up in ("NEXT", "PREVIOUS"):
        if nxt_up == "VALUE":
            if up == "NEXT":
                return _primary("NEXT VALUE FOR advances a sequence", Flag.WRITE)
            return _primary("PREVIOUS VALUE FOR reads this connection's last sequence value")
        return None
    # UPDATE / DELETE / INSERT / REPLACE not called as a function: a data-changing statement
    # inside the read (WITH ... UPDATE, INSERT ... SELECT written oddly).
    if nxt is not None and nxt.kind == LPAREN:
        return None
    return _primary(f"{up} inside a read statement writes", Flag.WRITE)


_SHOW_LAST = frozenset({"WARNINGS", "ERRORS", "PROFILE", "PROFILES"})
_SHOW_PRIMARY = {
    ("MASTER", "STATUS"),
    ("BINARY", "LOGS"),
    ("MASTER", "LOGS"),
    ("BINLOG", "STATUS"),
    ("BINLOG", "EVENTS"),
    ("SLAVE", "HOSTS"),
    ("REPLICA", "HOSTS"),
}


def _rule_show(toks: list[Tok]) -> Classification:
    words = [t.up for t in toks[1:7] if t.kind == WORD]
    if not words:
        return _primary(PRIMARY_UNKNOWN)
    if words[0] in _SHOW_LAST or (words[0] == "COUNT" and words[1:2] in (["WARNINGS"], ["ERRORS"])):
        return Classification(Target.LAST, f"SHOW {words[0]} reads the previous statement")
    if tuple(words[:2]) in _SHOW_PRIMARY or (
        words[0] in ("SLAVE", "REPLICA", "ALL") and "STATUS" in words
    ):
        return _primary("replication status belongs to the primary")
    # SHOW ... WHERE <expr> / LIKE <expr>: the expression is evaluated like a SELECT's, with
    # the same side effects (GET_LOCK, @v := ...), so it is scanned like one.
    for i, tok in enumerate(toks):
        if tok.kind == WORD and tok.up in ("WHERE", "LIKE"):
            found = _scan_read(toks[i + 1 :])
            if found is not _PLAIN_READ:
                return Classification(
                    found.target, f"SHOW {tok.up}: {found.reason}", found.flags, found.resource
                )
            break
    return _SHOW_METADATA


_SHOW_METADATA = Classification(Target.REPLICA, "SHOW reads metadata")


def _rule_describe(toks: list[Tok]) -> Classification:
    if len(toks) > 1 and toks[1].kind == WORD and toks[1].up in _EXPLAINABLE:
        return _rule_explain(toks)  # DESCRIBE SELECT ... is EXPLAIN
    return Classification(Target.REPLICA, "DESCRIBE reads metadata")


_EXPLAINABLE = _READ_STARTS | _WRITE_VERBS | {"ANALYZE", "FORMAT", "EXTENDED", "PARTITIONS"}


def _rule_explain(toks: list[Tok]) -> Classification:
    rest = toks[1:]
    while (
        rest
        and rest[0].kind == WORD
        and rest[0].up in ("ANALYZE", "FORMAT", "EXTENDED", "PARTITIONS")
    ):
        if rest[0].up == "ANALYZE":
            return _primary("EXPLAIN ANALYZE executes the statement")
        # EXPLAIN FORMAT=JSON SELECT / EXPLAIN EXTENDED SELECT
        rest = rest[1:]
        while rest and not (rest[0].kind == LPAREN or rest[0].up in _EXPLAINABLE):
            rest = rest[1:]
    if not rest:
        return Classification(Target.REPLICA, "EXPLAIN reads metadata")
    head = rest[0]
    if head.kind == WORD and head.up == "FOR":
        return _primary("EXPLAIN FOR CONNECTION looks at a connection of one server")
    if head.kind == WORD and head.up not in _READ_STARTS:
        if head.up in _WRITE_VERBS:
            return _primary(f"EXPLAIN {head.up} is planned where it would run")
        # EXPLAIN tbl  == DESCRIBE tbl
        return Classification(Target.REPLICA, "EXPLAIN reads metadata")
    inner = _scan_read(rest)
    if inner.target is Target.REPLICA:
        return Classification(Target.REPLICA, "EXPLAIN of a plain read")
    return _primary(f"EXPLAIN of a statement that is not a plain read ({inner.reason})")


_ANALYZABLE = frozenset({"SELECT", "WITH", "VALUES"}) | _WRITE_VERBS


def _rule_analyze(toks: list[Tok]) -> Classification:
    if len(toks) > 1 and (toks[1].kind == LPAREN or toks[1].up in _ANALYZABLE):
        return _primary("ANALYZE <statement> executes the statement")
    return _primary("ANALYZE TABLE updates statistics (and is binlogged)", Flag.WRITE)


_SESSION_STATE = Classification(
    Target.ALL, "session state: every connection must see it", Flag.SESSION_STATE
)


def _rule_set(toks: list[Tok]) -> Classification:
    second = toks[1].up if len(toks) > 1 else ""
    if second in ("GLOBAL", "PERSIST", "PERSIST_ONLY") or (
        len(toks) > 1 and toks[1].kind == SYSVAR and toks[1].up.startswith("@@GLOBAL.")
    ):
        return _primary("SET GLOBAL changes the server, not the session")
    if second == "PASSWORD" or (second == "DEFAULT" and toks[2:3] and toks[2].up == "ROLE"):
        return _primary(f"SET {second} changes accounts", Flag.WRITE)
    if second == "TRANSACTION":
        return _primary("SET TRANSACTION applies to the next transaction on the primary")
    if second == "STATEMENT":
        return _rule_set_statement(toks)
    autocommit = _autocommit_value(toks)
    if autocommit is not None:
        if autocommit:
            return Classification(
                Target.ALL,
                "SET autocommit=1 ends the open transaction",
                Flag.SESSION_STATE | Flag.TXN_END,
            )
        return Classification(
            Target.ALL,
            "SET autocommit=0 opens a transaction on the primary",
            Flag.SESSION_STATE | Flag.TXN_BEGIN,
        )
    for tok in toks:
        if (tok.kind == WORD and tok.up == "SELECT") or tok.kind == LPAREN:
            inner = _scan_read(toks[1:])
            return _primary(
                "SET with a subquery or function call: value computed on the primary",
                Flag.SESSION_STATE | (inner.flags & (Flag.PIN | Flag.UNPIN | Flag.WRITE)),
                inner.resource,
            )
    return _SESSION_STATE


def _autocommit_value(toks: list[Tok]) -> bool | None:
    """``SET [SESSION] autocommit = 0|1|ON|OFF`` → the value; ``None`` for other SETs."""
    for i, tok in enumerate(toks):
        name = tok.up
        if name in ("AUTOCOMMIT", "@@AUTOCOMMIT", "@@SESSION.AUTOCOMMIT", "@@LOCAL.AUTOCOMMIT"):
            rest = toks[i + 1 : i + 3]
            if len(rest) == 2 and rest[0].text in ("=", ":="):
                value = rest[1].up.strip("'\"").upper()
                if value in ("1", "ON", "TRUE"):
                    return True
                if value in ("0", "OFF", "FALSE"):
                    return False
            return False  # unknown value: assume a transaction opens (stays on the primary)
    return None


def _rule_set_statement(toks: list[Tok]) -> Classification:
    # SET STATEMENT var=value[, ...] FOR <statement>: routed like <statement>.
    depth = 0
    for i, tok in enumerate(toks):
        if tok.kind == LPAREN:
            depth += 1
        elif tok.kind == RPAREN:
            depth -= 1
        elif depth == 0 and tok.kind == WORD and tok.up == "FOR" and i + 1 < len(toks):
            inner = _classify_tokens(toks[i + 1 :])
            if inner.target is Target.REPLICA:
                return Classification(Target.REPLICA, f"SET STATEMENT ... FOR {inner.reason}")
            if inner.target is Target.PRIMARY:
                return inner
            break
    return _primary("SET STATEMENT ... FOR runs a statement that is not a plain read")


def _rule_use(toks: list[Tok]) -> Classification:
    return Classification(Target.ALL, "USE changes the default database", Flag.SESSION_STATE)


def _rule_help(toks: list[Tok]) -> Classification:
    return Classification(Target.REPLICA, "HELP reads the help tables")


_READ_ONLY_TXN = Classification(
    Target.REPLICA,
    "opens a read-only transaction: it runs on one replica",
    Flag.TXN_BEGIN | Flag.TXN_READ_ONLY,
)


def _rule_begin(toks: list[Tok]) -> Classification:
    if toks[0].up == "START" and (len(toks) < 2 or toks[1].up != "TRANSACTION"):
        return _primary(f"START {toks[1].up if len(toks) > 1 else ''} is not a plain read")
    if toks[0].up == "BEGIN" and len(toks) > 1 and toks[1].up not in ("WORK",):
        return _primary("BEGIN NOT ATOMIC runs a compound statement", Flag.WRITE)
    words = {t.up for t in toks[2:] if t.kind == WORD}
    if "READ" in words and "ONLY" in words and "WRITE" not in words:
        return _READ_ONLY_TXN
    return _primary("opens a transaction", Flag.TXN_BEGIN)


def _rule_end_txn(toks: list[Tok]) -> Classification:
    return _end_txn([t.up for t in toks[1:] if t.kind == WORD])


def _end_txn(words: list[str]) -> Classification:
    """``COMMIT`` / ``ROLLBACK`` from the words after the verb (PostgreSQL's too)."""
    if "TO" in words:
        return _primary("ROLLBACK TO SAVEPOINT keeps the transaction open")
    if "CHAIN" in words and "NO" not in words:
        return _primary("ends a transaction and opens the next", Flag.TXN_END | Flag.TXN_BEGIN)
    return _primary("ends a transaction", Flag.TXN_END)


def _name_after(toks: list[Tok], i: int) -> str:
    """The (last part of the) object name starting at *i*, unquoted and lower-cased."""
    name = ""
    while i < len(toks):
        tok = toks[i]
        if tok.kind in (WORD, QUOTED_ID):
            name = tok.text.strip("`").lower()
        elif tok.kind != DOT:
            break
        if i + 1 < len(toks) and toks[i + 1].kind == DOT:
            i += 2
            continue
        break
    return name


def _rule_create(toks: list[Tok]) -> Classification:
    words = [t.up for t in toks[1:4]]
    if "TEMPORARY" in words:
        i = 1
        while i < len(toks) and toks[i].up != "TABLE":
            i += 1
        i += 1
        while i < len(toks) and toks[i].up in ("IF", "NOT", "EXISTS"):
            i += 1
        name = _name_after(toks, i)
        return _primary(
            "creates a temporary table: it lives on the primary connection",
            Flag.WRITE | Flag.PIN,
            f"temporary table {name}",
        )
    return _primary("CREATE changes the schema", Flag.WRITE)


def _rule_drop(toks: list[Tok]) -> Classification:
    second = toks[1].up if len(toks) > 1 else ""
    if second == "PREPARE":
        return _rule_deallocate(toks)
    if second in ("TEMPORARY", "TABLE", "TABLES"):
        i = 2 if second != "TEMPORARY" else 3
        while i < len(toks) and toks[i].up in ("IF", "EXISTS"):
            i += 1
        name = _name_after(toks, i)
        return _primary(
            "DROP changes the schema", Flag.WRITE | Flag.UNPIN, f"temporary table {name}"
        )
    return _primary("DROP changes the schema", Flag.WRITE)


def _rule_lock(toks: list[Tok]) -> Classification:
    if len(toks) > 1 and toks[1].up in ("TABLE", "TABLES"):
        return _primary("LOCK TABLES holds table locks on the connection", Flag.PIN, "LOCK TABLES")
    return _primary(PRIMARY_UNKNOWN, Flag.WRITE)


def _rule_unlock(toks: list[Tok]) -> Classification:
    return _primary("UNLOCK TABLES releases table locks", Flag.UNPIN, "LOCK TABLES")


def _rule_flush(toks: list[Tok]) -> Classification:
    words = {t.up for t in toks if t.kind == WORD}
    if "LOCK" in words or "EXPORT" in words:
        return _primary("FLUSH ... WITH READ LOCK holds a lock", Flag.PIN, "LOCK TABLES")
    return _primary("FLUSH changes server state (and may be binlogged)", Flag.WRITE)


def _rule_handler(toks: list[Tok]) -> Classification:
    name = _name_after(toks, 1)
    action = ""
    for i in range(2, len(toks)):
        if toks[i].up in ("OPEN", "READ", "CLOSE"):
            action = toks[i].up
            if action == "OPEN" and i + 2 < len(toks) and toks[i + 1].up == "AS":
                name = _name_after(toks, i + 2)
            elif action == "OPEN" and i + 1 < len(toks) and toks[i + 1].kind in (WORD, QUOTED_ID):
                name = _name_after(toks, i + 1)
            break
    if action == "OPEN":
        return _primary("HANDLER OPEN keeps a table open", Flag.PIN, f"HANDLER {name}")
    if action == "CLOSE":
        return _primary("HANDLER CLOSE releases a handler", Flag.UNPIN, f"HANDLER {name}")
    return _primary("HANDLER reads through a handler opened on the primary")


def _rule_prepare(toks: list[Tok]) -> Classification:
    name = _name_after(toks, 1)
    return _primary(
        "PREPARE makes a statement on the connection", Flag.PIN, f"prepared statement {name}"
    )


def _rule_execute(toks: list[Tok]) -> Classification:
    if len(toks) > 1 and toks[1].up == "IMMEDIATE":
        return _primary("EXECUTE IMMEDIATE runs a statement not known here", Flag.WRITE)
    return _primary("EXECUTE runs a prepared statement (not known here)", Flag.WRITE)


def _rule_deallocate(toks: list[Tok]) -> Classification:
    name = _name_after(toks, 2)
    return _primary(
        "DEALLOCATE PREPARE releases a statement", Flag.UNPIN, f"prepared statement {name}"
    )


def _rule_xa(toks: list[Tok]) -> Classification:
    second = toks[1].up if len(toks) > 1 else ""
    if second in ("START", "BEGIN"):
        return _primary("XA START opens a transaction", Flag.TXN_BEGIN)
    if second in ("COMMIT", "ROLLBACK"):
        return _primary(f"XA {second} ends a transaction", Flag.TXN_END | Flag.WRITE)
    return _primary(f"XA {second} belongs to the primary")


def _rule_do(toks: list[Tok]) -> Classification:
    found = _scan_read(toks)
    if found.flags & (Flag.PIN | Flag.UNPIN):
        return _primary(f"DO: {found.reason}", found.flags, found.resource)
    return _primary("DO evaluates expressions on the primary", found.flags)


def _rule_write(toks: list[Tok]) -> Classification:
    return _primary(f"{toks[0].up} changes data or schema", Flag.WRITE)


_VERB_RULES: dict[str, _Rule] = {
    **dict.fromkeys(_READ_START_WORDS, _scan_read),
    "SHOW": _rule_show,
    "DESCRIBE": _rule_describe,
    "DESC": _rule_describe,
    "EXPLAIN": _rule_explain,
    "ANALYZE": _rule_analyze,
    "SET": _rule_set,
    "USE": _rule_use,
    "HELP": _rule_help,
    "BEGIN": _rule_begin,
    "START": _rule_begin,
    "COMMIT": _rule_end_txn,
    "ROLLBACK": _rule_end_txn,
    "CREATE": _rule_create,
    "DROP": _rule_drop,
    "LOCK": _rule_lock,
    "UNLOCK": _rule_unlock,
    "FLUSH": _rule_flush,
    "HANDLER": _rule_handler,
    "PREPARE": _rule_prepare,
    "EXECUTE": _rule_execute,
    "DEALLOCATE": _rule_deallocate,
    "XA": _rule_xa,
    "DO": _rule_do,
    **dict.fromkeys(
        _words("""INSERT UPDATE DELETE REPLACE ALTER RENAME TRUNCATE GRANT REVOKE CALL LOAD
        OPTIMIZE REPAIR INSTALL UNINSTALL PURGE RESET CHANGE BINLOG CACHE KILL"""),
        _rule_write,
    ),
}


# ---------------------------------------------------------------------------------------------
# Tokens to a classification: the rule of the first word (shared with PostgreSQL's classifier)
# ---------------------------------------------------------------------------------------------

_SEMI_TOK = Tok(SEMI, ";", ";")
_Decide = Callable[[list[Tok], str | None], Classification]


def _token_rules(
    verb_rules: Mapping[str, _Rule], scan_read: _Rule, *, unknown: Flag, multi_drops: Flag
) -> tuple[_Rule, _Decide]:
    """A dialect's ``classify_tokens(toks)`` and ``decide(toks, hint)``.

    ``classify_tokens`` runs the rule of the statement's first word from *verb_rules*
    (*scan_read* for one that opens with ``(``); a statement that starts with neither a word
    nor ``(`` goes to the primary with the flags *unknown*; several statements in one text go
    to the primary with the side effects of every part, less *multi_drops*. ``decide`` is
    ``classify_tokens`` with a routing hint applied and a rule that ran off a truncated
    statement caught.
    """

    def classify_tokens(toks: list[Tok]) -> Classification:
        # A trailing ';' is harmless; a second statement after it is not.
        end = len(toks)
        while end and toks[end - 1].kind == SEMI:
            end -= 1
        # A leading optimizer hint (/*+ ... */, MySQL) carries no verb.
        start = 0
        while start < end and toks[start].kind == HINT:
            start += 1
        if start or end < len(toks):
            toks = toks[start:end]
        if not toks:
            # Only optimizer hints: as empty, but a distinct object, so that the shortcut for
            # several statements counts it as a statement, as classify_multi does.
            return _ONLY_HINTS if start else _EMPTY
        if _SEMI_TOK in toks:  # a C-level scan: a SEMI token is always this value
            return classify_multi(toks)
        first = toks[0]
        if first.kind == LPAREN:
            # (SELECT ...) UNION (SELECT ...)
            i = 0
            while i < len(toks) and toks[i].kind == LPAREN:
                i += 1
            if i < len(toks) and toks[i].up in _READ_STARTS:
                return scan_read(toks)
            return _primary(PRIMARY_UNKNOWN, unknown)
        if first.kind != WORD:
            return _primary(PRIMARY_UNKNOWN, unknown)
        rule = verb_rules.get(first.up)
        if rule is None:
            return _primary(f"{first.up} is not a plain read", Flag.WRITE)
        return rule(toks)

    def classify_multi(toks: list[Tok]) -> Classification:
        """Several statements in one text: primary, with the side effects of every part."""
        flags = Flag.MULTI_STATEMENT
        resource = None
        start = 0
        for i in range(len(toks) + 1):
            if i == len(toks) or toks[i].kind == SEMI:
                if i > start:
                    part = classify_tokens(toks[start:i])
                    flags |= part.flags
                    if part.target is Target.ALL:
                        flags |= Flag.SESSION_STATE
                    resource = resource or part.resource
                start = i + 1
        return _primary("several statements in one text", flags & ~multi_drops, resource)

    def decide(toks: list[Tok], hint: str | None) -> Classification:
        try:
            c = classify_tokens(toks)
        except IndexError:  # a rule ran off a truncated statement
            return _primary("incomplete statement: sent to the primary")
        if hint is not None:
            return _apply_hint(hint, c, toks)
        return c

    return classify_tokens, decide


_classify_tokens, _decide = _token_rules(
    _VERB_RULES, _scan_read, unknown=Flag.NONE, multi_drops=Flag.NONE
)


# Flags that forbid honouring a replica hint: the statement writes, locks or leaves state.
_NOT_HINTABLE = (
    Flag.WRITE
    | Flag.LOCKING_READ
    | Flag.SESSION_STATE
    | Flag.PIN
    | Flag.UNPIN
    | Flag.MULTI_STATEMENT
    | Flag.TXN_BEGIN
    | Flag.TXN_END
)


def _apply_hint(hint: str, c: Classification, toks: list[Tok]) -> Classification:
    """Let a routing hint override *c*, except that a replica hint never sends a write away."""
    if hint == "primary":
        if c.target is Target.PRIMARY and c.flags & Flag.HINT:
            return c
        return Classification(
            Target.PRIMARY, f"routing hint: primary ({c.reason})", c.flags | Flag.HINT, c.resource
        )
    if hint == "last":
        if c.target in (Target.REPLICA, Target.LAST):
            return Classification(Target.LAST, "routing hint: last", c.flags | Flag.HINT)
        return c
    # replica
    if c.target is Target.REPLICA:
        return Classification(
            Target.REPLICA, f"routing hint: replica ({c.reason})", c.flags | Flag.HINT
        )
    head = next((t for t in toks if t.kind != LPAREN), None)
    if (
        c.target is Target.PRIMARY
        and not c.flags & _NOT_HINTABLE
        and head is not None
        and head.up in _READ_VERBS
    ):
        return Classification(
            Target.REPLICA, f"routing hint: replica (overrides: {c.reason})", c.flags | Flag.HINT
        )
    return Classification(
        c.target, f"{c.reason} (replica hint ignored: not a plain read)", c.flags, c.resource
    )


def _classify_lexed(sql: str) -> Classification:
    """The general path: tokens, then the rule of the first verb."""
    try:
        toks, hint, maybe = lex(sql)
    except LexError as exc:
        return _primary(f"unparseable ({exc}): sent to the primary")
    c = _decide(toks, hint)
    if maybe:
        return _either_reading(sql, maybe, c)
    return c


def _either_reading(sql: str, maybe: list[int], ran: Classification) -> Classification:
    """An executable comment the server may skip (``/*!80000 ...*/``, ``/*M!...*/``).

    Whether it runs depends on the server's kind and version, which the classifier does not
    know: *sql* is classified both ways. The same answer both ways stands; otherwise the
    statement goes to the primary with the side effects of both readings.
    """
    text, unsure = _lexer.skipped_view(sql, maybe)
    try:
        toks, hint, _ = lex(text)
        skipped = _decide(toks, hint)
    except LexError as exc:
        skipped = _primary(f"unparseable ({exc}): sent to the primary")
    if skipped == ran and not unsure:
        return ran
    flags = ran.flags | skipped.flags
    if Target.ALL in (ran.target, skipped.target):
        flags |= Flag.SESSION_STATE
    return _primary(
        f"an executable comment the server may run or skip: {ran.reason}",
        flags,
        ran.resource or skipped.resource,
    )


# ---------------------------------------------------------------------------------------------
# Shortcuts: decide from as little of the text as the grammar allows
# ---------------------------------------------------------------------------------------------


# Verbs whose statement is a write whatever follows (their rule is _rule_write): only a ";"
# that starts another statement, or a routing hint, can add to what the verb says.
def _write_from_verb(verb_rules: Mapping[str, _Rule]) -> dict[str, Classification]:
    """What each verb whose rule is :func:`_rule_write` decides, by verb."""
    return {
        verb: Classification(Target.PRIMARY, f"{verb} changes data or schema", Flag.WRITE)
        for verb, rule in verb_rules.items()
        if rule is _rule_write
    }


_WRITE_FROM_VERB = _write_from_verb(_VERB_RULES)
# Names that may stand before "(" in a plain read, reversed (matched in the reversed text).
_PLAIN_READ_CALLS_REVERSED = frozenset(
    name[::-1] for name in _READ_ONLY_FUNCTIONS | _PAREN_KEYWORDS
)
_TRIGGER_SUBSTRINGS = _lexer.TRIGGER_SUBSTRINGS
_head = _lexer.HEAD_RE.match
_statement_end = _lexer.STATEMENT_END_RE.match
_lexable = _lexer.LEXABLE_RE.match
_has_trigger = _lexer.TRIGGER_RE.search
_reversed_calls = _lexer.REVERSED_CALL_RE.findall
_may_hint = _lexer.may_hint
_coarse_lex = _lexer.coarse_lex
_strip_comments = _lexer.strip_comments


def _classify_uncached(sql: str) -> Classification:
    """Classify *sql* (no cache): the shortcuts where they decide, else the lexer and rules.

    Each shortcut gives exactly what the general path would (a property test checks it):

    * a write verb (``INSERT``, ``UPDATE`` ...) decides from the first word; the rest of the
      text is only skipped through, in the regular expression engine, to find a ``;`` that
      starts another statement (strings and comments skipped whole);
    * a ``SELECT`` / ``WITH`` is a plain read without tokens when the whole text (strings
      included, so nothing can hide) has no ``;``, ``@@``, ``:=`` or trigger word (``FOR``,
      ``INTO``, ``LOCK`` ...) and calls only known read-only built-ins; comments are first
      replaced by spaces (unless one may be a routing hint or an executable comment).
    """
    head = _head(sql)
    if head is not None:
        verb = head.group(2).upper()
        write = _WRITE_FROM_VERB.get(verb)
        if write is not None and not head.group(1):
            if ";" not in sql:
                if ("/*" in sql or "#" in sql or "--" in sql) and (
                    _may_hint(sql) or "/*!" in sql or "/*M!" in sql
                ):
                    # A hint, or an executable comment the lexer reads both ways (its reason
                    # says so): the full rules, as _classify_lexed would decide.
                    return _classify_lexed(sql)
                return write
            if "/*!" in sql or "/*M!" in sql:  # a comment that may hide or show a ";"
                return _classify_lexed(sql)
            return _classify_statements(sql, write)
        if verb == "SELECT" or verb == "WITH":
            if "/*" in sql or "#" in sql or "--" in sql:
                return _classify_commented(sql)
            return _classify_read(sql, sql)
    elif "/*" in sql or "#" in sql or "--" in sql:
        return _classify_commented(sql)
    return _classify_lexed(sql)


def _classify_commented(sql: str) -> Classification:
    """The shortcuts for a statement with comments (tags, sqlcommenter, notes)."""
    bare = _without_comments(sql)
    if bare is not None:
        head = _head(bare)
        if head is not None:
            verb = head.group(2).upper()
            write = _WRITE_FROM_VERB.get(verb)
            if write is not None and not head.group(1) and ";" not in sql:
                return write
            if verb == "SELECT" or verb == "WITH":
                return _classify_read(sql, bare)
    return _classify_lexed(sql)


# Below this, coarse tokens save less than they cost.
_COARSE_MIN_CHARS = 1024


def _classify_read(sql: str, bare: str) -> Classification:
    """A SELECT / WITH; *bare* is *sql* with its comments replaced by spaces (no hint there).

    A plain read is decided without tokens; otherwise comment-free ASCII text without ``;``
    is scanned with coarse tokens (runs the read rules never look at are one token each),
    anything else with the lexer.
    """
    if _is_plain_read(bare):
        return _PLAIN_READ
    if len(bare) < _COARSE_MIN_CHARS or ";" in bare or "*/" in bare or not bare.isascii():
        return _classify_lexed(sql)
    try:
        toks = _coarse_lex(bare)
    except LexError:
        return _classify_lexed(sql)  # for the same message
    return _decide(toks, None)


def _without_comments(sql: str) -> str | None:
    """*sql* with each comment replaced by a space: the same tokens, found as lex() finds
    them. ``None`` if there is an executable comment, an optimizer hint, a string left open,
    or anything like a routing hint."""
    if _may_hint(sql):
        return None
    return _strip_comments(sql)


def _is_plain_read(sql: str) -> bool:
    """True when a SELECT / WITH is certainly a plain read; False: let the rules decide."""
    if ";" in sql or "@@" in sql or ":=" in sql or "/*" in sql or "#" in sql or "--" in sql:
        return False
    up = sql.upper()
    for word in _TRIGGER_SUBSTRINGS:
        if word in up:
            # A long text goes to coarse tokens anyway, which find the whole words sooner.
            if len(sql) >= _COARSE_MIN_CHARS or _has_trigger(up):
                return False
            break
    if _lexable(sql) is None:
        return False
    if "(" in sql:
        for name, dot in _reversed_calls(up[::-1]):
            if dot or name not in _PLAIN_READ_CALLS_REVERSED:
                return False
    return True


def _classify_statements(sql: str, first: Classification) -> Classification:
    """A write followed by ``;``: the other statements' side effects join the write's."""
    if _may_hint(sql):
        return _classify_lexed(sql)
    flags = first.flags
    resource = first.resource
    several = False
    pos = 0
    n = len(sql)
    while True:
        m = _statement_end(sql, pos)  # always matches (possibly empty)
        end = m.end() if m is not None else pos
        if end < n and sql[end] != ";":  # a string or identifier left open
            return _classify_lexed(sql)
        if pos and sql[pos:end].strip(" \t\n\r\f\v"):  # empty parts count for nothing
            part = _classify_part(sql[pos:end])
            if part.reason.startswith(_WHOLE_TEXT_FAILURES):
                return _classify_lexed(sql)  # the whole text fails as this part does
            if part is not _EMPTY:
                several = True
                flags |= part.flags
                if part.target is Target.ALL:
                    flags |= Flag.SESSION_STATE
                resource = resource or part.resource
        if end >= n:
            break
        pos = end + 1
    if not several:
        return first
    return _primary("several statements in one text", flags | Flag.MULTI_STATEMENT, resource)


_WHOLE_TEXT_FAILURES = ("unparseable", "incomplete")


def _classify_part(sql: str) -> Classification:
    """One statement of several (no routing hint in the text: checked by the caller)."""
    head = _head(sql)
    if head is not None and not head.group(1):
        write = _WRITE_FROM_VERB.get(head.group(2).upper())
        if write is not None:
            return write
    return _classify_uncached(sql)


def _weigh(c: Classification) -> int:
    # Reasons and resources may quote the statement (a function's name): count them.
    return sys.getsizeof(c.reason) + (sys.getsizeof(c.resource) if c.resource else 0)


CACHE_MAX_BYTES = 8 * 1024 * 1024
"""The most the text cache holds: keys, classifications and per-entry overhead (8 MiB)."""
CACHE_MAX_KEY_CHARS = 4096
"""Texts longer than this are cached under a 16-byte digest, not the text itself."""


def _text_cache(classify_uncached: Callable[[str], Classification]) -> TextCache[Classification]:
    """A dialect's cache of classifications by text (the same bounds for every dialect)."""
    return TextCache(
        classify_uncached,
        weigh=_weigh,
        max_bytes=CACHE_MAX_BYTES,
        max_key_chars=CACHE_MAX_KEY_CHARS,
    )


_classify_text = _text_cache(_classify_uncached)


MYSQL = "mysql"
"""The default dialect: MySQL and MariaDB (``"mariadb"`` is the same family)."""
POSTGRESQL = "postgresql"
"""PostgreSQL's dialect (:mod:`rwsplit.routing.classify_pg`)."""
_MYSQL_NAMES = frozenset({MYSQL, "mariadb"})


def _dialect_classifier(dialect: str) -> Callable[[str], Classification] | None:
    """The text classifier of *dialect* (a SQLAlchemy URL's backend name); ``None``: MySQL's."""
    if dialect in _MYSQL_NAMES:
        return None
    if dialect == POSTGRESQL:
        from .classify_pg import classify_pg

        return classify_pg
    raise ClassificationError(
        f"unknown SQL dialect {dialect!r}: use 'mysql', 'mariadb' or 'postgresql' "
        "(the backend name of the SQLAlchemy URL)"
    )


def classify(sql: str, dialect: str = MYSQL) -> Classification:
    """Classify one SQL text.

    Plain reads go to replicas; session state to every connection; anything not positively
    known to be a plain read goes to the primary. A routing hint in a comment
    (``/* rwsplit:primary */``, ``/* rwsplit:replica */``, MaxScale's
    ``-- maxscale route to master|slave``) overrides the rules, except that a replica hint never
    sends a write to a replica. Results are cached by text.

    >>> classify("SELECT id FROM users WHERE id = 1").target.value
    'replica'
    >>> classify("UPDATE users SET name = 'x'").target.value
    'primary'
    >>> classify("SET NAMES utf8mb4").target.value
    'all'
    >>> classify("/* rwsplit:primary */ SELECT 1").target.value
    'primary'
    >>> classify("SELECT GET_LOCK('job', 10)").resource
    'named lock'

    *dialect* is the server family's SQL, named as a SQLAlchemy URL's backend name:
    ``"mysql"`` / ``"mariadb"`` (the default) or ``"postgresql"``
    (:func:`rwsplit.routing.classify_pg.classify_pg`).

    >>> classify("SELECT * FROM t FOR NO KEY UPDATE", dialect="postgresql").target.value
    'primary'

    :raises ClassificationError: if *sql* is not a ``str``, or *dialect* is unknown.
    """
    if dialect is not MYSQL:
        other = _dialect_classifier(dialect)
        if other is not None:
            if type(sql) is not str and not isinstance(sql, str):
                raise ClassificationError(
                    f"classify() takes SQL text (str), got {type(sql).__name__}; "
                    "for SQLAlchemy constructs use classify_clause()"
                )
            return other(str(sql))
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

_SELECT_CACHE_SIZE = 4096


def _select_classifier(
    inspect: Callable[[ClauseElement], Classification],
) -> Callable[[Select[Any] | CompoundSelect[Any]], Classification]:
    """A dialect's classification of Select constructs: ``FOR UPDATE`` from the construct,
    the rest from *inspect*, remembered by SQLAlchemy cache key (each dialect's own cache,
    bounded: cleared when full)."""
    cache: dict[Any, Classification] = {}

    def classify_select(clause: Select[Any] | CompoundSelect[Any]) -> Classification:
        if clause._for_update_arg is not None:
            return _LOCKING_SELECT
        # The cache key is memoized on the statement, and SQLAlchemy needs it anyway to find
        # the compiled form: computing it here costs nothing extra on execution.
        ck = clause._generate_cache_key()
        if ck is None:  # not cacheable (e.g. a lambda or custom element): inspect every time
            return inspect(clause)
        key = ck.key
        found = cache.get(key)
        if found is None:
            found = inspect(clause)
            if len(cache) >= _SELECT_CACHE_SIZE:
                cache.clear()
            cache[key] = found
        return found

    return classify_select


def _inspect_select(
    clause: ClauseElement,
    function_element: Callable[[FunctionElement[Any]], Classification | None] | None = None,
    text_fragment: Callable[[str], Classification | None] | None = None,
) -> Classification:
    """Walk a Select for anything that makes it more than a plain read (functions, text).

    *function_element* / *text_fragment*: a dialect's own readings of a SQL function and of a
    text fragment (PostgreSQL's classifier passes its own); MySQL's by default."""
    function_element = function_element or _function_element
    text_fragment = text_fragment or _text_fragment
    for element in visitors.iterate(clause):
        found: Classification | None = None
        if isinstance(element, FunctionElement):
            found = function_element(element)
        elif isinstance(element, TextClause):
            found = text_fragment(element.text)
        elif isinstance(element, ColumnClause) and element.is_literal:
            found = text_fragment(element.name)
        elif isinstance(element, UpdateBase):
            return Classification(Target.PRIMARY, "Select with a data-changing CTE", Flag.WRITE)
        elif (
            isinstance(element, (Select, CompoundSelect))
            and element is not clause
            and element._for_update_arg is not None
        ):
            return _LOCKING_SELECT
        if found is not None:
            return found
    for prefix in [*getattr(clause, "_prefixes", ()), *getattr(clause, "_suffixes", ())]:
        found = text_fragment(str(prefix[0]))
        if found is not None:
            return found
    return _PLAIN_SELECT


def _function_element(fn: FunctionElement[Any]) -> Classification | None:
    name = getattr(fn, "name", None)
    if not isinstance(name, str):
        return None  # Cast, Extract and friends: built-in syntax
    if getattr(fn, "packagenames", None):
        return Classification(Target.PRIMARY, f"calls stored function {name}()")
    up = name.upper()
    if up in _SQLALCHEMY_READ_ONLY_FUNCTIONS:
        return None
    fake = [Tok(WORD, name, up), Tok(LPAREN, "(", "("), Tok(RPAREN, ")", ")")]
    found = _function_call(fake, 0, up)
    if found is not None:
        return Classification(found.target, f"Select {found.reason}", found.flags, found.resource)
    return None


# SQLAlchemy's generic function names that are not SQL names of the same spelling.
_SQLALCHEMY_READ_ONLY_FUNCTIONS = frozenset(
    {"AGGREGATE_STRINGS", "RANDOM", "CUBE", "GROUPING SETS", "MODE", "ARRAY_AGG", "CHAR_LENGTH"}
)


def _text_fragment(sql: str) -> Classification | None:
    try:
        toks, _hint, maybe = lex(sql)
    except LexError:
        return Classification(Target.PRIMARY, "Select with unparseable text")
    if maybe:
        return Classification(Target.PRIMARY, "Select text with an executable comment")
    found = _scan_read(toks)
    if found is _PLAIN_READ:
        return None
    return Classification(found.target, f"Select text: {found.reason}", found.flags, found.resource)


_classify_select = _select_classifier(_inspect_select)


def classify_clause(clause: Any, dialect: str = MYSQL) -> Classification:
    """Classify a SQLAlchemy statement from its own attributes, falling back to its text.

    ``Insert``/``Update``/``Delete`` → primary; ``Select`` with ``with_for_update()`` →
    primary; a ``Select`` that calls a function which is not a known read-only built-in
    (``func.my_udf``, ``func.nextval``, ``func.get_lock``) → primary; other ``Select`` →
    replica; ``text()`` → :func:`classify` of its text; anything else → primary.

    >>> from sqlalchemy import select, literal, func
    >>> classify_clause(select(literal(1))).target.value
    'replica'
    >>> classify_clause(select(func.my_udf(1))).target.value
    'primary'

    *dialect* as for :func:`classify` (``"postgresql"``:
    :func:`rwsplit.routing.classify_pg.classify_clause_pg`).
    """
    if dialect is not MYSQL and _dialect_classifier(dialect) is not None:
        from .classify_pg import classify_clause_pg

        return classify_clause_pg(clause)
    if isinstance(clause, Select):
        return _classify_select(clause)
    if isinstance(clause, TextClause):
        return classify(clause.text)
    if isinstance(clause, UpdateBase):
        return _WRITE_CLAUSE
    if isinstance(clause, CompoundSelect):
        return _classify_select(clause)
    if isinstance(clause, TextualSelect) and isinstance(clause.element, TextClause):
        return classify(clause.element.text)
    if isinstance(clause, str):
        return classify(clause)
    return _UNKNOWN_CLAUSE
