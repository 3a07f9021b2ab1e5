"""Read-your-writes across transactions.

Inside one transaction a session that wrote stays on the primary (sticky after write). After
it commits, its next reads would go to a replica that may not have applied the write yet: the
classic hole of hand-written read/write splitting (an ORM object expired on commit and
reloaded from a lagging replica shows the old value). rwsplit closes it in one of two ways:

``"gtid"`` (default)
    Causal reads. After a commit that wrote, the session records the primary's position of
    that commit (MariaDB ``@@last_gtid``; MySQL the commit's GTID, or with GTIDs off the
    primary's binary log position, which names that primary: see :mod:`._tokens`). Before its
    next read on a replica the session waits, on that replica, until the position is applied
    (``MASTER_GTID_WAIT`` / ``WAIT_FOR_EXECUTED_GTID_SET`` / ``SOURCE_POS_WAIT``, the last
    only on a replica of that primary) for at most ``causal_timeout`` seconds, then reads
    there; if the replica does not get there in time, the read goes to the primary, and so
    do the reads after a write whose position could not be taken (never a silent stale
    read). A replica known to have caught up is not asked again. The token travels
    between sessions (``session.causal_token`` → ``cluster.session(causal_token=...)``), e.g.
    in a cookie from a POST to the GET it redirects to.
``"primary"``
    After a commit that wrote, the session reads from the primary for ``sticky_window``
    seconds. No extra round trips; more load on the primary.
``"off"``
    Nothing: reads after a commit may be stale.

Cost of ``"gtid"``: through PyMySQL the commit's GTID arrives in the ``COMMIT``'s own OK
packet (session tracking, MariaDB and MySQL with GTIDs on); elsewhere, and for a binary log
position, one round trip after each commit that wrote. Then the first plain read on each
replica carries a GTID wait in its own round trip (one multi-statement,
:mod:`rwsplit._pipelined_wait`; other drivers, binary log positions and read-only
transactions: one round trip before it), and none where the replica is known to have applied
the token. Sessions that only read pay nothing.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, Engine

from .._gtid_track import take_commit_gtid
from ..servers import postgresql as pg
from ..servers.family import PostgreSQLRouting
from ..servers.mysql import MySQL
from ..topology.model import Node, Topology
from ._tokens import PRIMARY_ONLY, BinlogToken, mysql_gtid_maxima

__all__ = [
    "AppliedTokens",
    "ReadYourWrites",
    "commit_token",
    "may_wait",
    "read_commit_token",
    "unwaitable_reason",
    "wait_for_token",
    "wait_reached",
    "wait_statement",
]

log = logging.getLogger("rwsplit.consistency")

_PG = PostgreSQLRouting()


class ReadYourWrites(enum.Enum):
    """How a session sees its own committed writes on later reads."""

    GTID = "gtid"
    PRIMARY = "primary"
    OFF = "off"

    @classmethod
    def coerce(cls, value: ReadYourWrites | str) -> ReadYourWrites:
        """``"gtid"`` / ``"primary"`` / ``"off"`` (or the enum) → the enum; else ValueError.

        >>> ReadYourWrites.coerce("gtid")
        <ReadYourWrites.GTID: 'gtid'>
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(
                f"read_your_writes must be one of 'gtid', 'primary', 'off'; got {value!r}"
            ) from None


def _is_mariadb(engine: Engine) -> bool:
    return bool(getattr(engine.dialect, "is_mariadb", True))


def read_commit_token(conn: Connection) -> str | None:
    """The position of the commit just made on *conn* (a primary connection), or ``None``.

    On PyMySQL the GTID comes from the ``COMMIT``'s own OK packet (session tracking,
    :mod:`rwsplit._gtid_track`: MariaDB ``last_gtid``, MySQL ``session_track_gtids``): no
    round trip. Otherwise one query on the raw DBAPI connection, which holds no transaction at
    this point (SQLAlchemy does not begin one on *conn*): see :func:`commit_token`.
    """
    engine = conn.engine
    try:
        fairy = conn.connection
        dbapi_connection = fairy.dbapi_connection
    except Exception:  # a closed or invalidated connection: no token
        return None
    if engine.dialect.name == "postgresql":
        return _pg_commit_token(dbapi_connection, f"{engine.url.host}:{engine.url.port or 5432}")
    token = take_commit_gtid(dbapi_connection)  # PyMySQL: the COMMIT's OK packet
    if token is not None:
        return token
    version = ".".join(str(v) for v in engine.dialect.server_version_info or ())
    return commit_token(
        dbapi_connection,
        fairy.info,
        mariadb=_is_mariadb(engine),
        version=version,
        node=f"{engine.url.host}:{engine.url.port or 3306}",
    )


def _pg_commit_token(dbapi_connection: Any, node: str) -> str:
    # PostgreSQL: the WAL insert position right after the COMMIT (see servers.postgresql).
    try:
        token = _PG.commit_token(dbapi_connection)
    except Exception as exc:  # the commit succeeded; a lost position only costs a replica read
        log.warning("could not read the commit's WAL position on %s: %s", node, exc)
        return PRIMARY_ONLY
    return token if token is not None else PRIMARY_ONLY


_MODE_KEY = "rwsplit_commit_token_mode"
_logged_once: set[tuple[str, str]] = set()


def _warn_once(node: str, reason: str) -> None:
    if (node, reason) not in _logged_once:
        _logged_once.add((node, reason))
        log.warning(
            "read-your-writes on %s: %s; reads after a write go to the primary", node, reason
        )


def _query_row(dbapi_connection: Any, sql: str) -> Any:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchone()
    finally:
        cursor.close()


def commit_token(
    dbapi_connection: Any, cache: dict[str, Any], *, mariadb: bool, version: str, node: str
) -> str | None:
    """The position of the commit just made on *dbapi_connection*, by one query.

    * MariaDB: ``@@last_gtid``;
    * MySQL, GTIDs on: ``@@global.gtid_executed``;
    * MySQL, GTIDs off: the primary's binary log position (``SHOW BINARY LOG STATUS``) as a
      :class:`~rwsplit.routing._tokens.BinlogToken` naming that primary's ``server_uuid``.

    *cache* is kept with the DBAPI connection (SQLAlchemy's ``connection.info``): the
    server's ``gtid_mode`` is asked once per connection. When no position can be taken (no
    binary log, no privilege to read it, the query failed) the token is
    :data:`~rwsplit.routing._tokens.PRIMARY_ONLY`, never ``None``: the next reads go to the
    primary rather than to a replica that may not have the write (logged once per reason).
    """
    try:
        if mariadb:
            row = _query_row(dbapi_connection, "SELECT @@last_gtid")
            return str(row[0]) if row and row[0] else None
        mode = cache.get(_MODE_KEY)
        if mode is None:
            row = _query_row(
                dbapi_connection,
                "SELECT @@global.gtid_mode, @@server_uuid, @@global.log_bin",
            )
            mode = cache[_MODE_KEY] = (str(row[0]).upper(), str(row[1]).lower(), int(row[2]))
        gtid_mode, uuid, log_bin = mode
        if gtid_mode in ("ON", "ON_PERMISSIVE"):
            row = _query_row(dbapi_connection, "SELECT @@global.gtid_executed")
            return str(row[0]) if row and row[0] else PRIMARY_ONLY
        if not log_bin:
            _warn_once(node, "the primary writes no binary log (log_bin=OFF)")
            return PRIMARY_ONLY
        status = MySQL(version).binlog_status().sql
        row = _query_row(dbapi_connection, status)
    except Exception as exc:  # the commit succeeded; a lost position only costs a replica read
        code = getattr(exc, "args", (None,))[0]
        if code in (1227, 1142):
            _warn_once(
                node,
                f"the account cannot read the primary's binary log position ({exc.args[1]}); "
                "grant it REPLICATION CLIENT (GTIDs are off: the position is the token)",
            )
        else:
            log.warning("could not read the commit's position on %s: %s", node, exc)
        return PRIMARY_ONLY
    if not row or not row[0]:
        _warn_once(node, "the primary reports no binary log position")
        return PRIMARY_ONLY
    return str(BinlogToken(uuid, str(row[0]), int(row[1])))


def unwaitable_reason(token: str, replica: Node | None) -> str | None:
    """Why no wait on *replica* can prove *token* applied, or ``None`` when one can.

    A binary log position (GTIDs off) means something only on a replica of the primary that
    wrote it: the monitor's last probe must have seen the replica's source be that server.
    """
    if token == PRIMARY_ONLY:
        return "the position of the last write is unknown"
    url = getattr(replica, "url", None)
    on_postgresql = url is not None and str(url.drivername).startswith("postgresql")
    if token.startswith(pg.TOKEN_PREFIX) or on_postgresql:
        if on_postgresql and pg.parse_token(token) is not None:
            return None
        return (
            f"the causal token {token[:40]!r} is not a "
            f"{'PostgreSQL WAL position' if on_postgresql else 'MySQL/MariaDB position'} "
            "(a token from another cluster?)"
        )
    binlog = BinlogToken.parse(token)
    if binlog is None:
        return None
    rep = replica.replication if replica is not None else None
    if rep is None or not rep.source_uuid:
        return (
            "which primary the replica follows is unknown (GTIDs are off: a binary log "
            "position is only valid on a replica of its primary, which the monitor sees; "
            "set monitor_interval)"
        )
    if rep.source_uuid != binlog.source_uuid:
        return f"it replicates from {rep.source_uuid}, not from the writer {binlog.source_uuid}"
    return None


def may_wait(token: str, name: str, topology: Topology) -> bool:
    """Can a wait on replica *name* prove *token* applied? If not, say why once (per reason).

    Cheap for GTIDs (no lookup): only :data:`PRIMARY_ONLY` and binary log positions are
    looked at.
    """
    if token != PRIMARY_ONLY and not token.startswith(("binlog:", "pg:")):
        return True  # a GTID; on a PostgreSQL cluster the session checks the token's family
    try:
        replica: Node | None = topology.node(name)
    except KeyError:
        replica = None
    reason = unwaitable_reason(token, replica)
    if reason is None:
        return True
    if token != PRIMARY_ONLY:  # that one was explained when the commit was made
        key = (name, reason)
        if key not in _logged_once:
            _logged_once.add(key)
            log.info("replica %s cannot serve reads after a write: %s", name, reason)
    return False


def wait_statement(
    token: str, timeout: float, *, mariadb: bool, version: str
) -> tuple[str, tuple[object, ...]]:
    """The ``SELECT`` that waits on a replica, bounded, until *token* is applied.

    Its single value means "applied" when :func:`wait_reached` says so.
    """
    binlog = BinlogToken.parse(token)
    if binlog is not None:
        stmt = MySQL(version).wait_for_position(binlog.file, binlog.position, timeout)
        return stmt.sql, stmt.params
    if mariadb:
        return "SELECT MASTER_GTID_WAIT(%s, %s)", (token, timeout)
    return "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)", (token, timeout)


def wait_reached(token: str, value: Any) -> bool:
    """Did the wait of :func:`wait_statement` for *token* return "applied"?"""
    if value is None:
        return False  # not a replica, or its SQL thread stopped (SOURCE_POS_WAIT)
    if token.startswith("binlog:"):
        return MySQL.position_reached(value)
    return bool(int(value) == 0)


def wait_for_token(conn: Connection, token: str, timeout: float) -> bool:
    """Wait on a replica connection until *token* is applied; True if it was in time.

    Raises the driver's own exceptions (not SQLAlchemy's wrappers).
    """
    engine = conn.engine
    if engine.dialect.name == "postgresql":
        return _PG.wait_for_token(conn.connection.dbapi_connection, token, timeout)
    version = ".".join(str(v) for v in engine.dialect.server_version_info or ())
    sql, params = wait_statement(token, timeout, mariadb=_is_mariadb(engine), version=version)
    # On the driver's cursor, not exec_driver_sql: half the client CPU of the round trip
    # (the replica connection is autocommit; nothing of SQLAlchemy's state is involved).
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return row is not None and wait_reached(token, row[0])


def _mariadb_gtids(token: str) -> list[tuple[int, int, int]] | None:
    """``"0-1-5,1-2-9"`` → ``[(0, 1, 5), (1, 2, 9)]``; ``None`` for anything else (MySQL)."""
    out = []
    for part in token.split(","):
        fields = part.strip().split("-")
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            return None
        out.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return out or None


_Key = tuple[object, ...]
_Pos = tuple[int, ...]


def _positions(token: str) -> dict[_Key, _Pos] | None:
    """*token* as ordered positions per independent stream, or ``None`` (not understood).

    A stream is applied in order on a replica: a MariaDB domain (and the server that wrote
    it), a MySQL source's ``server_uuid``, one primary's binary log (GTIDs off).
    """
    lsn = pg.parse_token(token)
    if lsn is not None:
        return {("p",): (lsn.value,)}
    mariadb = _mariadb_gtids(token)
    if mariadb is not None:
        return {("m", d, srv): (seq,) for d, srv, seq in mariadb}
    binlog = BinlogToken.parse(token)
    if binlog is not None:
        base, number, offset = binlog.key()
        return {("b", binlog.source_uuid, base): (number, offset)}
    maxima = mysql_gtid_maxima(token)
    if maxima is not None:
        return {("g", uuid): (top,) for uuid, top in maxima.items()}
    return None


class AppliedTokens:
    """What this process knows each replica has applied: skip a wait it would not need.

    A wait that returned in time proves the replica applied that position, and with it every
    earlier position of the same stream (a MariaDB replication domain, a MySQL source's GTIDs,
    one primary's binary log: each is applied in order; the wait itself relies on that). A
    later token of the same stream with an equal or lower position is then applied there
    too: no round trip. Knowledge is kept for :attr:`MAX_AGE` seconds (a replica rebuilt from
    an older backup under the same address must not be trusted for long), dropped for a
    replica that leaves routing (down, role change) and for all when the primary changes
    (:meth:`forget`).

    >>> applied = AppliedTokens()
    >>> applied.record("db2:3306", "0-1-10"); applied.covers("db2:3306", "0-1-9")
    True
    >>> applied.covers("db2:3306", "0-1-11"), applied.covers("db3:3306", "0-1-9")
    (False, False)
    >>> u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    >>> applied.record("db2:3306", f"{u}:1-10"); applied.covers("db2:3306", f"{u}:7")
    True
    """

    MAX_AGE = 2.0
    """Seconds a seen position stays trusted."""

    __slots__ = ("_clock", "_lock", "_nodes")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[str, dict[_Key, tuple[_Pos, float]]] = {}

    def covers(self, node: str, token: str) -> bool:
        """True when *node* is known (recently) to have applied *token*."""
        seen = self._nodes.get(node)
        if not seen:
            return False
        positions = _positions(token)
        if positions is None:
            return False
        oldest = self._clock() - self.MAX_AGE
        for key, pos in positions.items():
            known = seen.get(key)
            if known is None or known[0] < pos or known[1] < oldest:
                return False
        return True

    def record(self, node: str, token: str) -> None:
        """*node* applied *token* (a wait for it returned in time)."""
        positions = _positions(token)
        if positions is None:
            return
        now = self._clock()
        with self._lock:
            seen = dict(self._nodes.get(node, {}))  # copy: readers take no lock
            for key, pos in positions.items():
                known = seen.get(key)
                # A newer position, or the same one seen again (it stays trusted longer).
                if known is None or known[0] <= pos:
                    seen[key] = (pos, now)
            self._nodes[node] = seen

    def record_probed(self, topology: Topology) -> None:
        """Record each healthy replica's GTID position as the monitor's last probe read it.

        A replica's applied position only moves forward while it keeps its data; one that is
        rebuilt or reset leaves routing first (unhealthy, another role: :meth:`forget`), and
        :attr:`MAX_AGE` bounds the rest, as for positions a wait proved. So a causal token
        that a probe already showed applied (typically one carried from an earlier request)
        takes the read with no wait at all.
        """
        for node in topology.replicas:
            if node.healthy and node.gtid_position:
                self.record(node.name, node.gtid_position)

    def forget(self, node: str | None = None) -> None:
        """Drop what is known of *node* (``None``: of every node)."""
        with self._lock:
            if node is None:
                self._nodes.clear()
            else:
                self._nodes.pop(node, None)
