#!/usr/bin/env python3
"""The baseline: a plain fan-out server built the usual way, for comparison.

``websockets`` (its asyncio server and its ``broadcast`` helper), ``redis-py``'s asyncio
pub/sub on the same Redis channels as hotpath (``{namespace}:s:{stream}``), one process
per core sharing the port with SO_REUSEPORT. It speaks hotpath's subscribe protocol and
forwards the client JSON of every update and stream-restart snapshot (the 9-byte
kind+seq header stripped); it has no snapshot-on-subscribe, no conflation, no limits.

Standalone on purpose (imports neither hotpath nor bench)::

    python bench/baseline_server.py --port 8090 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import signal
import sys
from typing import Any

import redis.asyncio as redis
from websockets.asyncio.server import ServerConnection, broadcast, serve

log = logging.getLogger("baseline")
KINDS = {"ticker", "trade", "orderbook", "kline", "liquidation"}
FORWARD = (ord("U"), ord("S"))  # updates and stream restarts; not R (replies) or X (status)


def canonical(arg: str) -> str | None:
    """``ticker:btcusdt`` or ``tickers.BTCUSDT`` -> ``ticker:BTCUSDT``; None if malformed."""
    if arg.startswith("tickers."):
        arg = "ticker:" + arg[len("tickers."):]
    parts = arg.split(":")
    if parts[0] not in KINDS or not parts[-1].isalnum():
        return None
    if len(parts) != (3 if parts[0] in ("orderbook", "kline") else 2):
        return None
    return ":".join(parts[:-1] + [parts[-1].upper()])


class Hub:
    """One process: streams -> connections, and the Redis pub/sub that feeds them."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.prefix = f"{namespace}:s:"
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.subscribers: dict[str, set[ServerConnection]] = {}
        self.subscribed = asyncio.Event()
        self.lock = asyncio.Lock()  # redis-py's PubSub is not safe for concurrent commands

    async def reader(self) -> None:
        await self.subscribed.wait()  # redis-py's listen() needs one subscription first
        async for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            data: bytes = message["data"]
            if len(data) <= 9 or data[0] not in FORWARD:
                continue
            stream = message["channel"].decode()[len(self.prefix):]
            conns = self.subscribers.get(stream)
            if conns:
                broadcast(conns, data[9:], text=True)

    async def handler(self, ws: ServerConnection) -> None:
        mine: set[str] = set()
        try:
            async for raw in ws:
                try:
                    op = json.loads(raw)
                except ValueError:
                    await ws.send(json.dumps({"op": "error", "message": "invalid JSON",
                                              "code": 400, "error": "INVALID_OPERATION"}))
                    continue
                await self.handle(ws, op, mine)
        finally:
            for stream in mine:
                self.subscribers.get(stream, set()).discard(ws)

    async def handle(self, ws: ServerConnection, op: Any, mine: set[str]) -> None:
        name = op.get("op") if isinstance(op, dict) else None
        if name == "ping":
            await ws.send(json.dumps({"op": "pong"}))
            return
        if name not in ("subscribe", "unsubscribe") or not isinstance(op.get("args"), list):
            await ws.send(json.dumps({"op": "error", "message": "unknown op", "code": 400,
                                      "error": "INVALID_OPERATION"}))
            return
        accepted, rejected = [], []
        for arg in op["args"]:
            stream = canonical(str(arg))
            if stream is None:
                rejected.append({"arg": arg, "reason": "bad stream"})
                continue
            accepted.append(stream)
            if name == "subscribe":
                if stream not in self.subscribers:
                    self.subscribers[stream] = set()
                    async with self.lock:
                        await self.pubsub.subscribe(self.prefix + stream)
                    self.subscribed.set()
                self.subscribers[stream].add(ws)
                mine.add(stream)
            else:
                self.subscribers.get(stream, set()).discard(ws)
                mine.discard(stream)
        await ws.send(json.dumps({"op": name, "success": bool(accepted), "args": accepted,
                                  "rejected": rejected or None}))


async def worker(host: str, port: int, redis_url: str, namespace: str, index: int) -> None:
    hub = Hub(redis_url, namespace)
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    def on_reader_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and not stop.done():
            stop.set_exception(RuntimeError(f"Redis reader stopped: {task.exception()!r}"))

    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, on_signal)
    reader = asyncio.create_task(hub.reader())
    reader.add_done_callback(on_reader_done)
    async with serve(hub.handler, host, port, reuse_port=True, max_queue=64,
                     ping_interval=None, compression=None):
        log.info("baseline worker listening: %d on %s:%d (pid %d)", index, host, port,
                 os.getpid())
        await stop
    reader.cancel()
    await hub.client.aclose()


def die_with_parent() -> None:
    """Linux: SIGTERM this worker when the parent dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_worker(args: argparse.Namespace, index: int) -> None:
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # no line per connection
    coro = worker(args.host, args.port, args.redis_url, args.redis_namespace, index)
    if args.loop == "uvloop":
        import uvloop
        uvloop.run(coro)
    else:
        asyncio.run(coro)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--redis-namespace", default="hotpath")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop (default uvloop, as hotpath uses)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=run_worker, args=(args, i), daemon=True)
             for i in range(args.processes)]
    for proc in procs:
        proc.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for proc in procs:
        if proc.pid:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
