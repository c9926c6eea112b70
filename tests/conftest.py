"""Shared fixtures: a real redis-server per test session, the real Bybit simulator, and
real ``hotpath serve`` process trees, all on loopback with free ports."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from hotpath.embedded import die_with_parent
from tests.figures import Figures
from tests.helpers import Node, Sim, free_port, redis_pong, wait_for

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One real redis-server for the whole session (TCP on loopback, no persistence)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the README's test command")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="hotpath-test-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", workdir,
                             "--loglevel", "warning"], stdout=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    wait_for(lambda: redis_pong(port), 10, "redis-server to answer PING")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def sim() -> Iterator[Sim]:
    """The Bybit simulator: a separate process speaking Bybit's protocol on loopback."""
    with Sim.start(["--symbols", "20", "--seed", "7"]) as s:
        yield s


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def node(redis_url: str, sim: Sim, namespace: str, tmp_path: Path) -> Iterator[Node]:
    """A ``hotpath serve`` tree (ingest + 2 gateways) on the session Redis and simulator."""
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace,
                    log_path=tmp_path / "serve.log") as n:
        yield n


@pytest.fixture(scope="session", autouse=True)
def _output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def figures() -> Figures:
    """Where reliability tests write what they measured (see tests/figures.py)."""
    return Figures()
