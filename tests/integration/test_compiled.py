"""The mypyc build (HOTPATH_COMPILE=1) behaves like the plain one: the state and
simulator tests and the ingest's integration tests pass against it, and the whole stack
runs on it.

The build is a copy of this checkout compiled in place (bench.stack.build_compiled);
every check runs in a child process started from that copy, with ``-P`` so that this
checkout's interpreted sources cannot shadow the compiled modules. The integration
tests' helpers start hotpath from the tree they import it from (tests/helpers.py,
HOME), so their nodes and simulators run the compiled modules too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.stack import ROOT, build_compiled
from hotpath import compiled

pytestmark = pytest.mark.integration

STATE_TESTS = ["tests/unit/test_book.py", "tests/unit/test_book_properties.py",
               "tests/unit/test_ticker.py", "tests/unit/test_events.py",
               "tests/unit/test_ingest_state.py", "tests/unit/test_bus.py",
               "tests/unit/test_sim_book.py", "tests/unit/test_sim_hub.py",
               "tests/unit/test_sim_market.py", "tests/unit/test_sim_protocol.py"]
# Everything that drives the compiled frame handling and Redis publisher (the gateway
# publishes its demand through the same Publisher) over real sockets, faults included.
INTEGRATION_TESTS = ["tests/integration/test_ingest_streams.py",
                     "tests/integration/test_faults.py",
                     "tests/integration/test_reliability_faults.py",
                     "tests/integration/test_publisher.py",
                     "tests/integration/test_gateway_bus.py",
                     "tests/integration/test_gateway_recovery.py",
                     "tests/integration/test_end_to_end.py"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_compiled(tmp_path_factory.mktemp("mypyc"))


def _run(home: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(home)}
    return subprocess.run([sys.executable, "-P", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _pytest(home: Path, tests: list[str], timeout: float, *options: str) -> int:
    """Run ``tests`` from the compiled copy; fails on any failure, returns the passed."""
    # --import-mode=append: pytest must not put the checkout before the compiled copy
    result = _run(home, ["-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "--import-mode=append", *options, *tests], timeout)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "failed" not in summary and "error" not in summary, summary
    return int(summary.split(" passed")[0].split()[-1])


def _status(home: Path, modules: tuple[str, ...] = compiled.MODULES) -> dict[str, str]:
    """hotpath.compiled.status(modules) as a process started from ``home`` sees it."""
    code = ("import json; from hotpath import compiled; "
            f"print(json.dumps(compiled.status({modules!r})))")
    result = _run(home, ["-c", code], 60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_every_listed_module_is_compiled(home: Path) -> None:
    assert _status(home) == {name: "compiled" for name in compiled.MODULES}
    assert _status(home, compiled.SIM_MODULES) == {
        name: "compiled" for name in compiled.SIM_MODULES}
    # and this process, started from the checkout, runs the same modules interpreted
    assert set(compiled.status().values()) == {"interpreted"}
    assert set(compiled.status(compiled.SIM_MODULES).values()) == {"interpreted"}


def test_the_state_tests_pass_against_the_compiled_modules(home: Path) -> None:
    assert _pytest(home, STATE_TESTS, 300) >= 100


@pytest.mark.timeout(1000)
def test_the_ingest_integration_tests_pass_against_the_compiled_modules(
        home: Path, tmp_path: Path) -> None:
    assert _pytest(home, INTEGRATION_TESTS, 900, f"--basetemp={tmp_path / 'runs'}") >= 30
    # and their nodes ran compiled: each logs its build at the ingest's start
    starts = [line for log in (tmp_path / "runs").rglob("*.log")
              for line in log.read_text(errors="replace").splitlines()
              if "per-message code" in line]
    assert len(starts) >= 10, starts
    assert all(line.endswith("per-message code compiled") for line in starts), starts


def test_the_smoke_benchmark_runs_on_the_compiled_build(tmp_path: Path) -> None:
    # bench/smoke (simulator -> ingest -> Redis -> gateway -> clients) fails on any
    # seq gap, duplicate, missing snapshot, dropped client or crashed process.
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "smoke"), "--compiled", "--compiled-sim",
         "--duration", "5",
         "--smoke-clients", "100", "--out", str(tmp_path), "--logs", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "bench: 1 passed, 0 failed" in result.stdout
    assert "(the simulator's per-step code compiled (--compiled-sim))" in result.stdout
    ingest_log = next((tmp_path / "logs").rglob("hotpath.log")).read_text()
    assert "per-message code compiled" in ingest_log


def test_the_simulator_started_from_the_build_runs_its_compiled_code(home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(home)}
    sim = subprocess.Popen([sys.executable, "-P", "-m", "hotpath", "sim", "--port", "0",
                            "--symbols", "5", "--log-level", "info"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert sim.stdout is not None
        lines = []
        for raw in sim.stdout:
            lines.append(raw.decode(errors="replace").rstrip())
            if "SIM_READY" in lines[-1]:
                break
        started = [line for line in lines if "simulator listening" in line]
        assert started and started[0].endswith("per-step code compiled"), lines
    finally:
        sim.terminate()
        sim.wait(10)


def test_a_source_edited_after_the_build_marks_its_module_stale(home: Path) -> None:
    source = home / "hotpath" / "ingest" / "book.py"
    before = source.stat()
    os.utime(source, (before.st_atime, time.time() + 60))
    try:
        states = _status(home)
    finally:
        os.utime(source, (before.st_atime, before.st_mtime))
    assert states.pop("hotpath.ingest.book") == "stale"
    assert set(states.values()) == {"compiled"}
