"""Statement classification for PostgreSQL: SQL text → :class:`~.classify.Classification`.

The same contract as the MySQL/MariaDB classifier (:mod:`rwsplit.routing.classify`), with
PostgreSQL's lexical rules (:mod:`._lexer_pg`) and statements. Reach it through
``classify(sql, dialect="postgresql")`` (the dialect is the SQLAlchemy URL's backend name) or
:func:`classify_pg` directly. *Unknown means primary*: a statement goes to a standby only when
it is positively known to be a plain read — ``SELECT`` / ``WITH`` / ``VALUES`` / ``TABLE`` that
lock nothing, write nothing (no data-modifying CTE, no ``SELECT … INTO``), and call only
built-in functions and operators known to be read-only; ``SHOW``; ``EXPLAIN`` of such a read;
``COPY … TO STDOUT`` of one; ``BEGIN READ ONLY``.

Where PostgreSQL differs from MySQL for routing:

* sequences: ``nextval()`` / ``setval()`` write; ``currval()`` / ``lastval()`` read what this
  connection took, so they go to the primary connection;
* advisory locks: the session-level ones (``pg_advisory_lock`` …) pin the session, their
  unlocks release the pin; the transaction-level ones (``pg_advisory_xact_lock`` …) keep the
  transaction on the primary;
* ``SET`` / ``RESET`` / ``DISCARD`` are session state; ``SET LOCAL`` / ``SET TRANSACTION`` /
  ``SET CONSTRAINTS`` last only until the transaction ends (the transaction stays on the
  primary); ``set_config()`` is session state;
* ``LISTEN``, ``PREPARE``, ``DECLARE … WITH HOLD``, temporary tables (also ``SELECT … INTO
  TEMP`` and names in ``pg_temp``) pin the session; ``UNLISTEN``, ``DEALLOCATE``, ``CLOSE``,
  ``DROP`` release the pin;
* ``DO`` and ``CALL`` run code the classifier cannot see: writes that may leave session state;
* ``BEGIN … READ ONLY`` runs on a standby unless it asks for ``SERIALIZABLE`` (which a hot
  standby refuses).

Known limit (as on MySQL): a built-in's name is trusted to mean the built-in. A
``search_path`` that puts another schema before ``pg_catalog`` could shadow one with a
function that writes; the standby would then refuse the read (SQLSTATE 25006).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CompoundSelect, Select, TextualSelect

from . import classify as _classify
from ._lexer import (
    DOT,
    LPAREN,
    NUMBER,
    OP,
    QUOTED_ID,
    RPAREN,
    SEMI,
    STRING,
    WORD,
    LexError,
    Tok,
)
from ._lexer_pg import PARAM, lex, quoted_name
from .classify import (
    _PLAIN_READ,
    _READ_START_WORDS,
    _SESSION_STATE,
    _UNKNOWN_CLAUSE,
    _WRITE_CLAUSE,
    PRIMARY_UNKNOWN,
    Classification,
    Flag,
    Target,
    _end_txn,
    _matching_paren,
    _primary,
    _Rule,
    _rule_write,
    _select_classifier,
    _text_cache,
    _token_rules,
    _write_from_verb,
)

__all__ = ["classify_clause_pg", "classify_pg"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Built-in functions known to read nothing but their arguments and the data they are given, and
# to run on a hot standby as on the primary. Anything called that is not here (user functions,
# extensions' functions, built-ins with side effects or that differ per node) goes to the
# primary. Grow this list rather than special-casing at call sites.
READ_ONLY_FUNCTIONS = _words("""
    ABS CBRT CEIL CEILING DEGREES DIV EXP FACTORIAL FLOOR GCD LCM LN LOG LOG10 MIN_SCALE MOD PI
    POWER RADIANS ROUND SCALE SIGN SQRT TRIM_SCALE TRUNC WIDTH_BUCKET RANDOM RANDOM_NORMAL ACOS
    ACOSD ASIN ASIND ATAN ATAND ATAN2 ATAN2D COS COSD COT COTD SIN SIND TAN TAND SINH COSH TANH
    ASINH ACOSH ATANH ERF ERFC
    ASCII BIT_LENGTH BTRIM CHAR_LENGTH CHARACTER_LENGTH CHR CONCAT CONCAT_WS CONVERT
    CONVERT_FROM CONVERT_TO DECODE ENCODE FORMAT INITCAP LEFT LENGTH LOWER LPAD LTRIM MD5
    NORMALIZE OCTET_LENGTH OVERLAY PARSE_IDENT POSITION QUOTE_IDENT QUOTE_LITERAL
    QUOTE_NULLABLE REGEXP_COUNT REGEXP_INSTR REGEXP_LIKE REGEXP_MATCH REGEXP_MATCHES
    REGEXP_REPLACE REGEXP_SPLIT_TO_ARRAY REGEXP_SPLIT_TO_TABLE REGEXP_SUBSTR REPEAT REPLACE
    REVERSE RIGHT RPAD RTRIM SPLIT_PART STARTS_WITH STRING_TO_ARRAY STRING_TO_TABLE STRPOS
    SUBSTR SUBSTRING TO_ASCII TO_HEX TRANSLATE TRIM UPPER UNISTR SHA224 SHA256 SHA384 SHA512
    GET_BIT GET_BYTE SET_BIT SET_BYTE BIT_COUNT CASEFOLD
    TO_CHAR TO_DATE TO_NUMBER TO_TIMESTAMP
    AGE CLOCK_TIMESTAMP CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATE_ADD DATE_BIN
    DATE_PART DATE_SUBTRACT DATE_TRUNC EXTRACT ISFINITE JUSTIFY_DAYS JUSTIFY_HOURS
    JUSTIFY_INTERVAL LOCALTIME LOCALTIMESTAMP MAKE_DATE MAKE_INTERVAL MAKE_TIME MAKE_TIMESTAMP
    MAKE_TIMESTAMPTZ NOW STATEMENT_TIMESTAMP TIMEOFDAY TRANSACTION_TIMESTAMP TIMEZONE
    PG_SLEEP PG_SLEEP_FOR PG_SLEEP_UNTIL
    COALESCE NULLIF GREATEST LEAST NUM_NULLS NUM_NONNULLS ENUM_FIRST ENUM_LAST ENUM_RANGE
    ANY_VALUE ARRAY_AGG AVG BIT_AND BIT_OR BIT_XOR BOOL_AND BOOL_OR COUNT EVERY JSON_AGG
    JSONB_AGG JSON_OBJECT_AGG JSONB_OBJECT_AGG JSON_ARRAYAGG JSON_OBJECTAGG MAX MIN RANGE_AGG
    RANGE_INTERSECT_AGG STRING_AGG SUM XMLAGG CORR COVAR_POP COVAR_SAMP REGR_AVGX REGR_AVGY
    REGR_COUNT REGR_INTERCEPT REGR_R2 REGR_SLOPE REGR_SXX REGR_SXY REGR_SYY STDDEV STDDEV_POP
    STDDEV_SAMP VARIANCE VAR_POP VAR_SAMP MODE PERCENTILE_CONT PERCENTILE_DISC GROUPING
    ROW_NUMBER RANK DENSE_RANK PERCENT_RANK CUME_DIST NTILE LAG LEAD FIRST_VALUE LAST_VALUE
    NTH_VALUE
    ARRAY_APPEND ARRAY_CAT ARRAY_DIMS ARRAY_FILL ARRAY_LENGTH ARRAY_LOWER ARRAY_NDIMS
    ARRAY_POSITION ARRAY_POSITIONS ARRAY_PREPEND ARRAY_REMOVE ARRAY_REPLACE ARRAY_TO_STRING
    ARRAY_UPPER ARRAY_SAMPLE ARRAY_SHUFFLE CARDINALITY TRIM_ARRAY UNNEST GENERATE_SERIES
    GENERATE_SUBSCRIPTS
    ISEMPTY LOWER_INC UPPER_INC LOWER_INF UPPER_INF RANGE_MERGE MULTIRANGE INT4RANGE INT8RANGE
    NUMRANGE TSRANGE TSTZRANGE DATERANGE INT4MULTIRANGE INT8MULTIRANGE NUMMULTIRANGE
    TSMULTIRANGE TSTZMULTIRANGE DATEMULTIRANGE
    TO_JSON TO_JSONB ARRAY_TO_JSON ROW_TO_JSON JSON_BUILD_ARRAY JSONB_BUILD_ARRAY
    JSON_BUILD_OBJECT JSONB_BUILD_OBJECT JSON_OBJECT JSONB_OBJECT JSON_ARRAY_LENGTH
    JSONB_ARRAY_LENGTH JSON_EACH JSONB_EACH JSON_EACH_TEXT JSONB_EACH_TEXT JSON_EXTRACT_PATH
    JSONB_EXTRACT_PATH JSON_EXTRACT_PATH_TEXT JSONB_EXTRACT_PATH_TEXT JSON_OBJECT_KEYS
    JSONB_OBJECT_KEYS JSON_POPULATE_RECORD JSONB_POPULATE_RECORD JSON_POPULATE_RECORDSET
    JSONB_POPULATE_RECORDSET JSON_ARRAY_ELEMENTS JSONB_ARRAY_ELEMENTS JSON_ARRAY_ELEMENTS_TEXT
    JSONB_ARRAY_ELEMENTS_TEXT JSON_TO_RECORD JSONB_TO_RECORD JSON_TO_RECORDSET
    JSONB_TO_RECORDSET JSON_STRIP_NULLS JSONB_STRIP_NULLS JSONB_SET JSONB_SET_LAX JSONB_INSERT
    JSONB_PATH_EXISTS JSONB_PATH_MATCH JSONB_PATH_QUERY JSONB_PATH_QUERY_ARRAY
    JSONB_PATH_QUERY_FIRST JSONB_PATH_EXISTS_TZ JSONB_PATH_MATCH_TZ JSONB_PATH_QUERY_TZ
    JSONB_PATH_QUERY_ARRAY_TZ JSONB_PATH_QUERY_FIRST_TZ JSONB_PRETTY JSON_TYPEOF JSONB_TYPEOF
    JSON_ARRAY JSON_SCALAR JSON_SERIALIZE JSON_EXISTS JSON_QUERY JSON_VALUE JSON_TABLE JSON
    GEN_RANDOM_UUID UUIDV4 UUIDV7 UUID_EXTRACT_TIMESTAMP UUID_EXTRACT_VERSION
    CURRENT_DATABASE CURRENT_CATALOG CURRENT_QUERY CURRENT_ROLE CURRENT_SCHEMA CURRENT_SCHEMAS
    CURRENT_USER SESSION_USER SYSTEM_USER USER VERSION CURRENT_SETTING
    HAS_ANY_COLUMN_PRIVILEGE HAS_COLUMN_PRIVILEGE HAS_DATABASE_PRIVILEGE
    HAS_FOREIGN_DATA_WRAPPER_PRIVILEGE HAS_FUNCTION_PRIVILEGE HAS_LANGUAGE_PRIVILEGE
    HAS_PARAMETER_PRIVILEGE HAS_SCHEMA_PRIVILEGE HAS_SEQUENCE_PRIVILEGE HAS_SERVER_PRIVILEGE
    HAS_TABLE_PRIVILEGE HAS_TABLESPACE_PRIVILEGE HAS_TYPE_PRIVILEGE PG_HAS_ROLE
    PG_TABLE_IS_VISIBLE PG_TYPE_IS_VISIBLE PG_FUNCTION_IS_VISIBLE PG_OPERATOR_IS_VISIBLE
    PG_COLLATION_IS_VISIBLE PG_CONVERSION_IS_VISIBLE PG_OPCLASS_IS_VISIBLE
    PG_STATISTICS_OBJ_IS_VISIBLE PG_TS_CONFIG_IS_VISIBLE
    PG_GET_EXPR PG_GET_CONSTRAINTDEF PG_GET_INDEXDEF PG_GET_VIEWDEF PG_GET_FUNCTIONDEF
    PG_GET_TRIGGERDEF PG_GET_SERIAL_SEQUENCE PG_GET_USERBYID PG_GET_FUNCTION_ARGUMENTS
    PG_GET_FUNCTION_RESULT PG_GET_FUNCTION_IDENTITY_ARGUMENTS PG_GET_RULEDEF
    PG_GET_STATISTICSOBJDEF PG_GET_PARTKEYDEF PG_GET_KEYWORDS PG_GET_OBJECT_ADDRESS
    PG_GET_FUNCTION_ARG_DEFAULT PG_GET_PARTITION_CONSTRAINTDEF PG_GET_INDEXDEF
    FORMAT_TYPE OBJ_DESCRIPTION COL_DESCRIPTION SHOBJ_DESCRIPTION PG_DESCRIBE_OBJECT
    PG_IDENTIFY_OBJECT PG_IDENTIFY_OBJECT_AS_ADDRESS TO_REGCLASS TO_REGTYPE TO_REGPROC
    TO_REGPROCEDURE TO_REGNAMESPACE TO_REGROLE TO_REGOPER TO_REGOPERATOR TO_REGCOLLATION
    TO_REGTYPEMOD PG_RELATION_SIZE PG_TOTAL_RELATION_SIZE PG_TABLE_SIZE PG_INDEXES_SIZE
    PG_DATABASE_SIZE PG_TABLESPACE_SIZE PG_SIZE_PRETTY PG_SIZE_BYTES PG_COLUMN_SIZE
    PG_RELATION_FILENODE PG_RELATION_FILEPATH PG_TYPEOF PG_ENCODING_TO_CHAR PG_CHAR_TO_ENCODING
    PG_CLIENT_ENCODING PG_INDEX_COLUMN_HAS_PROPERTY PG_INDEX_HAS_PROPERTY
    PG_INDEXAM_HAS_PROPERTY PG_COLUMN_COMPRESSION PG_COLLATION_FOR PG_INPUT_IS_VALID
    PG_INPUT_ERROR_INFO PG_PARTITION_TREE PG_PARTITION_ROOT PG_PARTITION_ANCESTORS
    PG_GET_CATALOG_FOREIGN_KEYS PG_OPTIONS_TO_TABLE PG_TABLESPACE_LOCATION
    TO_TSVECTOR TO_TSQUERY PLAINTO_TSQUERY PHRASETO_TSQUERY WEBSEARCH_TO_TSQUERY TS_RANK
    TS_RANK_CD TS_HEADLINE SETWEIGHT STRIP NUMNODE QUERYTREE ARRAY_TO_TSVECTOR
    TSVECTOR_TO_ARRAY TS_DELETE TS_FILTER GET_CURRENT_TS_CONFIG TSQUERY_PHRASE TS_LEXIZE
    HOST HOSTMASK MASKLEN NETMASK NETWORK BROADCAST ABBREV FAMILY INET_MERGE INET_SAME_FAMILY
    SET_MASKLEN TRUNC MACADDR8_SET7BIT
    AREA CENTER DIAMETER HEIGHT WIDTH ISCLOSED ISOPEN NPOINTS PCLOSE POPEN RADIUS SLOPE BOX
    CIRCLE LINE LSEG PATH POINT POLYGON BOUND_BOX DIAGONAL
    XMLCOMMENT XMLCONCAT XMLELEMENT XMLFOREST XMLPI XMLROOT XMLPARSE XMLSERIALIZE XMLEXISTS
    XPATH XPATH_EXISTS XMLTABLE XML_IS_WELL_FORMED XML_IS_WELL_FORMED_DOCUMENT
    XML_IS_WELL_FORMED_CONTENT XMLTEXT XMLATTRIBUTES XMLNAMESPACES
    TEXT INT2 INT4 INT8 FLOAT4 FLOAT8 NUMERIC DATE TIME TIMESTAMP TIMESTAMPTZ TIMETZ INTERVAL
    BOOL VARCHAR CHAR BPCHAR NAME OID REGCLASS UUID JSONB INET CIDR MACADDR MACADDR8 BYTEA
    MONEY XML TSVECTOR TSQUERY VARBIT
""")

# Words that may stand right before "(" without being a function call, whatever precedes
# them: PostgreSQL's reserved keywords and those that "cannot be function or type" (no
# function can have their name), and type names with a modifier (``numeric(10, 2)``).
PAREN_KEYWORDS = _words("""
    EXISTS IN NOT AND OR BETWEEN SYMMETRIC ASYMMETRIC CASE WHEN THEN ELSE END ANY ALL SOME
    ARRAY ROW USING ON AS FROM WHERE SELECT DISTINCT UNION INTERSECT EXCEPT LATERAL WITH
    VALUES HAVING WINDOW LIMIT OFFSET GROUP RETURNING TABLE FETCH ONLY COLLATE TO DEFAULT
    CAST TREAT PLACING LEADING TRAILING BOTH ORDER FOR
    DECIMAL DEC NUMERIC FLOAT REAL PRECISION INT INTEGER SMALLINT BIGINT BOOLEAN CHAR
    CHARACTER VARCHAR NCHAR NATIONAL BIT TIME TIMESTAMP INTERVAL
""")

# Keywords that may also name a user's function (unreserved, or "can be function or type"):
# before "(" they are syntax only where their clause puts them, after the word (or token
# kind) given here; anywhere else, a call.
_SYNTAX_AFTER_WORD = {
    "BY": frozenset({"ORDER", "GROUP", "PARTITION"}),  # ORDER BY (a + b)
    "MATERIALIZED": frozenset({"AS", "NOT"}),  # WITH c AS [NOT] MATERIALIZED (...)
    "SETS": frozenset({"GROUPING"}),
    "FIRST": frozenset({"FETCH"}),  # FETCH FIRST (n) ROWS ONLY
    "NEXT": frozenset({"FETCH"}),
    "ZONE": frozenset({"TIME"}),  # AT TIME ZONE (...)
    "VARYING": frozenset({"CHARACTER", "CHAR", "BIT"}),  # character varying(20)
    "SYSTEM": frozenset({"TABLESAMPLE"}),
    "BERNOULLI": frozenset({"TABLESAMPLE"}),
}
_SYNTAX_AFTER_PAREN = frozenset({"OVER", "FILTER", "REPEATABLE"})  # f(x) OVER (...)
# Infix keywords: syntax after what ends an operand (a name, a literal, ")"), a call after
# what starts an expression.
_INFIX_KEYWORDS = frozenset({"LIKE", "ILIKE", "IS", "JOIN", "OVERLAPS"})
_EXPRESSION_STARTS = _words("""
    SELECT WHERE AND OR NOT ON WHEN THEN ELSE HAVING BY DISTINCT RETURNING SET USING IN AS
    BETWEEN CASE ALL ANY SOME FROM VALUES
""")
_OPERAND_ENDS = frozenset({QUOTED_ID, NUMBER, STRING, PARAM, RPAREN})


def _keyword_syntax(toks: list[Tok], i: int) -> bool:
    """The word at *i*, before "(", is syntax rather than a call of a function of its name."""
    up = toks[i].up
    if up in PAREN_KEYWORDS:
        return True
    prev = toks[i - 1] if i else None
    if prev is None:
        return False
    after = _SYNTAX_AFTER_WORD.get(up)
    if after is not None:
        return prev.kind == WORD and prev.up in after
    if up in _SYNTAX_AFTER_PAREN:
        return prev.kind == RPAREN
    if up in ("CUBE", "ROLLUP"):  # GROUP BY ROLLUP (a, b)
        return prev.up == "BY" and i >= 2 and toks[i - 2].up == "GROUP"
    if up in _INFIX_KEYWORDS:
        if prev.kind == WORD:
            return prev.up not in _EXPRESSION_STARTS
        return prev.kind in _OPERAND_ENDS or prev.text == "]"
    return False


# Built-in operators (and the standard contrib modules' read-only ones: hstore, pg_trgm,
# ltree, PostGIS's spellings). A user-defined operator runs a user function: the primary.
KNOWN_OPERATORS = _words("""
    + - * / % ^ = <> != < > <= >= || ~ ~* !~ !~* ~~ ~~* !~~ !~~* @> <@ && ? ?| ?& -> ->> #>
    #>> #- @? @@ @@@ << >> <<= >>= & | # |/ ||/ @ <-> <#> <=> <<| |>> &< &> &<| |&> <^ >^ ?#
    ?- ?|| ?-| @-@ ## ~= -|- => :: := : [ ] <% %> <<% %>> <<<-> <->> ~>=~ ~<=~ ~>~ ~<~ !!
    <<-> <<<->> ^@ &<> &&& @@@
""")

# Sequences: nextval/setval advance a sequence (a write, refused by a standby); currval/lastval
# read what this connection took.
_SEQUENCE_WRITE = frozenset({"NEXTVAL", "SETVAL", "NEXT_VALUE"})
_SEQUENCE_READ = frozenset({"CURRVAL", "LASTVAL"})

ADVISORY_LOCK = "advisory lock"
ALL_ADVISORY_LOCKS = "all advisory locks"
_SESSION_LOCKS = _words("""
    PG_ADVISORY_LOCK PG_ADVISORY_LOCK_SHARED PG_TRY_ADVISORY_LOCK PG_TRY_ADVISORY_LOCK_SHARED
""")
_XACT_LOCKS = _words("""
    PG_ADVISORY_XACT_LOCK PG_ADVISORY_XACT_LOCK_SHARED PG_TRY_ADVISORY_XACT_LOCK
    PG_TRY_ADVISORY_XACT_LOCK_SHARED
""")
_UNLOCKS = frozenset({"PG_ADVISORY_UNLOCK", "PG_ADVISORY_UNLOCK_SHARED"})
_SESSION_FUNCTIONS = frozenset({"SET_CONFIG", "SETSEED"})
_XID_FUNCTIONS = frozenset({"TXID_CURRENT", "PG_CURRENT_XACT_ID"})

_WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
_READ_TRIGGERS = frozenset({"FOR", "INTO"}) | _WRITE_VERBS


# ---------------------------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------------------------


def _function_rule(name: str) -> Classification | None:
    """What calling built-in *name* (upper case) means; ``None``: a plain read."""
    if name in READ_ONLY_FUNCTIONS:
        return None
    if name in _SEQUENCE_WRITE:
        return _primary(f"{name.lower()}() advances a sequence", Flag.WRITE)
    if name in _SEQUENCE_READ:
        return _primary(f"{name.lower()}() reads the value this connection took")
    if name in _SESSION_LOCKS:
        return _primary(f"{name.lower()}() takes a session advisory lock", Flag.PIN, ADVISORY_LOCK)
    if name in _XACT_LOCKS:
        return _primary(
            f"{name.lower()}() takes an advisory lock until the transaction ends",
            Flag.LOCKING_READ,
        )
    if name in _UNLOCKS:
        return _primary(
            f"{name.lower()}() releases a session advisory lock", Flag.UNPIN, ADVISORY_LOCK
        )
    if name == "PG_ADVISORY_UNLOCK_ALL":
        return _primary(
            "pg_advisory_unlock_all() releases the session's advisory locks",
            Flag.UNPIN,
            ALL_ADVISORY_LOCKS,
        )
    if name == "PG_NOTIFY":
        return _primary("pg_notify() sends a notification (the primary only)", Flag.WRITE)
    if name in _SESSION_FUNCTIONS:
        return _primary(f"{name.lower()}() changes session state", Flag.SESSION_STATE)
    if name in _XID_FUNCTIONS:
        return _primary(f"{name.lower()}() assigns a transaction id", Flag.WRITE)
    return _primary(f"calls {name.lower()}(), which is not a known read-only built-in")


def _call(toks: list[Tok], i: int) -> Classification | None:
    """The token at *i* is followed by ``(``: a call, or syntax that looks like one?"""
    tok = toks[i]
    prev = toks[i - 1] if i else None
    if tok.kind == WORD:
        up = tok.up
        if (prev is None or prev.kind != DOT) and _keyword_syntax(toks, i):
            return None
        name = up
    else:  # a quoted name: the function of that exact (case-kept) name
        text = quoted_name(tok)
        name = text.upper() if text.isascii() and text == text.lower() else ""
    # Not calls: a type's modifier (x::numeric(10, 2)), an alias's column list
    # (AS t(a, b)), a CTE's column list (WITH c(a, b) AS (...)).
    if prev is not None and (prev.text == "::" or (prev.kind == WORD and prev.up == "AS")):
        return None
    close = _matching_paren(toks, i + 1)
    if (
        close + 2 < len(toks)
        and toks[close + 1].up == "AS"
        and (toks[close + 2].kind == LPAREN or toks[close + 2].up in ("MATERIALIZED", "NOT"))
        and (prev is None or prev.kind != DOT)
        and _in_with_list(toks, i)
    ):
        return None
    if prev is not None and prev.kind == DOT:
        schema = toks[i - 2] if i >= 2 else None
        if (
            schema is not None
            and schema.kind in (WORD, QUOTED_ID)
            and quoted_name(schema) == "pg_catalog"
            and (i < 3 or toks[i - 3].kind != DOT)
            and name
        ):
            return _function_rule(name)
        shown = f"{schema.text}.{tok.text}" if schema is not None else tok.text
        return _primary(f"calls {shown}(), which is not a known read-only built-in")
    if not name:
        return _primary(f"calls {tok.text}(), which is not a known read-only built-in")
    return _function_rule(name)


# Words that end a WITH list when met walking back from a name at the same depth: the name
# is then in a FROM list (``FROM f(1) AS (a int)``: a call with a column definition list).
_NOT_IN_WITH_LIST = _words("""
    SELECT FROM JOIN WHERE HAVING GROUP ORDER LIMIT OFFSET UNION INTERSECT EXCEPT VALUES TABLE
    LATERAL RETURNING WINDOW FETCH FOR INTO ON INSERT UPDATE DELETE MERGE
""")


def _in_with_list(toks: list[Tok], i: int) -> bool:
    """The name at *i* is a CTE's (``WITH c(a, b) AS (...)``), not a function's: walking back
    at the same parenthesis depth, over earlier CTEs, reaches ``WITH``."""
    j = i - 1
    while j >= 0:
        tok = toks[j]
        if tok.kind == RPAREN:  # skip a whole earlier CTE body or column list
            depth = 0
            while j >= 0:
                if toks[j].kind == RPAREN:
                    depth += 1
                elif toks[j].kind == LPAREN:
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
        elif tok.kind == LPAREN:
            return False  # the name is inside parentheses that WITH does not open
        elif tok.kind == WORD and tok.up == "WITH":
            return True
        elif tok.kind == WORD and tok.up in _NOT_IN_WITH_LIST:
            return False
        j -= 1
    return False


def _read_trigger(toks: list[Tok], i: int) -> Classification | None:
    """A word that may make a read more than a read (FOR, INTO, a write verb)."""
    tok = toks[i]
    if i and toks[i - 1].kind == DOT:
        return None  # t.update: a column named like a keyword
    nxt = toks[i + 1].up if i + 1 < len(toks) else ""
    up = tok.up
    if up == "FOR":
        if nxt in ("UPDATE", "SHARE", "NO", "KEY"):
            after = " ".join(t.up for t in toks[i + 1 : i + 4] if t.kind == WORD)
            what = next(
                (
                    m
                    for m in ("NO KEY UPDATE", "KEY SHARE", "UPDATE", "SHARE")
                    if after.startswith(m)
                ),
                nxt,
            )
            return _primary(f"locking read (FOR {what})", Flag.LOCKING_READ)
        return None
    if up == "INTO":
        j = i + 1
        temp = False
        while j < len(toks) and toks[j].up in ("TEMPORARY", "TEMP", "UNLOGGED", "TABLE"):
            temp = temp or toks[j].up in ("TEMPORARY", "TEMP")
            j += 1
        name = _name_at(toks, j)
        if temp or _in_pg_temp(toks, j):
            return _primary(
                "SELECT ... INTO TEMP creates a temporary table on the primary connection",
                Flag.WRITE | Flag.PIN,
                f"temporary table {name}",
            )
        return _primary("SELECT ... INTO creates a table", Flag.WRITE)
    if i + 1 < len(toks) and toks[i + 1].kind == LPAREN:
        return None  # left to the call check
    return _primary(f"{up} inside a read statement writes", Flag.WRITE)


def _operator_syntax(toks: list[Tok], i: int) -> Classification | None:
    """``OPERATOR(schema.op)``: only ``pg_catalog``'s operators are known built-ins (the
    operator itself is checked with the other operator tokens). Without an operator inside,
    ``operator(...)`` is a call of a function of that name."""
    inner = toks[i + 2 : _matching_paren(toks, i + 1)]
    if not inner or inner[-1].kind != OP or (i and toks[i - 1].kind == DOT):
        return _call(toks, i)
    for tok in inner:
        if tok.kind in (WORD, QUOTED_ID) and quoted_name(tok) != "pg_catalog":
            return _primary(f"operator of schema {tok.text} is not a known built-in")
    return None


def _scan_read(toks: list[Tok]) -> Classification:
    """Check a SELECT-like statement for anything that makes it more than a plain read."""
    n = len(toks)
    for i, tok in enumerate(toks):
        kind = tok.kind
        if kind == WORD:
            if i + 1 < n and toks[i + 1].kind == LPAREN:
                found = _call(toks, i) if tok.up != "OPERATOR" else _operator_syntax(toks, i)
                if found is not None:
                    return found
            if tok.up in _READ_TRIGGERS:
                found = _read_trigger(toks, i)
                if found is not None:
                    return found
        elif kind == QUOTED_ID:
            if i + 1 < n and toks[i + 1].kind == LPAREN:
                found = _call(toks, i)
                if found is not None:
                    return found
        elif kind == OP:
            if tok.text not in KNOWN_OPERATORS:
                return _primary(f"operator {tok.text} is not a known built-in")
        elif kind == SEMI:
            return _primary("several statements in one text", Flag.MULTI_STATEMENT)
    return _PLAIN_READ


# ---------------------------------------------------------------------------------------------
# Rules, by first word
# ---------------------------------------------------------------------------------------------


def _name_at(toks: list[Tok], i: int) -> str:
    """The last part of the (qualified) object name starting at *i*."""
    name = ""
    while i < len(toks) and toks[i].kind in (WORD, QUOTED_ID):
        name = quoted_name(toks[i])
        if i + 2 < len(toks) and toks[i + 1].kind == DOT:
            i += 2
            continue
        break
    return name


def _in_pg_temp(toks: list[Tok], i: int) -> bool:
    """The name at *i* is qualified by ``pg_temp`` (a temporary object)."""
    return (
        i + 1 < len(toks)
        and toks[i].kind in (WORD, QUOTED_ID)
        and toks[i + 1].kind == DOT
        and quoted_name(toks[i]).startswith("pg_temp")
    )


# Settings whose value belongs to the connection's transaction or to the node.
_SHOW_PRIMARY_PREFIXES = ("TRANSACTION", "DEFAULT_TRANSACTION", "IN_HOT_STANDBY")
_SHOW = Classification(Target.REPLICA, "SHOW reads a setting")


def _rule_show(toks: list[Tok]) -> Classification:
    if len(toks) < 2 or toks[1].kind not in (WORD, QUOTED_ID):
        return _primary(PRIMARY_UNKNOWN)
    name = toks[1].up if toks[1].kind == WORD else quoted_name(toks[1]).upper()
    if name.startswith(_SHOW_PRIMARY_PREFIXES):
        return _primary(f"SHOW {toks[1].text} reads the state of the connection's transaction")
    if len(toks) > 3 or any(t.kind not in (WORD, QUOTED_ID, DOT) for t in toks[1:]):
        return _primary(PRIMARY_UNKNOWN)
    return _SHOW


_EXPLAIN_OPTIONS = _words("""
    ANALYZE ANALYSE VERBOSE COSTS SETTINGS GENERIC_PLAN BUFFERS SERIALIZE WAL TIMING SUMMARY
    MEMORY FORMAT
""")


def _rule_explain(toks: list[Tok]) -> Classification:
    rest = toks[1:]
    analyze = False
    if rest and rest[0].kind == LPAREN:
        close = _matching_paren(rest, 0)
        analyze = any(t.up in ("ANALYZE", "ANALYSE") for t in rest[1:close])
        rest = rest[close + 1 :]
    while rest and rest[0].kind == WORD and rest[0].up in ("ANALYZE", "ANALYSE", "VERBOSE"):
        analyze = analyze or rest[0].up != "VERBOSE"
        rest = rest[1:]
    if not rest:
        return _primary(PRIMARY_UNKNOWN)
    inner = _classify_tokens(rest)
    if inner.target is Target.REPLICA and not inner.flags:
        what = "EXPLAIN ANALYZE" if analyze else "EXPLAIN"
        return Classification(Target.REPLICA, f"{what} of a plain read")
    if analyze:
        return _primary(
            f"EXPLAIN ANALYZE runs the statement ({inner.reason})",
            inner.flags & ~Flag.TXN_READ_ONLY,
            inner.resource,
        )
    return _primary(f"EXPLAIN of a statement that is not a plain read ({inner.reason})")


_TXN_SCOPED = "lasts until the transaction ends: the transaction stays on the primary"


def _rule_set(toks: list[Tok]) -> Classification:
    second = toks[1].up if len(toks) > 1 else ""
    if second == "LOCAL":
        return _primary(f"SET LOCAL {_TXN_SCOPED}")
    if second in ("TRANSACTION", "CONSTRAINTS"):
        return _primary(f"SET {second} {_TXN_SCOPED}")
    return _SESSION_STATE


def _rule_reset(toks: list[Tok]) -> Classification:
    return _SESSION_STATE


def _rule_discard(toks: list[Tok]) -> Classification:
    what = toks[1].up if len(toks) > 1 else ""
    if what in ("TEMP", "TEMPORARY", "ALL"):
        # Dropping the session's temporary objects writes the catalog (the server check
        # saw DISCARD TEMP take a transaction id).
        return _primary(
            f"DISCARD {what} drops the session's temporary objects on the primary",
            Flag.SESSION_STATE | Flag.WRITE,
        )
    return Classification(Target.ALL, f"DISCARD {what} resets session state", Flag.SESSION_STATE)


def _rule_load(toks: list[Tok]) -> Classification:
    return _primary("LOAD loads a library into the session", Flag.SESSION_STATE)


_READ_ONLY_TXN = Classification(
    Target.REPLICA,
    "opens a read-only transaction: it runs on one standby",
    Flag.TXN_BEGIN | Flag.TXN_READ_ONLY,
)


def _rule_begin(toks: list[Tok]) -> Classification:
    if toks[0].up == "START" and (len(toks) < 2 or toks[1].up != "TRANSACTION"):
        return _primary(PRIMARY_UNKNOWN, Flag.WRITE)
    words = [t.up for t in toks[1:] if t.kind == WORD]
    pairs = set(itertools.pairwise(words))
    if ("READ", "ONLY") in pairs and ("READ", "WRITE") not in pairs:
        if "SERIALIZABLE" in words:
            return _primary(
                "a SERIALIZABLE transaction cannot run on a hot standby", Flag.TXN_BEGIN
            )
        return _READ_ONLY_TXN
    return _primary("opens a transaction", Flag.TXN_BEGIN)


def _rule_end_txn(toks: list[Tok]) -> Classification:
    words = [t.up for t in toks[1:] if t.kind == WORD]
    if words[:1] == ["PREPARED"]:
        return _primary(f"{toks[0].up} PREPARED finishes a prepared transaction", Flag.WRITE)
    return _end_txn(words)  # as on MySQL


def _rule_savepoint(toks: list[Tok]) -> Classification:
    return _primary(f"{toks[0].up} belongs to the open transaction")


_TEMP_KINDS = ("TABLE", "VIEW", "SEQUENCE")


def _temp_object(toks: list[Tok]) -> tuple[str, str] | None:
    """``CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP[ORARY] [UNLOGGED] TABLE|VIEW|SEQUENCE [IF NOT
    EXISTS] name`` (or a name in ``pg_temp``) → (kind, name); ``None`` for other CREATEs."""
    i = 1
    temp = False
    while i < len(toks) and toks[i].up in (
        "OR", "REPLACE", "GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED", "RECURSIVE"
    ):  # fmt: skip
        temp = temp or toks[i].up in ("TEMP", "TEMPORARY")
        i += 1
    if i >= len(toks) or toks[i].up not in _TEMP_KINDS:
        return None
    kind = toks[i].up.lower()
    i += 1
    while i < len(toks) and toks[i].up in ("IF", "NOT", "EXISTS"):
        i += 1
    if temp or _in_pg_temp(toks, i):
        return kind, _name_at(toks, i)
    return None


def _rule_create(toks: list[Tok]) -> Classification:
    temp = _temp_object(toks)
    if temp is not None:
        kind, name = temp
        return _primary(
            f"creates a temporary {kind}: it lives on the primary connection",
            Flag.WRITE | Flag.PIN,
            f"temporary {kind} {name}",
        )
    return _primary("CREATE changes the schema", Flag.WRITE)


def _rule_drop(toks: list[Tok]) -> Classification:
    second = toks[1].up if len(toks) > 1 else ""
    if second in _TEMP_KINDS:
        i = 2
        while i < len(toks) and toks[i].up in ("IF", "EXISTS"):
            i += 1
        kind = second.lower()
        return _primary(
            "DROP changes the schema",
            Flag.WRITE | Flag.UNPIN,
            f"temporary {kind} {_name_at(toks, i)}",
        )
    return _primary("DROP changes the schema", Flag.WRITE)


def _rule_lock(toks: list[Tok]) -> Classification:
    return _primary("LOCK TABLE holds table locks until the transaction ends", Flag.LOCKING_READ)


def _rule_listen(toks: list[Tok]) -> Classification:
    channel = _name_at(toks, 1)
    return _primary(
        "LISTEN registers the connection for notifications",
        Flag.PIN | Flag.SESSION_STATE,
        f"LISTEN {channel}",
    )


def _rule_unlisten(toks: list[Tok]) -> Classification:
    if len(toks) > 1 and toks[1].kind in (WORD, QUOTED_ID):
        channel = _name_at(toks, 1)
        return _primary("UNLISTEN stops notifications", Flag.UNPIN, f"LISTEN {channel}")
    return _primary("UNLISTEN * stops notifications on the primary connection")


def _rule_notify(toks: list[Tok]) -> Classification:
    return _primary("NOTIFY sends a notification (the primary only)", Flag.WRITE)


def _rule_copy(toks: list[Tok]) -> Classification:
    i = 1
    inner = _PLAIN_READ
    if i < len(toks) and toks[i].kind == LPAREN:
        close = _matching_paren(toks, i)
        inner = _classify_tokens(toks[i + 1 : close])
        i = close + 1
    else:
        while i < len(toks) and toks[i].up == "BINARY":
            i += 1
        while i < len(toks) and toks[i].kind in (WORD, QUOTED_ID, DOT):
            if toks[i].up in ("FROM", "TO") and i > 1 and toks[i - 1].kind != DOT:
                break
            i += 1
        if i < len(toks) and toks[i].kind == LPAREN:  # a column list
            i = _matching_paren(toks, i) + 1
    direction = toks[i].up if i < len(toks) else ""
    if direction == "FROM":
        return _primary("COPY ... FROM loads data", Flag.WRITE)
    if direction != "TO":
        return _primary(PRIMARY_UNKNOWN, Flag.WRITE)
    where = toks[i + 1].up if i + 1 < len(toks) else ""
    if where != "STDOUT":
        return _primary("COPY ... TO a file or program writes on the server", Flag.WRITE)
    if inner.target is not Target.REPLICA or inner.flags:
        return _primary(f"COPY of a statement that is not a plain read ({inner.reason})",
                        inner.flags & ~Flag.TXN_READ_ONLY, inner.resource)  # fmt: skip
    for tok in toks[i + 2 :]:
        if tok.kind == SEMI:
            return _primary("several statements in one text", Flag.MULTI_STATEMENT)
    return Classification(Target.REPLICA, "COPY ... TO STDOUT reads")


def _rule_prepare(toks: list[Tok]) -> Classification:
    if len(toks) > 1 and toks[1].up == "TRANSACTION":
        return _primary(
            "PREPARE TRANSACTION ends the transaction, prepared for two-phase commit",
            Flag.WRITE | Flag.TXN_END,
        )
    name = _name_at(toks, 1)
    return _primary(
        "PREPARE makes a statement on the connection",
        Flag.PIN | Flag.SESSION_STATE,
        f"prepared statement {name}",
    )


def _rule_execute(toks: list[Tok]) -> Classification:
    return _primary("EXECUTE runs a prepared statement (not known here)", Flag.WRITE)


def _rule_deallocate(toks: list[Tok]) -> Classification:
    i = 2 if len(toks) > 1 and toks[1].up == "PREPARE" else 1
    if i < len(toks) and toks[i].up == "ALL" and toks[i].kind == WORD:
        return _primary("DEALLOCATE ALL releases the connection's prepared statements")
    return _primary(
        "DEALLOCATE releases a prepared statement",
        Flag.UNPIN,
        f"prepared statement {_name_at(toks, i)}",
    )


def _rule_declare(toks: list[Tok]) -> Classification:
    name = _name_at(toks, 1)
    hold = False
    for j in range(2, len(toks) - 1):
        if toks[j].up == "WITH" and toks[j + 1].up == "HOLD":
            hold = True
        if toks[j].up == "FOR" and toks[j].kind == WORD:
            inner = _classify_tokens(toks[j + 1 :])
            flags = Flag.LOCKING_READ | (inner.flags & ~(Flag.TXN_READ_ONLY | Flag.TXN_BEGIN))
            if hold:
                return _primary(
                    "DECLARE ... WITH HOLD keeps a cursor on the connection",
                    flags | Flag.PIN | Flag.SESSION_STATE,
                    f"cursor {name}",
                )
            return _primary(
                "DECLARE opens a cursor in the transaction on the primary",
                flags,
                inner.resource,
            )
    return _primary(PRIMARY_UNKNOWN, Flag.WRITE)


def _rule_fetch(toks: list[Tok]) -> Classification:
    return _primary(f"{toks[0].up} reads through a cursor opened on the primary")


def _rule_close(toks: list[Tok]) -> Classification:
    if len(toks) > 1 and toks[1].kind == WORD and toks[1].up == "ALL":
        return _primary("CLOSE ALL closes the connection's cursors")
    return _primary("CLOSE closes a cursor", Flag.UNPIN, f"cursor {_name_at(toks, 1)}")


def _rule_code(toks: list[Tok]) -> Classification:
    verb = toks[0].up
    return _primary(
        f"{verb} runs code rwsplit cannot see: it may write and leave session state",
        Flag.WRITE | Flag.SESSION_STATE,
    )


_VERB_RULES: dict[str, _Rule] = {
    **dict.fromkeys(_READ_START_WORDS, _scan_read),
    "SHOW": _rule_show,
    "EXPLAIN": _rule_explain,
    "SET": _rule_set,
    "RESET": _rule_reset,
    "DISCARD": _rule_discard,
    "LOAD": _rule_load,
    "BEGIN": _rule_begin,
    "START": _rule_begin,
    "COMMIT": _rule_end_txn,
    "END": _rule_end_txn,
    "ROLLBACK": _rule_end_txn,
    "ABORT": _rule_end_txn,
    "SAVEPOINT": _rule_savepoint,
    "RELEASE": _rule_savepoint,
    "CREATE": _rule_create,
    "DROP": _rule_drop,
    "LOCK": _rule_lock,
    "LISTEN": _rule_listen,
    "UNLISTEN": _rule_unlisten,
    "NOTIFY": _rule_notify,
    "COPY": _rule_copy,
    "PREPARE": _rule_prepare,
    "EXECUTE": _rule_execute,
    "DEALLOCATE": _rule_deallocate,
    "DECLARE": _rule_declare,
    "FETCH": _rule_fetch,
    "MOVE": _rule_fetch,
    "CLOSE": _rule_close,
    "DO": _rule_code,
    "CALL": _rule_code,
    **dict.fromkeys(
        _words("""INSERT UPDATE DELETE MERGE TRUNCATE ALTER GRANT REVOKE COMMENT SECURITY
        VACUUM ANALYZE ANALYSE REINDEX CLUSTER CHECKPOINT REFRESH REASSIGN IMPORT"""),
        _rule_write,
    ),
}


# MySQL's dispatch with these rules; what starts with neither a word nor "(" may write, and
# several statements in one text are never a read-only transaction.
_classify_tokens, _decide = _token_rules(
    _VERB_RULES, _scan_read, unknown=Flag.WRITE, multi_drops=Flag.TXN_READ_ONLY
)


def _classify_lexed(sql: str, *, backslash_quotes: bool = False) -> Classification:
    try:
        toks, hint = lex(sql, backslash_quotes=backslash_quotes)
    except LexError as exc:
        return _primary(f"unparseable ({exc}): sent to the primary")
    return _decide(toks, hint)


_WRITE_FROM_VERB = _write_from_verb(_VERB_RULES)


# The plain-read shortcut (see _is_plain_read): a read verb first (ASCII case folding, as the
# server's keywords), names called, operator runs, quoted names called, text that lexes.
_ID_CHARS = "A-Za-z_0-9$\u0080-\U0010ffff"
_PLAIN_HEAD_RE = re.compile(
    rf"[ \t\n\r\f\v(]*+(?:SELECT|WITH|VALUES|TABLE)(?![{_ID_CHARS}])", re.IGNORECASE | re.ASCII
)
# Every name before "(", found in the *reversed* text (the engine jumps from one "(" to the
# next): group 1 is the reversed name, group 2 the "." before it if it is qualified. Over the
# whole text, strings too: a superset, which is safe.
_REVERSED_CALL_RE = re.compile(rf"\([ \t\n\r\f\v]*+([{_ID_CHARS}]++)([ \t\n\r\f\v]*+\.)?")
_QUOTED_CALL_RE = re.compile(r'"[ \t\n\r\f\v]*+\(')
_OPERATOR_RUN_RE = re.compile(r"[\-+*/<>=~!@#%^&|`?]++")
_LEXABLE_RE = re.compile(
    r"""(?:[^'"{}\x00-\x08\x0e-\x1f\x7f]++|'(?:[^']++|'')*+'|"(?:[^"]++|"")*+")*+\Z"""
)
_PLAIN_TRIGGERS = ("FOR", "INTO", "INSERT", "UPDATE", "DELETE", "MERGE")
_PLAIN_CALLS = READ_ONLY_FUNCTIONS | PAREN_KEYWORDS


def _is_plain_read(sql: str) -> bool:
    """True when *sql* is certainly a plain read, decided without tokens; False: let the
    lexer and rules decide. A superset check over the whole text (strings included, so
    nothing can hide in one): no ``;``, comment, backslash or ``$``; a read verb first; no
    trigger word anywhere (``FOR``, ``INTO``, a write verb); every name called is an
    unqualified read-only built-in or keyword, no quoted name is called, every run of
    operator characters is a built-in operator, and every string and quoted name is closed.
    A property test checks that it agrees with the general path.
    """
    if (
        ";" in sql
        or "--" in sql
        or "/*" in sql
        or "\\" in sql
        or "$" in sql
        or _PLAIN_HEAD_RE.match(sql) is None
    ):
        return False
    if not sql.isascii():
        return False  # keywords fold ASCII letters only; str.upper() folds more
    up = sql.upper()
    for word in _PLAIN_TRIGGERS:
        if word in up:
            return False
    if "(" in sql:
        for name, dot in _REVERSED_CALL_RE.findall(up[::-1]):
            if dot or name[::-1] not in _PLAIN_CALLS:
                return False
        if '"' in sql and _QUOTED_CALL_RE.search(sql) is not None:
            return False
    for op in _OPERATOR_RUN_RE.findall(sql):
        if op not in KNOWN_OPERATORS:
            return False
    return _LEXABLE_RE.match(sql) is not None


def _classify_uncached(sql: str) -> Classification:
    """Classify *sql* (no cache).

    A write verb with no ``;`` and no comment in the text decides from its first word; a plain
    read is recognised without tokens (:func:`_is_plain_read`). A text with a backslash is
    read both ways a server may read it (``standard_conforming_strings`` on and off): the same
    answer both ways stands, otherwise it goes to the primary with the side effects of both
    readings.
    """
    if ";" not in sql and "--" not in sql and "/*" not in sql:
        head = sql.lstrip(" \t\n\r\f\v")[:12].split(None, 1)
        if head:
            write = _WRITE_FROM_VERB.get(head[0].upper())
            if write is not None:
                return write
    if _is_plain_read(sql):
        return _PLAIN_READ
    return _classify_general(sql)


def _classify_general(sql: str) -> Classification:
    """The general path: the lexer (both ways for a backslash) and the rules."""
    c = _classify_lexed(sql)
    if "\\" in sql and "'" in sql:
        other = _classify_lexed(sql, backslash_quotes=True)
        if other != c:
            flags = c.flags | other.flags
            if Target.ALL in (c.target, other.target):
                flags |= Flag.SESSION_STATE
            return _primary(
                "strings read differently with standard_conforming_strings off: "
                f"sent to the primary ({c.reason})",
                flags & ~Flag.TXN_READ_ONLY,
                c.resource or other.resource,
            )
    return c


_classify_text = _text_cache(_classify_uncached)  # bounded as MySQL's


def classify_pg(sql: str) -> Classification:
    """Classify one PostgreSQL SQL text (cached by text).

    The same as ``classify(sql, dialect="postgresql")``.

    >>> classify_pg("SELECT id FROM users WHERE id = %s").target.value
    'replica'
    >>> classify_pg("SELECT * FROM jobs FOR NO KEY UPDATE SKIP LOCKED").reason
    'locking read (FOR NO KEY UPDATE)'
    >>> classify_pg("SELECT nextval('orders_id_seq')").target.value
    'primary'
    >>> classify_pg("SELECT pg_advisory_lock(42)").resource
    'advisory lock'
    >>> classify_pg("SET search_path TO app, public").target.value
    'all'
    """
    return _classify_text(sql)


# ---------------------------------------------------------------------------------------------
# SQLAlchemy constructs
# ---------------------------------------------------------------------------------------------

# SQLAlchemy's generic function names that are not PostgreSQL names of the same spelling, and
# compile to read-only built-ins (aggregate_strings → string_agg, char_length ...).
_SQLALCHEMY_READ_ONLY = frozenset(
    {"AGGREGATE_STRINGS", "CUBE", "ROLLUP", "GROUPING SETS", "SYSDATE", "CHAR_LENGTH"}
)


def _function_element(fn: FunctionElement[Any]) -> Classification | None:
    name = getattr(fn, "name", None)
    if not isinstance(name, str):
        return None  # Cast, Extract and friends: built-in syntax
    packages = getattr(fn, "packagenames", None) or ()
    if packages and tuple(p.lower() for p in packages) != ("pg_catalog",):
        return _primary(f"calls {'.'.join(packages)}.{name}()")
    up = name.upper()
    if up in _SQLALCHEMY_READ_ONLY:
        return None
    if not name.isascii():
        return _primary(f"calls {name}(), which is not a known read-only built-in")
    found = _function_rule(up)
    if found is not None:
        return Classification(found.target, f"Select {found.reason}", found.flags, found.resource)
    return None


def _text_fragment(sql: str) -> Classification | None:
    try:
        toks, _hint = lex(sql)
    except LexError:
        return _primary("Select with unparseable text")
    found = _scan_read(toks)
    if found is _PLAIN_READ:
        return None
    return Classification(found.target, f"Select text: {found.reason}", found.flags, found.resource)


def _inspect_select(clause: ClauseElement) -> Classification:
    """MySQL's walk of a Select (:func:`rwsplit.routing.classify._inspect_select`) with
    PostgreSQL's readings of functions and text fragments."""
    return _classify._inspect_select(clause, _function_element, _text_fragment)


_classify_select = _select_classifier(_inspect_select)


def classify_clause_pg(clause: Any) -> Classification:
    """Classify a SQLAlchemy statement for PostgreSQL from its own attributes, else its text.

    ``Insert``/``Update``/``Delete`` → primary; ``Select`` with ``with_for_update()`` (any
    mode: ``key_share``, ``read``, ``no key``) → primary; a ``Select`` calling a function that
    is not a known read-only built-in (``func.nextval``, ``func.my_fn``,
    ``func.pg_advisory_lock``) → primary; other ``Select`` → replica; ``text()`` → its text.

    >>> from sqlalchemy import select, func, literal
    >>> classify_clause_pg(select(func.now())).target.value
    'replica'
    >>> classify_clause_pg(select(func.nextval("s"))).target.value
    'primary'
    """
    if isinstance(clause, (Select, CompoundSelect)):
        return _classify_select(clause)
    if isinstance(clause, TextClause):
        return classify_pg(clause.text)
    if isinstance(clause, UpdateBase):
        return _WRITE_CLAUSE
    if isinstance(clause, TextualSelect) and isinstance(clause.element, TextClause):
        return classify_pg(clause.element.text)
    if isinstance(clause, str):
        return classify_pg(clause)
    return _UNKNOWN_CLAUSE
