"""The public surface on PostgreSQL, without a server: ``rwsplit classify`` picks the
PostgreSQL dialect, the bench's pgpool-II configuration and setup choices."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from rwsplit.cli import main
from rwsplit.cli.bench import BenchOptions, PgPool, setup_available


def test_classify_with_the_postgresql_dialect(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = "SELECT * FROM jobs FOR NO KEY UPDATE SKIP LOCKED"
    assert main(["classify", "--dialect", "postgresql", sql]) == 0
    assert capsys.readouterr().out == "primary\tlocking read (FOR NO KEY UPDATE)\n"
    assert main(["classify", "--url", "postgresql+psycopg://app@db1/shop", "SELECT $$;$$"]) == 0
    assert capsys.readouterr().out.startswith("replica\t")
    monkeypatch.setenv("RWSPLIT_PRIMARY_URL", "postgresql+psycopg://app@db1/shop")
    assert main(["classify", "--each", "SELECT 1; LISTEN jobs"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [
        "replica",
        "primary",
    ]
    assert main(["classify", "--dialect", "oracle", "SELECT 1"]) == 2


def test_pgpool_config_balances_the_standbys_only() -> None:
    pool = PgPool(("127.0.0.1", 5001), [("127.0.0.1", 5002), ("127.0.0.1", 5003)], children=20)
    try:
        config = dict(
            (k.strip(), v.strip().strip("'"))
            for k, _, v in (line.partition("=") for line in pool.config().splitlines())
        )
    finally:
        pool.__exit__(None, None, None)  # removes its directory; nothing was started
    assert config["backend_clustering_mode"] == "streaming_replication"
    assert config["port"] == str(pool.port) and config["listen_addresses"] == "127.0.0.1"
    assert (config["backend_port0"], config["backend_weight0"]) == ("5001", "0")
    assert "ALWAYS_PRIMARY" in config["backend_flag0"]
    assert [config[f"backend_weight{i}"] for i in (1, 2)] == ["1", "1"]
    assert config["statement_level_load_balance"] == "on"
    assert config["num_init_children"] == "20"
    assert config["health_check_period"] == "0" and config["failover_on_backend_error"] == "off"
    assert "password" not in pool.config()  # the client's password is relayed, never stored


def test_setups_by_family() -> None:
    assert "PostgreSQL" in (setup_available("pgpool", postgresql=False) or "")
    assert "MySQL" in (setup_available("sysbench", postgresql=True) or "")
    assert BenchOptions(server="postgresql").postgresql
    assert not BenchOptions().postgresql
    given = BenchOptions(primary=make_url("postgresql+psycopg://u@db1/a"))
    assert given.postgresql  # a given cluster's family comes from its URL


def test_bench_and_demo_take_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--server", "oracle"]) == 2
    assert main(["demo", "--server", "oracle"]) == 2
    assert "invalid choice" in capsys.readouterr().err
