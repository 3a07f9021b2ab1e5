"""Load the shipped examples (examples/<name>/app.py) as they are; freeze replicas' apply."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from rwsplit.sandbox import Sandbox

from .util import sql

__all__ = ["EXAMPLES", "load_example", "sql_threads_stopped"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, module: str = "app") -> ModuleType:
    """Import examples/<name>/<module>.py (once per test run)."""
    module_name = f"rwsplit_example_{name}_{module}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


@contextlib.contextmanager
def sql_threads_stopped(sb: Sandbox) -> Iterator[None]:
    """Replicas receive but do not apply: anything written in the block is missing there."""
    for r in sb.replicas:
        sql(r, "STOP SLAVE SQL_THREAD")
    try:
        yield
    finally:
        for r in sb.replicas:
            sql(r, "START SLAVE SQL_THREAD")
