"""What a MySQL/MariaDB driver error means for routing, from its error code alone.

Framework-neutral (no SQLAlchemy, no Django): the SQLAlchemy integration adds what its own
exception wrapper knows (``connection_invalidated``); the Django backend sees the driver's
errors as they are.

>>> is_connection_failure(OSError(2013, "Lost connection to server during query"))
True
>>> is_read_only_rejection(OSError(1792, "Cannot execute statement in a READ ONLY transaction"))
True
>>> is_replica_unusable(OSError(1045, "Access denied")), is_connection_failure(OSError(1045, "x"))
(True, False)
"""

from __future__ import annotations

__all__ = [
    "CONNECTION_LOST_CODES",
    "CONNECTION_REFUSED_CODES",
    "READ_ONLY_CODES",
    "REPLICA_UNUSABLE_CODES",
    "error_code",
    "is_connection_failure",
    "is_connection_refused",
    "is_read_only_rejection",
    "is_read_timeout",
    "is_replica_unusable",
]

# MySQL client / server error codes that mean "this connection or server is gone".
CONNECTION_LOST_CODES = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055})
# A replica that refuses the application's connection is as unusable as a dead one: access
# denied (1044, 1045), unknown database (1049), host blocked / not allowed (1129, 1130), too
# many connections (1040, 1203, 1226), TLS set-up failed (2026).
REPLICA_UNUSABLE_CODES = CONNECTION_LOST_CODES | {
    1040,
    1044,
    1045,
    1049,
    1129,
    1130,
    1203,
    1226,
    2026,
}
# A live server refusing a new connection for want of capacity (a connection storm): too many
# connections (1040), the account's max_user_connections (1203) or hourly limits (1226), this
# host blocked after too many connection errors (1129). Nothing was sent on that connection.
CONNECTION_REFUSED_CODES = frozenset({1040, 1129, 1203, 1226})
# Server errors that mean "this server / session is read-only": 1290 (--read-only and other
# options), 1792 (statement in a READ ONLY transaction), 1836 (read-only mode), 1874 (InnoDB
# read-only).
READ_ONLY_CODES = frozenset({1290, 1792, 1836, 1874})


def error_code(exc: BaseException) -> int | None:
    """The server / client error code of a driver exception (``None``: it has none)."""
    args: tuple[object, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_read_only_rejection(exc: BaseException) -> bool:
    """True when driver error *exc* is a server refusing a statement because it is read-only."""
    return error_code(exc) in READ_ONLY_CODES


def is_connection_failure(exc: BaseException) -> bool:
    """True when driver error *exc* means the server or the connection to it is gone."""
    return error_code(exc) in CONNECTION_LOST_CODES


def is_connection_refused(exc: BaseException) -> bool:
    """True when driver error *exc* is a live server refusing a new connection (it is full).

    >>> is_connection_refused(OSError(1040, "Too many connections"))
    True
    """
    return error_code(exc) in CONNECTION_REFUSED_CODES


def is_replica_unusable(exc: BaseException) -> bool:
    """True when driver error *exc* means a replica cannot serve reads now (gone, refusing)."""
    return error_code(exc) in REPLICA_UNUSABLE_CODES


# "Lost connection to server during query": what PyMySQL and libmysqlclient raise when a read
# outlives the driver's read timeout (and when the server goes away mid-query).
_LOST_DURING_QUERY = 2013


def is_read_timeout(
    exc: BaseException, elapsed: float | None = None, limit: float | None = None
) -> bool:
    """True when driver error *exc* is a statement that outlived the driver's read timeout.

    PyMySQL chains the socket's :class:`TimeoutError`; other drivers say only "lost
    connection" (2013), so a statement that failed after *elapsed* seconds, at least about its
    read timeout *limit*, counts as timed out too.

    >>> is_read_timeout(OSError(2013, "Lost connection"), elapsed=1.02, limit=1.0)
    True
    >>> is_read_timeout(OSError(2013, "Lost connection"), elapsed=0.1, limit=1.0)
    False
    """
    if error_code(exc) != _LOST_DURING_QUERY:
        return False
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, TimeoutError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return elapsed is not None and limit is not None and elapsed >= 0.95 * limit
