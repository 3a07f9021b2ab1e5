"""Passwords never show: not in logs, reprs, node errors or exceptions, even when nodes fail.

The nodes here are closed loopback ports: connecting fails at once, which is all these tests
need from a server (the failure paths that log and mark nodes down).
"""

from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path

import pytest
from rwsplit.secrets import encrypt
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from rwsplit import Cluster, RwSplitError

PASSWORD = "Pw-7c1e!secret"
KEY = "key-for-the-secrecy-test"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_failing_cluster_from_an_encrypted_config_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RWSPLIT_ENCRYPTION_KEY", KEY)
    props = tmp_path / "db.properties"
    props.write_text(
        f"db.host=127.0.0.1\ndb.port={closed_port()}\ndb.username=app\n"
        f"db.password=ENC({encrypt(PASSWORD, KEY)})\ndb.name=shop\n"
        f"db.replicaHosts=127.0.0.1:{closed_port()}\ndb.connectTimeout=2\n"
    )
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    with Cluster.from_properties(props, key="db") as cluster:
        assert cluster.write_engine().url.password == PASSWORD  # it is there, for the driver
        with cluster.session() as session:
            try:
                session.execute(text("SELECT 1"))  # replica fails, then the primary
            except (OperationalError, RwSplitError) as exc:
                failures.append(exc)
        shown = [
            repr(cluster),
            repr(cluster.topology),
            *(repr(n) for n in cluster.topology.nodes),
            *(str(n.error) for n in cluster.topology.nodes),
            *(n.safe_url for n in cluster.topology.nodes),
        ]
    assert failures, "the read should have failed: no node is up"
    assert any("marked down" in r.getMessage() for r in caplog.records)
    text_seen = "\n".join(
        [caplog.text, *shown, *("".join(traceback.format_exception(e)) for e in failures)]
    )
    assert PASSWORD not in text_seen
    assert KEY not in text_seen


def test_configuration_errors_never_show_the_password(tmp_path: Path) -> None:
    props = tmp_path / "db.properties"
    props.write_text(f"db.host=h\ndb.password={PASSWORD}\ndb.port=bad\n")
    with pytest.raises(RwSplitError) as info:
        Cluster.from_properties(props, key="db")
    assert PASSWORD not in str(info.value)
    with pytest.raises(RwSplitError) as info:
        Cluster.from_dict({"primary_url": f"mysql+pymysql://app:{PASSWORD}@/shop"})
    assert PASSWORD not in str(info.value)
    with pytest.raises(RwSplitError) as info:
        Cluster.from_dict({"primary_url": f"mysql+pymysql://app:{PASSWORD}@h/a", "password": "x"})
    assert PASSWORD not in str(info.value)


def test_a_bad_url_list_is_not_echoed() -> None:
    with pytest.raises(RwSplitError) as info:
        Cluster.from_dict(
            {
                "primary_url": "mysql+pymysql://u@h/a",
                "replica_urls": [f"mysql+pymysql://u:{PASSWORD}@r/a", 5],
            }
        )
    assert "replica_urls: expected a list of strings" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_failing_cluster_from_a_jdbc_url_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: "user:password@host" was taken for the host, so the password was in every node
    # name: the Cluster repr, "marked down" warnings, errors.
    props = tmp_path / "app.properties"
    props.write_text(
        f"db.url=jdbc:mysql:replication://app:{PASSWORD}@127.0.0.1:{closed_port()},"
        f"app:{PASSWORD}@127.0.0.1:{closed_port()}/shop?connectTimeout=2000\n"
        "db.connectTimeout=2\n"
    )
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    with Cluster.from_properties(props, key="db") as cluster:
        assert cluster.write_engine().url.password == PASSWORD
        assert all(n.url.username == "app" for n in cluster.topology.nodes)
        with cluster.session() as session:
            try:
                session.execute(text("SELECT 1"))
            except (OperationalError, RwSplitError) as exc:
                failures.append(exc)
        shown = [
            repr(cluster),
            repr(cluster.topology),
            *(repr(n) for n in cluster.topology.nodes),
            *(str(n.error) for n in cluster.topology.nodes),
            *(n.safe_url for n in cluster.topology.nodes),
        ]
    assert failures, "the read should have failed: no node is up"
    assert any("marked down" in r.getMessage() for r in caplog.records)
    text_seen = "\n".join(
        [
            caplog.text,
            *(r.getMessage() for r in caplog.records),
            *shown,
            *("".join(traceback.format_exception(e)) for e in failures),
        ]
    )
    assert PASSWORD not in text_seen
