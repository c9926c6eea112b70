"""bench/locustfile.py runs headless and reports messages, latency and errors."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadgen.client import _suffix, _tails
from bench.stack import BENCH, ROOT, Stack, compile_floor

pytestmark = pytest.mark.integration


def test_locust_users_against_the_floor(tmp_path: Path) -> None:
    # Not imported here: locust monkey-patches the whole process with gevent on import,
    # which breaks asyncio's thread pool for every test that runs after it.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    binary = compile_floor(tmp_path)
    with Stack(tmp_path) as st:
        _, port = st.floor(binary, ["--rate", "20", "--max-seconds", "60"])
        out = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(BENCH / "locustfile.py"), "--headless",
             "--host", f"ws://127.0.0.1:{port}", "--users", "20", "--spawn-rate", "20",
             "--run-time", "5s", "--stop-timeout", "2", "--csv", str(tmp_path / "run"),
             "--hp-mix", "hot", "--hp-streams", "ticker:BTCUSDT", "--hp-hold", "2",
             "--hp-churn", "resubscribe:1,reconnect:1", "--loglevel", "WARNING"],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["Name"]: r for r in csv.DictReader(open(tmp_path / "run_stats.csv"))}
    assert int(rows["recv ticker"]["Request Count"]) > 500
    assert int(rows["connect"]["Request Count"]) >= 20
    assert int(rows["subscribe -> snapshot"]["Request Count"]) >= 20
    assert int(rows["Aggregated"]["Failure Count"]) == 0, open(tmp_path / "run_failures.csv").read()


def test_public_name_suffixes() -> None:
    assert "hotpath.futures.orderbook.50.BTCUSDT".endswith(_suffix("orderbook:50:BTCUSDT"))
    assert _suffix("ticker:BTCUSDT") in _tails("mudrex.futures.ticker.BTCUSDT")
    assert _suffix("ticker:BTC") not in _tails("hotpath.futures.ticker.XBTC")
