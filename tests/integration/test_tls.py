"""TLS to every node, verified: a sandbox whose servers use a CA made for this test.

The servers run with ``--require-secure-transport=ON``, so any plain connection is refused.
PyMySQL tries TLS on its own when a server offers it (without checking the certificate), so
the tests also show that verification is really on: a cluster that trusts another CA cannot
connect, and an account that requires a client certificate can only log in with one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from rwsplit import Cluster, ConfigurationError, TLSConfig
from rwsplit.sandbox import Sandbox

from ..fix_sandbox import require_server

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"openssl {' '.join(args)} failed: {proc.stderr}"


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _make_leaf(d: Path, name: str, ca: str, ext: str) -> None:
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr",
        cwd=d,
    )  # fmt: skip
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the TLS tests, but openssl is missing", pytrace=False)
        pytest.skip("no openssl on PATH (apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    for p in d.iterdir():
        p.chmod(0o644)  # the server may run as another user than the test
    return Certs(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        other_ca=d / "other-ca.pem",
    )


@pytest.fixture(scope="module")
def tls_sandbox(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_server()
    sb = Sandbox(
        replicas=1,
        base_dir=tmp_path_factory.mktemp("tls-sandbox"),
        server_args=[
            f"--ssl-ca={certs.ca}",
            f"--ssl-cert={certs.server_cert}",
            f"--ssl-key={certs.server_key}",
        ],
    )
    sb.start()
    try:
        for node in sb.nodes:
            # After replication is wired up: from now on only TLS connections get in.
            with contextlib.closing(node.connect()) as conn, conn.cursor() as cur:
                cur.execute("SET GLOBAL require_secure_transport = ON")
        with contextlib.closing(sb.primary.connect()) as conn, conn.cursor() as cur:
            cur.execute("CREATE USER 'certuser'@'%' REQUIRE X509")
            cur.execute("GRANT SELECT ON *.* TO 'certuser'@'%'")
        sb.wait_caught_up()
        yield sb
    finally:
        sb.stop()


def _cipher(cluster: Cluster, writable: bool) -> str:
    engine = cluster.write_engine() if writable else cluster.read_engine()
    with engine.connect() as conn:
        row = conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()
        secure = conn.execute(text("SELECT @@require_secure_transport")).scalar_one()
    assert secure == 1
    return str(row[1])


def test_verified_tls_to_every_node(tls_sandbox: Sandbox, certs: Certs) -> None:
    with Cluster(
        tls_sandbox.primary_url, tls_sandbox.replica_urls, tls=TLSConfig(ca=str(certs.ca))
    ) as cluster:
        assert _cipher(cluster, writable=True)
        assert _cipher(cluster, writable=False)
        assert cluster.read_route() is not None  # the read above went to the replica


def test_monitor_probes_over_tls(tls_sandbox: Sandbox, certs: Certs) -> None:
    """The monitor's own connections use the cluster's TLS settings too."""
    with Cluster(
        tls_sandbox.primary_url, tls_sandbox.replica_urls, tls=TLSConfig(ca=str(certs.ca))
    ) as cluster:
        topology = cluster.refresh()
        assert all(n.healthy for n in topology.nodes), [n.error for n in topology.nodes]
        assert topology.primary is not None
        assert topology.primary.name == tls_sandbox.primary.address
        assert [n.name for n in topology.readable_replicas()] == [tls_sandbox.replicas[0].address]
    # And they verify: with a CA that did not sign the servers' certificates, probes fail.
    with Cluster(
        tls_sandbox.primary_url, tls_sandbox.replica_urls, tls=TLSConfig(ca=str(certs.other_ca))
    ) as cluster:
        topology = cluster.refresh()
        assert not any(n.healthy for n in topology.nodes)
        assert all("CERTIFICATE_VERIFY_FAILED" in (n.error or "") for n in topology.nodes)


def test_untrusted_server_certificate_is_refused(tls_sandbox: Sandbox, certs: Certs) -> None:
    with (
        Cluster(tls_sandbox.primary_url, tls=TLSConfig(ca=str(certs.other_ca))) as cluster,
        pytest.raises(ConfigurationError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        _cipher(cluster, writable=True)


def test_plain_connections_are_refused(tls_sandbox: Sandbox) -> None:
    # MariaDB 10.11 answers a plain login under require_secure_transport with error 1045,
    # MySQL with 3159 ("insecure transport"); the same URL gets in over TLS
    # (test_verified_tls_to_every_node).
    refused = r"\(1045, \"Access denied|\(3159, 'Connections using insecure transport"
    with (
        Cluster(tls_sandbox.primary_url, tls=TLSConfig(disabled=True)) as cluster,
        pytest.raises(OperationalError, match=refused),
    ):
        _cipher(cluster, writable=True)


def test_client_certificate_from_a_config_file(
    tls_sandbox: Sandbox, certs: Certs, tmp_path: Path
) -> None:
    primary, replica = tls_sandbox.primary, tls_sandbox.replicas[0]
    config = tmp_path / "rwsplit.toml"
    config.write_text(
        f"""
[rwsplit]
host = "127.0.0.1"
port = {primary.port}
username = "certuser"
replica_hosts = ["127.0.0.1:{replica.port}"]

[rwsplit.tls]
ca = "{certs.ca}"
cert = "{certs.client_cert}"
key = "{certs.client_key}"
"""
    )
    with Cluster.from_toml(config) as cluster:
        assert _cipher(cluster, writable=True)
        assert _cipher(cluster, writable=False)
    # The same account without a client certificate is turned away.
    no_cert = f"mysql+pymysql://certuser@127.0.0.1:{primary.port}/"
    with (
        Cluster(no_cert, tls=TLSConfig(ca=str(certs.ca))) as cluster,
        pytest.raises(OperationalError, match="1045"),
    ):
        _cipher(cluster, writable=True)


def test_server_identity_is_checked(tls_sandbox: Sandbox, certs: Certs) -> None:
    # The server's certificate names 127.0.0.1 only: reached as "localhost", the identity
    # check fails, and passes once it is turned off (the chain is still verified).
    url = f"mysql+pymysql://root@localhost:{tls_sandbox.primary.port}/"
    with (
        Cluster(url, tls=TLSConfig(ca=str(certs.ca))) as cluster,
        pytest.raises(ConfigurationError, match="mismatch"),
    ):
        _cipher(cluster, writable=True)
    with Cluster(url, tls=TLSConfig(ca=str(certs.ca), verify_identity=False)) as cluster:
        assert _cipher(cluster, writable=True)
