"""Flask and Flask-SQLAlchemy on a replicated cluster: ``RwSplit(app, db=db)``.

The whole set-up, with Flask-SQLAlchemy 3.x::

    db = SQLAlchemy()
    app.config.update(
        RWSPLIT_PRIMARY_URL="mysql+pymysql://app:secret@db1/shop",
        RWSPLIT_REPLICA_URLS=["mysql+pymysql://app:secret@db2/shop"],
        SECRET_KEY=secret_key,
    )
    RwSplit(app, db=db)          # no SQLALCHEMY_DATABASE_URI, no db.init_app(app)

``db.session``, ``Model.query``, ``db.paginate`` route through the cluster (reads on
replicas, writes on the primary); ``db.engine`` / ``db.engines[None]`` *is* the cluster's
primary engine, so ``db.create_all()`` and migrations run DDL on the primary and no second
pool exists. Without Flask-SQLAlchemy, :attr:`RwSplit.session` is a routed session per
request (application context), removed at teardown.

Settings come from ``app.config``: ``RWSPLIT_PRIMARY_URL``, ``RWSPLIT_REPLICA_URLS`` (a list
or a comma-separated string), every :class:`~rwsplit.Cluster` option as ``RWSPLIT_<OPTION>``
(``RWSPLIT_MAX_REPLICA_LAG``, ``RWSPLIT_MONITOR_INTERVAL`` ...), or ``RWSPLIT_CONFIG_FILE``
(a TOML or ``db.properties`` file, relative to the app's root path; ``RWSPLIT_CONFIG_KEY``
its table / key prefix; other
``RWSPLIT_*`` keys override it). An unknown ``RWSPLIT_*`` key is an error naming it.

Read-your-writes across requests: a request whose session committed a write sends its
causal token in a cookie signed with ``app.secret_key``; the next request's session starts
from it, so a POST -> redirect -> GET reads its own write (a replica that has applied it,
else the primary). ``RWSPLIT_CAUSAL_COOKIE`` names the cookie (``False`` turns it off),
``RWSPLIT_CAUSAL_COOKIE_MAX_AGE`` is its lifetime in seconds; path, domain, ``Secure`` and
``SameSite`` follow Flask's session cookie settings.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import weakref
from collections.abc import Mapping
from difflib import get_close_matches
from typing import Any, cast

try:
    from flask import Flask, Response, current_app, g, has_app_context, has_request_context
    from flask import request as flask_request
    from flask.globals import app_ctx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rwsplit.flask needs Flask: pip install 'rwsplit[flask]' (Flask and Flask-SQLAlchemy)"
    ) from exc

from sqlalchemy.engine import Engine
from sqlalchemy.orm import scoped_session, sessionmaker

from .cluster import Cluster
from .config import OPTIONS, load_settings, settings_from_dict
from .errors import ConfigurationError, RwSplitError
from .integrations._causal_cookie import DEFAULT_COOKIE_NAME, DEFAULT_MAX_AGE, CausalCookie
from .integrations.sqlalchemy import RoutingSession
from .topology.model import Topology

__all__ = ["FlaskRoutingSession", "RwSplit", "RwSplitState", "cluster_from_config"]

log = logging.getLogger("rwsplit.flask")

PREFIX = "RWSPLIT_"
EXTENSION_KEY = "rwsplit"

# Settings of this integration, not of the cluster.
_FLASK_KEYS = frozenset({"CAUSAL_COOKIE", "CAUSAL_COOKIE_MAX_AGE", "CONFIG_FILE", "CONFIG_KEY"})
# Cluster keyword arguments that take Python objects, passed through as they are.
_OBJECT_KEYS = frozenset({"BALANCER", "ON_TOPOLOGY_CHANGE", "FAILOVER_OPTIONS", "NODE_TLS"})
_SETTING_KEYS = frozenset(
    spelling.upper() for o in OPTIONS for spelling in (o.name, *o.aliases)
) | {"TLS"}

_INCOMING = "_rwsplit_incoming_token"
_LATEST = "_rwsplit_latest_token"


class RwSplitState:
    """What :class:`RwSplit` keeps per application, in ``app.extensions["rwsplit"]``."""

    def __init__(self, cluster: Cluster, *, owns_cluster: bool, cookie: CausalCookie | None):
        self.cluster = cluster
        """The :class:`~rwsplit.Cluster` of this application."""
        self.owns_cluster = owns_cluster
        """True when the extension built the cluster (and closes it at exit)."""
        self.cookie = cookie
        """The causal-token cookie, or ``None`` when turned off."""

    def incoming_token(self) -> str | None:
        """The verified causal token the current request brought (``None`` outside one)."""
        if self.cookie is None or not has_request_context():
            return None
        if _INCOMING not in g:
            setattr(g, _INCOMING, self.cookie.loads(flask_request.cookies.get(self.cookie.name)))
        return cast("str | None", g.get(_INCOMING))

    def close(self) -> None:
        """Close the cluster if the extension built it (idempotent)."""
        if self.owns_cluster:
            self.cluster.close()


def _state(app: Flask | None = None) -> RwSplitState:
    target = app if app is not None else current_app
    try:
        return cast(RwSplitState, target.extensions[EXTENSION_KEY])
    except KeyError:
        raise ConfigurationError(
            "this Flask app has no RwSplit extension: call RwSplit(app) or ext.init_app(app) "
            "before using its sessions"
        ) from None


def _remember(token: str | None) -> None:
    if token is not None and has_app_context():
        setattr(g, _LATEST, token)


class FlaskRoutingSession(RoutingSession):
    """A :class:`~rwsplit.RoutingSession` on the current app's cluster that continues the
    current request's causal chain (the token from the cookie)."""

    def __init__(self, cluster: Cluster | None = None, **kwargs: Any) -> None:
        state = _state()
        kwargs.setdefault("causal_token", state.incoming_token())
        super().__init__(cluster if cluster is not None else state.cluster, **kwargs)

    def close(self) -> None:
        # The token must survive db.session.remove() inside a view: the cookie is set later.
        _remember(self.causal_token)
        super().close()


def _app_ctx_id() -> int:
    """One session per application context (per request), as Flask-SQLAlchemy scopes it."""
    return id(cast(Any, app_ctx)._get_current_object())


class RwSplit:
    """The Flask extension: ``RwSplit(app, db=db)`` or ``ext = RwSplit(db=db)`` then
    ``ext.init_app(app)``.

    :param app: the application (else call :meth:`init_app` later, once per application).
    :param db: a Flask-SQLAlchemy 3.x ``SQLAlchemy()`` instance; the extension initialises it
        (do not call ``db.init_app`` yourself nor set ``SQLALCHEMY_DATABASE_URI``).
    :param cluster: a ready :class:`~rwsplit.Cluster` instead of one built from
        ``app.config`` (you close it yourself).
    """

    def __init__(
        self, app: Flask | None = None, *, db: Any = None, cluster: Cluster | None = None
    ) -> None:
        self.db = db
        self._cluster = cluster
        self._session: scoped_session[RoutingSession] | None = None
        if db is None:
            self._session = scoped_session(
                sessionmaker(class_=FlaskRoutingSession), scopefunc=_app_ctx_id
            )
        if app is not None:
            self.init_app(app)

    # ------------------------------------------------------------------ set-up

    def init_app(self, app: Flask) -> None:
        """Build the cluster from ``app.config``, initialise ``db``, install the cookie hooks."""
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError(
                "RwSplit is already registered on this Flask app; use that instance"
            )
        cookie = _cookie_from_config(app)
        owns = self._cluster is None
        cluster = self._cluster if self._cluster is not None else cluster_from_config(app.config)
        try:
            state = RwSplitState(cluster, owns_cluster=owns, cookie=cookie)
            app.extensions[EXTENSION_KEY] = state
            if self.db is not None:
                _init_flask_sqlalchemy(self.db, app, cluster)
            else:
                app.teardown_appcontext(self._remove_session)
        except BaseException:
            app.extensions.pop(EXTENSION_KEY, None)
            if owns:
                cluster.close()
            raise
        if cookie is not None:
            app.after_request(self._send_causal_cookie)
        if owns:
            atexit.register(_close_if_alive, weakref.ref(cluster))
        log.debug("rwsplit initialised for app %s: %r", app.name, cluster)

    # ------------------------------------------------------------------ use

    @property
    def session(self) -> scoped_session[RoutingSession]:
        """The routed session of the current request (``db.session`` with Flask-SQLAlchemy)."""
        if self.db is not None:
            return cast("scoped_session[RoutingSession]", self.db.session)
        assert self._session is not None
        return self._session

    @property
    def cluster(self) -> Cluster:
        """The current application's :class:`~rwsplit.Cluster` (needs an app context)."""
        return _state().cluster

    # ------------------------------------------------------------------ hooks

    def _remove_session(self, exc: BaseException | None) -> None:
        self.session.remove()

    def _current_token(self) -> str | None:
        registry = self.session.registry
        if registry.has():
            _remember(registry().causal_token)
        return cast("str | None", g.get(_LATEST))

    def _send_causal_cookie(self, response: Response) -> Response:
        state = _state()
        cookie = state.cookie
        if cookie is None:
            return response
        token = self._current_token()
        if token is None or token == state.incoming_token():
            return response
        app = current_app
        interface = app.session_interface
        response.set_cookie(
            cookie.name,
            cookie.dumps(token),
            max_age=cookie.max_age,
            path=interface.get_cookie_path(app),
            domain=interface.get_cookie_domain(app),
            secure=interface.get_cookie_secure(app),
            httponly=True,
            samesite=interface.get_cookie_samesite(app),
        )
        return response


def _close_if_alive(ref: weakref.ReferenceType[Cluster]) -> None:
    cluster = ref()
    if cluster is not None:
        cluster.close()


# ---------------------------------------------------------------------------------- config


def _rwsplit_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """``RWSPLIT_*`` entries of *config*, prefix removed; unknown keys are errors."""
    found = {k[len(PREFIX) :]: v for k, v in config.items() if k.startswith(PREFIX)}
    known = _SETTING_KEYS | _FLASK_KEYS | _OBJECT_KEYS
    for key in found:
        if key.upper() not in known:
            close = get_close_matches(key.upper(), sorted(known), n=1)
            hint = f"; did you mean {PREFIX}{close[0]}?" if close else ""
            raise ConfigurationError(
                f"app.config[{PREFIX + key!r}] is not an rwsplit setting{hint} "
                "(every Cluster option is RWSPLIT_<OPTION>, see docs/configuration.md)"
            )
    return found


def cluster_from_config(config: Mapping[str, Any]) -> Cluster:
    """A :class:`~rwsplit.Cluster` from the ``RWSPLIT_*`` keys of a Flask config.

    >>> cluster_from_config({"RWSPLIT_PRIMARY_URL": "mysql+pymysql://app@db1/shop",
    ...                      "RWSPLIT_REPLICA_URLS": "mysql+pymysql://app@db2/shop"})
    <Cluster db1:3306(primary), db2:3306(replica)>
    """
    found = _rwsplit_keys(config)
    objects = {k.lower(): v for k, v in found.items() if k.upper() in _OBJECT_KEYS}
    options = {
        k.lower(): v for k, v in found.items() if k.upper() in _SETTING_KEYS and v is not None
    }
    if found.get("TLS") is not None and not isinstance(found["TLS"], (bool, str)):
        objects["tls"] = options.pop("tls")  # a TLSConfig
    path = found.get("CONFIG_FILE")
    if path:
        # Relative to the app's root, as Flask's own config.from_file() reads files.
        root = getattr(config, "root_path", None)
        if root is not None:
            path = os.path.join(root, path)
        settings = load_settings(path, key=found.get("CONFIG_KEY"), overrides=options)
    else:
        if not options.get("primary_url") and not options.get("host"):
            raise ConfigurationError(
                "RwSplit needs to know where the cluster is: set RWSPLIT_PRIMARY_URL "
                "(and RWSPLIT_REPLICA_URLS) or RWSPLIT_CONFIG_FILE in app.config"
            )
        settings = settings_from_dict(options, source="app.config")
    return Cluster.from_settings(settings, **objects)


def _cookie_from_config(app: Flask) -> CausalCookie | None:
    name = app.config.get(PREFIX + "CAUSAL_COOKIE", DEFAULT_COOKIE_NAME)
    if name is False or name is None:
        return None
    if name is True:
        name = DEFAULT_COOKIE_NAME
    max_age = app.config.get(PREFIX + "CAUSAL_COOKIE_MAX_AGE", DEFAULT_MAX_AGE)
    if not app.secret_key:
        raise ConfigurationError(
            "RwSplit signs its causal-token cookie with the app's secret key and none is set: "
            "set SECRET_KEY, or RWSPLIT_CAUSAL_COOKIE=False to turn read-your-writes across "
            "requests off"
        )
    return CausalCookie(app.secret_key, name=name, max_age=max_age)


# ------------------------------------------------------------------------ Flask-SQLAlchemy


def _init_flask_sqlalchemy(db: Any, app: Flask, cluster: Cluster) -> None:
    """Initialise Flask-SQLAlchemy 3.x so every session, query and DDL uses *cluster*.

    Flask-SQLAlchemy offers no public hook for either, so the two places that touch it are
    here, pinned by tests/integration/test_flask_sqlalchemy.py: its session class gains
    :class:`FlaskRoutingSession` (its sessions are created with ``db=``), and its engine
    factory ``_make_engine`` (documented as the customisation point of ``init_app``) returns
    the cluster's primary engine instead of creating a second pool.
    """
    for key in ("SQLALCHEMY_DATABASE_URI", "SQLALCHEMY_BINDS", "SQLALCHEMY_ENGINE_OPTIONS"):
        if app.config.get(key):
            raise ConfigurationError(
                f"{key} is set, but with RwSplit the cluster is the database: remove it "
                "(RWSPLIT_PRIMARY_URL / RWSPLIT_REPLICA_URLS say where the cluster is, "
                "RWSPLIT_ENGINE_OPTIONS sets pool options)"
            )
    factory = getattr(db.session, "session_factory", None)
    if not isinstance(factory, sessionmaker) or not callable(
        getattr(type(db), "_make_engine", None)
    ):
        raise ConfigurationError(
            f"{type(db).__name__} does not look like Flask-SQLAlchemy 3.x's SQLAlchemy; "
            "rwsplit.flask supports Flask-SQLAlchemy >= 3.1 (pip install 'rwsplit[flask]')"
        )
    base = factory.class_
    if issubclass(base, RoutingSession) and not issubclass(base, FlaskRoutingSession):
        raise ConfigurationError(
            "do not pass class_=RoutingSession in the SQLAlchemy(session_options=...): "
            "RwSplit sets the session class itself"
        )
    if not issubclass(base, FlaskRoutingSession):
        factory.class_ = type(base.__name__, (FlaskRoutingSession, base), {})

    # Shown by Flask-SQLAlchemy's repr and CLI only; the password is masked.
    app.config["SQLALCHEMY_DATABASE_URI"] = cluster.write_engine().url.render_as_string(
        hide_password=True
    )

    def primary_engine(bind_key: str | None, options: dict[str, Any], app: Flask) -> Engine:
        return cluster.write_engine()

    setattr(db, "_make_engine", primary_engine)  # noqa: B010 - an instance override
    try:
        db.init_app(app)
    finally:
        delattr(db, "_make_engine")
    with app.app_context():
        engines = db.engines
    if isinstance(engines, dict):
        cluster.subscribe(_FollowPrimary(engines, cluster))


class _FollowPrimary:
    """Keeps ``db.engines[None]`` on the current primary after a failover or switchover."""

    def __init__(self, engines: dict[str | None, Engine], cluster: Cluster) -> None:
        self._engines = engines
        self._cluster = weakref.ref(cluster)

    def __call__(self, old: Topology, new: Topology) -> None:
        cluster = self._cluster()
        if cluster is None:
            return
        # No primary right now: keep the last one until the next change.
        with contextlib.suppress(RwSplitError):
            self._engines[None] = cluster.write_engine()
