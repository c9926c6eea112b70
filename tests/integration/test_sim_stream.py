"""Fidelity of the simulator's WebSocket stream against captured Bybit frames.

One real simulator process for the module, real sockets, a real WebSocket client.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from tests.integration.test_sim_support import SimProc, assert_shape, by_topic, fixture

pytestmark = pytest.mark.integration

TICKER_SNAPSHOT = fixture("linear_tickers_snapshot.json")
TICKER_DELTA = fixture("linear_tickers_delta.json")
BOOK_SNAPSHOT = fixture("orderbook_500_snapshot.json")  # real capture, has cts
BOOK_DELTA = fixture("orderbook_50_delta.json")


def trade_shape() -> dict[str, Any]:
    # Linear trades carry "RPI" between "BT" and "seq" (Bybit V5 docs trade table, and
    # real 2025 captures); the docs example in the fixture predates the field.
    frame = copy.deepcopy(fixture("public_trade_linear.json"))
    item = frame["data"][0]
    frame["data"] = [{**{k: v for k, v in item.items() if k != "seq"}, "RPI": False,
                      "seq": item["seq"]}]
    return frame


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimProc]:
    async with SimProc("--seed", "7", "--trade-rate", "20", "--liquidation-rate", "5") as proc:
        yield proc


@pytest_asyncio.fixture(scope="module")
async def grid(sim: SimProc) -> dict[str, dict[str, Any]]:
    """instruments-info rows by symbol, for tick/lot checks."""
    _, body = await sim.get("/v5/market/instruments-info?category=linear&limit=1000")
    return {row["symbol"]: row for row in body["result"]["list"]}


def assert_ticker_delta_shape(message: dict[str, Any]) -> None:
    assert list(message) == list(TICKER_DELTA)
    assert message["type"] == "delta" and isinstance(message["cs"], int)
    keys = list(message["data"])
    full = list(TICKER_SNAPSHOT["data"])
    assert keys[0] == "symbol" and len(keys) > 1
    assert keys == [k for k in full if k in keys], f"delta keys out of Bybit order: {keys}"
    assert all(isinstance(v, str) for v in message["data"].values())


async def test_every_topic_kind_has_bybit_shape(sim: SimProc) -> None:
    topics = ["tickers.BTCUSDT", "publicTrade.BTCUSDT", "kline.1.BTCUSDT", "orderbook.1.ETHUSDT",
              "orderbook.50.BTCUSDT", "orderbook.200.SOLUSDT", "orderbook.1000.XRPUSDT",
              "allLiquidation.BTCUSDT"]
    client = await sim.client()
    ack = await client.op("subscribe", topics)
    assert_shape(fixture("subscribe_success_linear.json"), ack)
    assert (ack["success"], ack["ret_msg"], ack["op"]) == (True, "", "subscribe")
    frames = by_topic(await client.collect(1.5))
    await client.close()
    assert set(frames) == set(topics), f"silent topics: {set(topics) - set(frames)}"
    trade = trade_shape()
    for topic, messages in frames.items():
        for message in messages:
            if topic.startswith("tickers."):
                if message["type"] == "snapshot":
                    assert_shape(TICKER_SNAPSHOT, message)
                else:
                    assert_ticker_delta_shape(message)
            elif topic.startswith("orderbook."):
                expected = BOOK_SNAPSHOT if message["type"] == "snapshot" else BOOK_DELTA
                assert_shape(expected, message)
            elif topic.startswith("publicTrade."):
                assert_shape(trade, message)
            elif topic.startswith("kline."):
                assert_shape(fixture("kline_5.json"), message)
            else:
                assert_shape(fixture("all_liquidation.json"), message)
    assert frames["tickers.BTCUSDT"][0]["type"] == "snapshot"
    assert any(m["type"] == "delta" for m in frames["tickers.BTCUSDT"])
    for depth_topic in ("orderbook.50.BTCUSDT", "orderbook.200.SOLUSDT", "orderbook.1000.XRPUSDT"):
        kinds = [m["type"] for m in frames[depth_topic]]
        assert kinds[0] == "snapshot" and "delta" in kinds[1:], (depth_topic, kinds[:5])
    assert {m["type"] for m in frames["orderbook.1.ETHUSDT"]} == {"snapshot"}  # linear level 1


async def test_ticker_deltas_merge_to_the_state_the_sim_sent(sim: SimProc) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "DOGEUSDT"]
    client = await sim.client()
    await client.op("subscribe", [f"tickers.{s}" for s in symbols])
    frames = await client.collect(1.2)
    await sim.control("pause")
    try:
        frames += await client.barrier()  # everything sent before the pause is in
        merged: dict[str, dict[str, str]] = {}
        for message in frames:
            symbol = message["data"]["symbol"]
            if message["type"] == "snapshot":
                merged[symbol] = dict(message["data"])
                continue
            previous = merged[symbol]
            for key, value in message["data"].items():
                assert key == "symbol" or previous[key] != value, f"unchanged {key} in delta"
            previous.update(message["data"])
        for symbol in symbols:
            state = await sim.control(f"state?symbol={symbol}")
            assert state["sent"] is True
            assert merged[symbol] == state["data"]
            assert list(merged[symbol]) == list(TICKER_SNAPSHOT["data"])
        late = await client.collect(0.3)
        assert not by_topic(late), f"a paused market sent ticker deltas: {late}"
    finally:
        await sim.control("resume")
        await client.close()


def apply_book(book: dict[str, dict[str, str]], message: dict[str, Any]) -> None:
    """The client side of Bybit's book protocol, written independently of the sim."""
    if message["type"] == "snapshot":
        book["b"] = dict(message["data"]["b"])
        book["a"] = dict(message["data"]["a"])
        return
    for side in ("b", "a"):
        for price, size in message["data"][side]:
            if size == "0":
                assert price in book[side], f"delete of absent level {price}"
                del book[side][price]
            else:
                book[side][price] = size


def assert_on_grid(price: str, size: str, row: dict[str, Any]) -> None:
    tick = row["priceFilter"]["tickSize"]
    assert len(price.split(".")[1]) == int(row["priceScale"]), price
    assert Decimal(price) % Decimal(tick) == 0, (price, tick)
    step = Decimal(row["lotSizeFilter"]["qtyStep"])
    assert Decimal(size) > 0 and Decimal(size) % step == 0, (size, step)
    assert size == format(Decimal(size), "f") and "e" not in size.lower()


async def test_orderbook_streams_are_exact_and_valid(sim: SimProc, grid: dict[str, Any]) -> None:
    topics = {"orderbook.50.BTCUSDT": 50, "orderbook.200.ETHUSDT": 200,
              "orderbook.1000.SOLUSDT": 1000, "orderbook.1.DOGEUSDT": 1}
    client = await sim.client()
    await client.op("subscribe", list(topics))
    frames = await client.collect(1.5)
    await sim.control("pause")
    try:
        frames += await client.barrier()
        for topic, messages in by_topic(frames).items():
            depth, symbol = topics[topic], topic.rsplit(".", 1)[1]
            book: dict[str, dict[str, str]] = {}
            last_u = None
            for message in messages:
                data = message["data"]
                assert data["s"] == symbol
                if last_u is not None:
                    step = data["u"] - last_u
                    assert step == 1 or (depth == 1 and step == 0), (topic, last_u, data["u"])
                last_u = data["u"]
                apply_book(book, message)
                bids = sorted((Decimal(p) for p in book["b"]), reverse=True)
                asks = sorted(Decimal(p) for p in book["a"])
                assert bids and asks and bids[0] < asks[0], f"{topic} crossed or empty"
                assert len(bids) <= depth and len(asks) <= depth
                for side in ("b", "a"):
                    for price, size in data[side]:
                        if size != "0":
                            assert_on_grid(price, size, grid[symbol])
                if message["type"] == "snapshot":
                    prices = [Decimal(p) for p, _ in data["b"]]
                    assert prices == sorted(prices, reverse=True)
            sent = await sim.control(f"book?symbol={symbol}&depth={depth}")
            assert sent["u"] == last_u
            assert dict(sent["b"]) == book["b"] and dict(sent["a"]) == book["a"]
            if depth > 1:
                assert len(book["b"]) == depth and len(book["a"]) == depth
    finally:
        await sim.control("resume")
        await client.close()


async def test_trades_are_unique_ordered_and_on_grid(sim: SimProc, grid: dict[str, Any]) -> None:
    client = await sim.client()
    await client.op("subscribe", ["publicTrade.BTCUSDT", "publicTrade.XRPUSDT"])
    frames = await client.collect(1.2)
    await client.close()
    trades = [t for m in frames if "topic" in m for t in m["data"]]
    assert len(trades) > 5
    assert len({t["i"] for t in trades}) == len(trades), "duplicate trade ids"
    for symbol in ("BTCUSDT", "XRPUSDT"):
        mine = [t for t in trades if t["s"] == symbol]
        assert mine, symbol
        assert [t["T"] for t in mine] == sorted(t["T"] for t in mine)
        assert [t["seq"] for t in mine] == sorted(t["seq"] for t in mine)
        for t in mine:
            assert t["S"] in ("Buy", "Sell") and t["BT"] is False and t["RPI"] is False
            assert t["L"] in ("PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick")
            assert_on_grid(t["p"], t["v"], grid[symbol])


async def test_ticker_last_price_follows_trades(sim: SimProc) -> None:
    client = await sim.client()
    await client.op("subscribe", ["tickers.ETHUSDT", "publicTrade.ETHUSDT"])
    frames = await client.collect(1.0)
    await sim.control("pause")
    try:
        frames += await client.barrier()
        state = await sim.control("state?symbol=ETHUSDT")
        trades = [t for m in frames if m.get("topic") == "publicTrade.ETHUSDT" for t in m["data"]]
        assert trades
        # The ticker sent last is at most one ticker interval behind the last trade.
        recent = {t["p"] for t in trades[-50:]}
        assert state["data"]["lastPrice"] in recent
    finally:
        await sim.control("resume")
        await client.close()


async def test_acks_errors_and_pong(sim: SimProc) -> None:
    client = await sim.client()
    pong = await client.op("ping")
    assert_shape(fixture("pong_linear.json"), pong)
    assert (pong["success"], pong["ret_msg"], pong["op"]) == (True, "pong", "ping")
    await client.send({"op": "ping"})
    bare = await client.recv()
    assert bare["req_id"] == "" and bare["conn_id"] == pong["conn_id"]

    unknown = await client.op("subscribe", ["tickers.BTCUSDT", "tickers.NOPEUSDT"])
    assert_shape(fixture("subscribe_success_linear.json"), unknown)
    assert unknown["success"] is False
    assert unknown["ret_msg"] == "error:handler not found,topic:tickers.NOPEUSDT"
    assert (await client.op("subscribe", ["tickers.BTCUSDT"]))["success"] is True  # nothing stuck

    duplicate = await client.op("subscribe", ["publicTrade.BTCUSDT", "tickers.BTCUSDT"])
    assert duplicate["success"] is False
    assert duplicate["ret_msg"] == "error:already subscribed,topic:tickers.BTCUSDT"
    # The whole request was rejected: publicTrade.BTCUSDT was not subscribed either.
    assert (await client.op("subscribe", ["publicTrade.BTCUSDT"]))["success"] is True

    missing = await client.op("unsubscribe", ["kline.5.BTCUSDT"])
    assert missing["success"] is False and "not subscribed" in missing["ret_msg"]
    done = await client.op("unsubscribe", ["tickers.BTCUSDT", "publicTrade.BTCUSDT"])
    assert (done["success"], done["op"]) == (True, "unsubscribe")
    await client.barrier()
    assert not by_topic(await client.collect(0.3)), "frames after unsubscribe"

    # Linear limits the args of one connection to 21,000 characters in total.
    kline = [f"kline.{i}.{s}" for s in list(await _symbols(sim))
             for i in ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M")]
    assert sum(map(len, kline)) > 21_000
    too_long = await client.op("subscribe", kline)
    assert too_long["success"] is False and "21000" in too_long["ret_msg"]
    await client.close()


async def _symbols(sim: SimProc) -> list[str]:
    _, body = await sim.get("/v5/market/instruments-info?category=linear&limit=1000")
    return [row["symbol"] for row in body["result"]["list"]]


async def test_second_subscriber_gets_a_consistent_snapshot(sim: SimProc) -> None:
    first, second = await sim.client(), await sim.client()
    await first.op("subscribe", ["orderbook.50.ETHUSDT"])
    await first.collect(0.3)
    await second.op("subscribe", ["orderbook.50.ETHUSDT"])
    frames = await second.collect(0.5)
    book: dict[str, dict[str, str]] = {}
    last_u = None
    for message in frames:
        if last_u is not None:
            assert message["data"]["u"] == last_u + 1
        last_u = message["data"]["u"]
        apply_book(book, message)
    assert frames[0]["type"] == "snapshot" and len(frames) > 3
    await first.close()
    await second.close()
