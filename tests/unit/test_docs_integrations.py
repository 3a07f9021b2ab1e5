"""Every code line in docs/integrations.md comes from a file under examples/ (which the
integration tests run), so the page cannot drift from code that works."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def test_every_python_block_is_taken_from_a_tested_example() -> None:
    doc = (ROOT / "docs" / "integrations.md").read_text()
    blocks = BLOCK.findall(doc)
    assert len(blocks) >= 10
    example_lines = {
        line.strip()
        for path in (ROOT / "examples").rglob("*.py")
        for line in path.read_text().splitlines()
    }
    missing = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and line.strip() not in example_lines
    ]
    assert not missing, f"lines in docs/integrations.md found in no example: {missing}"


def test_every_example_is_run_by_a_test() -> None:
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for path in (ROOT / "examples").rglob("*.py"):
        name = path.relative_to(ROOT / "examples")
        folder, module = name.parts[0], path.stem
        assert (
            f'load_example("{folder}", "{module}")' in tests
            or (module == "app" and f'load_example("{folder}")' in tests)
            or f'"{folder}" / "{path.name}"' in tests
        ), f"examples/{name} is not run by any test"
