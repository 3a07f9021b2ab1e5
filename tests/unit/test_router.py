"""The framework-neutral routing state machine (rwsplit.router), without any server."""

from __future__ import annotations

import pytest
from rwsplit.classify import classify
from rwsplit.consistency import ReadYourWrites
from rwsplit.router import Route, Router, check_request, may_carry_state

from rwsplit import ConfigurationError, RoutingError


def router(**kw: object) -> tuple[Router, list[tuple[str, str]]]:
    waits: list[tuple[str, str]] = []

    def wait(node: str, token: str) -> bool:
        waits.append((node, token))
        return bool(kw.get("caught_up", True))

    r = Router(
        lambda: kw.get("replica", "r1"),  # type: ignore[arg-type,return-value]
        wait,
        read_your_writes=kw.get("mode", ReadYourWrites.GTID),  # type: ignore[arg-type]
        causal_token=kw.get("token"),  # type: ignore[arg-type]
    )
    return r, waits


def go(r: Router, sql: str, requested: str | None = None) -> str:
    d = r.route(classify(sql), requested)
    return d.node if d.route is Route.REPLICA else d.route.value  # type: ignore[return-value]


def test_reads_replica_writes_primary_and_stick_until_the_transaction_ends() -> None:
    r, _ = router()
    assert go(r, "SELECT 1") == "r1"
    assert go(r, "INSERT INTO t VALUES (1)") == "primary"
    assert r.wrote and r.sticky
    assert go(r, "SELECT 1") == "primary"
    r.end_transaction()
    assert not r.wrote
    assert go(r, "SELECT 1") == "r1"


def test_pins_survive_the_end_of_a_transaction_until_released() -> None:
    r, _ = router()
    go(r, "SELECT GET_LOCK('a', 1)")
    assert r.pins == {"named lock"}
    r.end_transaction()
    assert go(r, "SELECT 1") == "primary"
    go(r, "SELECT RELEASE_LOCK('a')")
    assert not r.pins
    r.end_transaction()
    assert go(r, "SELECT 1") == "r1"


def test_session_state_pins_until_release() -> None:
    r, _ = router()
    go(r, "SET @x = 1")
    r.end_transaction()
    assert r.pinned and go(r, "SELECT @x") == "primary"
    r.release()
    assert not r.pinned
    assert go(r, "SELECT 1") == "r1"


@pytest.mark.parametrize(
    ("sql", "carries"),
    [
        ("SET @x = 1", True),
        ("USE other", True),
        ("SET time_zone = '+01:00'", True),
        ("CALL p()", True),
        ("DO 1", True),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", True),
        ("CREATE TEMPORARY TABLE t (a INT)", True),
        ("SELECT GET_LOCK('x', 1)", True),
        ("INSERT INTO t VALUES (1)", False),
        ("UPDATE t SET a = 1", False),
        ("COMMIT", False),
        ("BEGIN", False),
        ("SELECT 1", False),
        ("SELECT * FROM t FOR UPDATE", False),
    ],
)
def test_may_carry_state(sql: str, carries: bool) -> None:
    assert may_carry_state(classify(sql)) is carries


def test_a_write_forced_to_the_primary_counts_as_a_write() -> None:
    r, _ = router()
    assert go(r, "INSERT INTO t VALUES (1)", "primary") == "primary"
    assert r.wrote and r.sticky


def test_a_read_forced_to_the_primary_is_not_sticky() -> None:
    r, _ = router()
    assert go(r, "SELECT 1", "primary") == "primary"
    assert not r.sticky and not r.wrote
    assert go(r, "SELECT 1") == "r1"


def test_use_primary_wins_over_a_replica_request() -> None:
    r, _ = router()
    with r.use_primary():
        assert go(r, "SELECT 1", "replica") == "primary"
    assert go(r, "SELECT 1", "replica") == "r1"


def test_stickiness_wins_over_a_replica_request() -> None:
    r, _ = router()
    go(r, "UPDATE t SET a = 1")
    assert go(r, "SELECT 1", "replica") == "primary"


def test_a_replica_request_for_a_write_is_refused() -> None:
    r, _ = router()
    with pytest.raises(RoutingError, match="never go to a replica"):
        go(r, "DELETE FROM t", "replica")


def test_bad_requests_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="'primary' or 'replica'"):
        check_request("master", "bind argument")
    assert check_request("replica", "x") == "replica"


def test_causal_token_waits_once_per_replica_and_falls_back() -> None:
    r, waits = router(token="0-1-5")
    assert go(r, "SELECT 1") == "r1"
    assert go(r, "SELECT 1") == "r1"
    assert waits == [("r1", "0-1-5")]
    late, _ = router(token="0-1-5", caught_up=False)
    assert go(late, "SELECT 1") == "primary"


def test_commit_that_wrote_arms_the_token() -> None:
    r, waits = router()
    go(r, "INSERT INTO t VALUES (1)")
    r.committed("0-1-9")
    r.end_transaction()
    assert r.causal_token == "0-1-9"
    assert go(r, "SELECT 1") == "r1"
    assert waits == [("r1", "0-1-9")]


def test_primary_window_policy() -> None:
    r, _ = router(mode=ReadYourWrites.PRIMARY)
    go(r, "INSERT INTO t VALUES (1)")
    r.committed(None)
    r.end_transaction()
    assert go(r, "SELECT 1") == "primary"


def test_read_only_transaction_stays_on_one_replica() -> None:
    r, _ = router()
    d = r.route(classify("START TRANSACTION READ ONLY"))
    assert d.opens_read_only and d.node == "r1"
    assert go(r, "SELECT 1") == "r1"
    with pytest.raises(RoutingError, match="READ ONLY"):
        go(r, "UPDATE t SET a = 1")
    with pytest.raises(RoutingError, match="session state"):
        go(r, "SET @x = 1")
    assert go(r, "COMMIT") == "r1"
    assert r.read_only_node is None


def test_no_replica_means_primary() -> None:
    r, _ = router(replica=None)
    assert go(r, "SELECT 1") == "primary"
    assert not r.sticky


def test_last_goes_where_the_previous_statement_went() -> None:
    r, _ = router()
    assert go(r, "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1") in ("r1", "primary")
    previous = go(r, "SELECT 1")
    assert go(r, "SELECT FOUND_ROWS()") == previous


def test_heal_sends_the_rerun_to_the_primary() -> None:
    r, _ = router()
    assert go(r, "SELECT f()") in ("r1", "primary")
    r.heal_next()
    assert go(r, "SELECT f()") == "primary"
    assert r.sticky
