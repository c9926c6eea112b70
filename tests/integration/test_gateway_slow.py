"""Slow consumers over real sockets: a client that stops reading is held back (latest-value
streams), closed 1008 "slow consumer" past the hard bound or after the timeout, and
neither delays the other clients nor grows the worker's memory; one that resumes gets
fresh snapshots (conflation) and continuous seq after them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest
import websockets

from tests.helpers import Node, SeqChecker, Sim, http_get, until

pytestmark = pytest.mark.integration

SOFT = 16 * 1024
HARD = 256 * 1024


@pytest.fixture(scope="module")
def busy_sim() -> Iterator[Sim]:
    """A market fast enough to fill small buffers in a second: ~1,000 ticker and ~2,000
    trade messages a second over 20 symbols."""
    with Sim.start(["--symbols", "20", "--seed", "11", "--ticker-interval-ms", "20",
                    "--trade-rate", "50"]) as s:
        yield s


def _node(redis_url: str, sim: Sim, namespace: str, tmp_path: Path, timeout: float) -> Any:
    extra = ["--send-buffer-soft", str(SOFT), "--send-buffer-hard", str(HARD),
             "--socket-send-buffer", "16384", "--slow-consumer-timeout", str(timeout)]
    return Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                      log_path=tmp_path / "serve.log", extra=extra)


async def _connect(node: Node, slow: bool) -> Any:
    if not slow:
        return await websockets.connect(node.ws_url, max_size=2**24)
    sock = socket.socket()
    # Set before connecting, so that the TCP window never grows past it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.port))
    # max_queue=1: websockets stops reading the socket once a frame waits unread
    return await websockets.connect(node.ws_url, sock=sock, max_size=2**24, max_queue=1)


async def _subscribe(ws: Any, args: list[str]) -> None:
    await ws.send(json.dumps({"op": "subscribe", "args": args}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("op") == "subscribe":
            assert msg["success"] and not msg["rejected"], msg
            return


def _counter(node: Node, field: str) -> int:
    status, body = http_get(node.url + "/stats")
    return int(body["totals"][field]) if status == 200 else 0


def _worker(node: Node) -> psutil.Process:
    status, body = http_get(node.url + "/health")
    return psutil.Process(body["pid"])


class Follower:
    """A client that reads everything, checks the order and records the lag."""

    def __init__(self, ws: Any, checker: SeqChecker | None = None) -> None:
        self.ws = ws
        self.checker = checker or SeqChecker()
        self.received = 0
        self.max_lag_ms = 0.0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "stream" not in msg:
                continue
            self.checker.feed(msg)
            self.received += 1
            self.max_lag_ms = max(self.max_lag_ms, time.time() * 1000 - msg["timestamp"])

    async def stop(self) -> None:
        await self.ws.close()
        await self.task  # re-raises an ordering violation


def _streams(symbols: list[str], *kinds: str) -> list[str]:
    return [f"{kind}:{s}" for kind in kinds for s in symbols]


async def _pick_symbols(node: Node) -> list[str]:
    """The simulator's symbols, learnt by subscribing (the gateway validates names)."""
    ws = await websockets.connect(node.ws_url)
    try:
        candidates = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT",
                      "ADAUSDT", "AVAXUSDT", "LINKUSDT", "DOTUSDT", "LTCUSDT", "TRXUSDT"]
        await ws.send(json.dumps({"op": "subscribe", "args": _streams(candidates, "ticker")}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return [a.split(":")[1] for a in reply["args"]]
    finally:
        await ws.close()


async def _slow_close(node: Node, slow: Any, since: int) -> tuple[int | None, str, int]:
    """Wait until the gateway closed the slow client, then read up to its close frame:
    (code, reason, bytes that were still on their way to it)."""
    await until(lambda: _counter(node, "slow_closed") > since, 15, "the slow client's close")
    queued = 0
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            queued += len(await asyncio.wait_for(slow.recv(), 5))
    return slow.close_code, slow.close_reason, queued


async def _stuck(node: Node, worker: psutil.Process, slow: Any,
                 since: int) -> tuple[tuple[int | None, str, int], int]:
    """While the slow client is stuck: its close, and the worker's peak RSS growth."""
    base = worker.memory_info().rss
    peak = base
    closing = asyncio.create_task(_slow_close(node, slow, since))
    while not closing.done():
        peak = max(peak, worker.memory_info().rss)
        await asyncio.sleep(0.05)
    return closing.result(), peak - base


async def test_past_the_hard_bound_a_slow_reader_is_closed_and_nobody_waits(
        redis_url, busy_sim, namespace, tmp_path):
    with _node(redis_url, busy_sim, namespace, tmp_path, timeout=60.0) as node:
        symbols = await _pick_symbols(node)
        args = _streams(symbols, "ticker", "trade")  # trades are events: they keep queuing
        follower_ws = await _connect(node, slow=False)
        await _subscribe(follower_ws, args)
        follower = Follower(follower_ws)
        slow = await _connect(node, slow=True)
        await _subscribe(slow, args)
        await until(lambda: follower.received > 200, 10, "data flowing")
        before = follower.received
        started = time.monotonic()
        (code, reason, queued), grown = await _stuck(node, _worker(node), slow, 0)
        assert (code, reason) == (1008, "slow consumer")
        assert time.monotonic() - started < 10  # the hard bound, not the 60 s timeout
        assert queued > HARD
        assert _counter(node, "slow_paused") >= 1
        assert follower.received - before > 100  # kept receiving meanwhile, in order
        assert follower.max_lag_ms < 1000, follower.max_lag_ms
        assert grown < 16 * 1024 * 1024, grown
        await follower.stop()


async def test_a_reader_stuck_on_latest_value_streams_is_closed_after_the_timeout(
        redis_url, busy_sim, namespace, tmp_path):
    with _node(redis_url, busy_sim, namespace, tmp_path, timeout=2.0) as node:
        symbols = await _pick_symbols(node)
        args = _streams(symbols, "ticker")  # held back past the soft bound: never the hard one
        follower_ws = await _connect(node, slow=False)
        await _subscribe(follower_ws, args)
        follower = Follower(follower_ws)
        slow = await _connect(node, slow=True)
        await _subscribe(slow, args)
        await until(lambda: _counter(node, "slow_paused") >= 1, 10, "the slow client held back")
        paused_at = time.monotonic()
        before = follower.received
        (code, reason, queued), grown = await _stuck(node, _worker(node), slow, 0)
        assert (code, reason) == (1008, "slow consumer")
        assert 1.5 < time.monotonic() - paused_at < 6
        assert queued < HARD // 2  # held back at the soft bound, not queued up to the hard one
        assert follower.received - before > 100
        assert follower.max_lag_ms < 1000, follower.max_lag_ms
        assert grown < 16 * 1024 * 1024, grown
        await follower.stop()


async def test_a_reader_that_pauses_then_resumes_gets_fresh_snapshots(
        redis_url, busy_sim, namespace, tmp_path):
    with _node(redis_url, busy_sim, namespace, tmp_path, timeout=30.0) as node:
        symbols = await _pick_symbols(node)
        args = _streams(symbols, "ticker")
        slow = await _connect(node, slow=True)
        await _subscribe(slow, args)
        # It reads until every stream is live for it (the first snapshot of each), then
        # stops: each stream is then held back, and owes it a fresh snapshot. (A stream
        # whose first snapshot came only after the reader drained would rightly have
        # just that one.)
        checker = SeqChecker()
        wanted = {f"hotpath.futures.ticker.{s}" for s in symbols}
        while not wanted <= checker.snapshots.keys():
            msg = json.loads(await asyncio.wait_for(slow.recv(), 10))
            if "stream" in msg:
                checker.feed(msg)
        await until(lambda: _counter(node, "slow_paused") >= 1, 10, "the reader held back")
        await asyncio.sleep(0.5)  # the market moves on while it is held back
        reader = Follower(slow, checker)  # now it reads again
        await until(lambda: all(reader.checker.snapshots.get(f"hotpath.futures.ticker.{s}", 0)
                                >= 2 for s in symbols), 30, "a fresh snapshot per stream")
        await until(lambda: reader.checker.updates > 200, 30, "updates after them")
        assert _counter(node, "slow_closed") == 0
        await reader.stop()


async def test_a_client_that_never_reads_its_replies_is_closed_at_the_hard_bound(
        redis_url, busy_sim, namespace, tmp_path):
    with _node(redis_url, busy_sim, namespace, tmp_path, timeout=60.0) as node:
        slow = await _connect(node, slow=True)
        bad = ["z" * 60] * 200  # each rejected with its reason: a ~44 KB reply
        for _ in range(9):  # within the ops burst (10)
            await slow.send(json.dumps({"op": "subscribe", "args": bad}))
        (code, reason, queued), _ = await _stuck(node, _worker(node), slow, 0)
        assert (code, reason) == (1008, "slow consumer")
        assert queued > HARD
