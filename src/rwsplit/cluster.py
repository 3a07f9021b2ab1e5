"""The :class:`Cluster`: the one object an application creates.

It owns one SQLAlchemy :class:`~sqlalchemy.engine.Engine` per node and mode (read-write for the
primary, read-only for replicas), the current :class:`~rwsplit.topology.Topology`, the balancer
and the routing options. Sessions ask it for an engine per statement; that path takes the
current routing snapshot (:class:`_Routes`) without a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import sessionmaker as _sessionmaker

from .balance import Balancer, RoundRobinBalancer
from .config import ClusterSettings, TLSConfig
from .consistency import ReadYourWrites
from .errors import (
    ConfigurationError,
    NoPrimaryError,
    NoReplicaAvailableError,
    RetryableWriteError,
    SplitBrainError,
    TransactionOutcomeUnknownError,
)
from .topology import Node, Role, Topology, describe_error, node_name

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext
    from sqlalchemy.ext.asyncio import async_sessionmaker as _async_sessionmaker

    from .asyncio import AsyncRoutingSession
    from .failover import FailoverOptions
    from .monitor import Monitor
    from .session import RoutingSession

__all__ = ["Cluster"]

log = logging.getLogger("rwsplit.cluster")

TopologyListener = Callable[[Topology, Topology], None]
"""Called as ``listener(old, new)`` after every published topology change."""


def _coerce_url(value: str | URL, what: str) -> URL:
    if isinstance(value, URL):
        url = value
    elif isinstance(value, str):
        try:
            url = make_url(value)
        except ArgumentError:
            # The text may hold a password: never echo it.
            raise ConfigurationError(
                f"{what} is not a valid SQLAlchemy URL; expected a URL such as "
                "'mysql+pymysql://user:password@host:3306/dbname'"
            ) from None
    else:
        raise ConfigurationError(
            f"{what} must be a URL string or sqlalchemy.engine.URL, got {type(value).__name__}"
        )
    if not url.host:
        raise ConfigurationError(
            f"{what} ({url.render_as_string(hide_password=True)}) has no host; "
            "rwsplit needs host and port to tell the nodes apart"
        )
    return url


def _supports_skip_autocommit_rollback() -> bool:
    import inspect

    from sqlalchemy.engine.default import DefaultDialect

    # create_engine(skip_autocommit_rollback=...) exists from SQLAlchemy 2.0.43 on.
    return "skip_autocommit_rollback" in inspect.signature(DefaultDialect.__init__).parameters


_SKIP_AUTOCOMMIT_ROLLBACK = _supports_skip_autocommit_rollback()


def _is_tls_failure(exc: BaseException | None) -> bool:
    """True when *exc* is a failed TLS handshake (certificate or host-name verification)."""
    import ssl

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ssl.SSLError | ssl.CertificateError) or (
            getattr(exc, "original_exception", None) is not None
            and isinstance(exc.original_exception, ssl.SSLError)  # type: ignore[attr-defined]
        ):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _set_read_only(dbapi_connection: Any, connection_record: Any) -> None:
    # Runs once per new DBAPI connection to a replica: writes fail on the server (1792)
    # instead of diverging the replica, even for accounts that bypass read_only=ON.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    finally:
        cursor.close()


_COMMITTING = "rwsplit.committing"
_IMPLICIT_COMMIT = re.compile(
    r"\s*(?:/\*.*?\*/\s*)*(?:CREATE|ALTER|DROP|RENAME|TRUNCATE|GRANT|REVOKE)\b",
    re.IGNORECASE | re.DOTALL,
)
# Client / server error codes meaning "the connection or the server is gone".
_CONNECTION_LOST = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055})
# The server is read-only (1290; MySQL super_read_only also 1836): it is not the primary.
_READ_ONLY = frozenset({1290, 1836})


def _error_code(exc: BaseException) -> int | None:
    args: tuple[object, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _mark_committing(conn: Any) -> None:
    # Fires just before the DBAPI commit: a failure now leaves the outcome unknown.
    conn.info[_COMMITTING] = True


def _clear_committing(conn: Any) -> None:
    conn.info.pop(_COMMITTING, None)


@dataclass(frozen=True, slots=True)
class _Routes:
    """What the hot path needs, derived from one topology. Replaced whole, never mutated."""

    topology: Topology
    primary: Engine | None
    replicas: tuple[Node, ...]
    engine_of: Mapping[str, Engine]
    """Read-only engine of every readable replica, by node name."""
    recheck_at: float | None
    """Monotonic time at which a node marked down may be tried again (None: nothing to do)."""


class Cluster:
    """A replicated MySQL/MariaDB cluster used as one database.

    :param primary: URL of the primary (``mysql+pymysql://user:pw@host:port/db``).
    :param replicas: URLs of the replicas.
    :param fallback_to_primary: when no replica can take a read, send it to the primary
        (default) instead of raising :class:`~rwsplit.NoReplicaAvailableError`.
    :param max_replica_lag: replicas known to lag more than this many seconds take no reads.
    :param down_retry_interval: seconds after which a replica that failed is tried again.
    :param balancer: picks a replica per read; :class:`~rwsplit.RoundRobinBalancer` by default.
    :param engine_options: keyword arguments for every :func:`sqlalchemy.create_engine`.
    :param on_topology_change: callbacks ``fn(old, new)`` run after each topology change.
    :param read_your_writes: how a session reads its own committed writes: ``"gtid"`` (wait on
        the replica for the commit's GTID, else read the primary), ``"primary"`` (read the
        primary for ``sticky_window`` seconds) or ``"off"``. See :mod:`rwsplit.consistency`.
    :param causal_timeout: longest wait, in seconds, for a replica to apply a session's write.
    :param sticky_window: seconds a session reads from the primary after a write
        (``read_your_writes="primary"``).
    :param tls: TLS settings for every node (:class:`~rwsplit.TLSConfig`).
    :param node_tls: TLS settings of particular nodes, by node name (``"db2:3306"``);
        they replace *tls* for that node.
    :param monitor_interval: run a background :class:`~rwsplit.monitor.Monitor` that probes
        every node this often (seconds; sub-second is fine): health, lag, roles, external
        promotions. ``None`` (default): no monitor, health is learnt from failed reads only.
    :param monitor_timeout: connect / read timeout of each monitor probe, seconds.
    :param failure_threshold: failed probes in a row before the primary counts as dead.
    :param auto_failover: promote a replica automatically once the primary is confirmed dead
        (needs ``failover_options``; starts the monitor, every second by default).
    :param failover_options: replication credentials and candidate rules
        (:class:`~rwsplit.failover.FailoverOptions`).
    :param admin_user: account the monitor and failover use instead of each node URL's
        (needs ``SLAVE MONITOR``; failover also ``SUPER`` or the equivalent admin privileges).
    :param admin_password: its password (never logged or shown).

    A write whose primary connection fails raises :class:`~rwsplit.RetryableWriteError`
    (nothing was committed: retry the unit of work) or, when the failure hit the ``COMMIT``,
    :class:`~rwsplit.TransactionOutcomeUnknownError`; either way the monitor re-probes at once.

    Clusters can also be made from configuration: :meth:`from_properties`,
    :meth:`from_toml`, :meth:`from_env`, :meth:`from_dict`, :meth:`from_config`.

    >>> cluster = Cluster(
    ...     primary="mysql+pymysql://app:secret@db1:3306/shop",
    ...     replicas=["mysql+pymysql://app:secret@db2:3306/shop"],
    ... )
    >>> cluster.topology.primary.name
    'db1:3306'
    >>> cluster.close()
    """

    def __init__(
        self,
        primary: str | URL,
        replicas: Sequence[str | URL] = (),
        *,
        fallback_to_primary: bool = True,
        max_replica_lag: float | None = None,
        down_retry_interval: float = 5.0,
        balancer: Balancer | None = None,
        engine_options: Mapping[str, Any] | None = None,
        on_topology_change: Iterable[TopologyListener] = (),
        read_your_writes: ReadYourWrites | str = ReadYourWrites.GTID,
        causal_timeout: float = 0.5,
        sticky_window: float = 2.0,
        tls: TLSConfig | None = None,
        node_tls: Mapping[str, TLSConfig] | None = None,
        monitor_interval: float | None = None,
        monitor_timeout: float = 1.0,
        failure_threshold: int = 3,
        auto_failover: bool = False,
        failover_options: FailoverOptions | None = None,
        admin_user: str | None = None,
        admin_password: str | None = None,
    ) -> None:
        if isinstance(replicas, (str, URL)):
            raise ConfigurationError("replicas must be a list of URLs, not a single URL")
        if max_replica_lag is not None and max_replica_lag < 0:
            raise ConfigurationError(f"max_replica_lag must be >= 0 seconds, got {max_replica_lag}")
        if down_retry_interval < 0:
            raise ConfigurationError(
                f"down_retry_interval must be >= 0 seconds, got {down_retry_interval}"
            )
        try:
            self.read_your_writes = ReadYourWrites.coerce(read_your_writes)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if causal_timeout < 0 or sticky_window < 0:
            raise ConfigurationError(
                f"causal_timeout and sticky_window must be >= 0 seconds, got "
                f"{causal_timeout} and {sticky_window}"
            )
        self.causal_timeout = causal_timeout
        self.sticky_window = sticky_window
        primary_url = _coerce_url(primary, "primary")
        nodes = [Node(node_name(primary_url), primary_url, Role.PRIMARY)]
        for i, r in enumerate(replicas):
            url = _coerce_url(r, f"replicas[{i}]")
            nodes.append(Node(node_name(url), url, Role.REPLICA))
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"the same host:port appears twice among the nodes: {names}")
        self._tls = tls
        self._node_tls: dict[str, TLSConfig] = dict(node_tls or {})
        for name, node_config in self._node_tls.items():
            if name not in names:
                raise ConfigurationError(
                    f"node_tls names {name!r}, which is not a node; nodes: {', '.join(names)}"
                )
            node_config.check_files()
        if tls is not None:
            tls.check_files()

        self.fallback_to_primary = fallback_to_primary
        self.max_replica_lag = max_replica_lag
        self.down_retry_interval = down_retry_interval
        self.balancer: Balancer = balancer if balancer is not None else RoundRobinBalancer()
        self._engine_options: dict[str, Any] = dict(engine_options or {})
        self._engines: dict[tuple[str, bool], Engine] = {}
        self._listeners: list[TopologyListener] = list(on_topology_change)
        self._lock = threading.RLock()  # serialises topology writers; readers never take it
        self._down_at: dict[str, float] = {}
        self.lazy_readmit = True
        """Re-admit failed replicas after ``down_retry_interval`` on the next read. A monitor
        that owns health turns this off."""
        self._admin = (admin_user, admin_password) if admin_user else None
        self.fenced: set[str] = set()
        """Former primaries that must never take traffic again until rejoined as replicas."""
        self.failover_options = failover_options
        self.monitor: Monitor | None = None
        """The background monitor, when ``monitor_interval`` or ``auto_failover`` is set."""
        self._routes = self._build_routes(Topology(tuple(nodes)))
        if monitor_interval is not None or auto_failover:
            from .monitor import Monitor

            self.monitor = Monitor(
                self,
                interval=monitor_interval if monitor_interval is not None else 1.0,
                timeout=monitor_timeout,
                failure_threshold=failure_threshold,
                auto_failover=auto_failover,
                failover_options=failover_options,
            )
            self.lazy_readmit = False
            self.monitor.start()

    # ------------------------------------------------------------------ engines

    def engine_for(self, node: Node | str, *, writable: bool) -> Engine:
        """The engine for *node* in read-write (primary) or read-only (replica) mode.

        Engines are created once per node and mode and kept until :meth:`close`.
        """
        name = node if isinstance(node, str) else node.name
        key = (name, writable)
        engine = self._engines.get(key)
        if engine is not None:
            return engine
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                url = self._routes.topology.node(name).url if isinstance(node, str) else node.url
                engine = self._create_engine(url, writable=writable)
                self._engines[key] = engine
            return engine

    def _create_engine(self, url: URL, *, writable: bool) -> Engine:
        from ._drivers import check_same_driver_kind, is_async_url

        check_same_driver_kind(url, self._engines.values())
        options = dict(self._engine_options)
        tls = self._node_tls.get(node_name(url), self._tls)
        if tls is not None:
            options["connect_args"] = {**options.get("connect_args", {}), **tls.connect_args()}
        if not writable:
            # Reads on replicas run as single autocommit statements: no snapshot held open,
            # no COMMIT round trip, and a read that fails can be retried elsewhere.
            options["isolation_level"] = "AUTOCOMMIT"
            if _SKIP_AUTOCOMMIT_ROLLBACK:
                # Nothing to roll back on an autocommit connection: save the round trip.
                options.setdefault("skip_autocommit_rollback", True)
        try:
            if is_async_url(url):
                from .asyncio import create_async_node_engine

                # The cluster keeps the sync face of the async engine: under AsyncSession,
                # RoutingSession.get_bind must return a sync Engine.
                engine = create_async_node_engine(url, options)
            else:
                engine = create_engine(url, **options)
        except (ArgumentError, TypeError) as exc:
            raise ConfigurationError(
                f"cannot create an engine for {url.render_as_string(hide_password=True)}: {exc}"
            ) from None
        except ImportError as exc:
            raise ConfigurationError(
                f"the driver for {url.drivername!r} is not installed ({exc}); "
                "install it, e.g. 'pip install pymysql'"
            ) from None
        if not writable:
            event.listen(engine, "connect", _set_read_only)
        else:
            name = node_name(url)
            event.listen(engine, "commit", _mark_committing)
            event.listen(engine, "begin", _clear_committing)
            event.listen(engine, "handle_error", lambda ctx: self._on_primary_error(name, ctx))
        return engine

    def _on_primary_error(self, name: str, ctx: ExceptionContext) -> None:
        """``handle_error`` of read-write engines: say whether the write can be retried."""
        if ctx.is_pre_ping:
            return
        orig = ctx.original_exception
        code = _error_code(orig)
        if not (ctx.is_disconnect or code in _CONNECTION_LOST or code in _READ_ONLY):
            return
        committing = False
        conn = ctx.connection
        if conn is not None and ctx.statement is None:
            with contextlib.suppress(Exception):
                committing = bool(conn.info.pop(_COMMITTING, False))
        elif ctx.statement is not None:
            # A statement that commits by itself (DDL, or an autocommit connection) may have
            # been committed before the connection died.
            autocommit = False
            with contextlib.suppress(Exception):
                autocommit = conn is not None and conn._is_autocommit_isolation()
            committing = autocommit or bool(_IMPLICIT_COMMIT.match(ctx.statement))
        reason = describe_error(orig)
        if _is_tls_failure(orig):
            # Not a dead primary: a certificate / host-name mismatch fails the same way on retry.
            raise ConfigurationError(
                f"the TLS handshake with {name} failed ({reason}); check the TLS settings "
                "(tls_ca must sign the server's certificate, and with tls_verify_identity the "
                "certificate must name the host in the URL)"
            )
        log.warning("write on primary %s failed (%s); refreshing the topology", name, reason)
        self.refresh_soon()
        if committing:
            raise TransactionOutcomeUnknownError(
                f"the primary {name} failed while committing ({reason}): the transaction may "
                "or may not have been committed; check before retrying it"
            )
        raise RetryableWriteError(
            f"the primary {name} failed ({reason}) before anything was committed: the "
            "transaction was rolled back; retry the whole unit of work (rwsplit sends it to "
            "the primary it finds next)"
        )

    def admin_url(self, node: Node) -> URL:
        """The URL the monitor and failover use for *node* (admin credentials if given)."""
        if self._admin is None:
            return node.url
        user, password = self._admin
        # URL.set() ignores None: an empty string really replaces the app's password.
        return node.url.set(username=user, password=password or "")

    def probe_connect_args(self, node: Node) -> dict[str, Any]:
        """Driver arguments the monitor and failover add for *node*: its TLS settings."""
        tls = self._node_tls.get(node.name, self._tls)
        return tls.connect_args() if tls is not None else {}

    def refresh_soon(self) -> None:
        """Ask the monitor (if any) to re-probe every node now."""
        if self.monitor is not None:
            self.monitor.wake()

    def refresh(self) -> Topology:
        """Probe every node now, publish what changed, and return the new topology.

        Works with or without a running monitor.
        """
        if self.monitor is not None:
            return self.monitor.check()
        from .monitor import Monitor

        monitor = Monitor(self, timeout=2.0)
        try:
            return monitor.check()
        finally:
            monitor.stop()

    # ------------------------------------------------------------------ topology

    @property
    def topology(self) -> Topology:
        """The current immutable topology snapshot."""
        return self._routes.topology

    def subscribe(self, listener: TopologyListener) -> None:
        """Call ``listener(old, new)`` after every topology change."""
        with self._lock:
            self._listeners.append(listener)

    def publish(self, topology: Topology) -> None:
        """Make *topology* current (used by the monitor and failover; thread-safe)."""
        with self._lock:
            old = self._routes.topology
            self._routes = self._build_routes(topology)
            listeners = list(self._listeners)
        if old != topology:
            for listener in listeners:
                try:
                    listener(old, topology)
                except Exception:  # a subscriber must not break routing
                    log.exception("topology listener %r failed", listener)

    def mark_down(self, name: str, error: str) -> None:
        """Take node *name* out of routing after a failure; *error* must hold no password."""
        with self._lock:
            topology = self._routes.topology
            try:
                node = topology.node(name)
            except KeyError:
                return
            self._down_at[name] = time.monotonic()
            if not node.healthy:
                return
            log.warning("node %s marked down: %s", name, error)
            new = topology.with_nodes([node.evolve(healthy=False, error=error)])
        self.publish(new)

    def _readmit_due(self) -> _Routes:
        """Give replicas that failed more than ``down_retry_interval`` ago another chance."""
        now = time.monotonic()
        with self._lock:
            topology = self._routes.topology
            due = [
                n.evolve(healthy=True, error=None)
                for n in topology.nodes
                if not n.healthy
                and now - self._down_at.get(n.name, 0.0) >= self.down_retry_interval
            ]
            if not due:
                return self._routes
            for n in due:
                log.info("node %s re-admitted for another try", n.name)
        self.publish(topology.with_nodes(due))
        return self._routes

    def _build_routes(self, topology: Topology) -> _Routes:
        primary_node = topology.primary
        primary = self.engine_for(primary_node, writable=True) if primary_node else None
        readable = topology.readable_replicas(self.max_replica_lag)
        engine_of = {n.name: self.engine_for(n, writable=False) for n in readable}
        recheck_at = None
        if self.lazy_readmit:
            down = [self._down_at.get(n.name, 0.0) for n in topology.nodes if not n.healthy]
            if down:
                recheck_at = min(down) + self.down_retry_interval
        return _Routes(topology, primary, readable, engine_of, recheck_at)

    # ------------------------------------------------------------------ routing (hot path)

    def write_engine(self) -> Engine:
        """The engine of the current primary.

        :raises NoPrimaryError: when no primary is known.
        :raises SplitBrainError: when more than one node claims to be the primary.
        """
        engine = self._routes.primary
        if engine is not None:
            return engine
        primaries = self._routes.topology.primaries
        if len(primaries) > 1:
            raise SplitBrainError(
                "refusing to write: "
                + ", ".join(n.name for n in primaries)
                + " all claim to be the primary; make all but one read_only and retry"
            )
        raise NoPrimaryError(
            "no writable primary is known right now (it is down or a failover is under way); "
            "retry shortly, or check the cluster with 'rwsplit topology'"
        )

    def read_route(self) -> tuple[Node, Engine] | None:
        """The replica (and its read-only engine) that takes the next read, or ``None``."""
        routes = self._routes
        if routes.recheck_at is not None and time.monotonic() >= routes.recheck_at:
            routes = self._readmit_due()
        replicas = routes.replicas
        if not replicas:
            return None
        node = self.balancer.choose(replicas)
        return node, routes.engine_of[node.name]

    def read_engine(self) -> Engine:
        """The engine for the next read: a replica, else the primary if fallback is on.

        :raises NoReplicaAvailableError: no replica is readable and fallback is off.
        """
        route = self.read_route()
        if route is not None:
            return route[1]
        if not self.fallback_to_primary:
            raise NoReplicaAvailableError(
                "no replica can take reads (all down or lagging) and fallback_to_primary=False; "
                "bring a replica back, or allow fallback to the primary"
            )
        return self.write_engine()

    # ------------------------------------------------------------------ sessions

    def session(self, **kwargs: Any) -> RoutingSession:
        """A new :class:`~rwsplit.RoutingSession` on this cluster.

        ``causal_token=`` continues read-your-writes from another session; other keyword
        arguments go to :class:`sqlalchemy.orm.Session` (``expire_on_commit`` ...).
        """
        from .session import RoutingSession

        return RoutingSession(self, **kwargs)

    def sessionmaker(self, **kwargs: Any) -> _sessionmaker[RoutingSession]:
        """A :class:`sqlalchemy.orm.sessionmaker` that makes routing sessions on this cluster."""
        from .session import RoutingSession

        return _sessionmaker(class_=RoutingSession, cluster=self, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop the monitor, dispose of every engine (closes pooled connections). Idempotent.

        :raises ConfigurationError: asyncio connections are open: use :meth:`aclose`.
        """
        self._require_sync_close()
        if self.monitor is not None:
            self.monitor.stop()
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.dispose()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ from configuration
    # Thin constructors over rwsplit.config; keyword arguments (balancer=,
    # on_topology_change= ...) override the configured values.

    @classmethod
    def from_settings(cls, settings: ClusterSettings, **kwargs: Any) -> Cluster:
        """A cluster from validated :class:`~rwsplit.ClusterSettings`."""
        return cls(**settings.cluster_kwargs(**kwargs))

    @classmethod
    def from_properties(
        cls,
        path: str | os.PathLike[str],
        *,
        key: str | None = None,
        strict: bool = True,
        encryption_key_file: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Cluster:
        """A cluster from a Java ``db.properties`` file, the keys under prefix *key*.

        *strict*: unknown keys under the prefix are errors (``False``: logged and ignored).

        >>> import pathlib, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "db.properties"
        >>> _ = path.write_text("db.cloud.host=db1\\ndb.cloud.replicaHosts=db2,db3\\n")
        >>> with Cluster.from_properties(path, key="db.cloud") as cluster:
        ...     cluster
        <Cluster db1:3306(primary), db2:3306(replica), db3:3306(replica)>
        >>> tmp.cleanup()

        See :func:`rwsplit.config.settings_from_properties`.
        """
        from .config import settings_from_properties

        settings = settings_from_properties(
            path, key=key, strict=strict, encryption_key_file=encryption_key_file
        )
        return cls.from_settings(settings, **kwargs)

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike[str],
        *,
        table: str = "rwsplit",
        encryption_key_file: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Cluster:
        """A cluster from the ``[rwsplit]`` table (or *table*) of a TOML file.

        >>> import pathlib, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "rwsplit.toml"
        >>> _ = path.write_text('[rwsplit]\\nprimary_url = "mysql+pymysql://app@db1/shop"\\n')
        >>> with Cluster.from_toml(path) as cluster:
        ...     cluster
        <Cluster db1:3306(primary)>
        >>> tmp.cleanup()

        See :func:`rwsplit.config.settings_from_toml`.
        """
        from .config import settings_from_toml

        settings = settings_from_toml(path, table=table, encryption_key_file=encryption_key_file)
        return cls.from_settings(settings, **kwargs)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str],
        *,
        key: str | None = None,
        encryption_key_file: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Cluster:
        """A cluster from a ``.toml`` or ``.properties`` file (chosen by suffix).

        >>> import pathlib, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "db.properties"
        >>> _ = path.write_text("db.cloud.host=db1\\n")
        >>> with Cluster.from_config(path, key="db.cloud") as cluster:
        ...     cluster
        <Cluster db1:3306(primary)>
        >>> tmp.cleanup()
        """
        from .config import load_settings

        settings = load_settings(path, key=key, encryption_key_file=encryption_key_file)
        return cls.from_settings(settings, **kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Cluster:
        """A cluster from ``RWSPLIT_PRIMARY_URL``, ``RWSPLIT_REPLICA_URLS`` and the other
        ``RWSPLIT_*`` variables (*environ*: another mapping than ``os.environ``).

        >>> env = {"RWSPLIT_PRIMARY_URL": "mysql+pymysql://app:pw@db1/shop"}
        >>> Cluster.from_env(env)
        <Cluster db1:3306(primary)>
        """
        from .config import settings_from_env

        return cls.from_settings(settings_from_env(environ), **kwargs)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        encryption_key_file: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> Cluster:
        """A cluster from a mapping of options (as in a TOML table).

        >>> Cluster.from_dict({"host": "db1", "username": "app", "replica_hosts": "db2"})
        <Cluster db1:3306(primary), db2:3306(replica)>
        """
        from .config import settings_from_dict

        settings = settings_from_dict(data, encryption_key_file=encryption_key_file)
        return cls.from_settings(settings, **kwargs)

    def __repr__(self) -> str:
        topology = self.topology
        nodes = ", ".join(
            f"{n.name}({n.role.value}{'' if n.healthy else ', down'})" for n in topology.nodes
        )
        return f"<Cluster {nodes}>"

    # ------------------------------------------------------------------ asyncio
    # The async face of the cluster (rwsplit.asyncio): AsyncSession over RoutingSession.

    def async_session(self, **kwargs: Any) -> AsyncRoutingSession:
        """A new :class:`~rwsplit.asyncio.AsyncRoutingSession` (an ``AsyncSession``) on this
        cluster, which needs ``mysql+aiomysql://`` or ``mysql+asyncmy://`` URLs.

        It routes exactly like :meth:`session`; keyword arguments as there.

        :raises ConfigurationError: the cluster's URLs use a blocking driver.
        """
        from ._drivers import require_async_cluster

        require_async_cluster(self, "cluster.async_session()")
        from .asyncio import AsyncRoutingSession

        return AsyncRoutingSession(self, **kwargs)

    def async_sessionmaker(self, **kwargs: Any) -> _async_sessionmaker[AsyncRoutingSession]:
        """A :class:`sqlalchemy.ext.asyncio.async_sessionmaker` of routing ``AsyncSession``\\ s.

        :raises ConfigurationError: the cluster's URLs use a blocking driver.
        """
        from ._drivers import require_async_cluster

        require_async_cluster(self, "cluster.async_sessionmaker()")
        from sqlalchemy.ext.asyncio import async_sessionmaker

        from .asyncio import AsyncRoutingSession

        return async_sessionmaker(class_=AsyncRoutingSession, cluster=self, **kwargs)

    async def aclose(self) -> None:
        """Stop the monitor and await the disposal of every engine. Idempotent.

        Call it (or use ``async with Cluster(...)``) on the event loop that used the cluster,
        before that loop ends: asyncio connections can only be closed there.
        """
        import asyncio

        if self.monitor is not None:
            # Joining the monitor thread may wait for a probe in flight: not on the loop.
            await asyncio.to_thread(self.monitor.stop)
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        if any(e.dialect.is_async for e in engines):
            from .asyncio import dispose_engines

            await dispose_engines(engines)
        else:  # a sync cluster closed from async code: needs no greenlet
            for engine in engines:
                await asyncio.to_thread(engine.dispose)

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _require_sync_close(self) -> None:
        if any(e.dialect.is_async for e in self._engines.values()):
            from ._drivers import require_sync_close

            require_sync_close(self._engines.values())
