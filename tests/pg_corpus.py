"""The PostgreSQL corpus (``tests/data/pg_corpus.sql``) as a list of statements."""

from __future__ import annotations

from pathlib import Path

from rwsplit.routing._lexer import LexError
from rwsplit.routing._lexer_pg import lex

CORPUS = Path(__file__).parent / "data" / "pg_corpus.sql"


def pg_corpus(path: Path = CORPUS) -> list[str]:
    """The statements of *path*, in order, without their final ``;``.

    A statement ends at a line that ends with ``;`` once its text lexes (so a ``;`` inside a
    dollar-quoted body or a string spanning lines does not end it). Lines that start with
    ``--`` between statements are comments.
    """
    out: list[str] = []
    buf: list[str] = []
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(buf).strip()
            try:
                lex(text)
            except LexError:
                continue  # inside a dollar quote or a string: the statement goes on
            out.append(text[:-1].rstrip())
            buf = []
    if buf:
        raise ValueError(f"{path}: the last statement does not end with ';'")
    return out
