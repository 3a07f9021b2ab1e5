"""Talking to the servers: what one node says it is, and discovering a cluster from seeds.

:class:`NodeProbe` is a small admin connection (PyMySQL, short timeouts) that reads a node's
replication state; :func:`discover` follows replication from seed URLs to the whole cluster.
The monitor, failover and the CLI use them; the routing hot path never does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pymysql
from sqlalchemy.engine import URL

from ..servers import MariaDB, MySQL, NodeState, ReplicationDialect, dialect_for_version
from .model import Node, Replication, Role, Topology, node_name

__all__ = [
    "SERVER_ANSWERED",
    "NodeProbe",
    "describe_error",
    "discover",
    "error_code",
    "node_from_state",
    "role_of",
    "server_answered",
]

log = logging.getLogger("rwsplit.topology")

SERVER_ANSWERED = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections (a connection storm)
        1044,  # ER_DBACCESS_DENIED_ERROR
        1045,  # ER_ACCESS_DENIED_ERROR
        1129,  # ER_HOST_IS_BLOCKED: too many connection errors from this host
        1130,  # ER_HOST_NOT_PRIVILEGED
        1142,  # ER_TABLEACCESS_DENIED_ERROR
        1203,  # ER_TOO_MANY_USER_CONNECTIONS: max_user_connections
        1226,  # ER_USER_LIMIT_REACHED: max_connections_per_hour and friends
        1227,  # ER_SPECIFIC_ACCESS_DENIED_ERROR
        1236,  # ER_MASTER_FATAL_ERROR_READING_BINLOG (a replica's IO thread)
        1927,  # ER_CONNECTION_KILLED (MariaDB): KILL CONNECTION, by an operator or pt-kill
    }
)
"""Server error codes that prove a live server sent them: it refused or ended *this*
connection, it is not dead. (Client-side codes such as 2003, 2006 and 2013 prove nothing: a
dead, hung or unreachable server gives them too; 1053, "shutdown in progress", is a server
going away.)"""


def error_code(exc: BaseException | None) -> int | None:
    """The server / driver error number of *exc* (PyMySQL ``args[0]``), or ``None``."""
    args: tuple[object, ...] = getattr(exc, "args", ()) if exc is not None else ()
    return args[0] if args and isinstance(args[0], int) else None


def server_answered(exc: BaseException | None) -> bool:
    """True when *exc* is an error only a live server sends (:data:`SERVER_ANSWERED`)."""
    return error_code(exc) in SERVER_ANSWERED


def role_of(state: NodeState) -> Role:
    """The role a probed server plays.

    * replication configured (``SHOW SLAVE STATUS`` has a source) → replica;
    * writable (``read_only=OFF``, ``super_read_only=OFF``) and not replicating → primary;
    * read-only and not replicating (a fenced former primary, a primary being switched
      over) → unknown: it takes neither writes nor reads.
    """
    if state.replica is not None:
        return Role.REPLICA
    if state.writable:
        return Role.PRIMARY
    return Role.UNKNOWN


class NodeProbe:
    """A small admin connection to one node that reads its replication state.

    The connection is kept between probes (one round trip per query) and re-opened after a
    failure; every call has *timeout* seconds to connect, read and write.
    """

    def __init__(
        self, url: URL, timeout: float = 1.0, connect_args: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url
        self.connect_args: dict[str, Any] = dict(connect_args or {})
        """Extra PyMySQL ``connect()`` arguments (the cluster's TLS settings for this node)."""
        self.node_url: URL = url
        """The URL of the node as the cluster knows it (``url`` may use admin credentials)."""
        self.name = node_name(url)
        self.timeout = timeout
        self._conn: pymysql.Connection[Any] | None = None
        self.dialect: ReplicationDialect | None = None
        self.last_error: BaseException | None = None
        """The error of the last failed call (``None`` after a success)."""
        self._no_applier_lag: bool | None = None  # None: not checked yet

    def _connect(self) -> pymysql.Connection[Any]:
        if self._conn is None:
            self._conn = pymysql.connect(
                host=self.url.host or "localhost",
                port=self.url.port or 3306,
                user=self.url.username or "",
                password=self.url.password or "",
                autocommit=True,
                connect_timeout=max(self.timeout, 0.001),
                read_timeout=self.timeout,
                write_timeout=self.timeout,
                cursorclass=pymysql.cursors.DictCursor,
                **self.connect_args,
            )
        return self._conn

    def query(
        self, sql: str, params: Sequence[object] = (), *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Run *sql* on the node (reconnecting if needed); the connection is dropped on error.

        :param timeout: read timeout for this statement only (default: the probe's), for a
            statement known to take longer than a probe (``STOP SLAVE`` on a semi-sync replica).
        """
        try:
            conn = self._connect()
            if timeout is not None:
                conn._read_timeout = timeout  # type: ignore[attr-defined]  # PyMySQL reads it per read
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, tuple(params) or None)
                    rows = list(cur.fetchall())
            finally:
                if timeout is not None:
                    conn._read_timeout = self.timeout  # type: ignore[attr-defined]
        except BaseException as exc:
            self.last_error = exc
            self.close()
            raise
        self.last_error = None
        return rows

    def probe(self) -> NodeState:
        """Read the node's role, read_only, GTID positions and replication status."""
        if self.dialect is None:
            version = str(self.query("SELECT @@version AS v")[0]["v"])
            self.dialect = dialect_for_version(version)
        d = self.dialect
        variables = self.query(self._variables_sql(d))[0]
        status = self.query(d.replica_status_sql)
        state = d.parse_state(variables, status)
        if isinstance(d, MySQL) and d.gtid != state.gtids:
            # gtid_mode is per node (and changes online): the statements follow it.
            self.dialect = MySQL(state.version, gtid=state.gtids)
        return state

    def _variables_sql(self, d: ReplicationDialect) -> str:
        """MySQL: with the sub-second applier lag, unless the account may not read it."""
        if not isinstance(d, MySQL) or self._no_applier_lag:
            return d.variables_sql
        if self._no_applier_lag is False:
            return d.variables_sql_with_lag
        try:
            self.query(f"SELECT {_APPLIER_PROBE}")
        except Exception as exc:
            if getattr(exc, "args", (None,))[0] not in _NO_PRIVILEGE:
                raise
            self._no_applier_lag = True
            log.info(
                "%s: lag in whole seconds (Seconds_Behind_Source): the monitor account may "
                "not read performance_schema (%s); GRANT SELECT ON performance_schema.* for "
                "sub-second lag",
                self.name,
                describe_error(exc),
            )
            return d.variables_sql
        self._no_applier_lag = False  # checked once: from now on in the same round trip
        return d.variables_sql_with_lag

    def forget(self) -> None:
        """Drop the connection without telling the server (after ``fork()``: the parent still
        uses it, and a ``COM_QUIT`` from the child would end the parent's session)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn._force_close()  # type: ignore[attr-defined]  # closes this process's descriptor only

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> NodeProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The server answered and refused a statement for want of a privilege (SHOW SLAVE STATUS
# without SLAVE MONITOR / REPLICATION CLIENT ...): not a node that is down.
_PRIVILEGE_ERRORS = frozenset({1227})
_PRIVILEGE_HINT = (
    "the node answered, but this account lacks the privilege named: grant it, e.g. "
    "GRANT SLAVE MONITOR ON *.* TO ... (MariaDB 10.5+) or GRANT REPLICATION CLIENT ON *.* "
    "TO ... (MySQL), which probing replication needs"
)


def describe_error(exc: BaseException) -> str:
    """A short message for *exc* that never includes credentials."""
    args: tuple[object, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        hint = f" ({_PRIVILEGE_HINT})" if args[0] in _PRIVILEGE_ERRORS else ""
        return f"{args[0]}: {args[1]}{hint}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _with_address(url: URL, address: str) -> URL:
    host, _, port = address.rpartition(":")
    return url.set(host=host, port=int(port))


def discover(seeds: Iterable[str | URL], *, timeout: float = 2.0) -> Topology:
    """Find every node of the cluster reachable from the *seeds* and what each one is.

    From a replica, its source (``Master_Host:Master_Port``) is followed; from a primary, the
    replicas it lists in ``SHOW SLAVE HOSTS`` / ``SHOW REPLICAS`` (those started with
    ``report_host`` / ``report_port``). Discovered nodes reuse the first seed's credentials.

    :raises TopologyError: when no seed can be reached.

    Example (needs a reachable node)::

        topology = discover(["mysql+pymysql://root@127.0.0.1:3307/app"])
        topology.primary.name, [n.name for n in topology.replicas]
    """
    from ..config import _validate as validate
    from ..errors import TopologyError

    urls = [validate.url(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
    if not urls:
        raise TopologyError("no seed address given; pass at least one node URL")
    if urls[0].get_backend_name() == "postgresql":
        from .pg_probe import discover_postgresql

        return discover_postgresql(urls, timeout=timeout)
    template = urls[0]
    pending = {node_name(u): u for u in urls}
    seen: dict[str, Node] = {}
    errors: list[str] = []
    denied: list[str] = []
    while pending:
        name, url = pending.popitem()
        if name in seen:
            continue
        with NodeProbe(url, timeout) as p:
            try:
                state = p.probe()
            except Exception as exc:
                errors.append(f"{name}: {describe_error(exc)}")
                if getattr(exc, "args", (None,))[0] in _NO_PRIVILEGE:
                    denied.append(f"{name}: {describe_error(exc)}")
                seen[name] = Node(name, url, Role.UNKNOWN, healthy=False, error=describe_error(exc))
                continue
            extra: list[dict[str, Any]] = []
            if state.replica is None:
                mariadb = isinstance(p.dialect, MariaDB)
                try:
                    extra = p.query("SHOW SLAVE HOSTS" if mariadb else "SHOW REPLICAS")
                except Exception as exc:  # needs REPLICATION MASTER ADMIN: optional
                    log.info("%s: cannot list its replicas: %s", name, describe_error(exc))
        seen[name] = node_from_state(name, url, state)
        found = [state.replica.source] if state.replica else []
        for row in extra:
            host = row.get("Host") or ""
            port = int(row.get("Port") or 0)
            if host and port:
                found.append(f"{host}:{port}")
        for address in found:
            if address not in seen and address not in pending:
                pending[address] = _with_address(template, address)
    if denied and all(not n.healthy for n in seen.values()):
        raise TopologyError(
            f"the account {template.username!r} reaches the servers but may not read their "
            "replication state (" + "; ".join(denied) + "); grant it the privilege the server "
            "names, e.g. GRANT REPLICATION CLIENT ON *.* (MySQL; MariaDB: REPLICA MONITOR, "
            "or SLAVE MONITOR before 10.5.9), or give the monitor an admin account"
        )
    if all(not n.healthy for n in seen.values()):
        raise TopologyError(
            "cannot reach any seed node (" + "; ".join(errors) + "); check the addresses, "
            "that the servers run, and the credentials"
        )
    return Topology(tuple(sorted(seen.values(), key=_order)))


_NO_PRIVILEGE = frozenset({1227, 1142, 1143})
_APPLIER_PROBE = "1 FROM performance_schema.replication_applier_status_by_worker LIMIT 1"
"""Access denied for a statement (not for the login, 1045: that is the credentials)."""


def _order(n: Node) -> tuple[int, str]:
    return ({Role.PRIMARY: 0, Role.REPLICA: 1}.get(n.role, 2), n.name)


def node_from_state(name: str, url: URL, state: NodeState, **changes: object) -> Node:
    """The :class:`Node` a successful probe describes."""
    lag = None
    replication = None
    rs = state.replica
    if rs is not None:
        if rs.seconds_behind is not None:
            # Sub-second where the server offers it (MySQL applier timestamps).
            lag = state.applier_lag if state.applier_lag is not None else float(rs.seconds_behind)
        replication = Replication(
            rs.source,
            rs.source_server_id or None,
            rs.io_running,
            rs.sql_running,
            rs.source_uuid or None,
        )
    node = Node(
        name,
        url,
        role_of(state),
        healthy=True,
        lag_seconds=lag,
        gtid_position=state.executed.text or None,
        read_only=not state.writable,
        server_id=state.server_id or None,
        replication=replication,
    )
    return node.evolve(**changes) if changes else node
