"""Every Cluster option, URL and config value is checked when the cluster is made.

A bad value raises ConfigurationError naming the option (as the user wrote it: ``causal_timeout``,
``replicas[1]``, ``$RWSPLIT_CAUSAL_TIMEOUT``, ``db.cloud.causalTimeout``) and what is expected,
and never echoes a password.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from pathlib import Path
from typing import Any

import pytest
from rwsplit.secrets import decrypt_value, encrypt
from sqlalchemy.engine import URL

from rwsplit import Cluster, ConfigurationError, FailoverOptions, Monitor, SecretError, TLSConfig
from rwsplit import _validate as validate
from rwsplit.config import (
    settings_from_dict,
    settings_from_env,
    settings_from_properties,
    settings_from_toml,
)

PRIMARY = "mysql+pymysql://app:pw@db1:3306/shop"
PASSWORD = "Hunter2-e9f1!pw"


# ---------------------------------------------------------------------------------- ports


@pytest.mark.parametrize("bad_port", ["abc", "99999", "-1", "0", "65536"])
def test_a_bad_port_in_the_primary_url_names_the_option(bad_port: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^primary: .*port") as info:
        Cluster(f"mysql+pymysql://u:{PASSWORD}@db1:{bad_port}/x")
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("bad_port", ["abc", "99999", "-1"])
def test_a_bad_port_in_a_replica_url_names_its_index(bad_port: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^replicas\[1\]: .*port") as info:
        Cluster(
            PRIMARY,
            ["mysql+pymysql://app:pw@db2/shop", f"mysql+pymysql://u:{PASSWORD}@db3:{bad_port}/x"],
        )
    assert PASSWORD not in str(info.value)


def test_a_url_object_with_a_bad_port_is_refused() -> None:
    url = URL.create("mysql+pymysql", username="u", password=PASSWORD, host="db1", port=70000)
    with pytest.raises(ConfigurationError, match=r"primary: expected a port number 1-65535") as i:
        Cluster(url)
    assert PASSWORD not in str(i.value) and "***" in str(i.value)


@pytest.mark.parametrize(
    "source",
    [
        {"primary_url": f"mysql+pymysql://u:{PASSWORD}@db1:abc/x"},
        {"primary_url": f"mysql+pymysql://u:{PASSWORD}@db1:99999/x"},
        {"primary_url": PRIMARY, "replica_urls": [f"mysql+pymysql://u:{PASSWORD}@db2:-1/x"]},
    ],
)
def test_a_bad_port_in_a_configured_url_names_the_key(source: dict[str, Any]) -> None:
    named = r"dict \(\w+\): (primary_url|replica_urls\[0\]): .*port"
    with pytest.raises(ConfigurationError, match=named) as info:
        settings_from_dict(source)
    assert PASSWORD not in str(info.value)


# ---------------------------------------------------------------------------------- options

SECONDS = ["max_replica_lag", "down_retry_interval", "causal_timeout", "sticky_window"]
POSITIVE_SECONDS = [
    "monitor_interval",
    "monitor_timeout",
    "connect_timeout",
    "primary_read_timeout",
    "replica_read_timeout",
    "write_timeout",
]
NOT_SECONDS: list[object] = [
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -0.001,
    1e300,
    86_400.5,
    "1",
    True,
    [1],
    object(),
]


class Choosy:
    def choose(self, nodes: Any) -> Any:
        return nodes[0]


BAD_OPTIONS: list[tuple[str, object, str]] = [
    *((name, value, "seconds") for name in SECONDS for value in NOT_SECONDS),
    *((name, value, "seconds > 0") for name in POSITIVE_SECONDS for value in [*NOT_SECONDS, 0]),
    *(
        (name, value, "true or false")
        for name in ("fallback_to_primary", "auto_failover")
        for value in ("false", 0, 1, None)
    ),
    *(("failure_threshold", value, "an integer >= 1") for value in (0, -3, True, 2.5, "3", None)),
    ("balancer", object(), "choose"),
    ("routing", "shadowy", "one of"),
    ("routing", None, "one of"),
    ("balancer", "round-robin", "choose"),
    ("engine_options", [("pool_size", 1)], "dict"),
    ("engine_options", {1: 2}, "string keys"),
    ("engine_options", {"connect_args": "x"}, "dict"),
    ("on_topology_change", print, "wrap a single callback in a list"),
    ("on_topology_change", ["not callable"], "callable"),
    ("on_topology_change", 5, "a list of callables"),
    ("read_your_writes", "sometimes", "one of 'gtid', 'primary', 'off'"),
    ("read_your_writes", True, "one of 'gtid', 'primary', 'off'"),
    ("tls", "yes", "TLSConfig"),
    ("tls", {"ca": "x"}, "TLSConfig"),
    ("node_tls", [("db1:3306", TLSConfig(ca=__file__))], "dict"),
    ("node_tls", {"db1:3306": "x"}, "TLSConfig"),
    ("failover_options", {"replication_user": "r"}, "FailoverOptions"),
    ("failover_options", FailoverOptions("repl", "pw", confirm_interval=math.nan), "seconds"),
    ("failover_options", FailoverOptions("repl", "pw", confirm_attempts=0), "integer >= 1"),
    ("failover_options", FailoverOptions("repl", "pw", apply_timeout=math.inf), "seconds"),
    ("failover_options", FailoverOptions("repl", "pw", timeout=-1), "seconds"),
    ("failover_options", FailoverOptions("", "pw"), "non-empty string"),
    ("failover_options", FailoverOptions("repl", "pw", never_promote="db2:3306"), "list"),  # type: ignore[arg-type]
    ("admin_user", "", "non-empty string"),
    ("admin_user", 7, "non-empty string"),
]


def _id(case: tuple[str, object, str]) -> str:
    name, value, _ = case
    return f"{name}={type(value).__name__}:{str(value)[:20]}"


@pytest.mark.parametrize("case", BAD_OPTIONS, ids=[_id(c) for c in BAD_OPTIONS])
def test_a_bad_option_names_itself_and_what_is_expected(case: tuple[str, object, str]) -> None:
    name, value, expected = case
    before = threading.active_count()
    with pytest.raises(ConfigurationError) as info:
        Cluster(PRIMARY, **{name: value})
    message = str(info.value)
    assert message.startswith(name), message
    assert expected in message, message
    assert threading.active_count() == before  # no monitor was started


def test_every_cluster_option_has_a_bad_value_tested() -> None:
    params = set(inspect.signature(Cluster.__init__).parameters) - {"self", "primary", "replicas"}
    covered = {name for name, _, _ in BAD_OPTIONS} | {"admin_password"}
    assert params <= covered, params - covered


@pytest.mark.parametrize("name", SECONDS)
def test_edge_values_of_seconds_are_accepted(name: str) -> None:
    for value in (0, 0.0, 2, 86_400):
        with Cluster(PRIMARY, **{name: value}) as cluster:
            if name != "max_replica_lag":
                assert getattr(cluster, name) == float(value)


def test_good_values_still_work() -> None:
    def listener(old: Any, new: Any) -> None:
        pass

    with Cluster(
        PRIMARY,
        ["mysql+pymysql://app:pw@db2/shop"],
        fallback_to_primary=False,
        max_replica_lag=None,
        balancer=Choosy(),
        engine_options={"pool_size": 2, "connect_args": {"connect_timeout": 2}},
        on_topology_change=(f for f in [listener]),  # any iterable, consumed once
        read_your_writes="PRIMARY",
        node_tls={"db2:3306": TLSConfig(disabled=True)},
        failure_threshold=1,
        admin_user="admin",
        admin_password="",
    ) as cluster:
        assert cluster.read_your_writes.value == "primary"
        assert isinstance(cluster.balancer, Choosy)


def test_admin_password_needs_its_user_and_is_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="admin_password is set but admin_user is not"):
        Cluster(PRIMARY, admin_password=PASSWORD)
    with pytest.raises(ConfigurationError, match="admin_password: expected a string") as info:
        Cluster(PRIMARY, admin_user="admin", admin_password=123456789)  # type: ignore[arg-type]
    assert "123456789" not in str(info.value)


def test_auto_failover_needs_failover_options_before_anything_starts() -> None:
    with pytest.raises(ConfigurationError, match="auto_failover=True needs failover_options"):
        Cluster(PRIMARY, auto_failover=True)


def test_monitor_interval_inf_does_not_reach_the_thread() -> None:
    # Before: Cluster started the monitor and its thread died of OverflowError in Event.wait.
    with pytest.raises(ConfigurationError, match=r"^monitor_interval: expected a number of sec"):
        Cluster(PRIMARY, monitor_interval=math.inf)
    with Cluster(PRIMARY) as cluster:
        for value in (math.inf, math.nan, 0, -1, "1"):
            with pytest.raises(ConfigurationError, match="Monitor interval"):
                Monitor(cluster, interval=value)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="Monitor timeout"):
            Monitor(cluster, timeout=math.nan)
        with pytest.raises(ConfigurationError, match="failure_threshold"):
            Monitor(cluster, failure_threshold=True)


# ---------------------------------------------------------------------------------- sources


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("RWSPLIT_CAUSAL_TIMEOUT", "nan", "seconds >= 0"),
        ("RWSPLIT_CAUSAL_TIMEOUT", "-inf", "seconds >= 0"),
        ("RWSPLIT_MONITOR_INTERVAL", "inf", "seconds > 0"),
        ("RWSPLIT_MONITOR_INTERVAL", "0", "seconds > 0"),
        ("RWSPLIT_MONITOR_TIMEOUT", "0", "seconds > 0"),
        ("RWSPLIT_MAX_REPLICA_LAG", "NaN", "or none"),
        ("RWSPLIT_STICKY_WINDOW", "1e999", "seconds >= 0"),
        ("RWSPLIT_DOWN_RETRY_INTERVAL", "soon", "seconds >= 0"),
        ("RWSPLIT_FAILURE_THRESHOLD", "0", "an integer >= 1"),
        ("RWSPLIT_FAILURE_THRESHOLD", "2.5", "an integer >= 1"),
        ("RWSPLIT_FALLBACK_TO_PRIMARY", "maybe", "true or false"),
        ("RWSPLIT_POOL_TIMEOUT", "inf", "seconds >= 0"),
        ("RWSPLIT_POOL_RECYCLE", "nan", "-1 (never)"),
        ("RWSPLIT_POOL_RECYCLE", "-0.5", "-1 (never)"),
        ("RWSPLIT_CONNECT_TIMEOUT", "100000", "whole seconds >= 1"),
        ("RWSPLIT_PORT", "-1", "a port number 1-65535"),
    ],
)
def test_environment_values_are_checked_and_name_the_variable(
    var: str, value: str, expected: str
) -> None:
    env = {"RWSPLIT_HOST": "db1", var: value}
    with pytest.raises(ConfigurationError) as info:
        settings_from_env(env)
    message = str(info.value)
    assert f"${var}: {var}: expected" in message and expected in message, message
    assert f"got {value!r}" in message


def test_properties_values_are_checked_and_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "db.properties"
    path.write_text(
        "db.cloud.host=db1\n"
        "db.cloud.causalTimeout=nan\n"
        "db.cloud.monitorInterval=Infinity\n"
        "db.cloud.failureThreshold=true\n"
    )
    with pytest.raises(ConfigurationError) as info:
        settings_from_properties(path, key="db.cloud")
    message = str(info.value)
    assert "(3 problems)" in message
    assert f"{path} line 2: db.cloud.causalTimeout: expected a number of seconds" in message
    assert f"{path} line 3: db.cloud.monitorInterval: expected a number of seconds" in message
    assert f"{path} line 4: db.cloud.failureThreshold: expected an integer >= 1" in message


def test_toml_inf_and_nan_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rwsplit.toml"
    path.write_text('[rwsplit]\nhost = "db1"\ncausal_timeout = nan\nmonitor_interval = inf\n')
    with pytest.raises(ConfigurationError) as info:
        settings_from_toml(path)
    message = str(info.value)
    assert f"{path} [rwsplit]: causal_timeout: expected a number of seconds" in message
    assert f"{path} [rwsplit]: monitor_interval: expected a number of seconds > 0" in message


def test_dict_values_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"dict: sticky_window: expected .* got True"):
        settings_from_dict({"host": "db1", "sticky_window": True})
    with pytest.raises(ConfigurationError, match=r"dict: monitor_interval: .* got 0"):
        settings_from_dict({"host": "db1", "monitor_interval": 0})


def test_tls_config_fields_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"tls ca: expected a file path"):
        TLSConfig(ca=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"tls verify_cert: expected true or false"):
        TLSConfig(verify_cert="no")  # type: ignore[arg-type]
    assert TLSConfig(ca=Path("/etc/ca.pem")).ca == "/etc/ca.pem"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- ENC(


@pytest.mark.parametrize("value", ["ENC(abc", "ENC(abc) trailing", "  ENC(S3DQHsQy05+sQD6y"])
def test_a_malformed_enc_value_is_an_error_not_a_password(value: str) -> None:
    with pytest.raises(SecretError, match=r"the ENC\(\.\.\.\) value is malformed") as info:
        decrypt_value(value, "k3y", where="db.password")
    assert value.strip() not in str(info.value)


def test_a_malformed_enc_value_fails_in_every_source(tmp_path: Path) -> None:
    token = encrypt("secret-pw", "k3y")
    cut = f"ENC({token}"
    path = tmp_path / "db.properties"
    path.write_text(f"db.host=db1\ndb.username=app\ndb.password={cut}\n")
    sources = [
        lambda: settings_from_properties(path, encryption_key="k3y"),
        lambda: settings_from_env({"RWSPLIT_HOST": "db1", "RWSPLIT_PASSWORD": cut}),
        lambda: settings_from_dict({"primary_url": f"mysql+pymysql://app:{cut}@db1/shop"}),
    ]
    for load in sources:
        with pytest.raises(SecretError, match="malformed") as info:
            load()
        assert token not in str(info.value)


# ---------------------------------------------------------------------------------- JDBC


JDBC_FORMS = [
    (f"jdbc:mysql://app:{PASSWORD}@db1:3306/shop", [("db1", 3306)]),
    (f"jdbc:mariadb://app:{PASSWORD}@db1:3307/shop", [("db1", 3307)]),
    (f"jdbc:mysql://db1/shop?user=app&password={PASSWORD}&useUnicode=true", [("db1", 3306)]),
    (
        f"jdbc:mysql:replication://app:{PASSWORD}@db1:3306,app:{PASSWORD}@db2:3307/shop",
        [("db1", 3306), ("db2", 3307)],
    ),
    (
        f"jdbc:mariadb:replication://db1,[fd00::2]:3308/shop?password={PASSWORD}&user=app",
        [("db1", 3306), ("fd00::2", 3308)],
    ),
]


@pytest.mark.parametrize(("jdbc", "hosts"), JDBC_FORMS)
def test_jdbc_user_info_is_parsed_and_masked_everywhere(
    jdbc: str, hosts: list[tuple[str, int]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_from_dict({"url": jdbc})
    urls = [settings.primary, *settings.replicas]
    assert [(u.host, u.port) for u in urls] == hosts
    assert {(u.username, u.password, u.database) for u in urls} == {("app", PASSWORD, "shop")}
    with Cluster.from_settings(settings) as cluster:
        shown = [
            repr(settings),
            str(settings),
            repr(cluster),
            repr(cluster.topology),
            *(repr(n) for n in cluster.topology.nodes),
            *(str(cluster.engine_for(n, writable=True).url) for n in cluster.topology.nodes),
        ]
        names = [n.name for n in cluster.topology.nodes]
    assert all("@" not in n and "app" not in n for n in names), names
    assert all(PASSWORD not in s for s in shown), shown
    assert PASSWORD not in caplog.text


def test_a_jdbc_url_is_accepted_by_cluster_itself() -> None:
    with Cluster(f"jdbc:mysql://app:{PASSWORD}@db1:3307/shop") as cluster:
        assert repr(cluster) == "<Cluster db1:3307(primary)>"
        assert cluster.write_engine().url.password == PASSWORD
    with pytest.raises(ConfigurationError, match="one host") as info:
        Cluster(f"jdbc:mysql:replication://app:{PASSWORD}@db1,app:{PASSWORD}@db2/shop")
    assert PASSWORD not in str(info.value)


def test_percent_encoded_user_info() -> None:
    s = settings_from_dict({"url": "jdbc:mysql://ap%3Ap:p%40ss%3Aw%2Cd@db1/shop"})
    assert (s.primary.username, s.primary.password, s.primary.host) == ("ap:p", "p@ss:w,d", "db1")


@pytest.mark.parametrize(
    ("jdbc", "message"),
    [
        (f"jdbc:mysql://app:{PASSWORD}@db1:99999/shop", "'db1:99999' in the JDBC URL is not"),
        (f"jdbc:mysql://app:{PASSWORD}@db1:x/shop", "the text is not shown"),
        (f"jdbc:mysql://app:{PASSWORD}@db1,db2/shop", "Connector/J failover"),
        (f"jdbc:mysql:loadbalance://app:{PASSWORD}@db1,db2/shop", "Connector/J loadbalance"),
        (f"jdbc:mysql:replication://app:{PASSWORD}@db1,db2/shop", "for some hosts"),
        (f"jdbc:mysql://app:{PASSWORD}@db1/shop?useSSL=true", r"asks for TLS \(useSSL\)"),
        (f"jdbc:mysql:fancy://app:{PASSWORD}@db1/shop", "not a JDBC URL kind"),
        (f"jdbc:mysql://app:{PASSWORD}@/shop", "not host"),
        # An unescaped '/' in the password cuts the URL: the pieces are not echoed either.
        ("jdbc:mysql://app:Hunter2/e9f1@db1/shop", "the text is not shown"),
    ],
)
def test_bad_jdbc_urls_never_show_the_password(
    jdbc: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigurationError, match=message) as info:
        settings_from_dict({"url": jdbc})
    for secret in (PASSWORD, "Hunter2", "e9f1"):
        assert secret not in str(info.value)
        assert secret not in caplog.text


def test_query_credentials_of_a_sqlalchemy_url_are_masked() -> None:
    url = f"mysql+pymysql://db1/shop?charset=utf8mb4&user=app&password={PASSWORD}"
    with Cluster(url) as cluster:
        engine_url = cluster.write_engine().url
        assert (engine_url.username, engine_url.password) == ("app", PASSWORD)
        assert dict(engine_url.query) == {"charset": "utf8mb4"}
        assert PASSWORD not in repr(engine_url) and PASSWORD not in repr(cluster)
    assert PASSWORD not in repr(settings_from_dict({"primary_url": url}))
    with pytest.raises(ConfigurationError, match="password twice") as info:
        Cluster(f"mysql+pymysql://app:other@db1/shop?password={PASSWORD}")
    assert PASSWORD not in str(info.value) and "other" not in str(info.value)


def test_a_host_holding_user_info_is_refused_without_echo() -> None:
    url = URL.create("mysql+pymysql", host=f"app:{PASSWORD}@db1")
    with pytest.raises(ConfigurationError, match="host holds") as info:
        Cluster(url)
    assert PASSWORD not in str(info.value)


# ---------------------------------------------------------------------------------- validators


def test_validators_return_the_normal_form() -> None:
    assert validate.duration("x", 3) == 3.0 and isinstance(validate.duration("x", 3), float)
    assert validate.optional_duration("x", " None ", text=True) is None
    assert validate.optional_duration("x", "2.5", text=True) == 2.5
    assert validate.boolean("x", " off ", text=True) is False
    assert validate.integer("x", " 7 ", low=1, text=True) == 7
    assert validate.port("x", "3306", text=True) == 3306
    assert validate.text("x", "  a ") == "a"
    assert validate.password("x", " keep spaces ") == " keep spaces "
    assert validate.mapping("x", {"a": 1}) == {"a": 1}
    assert validate.number("x", -1, low=-1, high=1) == -1.0


def test_validators_refuse_text_unless_asked() -> None:
    with pytest.raises(ConfigurationError, match=r"^x: expected a number of seconds .* got '1'$"):
        validate.duration("x", "1")
    with pytest.raises(ConfigurationError, match=r"^x: expected true or false, got 'true'$"):
        validate.boolean("x", "true")
    with pytest.raises(ConfigurationError, match=r"^x: expected a port number 1-65535, got '1'$"):
        validate.port("x", "1")


def test_secret_values_show_only_their_type() -> None:
    with pytest.raises(ConfigurationError) as info:
        validate.text("replication_password", 12345, secret=True)
    assert str(info.value) == (
        "replication_password: expected a non-empty string, got a value of type int"
    )


def test_cross_option_checks_name_the_source_key() -> None:
    with pytest.raises(ConfigurationError, match=r"\$RWSPLIT_ADMIN_PASSWORD .*admin_user") as i:
        settings_from_env({"RWSPLIT_HOST": "db1", "RWSPLIT_ADMIN_PASSWORD": PASSWORD})
    assert PASSWORD not in str(i.value)
    with pytest.raises(ConfigurationError, match=r"engine_options.connect_args: expected a"):
        settings_from_dict({"host": "db1", "engine_options": {"connect_args": "x"}})


def test_cluster_refuses_enc_passwords_it_cannot_decrypt() -> None:
    # Cluster takes plain passwords; rwsplit.config decrypts. Before, ENC(...) was sent to
    # the server as the password and every login failed, far from the cause.
    token = encrypt("secret-pw", "k3y")
    for bad in (f"ENC({token})", f"ENC({token}"):
        with pytest.raises(SecretError, match=r"^primary: the password in the URL is an ENC"):
            Cluster(f"mysql+pymysql://app:{bad}@db1/shop")
        with pytest.raises(SecretError, match=r"^admin_password is an ENC") as info:
            Cluster(PRIMARY, admin_user="admin", admin_password=bad)
        assert token not in str(info.value)
        with pytest.raises(SecretError, match=r"failover_options.replication_password"):
            Cluster(PRIMARY, failover_options=FailoverOptions("repl", bad))
    s = settings_from_dict(
        {"primary_url": f"mysql+pymysql://app:ENC({token})@db1/shop"}, encryption_key="k3y"
    )
    with Cluster.from_settings(s) as cluster:
        assert cluster.write_engine().url.password == "secret-pw"


def test_enc_password_in_jdbc_user_info_may_hold_a_slash() -> None:
    token = next(t for t in (encrypt("pw/1", "k3y") for _ in range(500)) if "/" in t)
    s = settings_from_dict(
        {"url": f"jdbc:mysql:replication://app:ENC({token})@db1,app:ENC({token})@db2/shop"},
        encryption_key="k3y",
    )
    assert [(u.host, u.username, u.password, u.database) for u in (s.primary, *s.replicas)] == [
        ("db1", "app", "pw/1", "shop"),
        ("db2", "app", "pw/1", "shop"),
    ]


def test_discover_checks_its_seed_urls() -> None:
    from rwsplit import discover

    with pytest.raises(ConfigurationError, match=r"^seeds\[0\]: the URL's port") as info:
        discover([f"mysql+pymysql://u:{PASSWORD}@db1:abc/x"])
    assert PASSWORD not in str(info.value)
