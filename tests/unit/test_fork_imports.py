"""The modules rwsplit imports lazily are finished before a fork (see ``cluster._before_fork``).

A module half-imported by another thread at ``fork()`` stays locked forever in the child. The
list the hook imports must therefore name every rwsplit module that the monitor thread or the
first statement of a connection imports inside a function: this test reads those imports from
the source, so a new lazy import without its entry fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rwsplit
from rwsplit import cluster

SRC = Path(rwsplit.__file__).parent

# Code that runs on the monitor's threads or when a pooled connection first connects.
THREADED = [
    SRC / "topology" / "monitor.py",
    SRC / "topology" / "probe.py",
    SRC / "cluster.py",
]


def _lazy_imports(path: Path, package: str) -> set[str]:
    names: set[str] = set()
    tree = ast.parse(path.read_text())
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
    return names


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts[:-1])


def test_every_lazy_rwsplit_import_on_a_threaded_path_is_finished_before_fork() -> None:
    wanted: set[str] = set()
    for path in THREADED:
        wanted |= _lazy_imports(path, _package_of(path))
    # Modules only the asyncio or the SQLAlchemy session paths import lazily (they run on the
    # caller's thread, which is the thread that forks) need no entry.
    wanted -= {"rwsplit.asyncio", "rwsplit.integrations.sqlalchemy", "rwsplit._async_drivers"}
    wanted -= {"rwsplit._drivers", "rwsplit.config", "rwsplit.errors"}
    assert "rwsplit.topology.failover" in wanted  # the scan finds what it is for
    missing = {m for m in wanted if m not in cluster._LAZY_MODULES}
    assert not missing, f"add to rwsplit.cluster._LAZY_MODULES: {sorted(missing)}"
