"""The server-free parts of PostgreSQL failover: the lock key, the choice of the standby to
promote, masked conninfo, refusals that mean "alive", the result's summary."""

from __future__ import annotations

import pytest

from rwsplit.errors import FailoverError
from rwsplit.servers.postgresql import Lsn, PgNodeState
from rwsplit.topology._pg_coordination import lock_key
from rwsplit.topology.failover import FailoverOptions
from rwsplit.topology.pg_failover import PgFailoverResult, _choose, _mask
from rwsplit.topology.pg_monitor import answered_by_server


def _standby(received: int, replayed: int) -> PgNodeState:
    return PgNodeState("15", True, True, None, Lsn(received), Lsn(replayed), 0.0)


def test_lock_key_is_stable_and_per_cluster() -> None:
    assert lock_key("shop") == lock_key("shop")
    assert lock_key("shop") != lock_key("default")
    assert -(2**63) <= lock_key("shop") < 2**63


def test_the_furthest_standby_is_chosen_then_preferred_then_order() -> None:
    options = FailoverOptions("", "")
    states = {"a:1": _standby(100, 100), "b:1": _standby(200, 200), "c:1": _standby(200, 200)}
    order = ["a:1", "b:1", "c:1"]
    assert _choose(states, options, order) == "b:1"
    assert _choose(states, FailoverOptions("", "", preferred=("c:1",)), order) == "c:1"
    # received counts: WAL flushed there is replayed before the promotion
    assert _choose({"a:1": _standby(300, 100), "b:1": _standby(200, 200)}, options, order) == "a:1"
    with pytest.raises(FailoverError, match="never_promote"):
        _choose({"a:1": _standby(1, 1)}, FailoverOptions("", "", never_promote=("a:1",)), order)


def test_conninfo_shown_without_its_password() -> None:
    shown = _mask("host=db2 port=5432 user=repl password=s3cret application_name=db3:5432")
    assert "s3cret" not in shown and "password=***" in shown and "host=db2" in shown


def test_refusals_without_sqlstate_are_a_live_server() -> None:
    assert answered_by_server(Exception("FATAL:  sorry, too many clients already"))
    assert answered_by_server(Exception("remaining connection slots are reserved for x"))
    assert not answered_by_server(Exception("connection refused"))


def test_result_names_what_needs_a_rebuild() -> None:
    result = PgFailoverResult("failover", "a:1", "b:1", repointed=["c:1"])
    result.timeline["promoted"] = 1.0
    result.needs_rebuild.append(("a:1", "run pg_rewind"))
    text = result.describe()
    assert "promoted b:1" in text and "needs a rebuild: a:1: run pg_rewind" in text
    assert result.promoted


def test_a_postgresql_configuration_fails_over_without_a_replication_account() -> None:
    from rwsplit import Cluster
    from rwsplit.topology.pg_monitor import PgMonitor

    cluster = Cluster.from_dict(
        {
            "primary_url": "postgresql+psycopg://app:x@127.0.0.1:1/shop",
            "auto_failover": True,
            "never_promote": ["127.0.0.1:2"],
        }
    )
    try:
        assert isinstance(cluster.monitor, PgMonitor)
        assert cluster.failover_options is not None
        assert cluster.failover_options.never_promote == ("127.0.0.1:2",)
    finally:
        cluster.close()
