"""bench/upstream_floor: a bare reader of the simulator's whole universe, pinned."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from bench.stack import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pins the reader to a CPU of its own")
def test_the_reader_gets_every_kind_of_frame_at_the_simulators_rate() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.upstream_floor", "--symbols", "20",
                             "--seconds", "2", "--warmup", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"([\d,]+) frames \(([\d,]+)/s\) read on CPUs \[(\d+)\]: exchange ts -> "
                      r"receipt p50 ([\d.]+) ms, p99 ([\d.]+) ms", result.stdout)
    assert found, result.stdout
    frames, rate = int(found[1].replace(",", "")), int(found[2].replace(",", ""))
    # 20 symbols: books every 20 ms, tickers every 100 ms, trades as they print
    assert frames >= 2 * 20 * 50 * 0.8 and rate >= 20 * 50 * 0.8
    assert int(found[3]) == max(os.sched_getaffinity(0))
    assert 0 < float(found[4]) <= float(found[5])
