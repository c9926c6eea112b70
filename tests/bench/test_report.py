"""Report figures, ratios, targets and plots from saved results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report


def phase(server: str, us: float, p99: float, rss: tuple[float, float] = (50.0, 80.0),
          deliveries: float = 100_000.0, churn: bool = False) -> dict[str, Any]:
    group = {"hotpath": "gateway"}.get(server, server)
    timeline = [{"t": t, "deliveries": int(deliveries), "bytes": 1, "max_ms": p99,
                 "p50": p99 / 3, "p99": p99, "p999": p99 * 1.2} for t in range(1, 12)]
    result: dict[str, Any] = {
        "clients": {"planned": 1000, "connected": 1000, "failed": 0, "dropped": 0},
        "deliveries": {"per_second": deliveries, "per_client_per_second": deliveries / 1000},
        "latency_ms": {"p50": p99 / 3, "p99": p99, "p999": p99 * 1.2, "max": p99 * 2},
        "probe_latency_ms": {"p50": p99 / 4, "p99": p99 / 2},
        "errors": {"gaps": 0, "dropped": 0},
        "resources": {group: {"us_per_delivery": us, "cores": us * deliveries / 1e6,
                              "rss_mib_before_connect": rss[0], "rss_mib_end": rss[1],
                              "us_per_churn_cycle": 250.0 if churn else None},
                      "loadgen": {"cores": 0.9}},
        "node": {"frames_per_write": 1.0, "upstream_per_second": 10.0},
        "timeline": timeline, "window": {"t_from": 3, "t_to": 10},
    }
    if churn:
        result["churn"] = {"target_per_second": 200, "completed_per_second": 199.5,
                           "snapshot_latency_ms": {"p50": 2.0, "p99": 9.0}, "failed": 0,
                           "skipped": 0}
    return {"server": server, "problems": [], "extra": {"rate": 10, "batch": 1},
            "result": result}


def scenario(key: str = "S1", **kw: Any) -> dict[str, Any]:
    return {"scenario": key, "title": "broadcast", "clients": 1000, "duration": 7,
            "sim_args": ["--symbol-list", "BTCUSDT"], "mix": {"mix": "hot"}, "churn_rate": 0,
            "problems": [],
            "phases": [phase("hotpath", 6.0, 20.0, **kw), phase("baseline", 15.0, 60.0, **kw),
                       phase("floor", 5.0, 10.0, **kw)]}


def test_summary_memory_per_client_and_ratios() -> None:
    rows = [report.summary(p) for p in scenario()["phases"]]
    hp = rows[0]
    assert hp["kib_per_client"] == pytest.approx(30 * 1024 / 1000, rel=1e-3)
    r = report.ratios(rows)
    assert r["hotpath_cpu_vs_floor"] == 1.2
    assert r["baseline_cpu_vs_hotpath"] == 2.5
    assert r["baseline_p99_vs_hotpath"] == 3.0


def test_targets_never_raise_and_judge_s1() -> None:
    rows = [report.summary(p) for p in scenario()["phases"]]
    tg = dict(report.targets("S1", rows, report.ratios(rows)))
    assert all(ok is True for ok in tg.values()), tg
    rows[0]["latency"]["p99"] = float("nan")
    again = report.targets("S1", rows, report.ratios(rows))
    assert any(ok is None for _, ok in again)


def test_churn_ratios_use_cpu_per_cycle() -> None:
    rows = [report.summary(p) for p in scenario("S3", churn=True)["phases"]]
    r = report.ratios(rows)
    assert r["hotpath_cpu_per_cycle_vs_floor"] == 1.0
    assert "hotpath_cpu_vs_floor" not in r


def test_markdown_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    sc = scenario()
    (tmp_path / "x-S1.json").write_text(json.dumps(sc))
    path = report.write([sc], tmp_path, "x", "bench/run S1", report.machine())
    text = path.read_text()
    assert "## S1: broadcast" in text
    assert "hotpath cpu vs floor **1.2x**" in text
    assert "![S1](x-S1.png)" in text
    assert (tmp_path / "x-S1.png").stat().st_size > 10_000
    assert report.main([str(tmp_path / "x-S1.json")]) == 0


def test_nothing_to_plot_for_idle_scenarios(tmp_path: Path) -> None:
    sc = scenario("S5")
    for p in sc["phases"]:
        for row in p["result"]["timeline"]:
            row["deliveries"] = 0
    assert report.plot(sc, tmp_path / "s5.png") is False


def test_s4_sets_the_ingest_beside_the_simulator() -> None:
    s4 = phase("hotpath", 0.0, 1.0)
    s4["result"]["resources"].update(ingest={"cores": 0.5, "us_per_upstream_message": 15.0},
                                     sim={"cores": 0.8})
    assert report._sim_share(report.summary(s4)) == ""  # not an ingest scenario
    s4["extra"]["publish_lag"] = {"lag_ms": {"p50": 2.0, "p99": 7.0}}
    row = report.summary(s4)
    assert report._sim_share(row).endswith("(ingest / simulator CPU 0.62)")
    assert "ingest / simulator CPU 0.62" in report.scenario_markdown(
        {**scenario("S4"), "phases": [s4]}, None)


def test_s4_says_when_the_simulator_fell_behind_its_cadence() -> None:
    s4 = phase("hotpath", 0.0, 1.0)
    s4["extra"]["publish_lag"] = {"lag_ms": {"p50": 2.0, "p99": 7.0},
                                  "sim_pushes": {"due": 60000, "merged": 0}}
    on_time = report.scenario_markdown({**scenario("S4"), "phases": [s4]}, None)
    assert "0 of 60,000 periodic pushes merged" in on_time and "did not hold" not in on_time
    s4["extra"]["publish_lag"]["sim_pushes"] = {"due": 60000, "merged": 9000}
    behind = report.scenario_markdown({**scenario("S4"), "phases": [s4]}, None)
    assert "9,000 of 60,000 periodic pushes merged into a later one (15.0%)" in behind
    assert "did not hold" in behind


def test_s4_gives_the_steal_time_and_flags_it_on_the_nodes_cpu() -> None:
    s4 = phase("hotpath", 0.0, 1.0)
    s4["extra"]["publish_lag"] = {"lag_ms": {"p50": 2.0, "p99": 7.0},
                                  "steal": {"percent": {"1": 0.4, "0": 3.0}, "node_cpus": [1]}}
    calm = report.scenario_markdown({**scenario("S4"), "phases": [s4]}, None)
    assert "steal time (the hypervisor running others while a vCPU wanted to): CPU 0 3.0%, " \
        "CPU 1 0.4% (the node's)" in calm
    assert "lost over 1%" not in calm
    s4["extra"]["publish_lag"]["steal"]["percent"]["1"] = 2.5
    assert "**the node's CPU lost over 1% of its time to the host**" in \
        report.scenario_markdown({**scenario("S4"), "phases": [s4]}, None)
