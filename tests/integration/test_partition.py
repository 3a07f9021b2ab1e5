"""The nemesis with a network partition: the primary cut off from the app and its replicas.

Servers run in network namespaces of their own (tests/netns.py); traffic goes only to
addresses inside 10.231.0.0/24 that this test creates and removes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fix_sandbox import require_server
from tests.nemesis import Nemesis
from tests.netns import NetnsSandbox, available

pytestmark = [pytest.mark.integration, pytest.mark.failover]


@pytest.fixture
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsSandbox]:
    require_server()
    why = available()
    if why is not None:
        pytest.skip(why)
    sandbox = NetnsSandbox(
        replicas=2,
        semi_sync=True,
        log_slave_updates=True,
        base_dir=tmp_path_factory.mktemp("partition"),
    )
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.stop()


def test_partition_of_the_primary(sb: NetnsSandbox) -> None:
    nemesis = Nemesis(sb)
    try:
        with nemesis.traffic(seconds=90):
            nemesis.wait_for_acks(20, timeout=10)
            nemesis.fault(lambda: sb.partition("primary"))
            try:
                nemesis.wait_for_acks(20, timeout=45)  # failed over to a replica
            finally:
                sb.heal("primary")  # back on the network: it must not take writes
            nemesis.healed()
            nemesis.wait_for_acks(10, timeout=20)
        report = nemesis.check()  # the history checker (tests/history.py)
        assert report.ok, report.render()
        assert report.final_primary != sb.primary.address
        assert report.result.reads > 0
    finally:
        nemesis.close()
