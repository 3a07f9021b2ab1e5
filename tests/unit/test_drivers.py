"""Messages for a URL whose driver is missing name the package that provides it."""

from __future__ import annotations

import sys

import pytest
from sqlalchemy.engine import make_url

from rwsplit import Cluster
from rwsplit._drivers import driver_hint, driver_package, unsupported_backend
from rwsplit.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "package"),
    [
        ("mysql://u@db1/a", "mysqlclient"),
        ("mysql+mysqldb://u@db1/a", "mysqlclient"),
        ("mysql+pymysql://u@db1/a", "PyMySQL"),
        ("mysql+aiomysql://u@db1/a", "aiomysql"),
        ("mysql+asyncmy://u@db1/a", "asyncmy"),
        ("mysql+mariadbconnector://u@db1/a", "mariadb"),
        ("mariadb+mariadbconnector://u@db1/a", "mariadb"),
        ("mysql+mysqlconnector://u@db1/a", "mysql-connector-python"),
        ("postgresql+psycopg://u@db1/a", "psycopg"),
        ("postgresql+psycopg_async://u@db1/a", "psycopg"),
        ("postgresql+asyncpg://u@db1/a", "asyncpg"),
        ("postgresql+psycopg2://u@db1/a", "psycopg2-binary"),
    ],
)
def test_each_driver_names_its_package(url: str, package: str) -> None:
    assert driver_package(make_url(url)) == package
    assert f"pip install {package}'" in driver_hint(make_url(url))
    assert unsupported_backend(make_url(url)) is None


@pytest.mark.parametrize("url", ["sqlite:///x.db", "mssql+pyodbc://u@h/a"])
def test_other_databases_are_not_supported(url: str) -> None:
    hint = driver_hint(make_url(url))
    assert "rwsplit is for MySQL/MariaDB and PostgreSQL" in hint
    assert "pip install" not in hint


def test_cluster_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if mysqlclient were not installed (a None entry makes ``import MySQLdb`` fail).
    monkeypatch.setitem(sys.modules, "MySQLdb", None)
    with pytest.raises(ConfigurationError, match=r"pip install mysqlclient") as info:
        Cluster("mysql+mysqldb://app:s3cret@db1/a")
    assert "s3cret" not in str(info.value)
    with Cluster("postgresql+psycopg://app:s3cret@db1/a") as cluster:  # issue 18
        assert cluster.family.name == "postgresql"
