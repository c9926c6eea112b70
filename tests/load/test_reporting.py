"""How load and soak figures are reported: the soak's slopes (bench.loadgen.procstat.trend)
and docs/reliability.md (tests.figures.render). Pure: no process, no socket."""

from __future__ import annotations

import json
from pathlib import Path

from bench.loadgen.procstat import trend
from tests.figures import Figures, latest, main, render


def test_trend_is_the_least_squares_slope_per_hour() -> None:
    rows = [{"t": 1000.0 + 10 * i, "rss": 100.0 + 0.5 * i} for i in range(361)]  # 1 h
    t = trend(rows, "rss")
    assert t["samples"] == 361 and t["per_hour"] == 180.0
    assert (t["first"], t["last"], t["min"], t["max"]) == (100.0, 280.0, 100.0, 280.0)
    assert abs(t["change_pct"] - 180.0 / 190.0 * 100) < 1e-3  # over the mean, 190


def test_trend_of_a_flat_or_noisy_flat_series_is_near_zero() -> None:
    flat = [{"t": float(i), "fds": 5048} for i in range(100)]
    assert trend(flat, "fds")["per_hour"] == 0.0
    noisy = [{"t": float(i), "x": 50.0 + (1 if i % 2 else -1)} for i in range(1000)]
    assert abs(trend(noisy, "x")["per_hour"]) < 10  # +-1 around 50, no drift


def test_trend_with_too_few_samples_has_no_slope() -> None:
    assert trend([], "x")["per_hour"] is None
    assert trend([{"t": 1.0, "x": 3.0}], "x")["per_hour"] is None
    assert trend([{"t": 1.0, "x": 3.0}, {"t": 1.0, "x": 4.0}], "x")["per_hour"] is None
    assert trend([{"t": 1.0, "y": 3.0}], "x")["samples"] == 0


def _soak() -> dict:
    slope = {"samples": 360, "first": 143.8, "last": 145.2, "min": 143.8, "max": 145.2,
             "mean": 145.0, "per_hour": 2.5, "change_pct": 0.86, "second_half_per_hour": 0.4}
    fds = dict(slope, first=5048, last=5048, min=5048, max=5050, per_hour=0.0,
               change_pct=0.0, second_half_per_hour=0.0)
    return {"command": "bench/soak", "started_at": "2026-11-21T17:00:00", "path": "x.json",
            "settings": {"clients": 5000, "churn_rate": 20.0, "sample_every_s": 5.0,
                         "mix": {"streams_per_client": 5, "kinds": ["ticker", "trade"],
                                 "symbols": 200}},
            "window": {"seconds": 1800, "samples": 360},
            "slopes": {"gateway_rss_mib": slope, "gateway_fds": fds},
            "checks": {"unrecovered_gaps": 0, "missing_messages": 0, "duplicates": 0,
                       "snapshot_missing": 0, "failed": 0, "dropped": 0},
            "churn": {"completed": 36000, "failed": 0}, "problems": [], "ok": True}


def test_render_puts_each_group_in_its_table(tmp_path: Path) -> None:
    figures = Figures(tmp_path / "rows.jsonl")
    figures.record("fault", "kill -9 the ingest", checked="told stale, then a snapshot",
                   clients=3, recovery_s=1.36, lost=0, outage_s=2.0)
    figures.record("fault", "kill -9 the ingest", checked="again", clients=4,
                   recovery_s=1.5, lost=0)  # the latest row of a name wins
    figures.record("load", "reconnect storm", checked="all back", clients=10_000,
                   result="all within 7.3 s", all_ready_s=7.29, lost=0)
    figures.record("input", "client frames: random binary", tried=30, outcome="error 400: 30")
    figures.record("input", "garbage | pipes", messages=52, checked="all counted", lost=0)
    doc = render(latest(figures.path), _soak())
    lines = doc.splitlines()
    assert "| kill -9 the ingest | again | 4 | 1.5 s | 0 | – |" in lines
    assert "told stale" not in doc
    assert any(line.startswith("| reconnect storm | all back | 10,000 | all within 7.3 s | 0 |")
               and "all ready 7.29 s" in line for line in lines)
    assert "| client frames: random binary | 30 | error 400: 30 |" in lines
    assert any(line.startswith("| garbage \\| pipes | 52 | all counted") for line in lines)
    assert "| **all classes** | **82** | |" in lines
    assert ("| gateway RSS (all workers) | 143.8 MiB | 145.2 MiB | 145.2 MiB | +2.5 MiB/h | "
            "+0.86% | +0.4 MiB/h |") in lines
    assert "| gateway open fds | 5,048 | 5,048 | 5,050 | +0/h | +0.00% | +0/h |" in lines
    assert "Unrecovered gaps: **0**" in doc and "Data lost over all rows: **0**" in doc


def test_render_marks_loss_and_a_missing_soak(tmp_path: Path) -> None:
    figures = Figures(tmp_path / "rows.jsonl")
    figures.record("fault", "Redis restarted", checked="x", clients=1, recovery_s=None, lost=3)
    doc = render(latest(figures.path), None)
    assert "| Redis restarted | x | 1 | – | **3** | – |" in doc.splitlines()
    assert "Data lost over all rows: **3**" in doc
    assert "No soak result" in doc


def test_main_writes_the_document(tmp_path: Path) -> None:
    figures = Figures(tmp_path / "rows.jsonl")
    figures.record("input", "x", tried=1, outcome="error 400")
    soak = tmp_path / "soak.json"
    soak.write_text(json.dumps(_soak()))
    out = tmp_path / "docs" / "reliability.md"
    assert main(["--log", str(figures.path), "--soak", str(soak), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Reliability")
    assert main(["--log", str(tmp_path / "none.jsonl"), "--soak", str(soak),
                 "--out", str(out)]) == 1  # no rows: rendered, but says so by its status
