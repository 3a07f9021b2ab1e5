"""Causal tokens as strings: what a commit's position looks like, per kind of server.

A token travels as a plain string (``session.causal_token``, the signed cookie, Django's
causal scope), so every kind is recognisable from its text alone:

* a MariaDB GTID position, ``0-1-42`` (``domain-server-seq``, comma-separated);
* a MySQL GTID set, ``3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42``;
* a binary log position of one named primary (MySQL with ``gtid_mode=OFF``),
  ``binlog:<server_uuid>:<file>:<position>``: only a replica *of that primary* can say
  whether it applied it (``SOURCE_POS_WAIT``); file positions of two servers are unrelated;
* :data:`PRIMARY_ONLY`: the commit's position could not be taken (no binary log, no
  privilege to read it ...): reads that must see the write go to the primary.

>>> t = BinlogToken.parse("binlog:3e11fa47-71ca-11e1-9e33-c80aa9429562:binlog.000003:1574")
>>> t.source_uuid, t.file, t.position
('3e11fa47-71ca-11e1-9e33-c80aa9429562', 'binlog.000003', 1574)
>>> str(t) == "binlog:3e11fa47-71ca-11e1-9e33-c80aa9429562:binlog.000003:1574"
True
>>> BinlogToken.parse("0-1-42") is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRIMARY_ONLY", "BinlogToken", "mysql_gtid_maxima"]

PRIMARY_ONLY = "primary-only"
"""The token of a commit whose position is unknown: no replica can prove it applied it."""

_BINLOG = "binlog:"


@dataclass(frozen=True, slots=True, order=False)
class BinlogToken:
    """A position in the binary log of the primary whose ``@@server_uuid`` is *source_uuid*."""

    source_uuid: str
    file: str
    position: int

    def __str__(self) -> str:
        return f"{_BINLOG}{self.source_uuid}:{self.file}:{self.position}"

    @classmethod
    def parse(cls, token: str) -> BinlogToken | None:
        """The binlog token in *token*, or ``None`` when it is another kind (or malformed)."""
        if not token.startswith(_BINLOG):
            return None
        uuid, _, rest = token[len(_BINLOG) :].partition(":")
        file, _, pos = rest.rpartition(":")
        if not uuid or not file or not pos.isdigit():
            return None
        return cls(uuid.lower(), file, int(pos))

    def key(self) -> tuple[str, int, int]:
        """Orders positions of one primary: (file base name, file number, offset).

        >>> BinlogToken("u", "binlog.000010", 4).key() > BinlogToken("u", "binlog.000009", 9).key()
        True
        """
        base, _, number = self.file.rpartition(".")
        return (base, int(number) if number.isdigit() else -1, self.position)

    def covers(self, other: BinlogToken) -> bool:
        """True when this position is at or after *other* in the same primary's binary log."""
        if other.source_uuid != self.source_uuid:
            return False
        mine, theirs = self.key(), other.key()
        return mine[0] == theirs[0] and mine[1:] >= theirs[1:]


def mysql_gtid_maxima(token: str) -> dict[str, int] | None:
    """``uuid:1-5:7,uuid2:3`` → ``{uuid: 7, uuid2: 3}``; ``None`` when not a MySQL GTID set.

    A replica of one primary applies that primary's transactions in order (the wait relies on
    it too), so a wait that returned for ``uuid:42`` also proves ``uuid:1-41`` applied.

    >>> mysql_gtid_maxima("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7")
    {'3e11fa47-71ca-11e1-9e33-c80aa9429562': 7}
    >>> mysql_gtid_maxima("0-1-5") is None
    True
    """
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in token.split(","))):
        uuid, *intervals = part.split(":")
        if len(uuid) != 36 or not intervals:
            return None
        top = 0
        for iv in intervals:
            lo, _, hi = iv.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                return None
            top = max(top, int(hi or lo))
        key = uuid.lower()
        out[key] = max(out.get(key, 0), top)
    return out or None
