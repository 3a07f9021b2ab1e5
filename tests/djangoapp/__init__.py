"""A tiny Django app and in-process settings for the rwsplit.django integration tests (MySQL
and PostgreSQL).

:func:`configure` sets Django up once per process (``settings.configure``); :func:`add_alias`
points a database alias at a sandbox cluster, so tests on different sandboxes use different
aliases in the same process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rwsplit.sandbox import Sandbox

if TYPE_CHECKING:
    from rwsplit.sandbox.postgresql import PgSandbox

_configured = False


def configure() -> None:
    """Configure Django for the tests (idempotent)."""
    global _configured
    if _configured:
        return
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="rwsplit-tests-only",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=[
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "rwsplit.django",
                "tests.djangoapp",
            ],
            DATABASES={},
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "rwsplit.django.middleware.ReadYourWritesMiddleware",
            ],
            ROOT_URLCONF="tests.djangoapp.urls",
            USE_TZ=True,
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
            # django.test imports staticfiles, whose lazy storage any gc.get_objects() /
            # isinstance() sweep of another test evaluates: give it what it needs.
            STATIC_URL="/static/",
        )
    django.setup()
    _configured = True


def node_settings(sandbox: Sandbox, **rwsplit: Any) -> dict[str, Any]:
    """A DATABASES entry for *sandbox* (its replicas as HOST/PORT dicts)."""
    from rwsplit.sandbox import DATABASE

    primary = sandbox.primary
    return {
        "ENGINE": "rwsplit.django",
        "NAME": DATABASE,
        "USER": "root",
        "PASSWORD": "",
        "HOST": primary.host,
        "PORT": primary.port,
        "REPLICAS": [{"HOST": r.host, "PORT": r.port} for r in sandbox.replicas],
        "RWSPLIT": rwsplit,
        "CONN_MAX_AGE": 0,
    }


def pg_node_settings(sandbox: PgSandbox, **rwsplit: Any) -> dict[str, Any]:
    """A DATABASES entry for a PostgreSQL *sandbox* (``rwsplit.django.postgresql``)."""
    from rwsplit.sandbox.postgresql import DATABASE, USER

    primary = sandbox.primary
    return {
        "ENGINE": "rwsplit.django.postgresql",
        "NAME": DATABASE,
        "USER": USER,
        "PASSWORD": primary.password,
        "HOST": primary.host,
        "PORT": primary.port,
        "REPLICAS": [{"HOST": s.host, "PORT": s.port} for s in sandbox.standbys],
        "RWSPLIT": rwsplit,
        "CONN_MAX_AGE": 0,
    }


def add_alias(alias: str, entry: dict[str, Any]) -> None:
    """Make *alias* a database of the running process (filled with Django's defaults)."""
    configure()
    from django.db import connections

    filled = connections.configure_settings({"default": {}, alias: dict(entry)})
    connections.settings[alias] = filled[alias]
    if hasattr(connections._connections, alias):
        delattr(connections._connections, alias)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run *fn* in a new thread: a new DatabaseWrapper, as another worker would have (its
    connections closed after)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def run() -> Any:
        try:
            return fn(*args)
        finally:
            for conn in connections.all(initialized_only=True):
                conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(timeout=60)


def drop_alias(alias: str) -> None:
    """Close and forget *alias* (in this thread) and its cluster."""
    from django.db import connections

    if hasattr(connections._connections, alias):
        connections[alias].close()
        connections[alias].cluster.close()
        delattr(connections._connections, alias)
    connections.settings.pop(alias, None)
