"""The gateway's side of the Redis contract (``hotpath.bus.control``, ``channels``), with
the test playing the ingest on a real Redis: demand, linger, stream status messages,
an ingest that goes quiet, an error in one client's handling, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
import websockets

from hotpath.bus import control
from hotpath.bus.channels import REPLY, SNAPSHOT, STATUS, UPDATE, Channels, pack
from hotpath.bus.status import IngestStatus
from hotpath.bus.status import encoder as status_encoder
from hotpath.config import Config, GatewayConfig, RedisConfig, SchemaConfig
from hotpath.gateway import feed as feed_module
from hotpath.gateway.shared import NodeStats
from hotpath.gateway.worker import Worker
from hotpath.protocol import messages, streams
from tests.helpers import ROOT, Client, free_port, http_get, until

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


class FakeIngest:
    """The ingest's half of the contract, driven by the test: a status every 0.2 s,
    stream messages when told, R replies to snapshot requests, every request kept."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis = aioredis.from_url(redis_url)
        self.channels = Channels(namespace)
        self.pid = 1000
        self.alive = True  # publishes its status
        self.seq: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> FakeIngest:
        self.pubsub = self.redis.pubsub()
        await self.pubsub.subscribe(self.channels.control)
        self._tasks = [asyncio.create_task(self._status_loop()),
                       asyncio.create_task(self._control_loop())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pubsub.aclose()
        await self.redis.aclose()

    async def _status_loop(self) -> None:
        while True:
            if self.alive:
                status = IngestStatus(int(time.time() * 1000), self.pid, 0.0, True, "fake", [],
                                      SYMBOLS, {}, 0, 0)
                await self.redis.publish(self.channels.status, status_encoder.encode(status))
            await asyncio.sleep(0.2)

    async def _control_loop(self) -> None:
        async for msg in self.pubsub.listen():
            if msg["type"] != "message":
                continue
            request = json.loads(msg["data"])
            self.requests.append(request)
            if request["op"] == "snapshot":
                for name in request["streams"]:
                    if self.seq.get(name):
                        await self.send(name, REPLY, "snapshot", {"price": "1"}, advance=False)

    def channel(self, name: str) -> bytes:
        return self.channels.stream(streams.parse(name))

    async def send(self, name: str, kind: int, type_: str, data: Any,
                   advance: bool = True) -> int:
        seq = self.seq.get(name, 0) + (1 if advance else 0)
        self.seq[name] = seq
        public = streams.public_name(streams.parse(name), "hotpath.futures")
        body = messages.encode(public, type_, data, int(time.time() * 1000), "hotpath", seq)
        await self.redis.publish(self.channel(name), pack(kind, seq, body))
        return seq

    async def numsub(self, name: str) -> int:
        return int((await self.redis.pubsub_numsub(self.channel(name)))[0][1])

    async def wait_request(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                           start: int = 0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((r for r in self.requests[start:] if predicate(r)), None)
        return await until(found, timeout, "a control request")


def demand_of(worker_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["op"] == "demand" and r["worker"] == worker_id


@pytest.fixture
async def ingest(redis_url: str, namespace: str) -> AsyncIterator[FakeIngest]:
    async with FakeIngest(redis_url, namespace) as fake:
        for name in ("ticker:BTCUSDT", "ticker:ETHUSDT"):
            await fake.send(name, SNAPSHOT, "snapshot", {"price": "1"})
        yield fake


@asynccontextmanager
async def gateway(redis_url: str, namespace: str, schema: SchemaConfig | None = None,
                  **options: Any) -> AsyncIterator[Worker]:
    """One gateway worker in this process and event loop, on a free port."""
    config = Config(redis=RedisConfig(url=redis_url, namespace=namespace),
                    gateway=GatewayConfig(host="127.0.0.1", port=0, shutdown_window=0.0,
                                          **options),
                    schema=schema or SchemaConfig())
    stop = asyncio.Event()
    worker = Worker(config, 0, NodeStats(1), "node")
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: worker.server is not None and worker.feed.symbols, 10,
                    "the worker to listen and know the instruments")
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def url(worker: Worker) -> str:
    return f"ws://127.0.0.1:{worker.port}/ws"


async def subscribed(worker: Worker, *names: str) -> Client:
    """A client that got its subscribe reply and a snapshot of every stream."""
    client = await Client.connect(url(worker))
    await client.send({"op": "subscribe", "args": list(names)})
    assert (await client.recv())["success"] is True
    for _ in names:
        assert (await client.recv())["type"] == "snapshot"
    return client


async def test_demand_is_sent_when_a_stream_is_new_and_refreshed_while_it_lingers(
        redis_url, namespace, ingest, monkeypatch):
    monkeypatch.setattr(control, "DEMAND_INTERVAL", 0.5)
    async with gateway(redis_url, namespace, stream_linger=1.5) as worker:
        start = len(ingest.requests)
        client = await subscribed(worker, "ticker:BTCUSDT", "ticker:ETHUSDT")
        first = await ingest.wait_request(
            lambda r: demand_of("node/0")(r) and r["streams"], 5, start)
        # one message for both streams (coalesced), before any snapshot request
        assert first["streams"] == ["ticker:BTCUSDT", "ticker:ETHUSDT"]
        assert first["ttl"] == control.DEMAND_TTL
        snapshots = [i for i, r in enumerate(ingest.requests) if r["op"] == "snapshot"]
        assert snapshots and ingest.requests.index(first) < snapshots[0]
        assert await ingest.numsub("ticker:BTCUSDT") == 1

        await client.send({"op": "unsubscribe", "args": ["ticker:BTCUSDT"]})
        await client.recv_until(lambda m: m.get("op") == "unsubscribe")
        left = time.monotonic()
        mark = len(ingest.requests)
        lingering = await ingest.wait_request(demand_of("node/0"), 3, mark)
        assert "ticker:BTCUSDT" in lingering["streams"]  # the linger is honoured upstream too
        assert await ingest.numsub("ticker:BTCUSDT") == 1
        await ingest.wait_request(
            lambda r: demand_of("node/0")(r) and r["streams"] == ["ticker:ETHUSDT"], 5, mark)
        assert time.monotonic() - left >= 1.4
        assert await ingest.numsub("ticker:BTCUSDT") == 0
        await client.close()
        mark = len(ingest.requests)
        await ingest.wait_request(lambda r: demand_of("node/0")(r) and r["streams"] == [], 5,
                                  mark)  # sent when empty too: the ingest forgets us fast


async def test_demand_is_sent_again_at_once_when_the_ingest_restarts(
        redis_url, namespace, ingest, monkeypatch):
    monkeypatch.setattr(control, "DEMAND_INTERVAL", 60.0)
    async with gateway(redis_url, namespace) as worker:
        client = await subscribed(worker, "ticker:BTCUSDT")
        await ingest.wait_request(demand_of("node/0"), 5)
        mark = len(ingest.requests)
        await asyncio.sleep(0.5)  # status messages of the same pid: no demand
        assert [r for r in ingest.requests[mark:] if r["op"] == "demand"] == []
        ingest.pid += 1
        again = await ingest.wait_request(demand_of("node/0"), 2, mark)
        assert again["streams"] == ["ticker:BTCUSDT"]
        await client.close()


async def test_status_goes_to_every_client_of_the_stream_and_keeps_the_seq(
        redis_url, namespace, ingest):
    async with gateway(redis_url, namespace) as worker:
        live = await subscribed(worker, "ticker:BTCUSDT")
        other = await subscribed(worker, "ticker:ETHUSDT")
        seq = ingest.seq["ticker:BTCUSDT"]
        await ingest.send("ticker:BTCUSDT", STATUS, "status",
                          {"status": "stale", "reason": "upstream connection lost"},
                          advance=False)
        status = await live.recv()
        assert (status["type"], status["seq"]) == ("status", seq)
        assert status["data"] == {"status": "stale", "reason": "upstream connection lost"}
        await ingest.send("ticker:BTCUSDT", UPDATE, "update", {"price": "2"})
        update = await live.recv()
        assert (update["type"], update["seq"]) == ("update", seq + 1)  # no resync needed
        await other.send({"op": "ping"})
        assert (await other.recv())["op"] == "pong"  # nothing of the other stream
        for c in (live, other):
            await c.close()


async def test_delisted_stream_is_taken_from_its_clients_after_they_are_told(
        redis_url, namespace, ingest):
    async with gateway(redis_url, namespace, stream_linger=60.0) as worker:
        a = await subscribed(worker, "ticker:BTCUSDT", "ticker:ETHUSDT")
        b = await subscribed(worker, "ticker:BTCUSDT")
        await ingest.send("ticker:BTCUSDT", STATUS, "status",
                          {"status": "delisted", "reason": "BTCUSDT is no longer trading"},
                          advance=False)
        for c in (a, b):
            status = await c.recv()
            assert status["type"] == "status" and status["data"]["status"] == "delisted"
        await until(lambda: worker.registry.by_name.keys() == {"ticker:ETHUSDT"}, 2,
                    "the slot to be freed")
        assert await ingest.numsub("ticker:BTCUSDT") == 0  # at once, despite the linger
        await a.send({"op": "unsubscribe", "args": ["ticker:BTCUSDT", "ticker:ETHUSDT"]})
        reply = await a.recv()
        assert reply["args"] == ["ticker:ETHUSDT"]
        assert reply["rejected"] == [{"arg": "ticker:BTCUSDT", "reason": "Not subscribed"}]
        for c in (a, b):
            await c.close()


async def test_an_ingest_gone_quiet_is_reported_to_each_client_once(
        redis_url, namespace, ingest, monkeypatch):
    monkeypatch.setattr(feed_module, "INGEST_FRESH", 1.0)
    schema = SchemaConfig(stream_prefix="acme.perp", source="acme")
    async with gateway(redis_url, namespace, schema=schema) as worker:
        a = await subscribed(worker, "ticker:BTCUSDT", "ticker:ETHUSDT")
        last = await ingest.send("ticker:BTCUSDT", UPDATE, "update", {"price": "3"})
        assert (await a.recv())["seq"] == last
        for _ in range(2):  # two incidents, one message per stream each
            ingest.alive = False
            got = {}
            while len(got) < 2:
                msg = await a.recv(timeout=5)
                assert msg["type"] == "status" and msg["stream"] not in got
                got[msg["stream"]] = msg
            btc = got["acme.perp.ticker.BTCUSDT"]
            assert btc["data"] == {"status": "stale", "reason": "ingest down"}
            assert (btc["source"], btc["seq"]) == ("acme", ingest.seq["ticker:BTCUSDT"])
            assert abs(btc["timestamp"] - time.time() * 1000) < 5000
            with pytest.raises(asyncio.TimeoutError):
                await a.recv(timeout=1.0)  # once per incident
            ingest.alive = True
            await until(lambda: worker.feed.ingest_fresh(time.monotonic()), 3, "fresh again")
            with pytest.raises(asyncio.TimeoutError):
                await a.recv(timeout=0.3)  # nothing special when it comes back
        await a.close()


async def test_an_error_handling_one_client_closes_only_that_client(
        redis_url, namespace, ingest, caplog):
    async with gateway(redis_url, namespace) as worker:
        handle = worker.ops.handle_text

        def flaky(client: Any, payload: memoryview) -> None:
            if bytes(payload) == b'{"op":"ping","req_id":"boom"}':
                raise RuntimeError("bug")
            handle(client, payload)

        worker.ops.handle_text = flaky  # type: ignore[method-assign]
        victim = await subscribed(worker, "ticker:BTCUSDT")
        bystander = await subscribed(worker, "ticker:BTCUSDT")
        for _ in range(3):
            await victim.send('{"op":"ping","req_id":"boom"}')
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await victim.recv()
        assert (victim.ws.close_code, victim.ws.close_reason) == (1011, "internal error")
        seq = await ingest.send("ticker:BTCUSDT", UPDATE, "update", {"price": "4"})
        assert (await bystander.recv())["seq"] == seq
        await bystander.send({"op": "ping"})
        assert (await bystander.recv())["op"] == "pong"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert "closing it with 1011" in errors[0].getMessage()
        assert worker.errors == 1
        await bystander.close()


def _start_gateway(redis_url: str, namespace: str, port: int, log_path: Path,
                   *extra: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "hotpath", "gateway", "--redis-url", redis_url,
            "--redis-namespace", namespace, "--host", "127.0.0.1", "--port", str(port), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
    return subprocess.Popen(args, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                            cwd=ROOT, env=env)


async def test_sigterm_drains_health_503_serving_then_closes_spread_out(
        redis_url, namespace, ingest, tmp_path):
    port = free_port()
    proc = _start_gateway(redis_url, namespace, port, tmp_path / "gateway.log",
                          "--shutdown-grace", "1.5", "--shutdown-window", "2")
    base = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: _health(base)[0] == 200, 15, "/health 200")
        clients = [await Client.connect(f"ws://127.0.0.1:{port}/ws") for _ in range(20)]
        for c in clients:
            await c.send({"op": "subscribe", "args": ["ticker:BTCUSDT"]})
            await c.recv_until(lambda m: m.get("type") == "snapshot")
        stop_ticking = asyncio.Event()
        ticker = asyncio.create_task(_tick(ingest, "ticker:BTCUSDT", stop_ticking))
        followers = [asyncio.create_task(_follow(c)) for c in clients]
        loop = asyncio.get_running_loop()
        sent_term = loop.time()
        proc.send_signal(signal.SIGTERM)
        status, body = await until(lambda: _draining(base), 2, "/health 503 draining")
        assert status == 503 and "draining" in body["down"]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"ws://127.0.0.1:{port}/ws")
        assert refused.value.response.status_code == 503
        results = await asyncio.wait_for(asyncio.gather(*followers), 15)
        stop_ticking.set()
        await ticker
        assert {(code, reason) for code, reason, _, _ in results} == {(1001, "going away")}
        closed_at = sorted(t - sent_term for _, _, t, _ in results)
        assert closed_at[0] >= 1.4, closed_at  # the grace period: served, not closed
        assert closed_at[-1] - closed_at[0] >= 1.0, closed_at  # spread over the window
        assert closed_at[-1] < 1.5 + 2 + 1.0, closed_at
        served = [n for _, _, _, n in results]
        assert min(served) >= 20, served  # updates kept flowing during the grace period
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _health(base: str) -> tuple[int, Any]:
    try:
        return http_get(base + "/health", timeout=1)
    except OSError:
        return 0, None


def _draining(base: str) -> tuple[int, Any] | None:
    status, body = _health(base)
    return (status, body) if status == 503 else None


async def _tick(ingest: FakeIngest, name: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await ingest.send(name, UPDATE, "update", {"price": str(ingest.seq[name])})
        await asyncio.sleep(0.02)


async def _follow(client: Client) -> tuple[int | None, str, float, int]:
    """Read until the close; seq must stay continuous. (code, reason, when, updates)."""
    seq, updates = None, 0
    try:
        while True:
            msg = await client.recv(timeout=10)
            if seq is not None:
                assert msg["seq"] == seq + 1, (seq, msg)
            seq, updates = msg["seq"], updates + 1
    except websockets.ConnectionClosed:
        pass
    return (client.ws.close_code, client.ws.close_reason, asyncio.get_running_loop().time(),
            updates)
