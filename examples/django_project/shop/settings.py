"""Settings of the example shop: one database alias, the whole cluster.

The nodes come from the environment so that the same project runs on a sandbox
(``rwsplit sandbox up``) or a real cluster:

    SHOP_DB_PRIMARY=127.0.0.1:3306  SHOP_DB_REPLICAS=127.0.0.1:3307,127.0.0.1:3308
    SHOP_DB_USER=app  SHOP_DB_PASSWORD='ENC(...)'  RWSPLIT_ENCRYPTION_KEY_FILE=rwsplit.key
"""

import os

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rwsplit.django",  # manage.py rwsplit_topology
    "orders",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "rwsplit.django.middleware.ReadYourWritesMiddleware",
]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"


def _host_port(value):
    host, _, port = value.rpartition(":")
    return host, int(port)


if "SHOP_DB_PRIMARY" not in os.environ:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("set SHOP_DB_PRIMARY=host:port (and SHOP_DB_REPLICAS=h:p,h:p)")
_primary_host, _primary_port = _host_port(os.environ["SHOP_DB_PRIMARY"])
_replicas = [r for r in os.environ.get("SHOP_DB_REPLICAS", "").split(",") if r]

DATABASES = {
    "default": {
        "ENGINE": "rwsplit.django",
        "NAME": os.environ.get("SHOP_DB_NAME", "shop"),
        "USER": os.environ.get("SHOP_DB_USER", "root"),
        "PASSWORD": os.environ.get("SHOP_DB_PASSWORD", ""),  # ENC(...) works
        "HOST": _primary_host,
        "PORT": _primary_port,
        "REPLICAS": [{"HOST": h, "PORT": p} for h, p in map(_host_port, _replicas)],
        "RWSPLIT": {
            "max_replica_lag": 2.0,
            "causal_timeout": float(os.environ.get("SHOP_CAUSAL_TIMEOUT", "0.5")),
        },
        "CONN_MAX_AGE": 60,
    }
}

# Read-your-writes across requests: the causal token in a signed cookie, one minute.
RWSPLIT_CAUSAL_STORE = "cookie"
RWSPLIT_CAUSAL_COOKIE_NAME = "rwsplit_causal"
RWSPLIT_CAUSAL_COOKIE_AGE = 60
