"""One load-generator worker process: its share of the clients on one uvloop loop.

The parent sends ``"stop"`` over the pipe; the worker sends ``("tick", status, rows)``
four times a second and ``("final", counters, rows, extra)`` once at the end. It also
stops by itself at its deadline, so a lost parent never leaves it running.
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
    ping_interval: float = 100.0
    stale_after: float = 10.0
    churn_rate: float = 0.0  # cycles per second in this process
    churn_clients: list[tuple[int, str, list[str]]] = field(default_factory=list)
    churn_inflight: int = 200
    churn_timeout: float = 10.0


def _suffix(canonical: str) -> str:
    """``orderbook:50:BTCUSDT`` -> ``.orderbook.50.BTCUSDT``, the tail of its public name
    (``hotpath.futures.orderbook.50.BTCUSDT``) whatever the configured prefix."""
    return "." + canonical.replace(":", ".")


def _tails(public: str) -> list[str]:
    parts = public.split(".")
    return ["." + ".".join(parts[i:]) for i in range(1, len(parts))]


class Client(SeqCheck, picows.WSListener):
    """One WebSocket client: subscribes, then checks and counts what arrives."""

    def __init__(self, proc: Proc, streams: list[str]) -> None:
        super().__init__()
        self.init_check(proc.counters, proc.plan.require_snapshot)
        self.proc = proc
        self.streams = streams
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

    def roll(self, sec: int) -> Second:
        if self.second.deliveries or self.second.churn or self.second.churn_hist:
            self.done.append(self.second.to_tuple())
        self.second = Second(sec)
        return self.second

    # -- connecting ----------------------------------------------------------------------

    async def connect(self, address: str, streams: list[str]) -> Client | None:
        p = self.plan
        try:
            async with asyncio.timeout(p.connect_timeout):
                _, client = await picows.ws_connect(
                    lambda: Client(self, streams), p.url, local_addr=(address, 0),
                    websocket_handshake_timeout=p.connect_timeout,
                    enable_auto_ping=p.ping_interval > 0,
                    auto_ping_idle_timeout=p.ping_interval or 10.0,
                    read_buffer_init_size=4096, logger_name="loadgen")
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
        assert isinstance(client, Client)
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
        self.counters.connected += 1
        if not client.gone:
            self.open.add(client)

    async def ramp(self) -> None:
        p = self.plan
        sem = asyncio.Semaphore(p.max_inflight)
        for index, address, streams in p.clients:
            if self.stopping.is_set():
                break
            delay = p.start_at + index / p.ramp - _time()
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

    # -- reporting and stopping ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        c = self.counters
        return {"open": len(self.open), "connected": c.connected, "failed": c.failed,
                "dropped": c.dropped, "ready": sum(1 for cl in self.open if cl.ready),
                "assigned": len(self.plan.clients), "churn_completed": c.churn_completed,
                "churn_failed": c.churn_failed}

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
        self.conn.send(("final", self.counters.to_dict(), self.done, extra))

    def _on_parent(self) -> None:
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            msg = "stop"  # the parent is gone
        if msg == "stop":
            self.loop.remove_reader(self.conn.fileno())
            self.stopping.set()


def worker_main(plan: Plan, conn: Connection) -> None:
    """Entry point of a spawned worker process."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("picows").setLevel(logging.CRITICAL)  # failures are counted instead

    async def main() -> None:
        await Proc(plan, conn).run()

    uvloop.run(main())
    conn.close()
