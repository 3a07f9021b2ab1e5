"""asyncio: :class:`AsyncRoutingSession`, SQLAlchemy's ``AsyncSession`` routed like
:class:`~rwsplit.RoutingSession`.

SQLAlchemy's asyncio extension runs an ordinary :class:`~sqlalchemy.orm.Session` inside a
greenlet and awaits the driver's coroutines from there. rwsplit plugs its
:class:`~rwsplit.RoutingSession` in as that inner session (``sync_session_class``), so every
rule (classification, hints, sticky-after-write, pins, read-only transactions,
read-your-writes, read retry, self-healing, write-failure errors) is the same code path in
sync and async applications. The cluster keeps the *sync* face of each async engine
(``AsyncEngine.sync_engine``): that is what ``get_bind`` must return under ``AsyncSession``.

What never blocks the event loop:

* statements, causal waits (``MASTER_GTID_WAIT`` / ``WAIT_FOR_EXECUTED_GTID_SET``), the GTID
  read after a commit, connection set-up: all go through the async driver and are awaited;
* the monitor's probes and failover run in the monitor's own thread over PyMySQL (built from
  each node's host, port and credentials, whatever driver its URL names);
* :meth:`Cluster.aclose() <rwsplit.Cluster.aclose>` stops the monitor thread in a worker
  thread and awaits the engines' disposal.

Blocking calls an async application may still make, and should run in a thread
(``await asyncio.to_thread(...)``): :meth:`Cluster.refresh() <rwsplit.Cluster.refresh>`,
:func:`rwsplit.failover`, :func:`rwsplit.switchover`.

>>> from rwsplit import Cluster
>>> cluster = Cluster("mysql+aiomysql://app:pw@db1/shop", ["mysql+aiomysql://app:pw@db2/shop"])
>>> Session = cluster.async_sessionmaker(expire_on_commit=False)
>>> Session.class_.__name__
'AsyncRoutingSession'
>>> cluster.close()   # nothing was connected yet; otherwise: await cluster.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import ssl
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, MissingGreenlet

from ._async_drivers import INSTALL_HINT, require_async_cluster
from .config import TLSConfig
from .errors import ConfigurationError
from .integrations.sqlalchemy import RoutingSession

log = logging.getLogger("rwsplit.asyncio")

try:
    # SQLAlchemy's asyncio extension needs greenlet: 2.1 refuses the import without it,
    # 2.0 fails later, deep inside create_async_engine. Ask for it here, on both.
    import greenlet  # type: ignore[import-untyped]  # noqa: F401
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
except ImportError as exc:
    raise ConfigurationError(
        f"rwsplit's asyncio support needs SQLAlchemy's asyncio extension ({exc}); "
        f"install it with {INSTALL_HINT}"
    ) from None

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext

    from .cluster import Cluster
    from .routing.classify import Classification

__all__ = ["AsyncRoutingSession", "create_async_node_engine", "dispose_engines"]


class AsyncRoutingSession(AsyncSession):
    """An :class:`~sqlalchemy.ext.asyncio.AsyncSession` whose inner session is a
    :class:`~rwsplit.RoutingSession`: it routes exactly like the sync session.

    Create it with :meth:`Cluster.async_session() <rwsplit.Cluster.async_session>` or
    :meth:`Cluster.async_sessionmaker() <rwsplit.Cluster.async_sessionmaker>`; the routing
    controls of the inner session are mirrored here (``use_primary()``, ``causal_token``,
    ``pins`` ...), the rest is SQLAlchemy's ``AsyncSession``.
    """

    sync_session_class = RoutingSession
    sync_session: RoutingSession

    def __init__(self, cluster: Cluster, *, causal_token: str | None = None, **kw: Any) -> None:
        require_async_cluster(cluster, "AsyncRoutingSession")
        super().__init__(cluster=cluster, causal_token=causal_token, **kw)

    @property
    def cluster(self) -> Cluster:
        """The cluster this session routes over."""
        return self.sync_session.cluster

    def use_primary(self) -> AbstractContextManager[RoutingSession]:
        """Run every statement of the (``with``, not ``async with``) block on the primary.

        ``with session.use_primary(): await session.execute(...)``
        """
        return self.sync_session.use_primary()

    @property
    def causal_token(self) -> str | None:
        """The GTID of this session's last committed write (see RoutingSession)."""
        return self.sync_session.causal_token

    @property
    def on_primary(self) -> bool:
        """True when the next statement would go to the primary whatever it is."""
        return self.sync_session.on_primary

    @property
    def pins(self) -> frozenset[str]:
        """Why this session is pinned to the primary (empty when it is not)."""
        return self.sync_session.pins

    @property
    def in_read_only_transaction(self) -> bool:
        """True inside ``START TRANSACTION READ ONLY`` running on a replica."""
        return self.sync_session.in_read_only_transaction

    @property
    def healed(self) -> int:
        """Statements of this session a replica rejected as read-only, re-run on the primary."""
        return self.sync_session.healed

    @property
    def last_classification(self) -> Classification | None:
        """How the most recent statement was classified (for debugging and tests)."""
        return self.sync_session.last_classification


# ---------------------------------------------------------------------------------- drivers


def create_async_node_engine(url: URL, options: Mapping[str, Any]) -> Engine:
    """An async engine for one node; returns its ``sync_engine`` (what ``get_bind`` gives).

    ``options["connect_args"]`` may hold rwsplit's PyMySQL-style TLS arguments
    (``ssl_ca`` ...): they become the ``ssl=SSLContext`` argument asyncio drivers take.
    """
    options = dict(options)
    connect_args = dict(options.get("connect_args", {}))
    if any(k.startswith("ssl_") for k in connect_args):
        connect_args = _tls_to_ssl_context(connect_args)
    if connect_args or "connect_args" in options:
        options["connect_args"] = connect_args
    try:
        engine = create_async_engine(url, **options).sync_engine
    except (ArgumentError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot create an engine for {url.render_as_string(hide_password=True)}: {exc}"
        ) from None
    except ImportError as exc:
        raise ConfigurationError(
            f"the asyncio driver for {url.drivername!r} is not installed ({exc}); "
            f"install it, e.g. {INSTALL_HINT}"
        ) from None
    # Sync code (cluster.session(), engine.connect()) on an async engine fails with
    # MissingGreenlet at the first I/O: refuse before connecting, saying what to use instead.
    # (Not at pool checkout: a refusal there would discard, and leak, a good connection.)
    event.listen(engine, "do_connect", _refuse_outside_greenlet)
    event.listen(engine, "handle_error", _explain_missing_greenlet)
    dialect = engine.dialect
    if getattr(dialect, "has_terminate", False):
        # The pool closes a connection with the adapter's close(): QUIT, then wait for it to
        # drain. To a killed server that raises (connection reset) and, outside the event
        # loop's greenlet (the monitor thread dropping the old primary's pool), it cannot run
        # at all: the pool logs it and drops the connection with its socket still open
        # (aiomysql's "Unclosed connection" ResourceWarning when the garbage collector meets
        # it). terminate() is that graceful close with a fallback: close the transport.
        dialect.do_close = dialect.do_terminate  # type: ignore[method-assign]
    elif dialect.driver in ("aiomysql", "asyncmy"):
        # SQLAlchemy before 2.0.2x: the adapter's close() only closes the transport. Over TLS
        # the socket closes after the TLS shutdown, which needs the event loop: when the loop
        # ends first the socket is left open (the garbage collector's ResourceWarning).
        dialect.do_close = _close_gracefully  # type: ignore[method-assign]
    return engine


def _close_gracefully(dbapi_connection: Any) -> None:
    """``terminate()`` of newer SQLAlchemy, for the releases whose MySQL adapters lack it.

    In the event loop's greenlet: QUIT, and wait for the stream (TLS included) to close. Outside
    it, or when that fails (a dead server): close the transport at once.
    """
    from sqlalchemy.util import await_only

    ensure_closed = getattr(getattr(dbapi_connection, "_connection", None), "ensure_closed", None)
    try:
        if ensure_closed is not None:
            await_only(ensure_closed())  # MissingGreenlet outside the loop: closes the coroutine
    except Exception as exc:  # the server is gone, or not in the loop's greenlet
        log.debug("graceful close failed (%s): closing the transport", exc)
    finally:
        dbapi_connection.close()


def _tls_to_ssl_context(args: dict[str, Any]) -> dict[str, Any]:
    """Turn rwsplit's PyMySQL TLS arguments into an ``SSLContext`` for aiomysql / asyncmy."""
    tls = TLSConfig(
        ca=args.pop("ssl_ca", None),
        cert=args.pop("ssl_cert", None),
        key=args.pop("ssl_key", None),
        verify_cert=args.pop("ssl_verify_cert", True),
        verify_identity=args.pop("ssl_verify_identity", True),
        disabled=args.pop("ssl_disabled", False),
    )
    if tls.disabled:
        return args  # asyncio drivers use TLS only when given a context
    context = ssl.create_default_context(cafile=tls.ca)
    context.check_hostname = tls.verify_identity
    if not tls.verify_cert:
        context.verify_mode = ssl.CERT_NONE
    if tls.cert is not None:
        context.load_cert_chain(tls.cert, tls.key)
    return {**args, "ssl": context}


def _in_greenlet() -> bool:
    # The one place rwsplit asks SQLAlchemy whether code runs under greenlet_spawn (inside an
    # AsyncSession / AsyncConnection call). Private in every release, spelt two ways; pinned
    # by tests/unit/test_asyncio_unit.py.
    try:
        from sqlalchemy.util.concurrency import in_greenlet  # SQLAlchemy 2.1
    except ImportError:  # pragma: no cover - SQLAlchemy 2.0
        impl = importlib.import_module("sqlalchemy.util._concurrency_py3k")
        return isinstance(impl.getcurrent(), impl._AsyncIoGreenlet)
    return bool(in_greenlet())


_SYNC_USE = (
    "this cluster's URLs use an asyncio driver (aiomysql / asyncmy), which only works from "
    "async code: use cluster.async_session() / cluster.async_sessionmaker() and await, or "
    "give the cluster mysql+pymysql:// URLs for cluster.session()"
)


def _refuse_outside_greenlet(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
    if not _in_greenlet():
        raise ConfigurationError(_SYNC_USE)


def _explain_missing_greenlet(ctx: ExceptionContext) -> None:
    # Sync code reusing a connection the async side pooled: say the same as above.
    if isinstance(ctx.original_exception, MissingGreenlet):
        raise ConfigurationError(_SYNC_USE) from ctx.original_exception


# ---------------------------------------------------------------------------------- closing


async def dispose_engines(engines: Iterable[Engine]) -> None:
    """Dispose of *engines*: async ones awaited on this loop, sync ones in a worker thread."""
    for engine in _unique(engines):
        if engine.dialect.is_async:
            await _dispose_async(engine)
        else:
            await asyncio.to_thread(engine.dispose)


async def _dispose_async(engine: Engine) -> None:
    closing: list[Any] = []

    def remember_stream(dbapi_connection: Any, connection_record: Any) -> None:
        closing.append(getattr(dbapi_connection.driver_connection, "_writer", None))

    event.listen(engine, "close", remember_stream)
    try:
        await AsyncEngine(engine).dispose()
    finally:
        event.remove(engine, "close", remember_stream)
    await _wait_closed([w for w in closing if w is not None])


async def _wait_closed(streams: list[Any], timeout: float = 2.0) -> None:
    # aiomysql's close() does not wait for the transport to finish closing; over TLS that
    # is a shutdown exchange with the server. An event loop that ends first (asyncio.run
    # returning right after aclose()) leaves those sockets open: wait, bounded, for them.
    waits = [w.wait_closed() for w in streams if hasattr(w, "wait_closed")]
    if waits:
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout)


def _unique(engines: Iterable[Engine]) -> Iterator[Engine]:
    seen: set[int] = set()
    for e in engines:
        if id(e) not in seen:
            seen.add(id(e))
            yield e
