"""Which driver kind a cluster's URLs use: asyncio (aiomysql, asyncmy) or blocking (PyMySQL).

Kept apart from :mod:`rwsplit.asyncio` so that sync applications never import SQLAlchemy's
asyncio extension (which needs ``greenlet``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = [
    "INSTALL_HINT",
    "check_same_driver_kind",
    "is_async_url",
    "require_async_cluster",
    "require_sync_close",
]

INSTALL_HINT = "pip install 'rwsplit[asyncio]'"


def is_async_url(url: URL) -> bool:
    """True when *url* names an asyncio driver (``mysql+aiomysql``, ``mysql+asyncmy``).

    >>> from sqlalchemy.engine import make_url
    >>> is_async_url(make_url("mysql+asyncmy://u@db1/x")), is_async_url(make_url("mysql://u@db1"))
    (True, False)
    """
    try:
        return bool(url.get_dialect().is_async)
    except ArgumentError:  # an unknown dialect: create_engine reports it
        return False


def _drivers(urls: Iterable[URL]) -> str:
    return ", ".join(sorted({u.drivername for u in urls}))


def require_async_cluster(cluster: Cluster, what: str) -> None:
    """Raise :class:`~rwsplit.ConfigurationError` unless every node URL is an asyncio driver.

    A blocking driver under ``AsyncSession`` fails deep inside SQLAlchemy (``'Cursor' object
    has no attribute '_async_soft_close'``); say what to change instead.
    """
    urls = [n.url for n in cluster.topology.nodes]
    if not all(is_async_url(u) for u in urls):
        raise ConfigurationError(
            f"{what} needs an asyncio driver, but the cluster's URLs use {_drivers(urls)}; "
            + (
                "write them as postgresql+psycopg_async://... or postgresql+asyncpg://... "
                "(pip install 'rwsplit[postgresql]')"
                if all(u.get_backend_name() == "postgresql" for u in urls)
                else f"write them as mysql+aiomysql://... or mysql+asyncmy://... ({INSTALL_HINT})"
            )
            + ", or use cluster.session() from sync code"
        )


def check_same_driver_kind(url: URL, engines: Iterable[Engine]) -> None:
    """Refuse a cluster whose nodes mix asyncio and blocking drivers.

    Sync and async sessions cannot share such a cluster: whichever kind of session is used,
    some node could not be reached from it.
    """
    mine = is_async_url(url)
    for engine in engines:
        if engine.dialect.is_async != mine:
            a, b = (url, engine.url) if mine else (engine.url, url)
            raise ConfigurationError(
                "the cluster's URLs mix an asyncio driver "
                f"({a.drivername} for {a.host}:{a.port or 3306}) with a blocking one "
                f"({b.drivername} for {b.host}:{b.port or 3306}); use the same kind of driver "
                "for every node: mysql+aiomysql / mysql+asyncmy for asyncio, "
                "mysql+pymysql for sync code"
            )


# ---------------------------------------------------------------------------------- closing


def _holds_connections(engine: Engine) -> bool:
    pool: Any = engine.pool
    counts = [getattr(pool, name, None) for name in ("checkedin", "checkedout")]
    return any(callable(c) and c() for c in counts)


def require_sync_close(engines: Iterable[Engine]) -> None:
    """Refuse a blocking ``close()`` of async engines that hold connections.

    Closing an asyncio connection is I/O that must be awaited on the loop that opened it:
    from sync code it can only log ``MissingGreenlet`` tracebacks and leak the sockets.
    Engines that never connected can be disposed of anywhere.
    """
    if any(e.dialect.is_async and _holds_connections(e) for e in engines):
        raise ConfigurationError(
            "this cluster has asyncio connections open, which only the event loop that opened "
            "them can close: use 'await cluster.aclose()' (or 'async with Cluster(...)') in "
            "that loop, before it ends, instead of cluster.close()"
        )
