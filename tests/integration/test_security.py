"""Hostile stream names against a real node and a real Redis: nothing a client sends
reaches a Redis command or a shell. Every name is refused with its reason, the worker
lives on, Redis keeps its keys, only channels of valid streams exist, and Redis's own
MONITOR shows no command carrying client input."""

from __future__ import annotations

import ast
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
import redis

from hotpath.protocol import streams
from tests.helpers import Client, http_get

pytestmark = pytest.mark.integration

INVALID = "Invalid stream format"
TAG = uuid.uuid4().hex[:8]
PWNED = [Path(f"/tmp/hp-{TAG}-{i}") for i in range(4)]

# (name, the start of the reason it must be refused with)
HOSTILE: list[tuple[object, str]] = [
    ("ticker:BTC\r\n*1\r\n$8\r\nFLUSHALL\r\n", INVALID),
    ("ticker:BTCUSDT\r\nFLUSHALL", INVALID),
    ("*1\r\n$8\r\nFLUSHALL\r\n", INVALID),
    ("ticker:BTC\nSET hp pwned", INVALID),
    ("ticker:BTC\x00USDT", INVALID),
    ("ticker:BTCUSDT\x00", INVALID),
    ("ticker:" + "A" * 10_000, INVALID),
    ("kline:1h:" + "B" * 60, INVALID),
    ("ticker:ＢＴＣＵＳＤＴ", INVALID),
    (f"$(touch {PWNED[0]})", "Unknown stream type"),
    (f"ticker:$(touch {PWNED[1]})", "Invalid symbol"),
    (f"ticker:`touch {PWNED[2]}`", "Invalid symbol"),
    (f"ticker:BTC;touch {PWNED[3]}", "Invalid symbol"),
    ("ticker:BTC|id", "Invalid symbol"),
    ("ticker:BTC&&id", "Invalid symbol"),
    ("ticker:../../etc/passwd", "Invalid symbol"),
    ("ticker:BTCUSDT ", "Invalid symbol"),
    ("ticker:*", streams.WILDCARD_REASON),
    ("ticker:BTC*", streams.WILDCARD_REASON),
    ("*", streams.WILDCARD_REASON),
    ("ticker:BTC?", "Invalid symbol"),
    ("ticker:[AB]TCUSDT", "Invalid symbol"),
    ("ticker:BTC[", "Invalid symbol"),
    ("orderbook:50:BTC?USDT", "Invalid symbol"),
    ("ticker:BTCUSDT:extra", "Invalid stream format: expected ticker:SYMBOL"),
    ("kline:1h\r\n:BTCUSDT", INVALID),
    ("orderbook:$(id):BTCUSDT", "Invalid orderbook depth"),
    ("ticker:FLUSHALL", "Unknown symbol 'FLUSHALL'"),
    ("s:ticker:BTCUSDT", "Unknown stream type"),
    (":s:ticker:BTCUSDT", "Unknown stream type"),
    ({"op": "flushall"}, "Invalid stream format: stream names are strings"),
    (["ticker:BTCUSDT"], "Invalid stream format: stream names are strings"),
    (12, "Invalid stream format: stream names are strings"),
    (None, "Invalid stream format: stream names are strings"),
]
# What must never show up in any command Redis executes during the test.
NEVER_IN_REDIS = ["FLUSHALL", "touch", "passwd", "pwned", "ＢＴＣ", "$(", "`", "BTC?", "[AB]"]


class Monitor:
    """Redis MONITOR on its own socket, read by a thread until a marker command shows."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
        self.sock.sendall(b"MONITOR\r\n")
        self.lines: list[str] = []
        self.marker = f"hotpath-security-marker-{uuid.uuid4().hex}"
        self.done = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.started.wait(10), "MONITOR did not answer +OK"

    def _read(self) -> None:
        buffer = b""
        while not self.done.is_set():
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\r\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace")
                if line == "+OK":
                    self.started.set()
                    continue
                self.lines.append(line)
                if self.marker in line:
                    self.done.set()

    def stop(self, client: redis.Redis) -> list[str]:
        client.echo(self.marker)  # every command before it has been seen once this shows
        assert self.done.wait(30), "MONITOR never showed the marker"
        self.close()
        return self.lines

    def close(self) -> None:
        self.done.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread
        except OSError:
            pass
        self.sock.close()


def _rejections(reply: dict) -> dict[str, str]:
    return {repr(r["arg"]): r["reason"] for r in reply["rejected"] or []}


def _echo(arg: object) -> object:
    if isinstance(arg, str) and len(arg) > 80:
        return arg[:80] + "..."
    return arg if isinstance(arg, (str, int)) or arg is None else f"<{type(arg).__name__}>"


async def test_hostile_stream_names_reach_neither_redis_nor_a_shell(node, redis_url, namespace):
    r = redis.Redis.from_url(redis_url)
    sentinel = f"{namespace}:sentinel"
    r.set(sentinel, "still here")
    keys_before = r.dbsize()
    pids_before = [w["pid"] for w in http_get(node.url + "/stats")[1]["workers"]]
    monitor = Monitor(redis_url)
    client = await Client.connect(node.ws_url)
    try:
        names = [name for name, _ in HOSTILE]
        await client.send({"op": "subscribe", "args": names + ["ticker:BTCUSDT"],
                           "req_id": "\r\n*1\r\n$8\r\nFLUSHALL\r\n"})
        reply = await client.recv_until(lambda m: m.get("op") in ("subscribe", "error"))
        assert reply["op"] == "subscribe" and reply["args"] == ["ticker:BTCUSDT"]
        assert reply["req_id"] == "\r\n*1\r\n$8\r\nFLUSHALL\r\n"  # echoed as JSON, no more
        got = _rejections(reply)
        assert len(got) == len(HOSTILE)
        for name, reason in HOSTILE:
            assert got[repr(_echo(name))].startswith(reason), (name, got[repr(_echo(name))])
        assert (await client.recv_until(lambda m: "stream" in m))["type"] == "snapshot"

        await client.send({"op": "unsubscribe", "args": names})
        reply = await client.recv_until(lambda m: m.get("op") in ("unsubscribe", "error"))
        assert reply["op"] == "unsubscribe" and reply["success"] is False
        assert len(reply["rejected"]) == len(HOSTILE)

        # The same names in the URL, at connect.
        url_names = ",".join(quote(n, safe="") for n, _ in HOSTILE if isinstance(n, str)
                             and "," not in n and len(n) < 200)
        other = await Client.connect(f"{node.ws_url}?streams={url_names}")
        try:
            reply = await other.recv()
            assert reply["op"] == "subscribe" and reply["success"] is False
            assert reply["rejected"] and all(r["reason"] for r in reply["rejected"])
        finally:
            await other.close()

        await client.send({"op": "ping", "req_id": "alive"})
        assert (await client.recv_until(lambda m: m.get("op") == "pong"))["req_id"] == "alive"
        executed = monitor.stop(r)
    finally:
        monitor.close()
        await client.close()

    # Redis: keys untouched, and only the valid stream has a channel.
    assert r.get(sentinel) == b"still here" and r.dbsize() >= keys_before
    channels = {c.decode() for c in r.pubsub_channels(f"{namespace}:*")}
    stream_channels = {c for c in channels if c.startswith(f"{namespace}:s:")}
    assert stream_channels == {f"{namespace}:s:ticker:BTCUSDT"}, channels
    for channel in channels:
        assert channel.isascii() and channel.isprintable() and " " not in channel, channel
    for channel in r.pubsub_channels("*"):
        assert not any(bad.encode() in channel for bad in NEVER_IN_REDIS), channel
    # Every command Redis ran meanwhile (MONITOR escapes control bytes, so a smuggled
    # CRLF would show as a command of its own).
    assert any('"SUBSCRIBE"' in line and f"{namespace}:s:ticker:BTCUSDT" in line
               for line in executed), "MONITOR did not see the gateway subscribe"
    for line in executed:
        assert not any(bad in line for bad in NEVER_IN_REDIS), line
        command = line.split("] ", 1)[1].split(" ", 1)[0].strip('"').upper() if "] " in line \
            else ""
        assert command not in ("FLUSHALL", "FLUSHDB", "DEL", "SET", "CONFIG", "EVAL",
                               "SHUTDOWN", "KEYS", "DEBUG", "SCRIPT", "MODULE"), line

    # No shell ran anything, and the workers are the same processes, without errors.
    assert not any(p.exists() for p in PWNED), [p for p in PWNED if p.exists()]
    status, body = http_get(node.url + "/stats")
    assert status == 200 and [w["pid"] for w in body["workers"]] == pids_before
    assert body["totals"]["client_errors"] == 0
    assert http_get(node.url + "/health")[0] == 200
    r.delete(sentinel)


def _code_strings(path: Path) -> list[str]:
    """String literals of a module's code (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            if isinstance(node.value, str):
                out.append(node.value)
            elif isinstance(node.value, bytes):
                out.append(node.value.decode("latin-1"))
    return out


def test_channel_names_come_only_from_parsed_streams():
    """The gateway's code path: a channel is built by Channels.stream(Stream), and a
    Stream only by streams.parse, which accepts nothing but [a-z0-9:] shaped names."""
    from hotpath.bus.channels import Channels
    root = Path(__file__).resolve().parents[2] / "hotpath"
    builders = [p for p in root.rglob("*.py")
                if p.name != "channels.py" and any(":s:" in text for text in _code_strings(p))]
    assert builders == [], f"stream channel names built outside bus/channels.py: {builders}"
    for name, _ in HOSTILE:
        with pytest.raises(streams.StreamError):
            streams.parse(name, {"BTCUSDT"})
    channel = Channels("ns").stream(streams.parse("tickers.btcusdt", {"BTCUSDT"}))
    assert channel == b"ns:s:ticker:BTCUSDT"
