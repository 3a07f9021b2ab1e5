"""Your own tests on a real replicated cluster, with the fixtures rwsplit installs for pytest.

Configure the cluster in pytest.ini / pyproject.toml (``rwsplit_replicas = 2``) or on the
command line (``pytest --rwsplit-replicas 1``).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from rwsplit import Cluster
from rwsplit.pytest_plugin import assert_no_replica_writes, killed, replica_lag
from rwsplit.sandbox import Sandbox


@pytest.fixture
def rwsplit_cluster_options() -> dict[str, Any]:
    return {"causal_timeout": 0.2}  # Cluster(...) options for the rwsplit_cluster fixture


@pytest.fixture
def accounts(rwsplit_sandbox: Sandbox, rwsplit_cluster: Cluster) -> Cluster:
    with rwsplit_cluster.session() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS accounts (id INT PRIMARY KEY, cents INT)"))
        s.execute(text("DELETE FROM accounts"))
        s.commit()
    rwsplit_sandbox.wait_caught_up()
    return rwsplit_cluster


def deposit(cluster: Cluster, account: int, cents: int) -> str | None:
    """The code under test: a unit of work that writes, then reads back."""
    with cluster.session() as s:
        s.execute(text("INSERT INTO accounts VALUES (:a, :c)"), {"a": account, "c": cents})
        s.commit()
        return s.causal_token


def balance(cluster: Cluster, account: int, token: str | None = None) -> int | None:
    with cluster.session(causal_token=token) as s:
        return s.scalar(text("SELECT cents FROM accounts WHERE id = :a"), {"a": account})


def test_reads_its_own_write_while_replicas_lag(
    rwsplit_sandbox: Sandbox, accounts: Cluster
) -> None:
    with replica_lag(rwsplit_sandbox), assert_no_replica_writes(rwsplit_sandbox):
        token = deposit(accounts, 1, 500)
        assert balance(accounts, 1, token) == 500  # waited for a replica, or read the primary
        assert balance(accounts, 1) is None  # without the token: a stale replica


def test_reads_survive_a_dead_replica(rwsplit_sandbox: Sandbox, accounts: Cluster) -> None:
    deposit(accounts, 2, 100)
    rwsplit_sandbox.wait_caught_up()
    with killed(rwsplit_sandbox, "replica1"):
        assert all(balance(accounts, 2) == 100 for _ in range(4))
