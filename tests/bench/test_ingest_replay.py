"""bench/ingest_replay: record a simulator's traffic, replay it through the ingest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stack import ROOT

pytestmark = pytest.mark.integration


def _tool(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "bench.ingest_replay", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_recorded_traffic_replays_through_the_ingest_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "frames.jsonl"
    assert _tool("record", str(path), "--seconds", "2", "--symbols", "20").startswith(
        f"{len(path.read_text().splitlines())} frames")
    kinds = {json.loads(line).get("topic", "").split(".")[0]
             for line in path.read_text().splitlines()}
    assert {"tickers", "publicTrade", "orderbook"} <= kinds
    result = json.loads(_tool("time", str(path)))
    # every book delta continues its snapshot, every frame is understood and published
    assert result["resyncs"] == 0 and result["bad_messages"] == {}, result
    assert result["frames"] > 100 and result["published"] >= result["frames"]
    assert result["us_per_frame"] > 0
