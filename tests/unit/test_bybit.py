import json

import msgspec
import pytest

from hotpath.ingest.state import new_state
from hotpath.protocol import bybit
from hotpath.protocol.bybit_topics import BookData, book_decoder
from hotpath.protocol.streams import Stream
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
    if isinstance(frame, bybit.BookFrame):  # decoded in one pass
        assert frame.data == book_decoder.decode(json.dumps(expected["data"]))
    else:
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


def _compact(name):
    return json.dumps(json.loads(raw(name)), separators=(",", ":")).encode()


@pytest.mark.parametrize("name", ["orderbook_50_snapshot.json", "orderbook_50_delta.json",
                                  "orderbook_500_delta.json"])
def test_a_book_frame_as_bybit_writes_it_is_decoded_in_one_pass(name):
    line = _compact(name)
    frame = bybit.parse_frame(line)
    assert isinstance(frame, bybit.BookFrame) and isinstance(frame.data, BookData)
    envelope = bybit.frame_decoder.decode(line)
    assert (frame.topic, frame.type, frame.ts) == (envelope.topic, envelope.type, envelope.ts)
    assert frame.data == book_decoder.decode(envelope.data)


def test_a_book_frame_in_another_shape_is_decoded_in_two_passes_with_the_same_result():
    line = _compact("orderbook_50_delta.json")
    doc = json.loads(line)
    reordered = json.dumps({"type": doc["type"], **doc}, separators=(",", ":")).encode()
    for other in (reordered, raw("orderbook_50_delta.json")):  # key order; whitespace
        frame = bybit.parse_frame(other)
        assert isinstance(frame, bybit.Frame) and isinstance(frame.data, msgspec.Raw)
        assert book_decoder.decode(frame.data) == bybit.parse_frame(line).data


def test_a_malformed_book_frame_falls_back_and_is_still_rejected_by_the_book_decoder():
    doc = json.loads(_compact("orderbook_50_snapshot.json"))
    doc["data"]["b"][0] = [1.5, "2"]  # a float price
    frame = bybit.parse_frame(json.dumps(doc, separators=(",", ":")).encode())
    assert isinstance(frame, bybit.Frame) and frame.topic == doc["topic"]
    state = new_state(Stream("orderbook", doc["data"]["s"], "50"))
    with pytest.raises(msgspec.ValidationError):
        state.apply(frame.type, frame.data)


def test_one_pass_and_two_pass_book_frames_give_the_same_client_messages():
    states = [new_state(Stream("orderbook", "XRPUSDT", "500")) for _ in range(2)]
    lines = (BYBIT / "orderbook_500_linear_XRPUSDT_2024-12-01_sequence.jsonl").read_bytes()
    for line in lines.splitlines():
        one = bybit.parse_frame(line)
        two = bybit.frame_decoder.decode(line)
        assert isinstance(one, bybit.BookFrame) and isinstance(two.data, msgspec.Raw)
        assert states[0].apply(one.type, one.data) == states[1].apply(two.type, two.data)
    assert states[0].snapshot() == states[1].snapshot() and states[0].snapshot() is not None


def test_garbage_is_none_not_an_exception():
    for data in (b"", b"{", b"[]", b"null", b'{"topic": 5}', b'{"topic":"orderbook.50.X"',
                 b'{"topic":"o'):
        assert bybit.parse_frame(data) is None


def test_op_request_shape():
    assert json.loads(bybit.op_request("subscribe", ["tickers.BTCUSDT"], "7")) == {
        "op": "subscribe", "req_id": "7", "args": ["tickers.BTCUSDT"]}
    assert json.loads(bybit.op_request("ping")) == {"op": "ping"}


def test_instrument_page_filter():
    page = bybit.instruments_decoder.decode(raw("instruments_info_linear_page.json"))
    assert page.retCode == 0
    assert [i.symbol for i in page.result.items if bybit.is_trading_usdt_perpetual(i)] == ["BTCUSDT"]
