"""A Hypothesis state machine: sessions taking turns on a primary pool of ONE connection.

Random session-state statements, named locks, temporary tables, commits, rollbacks and closes
run in one session; whenever a session closes, the next one (sure to get the same pooled
connection) must see the server's defaults and no lock or temporary table of the other.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from rwsplit import Cluster, RoutingSession
from rwsplit.sandbox import Sandbox

from ..fix_sandbox import tx_variable

pytestmark = pytest.mark.integration

STATE = [
    "SET @v = 42",
    "SET time_zone = '+05:00'",
    "SET SESSION sql_mode = 'ANSI_QUOTES'",
    "SET autocommit = 1",
    "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET SESSION TRANSACTION READ ONLY",
    "SET NAMES latin1",
    "SELECT 7 INTO @w",
    "SET @@session.wait_timeout = 77",
    "USE mysql",
    "PREPARE p FROM 'SELECT 1'",
    "SELECT GET_LOCK('sm_lock', 0)",
    "LOCK TABLES sm_t READ",
    "UNLOCK TABLES",
    "CREATE TEMPORARY TABLE sm_tmp (a INT)",
    "HANDLER sm_t OPEN",
]

# What a new session must see on the primary: the server's defaults, nothing of the last.
CLEAN = (
    "SELECT @v IS NULL AND @w IS NULL"
    " AND @@session.time_zone = @@global.time_zone"
    " AND @@session.sql_mode = @@global.sql_mode"
    f" AND @@session.{tx_variable('isolation')} = @@global.{tx_variable('isolation')}"
    f" AND @@session.{tx_variable('read_only')} = 0"
    " AND @@session.autocommit = 0"
    " AND @@session.character_set_client = 'utf8mb4'"
    " AND @@session.wait_timeout = @@global.wait_timeout"
    " AND DATABASE() = 'rwsplit'"
    " AND IS_USED_LOCK('sm_lock') IS NULL"
)


class Turns(RuleBasedStateMachine):
    cluster: Cluster
    sandbox: Sandbox

    def __init__(self) -> None:
        super().__init__()
        self.session: RoutingSession | None = None
        self.checked = 0

    @initialize()
    def open_first(self) -> None:
        self.session = self.cluster.session()

    def _run(self, sql: str) -> None:
        assert self.session is not None
        with contextlib.suppress(DBAPIError):  # e.g. SET autocommit inside LOCK TABLES
            self.session.execute(text(sql))

    @rule(sql=st.sampled_from(STATE))
    def state(self, sql: str) -> None:
        self._run(sql)

    @rule()
    def write(self) -> None:
        self._run("INSERT INTO sm_t (a) VALUES (1)")

    @rule()
    def commit(self) -> None:
        assert self.session is not None
        with contextlib.suppress(DBAPIError):
            self.session.commit()

    @rule()
    def rollback(self) -> None:
        assert self.session is not None
        self.session.rollback()

    @rule()
    def next_session(self) -> None:
        assert self.session is not None
        self.session.close()
        self.session = self.cluster.session()
        with self.session.use_primary():
            clean = self.session.execute(text(CLEAN)).scalar()
            try:  # a temporary table of the other session must be gone
                self.session.execute(text("SELECT 1 FROM sm_tmp"))
                leaked = True
            except DBAPIError as exc:
                assert "1146" in str(exc.orig)
                leaked = False
        assert clean == 1, "the new session inherited state through the pool"
        assert not leaked, "the new session sees the other's temporary table"
        self.checked += 1

    @invariant()
    def a_session_is_open(self) -> None:
        assert self.session is not None

    def teardown(self) -> None:
        if self.session is not None:
            self.session.close()


def test_sessions_sharing_one_connection_never_see_each_others_state(sandbox: Sandbox) -> None:
    engine_options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 5}
    with Cluster(sandbox.primary_url, sandbox.replica_urls, engine_options=engine_options) as c:
        with c.write_engine().begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS sm_t (a INT)"))
        Turns.cluster = c
        Turns.sandbox = sandbox
        state_machine = Turns.TestCase
        state_machine.settings = settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        state_machine().runTest()
