"""Capacity testing a hotpath node the way users do it: locust users that connect over
WebSocket, subscribe to a mix of streams, hold, churn, and report what they see.

Headless against any node (several worker processes for 10,000 users)::

    locust -f bench/locustfile.py --headless --host ws://127.0.0.1:8080 \\
        --users 10000 --spawn-rate 500 --run-time 3m --processes 4 \\
        --hp-mix zipf --hp-per-user 5 --hp-kinds ticker,trade

What lands in locust's statistics (request type ``WS``):

- ``connect``: TCP + WebSocket handshake time.
- ``subscribe -> snapshot``: from sending the subscribe to the first snapshot of every
  accepted stream (hotpath sends a snapshot first on each stream).
- ``recv <kind>``: one entry per data message received; its "response time" is the
  latency from the message's exchange timestamp to its arrival, its size the frame's.
- failures ``seq gap``, ``seq duplicate``, ``update before snapshot``, ``subscribe
  rejected``, ``error reply`` and ``disconnected``: every one is an error.

Churn: every ``--hp-hold`` seconds (randomised +-50%) a user picks an action by weight
from ``--hp-churn``: ``resubscribe`` (unsubscribe then subscribe its streams again),
``reconnect`` (close and connect again) or ``none``.

The WebSocket client is a minimal one on the standard library's socket, which gevent
(locust's concurrency) turns cooperative: one recv per read, however many frames it
holds. Only locust is needed (msgspec is used when present, json otherwise).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import os
import random
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from locust import User, events, task
from locust.env import Environment

try:
    import msgspec

    class _Msg(msgspec.Struct):
        stream: str = ""
        type: str = ""
        seq: int = -1
        timestamp: int = 0
        op: str = ""
        args: list[str] = []
        success: bool = True
        error: str = ""

    _decode = msgspec.json.Decoder(_Msg).decode

    def _parse(raw: str | bytes) -> Any:
        return _decode(raw)
except ImportError:  # plain json: slower, same fields
    class _Obj:
        def __init__(self, d: dict[str, Any]) -> None:
            self.stream = d.get("stream", "")
            self.type = d.get("type", "")
            self.seq = d.get("seq", -1) if "seq" in d else -1
            self.timestamp = d.get("timestamp", 0)
            self.op = d.get("op", "")
            self.args = d.get("args") or []
            self.success = d.get("success", True)
            self.error = d.get("error", "")

    def _parse(raw: str | bytes) -> Any:
        return _Obj(json.loads(raw))


class SeqError(Exception):
    pass


class WSClient:
    """A minimal WebSocket client on a (gevent-patched) socket: one recv per read.

    websocket-client reads the handshake byte by byte and each frame with several small
    recv calls; under gevent that costs more than all the rest of a user's work.
    """

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buf = bytearray()
        self.partial = bytearray()  # a fragmented message being assembled
        key = base64.b64encode(os.urandom(16))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n"
                     % (path.encode(), host.encode(), port, key))
        while b"\r\n\r\n" not in self.buf:
            data = sock.recv(65536)
            if not data or len(self.buf) > 65536:
                raise ConnectionError("no WebSocket handshake answer")
            self.buf += data
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
        accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
        if accept not in head:
            raise ConnectionError("bad Sec-WebSocket-Accept")

    def send(self, text: str, opcode: int = 0x1) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else (
            bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big") if n < 65536
            else bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big"))
        masked = (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
                  ).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + masked)

    def read(self, timeout: float) -> list[tuple[int, bytes]]:
        """The complete frames buffered, or those that arrive within ``timeout`` (one recv)."""
        frames = self._frames()
        if frames:
            return frames
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return []
        if not data:
            raise ConnectionError("connection closed by the server")
        self.buf += data
        return self._frames()

    def _frames(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        buf, pos, end = self.buf, 0, len(self.buf)
        while end - pos >= 2:
            fin, opcode, length = buf[pos] & 0x80, buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if end - pos < head + length:
                break
            payload = bytes(buf[pos + head:pos + head + length])
            pos += head + length
            if opcode == 0x8:
                del buf[:pos]
                raise ConnectionError("closed by the server: "
                                      + payload[2:].decode(errors="replace"))
            if opcode in (0x0, 0x1) and not fin:
                self.partial += payload
                continue
            if opcode == 0x0:
                payload, opcode = bytes(self.partial + payload), 0x1
                self.partial.clear()
            out.append((opcode, payload))
        del buf[:pos]
        return out

    def close(self) -> None:
        """Send a close frame, give the server 2 s to answer (it then hangs up first, so
        no TIME_WAIT stays on this machine), and close."""
        try:
            self.send("\x03\xe8", 0x8)
            self.sock.settimeout(2.0)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            self.sock.close()


KINDS = ("ticker", "trade", "orderbook", "kline", "liquidation")
_names: dict[str, str] = {}


def _recv_name(stream: str) -> str:
    """``recv ticker`` for ``hotpath.futures.ticker.BTCUSDT`` (any prefix)."""
    name = _names.get(stream)
    if name is None:
        kind = next((part for part in stream.split(".") if part in KINDS), "data")
        name = _names[stream] = f"recv {kind}"
    return name


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    g = parser.add_argument_group("hotpath")
    g.add_argument("--hp-path", default="/ws", help="WebSocket path on --host (default /ws)")
    g.add_argument("--hp-mix", choices=("hot", "zipf"), default="zipf",
                   help="hot: every user on --hp-streams; zipf: --hp-per-user streams drawn "
                        "Zipf over --hp-symbols (default zipf)")
    g.add_argument("--hp-streams", default="ticker:BTCUSDT",
                   help="hot mix: comma-separated streams")
    g.add_argument("--hp-symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,XRPUSDT,DOGEUSDT,BNBUSDT,"
                   "ADAUSDT,AVAXUSDT,LINKUSDT,DOTUSDT,LTCUSDT,TRXUSDT,BCHUSDT,NEARUSDT,UNIUSDT",
                   help="zipf mix: symbols, most popular first")
    g.add_argument("--hp-per-user", type=int, default=3, help="zipf mix: streams per user")
    g.add_argument("--hp-kinds", default="ticker",
                   help="zipf mix: stream kinds dealt per user, e.g. ticker,trade,orderbook:50")
    g.add_argument("--hp-zipf-s", type=float, default=1.0, help="zipf exponent")
    g.add_argument("--hp-hold", type=float, default=60.0,
                   help="seconds between churn actions (randomised +-50%%)")
    g.add_argument("--hp-churn", default="resubscribe:1,reconnect:1,none:2",
                   help="churn actions with weights (default resubscribe:1,reconnect:1,none:2)")
    g.add_argument("--hp-ping", type=float, default=60.0,
                   help="send an application ping this often, s (the server's idle timeout is "
                        "300 s by default)")


def _weights(text: str) -> tuple[list[str], list[float]]:
    names, weights = [], []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, w = part.partition(":")
        names.append(name)
        weights.append(float(w or 1))
    return names, weights


class HotpathUser(User):
    """One WebSocket client of a hotpath node."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        o = environment.parsed_options
        self.opts = o
        self.fire = environment.events.request.fire
        self.ws: WSClient | None = None
        self.streams = self._pick_streams()
        self.last: dict[str, int] = {}
        self.pending = 0  # accepted streams still waiting for their first snapshot
        self.seen: set[str] = set()
        self.subscribed_at = 0.0
        self.next_ping = 0.0

    def _pick_streams(self) -> list[str]:
        o = self.opts
        if o is None or o.hp_mix == "hot":
            text = o.hp_streams if o is not None else "ticker:BTCUSDT"
            return [s.strip() for s in text.split(",") if s.strip()]
        symbols = [s.strip().upper() for s in o.hp_symbols.split(",") if s.strip()]
        kinds = [k.strip() for k in o.hp_kinds.split(",") if k.strip()]
        cumulative, total = [], 0.0
        for rank in range(1, len(symbols) + 1):
            total += 1.0 / rank**o.hp_zipf_s
            cumulative.append(total)
        chosen: list[int] = []
        for _ in range(100):
            if len(chosen) >= min(o.hp_per_user, len(symbols)):
                break
            i = min(bisect.bisect_left(cumulative, random.random() * total), len(symbols) - 1)
            if i not in chosen:
                chosen.append(i)
        offset = random.randrange(len(kinds))
        return [f"{kinds[(offset + j) % len(kinds)]}:{symbols[i]}" for j, i in enumerate(chosen)]

    # -- connection ----------------------------------------------------------------------

    def _url(self) -> str:
        host = (self.host or "ws://127.0.0.1:8080").rstrip("/")
        if host.startswith("http"):
            host = "ws" + host[4:]
        return host + (self.opts.hp_path if self.opts is not None else "/ws")

    def connect(self) -> bool:
        start = time.perf_counter()
        try:
            self.ws = WSClient(self._url(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - every failure is a locust failure
            self.fire(request_type="WS", name="connect",
                      response_time=(time.perf_counter() - start) * 1000, response_length=0,
                      exception=exc)
            self.ws = None
            return False
        self.fire(request_type="WS", name="connect",
                  response_time=(time.perf_counter() - start) * 1000, response_length=0,
                  exception=None)
        self.last.clear()
        self.subscribe()
        return True

    def subscribe(self) -> None:
        assert self.ws is not None
        self.pending = 0
        self.seen = set()
        self.subscribed_at = time.perf_counter()
        self.ws.send(json.dumps({"op": "subscribe", "args": self.streams}))
        self.next_ping = time.monotonic() + (self.opts.hp_ping if self.opts else 60.0)

    def resubscribe(self) -> None:
        assert self.ws is not None
        self.ws.send(json.dumps({"op": "unsubscribe", "args": self.streams}))
        self.subscribe()

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def on_start(self) -> None:
        self.connect()

    def on_stop(self) -> None:
        self.close()

    # -- the user's life -----------------------------------------------------------------

    @task
    def hold(self) -> None:
        if self.ws is None and not self.connect():
            time.sleep(1.0)
            return
        hold = self.opts.hp_hold if self.opts is not None else 60.0
        until = time.monotonic() + random.uniform(0.5, 1.5) * hold
        while time.monotonic() < until and self.ws is not None:
            self.receive_one()
        if self.ws is None:
            return
        names, weights = _weights(self.opts.hp_churn if self.opts else "none:1")
        action = random.choices(names, weights)[0]
        if action == "resubscribe":
            self.resubscribe()
        elif action == "reconnect":
            self.close()
            self.connect()

    def receive_one(self) -> None:
        """Read what has arrived (one recv of up to 64 KiB) and handle every frame in it."""
        assert self.ws is not None
        now = time.monotonic()
        if now >= self.next_ping:
            self.ws.send('{"op":"ping"}')
            self.next_ping = now + (self.opts.hp_ping if self.opts else 60.0)
        try:
            frames = self.ws.read(max(0.1, min(1.0, self.next_ping - now)))
        except (OSError, ConnectionError) as exc:
            self.fire(request_type="WS", name="disconnected", response_time=0,
                      response_length=0, exception=exc)
            self.close()
            return
        received = time.time() * 1000.0
        for opcode, payload in frames:
            if opcode == 0x9:
                self.ws.send(payload.decode(errors="replace"), 0xA)
                continue
            if opcode != 0x1:
                continue
            try:
                m = _parse(payload)
            except Exception as exc:  # noqa: BLE001
                self._error("bad message", exc)
                continue
            if m.seq < 0:
                self.on_reply(m)
            else:
                self.on_data(m, received, len(payload))

    def on_reply(self, m: Any) -> None:
        if m.op == "unsubscribe":
            # Everything sent before the unsubscribe took effect has arrived; each stream
            # starts again with a snapshot.
            for name in list(self.last):
                del self.last[name]
        elif m.op == "subscribe":
            rejected = len(self.streams) - len(m.args)
            if rejected:
                self._error("subscribe rejected", SeqError(f"{rejected} of {len(self.streams)}"))
            self.pending = len(m.args)
        elif m.op == "error":
            self._error("error reply", SeqError(m.error or "?"))

    def on_data(self, m: Any, received_ms: float, size: int) -> None:
        stream, kind = m.stream, m.type
        last = self.last.get(stream)
        if kind == "snapshot":
            self.last[stream] = m.seq
            if stream not in self.seen and self.pending > 0:
                self.seen.add(stream)
                self.pending -= 1
                if not self.pending:
                    self.fire(request_type="WS", name="subscribe -> snapshot",
                              response_time=(time.perf_counter() - self.subscribed_at) * 1000,
                              response_length=0, exception=None)
            return
        if kind != "update":
            return  # status messages carry the current seq and do not advance it
        if last is None:
            self._error("update before snapshot", SeqError(stream))
        elif m.seq <= last:
            self._error("seq duplicate", SeqError(stream))
            return
        elif m.seq != last + 1:
            self._error("seq gap", SeqError(stream))
        self.last[stream] = m.seq
        self.fire(request_type="WS", name=_recv_name(stream),
                  response_time=max(0.0, received_ms - m.timestamp), response_length=size,
                  exception=None)

    def _error(self, name: str, exc: Exception) -> None:
        self.fire(request_type="WS", name=name, response_time=0, response_length=0,
                  exception=exc)
