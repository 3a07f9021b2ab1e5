import pytest
from hypothesis import settings

pytest_plugins = ["tests.fix_sandbox", "tests.fix_pg"]

# Property tests check behaviour, never speed: Hypothesis's default 200 ms deadline per example
# turns a loaded CI machine into a failure (seen: 284 ms on a 2-core box running other jobs).
# Explicit @settings(...) on a test still inherit this profile's deadline.
settings.register_profile("rwsplit", deadline=None)
settings.load_profile("rwsplit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in a ``test_pg_*.py`` file is about PostgreSQL: marked ``postgresql``, so the
    MySQL pass of ``.ci/run`` leaves them out (they do not depend on RWSPLIT_SERVER_BIN)."""
    for item in items:
        if item.path.name.startswith("test_pg_"):
            item.add_marker(pytest.mark.postgresql)
