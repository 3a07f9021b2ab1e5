"""The pytest plugin (``pytest11`` entry point) as a user's test suite sees it, via pytester.

Each inner run is a fresh pytest process that finds the plugin through the installed entry
point (not through this suite's conftest) and starts its own real servers.
"""

from __future__ import annotations

import pytest

from .examples import EXAMPLES

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]

USER_TESTS = """
import contextlib, sys
import pytest
from sqlalchemy import text
from rwsplit.pytest_plugin import assert_no_replica_writes, hung, killed, replica_lag


def server_id(cluster):
    with cluster.session() as s:
        return s.execute(text("SELECT @@server_id")).scalar_one()


def test_shape_from_ini(rwsplit_sandbox):
    assert len(rwsplit_sandbox.replicas) == 1


def test_cluster_reads_on_the_replica(rwsplit_sandbox, rwsplit_cluster):
    assert server_id(rwsplit_cluster) == rwsplit_sandbox.replicas[0].server_id


@pytest.fixture
def rwsplit_cluster_options():
    return {"read_your_writes": "off"}


def test_cluster_options_fixture(rwsplit_cluster):
    assert rwsplit_cluster.read_your_writes.value == "off"


def test_replica_lag(rwsplit_sandbox, rwsplit_cluster):
    with rwsplit_cluster.session() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY)"))
        s.execute(text("DELETE FROM t"))
        s.commit()
    rwsplit_sandbox.wait_caught_up()
    replica = rwsplit_sandbox.replicas[0]
    with replica_lag(rwsplit_sandbox) as lagging:
        assert lagging == [replica]
        with rwsplit_cluster.session() as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
            s.commit()
        with rwsplit_cluster.session() as s:   # read_your_writes off: the replica, stale
            assert s.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 0
    rwsplit_sandbox.wait_caught_up()
    with rwsplit_cluster.session() as s:
        assert s.execute(text("SELECT COUNT(*) FROM t")).scalar_one() == 1


def test_no_replica_writes_passes_for_routed_work(rwsplit_sandbox, rwsplit_cluster):
    with assert_no_replica_writes(rwsplit_sandbox):
        with rwsplit_cluster.session() as s:
            s.execute(text("INSERT INTO t VALUES (2)"))
            s.commit()
            s.execute(text("SELECT * FROM t")).all()


def test_no_replica_writes_catches_a_write_on_a_replica(rwsplit_sandbox):
    replica = rwsplit_sandbox.replicas[0]
    with pytest.raises(AssertionError, match="replica1 .* logged its own transactions"):
        with assert_no_replica_writes(rwsplit_sandbox):
            with contextlib.closing(replica.connect()) as c, c.cursor() as cur:
                # root writes through read_only=ON: exactly the leak to catch
                cur.execute("CREATE TABLE IF NOT EXISTS rwsplit.stray (id INT)")


def test_killed_and_hung(rwsplit_sandbox):
    import pymysql
    replica = rwsplit_sandbox.replicas[0]
    with killed(rwsplit_sandbox, "replica1"):
        assert not rwsplit_sandbox.is_running(replica)
    assert rwsplit_sandbox.is_running(replica)
    with hung(rwsplit_sandbox, "replica1"):
        with pytest.raises(pymysql.err.OperationalError):
            replica.connect(read_timeout=1).close()
    with contextlib.closing(replica.connect()) as c, c.cursor() as cur:
        status = rwsplit_sandbox.family.replica_status(cur)
    assert status.io_connected and status.sql_running
"""


def test_fixtures_and_helpers_on_real_servers(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrwsplit_replicas = 1\nrwsplit_require_server = true\n")
    example = (EXAMPLES / "pytest_plugin" / "test_with_rwsplit.py").read_text()
    pytester.makepyfile(test_user=USER_TESTS, test_with_rwsplit=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)
    result.assert_outcomes(passed=9)


def test_command_line_overrides_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrwsplit_replicas = 1\n")
    pytester.makepyfile(
        test_shape="""
        from contextlib import closing

        def test_shape(rwsplit_sandbox):
            assert len(rwsplit_sandbox.replicas) == 2
            assert rwsplit_sandbox.semi_sync and rwsplit_sandbox.log_slave_updates
            mariadb = rwsplit_sandbox.family.name == "mariadb"
            updates = "log_slave_updates" if mariadb else "log_replica_updates"
            acks = "rpl_semi_sync_slave_enabled" if mariadb else "rpl_semi_sync_replica_enabled"
            for r in rwsplit_sandbox.replicas:
                with closing(r.connect()) as c, c.cursor() as cur:
                    cur.execute(f"SELECT @@{updates}, @@{acks}")
                    assert cur.fetchone() == (1, 1)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--rwsplit-replicas=2",
        "--rwsplit-semi-sync",
        "--rwsplit-log-slave-updates",
        timeout=240,
    )
    result.assert_outcomes(passed=1)


def test_costs_nothing_unless_a_fixture_is_requested(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain(request):
            assert request.config.pluginmanager.has_plugin("rwsplit")
            assert "rwsplit.sandbox" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)


def test_bad_replica_count_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrwsplit_replicas = two\n")
    pytester.makepyfile(test_bad="def test_bad(rwsplit_sandbox):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.stderr.fnmatch_lines(["*rwsplit_replicas must be a whole number*"])
    assert "test_bad" not in result.stdout.str()  # stopped before any test ran
    assert result.ret != 0
