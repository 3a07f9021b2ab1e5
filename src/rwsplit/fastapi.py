"""FastAPI (and any Starlette app) on a replicated cluster: session dependencies with
read-your-writes across requests.

::

    rw = RwSplit(cluster, secret_key=settings.secret_key)
    app = FastAPI()
    rw.init_app(app)                     # the causal-token cookie middleware

    SessionDep = Annotated[RoutingSession, Depends(rw.session)]

    @app.post("/orders")
    def create_order(session: SessionDep) -> ...:
        session.add(order)
        session.commit()                 # primary; the token goes into the response's cookie

A request whose session committed a write gets the session's
:attr:`~rwsplit.RoutingSession.causal_token` back in a signed cookie; the next request's
session starts from it, so a POST -> redirect -> GET (on any worker) never reads older data
than its own write. The cookie is written by a small ASGI middleware when the response starts,
not by the dependency: FastAPI copies a dependency's response headers before the dependency's
clean-up runs, and whether that clean-up runs before or after the response is sent has changed
between FastAPI versions.

:meth:`RwSplit.async_session` is the ``async`` dependency: an
:class:`sqlalchemy.ext.asyncio.AsyncSession` routing like :class:`~rwsplit.RoutingSession`,
on a cluster of ``mysql+aiomysql://`` URLs (needs ``sqlalchemy[asyncio]`` and aiomysql) or of
``postgresql+psycopg_async://`` / ``postgresql+asyncpg://`` ones. On PostgreSQL the cookie
carries an LSN token (``pg:0/3000148``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Literal

try:
    from starlette.datastructures import MutableHeaders
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("rwsplit.fastapi needs FastAPI: pip install 'rwsplit[fastapi]'") from exc

from .cluster import Cluster
from .errors import ConfigurationError
from .integrations._causal_cookie import DEFAULT_COOKIE_NAME, DEFAULT_MAX_AGE, CausalCookie
from .integrations.sqlalchemy import RoutingSession

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["CausalCookieMiddleware", "RwSplit", "aclose_cluster"]

log = logging.getLogger("rwsplit.fastapi")

_STATE_KEY = "rwsplit_causal"


class _RequestTokens:
    """The causal token a request brought, and the sessions that may advance it."""

    def __init__(self, incoming: str | None) -> None:
        self.incoming = incoming
        self._sessions: list[RoutingSession] = []
        self._latest: str | None = None

    def track(self, session: RoutingSession) -> None:
        self._sessions.append(session)

    def remember(self, token: str | None) -> None:
        if token is not None:
            self._latest = token

    def latest(self) -> str | None:
        """The token of the request's last committed write (or what it brought)."""
        for s in self._sessions:  # sessions not closed yet, in creation order
            self.remember(s.causal_token)
        return self._latest if self._latest is not None else self.incoming


class RwSplit:
    """Routed-session dependencies for FastAPI with the causal token in a signed cookie.

    :param cluster: the :class:`~rwsplit.Cluster` (for :meth:`async_session`: of
        ``mysql+aiomysql://`` URLs).
    :param secret_key: signs the cookie; keep it secret and the same on every worker.
        ``None`` with ``cookie=False``: no cookie, read-your-writes within a request only.
    :param cookie: the cookie's name, or ``False`` to send none.
    :param max_age: the cookie's lifetime in seconds.
    :param secure: send the cookie over HTTPS only.
    :param samesite: the cookie's ``SameSite``.
    :param session_options: keyword arguments for every session (``expire_on_commit`` ...).
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        secret_key: str | bytes | None,
        cookie: str | Literal[False] = DEFAULT_COOKIE_NAME,
        max_age: int = DEFAULT_MAX_AGE,
        secure: bool = False,
        samesite: Literal["lax", "strict", "none"] = "lax",
        path: str = "/",
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.cluster = cluster
        self.cookie = (
            None if cookie is False else CausalCookie(secret_key, name=cookie, max_age=max_age)
        )
        self.secure = secure
        self.samesite = samesite
        self.path = path
        self.session_options = dict(session_options or {})
        self._async_maker: Any = None

    def init_app(self, app: Any) -> None:
        """Add the cookie middleware to a FastAPI / Starlette *app*."""
        app.add_middleware(CausalCookieMiddleware, rwsplit=self)

    # ------------------------------------------------------------------ dependencies

    def session(self, request: HTTPConnection) -> Iterator[RoutingSession]:
        """Dependency: a :class:`~rwsplit.RoutingSession` for this request, closed after it,
        continuing the causal chain of the browser's last write."""
        tokens = self._tokens(request)
        session = self.cluster.session(causal_token=tokens.incoming, **self.session_options)
        tokens.track(session)
        try:
            yield session
        finally:
            tokens.remember(session.causal_token)
            session.close()

    async def async_session(self, request: HTTPConnection) -> AsyncIterator[AsyncSession]:
        """Dependency: an :class:`~sqlalchemy.ext.asyncio.AsyncSession` routed like
        :class:`~rwsplit.RoutingSession` (same rules, hints, read-your-writes)."""
        tokens = self._tokens(request)
        session = self._async_sessionmaker()(causal_token=tokens.incoming)
        sync_session = session.sync_session
        if isinstance(sync_session, RoutingSession):
            tokens.track(sync_session)
        try:
            yield session
        finally:
            if isinstance(sync_session, RoutingSession):
                tokens.remember(sync_session.causal_token)
            await session.close()

    def _async_sessionmaker(self) -> Any:
        if self._async_maker is None:
            factory = getattr(self.cluster, "async_sessionmaker", None)
            if callable(factory):
                self._async_maker = factory(**self.session_options)
            else:
                try:
                    from sqlalchemy.ext.asyncio import async_sessionmaker
                except ImportError as exc:
                    raise ConfigurationError(
                        f"async sessions need SQLAlchemy's asyncio support ({exc}); "
                        "pip install 'sqlalchemy[asyncio]' aiomysql"
                    ) from None
                self._async_maker = async_sessionmaker(
                    sync_session_class=RoutingSession, cluster=self.cluster, **self.session_options
                )
        return self._async_maker

    def _tokens(self, request: HTTPConnection) -> _RequestTokens:
        tokens = request.scope.get("state", {}).get(_STATE_KEY)
        if tokens is None:
            if self.cookie is not None:
                raise ConfigurationError(
                    "the rwsplit cookie middleware is not installed: call rw.init_app(app) "
                    "(or pass cookie=False to go without read-your-writes across requests)"
                )
            tokens = _RequestTokens(None)
        return tokens  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ the cookie

    def _cookie_header(self, token: str) -> str:
        assert self.cookie is not None
        jar: SimpleCookie = SimpleCookie()
        jar[self.cookie.name] = self.cookie.dumps(token)
        morsel = jar[self.cookie.name]
        morsel["max-age"] = self.cookie.max_age
        morsel["path"] = self.path
        morsel["httponly"] = True
        morsel["samesite"] = self.samesite
        if self.secure:
            morsel["secure"] = True
        return morsel.OutputString()


async def aclose_cluster(cluster: Cluster) -> None:
    """Close *cluster* from async code (a FastAPI lifespan): its ``aiomysql`` connections are
    closed on the event loop, where they live, instead of failing with ``MissingGreenlet``."""
    aclose = getattr(cluster, "aclose", None)
    if callable(aclose):  # a Cluster with native asyncio support
        await aclose()
        return
    from sqlalchemy.util import greenlet_spawn

    await greenlet_spawn(cluster.close)


class CausalCookieMiddleware:
    """ASGI middleware: reads the causal-token cookie of each request and, when the request's
    sessions committed a newer write, sets it on the response (added by
    :meth:`RwSplit.init_app`)."""

    def __init__(self, app: ASGIApp, rwsplit: RwSplit) -> None:
        self.app = app
        self.rwsplit = rwsplit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cookie = self.rwsplit.cookie
        if scope["type"] != "http" or cookie is None:
            await self.app(scope, receive, send)
            return
        tokens = _RequestTokens(cookie.loads(HTTPConnection(scope).cookies.get(cookie.name)))
        scope.setdefault("state", {})[_STATE_KEY] = tokens

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                token = tokens.latest()
                if token is not None and token != tokens.incoming:
                    headers = MutableHeaders(scope=message)
                    headers.append("set-cookie", self.rwsplit._cookie_header(token))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
