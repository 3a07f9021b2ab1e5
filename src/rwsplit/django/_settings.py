"""Turn a ``DATABASES`` entry into a :class:`~rwsplit.Cluster`, one per process and cluster.

Django makes a ``DatabaseWrapper`` per thread (and throwaway ones, e.g. for test-database
creation); they all share the cluster of their settings, so there is one monitor and one
topology per cluster and process. The key leaves out ``NAME``: the test runner renames the
database, the cluster stays the same.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL, make_url

from ..cluster import Cluster
from ..config.secrets import EncryptionKey, decrypt_value, load_key
from ..errors import ConfigurationError

__all__ = ["DriverTimeouts", "cluster_for", "close_clusters", "driver_timeouts"]

log = logging.getLogger("rwsplit.django")

_SECRET_KEYS = ("admin_password",)
_KEY_OPTIONS = ("encryption_key", "encryption_key_file", "encryption_algorithm")
_TIMEOUT_DEFAULTS = {
    "connect_timeout": 3.0,
    "primary_read_timeout": 10.0,
    "replica_read_timeout": 5.0,
    "write_timeout": 10.0,
}

_lock = threading.Lock()
_clusters: dict[tuple[Any, ...], Cluster] = {}


@dataclass(frozen=True)
class _Family:
    """How a backend's node URLs are written."""

    drivername: str
    port: int
    database: str | None
    """The database the cluster's own connections (probes) use; ``None``: none."""


_MYSQL = _Family("mysql+pymysql", 3306, None)
# PostgreSQL connects to a database: probes use the maintenance database, as Django's own
# connections without a NAME do (the test runner renames NAME; the cluster stays the same).
_POSTGRESQL = _Family("postgresql+psycopg", 5432, "postgres")


def _family(settings_dict: Mapping[str, Any]) -> _Family:
    engine = str(settings_dict.get("ENGINE") or "")
    return _POSTGRESQL if engine.rsplit(".", 1)[-1] == "postgresql" else _MYSQL


@dataclass(frozen=True)
class DriverTimeouts:
    """Driver timeouts (whole seconds, as mysqlclient wants them; ``None``: no limit)."""

    connect: int | None
    primary_read: int | None
    replica_read: int | None
    write: int | None


def _seconds(value: Any) -> int | None:
    return None if value is None else max(1, math.ceil(float(value)))


def driver_timeouts(settings_dict: Mapping[str, Any]) -> DriverTimeouts:
    """The Cluster's per-role timeouts from ``RWSPLIT``, for Django's own connections."""
    options = {**_TIMEOUT_DEFAULTS, **(settings_dict.get("RWSPLIT") or {})}
    return DriverTimeouts(
        _seconds(options["connect_timeout"]),
        _seconds(options["primary_read_timeout"]),
        _seconds(options["replica_read_timeout"]),
        _seconds(options["write_timeout"]),
    )


def _key(options: Mapping[str, Any]) -> EncryptionKey | None:
    return load_key(
        key=options.get("encryption_key"),
        key_file=options.get("encryption_key_file"),
        algorithm=options.get("encryption_algorithm"),
    )


def _secret(value: Any, key: EncryptionKey | None, where: str) -> str | None:
    if value is None or value == "":
        return None
    return decrypt_value(str(value), key, where=where)


def _port(value: Any, where: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where} must be a port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"{where} must be a port number (1-65535), got {port}")
    return port


def _primary_url(
    settings_dict: Mapping[str, Any], key: EncryptionKey | None, alias: str, family: _Family
) -> URL:
    host = settings_dict.get("HOST") or "localhost"
    if str(host).startswith("/"):
        raise ConfigurationError(
            f"DATABASES[{alias!r}]['HOST'] is a Unix socket; rwsplit needs host:port for every "
            "node (the monitor and failover connect over TCP)"
        )
    return URL.create(
        family.drivername,
        username=settings_dict.get("USER") or None,
        password=_secret(settings_dict.get("PASSWORD"), key, f"DATABASES[{alias!r}]['PASSWORD']"),
        host=str(host),
        port=_port(settings_dict.get("PORT"), f"DATABASES[{alias!r}]['PORT']") or family.port,
        database=family.database,
    )


def _replica_url(
    entry: Any, primary: URL, key: EncryptionKey | None, where: str, family: _Family
) -> URL:
    """A ``REPLICAS`` entry: ``{"HOST": ..., "PORT": ..., "USER": ..., "PASSWORD": ...}`` or a
    URL; what it leaves out is the primary's."""
    if isinstance(entry, str):
        try:
            url = make_url(entry)
        except Exception:
            raise ConfigurationError(
                f"{where} is not a URL ({family.drivername.split('+')[0]}://user:password@host:port)"
            ) from None
        if not url.host:
            raise ConfigurationError(f"{where} has no host")
        password = _secret(url.password, key, where) if url.password else primary.password
        return URL.create(
            family.drivername,
            username=url.username or primary.username,
            password=password,
            host=url.host,
            port=url.port or family.port,
            database=family.database,
        )
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"HOST", "PORT", "USER", "PASSWORD", "NAME"}
        if unknown:
            raise ConfigurationError(
                f"{where} has unknown keys {sorted(unknown)}; use HOST, PORT, USER, PASSWORD"
            )
        if not entry.get("HOST"):
            raise ConfigurationError(f"{where} needs a HOST")
        password = entry.get("PASSWORD")
        return URL.create(
            family.drivername,
            username=entry.get("USER") or primary.username,
            password=_secret(password, key, f"{where}['PASSWORD']")
            if password
            else primary.password,
            host=str(entry["HOST"]),
            port=_port(entry.get("PORT"), f"{where}['PORT']") or family.port,
            database=family.database,
        )
    raise ConfigurationError(f"{where} must be a dict (HOST, PORT, ...) or a URL string")


def _cluster_options(options: Mapping[str, Any], key: EncryptionKey | None) -> dict[str, Any]:
    kwargs = {k: v for k, v in options.items() if k not in _KEY_OPTIONS}
    for name in _SECRET_KEYS:
        if kwargs.get(name) is not None:
            kwargs[name] = _secret(kwargs[name], key, f"RWSPLIT[{name!r}]")
    failover = kwargs.get("failover_options")
    if isinstance(failover, Mapping):
        from ..topology.failover import FailoverOptions

        failover = dict(failover)
        if failover.get("replication_password") is not None:
            failover["replication_password"] = _secret(
                failover["replication_password"], key, "RWSPLIT['failover_options']"
            )
        kwargs["failover_options"] = FailoverOptions(**failover)
    return kwargs


def build_cluster(settings_dict: Mapping[str, Any], alias: str) -> Cluster:
    """A new :class:`~rwsplit.Cluster` for one ``DATABASES`` entry."""
    options = settings_dict.get("RWSPLIT") or {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"DATABASES[{alias!r}]['RWSPLIT'] must be a dict of options")
    replicas = settings_dict.get("REPLICAS") or []
    if isinstance(replicas, (str, Mapping)):
        raise ConfigurationError(f"DATABASES[{alias!r}]['REPLICAS'] must be a list")
    key = _key(options)
    family = _family(settings_dict)
    primary = _primary_url(settings_dict, key, alias, family)
    replica_urls = [
        _replica_url(entry, primary, key, f"DATABASES[{alias!r}]['REPLICAS'][{i}]", family)
        for i, entry in enumerate(replicas)
    ]
    try:
        return Cluster(primary, replica_urls, **_cluster_options(options, key))
    except TypeError as exc:
        raise ConfigurationError(f"DATABASES[{alias!r}]['RWSPLIT']: {exc}") from None


def _fingerprint(settings_dict: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        _family(settings_dict).drivername,
        settings_dict.get("HOST"),
        str(settings_dict.get("PORT")),
        settings_dict.get("USER"),
        settings_dict.get("PASSWORD"),
        repr(settings_dict.get("REPLICAS")),
        repr(sorted((settings_dict.get("RWSPLIT") or {}).items())),
    )


def fingerprint(settings_dict: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies the cluster of a ``DATABASES`` entry (not ``NAME``)."""
    return _fingerprint(settings_dict)


def cluster_for(
    settings_dict: Mapping[str, Any], alias: str, fp: tuple[Any, ...] | None = None
) -> Cluster:
    """The process-wide cluster of a ``DATABASES`` entry (made on first use)."""
    if fp is None:
        fp = _fingerprint(settings_dict)
    cluster = _clusters.get(fp)
    if cluster is not None:
        return cluster
    with _lock:
        cluster = _clusters.get(fp)
        if cluster is None:
            cluster = build_cluster(settings_dict, alias)
            _clusters[fp] = cluster
            log.info("cluster for database %r: %r", alias, cluster)
        return cluster


def close_clusters() -> None:
    """Close every cluster made from settings (stops monitors); later use makes new ones."""
    with _lock:
        clusters = list(_clusters.values())
        _clusters.clear()
    for cluster in clusters:
        cluster.close()


def _forget_after_fork() -> None:
    # A forked child (gunicorn --preload, multiprocessing) has the parent's clusters without
    # their monitor threads: it makes its own on next use. The parent's stay the parent's.
    global _lock
    _lock = threading.Lock()
    _clusters.clear()


atexit.register(close_clusters)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
