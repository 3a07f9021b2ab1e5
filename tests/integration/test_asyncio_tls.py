"""TLS with the asyncio drivers: rwsplit's TLS settings become the drivers' SSLContext."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import text

from rwsplit import ConfigurationError, TLSConfig
from rwsplit.sandbox import Sandbox

from .async_util import DRIVERS, async_cluster, async_url, run
from .test_tls import Certs, certs, tls_sandbox

pytestmark = pytest.mark.integration

__all__ = ["certs", "tls_sandbox"]  # fixtures shared with test_tls


@pytest.mark.parametrize("driver", DRIVERS)
def test_verified_tls_to_every_node(tls_sandbox: Sandbox, certs: Certs, driver: str) -> None:
    async def work() -> tuple[str, str, int]:
        c = async_cluster(
            tls_sandbox, driver, tls=TLSConfig(ca=str(certs.ca)), monitor_interval=0.1
        )
        async with c, c.async_session() as s:
            query = text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            on_replica = (await s.execute(query)).one()[1]
            with s.use_primary():
                on_primary = (await s.execute(query)).one()[1]
            assert c.monitor is not None
            start = c.monitor.rounds
            while c.monitor.rounds < start + 2:  # bounded by the timeout below
                await asyncio.sleep(0.01)
            healthy = sum(n.healthy for n in c.topology.nodes)
            return str(on_replica), str(on_primary), healthy

    on_replica, on_primary, healthy = run(asyncio.wait_for(work(), 30))
    assert on_replica and on_primary  # require_secure_transport: only TLS gets in anyway
    assert healthy == 2  # the monitor's PyMySQL probes use the same TLS settings


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_untrusted_certificate_is_a_configuration_error(
    tls_sandbox: Sandbox, certs: Certs, driver: str
) -> None:
    async def work() -> None:
        c = async_cluster(tls_sandbox, driver, tls=TLSConfig(ca=str(certs.other_ca)))
        async with c, c.async_session() as s:
            with pytest.raises(ConfigurationError, match="TLS handshake"):
                await s.execute(text("/* rwsplit:primary */ SELECT 1"))

    run(work())


@pytest.mark.parametrize("driver", DRIVERS)
def test_client_certificate(tls_sandbox: Sandbox, certs: Certs, driver: str) -> None:
    from rwsplit import Cluster

    url = async_url(f"mysql+pymysql://certuser@127.0.0.1:{tls_sandbox.primary.port}/", driver)
    tls = TLSConfig(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key))

    async def work() -> str:
        async with Cluster(url, tls=tls) as c, c.async_session() as s:
            return str((await s.execute(text("SELECT CURRENT_USER()"))).scalar_one())

    assert run(work()).startswith("certuser@")


def _sockets_to(ports: set[int]) -> int:
    """How many of this process's TCP sockets are connected to one of *ports* (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) in ports:
                    count += 1
    return count


@pytest.mark.parametrize("driver", DRIVERS)
def test_tls_connections_are_closed_when_the_cluster_is(
    tls_sandbox: Sandbox, certs: Certs, driver: str
) -> None:
    """A TLS socket closes only after the TLS shutdown, which needs the event loop: closing
    the cluster waits for it. (On SQLAlchemy releases without terminate() on these adapters,
    close() closed the transport and returned; when the loop ended first, the sockets were
    left open.)"""
    ports = {n.port for n in tls_sandbox.nodes}

    async def work() -> tuple[int, int]:
        c = async_cluster(
            tls_sandbox, driver, tls=TLSConfig(ca=str(certs.ca)), engine_options={"pool_size": 8}
        )
        async with c:

            async def one() -> None:
                async with c.async_session() as s, s.begin():
                    await s.execute(text("/* rwsplit:primary */ SELECT SLEEP(0.05)"))

            await asyncio.gather(*(one() for _ in range(8)))
            opened = _sockets_to(ports)
        return opened, _sockets_to(ports)

    opened, left = run(work())
    assert opened >= 8
    assert left == 0
