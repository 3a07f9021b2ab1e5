"""Small checks for option values, shared by :class:`~rwsplit.Cluster`, the monitor and
:mod:`rwsplit.config`.

Each check takes the option's *name* as the user wrote it (``"causal_timeout"``,
``"replicas[1]"``, ``"db.properties line 4: db.cloud.causalTimeout"``) and the value, and
returns the value in its normal form, or raises :class:`~rwsplit.ConfigurationError` as
``"<name>: expected <what>, got <value>"``. So a wrong value fails when the cluster is made,
not later in a background thread (``inf`` seconds overflows ``Event.wait``; ``nan`` compares
false with everything and turns every bound off).

``text=True`` also accepts the text form of a value (``"2.5"``, ``"true"``), as
configuration files and the environment hold them. Secret values (passwords, URLs) are never
echoed: their messages show the type only.

>>> duration("causal_timeout", 0.5)
0.5
>>> duration("causal_timeout", float("nan"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rwsplit.errors.ConfigurationError: causal_timeout: expected a number of seconds >= 0 ..., got nan
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigurationError, SecretError
from .secrets import looks_encrypted

if TYPE_CHECKING:
    from ..routing.consistency import ReadYourWrites

__all__ = [
    "MAX_SECONDS",
    "admin_account",
    "boolean",
    "callables",
    "duration",
    "failover_options",
    "instance",
    "integer",
    "invalid",
    "jdbc_urls",
    "mapping",
    "masked",
    "number",
    "optional_duration",
    "password",
    "plain_password",
    "port",
    "read_your_writes",
    "sequence",
    "split_host",
    "text",
    "url",
    "with_method",
]

log = logging.getLogger("rwsplit.config")

T = TypeVar("T")

MAX_SECONDS = 86_400.0
"""Longest duration any option takes (a day): beyond it a value is a mistake, and far beyond
it ``threading`` waits overflow."""

_NONE_WORDS = ("none", "off", "")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def invalid(name: str, expected: str, value: object, *, secret: bool = False) -> ConfigurationError:
    """The error for *value* of option *name*; a secret value is shown by its type only.

    >>> str(invalid("password", "a string", 5, secret=True))
    'password: expected a string, got a value of type int'
    """
    got = f"a value of type {type(value).__name__}" if secret else _shown(value)
    return ConfigurationError(f"{name}: expected {expected}, got {got}")


def _fail(name: str, expected: str, value: object, secret: bool = False) -> NoReturn:
    raise invalid(name, expected, value, secret=secret)


# ---------------------------------------------------------------------------------- scalars


def boolean(name: str, value: object, *, text: bool = False) -> bool:
    """``True`` or ``False`` (an ``int`` or ``"false"`` is refused: both are truthy traps).

    >>> boolean("tls", "Yes", text=True)
    True
    """
    if isinstance(value, bool):
        return value
    if text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    _fail(name, "true or false", value)


def _to_float(value: object, text: bool) -> float | None:
    """The number in *value*, or None when it is not a number (a bool is not one)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if text and isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def number(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    expected: str | None = None,
    text: bool = False,
) -> float:
    """A finite number in ``[low, high]`` (``(low, high]`` with *low_open*), as a float.

    >>> number("weight", 2, low=0, high=10)
    2.0
    """
    if expected is None:
        expected = f"a number {'>' if low_open else '>='} {low:g} and <= {high:g}"
    result = _to_float(value, text)
    if (
        result is None
        or not math.isfinite(result)
        or result > high
        or result < low
        or (low_open and result == low)
    ):
        _fail(name, expected, value)
    return result


def duration(name: str, value: object, *, positive: bool = False, text: bool = False) -> float:
    """Seconds: finite, ``>= 0`` (``> 0`` if *positive*) and at most :data:`MAX_SECONDS`."""
    op = ">" if positive else ">="
    return number(
        name,
        value,
        low=0.0,
        high=MAX_SECONDS,
        low_open=positive,
        expected=f"a number of seconds {op} 0 and <= {MAX_SECONDS:g}",
        text=text,
    )


def optional_duration(
    name: str, value: object, *, positive: bool = False, text: bool = False
) -> float | None:
    """``None`` (also ``"none"`` / ``"off"`` / ``""`` with *text*), or :func:`duration`."""
    if value is None or (text and isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    try:
        return duration(name, value, positive=positive, text=text)
    except ConfigurationError:
        op = ">" if positive else ">="
        _fail(name, f"a number of seconds {op} 0 and <= {MAX_SECONDS:g}, or none", value)


def integer(
    name: str,
    value: object,
    *,
    low: int,
    high: int | None = None,
    expected: str | None = None,
    text: bool = False,
) -> int:
    """A whole number in ``[low, high]`` (a ``bool`` or ``2.5`` is refused).

    >>> integer("failure_threshold", "3", low=1, text=True)
    3
    """
    if expected is None:
        expected = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
    result: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        result = int(value)
    if text and isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        result = int(value)
    if result is None or result < low or (high is not None and result > high):
        _fail(name, expected, value)
    return result


def port(name: str, value: object, *, text: bool = False) -> int:
    """A TCP port number, 1-65535."""
    return integer(name, value, low=1, high=65535, expected="a port number 1-65535", text=text)


def text(name: str, value: object, *, secret: bool = False) -> str:
    """A non-empty string, stripped."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    _fail(name, "a non-empty string", value, secret)


def password(name: str, value: object) -> str:
    """Any string, kept as written (spaces may belong to it); never echoed."""
    if isinstance(value, str):
        return value
    _fail(name, "a string", value, secret=True)


def plain_password(name: str, value: object) -> str:
    """:func:`password`, refusing an ``ENC(...)`` value: only :mod:`rwsplit.config` decrypts.

    A ``Cluster`` given ``ENC(...)`` would send it to the server as the password and fail
    the login on every node, far from the cause.
    """
    result = password(name, value)
    if looks_encrypted(result):
        raise SecretError(
            f"{name} is an ENC(...) value, and Cluster takes plain passwords: load it through "
            "rwsplit.config, which decrypts it (e.g. Cluster.from_dict({'primary_url': url}) "
            "with the key in $RWSPLIT_ENCRYPTION_KEY)"
        )
    return result


# ---------------------------------------------------------------------------------- objects


def mapping(name: str, value: object) -> dict[str, Any]:
    """A mapping with string keys, copied into a dict."""
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    _fail(name, "a table / dict with string keys", value)


def instance(name: str, value: object, cls: type[T], expected: str) -> T:
    """*value* when it is a *cls*."""
    if isinstance(value, cls):
        return value
    _fail(name, expected, value)


def with_method(name: str, value: T, method: str, expected: str) -> T:
    """*value* when it has a callable *method* (a duck-typed protocol such as a balancer)."""
    if callable(getattr(value, method, None)):
        return value
    _fail(name, expected, value)


def callables(name: str, value: object) -> tuple[Callable[..., Any], ...]:
    """An iterable of callables, as a tuple (a single callable is refused: wrap it in a list).

    >>> callables("on_topology_change", [print]) == (print,)
    True
    """
    expected = "a list of callables fn(old, new)"
    if callable(value):
        _fail(name, expected + " (wrap a single callback in a list)", value)
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        _fail(name, expected, value)
    items = tuple(value)
    for i, item in enumerate(items):
        if not callable(item):
            _fail(f"{name}[{i}]", "a callable fn(old, new)", item)
    return items


def sequence(name: str, value: object, expected: str) -> tuple[Any, ...]:
    """An iterable of items (not a string, a URL or a mapping), as a tuple."""
    if isinstance(value, (str, bytes, URL, Mapping)) or not isinstance(value, Iterable):
        _fail(name, expected, value, secret=True)  # may hold URLs with passwords
    return tuple(value)


def read_your_writes(name: str, value: object) -> ReadYourWrites:
    """A :class:`~rwsplit.consistency.ReadYourWrites`, or its name (any case)."""
    from ..routing.consistency import ReadYourWrites

    if isinstance(value, ReadYourWrites):
        return value
    if isinstance(value, str):
        try:
            return ReadYourWrites(value.strip().lower())
        except ValueError:
            pass
    _fail(name, "one of 'gtid', 'primary', 'off'", value)


def admin_account(
    user: object, secret: object, *, user_name: str = "admin_user", password_name: str = ""
) -> tuple[str, str | None] | None:
    """``(user, password)`` of the admin account, or None; a password needs its user."""
    password_name = password_name or user_name.replace("user", "password")
    if user is None:
        if secret is not None:
            raise ConfigurationError(
                f"{password_name} is set but {user_name} is not: give the account's user "
                "name too, or leave both out to use each node URL's account"
            )
        return None
    return text(user_name, user), None if secret is None else plain_password(password_name, secret)


def failover_options(name: str, value: object, *, account: bool = True) -> Any:
    """``None`` or a :class:`~rwsplit.failover.FailoverOptions` with sane fields.

    *account*: a replication user is required (not on PostgreSQL, whose standbys keep the
    credentials of their own ``primary_conninfo``).
    """
    if value is None:
        return None
    from ..topology.failover import FailoverOptions

    options = instance(name, value, FailoverOptions, "a rwsplit.failover.FailoverOptions")
    if account or options.replication_user:
        text(f"{name}.replication_user", options.replication_user)
    plain_password(f"{name}.replication_password", options.replication_password)
    for field in ("preferred", "never_promote"):
        items = sequence(f"{name}.{field}", getattr(options, field), "a list of host:port names")
        for i, item in enumerate(items):
            text(f"{name}.{field}[{i}]", item)
    integer(f"{name}.confirm_attempts", options.confirm_attempts, low=1)
    duration(f"{name}.confirm_interval", options.confirm_interval)
    duration(f"{name}.apply_timeout", options.apply_timeout, positive=True)
    duration(f"{name}.timeout", options.timeout, positive=True)
    return options


# ---------------------------------------------------------------------------------- URLs

_EXAMPLE = "'mysql+pymysql://user:password@host:3306/dbname'"
_QUERY_CREDENTIALS = {"user": "username", "password": "password", "passwd": "password"}


def masked(value: URL) -> str:
    """*value* as text with its password shown as ``***``."""
    return value.render_as_string(hide_password=True)


def url(name: str, value: object, *, encrypted: bool = False) -> URL:
    """A SQLAlchemy URL (or URL text, or a single-host JDBC URL) of one node.

    The host must be there and the port, if given, 1-65535; ``?user=`` / ``?password=``
    query parameters become the URL's own fields, so that the URL's ``repr`` masks them. The
    password is never echoed; it may be ``ENC(...)`` only with *encrypted* (the caller
    decrypts it).

    >>> url("primary", "mysql+pymysql://db1/shop?user=app&password=pw")
    mysql+pymysql://app:***@db1/shop
    """
    if isinstance(value, str) and value.strip().lower().startswith("jdbc:"):
        urls = jdbc_urls(name, value)
        if len(urls) > 1:
            raise ConfigurationError(
                f"{name}: expected a JDBC URL with one host; a replication URL names the "
                "whole cluster: use Cluster.from_dict({'primary_url': ...}) for it"
            )
        result = urls[0]
    elif isinstance(value, URL):
        result = value
    elif isinstance(value, str):
        try:
            result = make_url(value.strip())
        except ValueError:
            # make_url int()s the port: the text after the host's colon may be part of a
            # password with an unescaped '/', '@' or ':', so none of it is echoed.
            raise ConfigurationError(
                f"{name}: the URL's port is not a number 1-65535; expected a URL such as "
                f"{_EXAMPLE} (percent-encode '@', ':' and '/' in the password)"
            ) from None
        except ArgumentError:
            raise ConfigurationError(
                f"{name} is not a valid SQLAlchemy URL; expected a URL such as {_EXAMPLE}"
            ) from None
    else:
        _fail(name, "a URL string or sqlalchemy.engine.URL", value, secret=True)
    result = _checked_url(name, _query_credentials(name, result))
    if not encrypted and result.password is not None:
        plain_password(f"{name}: the password in the URL", result.password)
    return result


def _query_credentials(name: str, value: URL) -> URL:
    """``?user=`` / ``?password=`` moved into the URL's fields (its repr masks only those)."""
    found = {k: v for k, v in value.query.items() if k.lower() in _QUERY_CREDENTIALS}
    if not found:
        return value
    fields: dict[str, str] = {}
    for key, raw in found.items():
        part = _QUERY_CREDENTIALS[key.lower()]
        item = raw if isinstance(raw, str) else (raw[-1] if len(raw) == 1 else None)
        if item is None or part in fields or getattr(value, part) is not None:
            what = "user name" if part == "username" else "password"
            raise ConfigurationError(
                f"{name}: the URL gives the {what} twice (in the URL and as ?{key}=); give it once"
            )
        fields[part] = item
    return value.difference_update_query(found).set(
        username=fields.get("username"), password=fields.get("password")
    )


def _checked_url(name: str, value: URL) -> URL:
    host = value.host
    if not host:
        raise ConfigurationError(
            f"{name} ({masked(value)}) has no host; rwsplit needs host and port to tell the "
            "nodes apart"
        )
    if "@" in host or "/" in host or any(c.isspace() for c in host):
        # Likely user info that was not split off: the text may hold the password.
        raise ConfigurationError(
            f"{name}: the URL's host holds '@', '/' or a blank; give user and password "
            f"before the host ({_EXAMPLE}) and percent-encode them"
        )
    if value.port is not None and (
        isinstance(value.port, bool)
        or not isinstance(value.port, int)
        or not 1 <= value.port <= 65535
    ):
        raise ConfigurationError(
            f"{name}: expected a port number 1-65535, got {value.port!r} (in {masked(value)})"
        )
    return value


# ---------------------------------------------------------------------------------- JDBC

# ENC(...) in user info may hold base64's "/", which would otherwise end the host list.
_JDBC = re.compile(
    r"jdbc:(?P<kind>mysql|mariadb)(?::(?P<mode>[a-z]+))?://(?P<hosts>(?:ENC\([^)]*\)|[^/?])*)"
    r"(?:/(?P<db>[^?]*))?(?:\?(?P<query>.*))?",
    re.IGNORECASE | re.DOTALL,
)
_JDBC_MODES = ("replication", "loadbalance", "failover", "sequential", "aurora")
_TLS_OFF = ("false", "0", "no", "disabled", "disable", "preferred")
DEFAULT_DRIVER = "mysql+pymysql"


def split_host(entry: str, default_port: int | None) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; ValueError if the port is bad."""
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        host, port_text = entry, ""
    if not host:
        raise ValueError(entry)
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(entry)
    return host, int(port_text)


def _jdbc_params(query: str) -> dict[str, str]:
    # Not parse_qsl: it turns "+" into a blank, and base64 ENC(...) values hold "+".
    params = {}
    for pair in query.split("&"):
        key, _, val = pair.partition("=")
        if key:
            params[unquote(key)] = unquote(val)
    return params


def _user_info(entry: str) -> tuple[str | None, str | None, str]:
    """``user:password@host:port`` → (user, password, ``host:port``), percent-decoded."""
    info, at, hostport = entry.rpartition("@")
    if not at:
        return None, None, entry
    user, colon, secret = info.partition(":")
    return unquote(user) or None, unquote(secret) if colon else None, hostport


def _bad_jdbc_host(name: str, entry: str) -> ConfigurationError:
    hint = "(percent-encode '@', ':', ',' and '/' in the user name and password)"
    if re.fullmatch(r"[^:@\[\]]+:\d+|\[[0-9A-Fa-f:.]+\]:\d+", entry):
        return ConfigurationError(
            f"{name}: {entry!r} in the JDBC URL is not host[:port] with a port number "
            f"1-65535 {hint}"
        )
    # Not echoed: a password with an unescaped '/' or ',' ends up here, cut in pieces.
    return ConfigurationError(
        f"{name}: a host in the JDBC URL is not host[:port] with a port number 1-65535 "
        f"{hint}; the text is not shown, it may hold part of a password"
    )


def jdbc_urls(name: str, value: str) -> list[URL]:
    """A Connector/J or MariaDB JDBC URL as SQLAlchemy URLs: the primary, then replicas.

    ``jdbc:mysql:replication://primary,replica1,replica2/db?user=...&password=...``; each
    host may carry its own ``user:password@`` (Connector/J's per-host credentials), which
    wins over the ``user`` / ``password`` parameters. Passwords are never echoed.

    >>> [masked(u) for u in jdbc_urls("url", "jdbc:mysql://app:s3cret@db1:3307/shop")]
    ['mysql+pymysql://app:***@db1:3307/shop']
    """
    m = _JDBC.fullmatch(value.strip())
    if m is None:
        raise ConfigurationError(
            f"{name}: expected jdbc:mysql://host[:port][,host...]/database[?...]"
        )
    mode = (m["mode"] or "").lower()
    if mode and mode not in _JDBC_MODES:
        raise ConfigurationError(
            f"{name}: jdbc:{m['kind']}:{mode}: is not a JDBC URL kind rwsplit reads; "
            f"write jdbc:{m['kind']}:replication://primary,replica,.../db"
        )
    entries = [_user_info(h) for h in m["hosts"].split(",") if h.strip()]
    if not entries:
        raise ConfigurationError(f"{name}: the JDBC URL has no host")
    if len(entries) > 1 and mode != "replication":
        kind = f"Connector/J {mode or 'failover'}"
        raise ConfigurationError(
            f"{name}: a JDBC URL with several hosts and no ':replication' is {kind}, not "
            f"read/write splitting; write jdbc:{m['kind']}:replication://primary,replica,.../db "
            "(first host is the primary)"
        )
    params = _jdbc_params(m["query"] or "")
    user, secret = params.pop("user", None), params.pop("password", None)
    tls = [k for k, val in params.items() if re.search("ssl|tls", k, re.IGNORECASE)]
    asked = [k for k in tls if params[k].strip().lower() not in _TLS_OFF]
    if asked:
        raise ConfigurationError(
            f"{name}: the JDBC URL asks for TLS ({', '.join(asked)}), and rwsplit "
            "does not translate JDBC TLS parameters; remove them and set tls_ca (and "
            "tls_cert / tls_key) instead"
        )
    ignored = [k for k in params if k not in tls]
    if ignored:
        log.info("%s: JDBC URL parameters ignored: %s", name, ", ".join(sorted(ignored)))
    own = [e for e in entries if e[0] is not None or e[1] is not None]
    if own and len(own) < len(entries) and user is None:
        raise ConfigurationError(
            f"{name}: user info (user:password@) is given for some hosts of the JDBC URL "
            "only; in Connector/J it applies to its own host: give it for every host, or "
            "once as ?user=...&password=..."
        )
    urls = []
    for host_user, host_secret, hostport in entries:
        try:
            host, host_port = split_host(hostport, 3306)
        except ValueError:
            raise _bad_jdbc_host(name, hostport.strip()) from None
        own_info = host_user is not None or host_secret is not None
        result = URL.create(
            DEFAULT_DRIVER,
            username=host_user if own_info else user,
            password=host_secret if own_info else secret,
            host=host,
            port=host_port,
            database=unquote(m["db"]) if m["db"] else None,
        )
        urls.append(_checked_url(name, result))
    return urls
