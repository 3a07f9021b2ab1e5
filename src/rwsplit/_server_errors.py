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
    "READ_ONLY_CODES",
    "REPLICA_UNUSABLE_CODES",
    "error_code",
    "is_connection_failure",
    "is_read_only_rejection",
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


def is_replica_unusable(exc: BaseException) -> bool:
    """True when driver error *exc* means a replica cannot serve reads now (gone, refusing)."""
    return error_code(exc) in REPLICA_UNUSABLE_CODES
