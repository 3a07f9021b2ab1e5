"""The :class:`Cluster`: the one object an application creates.

It owns one SQLAlchemy :class:`~sqlalchemy.engine.Engine` per node and mode (read-write for the
primary, read-only for replicas), the current :class:`~rwsplit.topology.Topology`, the balancer
and the routing options. Sessions ask it for an engine per statement; that path takes the
current routing snapshot (:class:`_Routes`) without a lock.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import sessionmaker as _sessionmaker

from . import _pipelined_wait
from ._gtid_track import enable_tracking, tracking_connect
from ._server_errors import is_read_timeout, is_replica_unusable
from .config import ClusterSettings, TLSConfig
from .config import _validate as validate
from .errors import (
    ConfigurationError,
    NoPrimaryError,
    NoReplicaAvailableError,
    NotPrimaryError,
    ReadFailedError,
    RetryableWriteError,
    SplitBrainError,
    TransactionOutcomeUnknownError,
)
from .integrations import _sa_compat
from .metrics import ClusterStats, Stats, check_routing
from .routing._implicit_commit import may_commit
from .routing.balance import Balancer, RoundRobinBalancer
from .routing.classify import MYSQL, POSTGRESQL, Flag, Target, classify
from .routing.consistency import AppliedTokens, ReadYourWrites
from .routing.router import may_carry_state
from .servers.family import RoutingFamily, family_for_url
from .topology.model import Node, Role, Topology, node_name
from .topology.probe import NodeProbe, describe_error

if TYPE_CHECKING:
    from sqlalchemy.engine import ExceptionContext
    from sqlalchemy.ext.asyncio import async_sessionmaker as _async_sessionmaker

    from .asyncio import AsyncRoutingSession
    from .integrations.sqlalchemy import RoutingSession
    from .topology._ledger import Record as LedgerRecord
    from .topology.failover import FailoverOptions
    from .topology.monitor import Monitor

__all__ = ["Cluster"]

log = logging.getLogger("rwsplit.cluster")

TopologyListener = Callable[[Topology, Topology], None]
"""Called as ``listener(old, new)`` after every published topology change."""


def _coerce_url(value: str | URL, what: str) -> URL:
    # Host, port 1-65535, JDBC user info; never echoes the password.
    return validate.url(what, value)


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
# The server's status flags in every OK / EOF packet (MySQL protocol SERVER_STATUS_*).
_SERVER_STATUS_IN_TRANS = 0x0001
_SERVER_STATUS_AUTOCOMMIT = 0x0002
# Client / server error codes meaning "the connection or the server is gone".
_CONNECTION_LOST = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055})
# The server is read-only (1290; MySQL super_read_only also 1836): it is not the primary.
_READ_ONLY = frozenset({1290, 1836})


def _error_code(exc: BaseException) -> int | None:
    args: tuple[object, ...] = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _autocommits(conn: Any) -> bool:
    """True when the next statement on *conn* (a ``Connection``) commits by itself.

    The server's own word first: the status flags of the last reply the driver read
    (PyMySQL, aiomysql, asyncmy keep ``server_status``), autocommit on and no transaction
    open (a text ``SET autocommit=1`` or ``BEGIN`` are seen there). Drivers that do not
    expose them: SQLAlchemy's isolation setting.
    """
    status = None
    with contextlib.suppress(Exception):
        dbapi = conn.connection.dbapi_connection
        raw = getattr(dbapi, "_connection", dbapi)  # SQLAlchemy's asyncio adapters wrap it
        status = getattr(raw, "server_status", None)
    if isinstance(status, int):
        return bool(status & _SERVER_STATUS_AUTOCOMMIT) and not status & _SERVER_STATUS_IN_TRANS
    try:
        return conn is not None and _sa_compat.is_autocommit(conn)
    except Exception:  # no connection left to ask: assume the worst
        return True


@functools.lru_cache(maxsize=4096)
def _may_commit_cached(statement: str) -> bool:
    return may_commit(statement)


def _pg_may_commit_cached(statement: str, flags: Flag) -> bool:
    """PostgreSQL: ``COMMIT`` / ``END`` / ``COMMIT PREPARED`` / ``CALL`` (MySQL's rules, which
    cover them), ``PREPARE TRANSACTION`` (it makes the transaction durable), not ``ABORT``.
    Its DDL is transactional: treating it as committing costs a fence check, nothing more."""
    if flags and flags & Flag.TXN_END and flags & Flag.WRITE:
        return True
    return _may_commit_cached(statement) and statement.lstrip()[:5].upper() != "ABORT"


def _abandon_unbuffered(cursor: Any) -> None:
    """PyMySQL: forget the unbuffered result of a cursor whose connection died mid-stream.

    Its ``close()`` and its finaliser would read the rest of the rows from the closed socket
    and fail there (``AttributeError`` in ``__del__``, an unraisable exception).
    """
    result = getattr(cursor, "_result", None)
    if result is not None and getattr(result, "unbuffered_active", False) is True:
        result.unbuffered_active = False


def _mark_committing(conn: Any) -> None:
    # Fires just before the DBAPI commit: a failure now leaves the outcome unknown.
    conn.info[_COMMITTING] = True


def _clear_committing(conn: Any) -> None:
    conn.info.pop(_COMMITTING, None)


def _track(in_use: weakref.WeakSet[Any], dbapi_connection: Any) -> None:
    # Pool checkout of a PyMySQL primary engine (a socket rwsplit can cut).
    in_use.add(dbapi_connection)


def _untrack(in_use: weakref.WeakSet[Any], dbapi_connection: Any) -> None:
    # None: an invalidated connection (it leaves the WeakSet when it is freed).
    if dbapi_connection is not None:
        with contextlib.suppress(TypeError):
            in_use.discard(dbapi_connection)


_DIRTY = "rwsplit.dirty"


_WROTE = "rwsplit.wrote"
# The fence check before a commit: fails, on the server, when it is read-only (MySQL's
# super_read_only sets read_only too). A DO, not a SELECT: no result set to read (a round trip
# as cheap as "SELECT 1", an eighth of SHOW VARIABLES), and Com_select stays a witness of
# where reads went.
# The error is an invalid regular expression, chosen only when read_only is on.
_FENCE_CHECK = "DO 'a' REGEXP IF(@@global.read_only, '(', 'a')"
# MariaDB 1139; MySQL 8+ (ICU): 3691 mismatched parenthesis, 3692 rule syntax.
_REGEXP_ERRORS = frozenset({1139, 3691, 3692})
# A statement that needs no fence check even though it commits (when nothing was written).
_TXN_CONTROL = Flag.TXN_BEGIN | Flag.TXN_END | Flag.SESSION_STATE


def _forget_writes(conn: Any) -> None:
    # "begin" / "rollback" of primary engines: nothing written in this transaction (yet).
    if not conn.invalidated:  # an invalidated connection has no info left to clear
        conn.info.pop(_WROTE, None)


_COM_RESET_CONNECTION = 0x1F
_RESET = "rwsplit.reset"


def _reset_pymysql(dbapi_connection: Any) -> bool:
    """Reset a PyMySQL connection's session to the server's defaults, then redo what PyMySQL
    itself set up at connect time (character set, autocommit, sql_mode, init_command).

    ``COM_RESET_CONNECTION`` drops user variables, temporary tables, locks, prepared
    statements, ``HANDLER``s and every session variable. False: not a PyMySQL connection.
    Uses PyMySQL's ``_execute_command`` / ``_read_ok_packet`` (no public call sends it).
    """
    try:
        import pymysql
    except ImportError:  # pragma: no cover - PyMySQL is a dependency
        return False
    if not isinstance(dbapi_connection, pymysql.connections.Connection):
        return False
    conn: Any = dbapi_connection
    conn._execute_command(_COM_RESET_CONNECTION, b"")
    conn._read_ok_packet()
    # The reset keeps the current database (a session's USE): go back to the URL's one, and
    # discard the connection when the URL names none (USE cannot be undone).
    database = conn.db.decode() if isinstance(conn.db, bytes) else conn.db
    if database:
        conn.select_db(database)
    else:
        cursor = conn.cursor()
        try:
            cursor.execute("SELECT DATABASE()")
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row and row[0] is not None:
            return False
    dbapi_connection.set_character_set(
        dbapi_connection.charset, getattr(dbapi_connection, "collation", None)
    )
    cursor = dbapi_connection.cursor()
    try:
        if dbapi_connection.sql_mode:
            cursor.execute("SET sql_mode = %s", (dbapi_connection.sql_mode,))
        if dbapi_connection.init_command:
            cursor.execute(dbapi_connection.init_command)
    finally:
        cursor.close()
    dbapi_connection.autocommit(bool(dbapi_connection.autocommit_mode))
    return True


def _clean_dirty(engine: Engine) -> Callable[[Any, Any], None]:
    """The pool ``checkin`` listener of a primary engine: connection hygiene.

    A connection that carried session state never reaches another session with it. PyMySQL
    connections are reset in place (``COM_RESET_CONNECTION``), then every ``connect``
    listener of the engine runs again — SQLAlchemy's own set-up (isolation level ...),
    rwsplit's primary check, yours — as on a new connection. Other drivers' connections,
    and any whose reset fails, are discarded: the pool opens a fresh one on the next
    checkout. ``benchmarks/bench_hygiene.py`` measures both (a reconnect costs much more:
    PyMySQL builds a TLS context for every new connection).
    """

    def checkin(dbapi_connection: Any, record: Any) -> None:
        if record is None or dbapi_connection is None or not record.info.pop(_DIRTY, False):
            return
        try:
            if _reset_pymysql(dbapi_connection):
                # The node was checked when this connection was made, and a topology change
                # drops the pool: rwsplit's own primary check is skipped on a reset.
                record.info[_RESET] = True
                try:
                    engine.pool.dispatch.connect(dbapi_connection, record)
                finally:
                    record.info.pop(_RESET, None)
                return
            log.debug("connection cannot be reset in place; discarding it")
        except Exception as exc:  # a reset that fails: discard instead
            log.info("connection reset failed (%s); discarding the connection", exc)
        record.invalidate()

    return checkin


def _shutdown_socket(dbapi_connection: Any) -> bool:
    """Shut the socket of a PyMySQL or psycopg connection down (a statement waiting on it
    fails as a lost connection); False when it has none this can reach."""
    sock = getattr(dbapi_connection, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
            return True
        return False
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    pgconn = getattr(driver, "pgconn", None)
    if pgconn is None:
        return False
    try:
        # libpq owns the descriptor: shut a duplicate down (the socket, not libpq's fd).
        dup = socket.socket(fileno=os.dup(pgconn.socket))
    except Exception:  # closed already, or not a socket
        return False
    try:
        dup.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False
    finally:
        dup.close()


def _timeout_args(
    drivername: str, connect: float | None, read: float | None, write: float | None
) -> dict[str, Any]:
    """Driver keyword arguments for the connect / read / write timeouts (None: no limit)."""
    driver = drivername.partition("+")[2] or "mysqldb"
    if driver == "pymysql":
        args = {"connect_timeout": connect, "read_timeout": read, "write_timeout": write}
    elif driver == "mysqldb":  # mysqlclient wants whole seconds
        args = {
            k: max(1, math.ceil(v)) if v is not None else None
            for k, v in (
                ("connect_timeout", connect),
                ("read_timeout", read),
                ("write_timeout", write),
            )
        }
    elif driver in ("aiomysql", "asyncmy", "mariadbconnector"):
        args = {"connect_timeout": connect}
    else:
        args = {}
    return {k: v for k, v in args.items() if v is not None}


def _is_postgresql(url: str | URL) -> bool:
    """A PostgreSQL URL (its failover needs no replication account: see pg_failover)."""
    try:
        return _coerce_url(url, "primary").get_backend_name() == "postgresql"
    except Exception:
        return False


def _check_postgresql_options(
    monitor_interval: float | None,
    auto_failover: bool,
    tls: TLSConfig | None,
    node_tls: Mapping[str, TLSConfig] | None,
) -> None:
    """What a PostgreSQL cluster does not support yet: say so before anything starts."""
    if tls is not None or node_tls:
        raise ConfigurationError(
            "tls= / node_tls= are MySQL options; for PostgreSQL put libpq's TLS settings in "
            "each URL's query (?sslmode=verify-full&sslrootcert=/path/ca.pem)"
        )


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
    primary_name: str | None = None


class Cluster:
    """A replicated MySQL/MariaDB or PostgreSQL cluster used as one database.

    :param primary: URL of the primary (``mysql+pymysql://user:pw@host:port/db``, or
        ``postgresql+psycopg://...`` for PostgreSQL streaming replication: the server family
        comes from the URL, see :attr:`family` and docs/postgresql.md).
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
    :param connect_timeout: seconds to wait for a new connection to any node (``None``: the
        driver's default).
    :param primary_read_timeout: seconds the primary may take to answer one statement before
        the connection is given up (``None``: no limit). Bounds how long a hung primary holds
        the application; raise it for long reports or migrations on the primary.
    :param replica_read_timeout: the same for replicas. A read that times out on a replica
        that still answers a ping is a slow statement, not a dead replica: it raises
        :class:`~rwsplit.ReadFailedError` (naming this option) at once, is not re-run, and the
        replica stays in routing. A replica that does not answer either is taken out of
        routing and the read re-run on another node.
    :param write_timeout: seconds to send one statement to any node.
    :param routing: ``"normal"``; ``"shadow"`` runs every statement on the primary while the
        classifier, balancer and consistency policy still decide, and :meth:`stats` reports
        where each would have gone (safe adoption); ``"primary"`` sends everything to the
        primary (the kill switch). Settable at run time: ``cluster.routing = "primary"``.

    A write whose primary connection fails raises :class:`~rwsplit.RetryableWriteError`
    (nothing was committed: retry the unit of work) or, when the failure hit a statement that
    commits or may (``COMMIT``, DDL, ``CALL``, an autocommit write ...),
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
        connect_timeout: float | None = 3.0,
        primary_read_timeout: float | None = 10.0,
        replica_read_timeout: float | None = 5.0,
        write_timeout: float | None = 10.0,
        routing: str = "normal",
    ) -> None:
        # Every option is checked here, before any engine or thread exists (rwsplit._validate):
        # a nan or inf would otherwise fail later, in a background thread or never.
        if isinstance(replicas, (str, URL)):
            raise ConfigurationError("replicas must be a list of URLs, not a single URL")
        replicas = validate.sequence("replicas", replicas, "a list of URLs")
        fallback_to_primary = validate.boolean("fallback_to_primary", fallback_to_primary)
        max_replica_lag = validate.optional_duration("max_replica_lag", max_replica_lag)
        down_retry_interval = validate.duration("down_retry_interval", down_retry_interval)
        if balancer is not None:
            balancer = validate.with_method(
                "balancer", balancer, "choose", "an object with choose(nodes) -> Node"
            )
        engine_options = validate.mapping("engine_options", engine_options or {})
        if "connect_args" in engine_options:
            validate.mapping("engine_options['connect_args']", engine_options["connect_args"])
        on_topology_change = validate.callables("on_topology_change", on_topology_change)
        self.read_your_writes = validate.read_your_writes("read_your_writes", read_your_writes)
        causal_timeout = validate.duration("causal_timeout", causal_timeout)
        sticky_window = validate.duration("sticky_window", sticky_window)
        if tls is not None:
            tls = validate.instance("tls", tls, TLSConfig, "a rwsplit.TLSConfig")
        for key, node_config in validate.mapping("node_tls", node_tls or {}).items():
            validate.instance(f"node_tls[{key!r}]", node_config, TLSConfig, "a rwsplit.TLSConfig")
        monitor_interval = validate.optional_duration(
            "monitor_interval", monitor_interval, positive=True
        )
        monitor_timeout = validate.duration("monitor_timeout", monitor_timeout, positive=True)
        failure_threshold = validate.integer("failure_threshold", failure_threshold, low=1)
        auto_failover = validate.boolean("auto_failover", auto_failover)
        failover_options = validate.failover_options(
            "failover_options", failover_options, account=not _is_postgresql(primary)
        )
        if auto_failover and failover_options is None and not _is_postgresql(primary):
            raise ConfigurationError(
                "auto_failover=True needs failover_options=FailoverOptions(replication_user=..., "
                "replication_password=...) so that replicas can be repointed"
            )
        validate.admin_account(admin_user, admin_password)
        self.causal_timeout = causal_timeout
        self.sticky_window = sticky_window
        # Driver timeouts, per role (None: the driver's default, no limit).
        connect_timeout = validate.optional_duration(
            "connect_timeout", connect_timeout, positive=True
        )
        primary_read_timeout = validate.optional_duration(
            "primary_read_timeout", primary_read_timeout, positive=True
        )
        replica_read_timeout = validate.optional_duration(
            "replica_read_timeout", replica_read_timeout, positive=True
        )
        write_timeout = validate.optional_duration("write_timeout", write_timeout, positive=True)
        self._timeouts = (
            connect_timeout,
            primary_read_timeout,
            replica_read_timeout,
            write_timeout,
        )
        self._routing = check_routing(routing)
        self._followed = False  # the failover log was read (see _followed_record)
        self._follow_lock = threading.Lock()
        self._follow_result: LedgerRecord | None = None
        self._stats = Stats()
        self._applied = AppliedTokens()  # what each replica is known to have applied
        self.primary_epoch = 0
        """Incremented every time the primary changes (or is lost): a transaction that began
        under another epoch cannot report a successful commit."""
        primary_url = _coerce_url(primary, "primary")
        self.family: RoutingFamily = family_for_url(primary_url)
        """The server family's routing operations, chosen from the primary's URL."""
        self.sql_dialect = POSTGRESQL if self.family.name == "postgresql" else MYSQL
        """The classifier's dialect for this cluster's SQL (``classify(sql, dialect)``)."""
        nodes = [Node(node_name(primary_url), primary_url, Role.PRIMARY)]
        for i, r in enumerate(replicas):
            url = _coerce_url(r, f"replicas[{i}]")
            if family_for_url(url).name != self.family.name:
                raise ConfigurationError(
                    f"replicas[{i}] is a {url.get_backend_name()} URL but the primary's is "
                    f"{primary_url.get_backend_name()}: every node of a cluster runs the same "
                    "server family"
                )
            nodes.append(Node(node_name(url), url, Role.REPLICA))
        if self.family.name == "postgresql":
            _check_postgresql_options(monitor_interval, auto_failover, tls, node_tls)
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
        # DBAPI connections checked out of each primary engine: cut when the primary changes.
        self._checked_out: weakref.WeakKeyDictionary[Engine, weakref.WeakSet[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._last_primary: str | None = None
        _live_clusters.add(self)
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
        self._last_primary = self._routes.primary_name
        if monitor_interval is not None or auto_failover:
            from .topology.monitor import Monitor

            monitor_class = Monitor
            if self.family.name == "postgresql":
                from .topology.pg_monitor import PgMonitor

                monitor_class = PgMonitor
            self.monitor = monitor_class(
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
        from ._async_drivers import check_same_driver_kind, is_async_url

        check_same_driver_kind(url, self._engines.values())
        options = dict(self._engine_options)
        connect, primary_read, replica_read, write = self._timeouts
        timeouts = self.family.timeout_args(
            url.drivername, connect, primary_read if writable else replica_read, write
        )
        tls = self._node_tls.get(node_name(url), self._tls)
        # The user's own connect_args win over the timeouts rwsplit sets.
        connect_args = {**timeouts, **options.get("connect_args", {})}
        if tls is not None:
            connect_args.update(tls.connect_args())
        if connect_args:
            options["connect_args"] = connect_args
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
            from ._drivers import missing_driver

            raise ConfigurationError(missing_driver(url, exc)) from None
        if not writable:
            _sa_compat.autocommit_level(engine)
            if self.family.name == "mysql":
                event.listen(engine, "connect", _set_read_only)
            else:
                family = self.family
                event.listen(engine, "connect", lambda dbapi, rec: family.set_read_only(dbapi))
            if self.read_your_writes is ReadYourWrites.GTID and _pipelined_wait.supported(url):
                _pipelined_wait.watch_replica_engine(engine)  # the wait travels with the read
            replica = node_name(url)
            event.listen(engine, "handle_error", lambda ctx: self._on_stream_error(replica, ctx))
            if not _SKIP_AUTOCOMMIT_ROLLBACK:
                _sa_compat.skip_rollback(engine)
        else:
            name = node_name(url)
            event.listen(
                engine,
                "connect",
                lambda dbapi, rec: (
                    None
                    if rec is not None and rec.info.get(_RESET)
                    else self._check_is_primary(name, dbapi)
                ),
            )
            if (
                url.get_driver_name() == "pymysql"
                and self.read_your_writes is ReadYourWrites.GTID
                and not is_async_url(url)
            ):
                # The commit's GTID from its own OK packet (no SELECT @@last_gtid). The
                # connect listener runs again after the check-in reset, which clears it.
                event.listen(engine, "do_connect", tracking_connect)
                event.listen(engine, "connect", lambda dbapi, rec: enable_tracking(dbapi))
            event.listen(
                engine,
                "before_cursor_execute",
                lambda conn, cursor, statement, *rest: self._before_primary_statement(
                    name, conn, statement
                ),
            )
            event.listen(engine, "checkin", _clean_dirty(engine))
            # Before the commit of a transaction that wrote: the node must still be writable
            # on the server (before _mark_committing: a refusal leaves nothing committed).
            event.listen(
                engine,
                "commit",
                lambda conn: (
                    self._check_still_writable(name, conn) if conn.info.pop(_WROTE, False) else None
                ),
            )
            event.listen(engine, "commit", _mark_committing)
            event.listen(engine, "begin", _clear_committing)
            event.listen(engine, "begin", _forget_writes)
            event.listen(engine, "rollback", _forget_writes)
            event.listen(engine, "handle_error", lambda ctx: self._on_primary_error(name, ctx))
            if url.get_driver_name() in ("pymysql", "psycopg") and not is_async_url(url):
                # Connections in use, to cut when this node stops being the primary
                # (_abort_in_flight): PyMySQL and psycopg, the drivers whose socket rwsplit
                # can reach.
                in_use: weakref.WeakSet[Any] = weakref.WeakSet()
                self._checked_out[engine] = in_use
                event.listen(engine, "checkout", lambda dbapi, rec, proxy: _track(in_use, dbapi))
                event.listen(engine, "checkin", lambda dbapi, rec: _untrack(in_use, dbapi))
        return engine

    def _on_primary_error(self, name: str, ctx: ExceptionContext) -> None:
        """``handle_error`` of read-write engines: say whether the write can be retried."""
        if ctx.is_pre_ping:
            return
        orig = ctx.original_exception
        family = self.family
        if family.is_connection_refused(orig):
            # Checked first: libpq's "too many clients already" also looks like a lost
            # connection, and the node is not gone.
            self._refused_connection(name, orig)
        read_only = family.is_read_only_rejection(orig)
        if not (ctx.is_disconnect or family.is_connection_lost(orig) or read_only):
            return
        committing, is_read = self._failed_statement(ctx)
        reason = describe_error(orig)
        if _is_tls_failure(orig):
            # Not a dead primary: a certificate / host-name mismatch fails the same way on retry.
            raise ConfigurationError(
                f"the TLS handshake with {name} failed ({reason}); check the TLS settings "
                "(tls_ca must sign the server's certificate, and with tls_verify_identity the "
                "certificate must name the host in the URL)"
            )
        log.warning("write on primary %s failed (%s); refreshing the topology", name, reason)
        if read_only and self.monitor is None:
            # The node refuses writes as read-only (fenced, most likely: 1290 also covers
            # --secure-file-priv): without a monitor, probe the cluster now, which takes a
            # read-only node out (and its pool) and finds the primary. This connection goes
            # (as after a disconnect): the probe may cut it, and nothing of it can commit.
            ctx.is_disconnect = True
            with contextlib.suppress(Exception):
                self.refresh()
        self.refresh_soon()
        if committing:
            raise TransactionOutcomeUnknownError(
                f"the primary {name} failed while committing ({reason}): the transaction may "
                "or may not have been committed; check before retrying it"
            )
        then = (
            "the monitor is re-probing the cluster"
            if self.monitor is not None
            else "without a monitor rwsplit learns the new primary from Cluster.refresh() or "
            "the next failed write"
        )
        if is_read:
            # The session turns this into RetryableWriteError if its transaction had written.
            raise ReadFailedError(
                f"a read on the primary {name} failed ({reason}): retry it ({then})"
            )
        raise RetryableWriteError(
            f"the primary {name} failed ({reason}) before anything was committed: the "
            "transaction was rolled back; retry the whole unit of work (rwsplit sends it to "
            f"the primary it finds next; {then})"
        )

    def _refused_connection(self, name: str, orig: BaseException) -> NoReturn:
        """The primary refused a new connection (too many connections, a connection limit).

        It refuses at connect, before any statement: nothing was sent, nothing committed. The
        node is alive and stays the primary (the monitor counts such a refusal as an answer,
        see :data:`rwsplit.topology.probe.SERVER_ANSWERED`): no re-probe, no failover.
        SQLAlchemy chains the driver's error as the ``__cause__``: the session turns the error
        of a plain read into :class:`~rwsplit.ReadFailedError` from it.
        """
        reason = describe_error(orig)
        log.info("primary %s refused a new connection (%s)", name, reason)  # a storm: many
        raise RetryableWriteError(
            f"the primary {name} refused a new connection ({reason}): it is alive but has no "
            "connection slot free (max_connections, or the account's connection limit); "
            "nothing was sent, nothing committed: retry the unit of work after a short "
            "back-off, and if it persists raise the server's connection limit or lower the "
            "pool sizes (pool_size + max_overflow per process) of the applications using it"
        )

    def _before_primary_statement(self, name: str, conn: Any, statement: str) -> None:
        """``before_cursor_execute`` of read-write engines (the hot path: a cached lookup).

        A statement that may leave session state (``SET``, ``USE``, user variables, locks,
        temporary tables, procedures ...) marks its connection for the check-in reset. A
        statement that commits — by itself (DDL, ``CALL``, ``SET autocommit=1`` ...) or because
        the server runs the connection in autocommit — is preceded by the fence check when
        it or its transaction writes; other writes mark the transaction for the check at
        ``COMMIT``.
        """
        c = classify(statement, self.sql_dialect)
        info = conn.info
        if may_carry_state(c):
            info[_DIRTY] = True
        target = c.target
        if target is Target.REPLICA or target is Target.LAST:
            return  # a plain read: it neither writes nor commits
        primary = target is Target.PRIMARY  # else Target.ALL: SET / USE (SET autocommit=1)
        commits = (
            _may_commit_cached(statement)
            if self.sql_dialect is MYSQL
            else _pg_may_commit_cached(statement, c.flags)
        )
        if commits or (primary and _autocommits(conn)):
            wrote = info.pop(_WROTE, False)
            if wrote or not c.flags & _TXN_CONTROL:
                self._check_still_writable(name, conn)
        elif c.flags & Flag.TXN_END:
            info.pop(_WROTE, None)  # ROLLBACK
        elif primary:
            info[_WROTE] = True

    def _check_still_writable(self, name: str, conn: Any) -> None:
        """Before anything commits on *name*: is it still writable, on the server?

        One round trip per write transaction (:data:`_FENCE_CHECK`). A pooled
        connection was checked when it was opened (:meth:`_check_is_primary`), but the node
        may have been fenced since — by another process's failover or an operator — and an
        account with ``SUPER`` (or ``READ_ONLY ADMIN``) writes through ``read_only=ON``:
        without a monitor nothing else would notice. Refused: the transaction is rolled back,
        the connection discarded, the cluster re-probed (the pool of the old primary goes
        with it), and the application told to retry.
        """
        self._refuse_commit_if_fenced(name, conn.connection.dbapi_connection, conn.invalidate)

    def _refuse_commit_if_fenced(
        self, name: str, dbapi: Any, discard: Callable[[], object]
    ) -> None:
        """:meth:`_check_still_writable` on a DBAPI connection (the Django backend's too);
        *discard* drops the connection when it must not be used again."""
        try:
            read_only = self.family.fence_check(dbapi)
        except Exception as exc:
            if not self.family.is_connection_lost(exc):
                raise
            with contextlib.suppress(Exception):
                discard()
            self.refresh_soon()
            raise RetryableWriteError(
                f"the primary {name} failed ({describe_error(exc)}) before the commit: "
                "nothing was committed; retry the whole unit of work"
            ) from None
        if not read_only:
            return
        with contextlib.suppress(Exception):
            dbapi.rollback()
        with contextlib.suppress(Exception):
            discard()
        log.warning("%s is read-only on the server (fenced); refusing to commit there", name)
        self.mark_not_primary(name)
        with contextlib.suppress(Exception):  # the caller gets the error either way
            self.refresh()
        raise RetryableWriteError(
            f"refusing to commit on {name}: the server is read-only (it was fenced — another "
            "process failed over, or an operator made it read-only); nothing was committed, the "
            "transaction was rolled back; retry the whole unit of work (rwsplit re-probed the "
            "cluster and writes to the primary it found)"
        )

    @staticmethod
    def _failed_statement(ctx: ExceptionContext) -> tuple[bool, bool]:
        """(it may have committed, it is a plain read)."""
        conn = ctx.connection
        info: dict[Any, Any] = {}
        with contextlib.suppress(Exception):
            if conn is not None:
                info = conn.info
        statement = ctx.statement
        if statement is None:
            # No statement: the DBAPI commit (flagged by the "commit" event), or a connect.
            return bool(info.pop(_COMMITTING, False)), False
        is_read = classify(statement).target is Target.REPLICA
        # A statement that commits by itself (DDL, CALL, EXECUTE, SET autocommit=1 ...; see
        # rwsplit.routing._implicit_commit), or any write on a connection the server runs in
        # autocommit: its reply was lost, so was the news of its commit.
        committing = may_commit(statement) or (not is_read and _autocommits(conn))
        return committing, is_read

    def _check_is_primary(self, name: str, dbapi_connection: Any) -> None:
        # Runs once per new DBAPI connection to the primary, before its first statement: the
        # server's own state decides (read_only, replicating, replaced in the failover log),
        # not the configuration or this process's memory — an account with SUPER writes
        # through read_only=ON. See rwsplit.topology.failover.verify_writable_primary.
        from .topology._ledger import DEFAULT_SCHEMA
        from .topology.failover import verify_writable_primary

        if self.family.name != "mysql":
            self._check_family_primary(name, dbapi_connection)
            return
        options = self.failover_options
        schema = options.ledger_schema if options is not None else DEFAULT_SCHEMA
        try:
            verify_writable_primary(dbapi_connection, name, ledger_schema=schema)
        except NotPrimaryError:
            with contextlib.suppress(Exception):
                dbapi_connection.close()
            log.warning("%s is not the primary on the server; probing the cluster", name)
            self.mark_not_primary(name)
            with contextlib.suppress(Exception):  # the caller gets the error either way
                self.refresh()
            raise
        record = self._followed_record()
        if record is not None and record.primary != name:
            with contextlib.suppress(Exception):
                dbapi_connection.close()
            raise NotPrimaryError(
                f"{name} was replaced as the primary by {record.primary} (failover log epoch "
                f"{record.epoch}); rwsplit now writes there: retry the unit of work"
            )

    def _check_family_primary(self, name: str, dbapi_connection: Any) -> None:
        # PostgreSQL: not in recovery and not read-only by default, on the server.
        reason = self.family.not_primary_reason(dbapi_connection)
        if reason is None:
            return
        with contextlib.suppress(Exception):
            dbapi_connection.close()
        log.warning("%s is not the primary on the server (%s); probing the cluster", name, reason)
        self.mark_not_primary(name)
        with contextlib.suppress(Exception):  # the caller gets the error either way
            self.refresh()
        raise NotPrimaryError(
            f"{name} is not the primary: {reason}; rwsplit re-probed the cluster: retry the "
            "unit of work"
        )

    def _followed_record(self) -> LedgerRecord | None:
        # Once per process, before its first write: a failover may have happened while this
        # node was down (it came back writable, its own failover log is old). The newest
        # failover log among the nodes names the primary. Concurrent first connections wait
        # for the one reading and all get its verdict: setting the flag before the read
        # finished let them write unchecked to a replaced primary.
        from .topology.failover import follow_current_primary

        with self._follow_lock:
            if not self._followed:
                try:
                    self._follow_result = follow_current_primary(self, timeout=2.0)
                except Exception as exc:  # no log anywhere is the normal case; never block
                    log.info("reading the failover log failed: %s", describe_error(exc))
                self._followed = True
            return self._follow_result

    def mark_not_primary(self, name: str) -> None:
        """Node *name* said it is not the primary: stop sending writes there."""
        with self._lock:
            topology = self._routes.topology
            try:
                node = topology.node(name)
            except KeyError:
                return
            if node.role is not Role.PRIMARY:
                return
            new = topology.with_nodes([node.evolve(role=Role.UNKNOWN, read_only=True)])
        self.publish(new)

    def is_write_engine(self, engine: Engine) -> bool:
        """True when *engine* is one of this cluster's read-write (primary) engines."""
        return any(e is engine for (_, writable), e in self._engines.items() if writable)

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
        if self.family.name == "postgresql":
            from .topology.pg_probe import refresh_cluster

            return refresh_cluster(self, timeout=2.0)
        from .topology.monitor import Monitor

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
            old_routes = self._routes
            old = old_routes.topology
            self._routes = routes = self._build_routes(topology)
            listeners = list(self._listeners)
            changed = old_routes.primary is not routes.primary
            if changed:
                self.primary_epoch += 1
        if old != topology:
            self._stats.topology_changed(old, topology)
            self._forget_applied(old, topology, primary_changed=changed)
        if not changed:
            self._applied.record_probed(topology)
        if changed and old_routes.primary is not None:
            # Every pooled connection to the old primary goes: sessions holding one see the
            # epoch change and refuse to report a commit from it.
            old_routes.primary.dispose()
        if routes.primary_name is not None:
            replaced, self._last_primary = self._last_primary, routes.primary_name
            if replaced is not None and replaced != routes.primary_name:
                self._abort_in_flight(replaced)
        if old != topology:
            for listener in listeners:
                try:
                    listener(old, topology)
                except Exception:  # a subscriber must not break routing
                    log.exception("topology listener %r failed", listener)

    def _abort_in_flight(self, name: str) -> None:
        """Another node became the primary: cut the connections still in use on *name*.

        A statement waiting on a hung old primary would otherwise hold its application
        thread for the whole ``primary_read_timeout``. Shutting the socket down makes it fail
        at once, like a lost connection: before ``COMMIT`` the unit of work is retryable,
        during it the outcome is unknown (:class:`~rwsplit.TransactionOutcomeUnknownError`),
        never a success. PyMySQL and psycopg connections (libpq has no read timeout: without
        the cut, a statement on a primary cut off from this process waits for ever); others
        keep their read timeout.
        """
        engine = self._engines.get((name, True))
        in_use = self._checked_out.get(engine) if engine is not None else None
        if not in_use:
            return
        cut = 0
        for dbapi_connection in list(in_use):
            if _shutdown_socket(dbapi_connection):
                cut += 1
        if cut:
            log.warning(
                "%s is no longer the primary: cut %d connections still in use on it", name, cut
            )

    def _forget_applied(self, old: Topology, new: Topology, *, primary_changed: bool) -> None:
        """A replica that left routing (down, another role) may come back behind: forget
        what it was known to have applied; a new primary starts everything afresh."""
        if primary_changed:
            self._applied.forget()
            return
        before = {n.name: (n.role, n.healthy) for n in old.nodes}
        for n in new.nodes:
            if before.get(n.name) != (n.role, n.healthy) or not n.healthy:
                self._applied.forget(n.name)

    def read_timed_out(self, name: str, exc: BaseException, elapsed: float) -> bool:
        """A read on replica *name* failed with driver error *exc* after *elapsed* seconds:
        True when it only outlived ``replica_read_timeout`` on a replica that still answers.

        A slow statement is not a dead replica: it would be as slow elsewhere, so it is
        neither re-run (three runs of a slow report triple the load, and three timeouts the
        wait) nor a reason to take the replica out of routing (every other session's reads
        would fall on the primary). A replica that does not answer a ping either (hung,
        gone) is down, and the read may run elsewhere.
        """
        limit = self._timeouts[2]
        if not is_read_timeout(exc, elapsed, limit):
            return False
        try:
            node = self._routes.topology.node(name)
        except KeyError:
            return False
        ping = min(2.0, *(t for t in (self._timeouts[0], limit) if t is not None))
        try:
            with NodeProbe(node.url, ping, self.probe_connect_args(node)) as probe:
                probe.query("DO 1")  # no Com_select: "where reads went" stays countable
        except Exception as ping_exc:
            log.warning(
                "a read on replica %s outlived replica_read_timeout and the replica does not "
                "answer a ping either (%s)",
                name,
                describe_error(ping_exc),
            )
            return False
        log.warning(
            "a read on replica %s outlived replica_read_timeout=%ss; the replica answers: "
            "not re-run, not taken out of routing",
            name,
            limit,
        )
        return True

    def _on_stream_error(self, name: str, ctx: ExceptionContext) -> None:
        """``handle_error`` of read-only engines: a replica failed while rows were fetched.

        Only fetches (no statement: ``stream_results`` / ``yield_per`` results read after
        the execute); a failed execute is re-run elsewhere by the session. Rows of the result
        were delivered already, so it is not re-run: the application retries the whole read.
        """
        if ctx.is_pre_ping or ctx.statement is not None or ctx.execution_context is None:
            return
        orig = ctx.original_exception
        if not (ctx.is_disconnect or is_replica_unusable(orig)):
            return
        reason = describe_error(orig)
        _abandon_unbuffered(getattr(ctx.execution_context, "cursor", None))
        if not is_read_timeout(orig):
            self.mark_down(name, f"failed while a result streamed: {reason}")
        raise ReadFailedError(
            f"replica {name} failed while a result streamed from it ({reason}): the rows "
            "delivered so far are the start of the result, none twice; retry the whole read "
            "(rwsplit does not re-run a read it has delivered rows of)"
        )

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
        return _Routes(
            topology,
            primary,
            readable,
            engine_of,
            recheck_at,
            primary_node.name if primary_node is not None else None,
        )

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
        from .integrations.sqlalchemy import RoutingSession

        return RoutingSession(self, **kwargs)

    def sessionmaker(self, **kwargs: Any) -> _sessionmaker[RoutingSession]:
        """A :class:`sqlalchemy.orm.sessionmaker` that makes routing sessions on this cluster."""
        from .integrations.sqlalchemy import RoutingSession

        return _sessionmaker(class_=RoutingSession, cluster=self, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    @property
    def routing(self) -> str:
        """``"normal"``, ``"shadow"`` or ``"primary"`` (see the constructor); settable."""
        return self._routing

    @routing.setter
    def routing(self, value: str) -> None:
        self._routing = check_routing(value)
        log.warning("routing mode set to %r", value)

    def stats(self) -> ClusterStats:
        """A snapshot of what this cluster's sessions did (:mod:`rwsplit.metrics`).

        >>> with Cluster("mysql+pymysql://u:p@db1/app") as cluster:
        ...     cluster.stats().to_dict()["routing"]
        'normal'
        """
        return self._stats.snapshot(self._routing, self._routes.topology)

    @property
    def primary_name(self) -> str | None:
        """The current primary's node name (``None``: none known)."""
        return self._routes.primary_name

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

    def _after_fork(self) -> None:
        """In a forked child: never use a pooled connection of the parent (see the hook)."""
        self._lock = threading.RLock()  # another thread of the parent may have held it
        self._stats._lock = threading.Lock()
        self._applied = AppliedTokens()  # its lock too; and the parent's waits prove nothing new
        for engine in list(self._engines.values()):
            # close=False: the parent still uses those sockets; the child just forgets them.
            engine.dispose(close=False)

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
        cluster, which needs ``mysql+aiomysql://`` or ``mysql+asyncmy://`` URLs
        (PostgreSQL: ``postgresql+psycopg_async://`` or ``postgresql+asyncpg://``).

        It routes exactly like :meth:`session`; keyword arguments as there.

        :raises ConfigurationError: the cluster's URLs use a blocking driver.
        """
        from ._async_drivers import require_async_cluster

        require_async_cluster(self, "cluster.async_session()")
        from .asyncio import AsyncRoutingSession

        return AsyncRoutingSession(self, **kwargs)

    def async_sessionmaker(self, **kwargs: Any) -> _async_sessionmaker[AsyncRoutingSession]:
        """A :class:`sqlalchemy.ext.asyncio.async_sessionmaker` of routing ``AsyncSession``\\ s.

        :raises ConfigurationError: the cluster's URLs use a blocking driver.
        """
        from ._async_drivers import require_async_cluster

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
            from ._async_drivers import require_sync_close

            require_sync_close(self._engines.values())


# Fork safety: a Cluster made before fork() (gunicorn --preload, multiprocessing, Celery
# prefork) must not share pooled connections with its parent. Monitors restart themselves
# (rwsplit.monitor registers its own hook).
_live_clusters: weakref.WeakSet[Cluster] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cluster in list(_live_clusters):
        with contextlib.suppress(Exception):  # a broken cluster must not break the child
            cluster._after_fork()


# Modules that rwsplit imports lazily (to break import cycles), some of them from the
# monitor's threads. A module another thread is still importing when fork() comes stays
# locked forever in the child (its import lock's owner did not survive the fork), and the
# child's first write would hang on it; finishing those imports first, in the forking
# thread, waits for any import in flight.
_LAZY_MODULES = (
    "rwsplit.topology.failover",
    "rwsplit.topology._ledger",
    "rwsplit.topology._coordination",
    "rwsplit.topology.monitor",
    "rwsplit.topology.pg_probe",
    "rwsplit.topology.pg_monitor",
    "rwsplit.topology.pg_failover",
    "rwsplit.topology._pg_coordination",
    "rwsplit.config._validate",
)


def _before_fork() -> None:
    if not _live_clusters:
        return
    for name in _LAZY_MODULES:
        with contextlib.suppress(Exception):  # a failing import must not break the fork
            importlib.import_module(name)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
