"""rwsplit.flask settings and the causal cookie, without a server (engines never connect)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from itsdangerous import TimestampSigner

from rwsplit import ConfigurationError, RandomBalancer, Role, RoutingSession
from rwsplit.flask import RwSplit, cluster_from_config
from rwsplit.integrations._causal_cookie import CausalCookie

P = "mysql+pymysql://app:s3cret@db1/shop"
R1 = "mysql+pymysql://app:s3cret@db2/shop"
R2 = "mysql+pymysql://app:s3cret@db3/shop"


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", **config)
    return app


def test_replicas_as_a_list_or_a_comma_separated_string() -> None:
    for replicas in ([R1, R2], f"{R1}, {R2}"):
        with cluster_from_config(
            {"RWSPLIT_PRIMARY_URL": P, "RWSPLIT_REPLICA_URLS": replicas}
        ) as cluster:
            assert [n.name for n in cluster.topology.nodes] == ["db1:3306", "db2:3306", "db3:3306"]


def test_every_cluster_option_as_rwsplit_option_and_objects_pass_through() -> None:
    balancer = RandomBalancer()
    config = {
        "RWSPLIT_PRIMARY_URL": P,
        "RWSPLIT_REPLICA_URLS": [R1],
        "RWSPLIT_MAX_REPLICA_LAG": 5,
        "RWSPLIT_CAUSAL_TIMEOUT": "0.25",
        "RWSPLIT_READ_YOUR_WRITES": "primary",
        "RWSPLIT_BALANCER": balancer,
        "RWSPLIT_CAUSAL_COOKIE": "rw",  # the integration's own keys are not cluster options
    }
    with cluster_from_config(config) as cluster:
        assert cluster.max_replica_lag == 5.0
        assert cluster.causal_timeout == 0.25
        assert cluster.read_your_writes.value == "primary"
        assert cluster.balancer is balancer


def test_an_unknown_rwsplit_key_is_an_error_naming_it() -> None:
    with pytest.raises(
        ConfigurationError, match=r"RWSPLIT_MAX_REPLICA_LAGG.*RWSPLIT_MAX_REPLICA_LAG\?"
    ):
        cluster_from_config({"RWSPLIT_PRIMARY_URL": P, "RWSPLIT_MAX_REPLICA_LAGG": 1})


def test_a_bad_value_is_an_error_without_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        cluster_from_config({"RWSPLIT_PRIMARY_URL": P, "RWSPLIT_MAX_REPLICA_LAG": "soon"})
    assert "max_replica_lag" in str(info.value) and "s3cret" not in str(info.value)


def test_no_location_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="RWSPLIT_PRIMARY_URL"):
        RwSplit(make_app())


def test_config_file_toml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "rwsplit.toml"
    path.write_text(
        f'[rwsplit]\nprimary_url = "{P}"\nreplica_urls = ["{R1}"]\nmax_replica_lag = 3\n'
    )
    with cluster_from_config(
        {"RWSPLIT_CONFIG_FILE": str(path), "RWSPLIT_MAX_REPLICA_LAG": 9}
    ) as cluster:
        assert [n.name for n in cluster.topology.nodes] == ["db1:3306", "db2:3306"]
        assert cluster.max_replica_lag == 9.0


def test_a_relative_config_file_is_read_from_the_app_root(tmp_path: Path) -> None:
    (tmp_path / "rwsplit.toml").write_text(f'[rwsplit]\nprimary_url = "{P}"\n')
    app = Flask(__name__, root_path=str(tmp_path))
    app.config.update(SECRET_KEY="k", RWSPLIT_CONFIG_FILE="rwsplit.toml")
    RwSplit(app)
    try:
        assert app.extensions["rwsplit"].cluster.topology.nodes[0].name == "db1:3306"
    finally:
        app.extensions["rwsplit"].close()


def test_config_file_properties_with_key(tmp_path: Path) -> None:
    path = tmp_path / "db.properties"
    path.write_text("db.cloud.host=db1\ndb.cloud.replicaHosts=db2,db3\n")
    with cluster_from_config(
        {"RWSPLIT_CONFIG_FILE": str(path), "RWSPLIT_CONFIG_KEY": "db.cloud"}
    ) as cluster:
        assert len(cluster.topology.nodes) == 3


def test_the_cookie_needs_a_secret_key_unless_turned_off() -> None:
    app = Flask(__name__)
    app.config.update(RWSPLIT_PRIMARY_URL=P)
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        RwSplit(app)
    assert "rwsplit" not in app.extensions
    app.config["RWSPLIT_CAUSAL_COOKIE"] = False
    RwSplit(app)
    assert app.extensions["rwsplit"].cookie is None
    app.extensions["rwsplit"].close()


def test_sqlalchemy_database_uri_is_refused() -> None:
    app = make_app(RWSPLIT_PRIMARY_URL=P, SQLALCHEMY_DATABASE_URI="sqlite://")
    with pytest.raises(ConfigurationError, match="SQLALCHEMY_DATABASE_URI is set"):
        RwSplit(app, db=SQLAlchemy())
    assert "rwsplit" not in app.extensions and "sqlalchemy" not in app.extensions


def test_routing_session_in_session_options_is_refused() -> None:
    db = SQLAlchemy(session_options={"class_": RoutingSession})
    with pytest.raises(ConfigurationError, match="class_=RoutingSession"):
        RwSplit(make_app(RWSPLIT_PRIMARY_URL=P), db=db)


def test_init_app_twice_on_one_app_is_refused() -> None:
    app = make_app(RWSPLIT_PRIMARY_URL=P)
    ext = RwSplit(app)
    with pytest.raises(ConfigurationError, match="already registered"):
        ext.init_app(app)
    app.extensions["rwsplit"].close()


def test_one_db_many_apps_each_with_its_cluster() -> None:
    db = SQLAlchemy()
    ext = RwSplit(db=db)
    apps = [make_app(RWSPLIT_PRIMARY_URL=P), make_app(RWSPLIT_PRIMARY_URL=R1)]
    for app in apps:
        ext.init_app(app)
    try:
        for app, host in zip(apps, ("db1", "db2"), strict=True):
            with app.app_context():
                assert db.engine is ext.cluster.write_engine()
                assert db.engine.url.host == host
                assert db.session().cluster is ext.cluster
                assert "s3cret" not in app.config["SQLALCHEMY_DATABASE_URI"]
    finally:
        for app in apps:
            app.extensions["rwsplit"].close()


def test_db_engine_follows_the_primary_after_a_topology_change() -> None:
    db = SQLAlchemy()
    app = make_app(RWSPLIT_PRIMARY_URL=P, RWSPLIT_REPLICA_URLS=[R1])
    RwSplit(app, db=db)
    cluster = app.extensions["rwsplit"].cluster
    try:
        old, new = cluster.topology.nodes
        # What the monitor publishes after a promotion (no server needed: engines are lazy).
        cluster.publish(
            cluster.topology.with_nodes(
                [old.evolve(role=Role.REPLICA), new.evolve(role=Role.PRIMARY)]
            )
        )
        with app.app_context():
            assert db.engine is cluster.write_engine()
            assert db.engine.url.host == "db2"
    finally:
        app.extensions["rwsplit"].close()


def test_causal_cookie_rejects_forged_tampered_and_expired_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cookie = CausalCookie("secret", max_age=60)
    value = cookie.dumps("0-1-42")
    assert cookie.loads(value) == "0-1-42"
    assert cookie.loads("0-1-42") is None
    assert cookie.loads(value[:-2] + ("AA" if not value.endswith("AA") else "BB")) is None
    assert CausalCookie("other secret").loads(value) is None
    assert cookie.loads(None) is None
    now = int(time.time())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now - 61)
    old = cookie.dumps("0-1-43")
    monkeypatch.undo()
    assert cookie.loads(old) is None  # signed 61 s ago, max age 60 s


@pytest.mark.parametrize("max_age", [0, -1, 1.5, True, "60"])
def test_causal_cookie_max_age_must_be_whole_positive_seconds(max_age: object) -> None:
    with pytest.raises(ConfigurationError, match="max age"):
        CausalCookie("secret", max_age=max_age)  # type: ignore[arg-type]
