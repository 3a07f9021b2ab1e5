"""The commit's GTID from its own OK packet: read-your-writes without a round trip.

MariaDB reports a changed ``last_gtid`` in the OK packet of the statement that changed it
(the ``COMMIT``) when the client asked for session tracking: the ``CLIENT_SESSION_TRACK``
capability at the handshake and ``last_gtid`` in ``session_track_system_variables``. MySQL
reports the GTIDs of the session's own commits (``session_track_gtids = OWN_GTID``) in a
tracker of their own. rwsplit then takes the token of a commit from that packet instead of
asking ``SELECT @@last_gtid`` / ``SELECT @@global.gtid_executed`` afterwards.

This is the one place that uses PyMySQL's private API for it: a connection subclass whose
``commit()`` keeps the OK packet's status and the bytes after its warning count
(``_execute_command`` / ``_read_ok_packet``, the same calls PyMySQL's own ``commit()`` makes).
Everything else — other drivers, MySQL, a server that refuses the variable, a commit whose
packet carries no GTID (it wrote nothing to the binary log) — falls back to the query.

The OK packet after the warning count, with session tracking (MariaDB "OK_Packet")::

    string<lenenc> info
    if status & SERVER_SESSION_STATE_CHANGED:
        string<lenenc> session state info, a sequence of
            int<1> type                  (0: SESSION_TRACK_SYSTEM_VARIABLES,
                                          3: SESSION_TRACK_GTIDS, MySQL)
            string<lenenc> data          (type 0: string<lenenc> name, string<lenenc> value;
                                          type 3: int<1> encoding (0), string<lenenc> GTIDs)
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "SERVER_SESSION_STATE_CHANGED",
    "enable_tracking",
    "last_gtid_from_ok",
    "take_commit_gtid",
    "tracking_connect",
]

log = logging.getLogger("rwsplit.consistency")

SERVER_SESSION_STATE_CHANGED = 1 << 14
CLIENT_SESSION_TRACK = 1 << 23
_SYSTEM_VARIABLES = 0
_GTIDS = 3
_LAST_GTID = b"last_gtid"
# Appends last_gtid to whatever the session tracks already (the server's default list, or
# the application's own choice), in one statement.
_TRACK_SQL = (
    "SET SESSION session_track_system_variables = "
    "CONCAT_WS(',', NULLIF(@@session.session_track_system_variables, ''), 'last_gtid')"
)
# MySQL: the GTIDs of this session's own commits (nothing with gtid_mode=OFF).
_TRACK_SQL_MYSQL = "SET SESSION session_track_gtids = OWN_GTID"


def _lenenc_int(buf: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at *pos*: (value, position after it); IndexError if cut."""
    first = buf[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        size = 2
    elif first == 0xFD:
        size = 3
    elif first == 0xFE:
        size = 8
    else:  # 0xFB (NULL) and 0xFF (error) are not lengths
        raise ValueError(f"not a length-encoded integer: 0x{first:02x}")
    end = pos + 1 + size
    if end > len(buf):
        raise IndexError("length-encoded integer cut short")
    return int.from_bytes(buf[pos + 1 : end], "little"), end


def _lenenc_str(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _lenenc_int(buf, pos)
    end = pos + length
    if end > len(buf):
        raise IndexError("length-encoded string cut short")
    return buf[pos:end], end


def last_gtid_from_ok(server_status: int, rest: bytes) -> str | None:
    """``last_gtid`` from an OK packet, or ``None`` when the packet does not report it.

    *server_status* is the packet's status flags, *rest* its bytes after the warning count
    (PyMySQL's ``OKPacketWrapper.message``) on a connection with ``CLIENT_SESSION_TRACK``.
    A malformed packet gives ``None`` (the caller asks the server instead).

    >>> last_gtid_from_ok(0x4000, b"\\x00\\x12\\x00\\x10\\tlast_gtid\\x050-1-5")
    '0-1-5'
    >>> last_gtid_from_ok(0x4000, b"\\x00\\x0a\\x03\\x08\\x00\\x06uuid:7")  # MySQL OWN_GTID
    'uuid:7'
    >>> last_gtid_from_ok(0x0001, b"") is None
    True
    """
    if not server_status & SERVER_SESSION_STATE_CHANGED or not rest:
        return None
    try:
        _info, pos = _lenenc_str(rest, 0)
        state, _ = _lenenc_str(rest, pos)
        found: str | None = None
        pos = 0
        while pos < len(state):
            kind = state[pos]
            data, pos = _lenenc_str(state, pos + 1)
            if kind == _GTIDS:
                gtids, _ = _lenenc_str(data, 1)  # after the encoding byte (0: text)
                found = gtids.decode("ascii") or found
                continue
            if kind != _SYSTEM_VARIABLES:
                continue
            name, at = _lenenc_str(data, 0)
            if name.lower() != _LAST_GTID:
                continue
            value, _ = _lenenc_str(data, at)
            found = value.decode("ascii")  # the last report of the packet wins
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    return found or None


def _connection_class() -> type[Any]:
    """PyMySQL's connection, with a ``commit()`` that keeps its OK packet (built once)."""
    global _TRACKING_CLASS
    if _TRACKING_CLASS is None:
        import pymysql
        from pymysql.constants import COMMAND

        class TrackingConnection(pymysql.connections.Connection):
            """A PyMySQL connection whose ``commit()`` keeps what its OK packet reported."""

            _rwsplit_tracking = False  # the server reports last_gtid on this connection
            _rwsplit_commit_ok: tuple[int, bytes] | None = None

            def commit(self) -> None:
                # PyMySQL's commit(), keeping the OK packet it discards. Cleared first: a
                # commit that fails leaves no packet of an earlier commit to be taken.
                self._rwsplit_commit_ok = None
                private: Any = self  # PyMySQL's private calls (not in its type stubs)
                private._execute_command(COMMAND.COM_QUERY, "COMMIT")
                ok = private._read_ok_packet()
                if self._rwsplit_tracking:
                    self._rwsplit_commit_ok = (ok.server_status, bytes(ok.message))

        _TRACKING_CLASS = TrackingConnection
    return _TRACKING_CLASS


_TRACKING_CLASS: type[Any] | None = None


def tracking_connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
    """``do_connect`` listener of PyMySQL primary engines: a tracking connection.

    Asks for ``CLIENT_SESSION_TRACK`` on top of the dialect's flags (``FOUND_ROWS`` ...);
    a server without it ignores the bit. ``None`` (SQLAlchemy connects as usual) when the
    engine's DBAPI module is not PyMySQL itself.
    """
    try:
        import pymysql
    except ImportError:  # pragma: no cover - PyMySQL is a dependency
        return None
    if getattr(dialect, "loaded_dbapi", None) is not pymysql:
        return None
    cparams["client_flag"] = int(cparams.get("client_flag", 0)) | CLIENT_SESSION_TRACK
    return _connection_class()(*cargs, **cparams)


def enable_tracking(dbapi_connection: Any) -> bool:
    """Ask the server to report ``last_gtid`` on *dbapi_connection* (a ``connect`` listener).

    Runs on every new connection and again after the check-in reset
    (``COM_RESET_CONNECTION`` sets the session's variables back to the server's defaults).
    MySQL: ``session_track_gtids = OWN_GTID`` (with GTIDs off nothing is reported, and the
    token, a binary log position, is read by query). True when the connection now reports
    it; False for any other connection or a server that refused (the token is then read by
    query).
    """
    cls = _TRACKING_CLASS
    if cls is None or not isinstance(dbapi_connection, cls):
        return False
    conn: Any = dbapi_connection
    conn._rwsplit_tracking = False
    conn._rwsplit_commit_ok = None
    if not conn.server_capabilities & CLIENT_SESSION_TRACK:
        return False
    mariadb = "mariadb" in str(conn.server_version).lower()
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(_TRACK_SQL if mariadb else _TRACK_SQL_MYSQL)
        finally:
            cursor.close()
    except Exception as exc:  # a server that refuses: the query fallback still works
        log.info("session tracking of last_gtid refused (%s); reading it by query", exc)
        return False
    conn._rwsplit_tracking = True
    return True


def take_commit_gtid(dbapi_connection: Any) -> str | None:
    """The GTID the last ``commit()`` on *dbapi_connection* reported, taken once.

    ``None``: not a tracking connection, or its commit's packet carried no GTID.
    """
    ok = getattr(dbapi_connection, "_rwsplit_commit_ok", None)
    if ok is None:
        return None
    dbapi_connection._rwsplit_commit_ok = None
    status, rest = ok
    return last_gtid_from_ok(status, rest)
