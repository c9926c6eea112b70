"""hotpath.client against a live node: state, typed messages, reconnect, gap healing."""

from __future__ import annotations

import asyncio

import pytest

from hotpath.client import HotpathClient, StreamMessage
from tests.helpers import Node, free_port

pytestmark = pytest.mark.integration


async def _until(client: HotpathClient, done, timeout: float = 15) -> list[StreamMessage]:
    seen: list[StreamMessage] = []

    async def pump() -> None:
        async for msg in client:
            seen.append(msg)
            if done(seen):
                return
    await asyncio.wait_for(pump(), timeout)
    return seen


async def test_state_matches_the_simulator(node, sim):
    async with HotpathClient(node.ws_url) as client:
        reply = await client.subscribe(["ticker:BTCUSDT", "orderbook:50:BTCUSDT", "nope:X"])
        assert reply.args == ["ticker:BTCUSDT", "orderbook:50:BTCUSDT"]
        assert reply.rejected[0]["arg"] == "nope:X"
        seen = await _until(client, lambda s: len({m.key for m in s}) == 2 and len(s) > 10)
        assert {m.key for m in seen} == {"ticker:BTCUSDT", "orderbook:50:BTCUSDT"}
        assert all(isinstance(m.seq, int) for m in seen)
        sim.control("pause")
        try:
            book = sim.control("book?symbol=BTCUSDT&depth=50")
            ticker = sim.control("state?symbol=BTCUSDT")["data"]

            def converged(_: list) -> bool:
                state = client.state("orderbook:50:BTCUSDT")
                return (state["bids"] == dict(book["b"]) and state["asks"] == dict(book["a"])
                        and client.state("ticker:BTCUSDT")["price"] == ticker["lastPrice"])
            if not converged([]):
                await _until(client, converged, timeout=10)
        finally:
            sim.control("resume")


async def test_gap_is_healed_with_a_fresh_snapshot(node):
    async with HotpathClient(node.ws_url) as client:
        await client.subscribe(["ticker:ETHUSDT"])
        await _until(client, lambda s: len(s) >= 3)
        client.streams["ticker:ETHUSDT"].seq -= 5  # as if five updates had been lost
        seen = await _until(client, lambda s: any(m.type == "snapshot" for m in s))
        assert client.gaps == 1
        assert seen[-1].type == "snapshot" and client.state("ticker:ETHUSDT")["symbol"] == "ETHUSDT"


async def test_reconnects_and_resubscribes_by_itself(redis_url, sim, namespace, tmp_path):
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "a.log", port=port):
        client = HotpathClient(url, max_delay=1.0)
        await client.connect()
        await client.subscribe(["ticker:SOLUSDT"])
        await _until(client, lambda s: len(s) >= 2)
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "b.log", port=port, wait_healthy=False):
        seen = await _until(client, lambda s: any(m.type == "snapshot" for m in s), timeout=30)
        assert client.reconnects == 1 and seen[-1].key == "ticker:SOLUSDT"
    await client.close()
