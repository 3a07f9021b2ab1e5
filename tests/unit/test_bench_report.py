"""`rwsplit bench` reporting without servers: the targets' verdicts, the table, the JSON shape,
the plot and its missing-extra message, the generated HAProxy configuration, option checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rwsplit.cli import main
from rwsplit.cli.bench import (
    BenchOptions,
    BenchReport,
    CpuCaps,
    HAProxy,
    RunResult,
    format_table,
    plot,
    run_bench,
    targets,
)
from rwsplit.errors import ConfigurationError


def _result(setup: str, mix: str, replicas: int, throughput: float, p50: float) -> RunResult:
    return RunResult(
        setup=setup,
        mix=mix,
        replicas=replicas,
        clients=16,
        workers="threads",
        throughput=throughput,
        units=int(throughput * 5),
        seconds=5.0,
        p50_ms=p50,
        p95_ms=p50 * 2,
        p99_ms=p50 * 3,
        stale_reads=0,
        errors=0,
        nodes={
            "127.0.0.1:1": {"role": "primary", "com_select": 10, "share": 0.1, "routed": None},
            "127.0.0.1:2": {"role": "replica", "com_select": 90, "share": 0.9, "routed": None},
        },
    )


@pytest.fixture
def report() -> BenchReport:
    return BenchReport(
        mixes={"read-heavy": {"point": 100}, "ryw": {"ryw": 100}},
        results=[
            _result("plain", "read-heavy", 0, 100.0, 5.0),
            _result("rwsplit", "read-heavy", 2, 190.0, 3.0),
            _result("rwsplit", "read-heavy", 3, 250.0, 3.0),
            _result("haproxy", "read-heavy", 3, 260.0, 3.0),
            _result("plain", "ryw", 0, 100.0, 4.0),
            _result("rwsplit", "ryw", 3, 80.0, 5.0),
        ],
        skipped={"sysbench": "sysbench is not installed (apt-get install sysbench)"},
    )


def test_targets_are_ratios_against_the_same_run(report: BenchReport) -> None:
    got = {t["what"]: t for t in targets(report)}
    two = got["read-heavy: rwsplit, 2 replicas / plain"]
    assert (two["ratio"], two["aim"]) == (1.9, 1.8)
    assert got["read-heavy: rwsplit, 3 replicas / plain"]["ratio"] == 2.5
    assert got["read-heavy: rwsplit / haproxy, 3 replicas"]["ratio"] == 0.96
    ryw = got["ryw unit p50 latency: rwsplit / plain primary (lower is better)"]
    assert (ryw["ratio"], ryw["lower_is_better"], ryw["stale_reads"]) == (1.25, True, 0)


def test_table_says_met_or_missed(report: BenchReport) -> None:
    table = format_table(report)
    assert "2 replicas / plain: 1.90x (aim 1.8x: met)" in table
    assert "3 replicas / plain: 2.50x (aim 2.6x: missed)" in table
    assert "rwsplit / haproxy, 3 replicas: 0.96x (aim 1.0x: missed)" in table
    # Latency: lower is better, 1.25x is above the 1.15x aim.
    assert "(lower is better): 1.25x (aim 1.15x: missed), 0 stale reads" in table
    assert "skipped sysbench: sysbench is not installed" in table
    assert "P 10% R1 90%" in table


def test_json_shape(report: BenchReport) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    keys = {"setup", "clients", "throughput", "p50_ms", "p99_ms", "stale_reads", "errors"}
    assert all(r.keys() >= keys for r in data["results"])
    assert data["skipped"] == report.skipped


def test_plot_writes_a_png(report: BenchReport, tmp_path: Path) -> None:
    out = tmp_path / "load.png"
    plot(report, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(
    report: BenchReport, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'rwsplit\[plot\]'"):
        plot(report, str(tmp_path / "x.png"))


def test_haproxy_config_balances_the_replicas_only() -> None:
    proxy = HAProxy([("127.0.0.1", 4001), ("127.0.0.1", 4002)])
    try:
        cfg = proxy.config()
    finally:
        proxy.__exit__(None, None, None)
    assert f"bind 127.0.0.1:{proxy.read_port}" in cfg
    assert "balance roundrobin" in cfg
    assert "server r1 127.0.0.1:4001 check" in cfg
    assert "server r2 127.0.0.1:4002 check" in cfg
    assert cfg.count("    server r") == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (BenchOptions(mixes=["oltp"]), "unknown mix 'oltp'"),
        (BenchOptions(setups=["pgbouncer"]), "unknown setup 'pgbouncer'"),
        (BenchOptions(clients=[0]), "--clients"),
        (BenchOptions(workers="fibers"), "--workers"),
    ],
)
def test_bad_options_are_configuration_errors(options: BenchOptions, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        run_bench(options)


def test_cpu_cap_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="--cpu-cap"):
        CpuCaps(0, {"primary": 1})


@pytest.mark.parametrize(
    ("cap", "period", "quota"), [(0.5, 10_000, 5000), (0.1, 10_000, 1000), (0.05, 20_000, 1000)]
)
def test_cpu_cap_period_is_short_but_the_quota_at_least_1ms(
    cap: float, period: int, quota: int
) -> None:
    caps = CpuCaps(cap, {})
    assert (caps.period_us, caps.quota_us) == (period, quota)


def test_command_line_rejects_an_unknown_setup(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--setups", "plain,proxysql"]) == 2
    assert "unknown setup 'proxysql'" in capsys.readouterr().err
