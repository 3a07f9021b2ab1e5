"""Read-your-writes across requests: the causal token travels with the user.

After a POST that wrote, the redirected GET may run in another worker whose replicas have not
applied the write yet. :class:`ReadYourWritesMiddleware` runs each request in a
:func:`~rwsplit.django.causal_scope`: tokens (alias -> GTID of the user's last write) come in
from a signed cookie (or the Django session) and go back out when the request wrote; the
backend makes a replica wait for them before it reads there (or reads the primary).

Settings:

``RWSPLIT_CAUSAL_STORE``
    ``"cookie"`` (default; signed with ``django.core.signing``) or ``"session"``.
``RWSPLIT_CAUSAL_COOKIE_NAME``
    cookie (or session key) name, default ``"rwsplit_causal"``.
``RWSPLIT_CAUSAL_COOKIE_AGE``
    seconds a token is honoured, default ``60`` (longer than any replica lag worth waiting
    for: an older token is always applied).

Works under WSGI and ASGI: the scope is a context variable, not a thread-local.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core import signing
from django.core.exceptions import ImproperlyConfigured

from ._context import CausalScope, causal_scope

__all__ = ["ReadYourWritesMiddleware"]

log = logging.getLogger("rwsplit.django")

_SALT = "rwsplit.django.causal"


class ReadYourWritesMiddleware:
    """Carry each user's causal tokens from the request that wrote to the ones that follow."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings  # not at import: doctest collection has no settings

        self.get_response = get_response
        self.secure = bool(getattr(settings, "SESSION_COOKIE_SECURE", False))
        self.store = getattr(settings, "RWSPLIT_CAUSAL_STORE", "cookie")
        if self.store not in ("cookie", "session"):
            raise ImproperlyConfigured(
                f"RWSPLIT_CAUSAL_STORE must be 'cookie' or 'session', got {self.store!r}"
            )
        self.name = getattr(settings, "RWSPLIT_CAUSAL_COOKIE_NAME", "rwsplit_causal")
        self.max_age = int(getattr(settings, "RWSPLIT_CAUSAL_COOKIE_AGE", 60))
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        with causal_scope(self.load(request)) as scope:
            response = self.get_response(request)
        return self.save(request, response, scope)

    async def _acall(self, request: Any) -> Any:
        with causal_scope(self.load(request)) as scope:
            get_response: Callable[[Any], Awaitable[Any]] = self.get_response
            response = await get_response(request)
        return self.save(request, response, scope)

    def load(self, request: Any) -> dict[str, str]:
        """The tokens the request carries (none when absent, expired or tampered with)."""
        try:
            if self.store == "session":
                data = request.session.get(self.name)
                if not data:
                    return {}
                tokens = signing.loads(data, salt=_SALT, max_age=self.max_age)
            else:
                raw = request.COOKIES.get(self.name)
                if not raw:
                    return {}
                tokens = signing.loads(raw, salt=_SALT, max_age=self.max_age)
        except signing.BadSignature:  # expired or forged: no token, reads may be stale-free
            return {}
        except AttributeError:
            raise ImproperlyConfigured(
                "RWSPLIT_CAUSAL_STORE='session' needs SessionMiddleware before "
                "ReadYourWritesMiddleware"
            ) from None
        if not isinstance(tokens, dict):
            return {}
        return {str(k): str(v) for k, v in tokens.items() if isinstance(v, str)}

    def save(self, request: Any, response: Any, scope: CausalScope) -> Any:
        """Send new tokens back (only when this request wrote)."""
        if not scope.changed:
            return response
        value = signing.dumps(scope.tokens, salt=_SALT, compress=True)
        if self.store == "session":
            request.session[self.name] = value
        else:
            response.set_cookie(
                self.name,
                value,
                max_age=self.max_age,
                httponly=True,
                samesite="Lax",
                secure=self.secure,
            )
        return response
