"""The Django engine names and what a ``DATABASES`` entry makes of each (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from rwsplit.django._settings import build_cluster, fingerprint


def _entry(engine: str, **extra: Any) -> dict[str, Any]:
    return {
        "ENGINE": engine,
        "NAME": "shop",
        "USER": "app",
        "PASSWORD": "secret",
        "HOST": "db1",
        "PORT": "",
        "REPLICAS": [{"HOST": "db2"}, {"HOST": "db3", "PORT": 6543}],
        **extra,
    }


def test_postgresql_entry_makes_a_postgresql_cluster() -> None:
    cluster = build_cluster(_entry("rwsplit.django.postgresql"), "default")
    try:
        assert cluster.family.name == "postgresql"
        urls = [n.url for n in cluster.topology.nodes]
        assert [(u.drivername, u.host, u.port, u.database) for u in urls] == [
            ("postgresql+psycopg", "db1", 5432, "postgres"),
            ("postgresql+psycopg", "db2", 5432, "postgres"),
            ("postgresql+psycopg", "db3", 6543, "postgres"),
        ]
        assert {(u.username, u.password) for u in urls} == {("app", "secret")}
    finally:
        cluster.close()


def test_postgresql_replica_as_a_url() -> None:
    entry = _entry("rwsplit.django.postgresql", REPLICAS=["postgresql://ro:pw@db4/ignored"])
    cluster = build_cluster(entry, "default")
    try:
        url = cluster.topology.replicas[0].url
        assert (url.drivername, url.username, url.password) == ("postgresql+psycopg", "ro", "pw")
        assert (url.host, url.port, url.database) == ("db4", 5432, "postgres")
    finally:
        cluster.close()


@pytest.mark.parametrize("engine", ["rwsplit.django", "rwsplit.django.mysql"])
def test_mysql_engine_names_make_the_same_cluster(engine: str) -> None:
    cluster = build_cluster(_entry(engine), "default")
    try:
        assert cluster.family.name == "mysql"
        urls = [n.url for n in cluster.topology.nodes]
        assert [(u.drivername, u.port, u.database) for u in urls] == [
            ("mysql+pymysql", 3306, None),
            ("mysql+pymysql", 3306, None),
            ("mysql+pymysql", 6543, None),
        ]
    finally:
        cluster.close()
    assert fingerprint(_entry("rwsplit.django")) == fingerprint(_entry("rwsplit.django.mysql"))
    assert fingerprint(_entry(engine)) != fingerprint(_entry("rwsplit.django.postgresql"))


def test_engine_modules_load_as_django_loads_them() -> None:
    from tests.djangoapp import configure

    configure()
    from django.db.utils import load_backend

    import rwsplit.django.base as mysql_backend
    from rwsplit.django._routing import RoutingWrapper

    assert load_backend("rwsplit.django.mysql").DatabaseWrapper is mysql_backend.DatabaseWrapper
    pg = load_backend("rwsplit.django.postgresql").DatabaseWrapper
    assert issubclass(pg, RoutingWrapper) and pg.vendor == "postgresql"
    assert pg.start_read_only.target.value == "replica"  # the router opens it on a standby


def test_postgresql_pool_option_is_refused() -> None:
    from tests.djangoapp import configure

    configure()
    from django.core.exceptions import ImproperlyConfigured

    from rwsplit.django.postgresql.base import DatabaseWrapper

    entry = _entry("rwsplit.django.postgresql", OPTIONS={"pool": True})
    with pytest.raises(ImproperlyConfigured, match="pool"):
        DatabaseWrapper(entry, "pooled")
