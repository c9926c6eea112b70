"""Ops, topics, frames, REST and faults of the simulator (pure, no event loop)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hotpath.sim import rest
from hotpath.sim.candles import Candle
from hotpath.sim.faults import Faults
from hotpath.sim.instruments import default_universe
from hotpath.sim.messages import BookFrames, Formats, kline_item
from hotpath.sim.replay import ReplayFile
from hotpath.sim.session import ARGS_CHARS_LIMIT, LINEAR, SPOT, Session
from hotpath.sim.topics import parse

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"
UNIVERSE = default_universe(20)
SYMBOLS = {inst.symbol for inst in UNIVERSE}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def session(flavor: str = LINEAR) -> Session:
    return Session("c0ffee", flavor, lambda t: parse(t, SYMBOLS) is not None)


def handle(s: Session, message: dict[str, Any] | bytes, reject: str = "") -> tuple[dict[str, Any], Any]:
    payload = message if isinstance(message, bytes) else json.dumps(message).encode()
    outcome = s.handle(payload, reject)
    return json.loads(outcome.reply), outcome


def test_topics_parse_what_linear_serves() -> None:
    assert parse("tickers.BTCUSDT", SYMBOLS) is not None
    assert parse("orderbook.1000.BTCUSDT", SYMBOLS).depth == 1000  # type: ignore[union-attr]
    assert parse("kline.D.ETHUSDT", SYMBOLS).param == "D"  # type: ignore[union-attr]
    for bad in ("orderbook.500.BTCUSDT", "orderbook.25.BTCUSDT", "kline.2.BTCUSDT",
                "tickers.NOPEUSDT", "liquidation.BTCUSDT", "tickers", "publicTrade.BTCUSDT.x"):
        assert parse(bad, SYMBOLS) is None, bad


def test_subscribe_ack_has_the_linear_shape() -> None:
    s = session()
    reply, outcome = handle(s, {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
    expected = fixture("subscribe_success_linear.json")
    assert list(reply) == list(expected)
    assert reply == {**expected, "conn_id": "c0ffee"}
    assert outcome.subscribe == ["tickers.BTCUSDT"] and s.topics == {"tickers.BTCUSDT"}


def test_one_bad_arg_rejects_the_whole_request() -> None:
    s = session()
    handle(s, {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
    reply, outcome = handle(s, {"op": "subscribe", "args": ["kline.1.BTCUSDT", "tickers.BTCUSDT"],
                                "req_id": 7})
    assert (reply["success"], reply["req_id"]) == (False, "7")
    assert reply["ret_msg"] == "error:already subscribed,topic:tickers.BTCUSDT"
    assert outcome.subscribe == [] and s.topics == {"tickers.BTCUSDT"}
    reply, _ = handle(s, {"op": "subscribe", "args": ["kline.1.BTCUSDT", "tickers.FOOUSDT"]})
    assert reply["ret_msg"] == "error:handler not found,topic:tickers.FOOUSDT"
    reply, _ = handle(s, {"op": "subscribe", "args": ["kline.1.BTCUSDT", "kline.1.BTCUSDT"]})
    assert reply["ret_msg"] == "error:already subscribed,topic:kline.1.BTCUSDT"
    assert s.topics == {"tickers.BTCUSDT"}


def test_unsubscribe_ping_and_bad_input() -> None:
    s = session()
    handle(s, {"op": "subscribe", "args": ["tickers.BTCUSDT", "tickers.ETHUSDT"]})
    reply, outcome = handle(s, {"op": "unsubscribe", "args": ["tickers.ETHUSDT"], "req_id": "u"})
    assert (reply["success"], reply["op"], outcome.unsubscribe) == (True, "unsubscribe", ["tickers.ETHUSDT"])
    reply, _ = handle(s, {"op": "unsubscribe", "args": ["tickers.ETHUSDT"]})
    assert reply["success"] is False and reply["ret_msg"] == "error:not subscribed,topic:tickers.ETHUSDT"
    pong, _ = handle(s, {"op": "ping", "req_id": "100001"})
    assert list(pong) == list(fixture("pong_linear.json"))
    assert (pong["ret_msg"], pong["req_id"], pong["op"]) == ("pong", "100001", "ping")
    for junk in (b"not json", b"[1,2]", json.dumps({"op": "subscribe", "args": "x"}).encode(),
                 json.dumps({"op": "auth"}).encode()):
        reply, outcome = handle(s, junk)
        assert reply["success"] is False and outcome.error and outcome.subscribe == []
    assert s.topics == {"tickers.BTCUSDT"}


def test_linear_limits_the_total_args_length() -> None:
    s = Session("c0ffee", LINEAR, lambda topic: True)
    topics = [f"tickers.SYM{i:05d}USDT" for i in range(1100)]  # 20 characters each
    fit = ARGS_CHARS_LIMIT // 20
    for start in range(0, fit, 150):
        assert handle(s, {"op": "subscribe", "args": topics[start:min(start + 150, fit)]})[0]["success"]
    reply, outcome = handle(s, {"op": "subscribe", "args": [topics[fit]]})
    assert reply["success"] is False and "21000" in reply["ret_msg"] and not outcome.subscribe
    handle(s, {"op": "unsubscribe", "args": topics[:1]})
    assert handle(s, {"op": "subscribe", "args": [topics[fit]]})[0]["success"] is True


def test_spot_quirks() -> None:
    s = session(SPOT)
    reply, _ = handle(s, {"op": "subscribe", "args": [f"tickers.{x}" for x in sorted(SYMBOLS)[:11]]})
    assert reply == {**fixture("subscribe_fail_spot_args_size.json"), "conn_id": "c0ffee"}
    reply, _ = handle(s, {"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "10001"})
    assert reply == {**fixture("subscribe_success_spot.json"), "conn_id": "c0ffee"}
    pong, _ = handle(s, {"op": "ping"})
    assert pong == {**fixture("pong_spot.json"), "conn_id": "c0ffee"}


def test_reject_fault_fails_subscribes_only() -> None:
    s = session()
    reply, outcome = handle(s, {"op": "subscribe", "args": ["tickers.BTCUSDT"]}, reject="error:busy")
    assert (reply["success"], reply["ret_msg"], outcome.subscribe) == (False, "error:busy", [])
    assert handle(s, {"op": "ping"}, reject="error:busy")[0]["success"] is True


def test_book_frame_formats_levels_like_bybit() -> None:
    btc = UNIVERSE[0]
    frames = BookFrames("orderbook.50.BTCUSDT", Formats(btc))
    frame = json.loads(frames.frame("delta", [(3024720, 30028), (3024000, 0)], [(3024870, 892)],
                                    177400507, 66544703342, 1687940967466, 1687940967464))
    expected = fixture("orderbook_50_delta.json")
    assert list(frame) == list(expected) and list(frame["data"]) == list(expected["data"])
    assert frame["data"]["b"] == [["30247.20", "30.028"], ["30240.00", "0"]]
    assert frame["data"]["a"] == [["30248.70", "0.892"]]
    assert (frame["type"], frame["ts"], frame["cts"]) == ("delta", 1687940967466, 1687940967464)
    assert (frame["data"]["u"], frame["data"]["seq"]) == (177400507, 66544703342)
    empty = json.loads(frames.frame("snapshot", [], [], 1, 2, 3, 4))
    assert (empty["type"], empty["data"]["b"], empty["data"]["a"]) == ("snapshot", [], [])


def test_kline_item_strips_zeros_like_bybit() -> None:
    btc = UNIVERSE[0]
    candle = Candle("5", 1672324988882, 1664950)
    candle.add(1667700, 2081, 2081 * 1667700, 1672324988882)
    item = msgspec.to_builtins(kline_item(candle, btc, False))
    assert list(item) == list(fixture("kline_5.json")["data"][0])
    assert (item["open"], item["close"], item["volume"]) == ("16649.5", "16677", "2.081")
    assert item["start"] == 1672324800000 and item["end"] == 1672325099999


def test_instruments_pages_and_errors() -> None:
    def page(query: dict[str, str]) -> dict[str, Any]:
        return json.loads(rest.instruments_info(UNIVERSE, query, 1))  # type: ignore[no-any-return]

    first = page({"category": "linear", "limit": "8"})
    row = first["result"]["list"][0]
    assert list(row) == list(fixture("instruments_info_linear_page.json")["result"]["list"][0])
    seen = [r["symbol"] for r in first["result"]["list"]]
    cursor = first["result"]["nextPageCursor"]
    while cursor:
        body = page({"category": "linear", "limit": "8", "cursor": cursor})
        seen += [r["symbol"] for r in body["result"]["list"]]
        cursor = body["result"]["nextPageCursor"]
    assert sorted(seen) == sorted(SYMBOLS) == seen
    assert page({"category": "inverse"})["retCode"] == 10001
    assert page({})["retCode"] == 10001
    assert page({"category": "linear", "limit": "0"})["retCode"] == 10001
    assert page({"category": "linear", "limit": "5000"})["result"]["nextPageCursor"] == ""


def test_fault_windows() -> None:
    faults = Faults()
    faults.refuse(1.0, now=100.0)
    faults.reject(0.5, now=100.0)
    assert faults.refusing(100.9) and not faults.refusing(101.0)
    assert faults.rejection(100.4) and faults.rejection(100.6) == ""
    faults.gap("orderbook.50.BTCUSDT")
    assert faults.active(100.2).keys() == {"refuse", "reject", "gap"}
    assert faults.take_gap("orderbook.50.BTCUSDT") and not faults.take_gap("orderbook.50.BTCUSDT")


def test_replay_file_groups_frames_by_topic(tmp_path: Path) -> None:
    source = FIXTURES / "orderbook_500_linear_XRPUSDT_2024-12-01_sequence.jsonl"
    recording = ReplayFile.load(source)
    frames = recording.frames["orderbook.500.XRPUSDT"]
    assert len(frames) == 50 and frames[0][1].startswith(b'{"topic":"orderbook.500.XRPUSDT","type":"snapshot"')
    (inst,) = recording.instruments()
    assert (inst.symbol, inst.tick_size, inst.qty_step_text) == ("XRPUSDT", "0.0001", "1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    with pytest.raises(ValueError):
        ReplayFile.load(bad)
