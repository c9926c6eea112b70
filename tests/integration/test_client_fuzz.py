"""Hostile and broken client input against a live gateway.

Every case must end in the documented error reply or close code; the worker stays up
and a bystander client subscribed throughout keeps receiving with continuous seq.
Frames are generated with hypothesis (drawn once, then sent over real sockets).
Each input class records how many inputs were tried and how they ended (the
``figures`` fixture, for docs/reliability.md), once its assertions have passed.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections import Counter
from typing import Any

import pytest
import websockets

from tests.figures import Figures
from tests.helpers import Client, Node, http_get

pytestmark = pytest.mark.integration


@pytest.fixture
def node(redis_url, sim, namespace, tmp_path):
    """Rate limits lifted (they have their own tests): every frame is judged alone."""
    extra = ["--max-messages-per-second", "1000000", "--max-ops-per-second", "1000000"]
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=extra) as n:
        yield n

ERROR_CODES = {400, 429, 503}
CLOSE_CODES = {1002, 1003, 1007, 1008, 1009}  # what a broken client may be closed with
KNOWN_OPS = ["subscribe", "unsubscribe", "ping"]

ODD_NAMES = ["ticker:\x00BTC", "ticker:BTC\u202eUSDT", "kline:1m:\u0130", "tickers.*",
             "orderbook::X", "ticker:" + "A" * 5000, "\ud7ff", "trade:btcusdt\n",
             "kline:1m:BTCUSDT:extra", "\u00e9", "ticker:BTCUSDT", "kline:7m:BTCUSDT",
             "orderbook:25:ETHUSDT", "liquidation:", ":", ""]


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.randint(-2**70, 2**70)
    if pick == 3:
        return rng.uniform(-1e300, 1e300)
    if pick == 4:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(20)))
    if pick == 5:
        return rng.choice(ODD_NAMES)
    if pick in (6, 7):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    return {rng.choice(["op", "args", "req_id", "x", ""]): _value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


GENERATED = "client frames: generated JSON ops (known and unknown ops, odd args)"
BINARY = "client frames: random binary"
CLASSIC = "client frames: deep nesting, 100k-deep list, 3000 args, 60 KB name, non-objects"


def _frames(n: int, seed: int = 20261121) -> list[tuple[str, Any]]:
    """n structured frames (known and unknown ops, odd args), binary junk, and the
    classic attacks: deep nesting, a huge list, control characters, a 60 KB name; each
    with its input class."""
    rng = random.Random(seed)
    frames: list[Any] = []
    for _ in range(n):
        op: dict[str, Any] = {"op": rng.choice(KNOWN_OPS + ["", "SUBSCRIBE", "dance", None])}
        if rng.random() < 0.8:
            op["args"] = ([rng.choice(ODD_NAMES) if rng.random() < 0.6 else _value(rng)
                           for _ in range(rng.randrange(30))] if rng.random() < 0.8
                          else _value(rng))
        if rng.random() < 0.3:
            op["req_id"] = _value(rng)
        frames.append(json.dumps(op))
    frames += [rng.randbytes(rng.randrange(1, 200)) for _ in range(n // 4)]  # binary frames
    frames += ["{" * 5000, "[" * 100_000 + "]" * 100_000, '{"op":"subscribe","args":[' +
               ",".join(['"ticker:BTCUSDT"'] * 3000) + "]}", "\u0000", "null", "[]", '"x"',
               json.dumps({"op": "subscribe", "args": ["x" * 60_000]})]
    classes = [GENERATED] * n + [BINARY] * (n // 4)
    classes += [CLASSIC] * (len(frames) - len(classes))
    return list(zip(classes, frames))


def _outcome(counts: Counter[str], tail: str) -> str:
    """``error 400: 83, subscribe: 20, closed 1009: 1; <tail>``, most frequent first."""
    return ", ".join(f"{k}: {v}" for k, v in counts.most_common()) + "; " + tail


async def _bystander(node) -> tuple[Client, list[int]]:
    client = await Client.connect(node.ws_url)
    await client.send({"op": "subscribe", "args": ["ticker:BTCUSDT"]})
    await client.recv_until(lambda m: m.get("type") == "snapshot")
    return client, []


async def _drain_bystander(client: Client, seqs: list[int], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        try:
            msg = await client.recv(timeout=max(0.05, end - loop.time()))
        except asyncio.TimeoutError:
            break
        if msg.get("type") == "update":
            seqs.append(msg["seq"])


async def test_generated_frames_get_documented_answers(node, figures: Figures):
    bystander, seqs = await _bystander(node)
    outcomes: Counter[str] = Counter()
    tried: Counter[str] = Counter()
    by_class: dict[str, Counter[str]] = {GENERATED: Counter(), BINARY: Counter(),
                                         CLASSIC: Counter()}
    cls = GENERATED
    try:
        client = await Client.connect(node.ws_url)
        for cls_now, frame in _frames(120):
            if client.ws.close_code is not None:  # closed after the previous frame
                outcomes[f"closed {client.ws.close_code}"] += 1
                by_class[cls][f"closed {client.ws.close_code}"] += 1
                assert client.ws.close_code in CLOSE_CODES, client.ws.close_code
                client = await Client.connect(node.ws_url)
            cls = cls_now
            tried[cls] += 1
            answered = by_class[cls].total()
            await client.send(frame)
            await client.send({"op": "ping", "req_id": "probe"})
            try:
                while True:  # each frame: its answer (if any), then our probe's pong
                    msg = await client.recv(timeout=10)
                    if msg.get("req_id") == "probe":
                        break
                    if msg.get("op") == "error":
                        assert msg["code"] in ERROR_CODES and msg["message"], msg
                        outcome = f"error {msg['code']}"
                    else:
                        outcome = msg.get("op") or msg.get("type")
                    outcomes[outcome] += 1
                    if "stream" not in msg:  # an answer, not data of an accepted subscribe
                        by_class[cls][outcome] += 1
            except websockets.ConnectionClosed:
                assert client.ws.close_code in CLOSE_CODES, (frame[:100], client.ws.close_code)
                outcomes[f"closed {client.ws.close_code}"] += 1
                by_class[cls][f"closed {client.ws.close_code}"] += 1
                client = await Client.connect(node.ws_url)
            if by_class[cls].total() == answered:
                by_class[cls]["no answer (ignored)"] += 1
            await _drain_bystander(bystander, seqs, 0)
        await client.close()
        await _drain_bystander(bystander, seqs, 1.0)
        assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing skipped
        assert outcomes["error 400"] > 50 and outcomes["pong"] > 0
        assert http_get(node.url + "/health")[0] == 200
    finally:
        await bystander.close()
    tail = f"worker stayed up; bystander saw {len(seqs)} updates, seq continuous"
    for name, counts in by_class.items():
        figures.record("input", name, tried=tried[name], outcome=_outcome(counts, tail))


def _raw_exchange(port: int, data: bytes, read: int = 200) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = b""
        try:
            while len(chunks) < read:
                chunk = s.recv(read)
                if not chunk:
                    break
                chunks += chunk
        except socket.timeout:
            pass
        return chunks


HANDSHAKES: Counter[str] = Counter()  # answers to the malformed handshakes tried so far


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),  # no upgrade headers
    (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Version: 13\r\n\r\n", b"400"),  # no key
    (b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", b"400"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n", b"400"),  # TLS
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"4"),
])
def test_bad_handshakes_get_an_http_error(node, request_bytes, status, figures: Figures):
    answer = _raw_exchange(node.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert http_get(node.url + "/health")[0] == 200
    HANDSHAKES[f"HTTP {answer[9:12].decode()}"] += 1
    figures.record("input", "handshakes: malformed upgrade, POST, TLS hello, 9 KB request line",
                   tried=HANDSHAKES.total(),
                   outcome=_outcome(HANDSHAKES, "connection closed; worker stayed up"))


def test_slowloris_handshake_is_cut_off(node, figures: Figures):
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # ... and never finishes
        s.settimeout(30)
        assert s.recv(100) in (b"",) or s.recv(100) == b""  # closed by the server
    assert http_get(node.url + "/health")[0] == 200
    figures.record("input", "handshakes: never finished (slowloris)", tried=1,
                   outcome="connection closed by the server; worker stayed up")


async def test_thousands_of_args_are_refused_whole(node, figures: Figures):
    client = await Client.connect(node.ws_url)
    try:
        await client.send({"op": "subscribe", "args": ["ticker:BTCUSDT"] * 3000})  # 51 KB
        err = await client.recv()
        assert (err["op"], err["code"]) == ("error", 400) and "Too many args" in err["message"]
        await client.send({"op": "subscribe", "args": ["y" * 5000]})
        reply = await client.recv()
        assert len(reply["rejected"][0]["arg"]) <= 83  # a rejection never echoes it all
    finally:
        await client.close()
    figures.record("input", "client ops: 3000 args, a 5000-character stream name", tried=2,
                   outcome="error 400 'Too many args'; the name rejected, echoed cut to 83 "
                           "characters; connection kept")
