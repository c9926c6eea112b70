"""The client protocol over real sockets: every op, reply, error and limit."""

from __future__ import annotations

import asyncio
import socket

import pytest
import websockets

from tests.helpers import Client, Node, http_get

pytestmark = pytest.mark.integration


@pytest.fixture
def limited(redis_url, sim, namespace, tmp_path):
    """A node with small limits so that one past each is cheap to reach."""
    extra = ["--max-subscriptions", "3", "--max-ops-per-second", "2",
             "--max-messages-per-second", "5", "--max-clients", "4", "--idle-timeout", "600",
             "--max-connections-per-ip", "3", "--trusted-proxies", "10.9.9.9",
             "--allowed-origins", "https://good.example"]
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=2,
                    log_path=tmp_path / "serve.log", extra=extra) as node:
        yield node


@pytest.fixture
def idle_node(redis_url, sim, namespace, tmp_path):
    """A node with a short idle timeout, kept apart so that no other test races it."""
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=["--idle-timeout", "1.5"]) as node:
        yield node


async def _error(client: Client) -> dict:
    return await client.recv_until(lambda m: m.get("op") == "error")


@pytest.mark.parametrize("frame, code, name", [
    ("not json", 400, "INVALID_OPERATION"),
    ('{"op":"jump"}', 400, "INVALID_OPERATION"),
    ('{"op":"subscribe","args":"ticker:BTCUSDT"}', 400, "INVALID_STREAM_FORMAT"),
    ('{"op":"subscribe"}', 400, "INVALID_STREAM_FORMAT"),
    (b"\x00binary", 400, "INVALID_OPERATION"),
])
async def test_bad_messages_get_400_and_the_connection_lives(node, frame, code, name):
    client = await Client.connect(node.ws_url)
    try:
        await client.send(frame)
        err = await client.recv()
        assert (err["op"], err["code"], err["error"]) == ("error", code, name)
        await client.send({"op": "ping"})
        assert (await client.recv())["op"] == "pong"
    finally:
        await client.close()


async def test_fragmented_frame_is_refused_with_400(node):
    client = await Client.connect(node.ws_url)
    try:
        await client.ws.send(iter(['{"op":', '"ping"}']))  # websockets sends fragments
        err = await client.recv()
        assert err["code"] == 400
    finally:
        await client.close()


async def test_unsubscribe_stops_the_stream(node):
    client = await Client.connect(node.ws_url)
    try:
        await client.send({"op": "subscribe", "args": ["ticker:BTCUSDT"], "req_id": 1})
        assert (await client.recv())["req_id"] == 1
        assert (await client.recv())["type"] == "snapshot"
        await client.send({"op": "unsubscribe", "args": ["ticker:btcusdt", "ticker:ETHUSDT"]})
        reply = await client.recv_until(lambda m: m.get("op") == "unsubscribe")
        assert reply["args"] == ["ticker:BTCUSDT"] and reply["success"] is True
        assert reply["rejected"] == [{"arg": "ticker:ETHUSDT", "reason": "Not subscribed"}]
        await client.send({"op": "ping"})
        assert (await client.recv())["op"] == "pong"  # nothing of the stream in between
    finally:
        await client.close()


async def test_subscription_limit_one_past(limited):
    client = await Client.connect(limited.ws_url)
    try:
        await client.send({"op": "subscribe",
                           "args": ["ticker:BTCUSDT", "ticker:ETHUSDT", "ticker:SOLUSDT",
                                    "ticker:XRPUSDT"]})
        reply = await client.recv_until(lambda m: m.get("op") == "subscribe")
        assert reply["success"] is True and len(reply["args"]) == 3
        assert reply["rejected"][0]["arg"] == "ticker:XRPUSDT"
        assert reply["rejected"][0]["reason"].startswith("TOO_MANY_SUBSCRIPTIONS")
        err = await _error(client)
        assert (err["code"], err["error"]) == (429, "TOO_MANY_SUBSCRIPTIONS")
    finally:
        await client.close()


async def test_op_rate_limit_one_past(limited):
    client = await Client.connect(limited.ws_url)
    try:
        for _ in range(3):
            await client.send({"op": "unsubscribe", "args": ["ticker:BTCUSDT"]})
        replies = [await client.recv_until(lambda m: m.get("op") in ("unsubscribe", "error"))
                   for _ in range(3)]
        assert [r["op"] for r in replies] == ["unsubscribe", "unsubscribe", "error"]
        assert (replies[2]["code"], replies[2]["error"]) == (429, "RATE_LIMITED")
    finally:
        await client.close()


async def test_message_rate_limit_then_close_when_it_goes_on(limited):
    client = await Client.connect(limited.ws_url)
    for _ in range(6):
        await client.send({"op": "ping"})
    replies = [await client.recv() for _ in range(6)]
    assert [r["op"] for r in replies] == ["pong"] * 5 + ["error"]
    assert replies[5]["error"] == "RATE_LIMITED"
    for _ in range(150):  # a flood far past the limit ends in a close
        await client.send({"op": "ping"})
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await client.recv(timeout=10)
    assert client.ws.close_code == 1008


async def test_idle_client_is_closed_with_1001(idle_node):
    client = await Client.connect(idle_node.ws_url)
    with pytest.raises(websockets.ConnectionClosed):
        await client.recv(timeout=10)
    assert (client.ws.close_code, client.ws.close_reason) == (1001, "idle timeout")


async def test_websocket_pings_keep_a_client_from_idling_out(idle_node):
    """A listen-only client whose library sends WebSocket pings (websockets does, every
    20 s by default) is not idle: only silence is."""
    ws = await websockets.connect(idle_node.ws_url, ping_interval=0.3, ping_timeout=5)
    try:
        await ws.send('{"op":"subscribe","args":["ticker:BTCUSDT"]}')
        deadline = asyncio.get_running_loop().time() + 4.5  # three idle timeouts
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.wait_for(ws.recv(), 5)  # raises if the server closed us
        assert ws.close_code is None
    finally:
        await ws.close()


async def test_oversized_frame_closes_1009(node):
    client = await Client.connect(node.ws_url)
    await client.send("x" * 70_000)
    with pytest.raises(websockets.ConnectionClosed):
        await client.recv()
    assert client.ws.close_code == 1009


async def test_node_client_limit_answers_503_at_the_upgrade(limited):
    # four clients from two source addresses (the per-IP limit is 3), over both workers
    conns = [await websockets.connect(limited.ws_url, local_addr=(f"127.0.0.{1 + i % 2}", 0))
             for i in range(4)]
    try:
        with pytest.raises(websockets.InvalidStatus) as exc:
            await websockets.connect(limited.ws_url, local_addr=("127.0.0.3", 0))
        assert exc.value.response.status_code == 503
        assert b"node is full" in exc.value.response.body
    finally:
        for c in conns:
            await c.close()


async def test_per_ip_limit_ignores_untrusted_forwarded_for(limited):
    conns = [await websockets.connect(limited.ws_url, additional_headers={
        "X-Forwarded-For": f"5.5.5.{i}"}) for i in range(4)]
    try:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(conns[3].recv(), 10)
        assert conns[3].close_code == 1008
        assert "too many connections from 127.0.0.1" in conns[3].close_reason
    finally:
        for c in conns:
            await c.close()


async def test_origin_allow_list(limited):
    with pytest.raises(websockets.InvalidStatus) as exc:
        await websockets.connect(limited.ws_url, origin="https://evil.example")
    assert exc.value.response.status_code == 403
    ok = await websockets.connect(limited.ws_url, origin="https://good.example")
    await ok.close()


async def test_streams_in_the_url_subscribe_at_connect(node):
    client = await Client.connect(node.ws_url + "?streams=ticker:BTCUSDT,tickers.ETHUSDT")
    try:
        reply = await client.recv()
        assert reply["op"] == "subscribe" and reply["args"] == ["ticker:BTCUSDT", "ticker:ETHUSDT"]
        firsts = {}
        while len(firsts) < 2:
            msg = await client.recv()
            firsts.setdefault(msg["stream"], msg["type"])
        assert set(firsts.values()) == {"snapshot"}
    finally:
        await client.close()


async def test_stats_and_metrics_are_node_wide(node):
    clients = [await Client.connect(node.ws_url) for _ in range(6)]
    try:
        for c in clients:
            await c.send({"op": "subscribe", "args": ["ticker:BTCUSDT"]})
            await c.recv_until(lambda m: m.get("type") == "snapshot")

        def node_view():
            status, body = http_get(node.url + "/stats")
            return body if status == 200 and body["clients"] == 6 and \
                body["subscriptions_by_type"]["ticker"] == 6 else None
        from tests.helpers import wait_for
        body = wait_for(node_view, 10, "/stats to count all six clients")
        assert len(body["workers"]) == 2 and body["ingest"]["upstream_ok"] is True
        status, text = http_get(node.url + "/metrics")
        assert status == 200
        lines = text.splitlines()
        clients_total = sum(int(line.split()[-1]) for line in lines
                            if line.startswith("hotpath_clients{"))
        assert clients_total == 6
        assert "hotpath_upstream_up 1" in lines
    finally:
        for c in clients:
            await c.close()


def test_http_errors(node):
    assert http_get(node.url + "/nope")[0] == 404
    status, info = http_get(node.url + "/")
    assert status == 200 and info["limits"]["max_subscriptions"] == 100
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(b"GARBAGE \x00\x01\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert http_get(node.url + "/health")[0] == 200  # the worker lived through it
