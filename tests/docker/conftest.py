"""The docker-compose path (MySQL 8), for users with a Docker engine: NOT run on CI.

Enable with ``RWSPLIT_DOCKER=1 pytest -m docker tests/docker`` after
``pip install -e '.[test,docker]'``; pytest-docker starts and stops docker-compose.yml.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not os.environ.get("RWSPLIT_DOCKER"):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def docker_compose_file(pytestconfig: pytest.Config) -> str:
    return str(Path(pytestconfig.rootpath) / "docker-compose.yml")
