"""Fault knobs, idle timeout, kline closes (fast clock) and replay, over real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.test_sim_support import FIXTURES, SimProc, by_topic

pytestmark = pytest.mark.integration

REPLAY = FIXTURES / "orderbook_500_linear_XRPUSDT_2024-12-01_sequence.jsonl"


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimProc]:
    async with SimProc("--symbols", "20") as proc:
        yield proc


async def closed_within(client: Any, seconds: float) -> bool:
    """Read until the server closes the connection; False if it is still open."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.wait_for(client.ws.recv(), left)
    except ConnectionClosed:
        return True
    except asyncio.TimeoutError:
        return False
    return False


async def eventually(check: Any, seconds: float) -> Any:
    """Retry ``check`` (async, returns a truthy result) until it succeeds or time is up."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_drop_closes_every_connection_and_new_ones_work(sim: SimProc, figures) -> None:
    clients = [await sim.client() for _ in range(2)]
    for client in clients:
        await client.op("subscribe", ["tickers.BTCUSDT"])
    answer = await sim.control("fault?kind=drop")
    dropped_at = time.monotonic()
    assert answer["connections"] >= 2
    survived = [c for c in clients if not await closed_within(c, 3)]
    assert survived == [], "connection survived a drop"
    fresh = await sim.client()
    assert (await fresh.op("subscribe", ["tickers.BTCUSDT"]))["success"] is True
    figures.record("fault", "sim knob: drop",
                   checked="the simulator aborted every connection; a new one subscribed",
                   clients=len(clients), recovery_s=round(time.monotonic() - dropped_at, 3),
                   lost=len(survived))
    await fresh.close()


async def test_stall_silences_one_connection_and_loses_its_messages(sim: SimProc,
                                                                    figures) -> None:
    stalled, healthy = await sim.client(), await sim.client()
    ack = await stalled.op("subscribe", ["orderbook.50.BTCUSDT"])
    await healthy.op("subscribe", ["orderbook.50.BTCUSDT"])
    before = (await stalled.collect(0.3))[-1]["data"]["u"]
    _, now = await sim.get("/v5/market/time")
    await sim.control(f"fault?kind=stall&seconds=0.8&conn_id={ack['conn_id']}")
    stall_ends = time.monotonic() + 0.8
    during = await stalled.collect(0.5)
    others = await healthy.collect(0.1)
    assert all(m["ts"] <= now["time"] + 50 for m in during), "frames sent during a stall"
    assert len(others) >= 2, "the stall hit a connection it should not have"
    after, _ = await stalled.until(lambda m: m["ts"] > now["time"] + 50, 3)
    resumed = time.monotonic() - stall_ends
    last = during[-1]["data"]["u"] if during else before
    assert after["data"]["u"] > last + 5, "messages of the stall were queued, not lost"
    # The other connection lost nothing: its book deltas go on one u at a time.
    lost = sum(1 for a, b in zip(others, others[1:]) if b["data"]["u"] != a["data"]["u"] + 1)
    assert lost == 0
    figures.record("fault", "sim knob: stall",
                   checked="one connection silent for 0.8 s and its messages dropped; the "
                           "other connection's book deltas continuous",
                   clients=2, recovery_s=round(max(0.0, resumed), 3), lost=lost)
    await stalled.close()
    await healthy.close()


async def test_gap_skips_exactly_one_update_id(sim: SimProc, figures) -> None:
    client = await sim.client()
    await client.op("subscribe", ["orderbook.50.ETHUSDT"])
    frames = await client.collect(0.3)
    await sim.control("fault?kind=gap&topic=orderbook.50.ETHUSDT")
    frames += await client.collect(0.5)
    steps = [b["data"]["u"] - a["data"]["u"] for a, b in zip(frames, frames[1:])]
    assert sorted(steps)[-1] == 2 and steps.count(2) == 1 and set(steps) <= {1, 2}, steps
    figures.record("fault", "sim knob: orderbook gap",
                   checked="the next delta skipped exactly one u, every other step was +1",
                   clients=1, recovery_s=None, lost=sum(s - 1 for s in steps) - 1)
    await client.close()


async def test_refuse_answers_503_then_recovers(sim: SimProc, figures) -> None:
    await sim.control("fault?kind=refuse&seconds=0.6")
    window_ends = time.monotonic() + 0.6
    with pytest.raises(InvalidStatus) as refused:
        await sim.client()
    assert refused.value.response.status_code == 503
    status, _ = await sim.get("/v5/market/time")
    assert status == 200, "REST must keep working while WebSocket is refused"

    async def connects() -> Any:
        try:
            return await sim.client()
        except InvalidStatus:
            return None

    client = await eventually(connects, 3)
    assert client is not None
    figures.record("fault", "sim knob: refused connections",
                   checked="upgrades answered 503 (REST kept working), then accepted again",
                   clients=1, recovery_s=round(max(0.0, time.monotonic() - window_ends), 3),
                   lost=0)
    await client.close()


async def test_reject_fails_subscribes_for_a_while(sim: SimProc, figures) -> None:
    client = await sim.client()
    await sim.control("fault?kind=reject&seconds=0.5&msg=error:busy")
    window_ends = time.monotonic() + 0.5
    reply = await client.op("subscribe", ["tickers.ETHUSDT"])
    assert (reply["success"], reply["ret_msg"]) == (False, "error:busy")
    assert (await client.op("ping"))["success"] is True

    async def accepted() -> bool:
        reply = await client.op("subscribe", ["tickers.ETHUSDT"])
        return bool(reply["success"])

    assert await eventually(accepted, 3)
    figures.record("fault", "sim knob: rejected subscribes",
                   checked="subscribes failed with Bybit's error shape, pings answered, then "
                           "accepted again",
                   clients=1, recovery_s=round(max(0.0, time.monotonic() - window_ends), 3),
                   lost=0)
    await client.close()


async def test_flood_sends_state_neutral_snapshots(sim: SimProc, figures) -> None:
    client = await sim.client()
    ack = await client.op("subscribe", ["tickers.SOLUSDT", "orderbook.50.SOLUSDT"])
    await client.barrier()
    flooded_at = time.monotonic()
    answer = await sim.control(f"fault?kind=flood&count=200&conn_id={ack['conn_id']}")
    assert answer["messages"] == 200
    frames = await client.barrier()
    snapshots = [m for m in frames if m.get("type") == "snapshot"]
    lost = 200 - len(snapshots)
    assert lost == 0
    assert {m["topic"] for m in snapshots} == {"tickers.SOLUSDT", "orderbook.50.SOLUSDT"}
    figures.record("fault", "sim knob: flood",
                   checked="200 extra state-neutral snapshots, all delivered before a pong",
                   clients=1, recovery_s=round(time.monotonic() - flooded_at, 3), lost=lost)
    await client.close()


async def test_stats_show_connections_and_armed_faults(sim: SimProc) -> None:
    client = await sim.client()
    await client.op("subscribe", ["tickers.BTCUSDT", "orderbook.1.BTCUSDT"])
    await sim.control("fault?kind=reject&seconds=0.3")
    stats = await sim.control("stats")
    assert stats["connections"] == 1 and stats["conns"][0]["topics"] == 2
    assert stats["subscriptions"] == {"tickers": 1, "orderbook": 1}
    assert "reject" in stats["faults"]
    await client.close()


async def test_idle_connections_are_closed_heartbeats_keep_them() -> None:
    async with SimProc("--symbols", "5", "--idle-timeout", "1") as sim:
        silent, pinging, ws_pinging = await sim.client(), await sim.client(), await sim.client()
        started = time.monotonic()

        async def heartbeat() -> None:
            for _ in range(6):
                await pinging.send({"op": "ping"})
                await ws_pinging.ws.ping()
                await asyncio.sleep(0.3)

        beat = asyncio.create_task(heartbeat())
        assert await closed_within(silent, 3)
        assert time.monotonic() - started >= 0.9
        await beat
        assert not await closed_within(pinging, 0.05)
        assert (await pinging.op("ping"))["ret_msg"] == "pong"
        assert (await ws_pinging.op("ping"))["ret_msg"] == "pong"
        await pinging.close()
        await ws_pinging.close()


async def test_kline_confirms_each_candle_exactly_once() -> None:
    # 120x clock: a 1-minute candle lasts 0.5 s of wall time.
    async with SimProc("--symbols", "5", "--clock-speed", "120", "--kline-push-ms", "100",
                       "--trade-rate", "30") as sim:
        client = await sim.client()
        await client.op("subscribe", ["kline.1.BTCUSDT", "kline.3.BTCUSDT"])
        frames = by_topic(await client.collect(2.6))
        await client.close()
    for topic, length in (("kline.1.BTCUSDT", 60_000), ("kline.3.BTCUSDT", 180_000)):
        candles = [m["data"][0] for m in frames[topic]]
        confirmed = [c for c in candles if c["confirm"]]
        assert len(confirmed) >= (4 if length == 60_000 else 1), topic
        starts = [c["start"] for c in confirmed]
        assert len(starts) == len(set(starts)), f"{topic}: a candle confirmed twice"
        for candle in confirmed:
            assert candle["end"] - candle["start"] + 1 == length
            later = candles[candles.index(candle) + 1:]
            assert all(c["start"] > candle["start"] for c in later), "update after confirm"
            low, high = float(candle["low"]), float(candle["high"])
            assert low <= float(candle["open"]) <= high and low <= float(candle["close"]) <= high
        for first, second in zip(confirmed, confirmed[1:]):
            assert second["start"] == first["end"] + 1
        opens = {c["start"]: c["open"] for c in candles}
        for candle in confirmed:
            if candle["end"] + 1 in opens:
                assert opens[candle["end"] + 1] == candle["close"]


async def test_replay_reproduces_the_recording_byte_for_byte() -> None:
    lines = [line for line in REPLAY.read_text().splitlines() if line.strip()]
    async with SimProc("--replay", str(REPLAY), "--replay-speed", "0") as sim:
        client = await sim.client()
        unknown = await client.op("subscribe", ["tickers.BTCUSDT"])
        assert unknown["ret_msg"] == "error:handler not found,topic:tickers.BTCUSDT"
        assert (await client.op("subscribe", ["orderbook.500.XRPUSDT"]))["success"] is True
        received = [await asyncio.wait_for(client.ws.recv(), 5) for _ in lines]
        assert received == lines
        _, body = await sim.get("/v5/market/instruments-info?category=linear")
        (row,) = body["result"]["list"]
        assert (row["symbol"], row["priceFilter"]["tickSize"]) == ("XRPUSDT", "0.0001")
        await client.close()


async def test_replay_keeps_the_original_timing_scaled() -> None:
    async with SimProc("--replay", str(REPLAY), "--replay-speed", "10") as sim:
        client = await sim.client()
        await client.op("subscribe", ["orderbook.500.XRPUSDT"])
        arrivals = []
        for _ in range(50):
            await asyncio.wait_for(client.ws.recv(), 5)
            arrivals.append(time.monotonic())
        await client.close()
    # The recording spans 4,799 ms of ts; at 10x that is ~0.48 s.
    assert 0.40 <= arrivals[-1] - arrivals[0] <= 1.5
