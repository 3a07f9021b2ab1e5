"""The classifier's lexer: MySQL/MariaDB lexical rules as compiled regular expressions.

Two kinds of scanner live here, both single passes in the regular expression engine (no
per-character Python loop):

* :func:`lex` turns a text into :class:`Tok` tuples for the rule functions of
  :mod:`rwsplit.classify` (quoting, escapes, comments, executable comments ``/*! ... */``,
  optimizer hints ``/*+ ... */``).
* Shortcuts that decide common statements without tokens: :data:`HEAD_RE` (the first verb),
  :data:`STATEMENT_END_RE` (skip to the first ``;`` that ends a statement, through strings and
  comments), :data:`PLAIN_READ_RE` (a ``SELECT`` with nothing in it that could make it more
  than a read, function calls aside) and :data:`CALL_RE` (the function calls to vouch for).

The character classes follow the server's lexer (``sql/sql_lex.cc``): whitespace is the ASCII
``my_isspace`` set; every character from U+0080 up is an identifier character (the server's
identifier map takes every byte >= 0x80), so U+00A0 is never a separator; ``--`` starts a
comment only before a space or control character (``my_isspace || my_iscntrl``) or at the end
of the text, and the comment runs to the next newline (a CR does not end it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

# Token kinds. Keywords and identifiers are both WORD (upper-cased in ``up``); the rules decide.
# WORD and SYSVAR come first: ``kind < _UPPER_BELOW`` means "store the upper-cased text".
# LITERALS is a run of two or more literals separated by commas (``1, 2, 3``, ``'a', 'b'``):
# one token for an IN list or a VALUES row, which no rule looks into.
WORD, SYSVAR, QUOTED_ID, STRING, NUMBER, USERVAR, HINT, OP, SEMI, LPAREN, RPAREN, COMMA, DOT = (
    range(13)
)
LITERALS = 13
BORING = 14  # coarse_lex() only: a run of tokens no read rule looks at
_UPPER_BELOW = 2


class Tok(NamedTuple):
    """One token: its kind, its text, and its upper-cased text (WORD / SYSVAR only)."""

    kind: int
    text: str
    up: str


class LexError(Exception):
    """The text is not lexically valid SQL (unterminated string, stray character)."""


# Whitespace to the server (ASCII only: U+00A0 and friends are identifier characters).
_WS = r"[ \t\n\r\f\v]"
# Identifier characters: ASCII letters, digits, "_", "$" and everything from U+0080 up.
_ID = r"0-9A-Za-z_$\u0080-\U0010ffff"
_ID_START = r"A-Za-z_$\u0080-\U0010ffff"
# What may follow "--" for it to start a comment: a space or control character, or the end.
_DASH_COMMENT = r"--(?=[\x00-\x20\x7f]|\Z)"
_SQ = r"'(?:[^'\\]++|\\.|'')*+'"
_DQ = r'"(?:[^"\\]++|\\.|"")*+"'
_BQ = r"`(?:[^`]++|``)*+`"
_NUM = (
    rf"(?:0[xX][0-9A-Fa-f]+|0[bB][01]+|[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?"
    rf"|\.[0-9]+(?:[eE][+-]?[0-9]+)?)(?![{_ID}])"
)
_LITERAL = rf"(?:{_NUM}|[nN]?{_SQ}|{_DQ})"

# Whitespace is consumed in front of every token by the same match; ``end`` matches only
# trailing whitespace; ``bad`` is any character no token can start with. Words come first: they
# are the most common token.
_TOKEN_RE = re.compile(
    rf"""{_WS}*+(?:
      (?P<word>(?![nN]')[{_ID_START}][{_ID}]*+)
    | (?P<literals>{_LITERAL}(?:{_WS}*+,{_WS}*+{_LITERAL})++)
    | (?P<linecomment>(?:{_DASH_COMMENT}|\#)[^\n\x00]*+)
    | (?P<hint>/\*\+.*?\*/)
    | (?P<execopen>/\*!(?:[0-4][0-9]{{4}}|50[0-6][0-9]{{2}})(?![0-9])|/\*!(?![0-9]{{5}}))
    | (?P<execmaybe>/\*M?![0-9]{{5}}[0-9]?|/\*M!)
    | (?P<blockcomment>/\*.*?\*/)
    | (?P<openblock>/\*)
    | (?P<execclose>\*/)
    | (?P<string>[nN]?{_SQ}|{_DQ})
    | (?P<quotedid>{_BQ})
    | (?P<sysvar>@@(?:(?i:global|session|local)\.)?[A-Za-z0-9_$]+)
    | (?P<uservar>@(?:[A-Za-z0-9_$.]+|{_SQ}|{_DQ}|{_BQ}))
    | (?P<number>{_NUM})
    | (?P<digitword>[0-9]+[{_ID_START}][{_ID}]*+)
    | (?P<semi>;)
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<comma>,)
    | (?P<dot>\.)
    | (?P<op>:=|<=>|<<|>>|<=|>=|<>|!=|&&|\|\||->>|->|[-+*/%=<>!~^&|?:{{}}\[\]\\])
    | (?P<end>\Z)
    | (?P<bad>.)
    )""",
    re.VERBOSE | re.DOTALL,
)

# Kinds of the groups that make no token (negative: ``kind < 0`` sets them all aside with one
# comparison). Shared with the PostgreSQL lexer.
_SKIP = -1  # whitespace at the end, an executable comment's markers
_COMMENT = -2  # a comment: searched for a routing hint
_BAD = -3  # a character no token starts with, or a comment left open
_MAYBE = -4  # an executable comment that a server may run or skip
_KIND_OF_GROUP = {
    "word": WORD,
    "literals": LITERALS,
    "linecomment": _COMMENT,
    "hint": HINT,
    "execopen": _SKIP,
    "execmaybe": _MAYBE,
    "blockcomment": _COMMENT,
    "openblock": _BAD,
    "execclose": _SKIP,
    "string": STRING,
    "quotedid": QUOTED_ID,
    "sysvar": SYSVAR,
    "uservar": USERVAR,
    "number": NUMBER,
    "digitword": WORD,
    "semi": SEMI,
    "lparen": LPAREN,
    "rparen": RPAREN,
    "comma": COMMA,
    "dot": DOT,
    "op": OP,
    "end": _SKIP,
    "bad": _BAD,
}


def kinds_by_index(pattern: re.Pattern[str], kind_of_group: Mapping[str, int]) -> tuple[int, ...]:
    """The token kind of each group of *pattern*, by group number (:data:`_SKIP` for groups
    without a name). ``Match.lastindex`` names the group that matched when the groups that
    make tokens are top-level."""
    kinds = [_SKIP] * (pattern.groups + 1)
    for name, index in pattern.groupindex.items():
        kinds[index] = kind_of_group[name]
    return tuple(kinds)


_KIND_BY_INDEX_T = kinds_by_index(_TOKEN_RE, _KIND_OF_GROUP)
_new_tok = tuple.__new__

# Routing hints in comments: rwsplit's own and MaxScale's (so apps moving from MaxScale keep
# working). Only comments are searched, never string literals.
_ROUTING_HINT_RE = re.compile(
    r"rwsplit:\s*(primary|replica|master|slave)\b"
    r"|maxscale\s+route\s+to\s+(master|slave|last)\b",
    re.IGNORECASE | re.ASCII,  # ASCII case folding only: see may_hint()
)
_HINT_TARGETS = {
    "primary": "primary",
    "master": "primary",
    "replica": "replica",
    "slave": "replica",
    "last": "last",
}


def routing_hint(sql: str, start: int, end: int) -> str | None:
    """The first routing hint in the comment at ``sql[start:end]`` (``"primary"``,
    ``"replica"``, ``"last"``), or ``None``."""
    found = _ROUTING_HINT_RE.search(sql, start, end)
    if found is None:
        return None
    return _HINT_TARGETS[(found.group(1) or found.group(2)).lower()]


def lex_error(m: re.Match[str], index: int) -> LexError:
    """The error for group *index* of *m*, a stray character or a comment left open."""
    what = "a comment left open" if m.group(index) == "/*" else "the text"
    return LexError(f"cannot read {what} at offset {m.start(index)}")


def may_hint(sql: str) -> bool:
    """False when *sql* certainly holds no routing hint (one plain substring search each).

    The hint expression folds ASCII case only, so a hint's words are in ``sql.lower()``.
    """
    low = sql.lower()
    return "rwsplit" in low or "maxscale" in low


class Lexed(NamedTuple):
    """What :func:`lex` found."""

    toks: list[Tok]
    hint: str | None
    """The first routing hint in a comment (``"primary"``, ``"replica"``, ``"last"``)."""
    maybe: list[int]
    """Offsets of executable comments the server may run or skip, depending on its version
    and kind (``/*!80000 ... */``, ``/*M!100100 ... */``); their content is in ``toks``."""


# The token expression for text without comments (no "/*", "*/", "#" or "--": the caller
# checks), as five groups for ``findall``: words and system variables (upper-cased), literal
# runs, every other token (its kind follows from its first character), words that start with
# digits, and a stray character. The alternatives keep _TOKEN_RE's order wherever two of them
# can start with the same character, so the tokens are exactly lex()'s; words, the most
# common token, are tried first.
_PLAIN_TOKEN_RE = re.compile(
    rf"""{_WS}*+(?:
      ((?![nN]')[{_ID_START}][{_ID}]*+|@@(?:(?i:global|session|local)\.)?[A-Za-z0-9_$]+)
    | ({_LITERAL}(?:{_WS}*+,{_WS}*+{_LITERAL})++)
    | ([nN]?{_SQ}|{_DQ}|{_BQ}|@(?:[A-Za-z0-9_$.]+|{_SQ}|{_DQ}|{_BQ})|{_NUM}
       |[;(),.]|:=|<=>|<<|>>|<=|>=|<>|!=|&&|\|\||->>|->|[-+*/%=<>!~^&|?:{{}}\[\]\\])
    | ([0-9]+[{_ID_START}][{_ID}]*+)
    | (.)
    )""",
    re.VERBOSE | re.DOTALL,
)
_plain_tokens = _PLAIN_TOKEN_RE.findall
_KIND_OF_FIRST = {
    "'": STRING,
    '"': STRING,
    "n": STRING,
    "N": STRING,
    "`": QUOTED_ID,
    "@": USERVAR,
    ";": SEMI,
    "(": LPAREN,
    ")": RPAREN,
    ",": COMMA,
    ".": NUMBER,  # ".5"; a lone "." is DOT
    **dict.fromkeys("0123456789", NUMBER),
    **dict.fromkeys(":<>!&|-+*/%=~^?{}[]\\", OP),
}


# Tokens are immutable: the same words (keywords, column names) and operators recur in every
# statement, so their Tok values are made once and shared. Bounded: past _WORDS_KEPT
# distinct words, new ones are made each time (the cache is never a memory leak).
_OPERATOR_TOKS = {
    t: _new_tok(Tok, (DOT if t == "." else _KIND_OF_FIRST[t[0]], t, t))
    for t in (
        *";(),.",
        *[":=", "<=>", "<<", ">>", "<=", ">=", "<>", "!=", "&&", "||", "->>", "->"],
        *"-+*/%=<>!~^&|?:{}[]\\",
    )
}
_WORD_TOKS: dict[str, Tok] = {}
_NO_MAYBE: list[int] = []  # shared: never appended to
# findall() holds every token's groups at once: longer texts stream through finditer().
_PLAIN_MAX_CHARS = 8192
_WORDS_KEPT = 4096


def _lex_plain(sql: str) -> list[Tok] | None:
    """:func:`lex`'s tokens of comment-free *sql*; ``None`` at a stray character."""
    toks: list[Tok] = []
    append = toks.append
    new = _new_tok
    first = _KIND_OF_FIRST
    operators = _OPERATOR_TOKS
    words = _WORD_TOKS
    for word, literals, other, digitword, _ in _plain_tokens(sql):
        if word:
            tok = words.get(word)
            if tok is None:
                tok = new(Tok, (SYSVAR if word[0] == "@" else WORD, word, word.upper()))
                if len(words) < _WORDS_KEPT and len(word) <= 64:
                    words[word] = tok
            append(tok)
        elif other:
            tok = operators.get(other)
            append(tok if tok is not None else new(Tok, (first[other[0]], other, other)))
        elif literals:
            append(new(Tok, (LITERALS, literals, literals)))
        elif digitword:
            append(new(Tok, (WORD, digitword, digitword.upper())))
        else:
            return None  # lex() raises the error
    return toks


def lex(sql: str) -> Lexed:
    """Split *sql* into tokens, dropping whitespace and comments; raise :class:`LexError`.

    The content of an executable comment is lexed as code. A comment with no version, or a
    version below 50700, runs on every supported server (MySQL 5.7+, MariaDB 10+); one with a
    higher version, or MariaDB's ``/*M!``, runs on some servers only: see :attr:`Lexed.maybe`.
    """
    if (
        len(sql) <= _PLAIN_MAX_CHARS
        and "/*" not in sql
        and "#" not in sql
        and "--" not in sql
        and "*/" not in sql
    ):
        plain = _lex_plain(sql)  # no comment: no hint, no executable comment
        if plain is not None:
            return Lexed(plain, None, _NO_MAYBE)
    elif len(sql) <= _PLAIN_MAX_CHARS and not may_hint(sql):
        # Plain comments only (a tag, a note): the same tokens from the text without them.
        bare = strip_comments(sql)
        if bare is not None and "*/" not in bare:
            plain = _lex_plain(bare)
            if plain is not None:
                return Lexed(plain, None, _NO_MAYBE)
    return _lex_matches(sql, _TOKEN_RE, _KIND_BY_INDEX_T)


def _lex_matches(sql: str, pattern: re.Pattern[str], kinds: tuple[int, ...]) -> Lexed:
    """:func:`lex`'s tokens of *sql*, one match of *pattern* (a token expression) each."""
    toks: list[Tok] = []
    append = toks.append
    hint: str | None = None
    maybe: list[int] = []
    new = _new_tok
    for m in pattern.finditer(sql):
        index = m.lastindex or 0
        kind = kinds[index]
        if kind < 0:
            if kind == _COMMENT and hint is None:
                hint = routing_hint(sql, m.start(index), m.end())
            elif kind == _BAD:
                raise lex_error(m, index)
            elif kind == _MAYBE:
                maybe.append(m.start(index))
            continue
        text = m.group(index)
        append(new(Tok, (kind, text, text.upper() if kind < _UPPER_BELOW else text)))
    return Lexed(toks, hint, maybe)


_MAYBE_MARKER_RE = re.compile(r"/\*M?![0-9]*")
_MAYBE_CHECKED = 64


def skipped_view(sql: str, maybe: list[int]) -> tuple[str, bool]:
    """*sql* as a server that skips the executable comments at *maybe* reads it.

    Each such comment becomes a plain comment (same offsets). Also returns whether one of
    them holds a nested ``/*`` or is left open: then where the server ends it is not modelled
    here, and the caller must not trust either reading.
    """
    parts = []
    pos = 0
    unsure = len(maybe) > _MAYBE_CHECKED
    last_close = sql.rfind("*/")
    for i, start in enumerate(maybe):
        marker = _MAYBE_MARKER_RE.match(sql, start)
        length = marker.end() - start if marker is not None else 3
        if i < _MAYBE_CHECKED:  # bounded work: past that many, unsure anyway
            close = sql.find("*/", start + length) if start < last_close else -1
            if close < 0 or sql.find("/*", start + length, close) >= 0:
                unsure = True
        parts.append(sql[pos:start])
        parts.append("/*" + " " * (length - 2))
        pos = start + length
    parts.append(sql[pos:])
    return "".join(parts), unsure


# ---------------------------------------------------------------------------------------------
# Shortcuts
# ---------------------------------------------------------------------------------------------

# The first word, after whitespace and opening parentheses (group 1: the parentheses). A text
# that starts with anything else (a comment, a hint) does not match: it takes the lexer.
HEAD_RE = re.compile(rf"{_WS}*+(\(?)[ \t\n\r\f\v(]*+([A-Za-z_][{_ID}]*+)")

# One comment that is only a comment (not an executable comment or an optimizer hint).
COMMENT_RE = re.compile(
    rf"/\*(?![!+]|M!).*?\*/|{_DASH_COMMENT}[^\n\x00]*+|\#[^\n\x00]*+", re.DOTALL
)

# Code up to the first comment (or a string left open): strings and identifiers skipped whole.
CODE_RE = re.compile(
    rf"""(?:[^'"`/\#\-]++ | {_SQ} | {_DQ} | {_BQ} | /(?!\*) | -(?!-(?:[\x00-\x20\x7f]|\Z)))*+""",
    re.VERBOSE | re.DOTALL,
)
_code = CODE_RE.match
_comment = COMMENT_RE.match


def strip_comments(sql: str) -> str | None:
    """*sql* with each comment replaced by a space: the same tokens, found as :func:`lex`
    finds them. ``None`` if there is an executable comment, an optimizer hint or a string
    left open. (Routing hints are the caller's: they are in comments.)"""
    parts = []
    pos = 0
    n = len(sql)
    while True:
        code = _code(sql, pos)  # always matches (possibly empty)
        end = code.end() if code is not None else pos
        parts.append(sql[pos:end])
        if end >= n:
            return "".join(parts)
        comment = _comment(sql, end)
        if comment is None:
            return None
        parts.append(" ")
        pos = comment.end()


# Everything up to the first ";" that ends a statement: strings, quoted identifiers and
# comments are skipped whole, exactly where lex() would see them; executable comments are code
# (their content is scanned). The match stops at that ";", at the end, or where a string or
# identifier is left open (then lex() decides).
STATEMENT_END_RE = re.compile(
    rf"""(?:[^'"`;/\#\-]++
      | {_SQ} | {_DQ} | {_BQ}
      | /\*(?!M?!).*?\*/
      | {_DASH_COMMENT}[^\n\x00]*+
      | \#[^\n\x00]*+
      | /(?!\*) | -
    )*+""",
    re.VERBOSE | re.DOTALL,
)

# Words that may make a read more than a read (see classify._READ_TRIGGERS), and sequence
# attributes (``s.NEXTVAL``). TRIGGER_SUBSTRINGS finds them in the upper-cased text by plain
# substring search (a superset: inside strings and longer words too); TRIGGER_RE confirms a
# whole word, still anywhere in the text.
TRIGGER_SUBSTRINGS = (
    "FOR",
    "LOCK",
    "INTO",
    "SQL_CALC_FOUND_ROWS",
    "NEXT",
    "PREVIOUS",
    "UPDATE",
    "DELETE",
    "INSERT",
    "REPLACE",
    "CURRVAL",
    "LASTVAL",
)
TRIGGER_RE = re.compile(rf"(?<![{_ID}])(?:{'|'.join(TRIGGER_SUBSTRINGS)}|NEXTVAL)(?![{_ID}])")

# The text reads as tokens (no string or identifier left open, no stray character) and calls
# no quoted identifier as a function. Runs of ordinary characters are consumed in one step.
LEXABLE_RE = re.compile(
    rf"""(?:[^'"`@\x00-\x08\x0e-\x1f\x7f]++
      | {_SQ} | {_DQ}
      | {_BQ}(?!{_WS}*+\()
      | @(?=[A-Za-z0-9_$.'"`])
    )*+\Z""",
    re.VERBOSE | re.DOTALL,
)

# Every word followed by "(", found in the *reversed* text (so the engine jumps from one "(" to
# the next): group 1 is the reversed name, group 2 the "." before it if it is qualified. Run
# over the whole text, so it also finds "calls" inside strings: a superset, which is safe.
REVERSED_CALL_RE = re.compile(rf"\({_WS}*+([{_ID}]++)({_WS}*+\.)?")


# ---------------------------------------------------------------------------------------------
# Coarse lexing of reads
# ---------------------------------------------------------------------------------------------

# Words the read rules look at, as a word or as the word after one (classify._READ_TRIGGERS,
# _SEQUENCE_ATTRS, _READ_STARTS and the words their rules compare the next token with).
COARSE_KEEP = (
    *("FOR", "LOCK", "INTO", "SQL_CALC_FOUND_ROWS", "NEXT", "PREVIOUS"),
    *("UPDATE", "DELETE", "INSERT", "REPLACE", "NEXTVAL", "CURRVAL", "LASTVAL"),
    *("SELECT", "WITH", "TABLE", "VALUES", "SHARE", "IN", "OUTFILE", "DUMPFILE", "VALUE"),
)

# The token expression with one more alternative, tried first: a run of tokens that the read
# rules never look at (names not in COARSE_KEEP, qualified ones too, up to four parts;
# literals, operators other than ":=", commas, whitespace), none of them followed by "(" or
# "." (so a called name, and a name with a kept word after its ".", are tokens of their own,
# with the "." and the name before it). For comment-free ASCII text only.
_NOT_KEPT = rf"""(?!(?i:{"|".join(COARSE_KEEP)})(?![{_ID}]))"""
_BORING_ELEMENT = rf"""(?:{_WS}++
      | (?![nN]'){_NOT_KEPT}(?:[{_ID}]++|{_BQ})
        (?:{_WS}*+\.{_WS}*+(?![nN]'){_NOT_KEPT}(?:[{_ID}]++|{_BQ})){{0,3}}+
      | [nN]?{_SQ} | {_DQ}
      | :(?!=)
      | [-+*/%=<>!~^&|?{{}}\[\]\\,]
    )(?!{_WS}*+[.(])"""
_COARSE_TOKEN_RE = re.compile(
    _TOKEN_RE.pattern.replace(
        rf"{_WS}*+(?:", rf"{_WS}*+(?:(?P<boring>(?:{_BORING_ELEMENT})++)|", 1
    ),
    re.VERBOSE | re.DOTALL,
)
_COARSE_KIND_BY_INDEX_T = kinds_by_index(_COARSE_TOKEN_RE, {**_KIND_OF_GROUP, "boring": BORING})


def coarse_lex(sql: str) -> list[Tok]:
    """Tokens of a read for its rules: runs they never look at become one BORING token.

    Only for ASCII text without comments, ``*/`` or ``;`` (the caller checks): there the
    tokens the rules do look at, and their neighbours, are exactly those of :func:`lex`.
    Raises :class:`LexError` like :func:`lex`.
    """
    return _lex_matches(sql, _COARSE_TOKEN_RE, _COARSE_KIND_BY_INDEX_T).toks
