"""The pytest plugin on PostgreSQL (``--rwsplit-server postgresql``), as a user's suite sees
it through pytester: the fixtures give a PgSandbox and a Cluster on it, and the helpers
(replica_lag, killed, hung, assert_no_replica_writes) work on hot standbys."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.postgresql]
pytest_plugins = ["pytester"]

USER_TESTS = """
import contextlib
import psycopg
import pytest
from sqlalchemy import text
from rwsplit.pytest_plugin import assert_no_replica_writes, hung, killed, replica_lag


@pytest.fixture
def rwsplit_cluster_options():
    return {"causal_timeout": 0.2}


def port(session):
    return session.execute(text("SELECT current_setting('port')::int")).scalar_one()


def test_a_postgresql_sandbox_and_cluster(rwsplit_sandbox, rwsplit_cluster):
    assert type(rwsplit_sandbox).__name__ == "PgSandbox"
    assert len(rwsplit_sandbox.replicas) == 1
    with rwsplit_cluster.session() as s:
        assert port(s) == rwsplit_sandbox.replicas[0].port


def test_replica_lag_pauses_replay_and_reads_stay_causal(rwsplit_sandbox, rwsplit_cluster):
    with rwsplit_cluster.session() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)"))
        s.execute(text("DELETE FROM t"))
        s.commit()
    rwsplit_sandbox.wait_caught_up()
    with replica_lag(rwsplit_sandbox) as lagging, assert_no_replica_writes(rwsplit_sandbox):
        assert lagging == rwsplit_sandbox.replicas
        with rwsplit_cluster.session() as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
            s.commit()
            token = s.causal_token
        assert token.startswith("pg:")
        with rwsplit_cluster.session() as s:  # no token: the paused standby, stale
            assert s.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        with rwsplit_cluster.session(causal_token=token) as s:  # the primary, fresh
            assert s.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
    rwsplit_sandbox.wait_caught_up()
    with rwsplit_cluster.session() as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar_one() == 1


def test_a_hot_standby_refuses_writes_even_a_superusers(rwsplit_sandbox):
    # Why assert_no_replica_writes only checks that each standby stayed one.
    standby = rwsplit_sandbox.replicas[0]
    with contextlib.closing(standby.connect()) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE stray (id int)")


def test_killed_and_hung(rwsplit_sandbox):
    standby = rwsplit_sandbox.replicas[0]
    with killed(rwsplit_sandbox, standby.name):
        assert not rwsplit_sandbox.is_running(standby)
    assert rwsplit_sandbox.is_running(standby)
    with hung(rwsplit_sandbox, standby.name):
        with pytest.raises(psycopg.OperationalError):
            standby.connect(connect_timeout=2).close()
    with contextlib.closing(standby.connect()) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
"""


def test_fixtures_and_helpers_on_postgresql(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nrwsplit_replicas = 1\nrwsplit_server = postgresql\n"
        "rwsplit_require_server = true\n"
    )
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)
    result.assert_outcomes(passed=4)


def test_bad_server_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="def test_bad(rwsplit_sandbox):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--rwsplit-server", "oracle", timeout=60
    )
    result.stderr.fnmatch_lines(["*--rwsplit-server*invalid choice*"])
    assert result.ret != 0
