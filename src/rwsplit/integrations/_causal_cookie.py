"""The causal token in a signed cookie, shared by the Flask and FastAPI integrations.

A request that committed a write hands its :attr:`~rwsplit.RoutingSession.causal_token` (the
GTID of that commit) to the browser; the next request (the GET after a POST/redirect, maybe on
another worker) starts its session from it, so it never reads older data than its own write.

The cookie is signed (itsdangerous, with the application's secret key) and timestamped: a
forged or stale token would only make reads wait for a GTID the primary never wrote, so
unsigned, expired or malformed values are ignored, never trusted.
"""

from __future__ import annotations

import logging

from itsdangerous import BadData, URLSafeTimedSerializer

from ..errors import ConfigurationError

__all__ = ["DEFAULT_COOKIE_NAME", "DEFAULT_MAX_AGE", "CausalCookie"]

log = logging.getLogger("rwsplit.web")

DEFAULT_COOKIE_NAME = "rwsplit_causal"
DEFAULT_MAX_AGE = 60
"""Seconds the browser keeps the token: far longer than any replica should lag."""

_SALT = "rwsplit.causal-token"


class CausalCookie:
    """Signs and verifies the causal-token cookie.

    >>> cookie = CausalCookie("not-a-real-secret")
    >>> cookie.loads(cookie.dumps("0-1-42"))
    '0-1-42'
    >>> cookie.loads("0-1-42") is None          # unsigned: ignored
    True
    """

    def __init__(
        self,
        secret_key: str | bytes | None,
        *,
        name: str = DEFAULT_COOKIE_NAME,
        max_age: int = DEFAULT_MAX_AGE,
    ) -> None:
        if not secret_key:
            raise ConfigurationError(
                "the causal-token cookie is signed with the application's secret key, and "
                "none is set: set one (Flask: SECRET_KEY), or turn the cookie off "
                "(Flask: RWSPLIT_CAUSAL_COOKIE=False)"
            )
        if not name or not isinstance(name, str):
            raise ConfigurationError(f"the causal cookie name must be a non-empty string: {name!r}")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age <= 0:
            raise ConfigurationError(
                f"the causal cookie max age must be a whole number of seconds > 0: {max_age!r}"
            )
        self.name = name
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret_key, salt=_SALT)

    def dumps(self, token: str) -> str:
        """The cookie value carrying *token*."""
        return self._serializer.dumps(token)

    def loads(self, value: str | None) -> str | None:
        """The token in *value*, or ``None`` when absent, forged, expired or malformed."""
        if not value:
            return None
        try:
            token = self._serializer.loads(value, max_age=self.max_age)
        except BadData as exc:
            log.debug("ignoring causal cookie %s: %s", self.name, type(exc).__name__)
            return None
        return token if isinstance(token, str) and token else None
