"""`rwsplit failover --replica ONE` after `kill -9` of the primary, as a new user runs it.

A surviving replica knows only its (dead) source; the member list the cluster keeps
(``rwsplit.cluster_nodes``, replicated) is how the failover finds the other replicas.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from rwsplit.sandbox import Sandbox, SandboxNode

from .. import fix_cli
from ..fix_sandbox import require_server
from .util import replica_status, sql, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.failover]


# Every command with the sandbox's replication account; only its arguments name the servers.
rwsplit = functools.partial(fix_cli.rwsplit, replication_account=True)


@pytest.fixture
def cli_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox started as the README says (`rwsplit sandbox up`), stopped by `down`."""
    require_server()
    d = str(tmp_path / "sb")
    up = rwsplit("sandbox", "up", "--log-slave-updates", "--dir", d)
    assert up.returncode == 0, up.stderr
    sb = Sandbox.load(d)
    try:
        yield sb
    finally:
        sb.stop()  # the nodes this process restarted
        down = rwsplit("sandbox", "down", "--purge", "--dir", d)
        assert down.returncode == 0, down.stderr


def _source_port(node: SandboxNode) -> int | None:
    status = replica_status(node)
    return status.source_port if status else None


def _follows(node: SandboxNode, primary: SandboxNode) -> bool:
    status = replica_status(node)
    return (
        status is not None
        and status.source_port == primary.port
        and status.io_connected
        and status.sql_running
    )


def _members(node: SandboxNode) -> list[str]:
    return [f"{h}:{p}" for h, p in sql(node, "SELECT host, port FROM rwsplit.cluster_nodes")]


def test_failover_from_one_replica_repoints_every_sibling(cli_sandbox: Sandbox) -> None:
    sb = cli_sandbox
    r1, r2 = sb.replicas
    sb.kill("primary")

    fo = rwsplit("failover", "--replica", r1.url, "--preferred", r1.address)
    assert fo.returncode == 0, fo.stdout + fo.stderr
    assert f"failover: promoted {r1.address} (old primary {sb.primary.address})" in fo.stdout
    assert f"replicas repointed: {r2.address}" in fo.stdout
    assert sql(r1, "SELECT @@read_only")[0][0] == 0
    wait_until(lambda: _follows(r2, r1), what="replica2 replicating from replica1")
    # `sandbox up` recorded the members; the failover dropped the replaced primary from the
    # list (on the new primary, replicated to replica2 too).
    wait_until(lambda: sorted(_members(r2)) == sorted([r1.address, r2.address]))

    again = rwsplit("failover", "--replica", r1.url, "--replica", r2.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip() == f"nothing to do: {r1.address} is the primary"


def test_an_unreachable_sibling_is_named_and_the_job_is_not_done(cli_sandbox: Sandbox) -> None:
    sb = cli_sandbox
    r1, r2 = sb.replicas
    sb.kill("primary")
    sb.kill("replica2")

    fo = rwsplit("failover", "--replica", r1.url)
    assert fo.returncode == 4, fo.stdout + fo.stderr
    assert f"failover: promoted {r1.address}" in fo.stdout
    assert f"left alone: {r2.address}: unreachable" in fo.stdout
    assert f"rwsplit: failover incomplete: {r2.address} does not follow {r1.address}" in fo.stderr

    sb.restart("replica2")
    assert _source_port(r2) == sb.primary.port  # still pointing at the dead primary
    done = rwsplit("failover", "--replica", r1.url)
    assert done.returncode == 0, done.stdout + done.stderr
    # Not "promoted X (old primary X)": this run promoted nothing.
    assert done.stdout.splitlines()[:2] == [
        f"failover: {r1.address} was already the primary; finished the job",
        f"replicas repointed: {r2.address}",
    ], done.stdout
    wait_until(lambda: _follows(r2, r1), what="replica2 replicating from replica1")
