"""The load generator end to end against the C floor and the baseline server (small and
fast: tens of clients, a couple of seconds each)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from bench.loadgen.mixes import Mix
from bench.loadgen.swarm import Options, Swarm
from bench.stack import BENCH, Stack, StackError, compile_floor, free_port
from tests.helpers import Sim

pytestmark = pytest.mark.integration


def small(url: str, **kw: object) -> Options:
    base = dict(url=url, clients=30, processes=1, probe_clients=5, ramp=500.0, duration=2.0,
                warmup=0.5, ready_timeout=10.0, close_timeout=3.0, stale_after=0.0)
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def floor_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    return compile_floor(tmp_path_factory.mktemp("floor"))


def test_loadgen_against_the_floor(floor_binary: Path, tmp_path: Path) -> None:
    with Stack(tmp_path) as st:
        proc, port = st.floor(floor_binary, ["--rate", "20", "--batch", "1.5",
                                             "--max-seconds", "60"])
        result = Swarm(small(f"ws://127.0.0.1:{port}/ws", measure={"floor": [proc.pid]},
                             server_group="floor"),
                       Mix("hot", streams=["ticker:BTCUSDT"])).run()
        st.stop(proc)
    assert result["ok"], result["problems"]
    assert result["clients"]["connected"] == 30
    # 20 ticks/s x 1.5 frames x 30 clients, give or take a tick at the window's edges
    assert 750 <= result["deliveries"]["per_second"] <= 1050
    assert result["latency_ms"]["count"] > 0 and result["probe_latency_ms"]["count"] > 0
    # The floor's CPU over a 2 s window is ~10 ms, the kernel's accounting tick, so it
    # may read 0; what must hold is that the floor's process was measured at all.
    floor_use = result["resources"]["floor"]
    assert floor_use["pids"] == [proc.pid] and not floor_use["lost"]
    assert floor_use["rss_mib_end"] > 0 and floor_use["us_per_delivery"] >= 0
    counters = json.loads(proc.log_path.read_text().strip().splitlines()[-1])
    assert counters["accepted"] == 30  # 30 held (+ nothing else)
    # batches of 1 and 2 in turn: 1.5 frames per tick (the seq counts each frame once)
    assert counters["seq"] == pytest.approx(1.5 * counters["ticks"], abs=1)


def test_churn_against_the_floor(floor_binary: Path, tmp_path: Path) -> None:
    with Stack(tmp_path) as st:
        _, port = st.floor(floor_binary, ["--rate", "5", "--max-seconds", "60"])
        result = Swarm(small(f"ws://127.0.0.1:{port}/ws", clients=0, churn_rate=40.0),
                       Mix("hot", streams=["ticker:BTCUSDT"])).run()
    assert result["ok"], result["problems"]
    churn = result["churn"]
    assert churn["completed_per_second"] >= 30
    assert churn["failed"] == 0
    assert churn["snapshot_latency_ms"]["count"] > 0


def _masked(opcode: int, payload: bytes) -> bytes:
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def _subscriber_that_never_reads(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: floor\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)  # byte by byte: nothing past the 101 is read
        assert chunk, "the floor closed the connection during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101")
    sock.sendall(_masked(1, b'{"op":"subscribe"}'))
    sock.setblocking(False)
    return sock


def test_the_floor_closes_slow_clients_and_lives_on(tmp_path: Path) -> None:
    """Clients that keep sending but never read pass the floor's backlog bound (8 MiB)
    and are closed during a tick, while an event of theirs may be waiting later in the same epoll batch: the
    floor must not touch a closed client again (it did, and died of a double free in a
    full S2 run). Built with AddressSanitizer, which turns any such access into a crash."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    try:
        binary = compile_floor(tmp_path, ("-g", "-fsanitize=address"))
    except StackError as exc:
        pytest.skip(f"no AddressSanitizer here: {exc}")
    clients = 20
    with Stack(tmp_path) as st:
        proc, port = st.floor(binary, ["--rate", "100", "--batch", "4",
                                       "--data", json.dumps("x" * 50_000),
                                       "--max-seconds", "60"])
        socks = [_subscriber_that_never_reads(port) for _ in range(clients)]
        open_ = set(socks)
        deadline = time.monotonic() + 15
        while open_ and time.monotonic() < deadline and proc.alive:
            for sock in list(open_):
                try:
                    sock.send(_masked(9, b"p"))
                except BlockingIOError:
                    pass
                except OSError:  # reset: the floor closed it
                    open_.discard(sock)
            time.sleep(0.002)  # pacing a sender, not waiting for a result
        alive = proc.alive
        code = st.stop(proc)
        for sock in socks:
            sock.close()
    log = proc.log_path.read_text(errors="replace")
    assert alive and code == 0 and "AddressSanitizer" not in log, log[-3000:]
    assert not open_, f"{len(open_)} never-reading clients still open after 15 s"
    counters = json.loads(log.strip().splitlines()[-1])
    assert counters["closed_slow"] == clients and counters["open"] == 0


def test_connect_failures_are_counted(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = Swarm(small(f"ws://127.0.0.1:{port}/ws", clients=6, probe_clients=0,
                         ready_timeout=2.0, duration=1.0),
                   Mix("hot", streams=["ticker:BTCUSDT"])).run()
    assert not result["ok"]
    assert result["clients"]["failed"] == 6
    assert result["clients"]["failures"] == {"ECONNREFUSED": 6}


@pytest.fixture
def publisher(redis_url: str) -> Iterator[tuple[str, threading.Event]]:
    """Publishes a ticker stream the way hotpath's ingest does, plus reply snapshots
    (R) that a fan-out server must not forward to everyone."""
    namespace = f"tb{int(time.time() * 1000) % 10**8}"
    stop = threading.Event()

    def run() -> None:
        client = redis.Redis.from_url(redis_url)
        channel = f"{namespace}:s:ticker:BTCUSDT"
        seq = 0
        while not stop.is_set():
            seq += 1
            body = (b'{"stream":"hotpath.futures.ticker.BTCUSDT","type":"update","data":'
                    b'{"price":"1"},"timestamp":%d,"source":"hotpath","seq":%d}'
                    % (int(time.time() * 1000), seq))
            client.publish(channel, b"U" + seq.to_bytes(8, "big") + body)
            if seq % 10 == 0:
                client.publish(channel, b"R" + seq.to_bytes(8, "big") + body)
            time.sleep(0.02)
        client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield namespace, stop
    stop.set()
    thread.join(5)


def test_baseline_server_fans_out_updates_only(redis_url: str, tmp_path: Path,
                                               publisher: tuple[str, threading.Event]) -> None:
    namespace, _ = publisher
    with Stack(tmp_path) as st:
        proc, port = st.baseline(redis_url, namespace, processes=2)
        result = Swarm(small(f"ws://127.0.0.1:{port}/ws", require_snapshot=False,
                             measure={"baseline": [proc.pid]}, server_group="baseline"),
                       Mix("hot", streams=["ticker:btcusdt"])).run()
        assert proc.alive
    assert result["ok"], result["problems"]
    assert result["errors"]["duplicates"] == 0  # the R copies were not forwarded
    assert result["deliveries"]["per_second"] > 30 * 30
    assert result["resources"]["baseline"]["us_per_delivery"] > 0


def test_baseline_canonical_names() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import baseline_server
    finally:
        sys.path.remove(str(BENCH))
    assert baseline_server.canonical("tickers.btcusdt") == "ticker:BTCUSDT"
    assert baseline_server.canonical("orderbook:50:ethusdt") == "orderbook:50:ETHUSDT"
    assert baseline_server.canonical("orderbook:ethusdt") is None
    assert baseline_server.canonical("bogus:BTCUSDT") is None


def test_lagprobe_reports_lag_and_gaps(redis_url: str,
                                       publisher: tuple[str, threading.Event]) -> None:
    namespace, _ = publisher
    out = subprocess.run([sys.executable, "-m", "bench.lagprobe", "--redis-url", redis_url,
                          "--redis-namespace", namespace, "--duration", "1", "--warmup", "0.2"],
                         capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["by_kind"]["ticker"]["per_second"] > 20
    assert result["redis_seq_gaps"] == 0
    assert result["lag_ms"]["p50"] < 1000



@contextmanager
def _ingest_like(redis_url: str, namespace: str, symbols: list[str]) -> Iterator[None]:
    """Publishes an ingest status naming ``symbols`` and a ticker update of each, 50/s."""
    stop = threading.Event()

    def run() -> None:
        client = redis.Redis.from_url(redis_url)
        seq = 0
        while not stop.is_set():
            seq += 1
            client.publish(f"{namespace}:status", json.dumps({"symbols": symbols}))
            for symbol in symbols:
                body = (b'{"stream":"s","type":"update","data":{},"timestamp":%d,'
                        b'"source":"hotpath","seq":%d}' % (int(time.time() * 1000), seq))
                client.publish(f"{namespace}:s:ticker:{symbol}",
                               b"U" + seq.to_bytes(8, "big") + body)
            time.sleep(0.02)
        client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _lagprobe(redis_url: str, namespace: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.lagprobe", "--redis-url", redis_url,
                          "--redis-namespace", namespace, "--duration", "1", "--warmup", "0.5",
                          *args], capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_lagprobe_samples_every_nth_symbol_of_the_ingest_status(redis_url: str) -> None:
    """With --sample-every 2 the probe listens to the streams of symbols 0 and 2 of the
    instrument list the ingest's status names, and to nothing else."""
    namespace = f"ts{int(time.time() * 1000) % 10**8}"
    with _ingest_like(redis_url, namespace, ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"]):
        result = _lagprobe(redis_url, namespace, "--sample-every", "2",
                           "--sample-streams", "ticker")
    assert result["streams_probed"] == 2 and result["channels"] == 2
    assert 20 < result["by_kind"]["ticker"]["per_second"] < 2 * 55  # 2 of 4 at 50/s each
    assert result["redis_seq_gaps"] == 0
    assert result["upstream_lag_ms"] is None  # no --upstream-ws


def test_lagprobe_taps_the_sampled_topics_upstream(redis_url: str, sim: Sim) -> None:
    """With --upstream-ws it also reads the sampled streams' topics from the simulator."""
    namespace = f"tu{int(time.time() * 1000) % 10**8}"
    with _ingest_like(redis_url, namespace, ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]):
        result = _lagprobe(redis_url, namespace, "--sample-every", "2",
                           "--sample-streams", "ticker,orderbook:50", "--upstream-ws",
                           sim.ws_url)
    tap = result["upstream_lag_ms"]
    # BTCUSDT's and SOLUSDT's tickers (10/s) and books (50/s) for a second
    assert tap is not None and tap["count"] > 50
    assert 0 <= tap["p50"] < 1000
