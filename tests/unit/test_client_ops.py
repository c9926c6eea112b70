import json

import pytest

from hotpath.protocol import client_ops as ops


def test_subscribe_unsubscribe_ping_decode():
    sub = ops.decode_op(b'{"op":"subscribe","args":["ticker:BTCUSDT"],"req_id":"a1"}')
    assert sub == ops.Subscribe(args=["ticker:BTCUSDT"], req_id="a1")
    assert ops.decode_op(b'{"op":"unsubscribe","args":[]}') == ops.Unsubscribe(args=[])
    assert ops.decode_op(b'{"op":"ping"}') == ops.Ping()
    assert ops.decode_op(b'{"op":"ping","req_id":7}') == ops.Ping(req_id=7)


@pytest.mark.parametrize("payload, code, name, fragment", [
    (b"not json", 400, "INVALID_OPERATION", "Invalid JSON"),
    (b"", 400, "INVALID_OPERATION", "Invalid JSON"),
    (b"[1,2]", 400, "INVALID_OPERATION", "JSON object"),
    (b'{"args":[]}', 400, "INVALID_OPERATION", "Invalid operation"),
    (b'{"op":"dance"}', 400, "INVALID_OPERATION", "Invalid operation 'dance'"),
    (b'{"op":"subscribe"}', 400, "INVALID_STREAM_FORMAT", "args"),
    (b'{"op":"subscribe","args":"ticker:BTCUSDT"}', 400, "INVALID_STREAM_FORMAT", "args"),
    (b'{"op":"subscribe","args":[],"extra":1}', 400, "INVALID_STREAM_FORMAT", "extra"),
    (b'{"op":"ping","req_id":[1]}', 400, "INVALID_STREAM_FORMAT", "req_id"),
])
def test_bad_input_becomes_an_error_reply(payload, code, name, fragment):
    reply = ops.decode_op(payload)
    assert isinstance(reply, ops.ErrorReply)
    assert (reply.code, reply.error) == (code, name)
    assert fragment in reply.message


def test_error_keeps_the_req_id_when_it_can():
    reply = ops.decode_op(b'{"op":"subscribe","args":5,"req_id":"r9"}')
    assert isinstance(reply, ops.ErrorReply) and reply.req_id == "r9"


def test_reply_shapes_are_the_contract():
    ok = ops.SubscriptionReply("subscribe", True, ["ticker:BTCUSDT"], None)
    assert ops.encode(ok) == (
        b'{"op":"subscribe","success":true,"args":["ticker:BTCUSDT"],"rejected":null}')
    bad = ops.SubscriptionReply("subscribe", False, [], [ops.Rejected("x", "why")], "q")
    assert json.loads(ops.encode(bad)) == {
        "op": "subscribe", "success": False, "args": [],
        "rejected": [{"arg": "x", "reason": "why"}], "req_id": "q"}
    assert json.loads(ops.encode(ops.Pong(123))) == {"op": "pong", "timestamp": 123}
    assert json.loads(ops.error("m", 429, ops.TOO_MANY_SUBSCRIPTIONS)) == {
        "op": "error", "message": "m", "code": 429, "error": "TOO_MANY_SUBSCRIPTIONS"}
