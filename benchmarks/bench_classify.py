"""Benchmarks of rwsplit's statement classifier, as ratios against baselines from the same run.

Run:  python benchmarks/bench_classify.py [--rounds 7] [--suite all|corpus|big|memory]
          [--before COMMIT]

Suite ``corpus``: time per statement of rwsplit's classifier, uncached, on the corpus of
realistic application statements of ``bench_routing.py``, next to
``sqlparse.parse(sql)[0].get_type()`` on the same statements; also the general path alone
(every statement through the lexer and rules, no shortcut) and the cached lookup.

Suite ``big``: classification of 100 KB and 1 MB statements (a SELECT with a long IN list, the
same with a comment so it takes the lexer, a multi-row INSERT, the same with ";" inside its
strings, a SELECT of many columns with and without a comment inside or FOR UPDATE at the
end), next to the general
path alone (lexer and rules, no shortcut) and to one ``str.upper()`` of the text (the cheapest
pass over every character). With ``--before COMMIT``, also the classifier of that commit
(loaded from git), on the corpus and on the big statements.

Suite ``memory``: resident memory of this process after classifying 2,000 distinct 170 KB
statements through ``classify()`` (cached), next to an entry-bounded ``functools.lru_cache``
(8,192 entries, what rwsplit had before) on the same statements.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import importlib
import importlib.util
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlparse
from rwsplit.classify import _classify_lexed, _classify_text, _classify_uncached

from rwsplit import classify

sys.path.insert(0, str(Path(__file__).parent))
from bench_routing import CORPUS  # the routing benchmark's corpus, shared


def load_before(commit: str) -> Callable[[str], object]:
    """The uncached classifier of *commit*: that commit's whole package, from git, imported
    as ``rwsplit_before`` (its modules import each other relatively)."""
    archive = subprocess.run(
        ["git", "archive", commit, "src/rwsplit"],
        cwd=Path(__file__).parent.parent,
        check=True,
        capture_output=True,
    ).stdout
    root = Path(tempfile.mkdtemp(prefix="rwsplit-before-"))
    atexit.register(shutil.rmtree, root, True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    (root / "src" / "rwsplit").rename(root / "rwsplit_before")
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("rwsplit_before.routing.classify")
    except ModuleNotFoundError:  # before the routing/ layout
        module = importlib.import_module("rwsplit_before.classify")
    fn = module.__dict__["_classify_text"]
    return getattr(fn, "__wrapped__", fn)  # type: ignore[no-any-return]


def per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def bench_corpus(rounds: int, before: Callable[[str], object] | None) -> list[tuple[str, float]]:
    def uncached() -> None:
        for s in CORPUS:
            _classify_uncached(s)

    def general() -> None:
        for s in CORPUS:
            _classify_lexed(s)

    def cached() -> None:
        for s in CORPUS:
            classify(s)

    def with_sqlparse() -> None:
        for s in CORPUS:
            sqlparse.parse(s)[0].get_type()

    def old() -> None:
        assert before is not None
        for s in CORPUS:
            before(s)

    cached()  # fill the cache
    cases = {
        "sqlparse": (with_sqlparse, 20),
        "rwsplit uncached": (uncached, 400),
        "  general path only": (general, 200),
        "rwsplit cached": (cached, 20000),
    }
    if before is not None:
        cases["before, uncached"] = (old, 200)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):  # interleaved: load on the machine hits every case alike
        for name, (fn, n) in cases.items():
            samples[name].append(per_call(fn, n) / len(CORPUS))
    return [(k, statistics.median(v)) for k, v in samples.items()]


def big_statements(size: int) -> dict[str, str]:
    ids = []
    total = 0
    i = 0
    while total < size:
        item = f"{i * 7919 % 1000003}"
        ids.append(item)
        total += len(item) + 2
        i += 1
    rows = []
    total = 0
    i = 0
    while total < size:
        row = f"({i}, 'name {i}', 'note for row {i}', {i % 97}.5)"
        rows.append(row)
        total += len(row) + 2
        i += 1
    select = "SELECT id, name, total FROM orders WHERE status = 'paid' AND id IN (" + ", ".join(ids)
    select += ") ORDER BY id"
    insert = "INSERT INTO orders (id, name, note, total) VALUES " + ", ".join(rows)
    columns = ", ".join(f"t{i % 7}.col_{i}" for i in range(len(ids) * 2 // 3))
    wide = f"SELECT {columns} FROM t0 JOIN t1 USING (id) WHERE t0.id > 5"
    half = len(columns) // 2
    comma = columns.index(", ", half)
    commented = f"SELECT {columns[:comma]} /* middle */{columns[comma:]} FROM t0 WHERE t0.id > 5"
    return {
        "SELECT, IN list": select,
        "SELECT, IN list + comment": select + " -- report",
        "SELECT, many columns": wide,
        "SELECT, columns, comment inside": commented,
        "SELECT, columns, FOR UPDATE": wide + " FOR UPDATE",
        "INSERT, multi-row": insert,
        "INSERT, ';' in strings": insert.replace("note for row", "note; row"),
    }


def bench_big(
    rounds: int, before: Callable[[str], object] | None
) -> list[tuple[str, int, float, float, float, float]]:
    rows = []
    for size in (100 * 1024, 1024 * 1024):
        for name, sql in big_statements(size).items():
            n = 5 if size < 1024 * 1024 else 2
            fast: list[float] = []
            general: list[float] = []
            upper: list[float] = []
            old: list[float] = []
            for _ in range(rounds):
                fast.append(per_call(functools.partial(_classify_uncached, sql), n))
                general.append(per_call(functools.partial(_classify_lexed, sql), 1))
                upper.append(per_call(sql.upper, n * 4))
                if before is not None:
                    old.append(per_call(functools.partial(before, sql), 1))
            assert _classify_uncached(sql).target.value == _classify_lexed(sql).target.value
            rows.append(
                (
                    name,
                    len(sql),
                    statistics.median(fast),
                    statistics.median(general),
                    statistics.median(upper),
                    statistics.median(old) if old else float("nan"),
                )
            )
    return rows


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 1e6


def distinct_statements(count: int, size: int) -> Callable[[int], str]:
    body = ", ".join(str(k) for k in range(size // 8))

    def make(i: int) -> str:
        if i % 2:
            return f"SELECT * FROM t WHERE k = {i} AND id IN ({body})"
        return f"INSERT INTO t (k, v) VALUES ({i}, '{body}')"

    return make


def bench_memory(count: int = 2000, size: int = 170 * 1024) -> list[tuple[str, float, str]]:
    make = distinct_statements(count, size)
    rows = []

    def run(fn: Callable[[str], object]) -> float:
        gc.collect()
        before = rss_mb()
        for i in range(count):
            fn(make(i))
        gc.collect()
        return rss_mb() - before

    _classify_text.clear()
    grown = run(classify)
    info = _classify_text.info()
    rows.append(("rwsplit classify() cache", grown, f"{info.entries} entries, {info.bytes} B"))
    _classify_text.clear()
    old = functools.lru_cache(maxsize=8192)(_classify_uncached)
    grown = run(old)
    rows.append(("lru_cache(maxsize=8192)", grown, f"{old.cache_info().currsize} entries"))
    old.cache_clear()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (median taken)")
    parser.add_argument("--suite", choices=["all", "corpus", "big", "memory"], default="all")
    parser.add_argument("--before", metavar="COMMIT", help="also time the classifier of COMMIT")
    args = parser.parse_args()
    before = load_before(args.before) if args.before else None

    if args.suite in ("all", "corpus"):
        rows = bench_corpus(args.rounds, before)
        base = dict(rows)["sqlparse"]
        print(f"\nclassification, per statement (corpus of {len(CORPUS)}), uncached unless said")
        print(f"{'case':<28} {'time':>12} {'sqlparse / case':>16}")
        for name, t in rows:
            print(f"{name:<28} {t * 1e6:>10.2f}us {base / t:>15.1f}x")
    if args.suite in ("all", "big"):
        print("\nbig statements, uncached, per statement")
        print(
            f"{'statement':<32} {'size':>7} {'rwsplit':>10} {'general':>10} {'before':>10} "
            f"{'general/rwsplit':>16} {'before/rwsplit':>15} {'rwsplit/upper()':>16}"
        )
        for name, size, fast, general, upper, old in bench_big(max(3, args.rounds // 2), before):
            print(
                f"{name:<32} {size / 1024:>5.0f}KB {fast * 1e3:>8.2f}ms {general * 1e3:>8.1f}ms "
                f"{old * 1e3:>8.1f}ms {general / fast:>15.1f}x {old / fast:>14.1f}x "
                f"{fast / upper:>15.1f}x"
            )
    if args.suite in ("all", "memory"):
        print("\nresident memory growth after 2,000 distinct 170 KB statements")
        for name, grown, detail in bench_memory():
            print(f"{name:<28} {grown:>8.1f} MB   ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
