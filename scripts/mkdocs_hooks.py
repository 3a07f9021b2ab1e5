"""MkDocs hooks for the docs site (``hooks:`` in mkdocs.yml); the pages stay plain Markdown.

The same ``docs/*.md`` files are read on a repository browser and built into the site, so:

* **nav entries for pages that are not there are dropped** (a guide page that another branch
  has not merged yet) instead of failing ``mkdocs build --strict``, and a ``docs/*.md`` page
  that the nav does not list is added to its Guide section (titled by its first heading);
* ``<!-- include PATH -->`` ... ``<!-- end include -->`` is replaced by the file at *PATH*
  (relative to the page): ``docs/benchmarks.md`` shows ``benchmarks/README.md`` on the site
  and a link to it in the repository;
* a relative link that leaves ``docs/`` to a file that exists (``../examples``,
  ``../README.md#options``) points to the site page that includes that file when there is one,
  and otherwise becomes the repository path as code (after the link text, unless that text
  names the path), since the site holds no such page.
  A link to a file that does not exist is left alone, so ``--strict`` still fails on it.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

_log = logging.getLogger("mkdocs.hooks.rwsplit")

_INCLUDE = re.compile(r"<!--\s*include\s+(?P<path>\S+)\s*-->.*?<!--\s*end include\s*-->", re.DOTALL)
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


GUIDE_SECTION = "Guide"


def on_config(config: Any, **kwargs: Any) -> Any:
    """Drop nav entries whose file is missing; add top-level pages the nav does not list."""
    docs = Path(config["docs_dir"])
    if config["nav"]:
        config["nav"] = _present(config["nav"], docs)
        _add_unlisted(config["nav"], docs)
    return config


def _add_unlisted(nav: list[Any], docs: Path) -> None:
    """Append each ``docs/*.md`` page the nav does not name to its Guide section."""
    listed = set(_files(nav))
    guide = next((i for i in nav if isinstance(i, dict) and GUIDE_SECTION in i), None)
    for page in sorted(docs.glob("*.md")):
        if page.name in listed:
            continue
        heading = re.search(r"^# (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
        title = heading.group(1).strip() if heading else page.stem
        _log.info("nav: %s is not listed in mkdocs.yml; added to %s", page.name, GUIDE_SECTION)
        if guide is None:
            guide = {GUIDE_SECTION: []}
            nav.insert(1, guide)
        guide[GUIDE_SECTION].append({title: page.name})


def _files(items: list[Any]) -> list[str]:
    found: list[str] = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        found.extend(_files(value) if isinstance(value, list) else [value])
    return found


def _present(items: list[Any], docs: Path) -> list[Any]:
    kept: list[Any] = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            value = _present(value, docs)
            if not value:
                continue
            item = {next(iter(item)): value}
        elif _is_local(value) and not (docs / value).is_file():
            _log.info("nav: %s is not in %s yet; left out", value, docs)
            continue
        kept.append(item)
    return kept


def _is_local(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:|^/|^#", target)


_included: dict[Path, str] = {}  # file outside docs_dir -> the page that includes it


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    """Note which files outside docs_dir each page includes (links to them go to the page)."""
    docs = Path(config["docs_dir"]).resolve()
    _included.clear()
    for file in files.documentation_pages():
        source = docs / file.src_uri
        for m in _INCLUDE.finditer(source.read_text(encoding="utf-8")):
            _included[(source.parent / m.group("path")).resolve()] = file.src_uri
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    """Expand includes, then rewrite links that leave docs_dir."""
    docs = Path(config["docs_dir"]).resolve()
    page_dir = (docs / page.file.src_uri).parent
    markdown = _INCLUDE.sub(lambda m: _include(m.group("path"), page_dir, docs), markdown)
    return _rewrite_links(markdown, page_dir, page_dir, docs, _included)


def _include(path: str, page_dir: Path, docs: Path) -> str:
    source = (page_dir / path).resolve()
    text = source.read_text(encoding="utf-8")  # missing: the build fails, as it should
    return _rewrite_links(text, source.parent, page_dir, docs, _included)


def _rewrite_links(
    text: str, base: Path, page_dir: Path, docs: Path, included: dict[Path, str]
) -> str:
    """Rewrite the links of *text* (written relative to *base*) for a page in *page_dir*."""
    out, fenced = [], False
    for line in text.split("\n"):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        if not fenced:
            line = _LINK.sub(lambda m: _link(m, base, page_dir, docs, included), line)
        out.append(line)
    return "\n".join(out)


def _link(
    m: re.Match[str], base: Path, page_dir: Path, docs: Path, included: dict[Path, str]
) -> str:
    text, target = m.group("text"), m.group("target")
    if not _is_local(target):
        return m.group(0)
    path, _, anchor = target.partition("#")
    resolved = (base / path).resolve() if path else None
    if resolved is None or (resolved.is_relative_to(docs) and base == page_dir):
        return m.group(0)  # a link inside docs/: mkdocs checks it
    if resolved.is_relative_to(docs):  # from an included file into docs/
        rel = posixpath.relpath(resolved.as_posix(), page_dir.as_posix())
        return f"[{text}]({rel}{'#' + anchor if anchor else ''})"
    if not resolved.exists():
        return m.group(0)  # broken: let --strict report it
    if resolved in included:
        rel = posixpath.relpath((docs / included[resolved]).as_posix(), page_dir.as_posix())
        return f"[{text}]({rel}{'#' + anchor if anchor else ''})"
    repo_path = resolved.relative_to(docs.parent).as_posix()
    if resolved.is_dir():
        repo_path += "/"
    where = f"`{repo_path}{'#' + anchor if anchor else ''}`"
    named = text.strip("`").strip("/").lower()
    if named and named in repo_path.lower():  # [README](../README.md#x), [`examples/`](...)
        return where
    return f"{text} ({where})"
