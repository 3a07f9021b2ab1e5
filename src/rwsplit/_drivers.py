"""Which package a SQLAlchemy MySQL/MariaDB or PostgreSQL URL needs, for messages that say
what to install.

>>> from sqlalchemy.engine import make_url
>>> print(unsupported_backend(make_url("sqlite:///shop.db")))  # doctest: +NORMALIZE_WHITESPACE
sqlite URLs are not supported: rwsplit is for MySQL/MariaDB and PostgreSQL clusters; use a
URL such as 'mysql+pymysql://user:password@host:3306/dbname' or
'postgresql+psycopg://user:password@host:5432/dbname'
>>> unsupported_backend(make_url("postgresql+psycopg://app@db1/shop")) is None
True
>>> driver_package(make_url("postgresql+asyncpg://app@db1/shop"))
'asyncpg'
>>> driver_package(make_url("mysql+mysqldb://app@db1/shop"))
'mysqlclient'
>>> driver_package(make_url("mariadb+mariadbconnector://app@db1/shop"))
'mariadb'
>>> driver_hint(make_url("mysql+aiomysql://app@db1/shop"))
"install it: 'pip install aiomysql' (or use rwsplit's default driver: 'mysql+pymysql://...')"
"""

from __future__ import annotations

from sqlalchemy.engine import URL

__all__ = ["driver_hint", "driver_package", "missing_driver", "unsupported_backend"]

EXAMPLE_URL = "mysql+pymysql://user:password@host:3306/dbname"
EXAMPLE_PG_URL = "postgresql+psycopg://user:password@host:5432/dbname"

# SQLAlchemy's MySQL/MariaDB drivers and the PyPI package that provides each. A URL without
# a driver (``mysql://``) means SQLAlchemy's default, mysqldb.
_PACKAGES = {
    "pymysql": "PyMySQL",
    "mysqldb": "mysqlclient",
    "aiomysql": "aiomysql",
    "asyncmy": "asyncmy",
    "mariadbconnector": "mariadb",
    "mysqlconnector": "mysql-connector-python",
    "cymysql": "cymysql",
    "pyodbc": "pyodbc",
    # PostgreSQL
    "psycopg": "psycopg",
    "psycopg_async": "psycopg",
    "asyncpg": "asyncpg",
    "psycopg2": "psycopg2-binary",
}
_BACKENDS = ("mysql", "mariadb", "postgresql")


def unsupported_backend(url: URL) -> str | None:
    """Why *url* cannot be a node of an rwsplit cluster, or ``None`` when it can."""
    if url.get_backend_name() in _BACKENDS:
        return None
    return (
        f"{url.get_backend_name()} URLs are not supported: rwsplit is for MySQL/MariaDB and "
        f"PostgreSQL clusters; use a URL such as '{EXAMPLE_URL}' or '{EXAMPLE_PG_URL}'"
    )


def driver_package(url: URL) -> str | None:
    """The PyPI package of *url*'s driver (``None``: not a driver rwsplit knows)."""
    return _PACKAGES.get(url.get_driver_name() or "mysqldb")


def driver_hint(url: URL) -> str:
    """What to do when *url*'s driver cannot be imported (no password in it)."""
    unsupported = unsupported_backend(url)
    if unsupported is not None:
        return unsupported
    package = driver_package(url)
    if package is None:
        return f"install the package that provides the {url.drivername!r} driver"
    hint = f"install it: 'pip install {package}'"
    if url.get_backend_name() == "postgresql":
        if package != "psycopg":
            hint += " (or use rwsplit's default driver: 'postgresql+psycopg://...')"
    elif package != "PyMySQL":
        hint += " (or use rwsplit's default driver: 'mysql+pymysql://...')"
    return hint


def missing_driver(url: URL, exc: ImportError) -> str:
    """The message for a driver that cannot be imported: what to install, or that the URL
    is not a MySQL/MariaDB or PostgreSQL one at all."""
    return unsupported_backend(url) or (
        f"the driver for {url.drivername!r} is not installed ({exc}); {driver_hint(url)}"
    )
