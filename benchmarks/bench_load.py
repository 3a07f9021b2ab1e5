"""Load test: throughput, latency and stale reads of rwsplit against the alternatives.

Run:  python benchmarks/bench_load.py [rwsplit bench options]
      python benchmarks/bench_load.py --recorded      # the runs recorded in README.md

The same code as ``rwsplit bench`` (:mod:`rwsplit.cli.bench`); this script adds the commit it
ran on (printed first, and in the JSON as ``"commit"``) and ``--recorded``, the exact
configurations whose figures benchmarks/README.md records.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

from rwsplit.cli import main

RECORDED = {
    # Servers capped so that they, not the 2-core client, are the bottleneck: throughput
    # against the replica count, every setup, a read-heavy mix. 0.05 core: at 0.1 the 16
    # client processes on 2 cores were the limit again by 3 replicas.
    "scaling": [
        "--cpu-cap", "0.05", "--replicas", "1,2,3", "--clients", "16", "--mix", "read-heavy",
        "--duration", "6", "--workers", "processes",
    ],
    # The POST -> redirect -> GET unit, servers uncapped: what read-your-writes costs per
    # request (two more round trips and the replica's apply delay) against the primary alone.
    "ryw": [
        "--replicas", "2", "--clients", "1,4", "--mix", "ryw", "--duration", "5",
        "--setups", "plain,rwsplit,advanced-alchemy,haproxy",
    ],
    # Throughput against clients at 2 replicas, capped (the plot).
    "clients": [
        "--cpu-cap", "0.1", "--replicas", "2", "--clients", "1,4,16", "--mix", "read-heavy",
        "--duration", "5", "--workers", "processes",
    ],
}  # fmt: skip


def commit() -> str:
    """The checked-out commit (``unknown`` outside a git work tree)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def run(args: list[str]) -> int:
    """``rwsplit bench ARGS``, with the commit in the output."""
    rev = commit()
    if "--json" not in args:
        print(f"# rwsplit bench {' '.join(args)}  (commit {rev})", flush=True)
        return main(["bench", *args])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["bench", *args])
    out = buffer.getvalue()
    try:
        report = json.loads(out)
    except ValueError:
        print(out, end="")
        return code
    print(json.dumps({"commit": rev, "args": args, **report}, indent=2))
    return code


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--recorded"]:
        rest = argv[1:]
        codes = [run([*preset, *rest]) for preset in RECORDED.values()]
        sys.exit(max(codes))
    sys.exit(run(argv))
