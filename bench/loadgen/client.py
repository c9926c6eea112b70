"""One load-generator worker process: its share of the clients on one uvloop loop.

The parent sends ``"stop"`` over the pipe; the worker sends ``("tick", status, rows)``
four times a second and ``("final", counters, rows, extra)`` once at the end. It also
stops by itself at its deadline, so a lost parent never leaves it running.

Two more orders from the parent, for reliability runs:

- ``("go", t)`` starts a worker planned with ``start_on_go`` (its ramp begins at ``t``);
  with ``slow`` its clients subscribe and never read their socket, until ``"drain"``
  makes them read what is left (and the server's close frame, if it sent one).
- ``("storm", t, spread)``: at ``t`` every held client is dropped at once (reset) and
  connects again, the reconnects spread evenly over ``spread`` seconds.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import picows
import uvloop

from bench.loadgen.checker import Counters, SeqCheck, Second, count, decode

TEXT = picows.WSMsgType.TEXT
CLOSE = picows.WSMsgType.CLOSE
TICK = 0.25
_time = time.time
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass
class Plan:
    """What one worker process does (pickled to it by the parent)."""

    url: str
    clients: list[tuple[int, str, list[str]]]  # (client index, source address, streams)
    start_at: float  # wall time of the first connect
    ramp: float  # connects per second of the whole swarm: client i connects at i / ramp
    deadline: float  # wall time at which the worker stops by itself
    require_snapshot: bool = True
    connect_timeout: float = 15.0
    max_inflight: int = 256
    close_timeout: float = 10.0
    ping_interval: float = 30.0
    stale_after: float = 10.0
    churn_rate: float = 0.0  # cycles per second in this process
    churn_clients: list[tuple[int, str, list[str]]] = field(default_factory=list)
    churn_inflight: int = 200
    churn_timeout: float = 10.0
    start_on_go: bool = False  # ramp only after the parent's ("go", t), from t
    slow: bool = False  # subscribe, then never read until told to drain
    rcvbuf: int = 0  # SO_RCVBUF set before connecting (0: the kernel's default)
    storm_timeout: float = 60.0  # a storm reconnect's connect + handshake bound


def _suffix(canonical: str) -> str:
    """``orderbook:50:BTCUSDT`` -> ``.orderbook.50.BTCUSDT``, the tail of its public name
    (``hotpath.futures.orderbook.50.BTCUSDT``) whatever the configured prefix."""
    return "." + canonical.replace(":", ".")


def _tails(public: str) -> list[str]:
    parts = public.split(".")
    return ["." + ".".join(parts[i:]) for i in range(1, len(parts))]


class Client(SeqCheck, picows.WSListener):
    """One WebSocket client: subscribes, then checks and counts what arrives."""

    def __init__(self, proc: Proc, address: str, streams: list[str],
                 storm_t0: float = 0.0) -> None:
        super().__init__()
        self.init_check(proc.counters, proc.plan.require_snapshot)
        self.proc = proc
        self.address = address
        self.streams = streams
        self.storm_t0 = storm_t0  # set on a reconnect of the storm: when it began
        self.transport: picows.WSTransport | None = None
        self.expected = 0
        self.replied = not streams
        self.ready = False
        self.closing = False  # we started the close
        self.gone = False
        self.last_rx = 0.0
        self.subscribed_at = 0.0
        self.ready_at = 0.0
        self.waiter: asyncio.Future[bool] | None = None  # churn: set when ready or gone

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        if self.streams:
            self.subscribed_at = _time()
            transport.send(TEXT, msgspec.json.encode({"op": "subscribe", "args": self.streams}))
        else:
            self._ready()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == TEXT:
            try:
                m = decode(frame.get_payload_as_memoryview())
            except msgspec.DecodeError:
                self.counters.bad_messages += 1
                return
            if m.seq < 0:
                self._reply(m)
                return
            now = _time()
            self.last_rx = now
            proc = self.proc
            s = proc.second
            if int(now) != s.sec:
                s = proc.roll(int(now))
            s.deliveries += 1
            s.bytes += frame.payload_size
            kind = m.type
            if kind == "update":
                ms = now * 1000.0 - m.timestamp
                if ms < 100.0:
                    key = int(ms * 10.0) if ms > 0.0 else 0
                elif ms < 1000.0:
                    key = int(ms) * 10
                else:
                    key = int(ms / 10.0) * 100
                hist = s.hist
                hist[key] = hist.get(key, 0) + 1
                if ms > s.max_ms:
                    s.max_ms = ms
                if proc.sample is None:
                    proc.sample = frame.get_payload_as_bytes()
            self.check(m.stream, kind, m.seq)
            if not self.ready and self.replied and self.started >= self.expected:
                self._ready()
        elif frame.msg_type == CLOSE:
            if not self.closing:
                self.counters.closed_by_server += 1
                count(self.counters.close_codes, str(frame.get_close_code().value))
                transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _reply(self, m: Any) -> None:
        c = self.counters
        if m.op == "subscribe":
            self.expected = len(m.args)
            c.rejected_subscriptions += len(self.streams) - len(m.args)
            self.replied = True
            if not self.require_snapshot or self.started >= self.expected:
                self._ready()
        elif m.op == "error":
            c.error_replies += 1
            count(c.error_codes, m.error or "?")

    def _ready(self) -> None:
        if self.ready:
            return
        self.ready = True
        self.ready_at = _time()
        self.counters.ready += 1
        if self.storm_t0:
            self.proc.storm_ready.append(self.ready_at - self.storm_t0)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(True)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.gone = True
        if not self.closing:
            self.counters.dropped += 1
        self.proc.open.discard(self)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(False)

    def close(self) -> None:
        if self.transport is not None and not self.gone and not self.closing:
            self.closing = True
            self.transport.send_close(picows.WSCloseCode.OK)

    def abort(self) -> None:
        """Reset, not FIN: no TIME_WAIT left on this machine's ephemeral ports."""
        if self.transport is None or self.gone:
            return
        self.closing = True
        try:
            sock = self.transport.underlying_transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except (OSError, AttributeError):
            pass
        self.transport.disconnect(graceful=False)

    def never_started(self) -> int:
        """Subscribed streams on which nothing arrived."""
        if not self.replied:
            return len(self.streams)
        return max(0, self.expected - self.started)

    def silent(self) -> list[str]:
        """Subscribed streams (canonical names) on which nothing arrived."""
        received = self.last
        return [s for s in self.streams
                if not any(name.endswith(_suffix(s)) for name in received)]

    def snapshot_missing(self) -> int:
        return self.never_started() if self.require_snapshot else 0


class SlowClient(Client):
    """Subscribes and never reads its socket: the server's buffers for it fill up. Told
    to drain, it reads what is left and records the server's close code and reason."""

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        transport.underlying_transport.pause_reading()
        self.subscribed_at = _time()
        transport.send(TEXT, msgspec.json.encode({"op": "subscribe", "args": self.streams}))

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == CLOSE:
            if not self.closing:
                reason = frame.get_close_message() or b""
                key = f"{frame.get_close_code().value} {reason.decode('utf-8', 'replace')}"
                count(self.counters.slow_closes, key)
                self.closing = True  # the server's close, answered: not lost
                transport.send_close(frame.get_close_code())
            transport.disconnect()
        else:
            self.counters.slow_frames += 1

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.gone = True
        if not self.closing:
            self.counters.slow_lost += 1
        self.proc.open.discard(self)

    def drain(self) -> None:
        if self.transport is not None and not self.gone:
            self.transport.underlying_transport.resume_reading()


class Proc:
    """The worker process: ramp, churn, ticks to the parent, stop."""

    def __init__(self, plan: Plan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.counters = Counters()
        self.second = Second(int(_time()))
        self.done: list[tuple[Any, ...]] = []  # finished seconds not yet sent
        self.open: set[Client] = set()
        self.churning: set[Client] = set()
        self.sample: bytes | None = None
        self.stopping = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.go_at = 0.0
        self.go = asyncio.Event()
        self.drained = False
        self.storm_t0 = 0.0
        self.storm_accept: list[float] = []  # s from the storm's start to each reconnect
        self.storm_ready: list[float] = []  # ... to each reconnected client's snapshots

    def roll(self, sec: int) -> Second:
        if self.second.deliveries or self.second.churn or self.second.churn_hist:
            self.done.append(self.second.to_tuple())
        self.second = Second(sec)
        return self.second

    # -- connecting ----------------------------------------------------------------------

    async def connect(self, address: str, streams: list[str], timeout: float = 0.0,
                      storm_t0: float = 0.0) -> Client | None:
        p = self.plan
        timeout = timeout or p.connect_timeout
        cls = SlowClient if p.slow else Client
        where: dict[str, Any] = {"local_addr": (address, 0)}
        if p.rcvbuf:
            where = {"socket_factory": lambda url: _socket(url, address, p.rcvbuf)}
        try:
            async with asyncio.timeout(timeout):
                _, client = await picows.ws_connect(
                    lambda: cls(self, address, streams, storm_t0), p.url,
                    websocket_handshake_timeout=timeout,
                    # Periodic pings, like a real client's heartbeat: the server closes
                    # a client that sends nothing for --idle-timeout (300 s).
                    enable_auto_ping=p.ping_interval > 0 and not p.slow,
                    auto_ping_idle_timeout=p.ping_interval or 10.0,
                    auto_ping_strategy=picows.WSAutoPingStrategy.PING_PERIODICALLY,
                    read_buffer_init_size=4096, logger_name="loadgen", **where)
        except picows.WSHandshakeError as exc:
            status = getattr(getattr(exc, "response", None), "status", None)
            self._failed(f"http {int(status)}" if status is not None else "handshake")
            return None
        except TimeoutError:
            self._failed("timeout")
            return None
        except OSError as exc:
            self._failed(errno.errorcode.get(exc.errno or 0, type(exc).__name__))
            return None
        except Exception as exc:  # noqa: BLE001 - any failure is counted, never fatal
            self._failed(type(exc).__name__)
            return None
        if not isinstance(client, Client):  # seen when the server fails the upgrade late
            self._failed("no listener")
            return None
        return client

    def _failed(self, reason: str) -> None:
        self.counters.failed += 1
        count(self.counters.failures, reason)

    async def _hold(self, address: str, streams: list[str], sem: asyncio.Semaphore) -> None:
        try:
            client = await self.connect(address, streams)
        finally:
            sem.release()
        if client is None:
            return
        if self.stopping.is_set():
            client.abort()
            return
        if self.plan.slow:
            self.counters.slow_connected += 1
        else:
            self.counters.connected += 1
        if not client.gone:
            self.open.add(client)

    async def ramp(self) -> None:
        p = self.plan
        sem = asyncio.Semaphore(p.max_inflight)
        start = p.start_at
        if p.start_on_go:
            waits = [self.loop.create_task(self.stopping.wait()),
                     self.loop.create_task(self.go.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            start = self.go_at
        for index, address, streams in p.clients:
            if self.stopping.is_set():
                break
            delay = start + index / p.ramp - _time()
            if delay > 0:
                await asyncio.sleep(delay)
            await sem.acquire()
            self._spawn(self._hold(address, streams, sem))

    # -- churn: connect, subscribe, snapshot, disconnect ----------------------------------

    async def churn(self) -> None:
        p = self.plan
        if p.churn_rate <= 0 or not p.churn_clients:
            return
        inflight = 0

        async def cycle(address: str, streams: list[str]) -> None:
            nonlocal inflight
            inflight += 1
            try:
                await self._cycle(address, streams)
            finally:
                inflight -= 1

        start = max(p.start_at, _time())
        for i in range(10_000_000):  # bounded by the deadline and the stop event anyway
            if self.stopping.is_set():
                break
            delay = start + i / p.churn_rate - _time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
                    break
                except TimeoutError:
                    pass
            _, address, streams = p.churn_clients[i % len(p.churn_clients)]
            if inflight >= p.churn_inflight:
                self.counters.churn_skipped += 1  # the rate was not held
                continue
            self.counters.churn_started += 1
            self._spawn(cycle(address, streams))

    async def _cycle(self, address: str, streams: list[str]) -> None:
        c = self.counters
        client = await self.connect(address, streams)
        if client is None:
            c.churn_failed += 1
            return
        self.churning.add(client)
        client.waiter = self.loop.create_future()
        if client.ready:
            client.waiter.set_result(True)
        try:
            async with asyncio.timeout(self.plan.churn_timeout):
                ok = await client.waiter
        except TimeoutError:
            ok = False
        if ok:
            ms = (client.ready_at - client.subscribed_at) * 1000.0 if client.streams else 0.0
            now = int(_time())
            s = self.second if self.second.sec == now else self.roll(now)
            s.churn += 1
            key = int(ms * 10) if ms < 100 else (int(ms) * 10 if ms < 1000 else int(ms / 10) * 100)
            s.churn_hist[key] = s.churn_hist.get(key, 0) + 1
            c.churn_completed += 1
        else:
            c.churn_failed += 1
            if client.gone and not client.closing:
                c.dropped -= 1  # counted as a failed cycle instead
            elif not client.gone:
                c.snapshot_missing += client.snapshot_missing()
        if client.gone:
            self.churning.discard(client)
            return
        client.close()
        try:
            async with asyncio.timeout(5.0):
                while not client.gone:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            client.abort()
        self.churning.discard(client)

    # -- reliability: drain the never-reading clients, the reconnect storm ---------------

    def drain(self) -> None:
        self.drained = True
        for client in list(self.open):
            if isinstance(client, SlowClient):
                client.drain()

    async def storm(self, at: float, spread: float) -> None:
        """Drop every held client at once (reset), then connect them all again, the
        connects spread evenly over ``spread`` seconds: every client of a node whose
        clients all reconnect at the same moment (a balancer flip, a network blip)."""
        delay = at - _time()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.stopping.is_set():
            return
        old = [cl for cl in self.open if not cl.gone]
        self.storm_t0 = t0 = _time()
        self.counters.storm_dropped += len(old)
        for cl in old:
            cl.abort()
        for k, cl in enumerate(old):
            if self.stopping.is_set():
                break
            delay = t0 + spread * k / len(old) - _time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._spawn(self._rejoin(cl.address, cl.streams, t0))

    async def _rejoin(self, address: str, streams: list[str], t0: float) -> None:
        c = self.counters
        client = await self.connect(address, streams, self.plan.storm_timeout, t0)
        if client is None:
            c.storm_failed += 1
            return
        if self.stopping.is_set():
            client.abort()
            return
        c.storm_connected += 1
        self.storm_accept.append(_time() - t0)
        if not client.gone:
            self.open.add(client)

    def storm_pending(self) -> int:
        """Clients of a storm not yet back: reconnecting, or back without their snapshots.
        -1 before any storm."""
        if not self.storm_t0:
            return -1
        c = self.counters
        unsettled = c.storm_dropped - c.storm_connected - c.storm_failed
        return unsettled + sum(1 for cl in self.open if cl.storm_t0 and not cl.ready)

    # -- reporting and stopping ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {"open": len(self.open), "connected": c.connected, "failed": c.failed,
                "dropped": c.dropped, "ready": sum(1 for cl in self.open if cl.ready),
                "assigned": len(self.plan.clients), "churn_completed": c.churn_completed,
                "churn_failed": c.churn_failed, "slow": self.plan.slow,
                "slow_connected": c.slow_connected, "storm_pending": self.storm_pending()}

    async def ticker(self) -> None:
        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(TICK):
                    await self.stopping.wait()
            except TimeoutError:
                pass
            if int(_time()) != self.second.sec:
                self.roll(int(_time()))
            rows, self.done = self.done, []
            self.conn.send(("tick", self.status(), rows))

    async def stop_clients(self) -> dict[str, Any]:
        if self.plan.slow:
            return await self.stop_slow_clients()
        now = _time()
        c = self.counters
        active = _time() - max((cl.last_rx for cl in self.open), default=0.0) < 1.0
        stale = self.plan.stale_after
        stalled = [cl for cl in self.open if stale > 0 and active and cl.ready and cl.streams
                   and now - cl.last_rx > stale]
        c.stalled = len(stalled)
        c.snapshot_missing += sum(cl.snapshot_missing() for cl in self.open)
        if not self.plan.require_snapshot:
            # Without snapshots a quiet stream says nothing; one that others received does.
            received = {tail for cl in self.open for name in cl.last for tail in _tails(name)}
            for cl in self.open:
                for stream in cl.silent():
                    if _suffix(stream) in received:
                        c.silent_streams += 1
                    else:
                        c.quiet_streams += 1
        clients = list(self.open)
        for cl in clients:
            cl.close()
        deadline = time.monotonic() + self.plan.close_timeout
        while self.open and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        aborted = len(self.open)
        for cl in list(self.open) + list(self.churning):
            cl.abort()
        silent = [cl for cl in self.open if cl.silent()]
        return {"stalled_examples": [cl.streams for cl in stalled[:3]],
                "silent_examples": [cl.silent() for cl in silent[:3]],
                "close_aborted": aborted}

    async def stop_slow_clients(self) -> dict[str, Any]:
        """Never-reading clients the server did not close: counted, then read and closed."""
        self.counters.slow_open = len(self.open)
        if not self.drained:
            self.drain()
        for cl in list(self.open):
            cl.close()
        deadline = time.monotonic() + self.plan.close_timeout
        while self.open and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        aborted = len(self.open)
        for cl in list(self.open):
            cl.abort()
        return {"close_aborted": aborted}

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        self.loop.add_reader(self.conn.fileno(), self._on_parent)
        self.loop.call_at(self.loop.time() + max(0.0, self.plan.deadline - _time()),
                          self.stopping.set)
        self._spawn(self.ramp())
        self._spawn(self.churn())
        tick = self.loop.create_task(self.ticker())
        await self.stopping.wait()
        await tick
        extra = await self.stop_clients()
        for task in list(self.tasks):
            task.cancel()
        self.roll(int(_time()))
        extra["sample"] = self.sample.decode("utf-8", "replace") if self.sample else None
        if self.storm_t0:
            extra["storm"] = {"t0": self.storm_t0, "accept_s": self.storm_accept,
                              "ready_s": self.storm_ready}
        self.conn.send(("final", self.counters.to_dict(), self.done, extra))

    def _on_parent(self) -> None:
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            msg = "stop"  # the parent is gone
        if msg == "stop":
            self.loop.remove_reader(self.conn.fileno())
            self.stopping.set()
        elif msg == "drain":
            self.drain()
        elif isinstance(msg, tuple) and msg[0] == "go":
            self.go_at = float(msg[1])
            self.go.set()
        elif isinstance(msg, tuple) and msg[0] == "storm":
            self._spawn(self.storm(float(msg[1]), float(msg[2])))


async def _socket(url: Any, address: str, rcvbuf: int) -> socket.socket:
    """A connected client socket whose receive buffer was set before connecting, so that
    the TCP window never grows past it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        sock.bind((address, 0))
        await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    except BaseException:
        sock.close()
        raise
    return sock


def worker_main(plan: Plan, conn: Connection) -> None:
    """Entry point of a spawned worker process."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("picows").setLevel(logging.CRITICAL)  # failures are counted instead

    async def main() -> None:
        await Proc(plan, conn).run()

    uvloop.run(main())
    conn.close()
