import json

import pytest

from hotpath.protocol import bybit
from tests.fixtures import BYBIT, raw

TOPIC_FIXTURES = sorted(p.name for p in BYBIT.glob("*.json")
                        if "topic" in json.loads(p.read_bytes()))


@pytest.mark.parametrize("name", TOPIC_FIXTURES)
def test_every_topic_fixture_decodes(name):
    frame = bybit.parse_frame(raw(name))
    expected = json.loads(raw(name))
    assert frame is not None
    assert (frame.topic, frame.type, frame.ts) == (expected["topic"], expected["type"],
                                                   expected["ts"])
    assert json.loads(bytes(frame.data)) == expected["data"]


@pytest.mark.parametrize("name, op, success", [
    ("subscribe_success_linear.json", "subscribe", True),
    ("pong_linear.json", "ping", True),
    ("subscribe_fail_spot_args_size.json", "subscribe", False),
])
def test_op_replies_decode(name, op, success):
    frame = bybit.parse_frame(raw(name))
    assert frame is not None and not frame.topic
    assert (frame.op, frame.success) == (op, success)


def test_garbage_is_none_not_an_exception():
    for data in (b"", b"{", b"[]", b"null", b'{"topic": 5}'):
        assert bybit.parse_frame(data) is None


def test_op_request_shape():
    assert json.loads(bybit.op_request("subscribe", ["tickers.BTCUSDT"], "7")) == {
        "op": "subscribe", "req_id": "7", "args": ["tickers.BTCUSDT"]}
    assert json.loads(bybit.op_request("ping")) == {"op": "ping"}


def test_instrument_page_filter():
    page = bybit.instruments_decoder.decode(raw("instruments_info_linear_page.json"))
    assert page.retCode == 0
    assert [i.symbol for i in page.result.items if bybit.is_trading_usdt_perpetual(i)] == ["BTCUSDT"]
