"""The ``rwsplit`` command run as a user runs it: ``python -m rwsplit ...`` in a separate
process, its exit code and output checked by the test.

* :func:`rwsplit`: one command; never raises for a non-zero exit (the tests assert on it).
  ``replication_account=True`` for commands that change replication (``failover``,
  ``switchover``): the sandbox's account, and no cluster named by a developer's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys

from rwsplit.sandbox import REPL_PASSWORD, REPL_USER

__all__ = ["rwsplit"]

_CLUSTER_VARIABLES = ("RWSPLIT_PRIMARY_URL", "RWSPLIT_REPLICA_URLS", "RWSPLIT_HOST")


def rwsplit(
    *args: str, timeout: float = 180, replication_account: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m rwsplit ARGS`` in a new process: its exit code, stdout and stderr.

    *replication_account*: the process gets the sandbox's replication account
    (``RWSPLIT_REPLICATION_USER`` / ``RWSPLIT_REPLICATION_PASSWORD``) and none of
    ``RWSPLIT_PRIMARY_URL``, ``RWSPLIT_REPLICA_URLS``, ``RWSPLIT_HOST``: only *args* name the
    servers. Otherwise it inherits this process's environment as it is.
    """
    env = None
    if replication_account:
        env = dict(os.environ, RWSPLIT_REPLICATION_USER=REPL_USER)
        env["RWSPLIT_REPLICATION_PASSWORD"] = REPL_PASSWORD
        for var in _CLUSTER_VARIABLES:
            env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "rwsplit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
