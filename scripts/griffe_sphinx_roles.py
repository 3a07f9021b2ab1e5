"""Griffe extension for the docs site: render rwsplit's Sphinx-style docstring markup as Markdown.

rwsplit's docstrings are written in reStructuredText habits (``:class:`Node```, ``::`` before a
literal block, ``>>>`` doctests, ``:param:`` fields). mkdocstrings parses the fields
(``docstring_style: sphinx``); this extension, run once the package is loaded, rewrites the
rest before the docstrings are rendered:

* a role becomes an *optional* cross-reference to the object's canonical path (a link when that
  object is on the site, plain code otherwise, never a broken-reference warning); names are
  resolved the way Sphinx does (``~`` shortens, a leading ``.`` is relative to the module, a bare
  name is looked up in the object's scope), and old module paths kept as aliases
  (``rwsplit.session`` ...) are mapped to the module they alias;
* ``.. code-block:: LANG`` and its indented block become a fenced block;
* a paragraph ending in ``::`` ends in ``:`` (its indented block is code in Markdown too);
* a run of ``>>>`` lines with their output becomes a fenced ``pycon`` block (one in an
  indented literal block is code already).
"""

from __future__ import annotations

import html
import importlib
import logging
import re
from typing import Any

import griffe

_log = logging.getLogger("mkdocs.plugins.griffe_sphinx_roles")

_ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<body>[^`]+)`")
_EXPLICIT = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^>]+)>$")
_CALLABLE_ROLES = {"func", "meth"}


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is complete."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_walk(member))  # type: ignore[arg-type]
    return found


def convert(text: str, scope: griffe.Object) -> str:
    """Return *text* with roles, ``::`` and doctest blocks turned into Markdown."""
    text = _ROLE.sub(lambda m: _role(m.group("role"), m.group("body"), scope), text)
    text = _fence_code_blocks(text)
    text = re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)
    text = re.sub(r"^\s*::$", "", text, flags=re.MULTILINE)
    return _fence_doctests(text)


def _role(role: str, body: str, scope: griffe.Object) -> str:
    title = None
    explicit = _EXPLICIT.match(body)
    if explicit:
        title, body = explicit.group("title"), explicit.group("target")
    target = body.lstrip("~")
    if title is None:
        title = target.rsplit(".", 1)[-1] if body.startswith("~") else target.lstrip(".")
        if role in _CALLABLE_ROLES:
            title += "()"
    code = f"<code>{html.escape(title)}</code>"
    path = _resolve(target, scope)
    if path is None:
        if target.startswith(scope.package.name):
            _log.info("%s: no object %r for :%s: (shown as code)", scope.path, target, role)
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _resolve(target: str, scope: griffe.Object) -> str | None:
    """The canonical path of *target* seen from *scope*, or None outside the package."""
    package = scope.package
    if target.startswith("."):
        module = scope if scope.is_module else scope.module
        base = module.path if module.is_init_module else module.parent.path  # type: ignore[union-attr]
        path = f"{base}.{target.lstrip('.')}"
    else:
        head, _, rest = target.partition(".")
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, KeyError):
            path = head
        if rest:
            path = f"{path}.{rest}"
    path = _unalias_module(path)
    if path != package.name and not path.startswith(package.name + "."):
        return None
    try:
        obj = package[path[len(package.name) + 1 :]] if path != package.name else package
        if isinstance(obj, griffe.Alias):
            return str(obj.final_target.path)
        return str(obj.path)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _unalias_module(path: str) -> str:
    """Map the longest module prefix of *path* to the module it really is (``__name__``)."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:end]))
        except Exception:  # not a module (a class, a function, a missing name)
            continue
        return ".".join([module.__name__, *parts[end:]])
    return path


_CODE_BLOCK = re.compile(
    r"^(?P<indent> *)\.\. (?:code-block|code|sourcecode)::\s*(?P<lang>\S*)\s*$"
)


def _fence_code_blocks(text: str) -> str:
    """``.. code-block:: LANG`` and its indented block become a fenced block."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _CODE_BLOCK.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = len(m.group("indent"))
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        body = [b for b in block if b.strip()]
        strip = min((_indent(b) for b in body), default=0)
        pad = " " * indent
        fence = [f"{pad}```{m.group('lang')}", *(pad + b[strip:] for b in block if b), f"{pad}```"]
        out.extend([*fence, ""])
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _fence_doctests(text: str) -> str:
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(">>>"):  # an indented one is in a literal block already
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out.extend(["```pycon", *block, "```"])
            continue
        out.append(line)
        i += 1
    return "\n".join(out)
