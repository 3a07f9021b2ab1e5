"""Issue 17, defect 7 through the Django backend: a read that outlives
``replica_read_timeout`` runs once, raises ``OperationalError`` carrying
:class:`~rwsplit.ReadFailedError`, and ejects no replica."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from rwsplit.sandbox import Sandbox
from tests.djangoapp import add_alias, configure, drop_alias, node_settings
from tests.integration.test_reliability_reads import general_log, runs

pytestmark = pytest.mark.integration

configure()

from django.db import OperationalError, connections  # noqa: E402

from rwsplit import ReadFailedError  # noqa: E402
from rwsplit.django import rwsplit_error  # noqa: E402


@pytest.fixture
def slow_alias(sandbox: Sandbox) -> Iterator[str]:
    add_alias("slowreads", node_settings(sandbox, replica_read_timeout=1))
    try:
        yield "slowreads"
    finally:
        drop_alias("slowreads")


def test_a_slow_read_runs_once_and_ejects_no_replica(slow_alias: str, sandbox: Sandbox) -> None:
    marker = f"django-slow-{uuid.uuid4().hex}"
    conn = connections[slow_alias]
    with general_log(sandbox):
        with pytest.raises(OperationalError) as caught, conn.cursor() as cursor:
            cursor.execute(f"SELECT SLEEP(1.5) /* {marker} */")
        err = rwsplit_error(caught.value)
        assert isinstance(err, ReadFailedError), caught.value
        assert "replica_read_timeout" in str(err)
        ran = runs(sandbox, marker)
        assert sum(ran.values()) == 1, f"the slow read ran {ran}"
        assert ran[sandbox.primary.address] == 0
        assert all(n.healthy for n in conn.cluster.topology.nodes)
