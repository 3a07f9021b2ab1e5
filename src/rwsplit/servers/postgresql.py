"""PostgreSQL 13+ streaming replication (hot standbys): the PostgreSQL server family.

PostgreSQL has no GTIDs, no ``SHOW SLAVE STATUS`` and no wait function before 19; what it has:

* a position in the write-ahead log, the :class:`Lsn` (``16/B374D848``): the primary's
  ``pg_current_wal_insert_lsn()`` / ``pg_current_wal_lsn()``, a standby's
  ``pg_last_wal_receive_lsn()`` and ``pg_last_wal_replay_lsn()``;
* roles from ``pg_is_in_recovery()`` (a standby replays WAL and refuses every write, SQLSTATE
  25006), a fence from ``default_transaction_read_only``;
* a standby's source in ``pg_stat_wal_receiver`` (``sender_host`` / ``sender_port``), a
  primary's standbys in ``pg_stat_replication``.

This module holds the SQL and the parsing, with no driver and no SQLAlchemy: one query
(:data:`STATE_SQL`) gives a :class:`PgNodeState`; a causal token is ``pg:<lsn>``
(:func:`lsn_token`, :func:`parse_token`) and the wait for it runs on the standby in one
round trip (:func:`wait_sql`: a ``DO`` block polling ``pg_last_wal_replay_lsn()`` with a short
back-off, raising :data:`WAIT_TIMEOUT_SQLSTATE` when the deadline passes).

>>> Lsn.parse("16/B374D848") > Lsn.parse("16/B374D000")
True
>>> str(Lsn.parse("16/b374d848")), lsn_token(Lsn.parse("0/3000060"))
('16/B374D848', 'pg:0/3000060')
>>> parse_token("pg:0/3000060"), parse_token("0-1-42")
(Lsn('0/3000060'), None)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FENCE_CHECK_SQL",
    "STATE_SQL",
    "TOKEN_PREFIX",
    "WAIT_TIMEOUT_SQLSTATE",
    "Lsn",
    "PgNodeState",
    "StandbyInfo",
    "is_connection_lost",
    "is_connection_refused",
    "is_read_only_rejection",
    "is_recovery_conflict",
    "is_replica_unusable",
    "is_wait_timeout",
    "lsn_token",
    "parse_state",
    "parse_token",
    "replay_lag",
    "server_answered",
    "sqlstate",
    "wait_sql",
]

_LSN_RE = re.compile(r"\A([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\Z")


@dataclass(frozen=True, order=True, slots=True)
class Lsn:
    """A position in PostgreSQL's write-ahead log (a 64-bit byte position).

    Written ``X/Y`` (two hexadecimal halves); compared and subtracted as integers.

    >>> Lsn.parse("1/0") - Lsn.parse("0/FFFFFFFF")
    1
    """

    value: int

    @classmethod
    def parse(cls, text: str) -> Lsn:
        """``"16/B374D848"`` → ``Lsn``; :class:`ValueError` for anything else."""
        m = _LSN_RE.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"not a PostgreSQL LSN (expected X/Y in hexadecimal): {text!r}")
        return cls((int(m.group(1), 16) << 32) | int(m.group(2), 16))

    @classmethod
    def maybe(cls, value: object) -> Lsn | None:
        """*value* (an LSN's text, or ``None``) as an :class:`Lsn`, or ``None``."""
        if value is None or value == "":
            return None
        return cls.parse(str(value))

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"Lsn('{self}')"

    def __sub__(self, other: Lsn) -> int:
        return self.value - other.value


# ---------------------------------------------------------------------------------- tokens

TOKEN_PREFIX = "pg:"
"""Causal tokens of PostgreSQL clusters start with it: ``pg:16/B374D848``."""


def lsn_token(lsn: Lsn) -> str:
    """The causal token for a commit that ended at or before *lsn*."""
    return f"{TOKEN_PREFIX}{lsn}"


def parse_token(token: str) -> Lsn | None:
    """The LSN of a PostgreSQL causal token; ``None`` for any other text (a MySQL GTID ...)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    try:
        return Lsn.parse(token[len(TOKEN_PREFIX) :])
    except ValueError:
        return None


COMMIT_TOKEN_SQL = "SELECT pg_current_wal_insert_lsn()::text"
"""After a ``COMMIT`` on the same connection: a WAL position at or after the end of that
commit's record. The *insert* position, not the write/flush one: with
``synchronous_commit = off`` the commit record may not be written yet when ``COMMIT``
returns, and a token before it would let a standby serve a read without the write. (When the
record ends exactly at a WAL page boundary the insert position is past the next page header,
and a standby reaches it with the next WAL record: a rare wait that times out, never a stale
read.)"""

WAIT_TIMEOUT_SQLSTATE = "RWW01"
"""The SQLSTATE the wait raises when the standby did not replay the token in time."""


def wait_sql(lsn: Lsn, timeout: float) -> str:
    """A ``DO`` block that returns once the standby replayed *lsn*, within *timeout* seconds.

    It polls ``pg_last_wal_replay_lsn()`` with a back-off from 1 ms to 20 ms, all on the
    server (one round trip), and raises SQLSTATE :data:`WAIT_TIMEOUT_SQLSTATE` when the
    deadline passes. A node that is not (or no longer) in recovery answers with its own WAL
    position. ``DO`` runs on a hot standby: it writes nothing. The literal is built from a
    parsed :class:`Lsn` only (never from the token's text).

    While it waits the statement holds a snapshot: a recovery conflict with it delays replay by
    at most *timeout* (``max_standby_streaming_delay`` does not come into play).
    """
    ms = max(1, math.ceil(timeout * 1000))
    return (
        "DO $rwsplit$ DECLARE t timestamptz := clock_timestamp() + "
        f"interval '{ms} milliseconds'; s float8 := 0.001; BEGIN LOOP "
        f"IF pg_is_in_recovery() THEN IF pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn "
        f"THEN RETURN; END IF; ELSIF pg_current_wal_lsn() >= '{lsn}'::pg_lsn THEN RETURN; "
        "END IF; IF clock_timestamp() >= t THEN RAISE EXCEPTION "
        "'rwsplit: causal wait timed out' USING ERRCODE = "
        f"'{WAIT_TIMEOUT_SQLSTATE}'; END IF; PERFORM pg_sleep(LEAST(s, GREATEST(0.0, "
        "EXTRACT(EPOCH FROM t - clock_timestamp())::float8))); s := LEAST(s * 2, 0.02); "
        "END LOOP; END $rwsplit$"
    )


# ---------------------------------------------------------------------------------- checks

IS_PRIMARY_SQL = (
    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')::boolean"
)
"""When a connection to the primary is opened: (in recovery, read-only by default)."""

FENCE_CHECK_SQL = (
    "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only')::boolean"
)
"""Before a commit that wrote: true when the node stopped taking writes (fenced by
``ALTER SYSTEM SET default_transaction_read_only = on`` and a reload — a backend applies a
reload before its next statement —, or demoted). One round trip, in the transaction."""

READ_ONLY_SESSION_SQL = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
"""Every connection to a standby: a write that slipped through fails on the server."""


# ---------------------------------------------------------------------------------- errors


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a psycopg / asyncpg error (or SQLAlchemy's wrapper of one)."""
    seen = 0
    while exc is not None and seen < 4:
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if isinstance(code, str) and code:
            return code
        exc = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's
        seen += 1
    return None


# 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting / in
# recovery without hot standby); class 08: connection exceptions.
_GONE = frozenset({"57P01", "57P02", "57P03"})
_LOST_TYPES = frozenset(
    {"OperationalError", "InterfaceError", "ConnectionDoesNotExistError", "ConnectionError"}
)


def is_connection_lost(exc: BaseException | None) -> bool:
    """True when *exc* means the connection or the server is gone (not a refusal)."""
    if exc is None:
        return False
    state = sqlstate(exc)
    if state is not None:
        return state.startswith("08") or state in _GONE
    names = {t.__name__ for t in type(exc).__mro__}
    if names & _LOST_TYPES:
        return True
    return isinstance(exc, OSError | EOFError | ConnectionError)


def is_read_only_rejection(exc: BaseException | None) -> bool:
    """True when the server refused a write as read-only (SQLSTATE 25006: a hot standby, or
    ``default_transaction_read_only``)."""
    return sqlstate(exc) == "25006"


# A standby that refuses the application's connection is as unusable as a dead one: access
# denied (28000, 28P01), unknown database (3D000), too many connections (53300).
_UNUSABLE = frozenset({"28000", "28P01", "3D000", "53300", "53400"})


def is_replica_unusable(exc: BaseException | None) -> bool:
    """True when *exc* means a standby cannot serve reads now (gone, refusing, full)."""
    return is_connection_lost(exc) or sqlstate(exc) in _UNUSABLE


_REFUSED = frozenset({"53300", "53400"})  # too many connections / a configuration limit
# libpq reports a refusal at connect time without a SQLSTATE: only its message says why.
_REFUSED_TEXT = ("too many clients already", "remaining connection slots are reserved")


def is_connection_refused(exc: BaseException | None) -> bool:
    """True when a live server refused a new connection for want of capacity (SQLSTATE
    53300 / 53400, or libpq's message at connect, which carries no SQLSTATE)."""
    if exc is None:
        return False
    if sqlstate(exc) in _REFUSED:
        return True
    text = str(exc)
    return any(t in text for t in _REFUSED_TEXT)


_ANSWERED = frozenset({"28000", "28P01", "3D000", "53300", "53400", "57P03", "42501"})


def server_answered(exc: BaseException | None) -> bool:
    """True when *exc* is an error only a live server sends (refused this connection)."""
    return sqlstate(exc) in _ANSWERED


def is_recovery_conflict(exc: BaseException | None) -> bool:
    """True when a hot standby cancelled the statement to go on replaying WAL ("canceling
    statement due to conflict with recovery": SQLSTATE 40001, or 40P01 for a buffer-pin
    deadlock). The connection survives; a plain read can simply run again."""
    if sqlstate(exc) not in ("40001", "40P01"):
        return False
    return "conflict with recovery" in str(exc)


def is_wait_timeout(exc: BaseException | None) -> bool:
    """True when *exc* is the timeout of :func:`wait_sql`."""
    return sqlstate(exc) == WAIT_TIMEOUT_SQLSTATE


# ---------------------------------------------------------------------------------- state

STATE_SQL = """\
SELECT current_setting('server_version') AS version,
       pg_is_in_recovery() AS in_recovery,
       current_setting('default_transaction_read_only')::boolean AS read_only,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END
           AS current_lsn,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
           AS replay_age,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END
           AS replay_paused,
       r.sender_host, r.sender_port, r.status AS receiver_status,
       (SELECT coalesce(json_agg(json_build_object(
            'application_name', s.application_name, 'client_addr', host(s.client_addr),
            'state', s.state, 'replay_lsn', s.replay_lsn::text)), '[]'::json)
          FROM pg_stat_replication s)::text AS standbys
  FROM (SELECT 1) AS one
  LEFT JOIN pg_stat_wal_receiver r ON true"""
"""Everything a probe reads, in one round trip and one row (no privilege beyond login;
``pg_read_all_stats`` or a superuser to see ``sender_host`` and the standbys' addresses)."""


@dataclass(frozen=True, slots=True)
class StandbyInfo:
    """One row of the primary's ``pg_stat_replication``."""

    application_name: str
    client_addr: str | None
    state: str
    replay_lsn: Lsn | None


@dataclass(frozen=True, slots=True)
class PgNodeState:
    """What one probe of a PostgreSQL server found (:data:`STATE_SQL`)."""

    version: str
    in_recovery: bool
    read_only: bool
    """``default_transaction_read_only``: how a primary is fenced."""
    current_lsn: Lsn | None
    """A primary's WAL write position (``None`` on a standby)."""
    receive_lsn: Lsn | None
    replay_lsn: Lsn | None
    replay_age: float | None
    """Seconds since the primary committed the last transaction this standby replayed."""
    replay_paused: bool = False
    sender_host: str | None = None
    sender_port: int | None = None
    receiver_status: str | None = None
    """``pg_stat_wal_receiver.status``: ``streaming``, ``starting``, ``waiting`` ... (``None``:
    no WAL receiver running)."""
    standbys: tuple[StandbyInfo, ...] = ()

    @property
    def writable(self) -> bool:
        """Takes writes: not in recovery and not read-only by default."""
        return not self.in_recovery and not self.read_only

    @property
    def position(self) -> Lsn | None:
        """How far the node got: a primary's WAL position, a standby's replay position."""
        return self.replay_lsn if self.in_recovery else self.current_lsn

    @property
    def source(self) -> str | None:
        """The standby's upstream as an rwsplit node name (``host:port``), when known."""
        if not self.in_recovery or not self.sender_host or not self.sender_port:
            return None
        return f"{self.sender_host}:{self.sender_port}"

    @property
    def streaming(self) -> bool:
        return self.receiver_status == "streaming"


def parse_state(row: Mapping[str, Any]) -> PgNodeState:
    """The :class:`PgNodeState` of one :data:`STATE_SQL` row."""
    import json

    standbys: list[StandbyInfo] = []
    raw = row.get("standbys")
    for s in json.loads(raw) if isinstance(raw, str) and raw else (raw or []):
        standbys.append(
            StandbyInfo(
                str(s.get("application_name") or ""),
                s.get("client_addr"),
                str(s.get("state") or ""),
                Lsn.maybe(s.get("replay_lsn")),
            )
        )
    age = row.get("replay_age")
    port = row.get("sender_port")
    return PgNodeState(
        version=str(row.get("version") or ""),
        in_recovery=bool(row.get("in_recovery")),
        read_only=bool(row.get("read_only")),
        current_lsn=Lsn.maybe(row.get("current_lsn")),
        receive_lsn=Lsn.maybe(row.get("receive_lsn")),
        replay_lsn=Lsn.maybe(row.get("replay_lsn")),
        replay_age=float(age) if age is not None else None,
        replay_paused=bool(row.get("replay_paused")),
        sender_host=row.get("sender_host") or None,
        sender_port=int(port) if port else None,
        receiver_status=row.get("receiver_status") or None,
        standbys=tuple(standbys),
    )


def replay_lag(standby: PgNodeState, primary: PgNodeState | None) -> float | None:
    """Seconds *standby* is behind, from LSNs first and ``pg_last_xact_replay_timestamp()``.

    A standby that replayed everything it received while it streams — or, not streaming,
    everything the primary wrote —  lags 0 however long ago the last transaction was (an
    idle primary must not make a caught-up standby look late). Otherwise the age of the last
    transaction it replayed (an upper bound: nothing newer is visible there), or ``None`` when
    it never replayed one.

    >>> s = PgNodeState("15", True, True, None, Lsn(100), Lsn(100), 3600.0)  # not streaming
    >>> p = PgNodeState("15", False, False, Lsn(100), None, None, None)
    >>> replay_lag(s, p), replay_lag(s, PgNodeState("15", False, False, Lsn(200), None, None, None))
    (0.0, 3600.0)
    """
    replay = standby.replay_lsn
    if replay is None:
        return None
    received = standby.receive_lsn
    caught_up = received is None or replay >= received
    if standby.streaming:
        pass  # what the primary wrote since is in flight: that is network, not lag
    elif primary is not None and primary.current_lsn is not None:
        caught_up = caught_up and replay >= primary.current_lsn
    else:
        caught_up = False  # not streaming: nothing says the primary wrote no more
    if caught_up:
        return 0.0
    if standby.replay_age is None:
        return None
    return max(0.0, round(standby.replay_age, 3))
