"""The documentation site's API reference covers the public API, under the new module paths.

``mkdocs build --strict`` (scripts/check) proves every cross-reference resolves; these tests
prove the reference is *complete*: a name added to ``rwsplit.__all__`` must be listed on the
``rwsplit`` page, linked to where it is defined, and that module must be rendered somewhere.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import rwsplit

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"
LINK = re.compile(r"\[`(?P<name>[^`]+)`\]\[(?P<target>[\w.]+)\]")
DIRECTIVE = re.compile(r"^::: (?P<path>[\w.]+)\s*$", re.MULTILINE)


def _directives() -> set[str]:
    return {m["path"] for page in API.glob("*.md") for m in DIRECTIVE.finditer(page.read_text())}


def _resolve(path: str) -> tuple[ModuleType, object]:
    """The module of *path* (longest importable prefix) and the object it names."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        obj: object = module
        for attr in parts[end:]:
            obj = getattr(obj, attr)
        return module, obj
    raise AssertionError(f"{path} does not import")


def test_every_public_name_is_listed_once_and_links_to_its_definition() -> None:
    links = LINK.findall((API / "rwsplit.md").read_text())
    names = [name for name, _ in links]
    assert sorted(names) == sorted(n for n in rwsplit.__all__ if n != "__version__")
    assert len(names) == len(set(names)), "a name is listed twice"
    documented = _directives()
    for name, target in links:
        module, obj = _resolve(target)
        assert obj is getattr(rwsplit, name), f"{target} is not rwsplit.{name}"
        # the anchor is the canonical path: not an old alias (rwsplit.monitor.Monitor)
        assert target.startswith(module.__name__ + "."), f"{target}: use {module.__name__}"
        assert module.__name__ in documented, f"{target}: no '::: {module.__name__}' page"


def test_reference_pages_use_the_new_module_paths() -> None:
    documented = _directives()
    assert documented, "no ::: directive found under docs/api"
    for path in documented:
        module = importlib.import_module(path)
        # an old flat path (rwsplit.session ...) imports a module of another __name__
        assert module.__name__ == path, f"{path} is an alias of {module.__name__}"
    for wanted in ("routing", "topology", "config", "metrics", "sandbox", "errors"):
        assert f"rwsplit.{wanted}" in documented
    for wanted in ("flask", "fastapi", "pytest_plugin"):
        assert f"rwsplit.{wanted}" in documented


def _script(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_sphinx_roles_become_optional_references_to_canonical_paths() -> None:
    griffe = pytest.importorskip("griffe")
    roles = _script("griffe_sphinx_roles")
    pkg = griffe.load(
        "rwsplit",
        search_paths=[str(ROOT / "src")],
        extensions=griffe.load_extensions(roles.SphinxRoles),
    )
    sandbox = pkg["sandbox.Sandbox"]
    text = roles.convert(":class:`~rwsplit.Cluster` and :meth:`stop`::\n", sandbox)
    assert text == (
        '<autoref identifier="rwsplit.cluster.Cluster" optional><code>Cluster</code></autoref>'
        ' and <autoref identifier="rwsplit.sandbox.Sandbox.stop" optional>'
        "<code>stop()</code></autoref>:\n"
    )
    # an old module path is mapped to the module it aliases; outside the package: plain code
    assert 'identifier="rwsplit.topology.failover.FailoverOptions"' in roles.convert(
        ":class:`rwsplit.failover.FailoverOptions`", sandbox
    )
    assert roles.convert(":class:`subprocess.Popen`", sandbox) == "<code>subprocess.Popen</code>"
    leftovers = [
        obj.path
        for obj in roles._walk(pkg)
        if obj.docstring is not None and re.search(r":[a-z]+:`", obj.docstring.value)
    ]
    assert leftovers == []


def test_hooks_nav_drops_missing_pages_and_adds_unlisted_ones(tmp_path: Path) -> None:
    hooks = _script("mkdocs_hooks")
    for name, text in {"index.md": "# Home\n", "a.md": "# A\n", "new.md": "# New page\n"}.items():
        (tmp_path / name).write_text(text)
    nav = [
        {"Home": "index.md"},
        {"Guide": [{"A": "a.md"}, {"Later": "later.md"}]},
        {"Gone": [{"X": "x.md"}]},
        {"Site": "https://example.org/"},
    ]
    config = hooks.on_config({"docs_dir": str(tmp_path), "nav": nav})
    assert config["nav"] == [
        {"Home": "index.md"},
        {"Guide": [{"A": "a.md"}, {"New page": "new.md"}]},
        {"Site": "https://example.org/"},
    ]


def test_hooks_links_out_of_docs_become_repository_paths_unless_broken(tmp_path: Path) -> None:
    hooks = _script("mkdocs_hooks")
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "examples").mkdir()
    (tmp_path / "README.md").write_text("# r\n")
    (docs / "other.md").write_text("# o\n")
    text = (
        "[`examples/`](../examples) [the README](../README.md#options) [README](../README.md)\n"
        "[o](other.md) [gone](../nope.md) [web](https://example.org/x.md)\n"
        "```\n[in code](../README.md)\n```"
    )
    out = hooks._rewrite_links(text, docs, docs, docs, {})
    assert out == (
        "`examples/` the README (`README.md#options`) `README.md`\n"
        "[o](other.md) [gone](../nope.md) [web](https://example.org/x.md)\n"
        "```\n[in code](../README.md)\n```"
    )
    # a file a site page includes: the link goes to that page
    included = {(tmp_path / "README.md").resolve(): "readme.md"}
    assert hooks._rewrite_links("[r](../README.md#x)", docs, docs, docs, included) == (
        "[r](readme.md#x)"
    )
