"""The ordering guarantee under churn and across a Redis restart: for every stream a
client gets a snapshot first, then updates with continuous seq, never a duplicate, also
while subscribing at full rate and again after a recovery; clients stay connected."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import websockets

from tests.helpers import Node, SeqChecker, Sim, free_port, redis_pong, until, wait_for

pytestmark = pytest.mark.integration

TICKERS = [f"ticker:{s}" for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")]
BOOKS = ["orderbook:1:BTCUSDT", "orderbook:1:ETHUSDT"]  # cold until demanded, 100 msg/s


@pytest.fixture(scope="module")
def fast_sim() -> Iterator[Sim]:
    with Sim.start(["--symbols", "20", "--seed", "5", "--ticker-interval-ms", "20"]) as s:
        yield s


def _name(public: str) -> str:
    """hotpath.futures.orderbook.1.BTCUSDT -> orderbook:1:BTCUSDT"""
    return ":".join(public.split(".")[2:])


class Subscriber:
    """A client that tracks what it asked for and checks every message against it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.checker = SeqChecker()
        self.joined: set[str] = set()
        self.ops = 0

    async def op(self, op: str, args: list[str]) -> None:
        self.ops += 1
        await self.ws.send(json.dumps({"op": op, "args": args}))

    def handle(self, msg: dict[str, Any]) -> None:
        if msg.get("op") == "subscribe":
            assert msg["success"] and not msg["rejected"], msg
            self.joined.update(msg["args"])
        elif msg.get("op") == "unsubscribe":
            for name in msg["args"]:
                self.joined.discard(name)
                self.checker.forget(f"hotpath.futures.{name.replace(':', '.')}")
        else:
            assert "stream" in msg, msg
            assert _name(msg["stream"]) in self.joined, f"not subscribed: {msg}"
            self.checker.feed(msg)

    async def read_for(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                return
            self.handle(json.loads(raw))

    def has_snapshots(self) -> bool:
        return all(f"hotpath.futures.{n.replace(':', '.')}" in self.checker.last
                   for n in self.joined)


async def _churn(url: str, seed: int, seconds: float) -> Subscriber:
    rng = random.Random(seed)
    client = Subscriber(await websockets.connect(url, max_size=2**24))
    names = TICKERS + BOOKS
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if client.joined and rng.random() < 0.45:
            await client.op("unsubscribe", rng.sample(sorted(client.joined),
                                                      rng.randint(1, len(client.joined))))
        else:
            await client.op("subscribe", rng.sample(names, rng.randint(1, 3)))
        await client.read_for(rng.uniform(0.0, 0.15))
    await until_async(client, 5)
    await client.ws.close()
    return client


async def until_async(client: Subscriber, timeout: float) -> None:
    """Read on until every joined stream has had its snapshot."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not client.has_snapshots():
        assert loop.time() < end, f"no snapshot for some of {client.joined}"
        await client.read_for(0.05)


async def test_fifty_clients_subscribing_and_leaving_at_full_rate_see_exact_order(
        redis_url, fast_sim, namespace, tmp_path):
    with Node.start(redis_url=redis_url, sim=fast_sim, namespace=namespace, workers=2,
                    log_path=tmp_path / "serve.log",
                    extra=["--max-ops-per-second", "100", "--stream-linger", "0.5"]) as node:
        clients = await asyncio.gather(*(_churn(node.ws_url, i, 5.0) for i in range(50)))
    ops = sum(c.ops for c in clients)
    snapshots = sum(sum(c.checker.snapshots.values()) for c in clients)
    updates = sum(c.checker.updates for c in clients)
    assert ops > 1000 and snapshots > 1000 and updates > 4000, (ops, snapshots, updates)


@contextmanager
def redis_server(port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    assert binary is not None
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir),
                             "--loglevel", "warning"], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: redis_pong(port), 10, "redis-server to answer PING")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)


async def test_redis_restart_keeps_clients_and_resyncs_them_with_snapshots(
        fast_sim, namespace, tmp_path, figures):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with redis_server(port, tmp_path) as first:
        with Node.start(redis_url=url, sim=fast_sim, namespace=namespace, workers=2,
                        log_path=tmp_path / "serve.log") as node:
            clients = [Subscriber(await websockets.connect(node.ws_url)) for _ in range(8)]
            for c in clients:
                await c.op("subscribe", TICKERS[:3])
            readers = [asyncio.create_task(_read_on(c)) for c in clients]
            await until(lambda: all(c.checker.updates > 20 for c in clients), 10, "data")
            first.send_signal(signal.SIGKILL)
            first.wait(5)
            with redis_server(port, tmp_path):
                back_at = time.monotonic()  # answers PING
                streams = [f"hotpath.futures.ticker.{n.split(':')[1]}" for n in TICKERS[:3]]
                await until(lambda: all(c.checker.snapshots.get(s, 0) >= 2 for c in clients
                                        for s in streams), 15, "a fresh snapshot everywhere")
                recovery = time.monotonic() - back_at
                marks = [c.checker.updates for c in clients]
                await until(lambda: all(c.checker.updates > m + 20
                                        for c, m in zip(clients, marks)), 10,
                            "continuous updates after the snapshots")
                # A reader ends on a broken contract (seq jump, update before a snapshot,
                # unsubscribed stream) or a lost connection.
                lost = sum(1 for reader in readers if reader.done())
                assert lost == 0, [r for r in readers if r.done()]
                for c, reader in zip(clients, readers):
                    reader.cancel()
                    await c.ws.close()
                node.wait_healthy(10)
                assert redis.Redis(port=port).ping()
                figures.record("fault", "Redis restarted (kill -9)",
                               checked="clients stayed connected; a fresh snapshot of every "
                                       "stream, then continuous seq",
                               clients=len(clients), recovery_s=round(recovery, 2), lost=lost)


async def _read_on(client: Subscriber) -> None:
    async for raw in client.ws:
        client.handle(json.loads(raw))
