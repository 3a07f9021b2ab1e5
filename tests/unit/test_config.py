"""Configuration sources: dict, environment, TOML, db.properties — one option table."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from rwsplit.secrets import encrypt

from rwsplit import Cluster, ConfigurationError, SecretError, TLSConfig
from rwsplit.config import (
    OPTIONS,
    load_settings,
    parse_properties,
    settings_from_dict,
    settings_from_env,
    settings_from_properties,
    settings_from_toml,
)

KEY = "k3y"
# Made by Jasypt 1.9.3's CLI: input="hello wörld" password=k3y (PBEWithMD5AndDES)
JASYPT_DES = "S3DQHsQy05+sQD6y+sYmwssTJI2Ebhot"
NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def key_file(tmp_path: Path, key: str = KEY) -> Path:
    p = tmp_path / "rwsplit.key"
    p.write_text(key + "\n")
    p.chmod(0o600)
    return p


# ---------------------------------------------------------------------------------- properties


def test_properties_parser_follows_java() -> None:
    text = (
        "# comment\n"
        "! also a comment\n"
        "   \n"
        "a.b = one\n"
        "a.c:two\n"
        "a.d three\n"
        "a.e = x\\\n"
        "      y\\\\\n"
        "a\\=f = \\u00e9\\tz\n"
        "a.g=\n"
        "a.h = ENC(ab+c/=)  \n"
    )
    assert parse_properties(text) == [
        ("a.b", "one", 4),
        ("a.c", "two", 5),
        ("a.d", "three", 6),
        ("a.e", "xy\\", 7),
        ("a=f", "é\tz", 9),
        ("a.g", "", 10),
        ("a.h", "ENC(ab+c/=)  ", 11),
    ]


DB_PROPERTIES = f"""\
    # the application's database
    db.cloud.host=db1.example.com
    db.cloud.port=3307
    db.cloud.username=app
    db.cloud.password=ENC({JASYPT_DES})
    db.cloud.name=shop
    db.cloud.replicaHosts=db2.example.com, db3.example.com:3308
    db.cloud.validationQuery=SELECT 1
    db.cloud.testOnBorrow=true
    db.cloud.maxActive=20
    db.cloud.maxIdle=5
    db.cloud.driverClassName=com.mysql.cj.jdbc.Driver
    db.cloud.maxReplicaLag=2.5
    db.cloud.fallback-to-primary=false
    db.cloud.connectTimeout=3
    db.cloud.encryptionKeyFile=rwsplit.key
    server.port=8080
    """


def test_db_properties_file(tmp_path: Path) -> None:
    path = write(tmp_path, "db.properties", DB_PROPERTIES)
    key_file(tmp_path)  # found relative to the properties file, whatever the cwd
    s = settings_from_properties(path, key="db.cloud", environ=NO_ENV)
    # (how a password is escaped when rendered differs between SQLAlchemy 2.0 releases)
    assert s.primary.set(password="x").render_as_string(hide_password=False) == (
        "mysql+pymysql://app:x@db1.example.com:3307/shop"
    )
    assert s.primary.password == "hello wörld"
    assert [(u.host, u.port, u.username, u.database) for u in s.replicas] == [
        ("db2.example.com", 3307, "app", "shop"),
        ("db3.example.com", 3308, "app", "shop"),
    ]
    assert all(u.password == "hello wörld" for u in s.replicas)
    assert s.options == {
        "max_replica_lag": 2.5,
        "fallback_to_primary": False,
        "engine_options": {
            "pool_pre_ping": True,
            "pool_size": 20,
            "max_overflow": 0,
            "connect_args": {"connect_timeout": 3},
        },
    }
    assert s.source == str(path)
    assert "hello" not in repr(s)


def test_prefix_is_found_when_the_file_has_one_database(tmp_path: Path) -> None:
    path = write(tmp_path, "db.properties", "db.main.host=db1\ndb.main.username=u\nother=1\n")
    assert settings_from_properties(path, environ=NO_ENV).primary.host == "db1"
    bare = write(tmp_path, "bare.properties", "host=db9\nport=3310\n")
    s = settings_from_properties(bare, environ=NO_ENV)
    assert (s.primary.host, s.primary.port) == ("db9", 3310)
    two = write(tmp_path, "two.properties", "db.a.host=h1\ndb.b.host=h2\n")
    with pytest.raises(ConfigurationError, match=r"several databases \(db.a, db.b\).*key="):
        settings_from_properties(two, environ=NO_ENV)
    assert settings_from_properties(two, key="db.b.", environ=NO_ENV).primary.host == "h2"
    with pytest.raises(ConfigurationError, match=r"no key starts with 'db.c.'"):
        settings_from_properties(two, key="db.c", environ=NO_ENV)


def test_every_problem_is_reported_with_file_line_key_and_expectation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.properties",
        """\
        db.x.host=db1
        db.x.port=70000
        db.x.maxRepliaLag=2
        db.x.testOnBorrow=maybe
        db.x.downRetryInterval=-1
        """,
    )
    with pytest.raises(ConfigurationError) as info:
        settings_from_properties(path, key="db.x", environ=NO_ENV)
    msg = str(info.value)
    assert f"bad configuration in {path} (4 problems)" in msg
    assert f"{path} line 2: db.x.port: expected a port number 1-65535, got '70000'" in msg
    assert (
        f"{path} line 3: unknown option 'db.x.maxRepliaLag'; did you mean 'max_replica_lag'?" in msg
    )
    assert f"{path} line 4: db.x.testOnBorrow: expected true or false, got 'maybe'" in msg
    assert "line 5: db.x.downRetryInterval: expected a number of seconds >= 0" in msg


def test_unknown_keys_can_be_tolerated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "db.properties", "db.host=db1\ndb.colour=blue\n")
    with caplog.at_level("WARNING", logger="rwsplit.config"):
        s = settings_from_properties(path, key="db", strict=False, environ=NO_ENV)
    assert s.primary.host == "db1"
    assert "unknown option 'db.colour'" in caplog.text


def test_validation_query_must_be_a_liveness_check(tmp_path: Path) -> None:
    ok = write(
        tmp_path, "ok.properties", "db.host=h\ndb.validationQuery=/* ping */ select 1 from dual\n"
    )
    s = settings_from_properties(ok, environ=NO_ENV)
    assert s.options["engine_options"] == {"pool_pre_ping": True}
    off = write(
        tmp_path,
        "off.properties",
        "db.host=h\ndb.validationQuery=SELECT 1\ndb.testOnBorrow=false\n",
    )
    assert settings_from_properties(off, environ=NO_ENV).options["engine_options"] == {
        "pool_pre_ping": False
    }
    bad = write(
        tmp_path, "bad.properties", "db.host=h\ndb.validationQuery=SELECT count(*) FROM t\n"
    )
    with pytest.raises(
        ConfigurationError, match=r"validationQuery: expected 'SELECT 1': rwsplit checks"
    ):
        settings_from_properties(bad, environ=NO_ENV)


def test_pool_aliases_conflict(tmp_path: Path) -> None:
    path = write(tmp_path, "p.properties", "db.host=h\ndb.maxTotal=5\ndb.poolSize=3\n")
    with pytest.raises(ConfigurationError, match=r"both size the pool"):
        settings_from_properties(path, environ=NO_ENV)
    path = write(tmp_path, "w.properties", "db.host=h\ndb.maxWaitMillis=2500\n")
    assert settings_from_properties(path, environ=NO_ENV).options["engine_options"] == {
        "pool_timeout": 2.5
    }


def test_an_option_given_twice(tmp_path: Path) -> None:
    path = write(tmp_path, "p.properties", "db.host=h\ndb.user=a\ndb.username=b\n")
    with pytest.raises(ConfigurationError, match=r"line 3: db.username: username is already set"):
        settings_from_properties(path, environ=NO_ENV)


def test_missing_file() -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read /nonexistent/db.properties"):
        settings_from_properties("/nonexistent/db.properties")


# ---------------------------------------------------------------------------------- secrets


def test_encrypted_password_without_a_key(tmp_path: Path) -> None:
    path = write(tmp_path, "db.properties", f"db.host=h\ndb.password=ENC({JASYPT_DES})\n")
    with pytest.raises(SecretError, match=r"line 2: db.password is encrypted .* no decryption key"):
        settings_from_properties(path, environ=NO_ENV)


def test_encrypted_password_with_a_wrong_key(tmp_path: Path) -> None:
    path = write(tmp_path, "db.properties", f"db.host=h\ndb.password=ENC({JASYPT_DES})\n")
    with pytest.raises(SecretError, match=r"line 2: db.password: cannot decrypt .* key is wrong"):
        settings_from_properties(path, environ={"RWSPLIT_ENCRYPTION_KEY": "nope"})


def test_any_value_may_be_encrypted_including_inside_urls() -> None:
    token = encrypt("pä:ss@word/", KEY, algorithm="PBEWITHHMACSHA512ANDAES_256")
    user = encrypt("app", KEY, algorithm="PBEWITHHMACSHA512ANDAES_256")
    env = {
        "RWSPLIT_ENCRYPTION_KEY": KEY,
        "RWSPLIT_ENCRYPTION_ALGORITHM": "PBEWITHHMACSHA512ANDAES_256",
    }
    s = settings_from_dict(
        {
            "primary_url": f"mysql+pymysql://app:ENC({token})@db1/shop",
            "replica_urls": [f"mysql+pymysql://ro:ENC({token})@db2/shop"],
        },
        environ=env,
    )
    assert s.primary.password == "pä:ss@word/"
    assert s.replicas[0].password == "pä:ss@word/"
    s = settings_from_dict({"host": "db1", "username": f"ENC({user})"}, environ=env)
    assert s.primary.username == "app"


def test_key_file_from_the_api_wins_over_the_environment(tmp_path: Path) -> None:
    f = key_file(tmp_path)
    s = settings_from_dict(
        {"host": "h", "password": f"ENC({JASYPT_DES})"},
        encryption_key_file=f,
        environ={"RWSPLIT_ENCRYPTION_KEY": "wrong"},
    )
    assert s.primary.password == "hello wörld"


# ---------------------------------------------------------------------------------- dict / URLs


def test_urls_and_parts_do_not_mix() -> None:
    with pytest.raises(ConfigurationError, match=r"both URLs .* and URL parts"):
        settings_from_dict({"primary_url": "mysql+pymysql://u@db1/a", "host": "db2"})
    with pytest.raises(ConfigurationError, match=r"no primary given"):
        settings_from_dict({"port": 3306})
    with pytest.raises(ConfigurationError, match=r"replica_urls is set but primary_url"):
        settings_from_dict({"replica_urls": ["mysql+pymysql://u@db1/a"]})


def test_credentials_fill_urls_but_never_twice() -> None:
    s = settings_from_dict(
        {"primary_url": "mysql+pymysql://db1/a", "username": "u", "password": "p"}
    )
    assert (s.primary.username, s.primary.password) == ("u", "p")
    with pytest.raises(ConfigurationError, match=r"both give a password") as info:
        settings_from_dict({"primary_url": "mysql+pymysql://u:inurl@db1/a", "password": "given"})
    assert "inurl" not in str(info.value) and "given" not in str(info.value)


def test_bad_values_never_echo_passwords() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings_from_dict({"primary_url": "mysql+pymysql//u:sekrit@db1/a"})
    assert "sekrit" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        settings_from_dict({"host": "h", "password": 123456789})
    assert "password: expected a string" in str(info.value)
    assert "123456789" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        settings_from_dict({"primary_url": "mysql+pymysql://u:sekrit@/a"})
    assert "has no host" in str(info.value) and "sekrit" not in str(info.value)


def test_replica_host_with_a_bad_port() -> None:
    with pytest.raises(ConfigurationError, match=r"'db2:x': expected host or host:port"):
        settings_from_dict({"host": "db1", "replica_hosts": ["db2:x"]})


def test_bad_driver() -> None:
    with pytest.raises(ConfigurationError, match=r"driver 'nosuch' is not"):
        settings_from_dict({"host": "db1", "driver": "nosuch"})


def test_every_option_is_documented_and_reachable() -> None:
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    for o in OPTIONS:
        assert o.doc and o.target in ("cluster", "engine", "connect", "tls", "special"), o
    # every "cluster" option is a Cluster keyword argument
    import inspect

    params = inspect.signature(Cluster.__init__).parameters
    for o in OPTIONS:
        if o.target == "cluster":
            assert o.name in params, o.name
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for o in OPTIONS:
        assert f"`{o.name}`" in doc, f"{o.name} is not in docs/configuration.md"


# ---------------------------------------------------------------------------------- environment


def test_environment() -> None:
    env = {
        "RWSPLIT_PRIMARY_URL": "mysql+pymysql://u:p@db1:3306/a",
        "RWSPLIT_REPLICA_URLS": "mysql+pymysql://u:p@db2/a, mysql+pymysql://u:p@db3/a",
        "RWSPLIT_MAX_REPLICA_LAG": "none",
        "RWSPLIT_POOL_SIZE": "7",
        "RWSPLIT_MARIADBD": "/usr/sbin/mariadbd",  # not a cluster option: not read
    }
    s = settings_from_env(env)
    assert [u.host for u in s.replicas] == ["db2", "db3"]
    assert s.options == {"max_replica_lag": None, "engine_options": {"pool_size": 7}}


def test_environment_errors_name_the_variable() -> None:
    env = {"RWSPLIT_PRIMARY_URL": "mysql+pymysql://u@db1/a", "RWSPLIT_POOL_SIZE": "lots"}
    with pytest.raises(
        ConfigurationError,
        match=r"\$RWSPLIT_POOL_SIZE: RWSPLIT_POOL_SIZE: expected an integer >= 0, got 'lots'",
    ):
        settings_from_env(env)


def test_overrides_replace_the_location() -> None:
    env = {
        "RWSPLIT_HOST": "db1",
        "RWSPLIT_PASSWORD": "p",
        "RWSPLIT_REPLICA_HOSTS": "db2",
        "RWSPLIT_MAX_REPLICA_LAG": "3",
    }
    s = settings_from_env(env, overrides={"primary_url": "mysql+pymysql://root@db9/b"})
    assert (s.primary.host, s.primary.password, s.replicas) == ("db9", None, ())
    assert s.options["max_replica_lag"] == 3.0


# ---------------------------------------------------------------------------------- TOML


def test_toml(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key", "db2.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    key_file(tmp_path)
    path = write(
        tmp_path,
        "app.toml",
        f"""\
        [server]
        port = 8080

        [rwsplit]
        primary_url = "mysql+pymysql://app@db1:3306/shop"
        replica_urls = ["mysql+pymysql://app@db2:3306/shop"]
        password = "ENC({JASYPT_DES})"
        encryption_key_file = "rwsplit.key"
        max_replica_lag = 5
        down_retry_interval = 1.5
        pool_pre_ping = true

        [rwsplit.tls]
        ca = "ca.pem"
        cert = "client.pem"
        key = "client.key"

        [rwsplit.engine_options]
        echo = false

        [rwsplit.nodes."db2:3306".tls]
        cert = "db2.pem"
        key = "client.key"
        verify_identity = false
        """,
    )
    s = settings_from_toml(path, environ=NO_ENV)
    assert s.primary.password == "hello wörld"
    assert s.options["max_replica_lag"] == 5.0
    assert s.options["engine_options"] == {"echo": False, "pool_pre_ping": True}
    tls = s.options["tls"]
    assert tls == TLSConfig(
        ca=str(tmp_path / "ca.pem"),
        cert=str(tmp_path / "client.pem"),
        key=str(tmp_path / "client.key"),
    )
    assert s.options["node_tls"] == {
        "db2:3306": TLSConfig(
            ca=str(tmp_path / "ca.pem"),
            cert=str(tmp_path / "db2.pem"),
            key=str(tmp_path / "client.key"),
            verify_identity=False,
        )
    }
    assert load_settings(path, environ=NO_ENV) == s


def test_toml_tables(tmp_path: Path) -> None:
    top = write(tmp_path, "top.toml", 'primary_url = "mysql+pymysql://u@db1/a"\n')
    assert settings_from_toml(top).primary.host == "db1"
    nested = write(tmp_path, "n.toml", '[tool.db]\nhost = "db5"\n')
    assert settings_from_toml(nested, table="tool.db").primary.host == "db5"
    with pytest.raises(ConfigurationError, match=r"has no \[tool.other\] table"):
        settings_from_toml(nested, table="tool.other")
    bad = write(tmp_path, "bad.toml", "[rwsplit\n")
    with pytest.raises(ConfigurationError, match=r"is not valid TOML"):
        settings_from_toml(bad)
    typo = write(tmp_path, "typo.toml", '[rwsplit]\nhost = "h"\nmax_lag = 3\n')
    with pytest.raises(
        ConfigurationError, match=r"typo.toml \[rwsplit\]: unknown option 'max_lag'"
    ):
        settings_from_toml(typo)


def test_per_node_settings_are_tls_only() -> None:
    with pytest.raises(ConfigurationError, match=r"only tls settings can be given per node"):
        settings_from_dict({"host": "db1", "nodes": {"db1:3306": {"pool_size": 3}}})


# ---------------------------------------------------------------------------------- TLS


def test_tls_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert TLSConfig(ca=str(ca), verify_identity=False).connect_args() == {
        "ssl_ca": str(ca),
        "ssl_verify_cert": True,
        "ssl_verify_identity": False,
    }
    assert TLSConfig(disabled=True).connect_args() == {"ssl_disabled": True}
    with pytest.raises(ConfigurationError, match=r"verify_identity=true needs verify_cert"):
        TLSConfig(verify_cert=False)
    with pytest.raises(ConfigurationError, match=r"key is set without cert"):
        TLSConfig(key=str(ca))
    with pytest.raises(ConfigurationError, match=r"tls ca file .*missing.pem does not exist"):
        settings_from_dict({"host": "h", "tls_ca": "missing.pem"}, base_dir=tmp_path)
    s = settings_from_dict({"host": "h", "ssl": True})
    assert s.options["tls"] == TLSConfig()
    s = settings_from_dict({"host": "h", "tls": False})
    assert s.options["tls"] == TLSConfig(disabled=True)
    with pytest.raises(ConfigurationError, match=r"tls=false, yet other tls settings"):
        settings_from_dict({"host": "h", "use_ssl": False, "ssl_ca": str(ca)})


# ---------------------------------------------------------------------------------- Cluster


def captured_engines(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """What Cluster passes to create_engine, by host (no server is needed to see it)."""
    import rwsplit.cluster

    seen: dict[str, dict[str, Any]] = {}
    real = rwsplit.cluster.create_engine

    def spy(url: Any, **kwargs: Any) -> Any:
        seen.setdefault(f"{url.host}:{url.port or 3306}", kwargs)
        return real(url, **kwargs)

    monkeypatch.setattr(rwsplit.cluster, "create_engine", spy)
    return seen


def test_cluster_from_properties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = captured_engines(monkeypatch)
    path = write(tmp_path, "db.properties", DB_PROPERTIES)
    key_file(tmp_path)
    with Cluster.from_properties(path, key="db.cloud", max_replica_lag=9.0) as cluster:
        assert [n.name for n in cluster.topology.nodes] == [
            "db1.example.com:3307",
            "db2.example.com:3307",
            "db3.example.com:3308",
        ]
        assert cluster.max_replica_lag == 9.0  # keyword arguments win
        assert cluster.fallback_to_primary is False
        engine = cluster.write_engine()
        assert engine.url.password == "hello wörld"
        assert engine.pool.size() == 20  # type: ignore[attr-defined]
        assert "hello" not in repr(cluster)
        assert all("hello" not in repr(n) for n in cluster.topology.nodes)
        assert "hello" not in repr(cluster.topology)
    assert seen["db1.example.com:3307"]["pool_pre_ping"] is True
    assert seen["db1.example.com:3307"]["connect_args"] == {
        "connect_timeout": 3,
        "read_timeout": 10.0,
        "write_timeout": 10.0,
    }


def test_cluster_tls_reaches_the_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = captured_engines(monkeypatch)
    for name in ("ca.pem", "other-ca.pem"):
        (tmp_path / name).write_text("x")
    ca, other = str(tmp_path / "ca.pem"), str(tmp_path / "other-ca.pem")
    with Cluster(
        "mysql+pymysql://u@db1/a",
        ["mysql+pymysql://u@db2/a", "mysql+pymysql://u@db3/a"],
        engine_options={"connect_args": {"connect_timeout": 2}},
        tls=TLSConfig(ca=ca),
        node_tls={"db3:3306": TLSConfig(ca=other, verify_identity=False)},
    ):
        pass
    assert seen["db1:3306"]["connect_args"] == {
        "connect_timeout": 2,
        "read_timeout": 10.0,
        "write_timeout": 10.0,
        "ssl_ca": ca,
        "ssl_verify_cert": True,
        "ssl_verify_identity": True,
    }
    assert seen["db2:3306"]["connect_args"]["ssl_ca"] == ca
    assert seen["db3:3306"]["connect_args"]["ssl_ca"] == other
    assert seen["db3:3306"]["connect_args"]["ssl_verify_identity"] is False


def test_cluster_rejects_tls_for_an_unknown_node() -> None:
    with pytest.raises(ConfigurationError, match=r"node_tls names 'db9:3306', which is not a node"):
        Cluster("mysql+pymysql://u@db1/a", node_tls={"db9:3306": TLSConfig()})


def test_cluster_from_env_dict_and_config(tmp_path: Path) -> None:
    env = {
        "RWSPLIT_PRIMARY_URL": "mysql+pymysql://u:pw@db1/a",
        "RWSPLIT_REPLICA_URLS": "mysql+pymysql://u:pw@db2/a",
    }
    with Cluster.from_env(env) as c:
        assert repr(c) == "<Cluster db1:3306(primary), db2:3306(replica)>"
    with Cluster.from_dict({"host": "db1", "max_replica_lag": 4}) as c:
        assert c.max_replica_lag == 4.0
    toml = write(tmp_path, "c.toml", '[rwsplit]\nhost = "db7"\n')
    with Cluster.from_config(toml) as c, Cluster.from_toml(toml) as c2:
        assert c.topology.primary is not None and c.topology.primary.name == "db7:3306"
        assert c2.topology.primary == c.topology.primary


def test_nothing_half_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = captured_engines(monkeypatch)
    with pytest.raises(ConfigurationError):
        Cluster.from_dict({"host": "db1", "replica_hosts": "db2", "pool_size": "x"})
    assert seen == {}


def test_engine_options_from_keyword_arguments_merge(tmp_path: Path) -> None:
    s = settings_from_dict({"host": "db1", "pool_size": 3})
    kwargs = s.cluster_kwargs(engine_options={"echo": True}, fallback_to_primary=False)
    assert kwargs["engine_options"] == {"pool_size": 3, "echo": True}
    assert kwargs["fallback_to_primary"] is False


# ---------------------------------------------------------------------------------- JDBC URLs


def test_jdbc_replication_url_in_a_properties_file(tmp_path: Path) -> None:
    token = encrypt("p+w/d=", KEY)  # base64 with "+", "/" and "=" inside a query string
    path = write(
        tmp_path,
        "db.properties",
        f"""\
        db.url=jdbc:mysql:replication://db1:3307,db2,[fd00::3]:3308/shop?user=app&password=ENC({token})&characterEncoding=utf8&useSSL=false
        db.maxReplicaLag=3
        """,
    )
    s = settings_from_properties(path, environ={"RWSPLIT_ENCRYPTION_KEY": KEY})
    assert [(u.host, u.port) for u in (s.primary, *s.replicas)] == [
        ("db1", 3307),
        ("db2", 3306),
        ("fd00::3", 3308),
    ]
    assert {(u.username, u.password, u.database) for u in (s.primary, *s.replicas)} == {
        ("app", "p+w/d=", "shop")
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("jdbc:mysql://db1,db2/shop", "Connector/J failover, not read/write splitting"),
        ("jdbc:mysql://db1/shop?useSSL=true", r"asks for TLS \(useSSL\)"),
        ("jdbc:mariadb://db1/shop?sslMode=verify-full", r"asks for TLS \(sslMode\)"),
        ("jdbc:postgresql://db1/shop", "expected jdbc:mysql://"),
        ("jdbc:mysql://db1:99999/shop", "'db1:99999' in the JDBC URL is not host"),
    ],
)
def test_jdbc_urls_that_cannot_be_read(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings_from_dict({"url": url})


def test_jdbc_url_with_separate_credentials() -> None:
    s = settings_from_dict(
        {"url": "jdbc:mariadb://db1/shop", "username": "app", "password": "pw"}, environ=NO_ENV
    )
    assert (s.primary.drivername, s.primary.username, s.primary.password) == (
        "mysql+pymysql",
        "app",
        "pw",
    )


def test_ipv6_replica_hosts() -> None:
    s = settings_from_dict({"host": "db1", "replica_hosts": "[::1]:3310, [fd00::2]"})
    assert [(u.host, u.port) for u in s.replicas] == [("::1", 3310), ("fd00::2", 3306)]


def test_an_unreadable_key_file_is_reported_once_per_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "db.properties",
        f"db.host=h\ndb.username=ENC({JASYPT_DES})\ndb.password=ENC({JASYPT_DES})\n"
        "db.encryptionKeyFile=missing.key\n",
    )
    with pytest.raises(SecretError) as info:
        settings_from_properties(path, environ=NO_ENV)
    msg = str(info.value)
    assert msg.count("cannot read the encryption key file") == 2
    assert "no decryption key" not in msg


def test_sqlalchemy_url_objects_are_accepted() -> None:
    from sqlalchemy.engine import make_url

    s = settings_from_dict(
        {
            "primary_url": make_url("mysql+pymysql://u@db1/a"),
            "replica_urls": [make_url("mysql+pymysql://u@db2/a")],
        }
    )
    assert (s.primary.host, s.replicas[0].host) == ("db1", "db2")


def test_read_your_writes_options() -> None:
    from rwsplit.consistency import ReadYourWrites

    s = settings_from_env(
        {
            "RWSPLIT_HOST": "db1",
            "RWSPLIT_READ_YOUR_WRITES": "Primary",
            "RWSPLIT_STICKY_WINDOW": "1.5",
            "RWSPLIT_CAUSAL_TIMEOUT": "0.2",
        }
    )
    assert s.options == {
        "read_your_writes": ReadYourWrites.PRIMARY,
        "sticky_window": 1.5,
        "causal_timeout": 0.2,
    }
    with Cluster.from_settings(s) as c:
        assert c.read_your_writes is ReadYourWrites.PRIMARY and c.sticky_window == 1.5
    with pytest.raises(
        ConfigurationError, match="expected one of 'gtid', 'primary', 'off', got 'eventual'"
    ):
        settings_from_dict({"host": "db1", "readYourWrites": "eventual"})


# ---------------------------------------------------------------------------------- failover


def test_health_and_failover_options_from_properties(tmp_path: Path) -> None:
    from rwsplit.secrets import encrypt

    key = "master-key"
    path = tmp_path / "db.properties"
    path.write_text(
        "db.cloud.host=db1\n"
        "db.cloud.replicaHosts=db2,db3\n"
        "db.cloud.monitorInterval=0.5\n"
        "db.cloud.failureThreshold=4\n"
        "db.cloud.autoFailover=true\n"
        "db.cloud.adminUser=admin\n"
        f"db.cloud.adminPassword=ENC({encrypt('adm-Pw-1', key)})\n"
        "db.cloud.replicationUser=repl\n"
        f"db.cloud.replicationPassword=ENC({encrypt('repl-Pw-2', key)})\n"
        "db.cloud.neverPromote=db3:3306\n"
    )
    settings = settings_from_properties(path, key="db.cloud", encryption_key=key)
    kwargs = settings.cluster_kwargs()
    assert kwargs["monitor_interval"] == 0.5
    assert kwargs["failure_threshold"] == 4
    assert kwargs["auto_failover"] is True
    assert kwargs["admin_user"] == "admin" and kwargs["admin_password"] == "adm-Pw-1"
    fo = kwargs["failover_options"]
    assert (fo.replication_user, fo.replication_password) == ("repl", "repl-Pw-2")
    assert fo.never_promote == ("db3:3306",)
    shown = repr(settings)
    assert "adm-Pw-1" not in shown and "repl-Pw-2" not in shown


def test_auto_failover_needs_the_replication_account() -> None:
    with pytest.raises(ConfigurationError, match="replication_user / replication_password"):
        settings_from_dict({"host": "db1", "auto_failover": True})
    with pytest.raises(ConfigurationError, match="needs both replication_user"):
        settings_from_dict({"host": "db1", "replication_user": "repl"})


def test_never_promote_must_name_nodes() -> None:
    with pytest.raises(ConfigurationError, match="host:port"):
        settings_from_dict({"host": "db1", "never_promote": "db3"})
