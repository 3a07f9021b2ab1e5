"""asyncio set-up errors and helpers that need no server."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.util import greenlet_spawn

from rwsplit import Cluster, ConfigurationError
from rwsplit._async_drivers import is_async_url
from rwsplit.asyncio import AsyncRoutingSession, _in_greenlet, _tls_to_ssl_context

# Port 1 on loopback: nothing listens there, and these tests must fail before connecting.
AIO = "mysql+aiomysql://app:s3cret@127.0.0.1:1/shop"
AIO2 = "mysql+asyncmy://app:s3cret@127.0.0.2:1/shop"
SYNC = "mysql+pymysql://app:s3cret@127.0.0.3:1/shop"


@pytest.mark.parametrize("make", ["async_session", "async_sessionmaker", "class"])
def test_async_session_on_a_blocking_driver_says_which_drivers_work(make: str) -> None:
    with (
        Cluster(SYNC, [SYNC.replace(".3:", ".4:")]) as c,
        pytest.raises(ConfigurationError) as info,
    ):
        if make == "class":
            AsyncRoutingSession(c)
        else:
            getattr(c, make)()
    message = str(info.value)
    assert "mysql+pymysql" in message and "mysql+aiomysql" in message
    assert "mysql+asyncmy" in message and "s3cret" not in message


def test_mixed_drivers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="same kind of driver") as info:
        Cluster(AIO, [SYNC])
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigurationError, match="same kind of driver"):
        Cluster(SYNC, [AIO])


def test_both_asyncio_drivers_may_be_mixed() -> None:
    with Cluster(AIO, [AIO2]) as c:
        assert c.async_sessionmaker().class_ is AsyncRoutingSession


@pytest.mark.parametrize("url", [AIO, AIO2])
def test_sync_session_on_async_urls_is_refused_before_connecting(url: str) -> None:
    with Cluster(url) as c, c.session() as s:
        with pytest.raises(ConfigurationError, match=r"cluster\.async_session\(\)"):
            s.execute(text("SELECT 1"))
        with pytest.raises(ConfigurationError, match=r"cluster\.async_session\(\)"):
            s.execute(text("INSERT INTO t VALUES (1)"))


def test_an_async_cluster_that_never_connected_closes_either_way() -> None:
    Cluster(AIO, [AIO2]).close()

    async def main() -> None:
        async with Cluster(AIO, [AIO2]) as c:
            assert c.async_session().cluster is c
        c.close()  # already closed: a no-op

    asyncio.run(main())


def test_in_greenlet_tells_async_session_code_from_plain_code() -> None:
    """Pins the one private SQLAlchemy helper rwsplit uses (spelt differently in 2.0/2.1)."""

    async def main() -> bool:
        return bool(await greenlet_spawn(_in_greenlet))

    assert _in_greenlet() is False
    assert asyncio.run(main()) is True


def test_is_async_url() -> None:
    assert is_async_url(make_url(AIO)) and is_async_url(make_url(AIO2))
    assert not is_async_url(make_url(SYNC))
    assert not is_async_url(make_url("nosuchdialect://u@h/db"))


def test_tls_settings_become_an_ssl_context() -> None:
    args = _tls_to_ssl_context({"ssl_verify_cert": True, "ssl_verify_identity": True, "x": 1})
    context = args["ssl"]
    assert isinstance(context, ssl.SSLContext) and args["x"] == 1
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    loose = _tls_to_ssl_context({"ssl_verify_cert": False, "ssl_verify_identity": False})["ssl"]
    assert not loose.check_hostname and loose.verify_mode is ssl.CERT_NONE
    assert _tls_to_ssl_context({"ssl_disabled": True}) == {}


def test_a_missing_asyncio_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiomysql", None)  # import aiomysql -> ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'rwsplit\[asyncio\]'") as info:
        Cluster(AIO)
    assert "s3cret" not in str(info.value)


def test_sync_clusters_need_no_greenlet() -> None:
    """Sync applications never import SQLAlchemy's asyncio extension (it needs greenlet)."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["greenlet"] = None  # as if greenlet were not installed
        from rwsplit import Cluster, ConfigurationError
        Cluster({SYNC!r}, [{SYNC.replace(".3:", ".4:")!r}]).close()
        assert "sqlalchemy.ext.asyncio" not in sys.modules
        try:
            Cluster({AIO!r})
        except ConfigurationError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "greenlet" in out and "pip install 'rwsplit[asyncio]'" in out


def test_async_with_a_sync_cluster_closes_it() -> None:
    async def main() -> Cluster:
        async with Cluster(SYNC) as c:
            engine = c.write_engine()
        assert engine.pool.checkedin() == 0  # type: ignore[attr-defined]
        return c

    asyncio.run(main())
