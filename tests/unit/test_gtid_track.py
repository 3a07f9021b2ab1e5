"""The commit's GTID read from hand-built OK packets (MariaDB session tracking)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT
from pymysql.protocol import MysqlPacket, OKPacketWrapper

from rwsplit import _gtid_track
from rwsplit._gtid_track import (
    SERVER_SESSION_STATE_CHANGED,
    enable_tracking,
    last_gtid_from_ok,
    take_commit_gtid,
    tracking_connect,
)

STATE_CHANGED = SERVER_SESSION_STATE_CHANGED


def lenenc_int(n: int) -> bytes:
    if n < 0xFB:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    return b"\xfe" + n.to_bytes(8, "little")


def lenenc(data: bytes) -> bytes:
    return lenenc_int(len(data)) + data


def sysvar(name: bytes, value: bytes) -> bytes:
    return b"\x00" + lenenc(lenenc(name) + lenenc(value))


def ok_packet(status: int, info: bytes = b"", *entries: bytes, affected: int = 1) -> bytes:
    """An OK packet as MariaDB sends it to a client with CLIENT_SESSION_TRACK."""
    body = b"\x00" + lenenc_int(affected) + lenenc_int(0) + status.to_bytes(2, "little")
    body += (0).to_bytes(2, "little") + lenenc(info)
    if status & STATE_CHANGED:
        body += lenenc(b"".join(entries))
    return body


def through_pymysql(packet: bytes) -> tuple[int, bytes]:
    """What PyMySQL's OK packet wrapper makes of *packet*: (status, message)."""
    ok = OKPacketWrapper(MysqlPacket(packet, "utf8"))
    return ok.server_status, ok.message


def parse(packet: bytes) -> str | None:
    return last_gtid_from_ok(*through_pymysql(packet))


def test_commit_packet_as_mariadb_10_11_sends_it() -> None:
    # Captured from MariaDB 10.11: COMMIT with session_track_system_variables=last_gtid.
    assert through_pymysql(ok_packet(STATE_CHANGED, b"", sysvar(b"last_gtid", b"0-1-5")))[1] == (
        b"\x00\x12\x00\x10\tlast_gtid\x050-1-5"
    )
    assert parse(ok_packet(STATE_CHANGED, b"", sysvar(b"last_gtid", b"0-1-5"))) == "0-1-5"


def test_autocommit_write_with_info_text() -> None:
    info = b"Rows matched: 1  Changed: 1  Warnings: 0"
    packet = ok_packet(STATE_CHANGED | 2, info, sysvar(b"last_gtid", b"3-17-123456789"))
    assert parse(packet) == "3-17-123456789"


def test_other_variables_and_other_trackers_are_skipped() -> None:
    packet = ok_packet(
        STATE_CHANGED,
        b"",
        sysvar(b"autocommit", b"ON"),
        b"\x01" + lenenc(lenenc(b"shop")),  # SESSION_TRACK_SCHEMA
        b"\x05" + lenenc(lenenc(b"________")),  # SESSION_TRACK_TRANSACTION_STATE
        sysvar(b"LAST_GTID", b"0-2-9"),
        sysvar(b"time_zone", b"+00:00"),
    )
    assert parse(packet) == "0-2-9"


def test_long_lengths_use_multi_byte_lenenc() -> None:
    info = b"x" * 300  # 0xFC two-byte length
    big = b"y" * 70_000  # 0xFD three-byte length
    packet = ok_packet(
        STATE_CHANGED, info, sysvar(b"some_variable", big), sysvar(b"last_gtid", b"1-1-1")
    )
    assert parse(packet) == "1-1-1"
    assert _gtid_track._lenenc_int(lenenc_int(1 << 40), 0) == (1 << 40, 9)


@pytest.mark.parametrize(
    "packet",
    [
        ok_packet(0x0001),  # no session state: a commit that wrote nothing to the binlog
        ok_packet(STATE_CHANGED, b"", sysvar(b"autocommit", b"OFF")),
        ok_packet(STATE_CHANGED, b"", sysvar(b"last_gtid", b"")),
        ok_packet(0x0002, b"info only"),
    ],
    ids=["no-state", "other-variable", "empty-value", "info-only"],
)
def test_no_gtid_reported(packet: bytes) -> None:
    assert parse(packet) is None


def test_status_flag_without_state_block_is_none() -> None:
    # The flag set, but the packet ends after the info string: nothing to read.
    body = b"\x00\x01\x00" + STATE_CHANGED.to_bytes(2, "little") + b"\x00\x00\x00"
    assert parse(body) is None


@pytest.mark.parametrize("cut", [1, 3, 8, 14, 19])
def test_truncated_packet_is_none_not_an_error(cut: int) -> None:
    rest = through_pymysql(ok_packet(STATE_CHANGED, b"", sysvar(b"last_gtid", b"0-1-5")))[1]
    assert last_gtid_from_ok(STATE_CHANGED, rest[:cut]) is None


def test_bad_lenenc_marker_is_none() -> None:
    assert last_gtid_from_ok(STATE_CHANGED, b"\x00\xff\x00") is None
    assert last_gtid_from_ok(STATE_CHANGED, b"\xfb") is None


def test_without_session_track_the_message_is_not_parsed() -> None:
    # Without CLIENT_SESSION_TRACK the server sends info as string<EOF> and never sets the
    # flag: nothing is read from it.
    assert last_gtid_from_ok(0x0002, b"(Rows matched: 1  Changed: 1  Warnings: 0") is None


# ---------------------------------------------------------------------- the connection


def _deferred(**kwargs: Any) -> Any:
    dialect = SimpleNamespace(loaded_dbapi=pymysql)
    cparams: dict[str, Any] = {"defer_connect": True, "client_flag": CLIENT.FOUND_ROWS, **kwargs}
    conn = tracking_connect(dialect, None, [], cparams)
    assert conn is not None
    return conn


def test_tracking_connect_adds_session_track_and_keeps_the_dialects_flags() -> None:
    conn = _deferred()
    assert isinstance(conn, pymysql.connections.Connection)
    assert conn.client_flag & CLIENT.SESSION_TRACK
    assert conn.client_flag & CLIENT.FOUND_ROWS


def test_tracking_connect_leaves_other_modules_alone() -> None:
    cparams: dict[str, Any] = {"client_flag": 2}
    assert tracking_connect(SimpleNamespace(loaded_dbapi=object()), None, [], cparams) is None
    assert cparams == {"client_flag": 2}


def _fake_server(conn: Any, packet: bytes, sent: list[tuple[int, str]]) -> None:
    conn._execute_command = lambda command, sql: sent.append((command, sql))

    def read_ok() -> OKPacketWrapper:
        return OKPacketWrapper(MysqlPacket(packet, "utf8"))

    conn._read_ok_packet = read_ok


def test_commit_keeps_its_ok_packet_once() -> None:
    conn = _deferred()
    conn._rwsplit_tracking = True
    sent: list[tuple[int, str]] = []
    _fake_server(conn, ok_packet(STATE_CHANGED, b"", sysvar(b"last_gtid", b"0-1-42")), sent)
    conn.commit()
    assert sent == [(3, "COMMIT")]  # COM_QUERY, exactly what PyMySQL's commit() sends
    assert take_commit_gtid(conn) == "0-1-42"
    assert take_commit_gtid(conn) is None  # taken once


def test_commit_without_tracking_keeps_nothing() -> None:
    conn = _deferred()
    _fake_server(conn, ok_packet(STATE_CHANGED, b"", sysvar(b"last_gtid", b"0-1-42")), [])
    conn.commit()
    assert take_commit_gtid(conn) is None


def test_a_failed_commit_leaves_no_older_packet() -> None:
    conn = _deferred()
    conn._rwsplit_tracking = True
    _fake_server(conn, ok_packet(STATE_CHANGED, b"", sysvar(b"last_gtid", b"0-1-1")), [])
    conn.commit()

    def fail() -> None:
        raise pymysql.err.OperationalError(2013, "Lost connection")

    conn._read_ok_packet = fail
    with pytest.raises(pymysql.err.OperationalError):
        conn.commit()
    assert take_commit_gtid(conn) is None


def test_enable_tracking_needs_the_servers_capability_and_mariadb() -> None:
    conn = _deferred()
    conn.server_capabilities = 0
    conn.server_version = "10.11.6-MariaDB"
    assert enable_tracking(conn) is False
    conn.server_capabilities = CLIENT.SESSION_TRACK
    conn.server_version = "8.0.36"
    assert enable_tracking(conn) is False
    assert enable_tracking(object()) is False
    assert enable_tracking(pymysql.connections.Connection(defer_connect=True)) is False


def test_take_commit_gtid_on_other_connections() -> None:
    assert take_commit_gtid(object()) is None
