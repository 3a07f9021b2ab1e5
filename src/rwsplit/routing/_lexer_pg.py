"""The PostgreSQL classifier's lexer: PostgreSQL's lexical rules as one regular expression.

:func:`lex` turns a text into the same :class:`~rwsplit.routing._lexer.Tok` tuples the MySQL
lexer makes (same kind numbers, so the shared routing-hint code reads both), following the
server's own lexer (``src/backend/parser/scan.l``) wherever it matters for routing:

* whitespace is ``[ \\t\\n\\r\\f\\v]``; identifiers start with a letter, ``_`` or any character
  from U+0080 up and go on with those, digits and ``$`` (so ``a$b$`` is one name, not a
  dollar quote);
* ``'...'`` strings double a quote to escape it; with ``standard_conforming_strings = off``
  a backslash escapes too (the caller classifies a text with a backslash both ways);
  ``E'...'`` always takes backslash escapes; ``B'...'``, ``X'...'``, ``N'...'``, ``U&'...'``;
* ``$tag$ ... $tag$`` dollar quotes (the tag is case-sensitive, starts with a letter or ``_``,
  and has no ``$``); ``$1`` is a parameter, as are psycopg's ``%s`` / ``%(name)s`` / ``%b`` /
  ``%t`` placeholders (and ``%%``, a literal ``%``);
* ``"..."`` and ``U&"..."`` quoted identifiers, case kept;
* ``--`` starts a comment anywhere (even inside an operator), up to a CR or LF; ``/* */``
  comments nest (up to :data:`MAX_COMMENT_DEPTH` levels here: deeper is refused, and the
  statement goes to the primary);
* an operator is a run of ``+ - * / < > = ~ ! @ # % ^ & | ` ?`` that stops before ``--`` or
  ``/*``; a run of several characters that ends in ``+`` or ``-`` sheds them unless it holds
  one of ``~ ! @ # % ^ & | ` ?`` (``1*-2`` is ``*`` then ``-``);
* keywords fold ASCII letters only (``\\u017felect``, with a long s, is not ``SELECT`` to the
  server, nor here).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ._lexer import (
    _BAD,
    _COMMENT,
    _SKIP,
    _WS,
    COMMA,
    DOT,
    LPAREN,
    NUMBER,
    OP,
    QUOTED_ID,
    RPAREN,
    SEMI,
    STRING,
    WORD,
    Tok,
    kinds_by_index,
    lex_error,
    routing_hint,
)

__all__ = ["MAX_COMMENT_DEPTH", "PARAM", "LexedPg", "lex", "quoted_name"]

PARAM = 15
"""``$1``, ``%s``, ``%(name)s``: a value bound by the driver."""

MAX_COMMENT_DEPTH = 4
"""Nested ``/* /* */ */`` comments deeper than this are refused (the text goes to the primary)."""

_ID_START = r"A-Za-z_\u0080-\U0010ffff"
_ID = r"A-Za-z_0-9$\u0080-\U0010ffff"
_DOLQ = r"A-Za-z_0-9\u0080-\U0010ffff"
_OP_CHARS = r"\-+*/<>=~!@#%^&|`?"
_NUM = (
    r"(?:0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+"
    r"|[0-9][0-9_]*(?:\.(?!\.)[0-9_]*)?(?:[eE][+-]?[0-9]+)?"
    r"|\.[0-9][0-9_]*(?:[eE][+-]?[0-9]+)?)"
)


def _nested_comment(depth: int) -> str:
    inner = r"(?:[^*/]++|\*(?!/)|/(?!\*))"
    pattern = rf"/\*{inner}*+\*/"
    for _ in range(depth - 1):
        pattern = rf"/\*(?:{inner}|{pattern})*+\*/"
    return pattern


_BLOCK_COMMENT = _nested_comment(MAX_COMMENT_DEPTH)


def _token_re(backslash_quotes: bool) -> re.Pattern[str]:
    # A plain '...' string: with standard_conforming_strings off, a backslash escapes.
    sq = r"'(?:[^'\\]++|\\.|'')*+'" if backslash_quotes else r"'(?:[^']++|'')*+'"
    return re.compile(
        rf"""{_WS}*+(?:
          (?P<end>\Z)
        | (?P<estring>[eE]'(?:[^'\\]++|\\.|'')*+')
        | (?P<bstring>[bBxX]'[^']*+')
        | (?P<nstring>[nN]{sq})
        | (?P<ustring>[uU]&'(?:[^']++|'')*+')
        | (?P<uident>[uU]&"(?:[^"]++|"")*+")
        | (?P<word>[{_ID_START}][{_ID}]*+)
        | (?P<string>{sq})
        | (?P<quotedid>"(?:[^"]++|"")*+")
        | (?P<dollar>\$(?P<tag>[A-Za-z_\u0080-\U0010ffff][{_DOLQ}]*+|)\$.*?\$(?P=tag)\$)
        | (?P<param>\$[0-9]++|%(?:\([^()]*+\))?[sbt](?![{_ID}])|%%)
        | (?P<linecomment>--[^\n\r]*+)
        | (?P<blockcomment>{_BLOCK_COMMENT})
        | (?P<openblock>/\*)
        | (?P<number>{_NUM})
        | (?P<semi>;)
        | (?P<lparen>\()
        | (?P<rparen>\))
        | (?P<comma>,)
        | (?P<cast>::|:=|:)
        | (?P<dot>\.)
        | (?P<bracket>[\[\]])
        | (?P<op>(?:(?!--|/\*|%(?:\([^()]*+\))?[sbt](?![{_ID}]))[{_OP_CHARS}])++)
        | (?P<bad>.)
        )""",
        re.VERBOSE | re.DOTALL,
    )


_KIND_OF_GROUP = {
    "estring": STRING,
    "bstring": STRING,
    "nstring": STRING,
    "ustring": STRING,
    "uident": QUOTED_ID,
    "word": WORD,
    "string": STRING,
    "quotedid": QUOTED_ID,
    "dollar": STRING,
    "tag": STRING,  # never the last group (it closes inside "dollar")
    "param": PARAM,
    "linecomment": _COMMENT,
    "blockcomment": _COMMENT,
    "openblock": _BAD,
    "number": NUMBER,
    "semi": SEMI,
    "lparen": LPAREN,
    "rparen": RPAREN,
    "comma": COMMA,
    "cast": OP,
    "dot": DOT,
    "bracket": OP,
    "op": OP,
    "end": _SKIP,
    "bad": _BAD,
}

_TOKEN_RE = _token_re(backslash_quotes=False)
_TOKEN_RE_BACKSLASH = _token_re(backslash_quotes=True)
_KINDS = kinds_by_index(_TOKEN_RE, _KIND_OF_GROUP)
_new_tok = tuple.__new__

# Keywords fold ASCII letters only, as the server's keyword lookup does.
_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}
_ASCII_LOWER = {c - 32: c for c in range(ord("a"), ord("z") + 1)}
# A multi-character operator may end in "+" or "-" only if it holds one of these.
_OP_KEEPS_SIGN = frozenset("~!@#%^&|`?")


class LexedPg(NamedTuple):
    """What :func:`lex` found."""

    toks: list[Tok]
    hint: str | None
    """The first routing hint in a comment (``"primary"``, ``"replica"``, ``"last"``)."""


def _split_operator(text: str) -> list[str]:
    """The operators the server reads in a run of operator characters (see the module doc)."""
    if len(text) < 2 or text[-1] not in "+-" or not _OP_KEEPS_SIGN.isdisjoint(text):
        return [text]
    core = text.rstrip("+-")
    return ([core] if core else []) + list(text[len(core) :])


def lex(sql: str, *, backslash_quotes: bool = False) -> LexedPg:
    """Split *sql* into tokens, dropping whitespace and comments; raise
    :class:`~rwsplit.routing._lexer.LexError`.

    *backslash_quotes* reads ``'...'`` strings as a server with
    ``standard_conforming_strings = off`` does (a backslash escapes the next character).
    """
    pattern = _TOKEN_RE_BACKSLASH if backslash_quotes else _TOKEN_RE
    toks: list[Tok] = []
    append = toks.append
    hint: str | None = None
    kinds = _KINDS
    new = _new_tok
    for m in pattern.finditer(sql):
        index = m.lastindex or 0
        kind = kinds[index]
        if kind < 0:
            if kind == _COMMENT:
                if hint is None:  # routing hints as for MySQL (rwsplit's own, MaxScale's)
                    hint = routing_hint(sql, m.start(index), m.end())
            elif kind == _BAD:
                raise lex_error(m, index)
            continue
        text = m.group(index)
        if kind == WORD:
            up = text.upper() if text.isascii() else text.translate(_ASCII_UPPER)
            append(new(Tok, (WORD, text, up)))
        elif kind == OP and len(text) > 1 and text[-1] in "+-":
            for part in _split_operator(text):
                append(new(Tok, (OP, part, part)))
        else:
            append(new(Tok, (kind, text, text)))
    return LexedPg(toks, hint)


def quoted_name(tok: Tok) -> str:
    """The name a WORD or QUOTED_ID token stands for: unquoted words fold to lower case."""
    text = tok.text
    if tok.kind == QUOTED_ID:
        if text[:1] in "uU":  # U&"..."
            text = text[2:]
        return text[1:-1].replace('""', '"')
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
