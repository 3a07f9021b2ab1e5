"""Cluster settings from a dict, the environment, a TOML file or a Java ``db.properties`` file.

Every source goes through one option table (:data:`OPTIONS`) and one builder, so a value means
the same thing wherever it is written, every problem is reported with where it came from
(file and line, or environment variable) and what was expected, and a configuration that is
wrong in any way raises :class:`~rwsplit.ConfigurationError` before any engine exists.
Passwords are never echoed in those messages.

Keys are matched loosely: ``maxReplicaLag``, ``max-replica-lag``, ``max.replica.lag`` and
``max_replica_lag`` are one option, so Java-style files are read as they are.

Any string value may be a Jasypt ``ENC(...)`` value (see :mod:`rwsplit.secrets`), including
the password inside a URL; it is decrypted with the key from ``encryption_key`` /
``encryption_key_file`` or the environment.

>>> settings = settings_from_dict({
...     "host": "db1", "username": "app", "password": "s3cret", "name": "shop",
...     "replica_hosts": "db2, db3:3307", "max_replica_lag": "5", "testOnBorrow": "true",
... })
>>> settings.primary
mysql+pymysql://app:***@db1:3306/shop
>>> [str(u.host) for u in settings.replicas]
['db2', 'db3']
>>> settings.options["max_replica_lag"], settings.options["engine_options"]
(5.0, {'pool_pre_ping': True})
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from ..errors import ConfigurationError, SecretError
from . import _validate as validate
from .secrets import EncryptionKey, decrypt_value, load_key, looks_encrypted

__all__ = [
    "OPTIONS",
    "ClusterSettings",
    "Option",
    "TLSConfig",
    "load_settings",
    "parse_properties",
    "settings_from_dict",
    "settings_from_env",
    "settings_from_properties",
    "settings_from_toml",
]

log = logging.getLogger("rwsplit.config")

ENV_PREFIX = "RWSPLIT_"
DEFAULT_DRIVER = "mysql+pymysql"
DEFAULT_TOML_TABLE = "rwsplit"


# ---------------------------------------------------------------------------------- TLS


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS towards a node: CA, client certificate and key, and how strictly to verify.

    Passed to PyMySQL as ``ssl_ca``, ``ssl_cert``, ``ssl_key``, ``ssl_verify_cert`` and
    ``ssl_verify_identity``. Verification is on by default: the server's certificate must be
    signed by *ca* (or a system CA when *ca* is not given) and name the host rwsplit connects
    to. ``disabled=True`` turns TLS off for a node (PyMySQL otherwise tries TLS when the
    server offers it, without verifying).

    >>> TLSConfig(ca="/etc/mysql/ca.pem").connect_args()
    {'ssl_ca': '/etc/mysql/ca.pem', 'ssl_verify_cert': True, 'ssl_verify_identity': True}
    """

    ca: str | None = None
    cert: str | None = None
    """Client certificate (PEM); may also hold the key."""
    key: str | None = None
    """Client private key (PEM), when not inside *cert*."""
    verify_cert: bool = True
    verify_identity: bool = True
    """Check that the certificate names the host (needs ``verify_cert``)."""
    disabled: bool = False

    def __post_init__(self) -> None:
        for what in ("ca", "cert", "key"):
            path = getattr(self, what)
            if path is not None:
                if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
                    raise validate.invalid(f"tls {what}", "a file path (str or Path)", path)
                object.__setattr__(self, what, os.fspath(path))
        for what in ("verify_cert", "verify_identity", "disabled"):
            validate.boolean(f"tls {what}", getattr(self, what))
        if self.verify_identity and not self.verify_cert:
            raise ConfigurationError(
                "tls verify_identity=true needs verify_cert=true (a host name in an "
                "unverified certificate proves nothing); set verify_identity=false too"
            )
        if self.key is not None and self.cert is None:
            raise ConfigurationError("tls key is set without cert: give the client certificate")

    def check_files(self) -> None:
        """Raise :class:`~rwsplit.ConfigurationError` if a named file cannot be read."""
        for what in ("ca", "cert", "key"):
            path = getattr(self, what)
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigurationError(
                    f"tls {what} file {path} does not exist or is not readable"
                )

    def connect_args(self) -> dict[str, Any]:
        """The PyMySQL ``connect()`` keyword arguments for these settings."""
        if self.disabled:
            return {"ssl_disabled": True}
        args: dict[str, Any] = {}
        if self.ca is not None:
            args["ssl_ca"] = self.ca
        if self.cert is not None:
            args["ssl_cert"] = self.cert
        if self.key is not None:
            args["ssl_key"] = self.key
        args["ssl_verify_cert"] = self.verify_cert
        args["ssl_verify_identity"] = self.verify_identity
        return args


# ---------------------------------------------------------------------------------- parsers
# Each takes the key as the user wrote it (with where: "db.properties line 4: db.cloud.port")
# and a raw value (text from env / properties, or a TOML / dict value), and returns the
# option's value or raises ConfigurationError "<key>: expected ..., got ..." (rwsplit._validate).


def _text(name: str, raw: Any) -> str:
    return validate.text(name, raw)


def _password(name: str, raw: Any) -> str:
    return validate.password(name, raw)


def _bool(name: str, raw: Any) -> bool:
    return validate.boolean(name, raw, text=True)


def _pool_recycle(name: str, raw: Any) -> float:
    value = validate.number(
        name,
        raw,
        low=-1.0,
        high=validate.MAX_SECONDS,
        expected=f"a number of seconds >= 0 and <= {validate.MAX_SECONDS:g}, or -1 (never)",
        text=True,
    )
    if -1.0 < value < 0.0:
        raise validate.invalid(name, "a number of seconds >= 0, or -1 (never)", raw)
    return value


def _seconds(name: str, raw: Any) -> float:
    return validate.duration(name, raw, text=True)


def _positive_seconds(name: str, raw: Any) -> float:
    return validate.duration(name, raw, positive=True, text=True)


def _seconds_or_none(name: str, raw: Any) -> float | None:
    return validate.optional_duration(name, raw, text=True)


def _positive_seconds_or_none(name: str, raw: Any) -> float | None:
    return validate.optional_duration(name, raw, positive=True, text=True)


def _name_list(name: str, raw: Any) -> tuple[str, ...]:
    what = "a list of host:port names"
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, (list, tuple)) and all(isinstance(p, str) for p in raw):
        items = [p.strip() for p in raw]
    else:
        raise validate.invalid(name, what, raw)
    for p in items:
        if p:
            try:
                validate.split_host(p, None)
            except ValueError:
                raise validate.invalid(name, what, raw) from None
            if not re.fullmatch(r"[^\s:,]+:\d+|\[[0-9A-Fa-f:.]+\]:\d+", p):
                raise validate.invalid(name, what, raw)
    return tuple(p for p in items if p)


def _int(low: int, what: str, high: int | None = None) -> Callable[[str, Any], int]:
    def parse(name: str, raw: Any) -> int:
        return validate.integer(name, raw, low=low, high=high, expected=what, text=True)

    return parse


def _port(name: str, raw: Any) -> int:
    return validate.port(name, raw, text=True)


def _url_value(name: str, raw: Any) -> str | URL:
    if isinstance(raw, URL):
        return raw
    return validate.text(name, raw, secret=True)


def _url_list(name: str, raw: Any) -> list[str | URL]:
    if isinstance(raw, (list, tuple)) and all(isinstance(p, URL) for p in raw):
        return list(raw)
    return list(_str_list(name, raw))


def _str_list(name: str, raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [p.strip() for p in raw.split(",") if p.strip()]
    if isinstance(raw, (list, tuple)) and all(isinstance(p, str) for p in raw):
        return [p.strip() for p in raw if p.strip()]
    # Not shown: the list may hold URLs with passwords.
    raise validate.invalid(
        name, "a list of strings (or one comma-separated string)", raw, secret=True
    )


def _path(name: str, raw: Any) -> str:
    if isinstance(raw, (str, os.PathLike)) and str(raw).strip():
        return str(raw).strip()
    raise validate.invalid(name, "a file path", raw)


def _mapping(name: str, raw: Any) -> dict[str, Any]:
    return validate.mapping(name, raw)


_TRIVIAL_QUERY = re.compile(
    r"\s*(?:/\*.*?\*/\s*)?select\s+1(?:\s+from\s+dual)?\s*;?\s*", re.IGNORECASE | re.DOTALL
)


def _validation_query(name: str, raw: Any) -> str:
    text = _text(name, raw)
    if not _TRIVIAL_QUERY.fullmatch(text):
        raise validate.invalid(
            name,
            "'SELECT 1': rwsplit checks connections on checkout with the driver's ping "
            "(SQLAlchemy pool_pre_ping), which is what SELECT 1 tests; other queries are not run",
            raw,
        )
    return text


def _read_your_writes(name: str, raw: Any) -> Any:
    return validate.read_your_writes(name, raw)


def _routing(name: str, raw: Any) -> str:
    from ..metrics import ROUTING_MODES

    text = _text(name, raw).strip().lower()
    if text not in ROUTING_MODES:
        raise ConfigurationError(
            f"{name}: expected one of {', '.join(ROUTING_MODES)}, got {text!r}"
        )
    return text


def _algorithm(name: str, raw: Any) -> str:
    from .secrets import ALGORITHMS

    text = _text(name, raw)
    for algorithm in ALGORITHMS:
        if algorithm.upper() == text.upper():
            return algorithm
    raise validate.invalid(name, " or ".join(ALGORITHMS), raw)


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration option, the same in every source.

    ``target`` says where the value goes: ``"cluster"`` (a :class:`~rwsplit.Cluster`
    keyword argument of the same name), ``"engine"`` (a :func:`sqlalchemy.create_engine`
    argument), ``"connect"`` (a PyMySQL ``connect()`` argument), ``"tls"`` (a
    :class:`TLSConfig` field, without the ``tls_`` prefix) or ``"special"`` (handled by the
    builder: the cluster's location, pool aliases, secrets).
    """

    name: str
    parse: Callable[[str, Any], Any]
    """``parse(key as written, raw value)``: the value, or a ConfigurationError naming the key."""
    target: str
    doc: str
    aliases: tuple[str, ...] = ()
    secret: bool = False
    """Never echo the value in a message."""
    env: bool = True
    """Read from ``$RWSPLIT_<NAME>`` by :func:`settings_from_env`."""


_DAY = int(validate.MAX_SECONDS)
_WHOLE_SECONDS = f"whole seconds >= 1 and <= {_DAY}"

# To add a Cluster option (say ``monitor_interval``), add one line here, e.g.
# ``Option("monitor_interval", _seconds, "cluster", "seconds between health polls"),``
# Its parser checks the type and range (rwsplit._validate), as Cluster itself does.
OPTIONS: tuple[Option, ...] = (
    # where the cluster is: full URLs ...
    # (URLs may hold passwords: never echoed either)
    Option(
        "primary_url",
        _url_value,
        "special",
        "SQLAlchemy (or JDBC) URL of the primary",
        ("url",),
        secret=True,
    ),
    Option("replica_urls", _url_list, "special", "SQLAlchemy URLs of the replicas", secret=True),
    # ... or its parts, as db.properties files keep them
    Option("host", _text, "special", "primary host name or address", ("hostname", "server")),
    Option("port", _port, "special", "port of every node without its own (default 3306)"),
    Option("username", _text, "special", "user name", ("user", "user_name")),
    Option("password", _password, "special", "password (ENC(...) allowed)", secret=True),
    Option("name", _text, "special", "database name", ("database", "dbname", "db_name")),
    Option(
        "replica_hosts",
        _str_list,
        "special",
        "replicas as host[:port], comma-separated",
        ("replicas", "replica_host", "read_hosts", "slaves"),
    ),
    Option("driver", _text, "special", f"SQLAlchemy dialect+driver (default {DEFAULT_DRIVER})"),
    # routing (Cluster keyword arguments)
    Option("fallback_to_primary", _bool, "cluster", "send reads to the primary if no replica can"),
    Option("max_replica_lag", _seconds_or_none, "cluster", "replicas lagging more take no reads"),
    Option("down_retry_interval", _seconds, "cluster", "seconds before a failed node is retried"),
    Option("read_your_writes", _read_your_writes, "cluster", "gtid, primary or off"),
    Option("causal_timeout", _seconds, "cluster", "longest wait for a replica to catch up (s)"),
    Option(
        "routing", _routing, "cluster", "normal, shadow (decide, run on the primary) or primary"
    ),
    Option("sticky_window", _seconds, "cluster", "seconds reads stay on the primary after a write"),
    # health and failover (docs/failover.md)
    Option(
        "monitor_interval", _positive_seconds_or_none, "cluster", "seconds between health probes"
    ),
    Option(
        "monitor_timeout", _positive_seconds, "cluster", "connect / read timeout of each probe (s)"
    ),
    Option("failure_threshold", _int(1, "an integer >= 1"), "cluster", "failed probes = dead"),
    # bounded waits per role (Cluster keyword arguments; connect_timeout below is per node)
    Option(
        "primary_read_timeout",
        _positive_seconds_or_none,
        "cluster",
        "seconds the primary may take to answer one statement (none: no limit)",
    ),
    Option(
        "replica_read_timeout",
        _positive_seconds_or_none,
        "cluster",
        "seconds a replica may take to answer a read before it is re-run elsewhere",
    ),
    Option("auto_failover", _bool, "cluster", "promote a replica when the primary is dead"),
    Option("admin_user", _text, "cluster", "account for probes and failover"),
    Option("admin_password", _password, "cluster", "its password (ENC(...) allowed)", secret=True),
    # Not read from $RWSPLIT_REPLICATION_*: the failover commands read those themselves.
    Option(
        "replication_user", _text, "special", "account replicas use after a failover", env=False
    ),
    Option(
        "replication_password",
        _password,
        "special",
        "its password (ENC(...) allowed)",
        secret=True,
        env=False,
    ),
    Option("never_promote", _name_list, "special", "host:port list that must never be primary"),
    Option("preferred_primaries", _name_list, "special", "host:port list to promote first"),
    # pools (create_engine keyword arguments), per node
    Option("pool_size", _int(0, "an integer >= 0"), "engine", "connections kept per node"),
    Option("max_overflow", _int(-1, "an integer >= -1"), "engine", "extra connections per node"),
    Option("pool_timeout", _seconds, "engine", "seconds to wait for a free connection"),
    Option(
        "pool_recycle", _pool_recycle, "engine", "replace connections older than this (s; -1 never)"
    ),
    Option("pool_pre_ping", _bool, "engine", "check connections on checkout", ("test_on_borrow",)),
    Option("validation_query", _validation_query, "special", "SELECT 1: turns on pool_pre_ping"),
    Option(
        "max_connections",
        _int(1, "an integer >= 1"),
        "special",
        "at most this many connections per node (pool_size=N, max_overflow=0)",
        ("max_total", "max_active"),
    ),
    Option(
        "max_wait_millis",
        _int(0, "milliseconds >= 0"),
        "special",
        "pool_timeout in milliseconds",
        ("max_wait",),
    ),
    # driver
    Option("connect_timeout", _int(1, _WHOLE_SECONDS, _DAY), "connect", "seconds to connect"),
    Option("read_timeout", _int(1, _WHOLE_SECONDS, _DAY), "connect", "seconds for a result"),
    Option("write_timeout", _int(1, _WHOLE_SECONDS, _DAY), "connect", "seconds to send"),
    # TLS, every node (per node: the "nodes" table)
    Option("tls_ca", _path, "tls", "CA certificate file (PEM)", ("ssl_ca",)),
    Option("tls_cert", _path, "tls", "client certificate file (PEM)", ("ssl_cert",)),
    Option("tls_key", _path, "tls", "client key file (PEM)", ("ssl_key",)),
    Option(
        "tls_verify_cert", _bool, "tls", "verify the server's certificate", ("ssl_verify_cert",)
    ),
    Option(
        "tls_verify_identity",
        _bool,
        "tls",
        "check the certificate names the host",
        ("ssl_verify_identity", "tls_verify_server_identity"),
    ),
    Option("tls_disabled", _bool, "tls", "no TLS at all", ("ssl_disabled",)),
    Option(
        "tls", _bool, "special", "use TLS (true: verify against system CAs)", ("ssl", "use_ssl")
    ),
    # secrets (the environment's own variables are read by rwsplit.secrets.load_key)
    Option("encryption_key_file", _path, "special", "file holding the ENC() key", env=False),
    Option("encryption_algorithm", _algorithm, "special", "algorithm of ENC() values", env=False),
    # dict / TOML only
    Option("engine_options", _mapping, "special", "extra create_engine arguments", env=False),
    Option("nodes", _mapping, "special", 'per-node settings: {"host:port": {tls...}}', env=False),
)

_LOCATION_URLS = ("primary_url", "replica_urls")
_LOCATION_PARTS = ("host", "port", "name", "replica_hosts", "driver")
_LOCATION = (*_LOCATION_URLS, *_LOCATION_PARTS, "username", "password")


def _normalize(key: str) -> str:
    """``maxReplicaLag`` / ``max-replica-lag`` / ``max.replica.lag`` → ``max_replica_lag``."""
    key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key.strip())
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_").lower()


_SECRET_OPTIONS = frozenset(o.name for o in OPTIONS if o.secret)
_BY_KEY: dict[str, Option] = {}
for _opt in OPTIONS:
    for _k in (_opt.name, *_opt.aliases):
        _BY_KEY[_normalize(_k)] = _opt
del _opt, _k

# Keys of Java connection pools (DBCP, Tomcat JDBC) that rwsplit has no use for: a
# db.properties file with them is read as it is, they are logged and skipped.
_JAVA_POOL_KEYS = frozenset(
    _normalize(k)
    for k in (
        "driverClassName",
        "driver_class",
        "maxIdle",
        "minIdle",
        "initialSize",
        "testWhileIdle",
        "testOnReturn",
        "testOnConnect",
        "timeBetweenEvictionRunsMillis",
        "minEvictableIdleTimeMillis",
        "numTestsPerEvictionRun",
        "validationQueryTimeout",
        "validationInterval",
        "removeAbandoned",
        "removeAbandonedTimeout",
        "removeAbandonedOnBorrow",
        "logAbandoned",
        "defaultAutoCommit",
        "poolPreparedStatements",
        "maxOpenPreparedStatements",
        "jmxEnabled",
        "jdbcInterceptors",
    )
)


# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ClusterSettings:
    """A validated configuration: what :class:`~rwsplit.Cluster` needs, passwords decrypted.

    ``options`` holds the other :class:`~rwsplit.Cluster` keyword arguments
    (``max_replica_lag``, ``engine_options``, ``tls``, ``node_tls`` ...). The ``repr``
    masks passwords.

    >>> s = settings_from_dict({"primary_url": "mysql+pymysql://app:pw@db1/a"})
    >>> s
    ClusterSettings(primary=mysql+pymysql://app:***@db1/a, replicas=[], options={}, source='dict')
    >>> s.primary.password
    'pw'
    """

    primary: URL
    replicas: tuple[URL, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = "dict"
    """Where the settings came from (a file name, ``environment``, ``dict``)."""

    def cluster_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :class:`~rwsplit.Cluster`; *overrides* win.

        ``engine_options`` from *overrides* are merged into the configured ones.
        """
        kwargs: dict[str, Any] = {"primary": self.primary, "replicas": list(self.replicas)}
        kwargs.update(self.options)
        if "engine_options" in overrides and "engine_options" in kwargs:
            overrides = dict(overrides)
            kwargs["engine_options"] = {
                **kwargs["engine_options"],
                **(overrides.pop("engine_options") or {}),
            }
        kwargs.update(overrides)
        return kwargs

    def __repr__(self) -> str:
        # SQLAlchemy's URL repr masks the password; TLSConfig holds file names only.
        options = {
            k: ("***" if k in _SECRET_OPTIONS and v is not None else v)
            for k, v in self.options.items()
        }
        return (
            f"ClusterSettings(primary={self.primary!r}, replicas={list(self.replicas)!r}, "
            f"options={options!r}, source={self.source!r})"
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    """The key matched against the option table (without the file's prefix)."""
    value: Any
    where: str
    """``db.properties line 4``, ``$RWSPLIT_PORT``, ``config.toml [rwsplit]``."""
    label: str = ""
    """The key as the user wrote it, when *key* is only its matching part (a prefix cut)."""

    @property
    def shown(self) -> str:
        return self.label or self.key


def _jdbc_urls(text: str, what: str, where: str) -> list[URL]:
    """A Connector/J or MariaDB JDBC URL as SQLAlchemy URLs: the primary, then replicas.

    ``jdbc:mysql:replication://primary,replica1,replica2/db?user=...&password=...``; the
    parsing (user info, ports, TLS parameters) is :func:`rwsplit._validate.jdbc_urls`.
    """
    return validate.jdbc_urls(f"{where}: {what}", text)


def _parse_url(value: Any, what: str, where: str) -> URL:
    """One node's URL: SQLAlchemy text or object, or a single-host JDBC URL."""
    return validate.url(f"{where}: {what}", value, encrypted=True)


class _Builder:
    """Turns raw entries into :class:`ClusterSettings`, collecting every problem first."""

    def __init__(
        self,
        source: str,
        *,
        base_dir: Path | None,
        strict: bool,
        encryption_key: str | None,
        encryption_key_file: str | os.PathLike[str] | None,
        environ: Mapping[str, str] | None,
    ) -> None:
        self.source = source
        self.base_dir = base_dir
        self.strict = strict
        self.environ = environ
        self._explicit_key = encryption_key
        self._explicit_key_file = encryption_key_file
        self._key: EncryptionKey | None = None
        self._key_loaded = False
        self._key_error: SecretError | None = None
        self.values: dict[str, Any] = {}
        self.where: dict[str, str] = {}
        self.errors: list[str] = []
        self.secret_errors = 0

    # -- reading

    def add(self, entries: Iterable[_Entry]) -> None:
        # The key settings first: other values may need them to decrypt.
        meta = {_normalize(k) for k in ("encryption_key_file", "encryption_algorithm")}
        ordered = sorted(entries, key=lambda e: _normalize(e.key) not in meta)
        for entry in ordered:
            self._add(entry)

    def _add(self, entry: _Entry) -> None:
        norm = _normalize(entry.key)
        option = _BY_KEY.get(norm)
        if option is None:
            self._unknown(entry, norm)
            return
        if option.name in self.values:
            self.errors.append(
                f"{entry.where}: {entry.shown}: {option.name} is already set at "
                f"{self.where[option.name]}; give it once"
            )
            return
        raw = entry.value
        if option.name not in ("nodes", "engine_options"):
            try:
                raw = self._decrypt(raw, f"{entry.where}: {entry.shown}")
            except SecretError as exc:
                self.errors.append(str(exc))
                self.secret_errors += 1
                return
        try:
            value = option.parse(f"{entry.where}: {entry.shown}", raw)
        except ConfigurationError as exc:
            self.errors.append(str(exc))
            return
        self.values[option.name] = value
        self.where[option.name] = f"{entry.where} ({entry.shown})"

    def _unknown(self, entry: _Entry, norm: str) -> None:
        if norm in _JAVA_POOL_KEYS:
            log.info(
                "%s: %s is a Java pool setting rwsplit does not use; ignored",
                entry.where,
                entry.shown,
            )
            return
        close = get_close_matches(norm, list(_BY_KEY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        message = f"{entry.where}: unknown option {entry.shown!r}{hint}"
        if self.strict:
            self.errors.append(message)
        else:
            log.warning("%s (ignored)", message)

    # -- secrets

    def _key_for(self) -> EncryptionKey | None:
        if self._key_error is not None:
            raise self._key_error  # reported once per value, the same cause each time
        if not self._key_loaded:
            key_file = self._explicit_key_file
            if key_file is None and "encryption_key_file" in self.values:
                key_file = self._resolve(self.values["encryption_key_file"])
            try:
                self._key = load_key(
                    key=self._explicit_key,
                    key_file=key_file,
                    algorithm=self.values.get("encryption_algorithm"),
                    environ=self.environ,
                )
            except SecretError as exc:
                self._key_error = exc
                raise
            self._key_loaded = True
        return self._key

    def _decrypt(self, raw: Any, where: str) -> Any:
        if isinstance(raw, str) and looks_encrypted(raw):
            # decrypt_value also refuses a malformed ENC(... without its ")".
            return decrypt_value(raw, self._key_for(), where=where)
        if isinstance(raw, (list, tuple)) and not isinstance(raw, URL):  # URL is a tuple
            return [self._decrypt(v, where) for v in raw]
        return raw

    def _url(self, value: Any, option: str, what: str) -> URL:
        where = self.where.get(option, self.source)
        return self._decrypted_password(_parse_url(value, what, where), f"{where}: {what}")

    def _decrypted_password(self, url: URL, where: str) -> URL:
        if url.password is not None and looks_encrypted(str(url.password)):
            password = self._decrypt(str(url.password), f"{where}: the password in the URL")
            url = url.set(password=password)
        return url

    def _resolve(self, path: str) -> str:
        p = Path(os.path.expanduser(path))
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return str(p)

    # -- building

    def build(self) -> ClusterSettings:
        if self.errors:
            raise self._error()
        try:
            return self._build()
        except ConfigurationError as exc:
            self.errors.append(str(exc))
            self.secret_errors += isinstance(exc, SecretError)
            raise self._error() from None

    def _error(self) -> ConfigurationError:
        # A SecretError when that is all that is wrong: callers may catch it apart.
        secret_only = self.secret_errors == len(self.errors)
        cls = SecretError if secret_only else ConfigurationError
        # An entry's place is named once: "in app.config: app.config: x" says it twice.
        errors = [e.removeprefix(f"{self.source}: ") for e in self.errors]
        if len(errors) == 1:
            return cls(f"bad configuration in {self.source}: {errors[0]}")
        return cls(
            f"bad configuration in {self.source} ({len(errors)} problems):\n  "
            + "\n  ".join(errors)
        )

    def _build(self) -> ClusterSettings:
        v = self.values
        primary, replicas = self._location()
        options: dict[str, Any] = {}
        engine: dict[str, Any] = dict(v.get("engine_options", {}))
        connect: dict[str, Any] = validate.mapping(
            f"{self.where.get('engine_options', self.source)}: engine_options.connect_args",
            engine.pop("connect_args", None) or {},
        )
        if "admin_password" in v and "admin_user" not in v:
            raise ConfigurationError(
                f"{self.where['admin_password']} sets admin_password, but admin_user is not "
                "set: give the account's user name too"
            )
        tls: dict[str, Any] = {}
        for name, value in v.items():
            target = _BY_KEY[name].target
            if target == "cluster":
                options[name] = value
            elif target == "engine":
                self._set(engine, name, value, "engine_options")
            elif target == "connect":
                self._set(connect, name, value, "engine_options.connect_args")
            elif target == "tls":
                tls[name.removeprefix("tls_")] = value
        self._pool(engine)
        if connect:
            engine["connect_args"] = connect
        if engine:
            options["engine_options"] = engine
        cluster_tls = self._tls(tls, "tls", enabled=v.get("tls"))
        if cluster_tls is not None:
            options["tls"] = cluster_tls
        node_tls = self._node_tls(tls, v.get("nodes", {}))
        if node_tls:
            options["node_tls"] = node_tls
        failover = self._failover_options(postgresql=primary.get_backend_name() == "postgresql")
        if failover is not None:
            options["failover_options"] = failover
        return ClusterSettings(primary, tuple(replicas), options, self.source)

    def _failover_options(self, *, postgresql: bool = False) -> Any:
        v = self.values
        keys = ("replication_user", "replication_password", "never_promote", "preferred_primaries")
        if postgresql and "replication_user" not in v and "replication_password" not in v:
            # PostgreSQL standbys keep the credentials of their own primary_conninfo.
            if not any(k in v for k in keys):
                return None
            from ..topology.failover import FailoverOptions

            return FailoverOptions(
                "",
                "",
                preferred=v.get("preferred_primaries", ()),
                never_promote=v.get("never_promote", ()),
            )
        if not any(k in v for k in keys):
            if v.get("auto_failover"):
                raise ConfigurationError(
                    f"{self.where['auto_failover']} turns auto_failover on, but no "
                    "replication_user / replication_password is set: failover needs the "
                    "account replicas use to connect to the new primary"
                )
            return None
        if "replication_user" not in v or "replication_password" not in v:
            given = next(k for k in keys if k in v)
            raise ConfigurationError(
                f"{self.where[given]} sets {given}, but failover also needs both "
                "replication_user and replication_password"
            )
        from ..topology.failover import FailoverOptions

        return FailoverOptions(
            v["replication_user"],
            v["replication_password"],
            preferred=v.get("preferred_primaries", ()),
            never_promote=v.get("never_promote", ()),
        )

    def _set(self, target: dict[str, Any], name: str, value: Any, where: str) -> None:
        if name in target and target[name] != value:
            raise ConfigurationError(
                f"{self.where[name]} sets {name}, and so does {where}: set it once"
            )
        target[name] = value

    def _location(self) -> tuple[URL, list[URL]]:
        v = self.values
        has_urls = [k for k in _LOCATION_URLS if k in v]
        has_parts = [k for k in _LOCATION_PARTS if k in v]
        if has_urls and has_parts:
            raise ConfigurationError(
                f"both URLs ({', '.join(has_urls)}) and URL parts ({', '.join(has_parts)}) "
                "are given: use primary_url / replica_urls, or host / port / name / "
                "replica_hosts, not both"
            )
        if has_urls:
            if "primary_url" not in v:
                raise ConfigurationError("replica_urls is set but primary_url is missing")
            primary_url = v["primary_url"]
            jdbc_replicas: list[URL] = []
            if isinstance(primary_url, str) and primary_url.lower().startswith("jdbc:"):
                where = self.where["primary_url"]
                primary, *jdbc_replicas = _jdbc_urls(primary_url, "primary_url", where)
                primary = self._credentials(self._decrypted_password(primary, where))
            else:
                primary = self._credentials(self._url(primary_url, "primary_url", "primary_url"))
            replicas = [self._credentials(self._decrypted_password(u, "")) for u in jdbc_replicas]
            replicas += [
                self._credentials(self._url(u, "replica_urls", f"replica_urls[{i}]"))
                for i, u in enumerate(v.get("replica_urls", []))
            ]
            return primary, replicas
        if "host" not in v:
            raise ConfigurationError(
                "no primary given: set primary_url (a SQLAlchemy URL), or host "
                "(with port, username, password, name)"
            )
        base = URL.create(
            v.get("driver", DEFAULT_DRIVER),
            username=v.get("username"),
            password=v.get("password"),
            host=v["host"],
            port=v.get("port", 3306),
            database=v.get("name"),
        )
        try:
            base.get_dialect()
        except Exception:
            raise ConfigurationError(
                f"{self.where.get('driver', self.source)}: driver {base.drivername!r} is not "
                "a SQLAlchemy dialect+driver; use e.g. 'mysql+pymysql'"
            ) from None
        replicas = []
        for entry in v.get("replica_hosts", []):
            try:
                host, port = validate.split_host(entry, base.port)
                replicas.append(base.set(host=host, port=port))
            except ValueError:
                raise ConfigurationError(
                    f"{self.where['replica_hosts']}: {entry!r}: expected host or host:port "
                    "with a port number 1-65535"
                ) from None
        return base, replicas

    def _credentials(self, url: URL) -> URL:
        """Fill in username / password given apart from the URLs (not both)."""
        for part in ("username", "password"):
            if part in self.values:
                if getattr(url, part) is not None:
                    raise ConfigurationError(
                        f"{self.where[part]} and the URL of {url.host} both give a {part}: "
                        "give it once"
                    )
                url = url.set(**{part: self.values[part]})
        return url

    def _pool(self, engine: dict[str, Any]) -> None:
        v = self.values
        if "validation_query" in v and "pool_pre_ping" not in v:
            engine["pool_pre_ping"] = True  # DBCP: testOnBorrow defaults to true
        if "max_connections" in v:
            for name in ("pool_size", "max_overflow"):
                if name in engine:
                    raise ConfigurationError(
                        f"{self.where['max_connections']} and {name} both size the pool: "
                        "give max_connections, or pool_size and max_overflow"
                    )
            engine["pool_size"] = v["max_connections"]
            engine["max_overflow"] = 0
        if "max_wait_millis" in v:
            if "pool_timeout" in engine:
                raise ConfigurationError(
                    f"{self.where['max_wait_millis']} and pool_timeout are the same setting: "
                    "give one"
                )
            engine["pool_timeout"] = v["max_wait_millis"] / 1000.0

    def _tls(
        self, fields: Mapping[str, Any], where: str, enabled: bool | None = None
    ) -> TLSConfig | None:
        """*enabled*: the ``tls`` switch (None: TLS is on when any tls setting is given)."""
        if enabled is False:
            if any(k != "disabled" for k in fields):
                raise ConfigurationError(f"{where}: tls=false, yet other tls settings are given")
            return TLSConfig(disabled=True)
        if not fields and not enabled:
            return None
        resolved: dict[str, Any] = {
            k: (self._resolve(val) if k in ("ca", "cert", "key") else val)
            for k, val in fields.items()
        }
        try:
            tls = TLSConfig(**resolved)
            tls.check_files()
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        return tls

    def _node_tls(
        self, cluster: Mapping[str, Any], nodes: Mapping[str, Any]
    ) -> dict[str, TLSConfig]:
        result: dict[str, TLSConfig] = {}
        for name, raw in nodes.items():
            where = f"nodes[{name!r}]"
            if not isinstance(raw, Mapping):
                raise ConfigurationError(f"{where}: expected a table of that node's settings")
            own: dict[str, Any] = {}
            for key, value in _flatten(raw):
                option = _BY_KEY.get(_normalize(key))
                if option is None or option.target != "tls":
                    raise ConfigurationError(
                        f"{where}: {key!r}: only tls settings can be given per node "
                        "(tls.ca, tls.cert, tls.key, tls.verify_cert, tls.verify_identity, "
                        "tls.disabled)"
                    )
                own[option.name.removeprefix("tls_")] = option.parse(f"{where}: {key}", value)
            tls = self._tls({**cluster, **own}, where)
            if tls is not None:
                result[str(name)] = tls
        return result


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested tables become dotted keys, except the options whose value is a table."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        option = _BY_KEY.get(_normalize(full))
        if isinstance(value, Mapping) and (option is None or option.parse is not _mapping):
            yield from _flatten(value, f"{full}.")
        else:
            yield full, value


def _builder(source: str, base_dir: Path | None, strict: bool, **secrets: Any) -> _Builder:
    return _Builder(
        source,
        base_dir=base_dir,
        strict=strict,
        encryption_key=secrets.get("encryption_key"),
        encryption_key_file=secrets.get("encryption_key_file"),
        environ=secrets.get("environ"),
    )


def _with_overrides(
    entries: list[_Entry], overrides: Mapping[str, Any] | None, where: str
) -> list[_Entry]:
    """*overrides* replace entries of the same option.

    A new primary (``primary_url`` or ``host``) also replaces the configured host, port,
    name, driver, replica hosts and credentials; configured ``replica_urls`` stay unless
    overridden too.
    """
    if not overrides:
        return entries
    names = {_BY_KEY[_normalize(k)].name for k in overrides if _normalize(k) in _BY_KEY}
    if names & {"primary_url", "host"}:
        names |= {"primary_url", *_LOCATION_PARTS, "username", "password"}
    kept = [
        e for e in entries if getattr(_BY_KEY.get(_normalize(e.key)), "name", None) not in names
    ]
    return kept + [_Entry(k, v, where) for k, v in overrides.items() if v is not None]


# ---------------------------------------------------------------------------------- sources


def settings_from_dict(
    data: Mapping[str, Any],
    *,
    source: str = "dict",
    base_dir: str | os.PathLike[str] | None = None,
    encryption_key: str | None = None,
    encryption_key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterSettings:
    """Settings from a mapping of option names (any spelling) to values.

    Nested mappings are dotted keys (``{"tls": {"ca": ...}}`` is ``tls.ca``), except
    ``engine_options`` and ``nodes``. Relative file names are relative to *base_dir*.

    >>> settings_from_dict({"primary_url": "mysql+pymysql://u@db1/app",
    ...                     "tls": {"verify_identity": False}}).options["tls"].verify_identity
    False
    """
    builder = _builder(
        source,
        Path(base_dir) if base_dir is not None else None,
        True,
        encryption_key=encryption_key,
        encryption_key_file=encryption_key_file,
        environ=environ,
    )
    builder.add(_Entry(k, v, source) for k, v in _flatten(data))
    return builder.build()


def settings_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    encryption_key: str | None = None,
    encryption_key_file: str | os.PathLike[str] | None = None,
) -> ClusterSettings:
    """Settings from ``RWSPLIT_*`` environment variables.

    ``RWSPLIT_PRIMARY_URL``, ``RWSPLIT_REPLICA_URLS`` (comma-separated) and
    ``RWSPLIT_<OPTION>`` for every option in :data:`OPTIONS` (``RWSPLIT_MAX_REPLICA_LAG``,
    ``RWSPLIT_TLS_CA`` ...). *overrides* (option → value) win over the environment.

    >>> settings_from_env({"RWSPLIT_PRIMARY_URL": "mysql+pymysql://u@db1/app",
    ...                    "RWSPLIT_DOWN_RETRY_INTERVAL": "2"}).options
    {'down_retry_interval': 2.0}
    """
    env = os.environ if environ is None else environ
    entries = []
    for o in OPTIONS:
        var = f"{ENV_PREFIX}{o.name.upper()}"
        if o.env and env.get(var, "") != "":
            entries.append(_Entry(o.name, env[var], f"${var}", label=var))
    entries = _with_overrides(entries, overrides, "command line")
    builder = _builder(
        "the environment",
        None,
        True,
        encryption_key=encryption_key,
        encryption_key_file=encryption_key_file,
        environ=env,
    )
    builder.add(entries)
    return builder.build()


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return dict(tomllib.load(f))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None


def settings_from_toml(
    path: str | os.PathLike[str],
    *,
    table: str | None = DEFAULT_TOML_TABLE,
    overrides: Mapping[str, Any] | None = None,
    encryption_key: str | None = None,
    encryption_key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterSettings:
    """Settings from the ``[rwsplit]`` table of a TOML file (*table*: another dotted table;
    when the file has no ``rwsplit`` table, its top level).

    .. code-block:: toml

        [rwsplit]
        primary_url = "mysql+pymysql://app:ENC(...)@db1:3306/shop"
        replica_urls = ["mysql+pymysql://app:ENC(...)@db2:3306/shop"]
        max_replica_lag = 5
        encryption_key_file = "rwsplit.key"   # relative to this file

    >>> import pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "rwsplit.toml"
    >>> _ = path.write_text('[rwsplit]\\nhost = "db1"\\nmax_replica_lag = 5\\n')
    >>> settings_from_toml(path).options
    {'max_replica_lag': 5.0}
    >>> tmp.cleanup()
    """
    p = Path(path)
    doc = _load_toml(p)
    data: Any = doc
    where = str(p)
    if table:
        for part in table.split("."):
            if isinstance(data, Mapping) and part in data:
                data = data[part]
            elif table == DEFAULT_TOML_TABLE:
                data = doc
                break
            else:
                raise ConfigurationError(f"{p} has no [{table}] table")
        else:
            where = f"{p} [{table}]"
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{p}: [{table}] is not a table")
    entries = _with_overrides(
        [_Entry(k, v, where) for k, v in _flatten(data)], overrides, "command line"
    )
    builder = _builder(
        str(p),
        p.parent,
        True,
        encryption_key=encryption_key,
        encryption_key_file=encryption_key_file,
        environ=environ,
    )
    builder.add(entries)
    return builder.build()


# ---------------------------------------------------------------------------------- .properties


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        n = text[i + 1]
        if n == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(n, n))
        i += 2
    return "".join(out)


def parse_properties(text: str) -> list[tuple[str, str, int]]:
    """``(key, value, line number)`` for each entry of a Java ``.properties`` text.

    Follows ``java.util.Properties.load``: ``#`` / ``!`` comments, ``=``, ``:`` or blank as
    separator, trailing ``\\`` continues a line, ``\\uXXXX`` and ``\\t``-style escapes.

    >>> parse_properties("# c\\ndb.host = db1\\ndb.name:shop\\\\\\n   _eu\\n")
    [('db.host', 'db1', 2), ('db.name', 'shop_eu', 3)]
    """
    result: list[tuple[str, str, int]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i + 1
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        while _continues(line) and i < len(lines):
            line = line[:-1] + lines[i].lstrip(" \t\f")
            i += 1
        if _continues(line):
            line = line[:-1]
        key_end = 0
        while key_end < len(line):
            c = line[key_end]
            if c == "\\":
                key_end += 2
                continue
            if c in "=: \t\f":
                break
            key_end += 1
        key = line[:key_end]
        rest = line[key_end:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        result.append((_unescape(key), _unescape(rest), start))
    return result


def _continues(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def _read_properties(path: Path) -> list[tuple[str, str, int]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # java.util.Properties' own encoding
    return parse_properties(text)


_PREFIX_MARKERS = ("host", "url", "primary_url")


def _detect_prefix(path: Path, entries: list[tuple[str, str, int]]) -> str:
    found: list[str] = []
    for key, _, _ in entries:
        head, _, last = key.rpartition(".")
        if _normalize(last) in _PREFIX_MARKERS and head not in found:
            found.append(head)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigurationError(
            f"{path}: no <prefix>.host or <prefix>.url key found; is this the right file?"
        )
    raise ConfigurationError(
        f"{path} describes several databases ({', '.join(p or '(no prefix)' for p in found)}); "
        "choose one with key=... (--key on the command line)"
    )


def settings_from_properties(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    strict: bool = True,
    overrides: Mapping[str, Any] | None = None,
    encryption_key: str | None = None,
    encryption_key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterSettings:
    """Settings from a Java ``db.properties`` file, the keys under prefix *key*.

    .. code-block:: properties

        db.cloud.host=db1.example.com
        db.cloud.port=3306
        db.cloud.username=app
        db.cloud.password=ENC(S3DQHsQy05+sQD6y+sYmwssTJI2Ebhot)
        db.cloud.name=shop
        db.cloud.replicaHosts=db2.example.com,db3.example.com:3307
        db.cloud.validationQuery=SELECT 1
        db.cloud.testOnBorrow=true

    >>> import pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "db.properties"
    >>> _ = path.write_text("db.cloud.host=db1\\ndb.cloud.replicaHosts=db2\\n")
    >>> settings_from_properties(path, key="db.cloud").replicas
    (mysql+pymysql://db2:3306,)
    >>> tmp.cleanup()

    :param key: the prefix (``"db.cloud"``); ``None`` finds it when the file describes one
        database; ``""`` means keys without a prefix.
    :param strict: unknown keys under the prefix are errors (``False``: logged and ignored).
        Java pool keys rwsplit does not use (``maxIdle``, ``driverClassName`` ...) are always
        ignored.
    """
    p = Path(path)
    raw = _read_properties(p)
    prefix = _detect_prefix(p, raw) if key is None else key.strip().rstrip(".")
    dotted = f"{prefix}." if prefix else ""
    entries = [
        _Entry(k[len(dotted) :], v, f"{p} line {n}", label=k)
        for k, v, n in raw
        if k.startswith(dotted) and len(k) > len(dotted)
    ]
    if not entries:
        raise ConfigurationError(f"{p}: no key starts with {dotted!r}; check key=...")
    entries = _with_overrides(entries, overrides, "command line")
    builder = _builder(
        str(p),
        p.parent,
        strict,
        encryption_key=encryption_key,
        encryption_key_file=encryption_key_file,
        environ=environ,
    )
    builder.add(entries)
    return builder.build()


def load_settings(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    encryption_key: str | None = None,
    encryption_key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterSettings:
    """Settings from a ``.toml`` file (*key*: its table) or a ``.properties`` file (*key*:
    the key prefix), chosen by the file's suffix (anything but ``.toml`` is properties).

    >>> import pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name) / "app.properties"
    >>> _ = path.write_text("db.url=jdbc:mysql:replication://db1,db2/shop?user=app\\n")
    >>> s = load_settings(path)
    >>> s.primary, s.replicas
    (mysql+pymysql://app@db1:3306/shop, (mysql+pymysql://app@db2:3306/shop,))
    >>> tmp.cleanup()
    """
    common: dict[str, Any] = {
        "overrides": overrides,
        "encryption_key": encryption_key,
        "encryption_key_file": encryption_key_file,
        "environ": environ,
    }
    if Path(path).suffix.lower() == ".toml":
        return settings_from_toml(
            path, table=key if key is not None else DEFAULT_TOML_TABLE, **common
        )
    return settings_from_properties(path, key=key, **common)
