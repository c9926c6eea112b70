"""Process and client helpers for integration tests: everything real, on loopback."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import websockets

import hotpath
from hotpath.embedded import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
# Where hotpath processes start from: the tree this process imports hotpath from. That
# is the checkout, except when tests/integration/test_compiled.py runs tests against a
# compiled copy (PYTHONPATH), whose processes must then run the compiled modules too.
HOME = Path(hotpath.__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_pong(port: int) -> bool:
    """Whether a Redis on this loopback port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, decoded JSON body or text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")


def _read_ready_line(proc: subprocess.Popen[bytes], prefix: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"process exited ({proc.wait()}) before printing {prefix!r}")
            if line.startswith(prefix):
                return line.strip()
    raise AssertionError(f"no {prefix!r} line within {timeout}s")


class Sim:
    """``hotpath sim`` as a subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    @contextmanager
    def start(cls, args: list[str]) -> Iterator[Sim]:
        proc = subprocess.Popen([sys.executable, "-m", "hotpath", "sim", "--port", "0", *args],
                                stdout=subprocess.PIPE, cwd=HOME,
                                preexec_fn=die_with_parent)
        try:
            line = _read_ready_line(proc, b"SIM_READY port=", 30)
            yield cls(proc, int(line.split(b"=")[1]))
        finally:
            proc.terminate()
            proc.wait(10)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v5/public/linear"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, path: str) -> Any:
        status, body = http_get(f"{self.rest_url}/sim/{path}")
        assert status == 200, (path, status, body)
        return body


class Node:
    """A ``hotpath serve`` process tree."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @classmethod
    @contextmanager
    def start(cls, *, redis_url: str | None, sim: Sim | None, namespace: str, log_path: Path,
              workers: int = 2, extra: list[str] | None = None,
              env: dict[str, str] | None = None, wait_healthy: bool = True,
              port: int | None = None) -> Iterator[Node]:
        port = port or free_port()
        args = [sys.executable, "-m", "hotpath", "serve", "--port", str(port), "--host",
                "127.0.0.1", "--workers", str(workers), "--redis-namespace", namespace,
                "--shutdown-window", "1"]
        if redis_url:
            args += ["--redis-url", redis_url]
        if sim is not None:
            args += ["--bybit-ws-url", sim.ws_url, "--bybit-rest-url", sim.rest_url]
        args += extra or []
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
        full_env.update(env or {})
        log = open(log_path, "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=HOME,
                                env=full_env, preexec_fn=die_with_parent)
        node = cls(proc, port, log_path)
        try:
            if wait_healthy:
                node.wait_healthy()
            yield node
        finally:
            node.stop()
            log.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 30) -> dict[str, Any]:
        def healthy() -> Any:
            if self.proc.poll() is not None:
                raise AssertionError(f"hotpath serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                status, body = http_get(self.url + "/health", timeout=1)
            except OSError:
                return None
            return body if status == 200 else None
        return wait_for(healthy, timeout, "/health to answer 200", interval=0.1)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for child in self.descendants():
                    child.kill()
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Client:
    """A WebSocket client built on the ``websockets`` library (independent of picows)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str) -> Client:
        return cls(await websockets.connect(url, max_size=2**24, open_timeout=10))

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def recv(self, timeout: float = 10) -> Any:
        import asyncio
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def recv_until(self, predicate: Callable[[Any], bool], timeout: float = 10) -> Any:
        """Skip messages until one satisfies ``predicate``."""
        import asyncio
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a matching message")
            msg = await self.recv(remaining)
            if predicate(msg):
                return msg

    async def close(self) -> None:
        await self.ws.close()


def server_frames(data: bytes) -> list[Any]:
    """The JSON of each unmasked server text frame in one write (the lengths that
    hotpath.protocol.wsframe writes: 7-bit or 16-bit)."""
    out = []
    while data:
        length, start = data[1], 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        out.append(json.loads(data[start:start + length]))
        data = data[start + length:]
    return out


def merge_ticker(state: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
    """Apply one client message to a ticker state the way a client would."""
    if msg["type"] == "snapshot":
        return dict(msg["data"])
    merged = dict(state)
    merged.update(msg["data"])
    return merged


async def until(check: Callable[[], Any], timeout: float, what: str,
                interval: float = 0.02) -> Any:
    """``wait_for`` for code sharing the event loop with what it waits for; ``check`` may
    also be async (e.g. one that asks an HTTP endpoint)."""
    import asyncio
    import inspect
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class SeqChecker:
    """The client-side ordering contract, per stream: a snapshot first, then updates with
    seq +1 each; a later snapshot restarts the stream; a status keeps the seq."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.snapshots: dict[str, int] = {}
        self.updates = 0

    def feed(self, msg: dict[str, Any]) -> None:
        stream, kind, seq = msg["stream"], msg["type"], msg["seq"]
        if kind == "snapshot":
            assert seq >= self.last.get(stream, 0), f"snapshot went back: {msg}"
            self.snapshots[stream] = self.snapshots.get(stream, 0) + 1
            self.last[stream] = seq
        elif kind == "update":
            assert stream in self.last, f"update before any snapshot: {msg}"
            assert seq == self.last[stream] + 1, f"seq {seq} after {self.last[stream]}: {msg}"
            self.last[stream] = seq
            self.updates += 1
        else:
            assert kind == "status", msg

    def forget(self, stream: str) -> None:
        """After an unsubscribe: the next message of ``stream`` must be a snapshot."""
        self.last.pop(stream, None)


# -- reliability tests: a private Redis, and clients that check what they are sent -------


class RedisServer:
    """A private ``redis-server`` on a loopback port, to stop and start again as a fault."""

    def __init__(self, port: int, workdir: Path, *args: str) -> None:
        self.port = port
        self.workdir = workdir
        self.args = list(args)  # more redis-server options
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import shutil
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--loglevel", "warning",
             *self.args],
            stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
        wait_for(lambda: redis_pong(self.port), 10, "redis-server to answer PING")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def public_name(name: str, prefix: str = "hotpath.futures") -> str:
    """ticker:BTCUSDT -> hotpath.futures.ticker.BTCUSDT"""
    return f"{prefix}.{name.replace(':', '.')}"


class StreamView:
    """One stream of one connection as a correct client holds it: every message checked
    against the contract (snapshot first, then updates with seq +1 each; a later snapshot
    restarts the stream; a status keeps the seq), and the state rebuilt from snapshot +
    updates. Breaches are collected in ``violations`` (a lost or out-of-order message)."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.kind = stream.split(".")[2]
        self.seq: int | None = None
        self.state: Any = None
        self.updates = 0
        self.snapshots: list[float] = []  # arrival times (monotonic)
        self.statuses: list[tuple[float, str, str]] = []  # (time, status, reason)
        self.violations: list[str] = []

    def __repr__(self) -> str:
        return (f"StreamView({self.stream} seq={self.seq} snapshots={len(self.snapshots)} "
                f"updates={self.updates} statuses={[s[1:] for s in self.statuses]} "
                f"violations={self.violations[:3]})")

    def feed(self, msg: dict[str, Any], now: float) -> None:
        kind = msg.get("type")
        if kind == "status":
            self.statuses.append((now, msg["data"]["status"], msg["data"].get("reason", "")))
        elif kind == "snapshot":
            self.seq = msg["seq"]
            self.snapshots.append(now)
            self.state = self._snapshot(msg["data"])
        elif kind == "update":
            if self.seq is None or msg["seq"] != self.seq + 1:
                self.violations.append(f"seq {msg['seq']} after {self.seq}")
            self.seq = msg["seq"]
            self.updates += 1
            if self.state is not None:
                self._apply(msg["data"])
        else:
            self.violations.append(f"unknown message {msg!r:.200}")

    def _snapshot(self, data: Any) -> Any:
        if self.kind == "orderbook":
            return {"bids": dict(data["bids"]), "asks": dict(data["asks"])}
        if self.kind in ("trade", "liquidation"):
            return list(data)
        return dict(data)

    def _apply(self, data: Any) -> None:
        if self.kind == "orderbook":
            for side, levels in (("bids", data["bids"]), ("asks", data["asks"])):
                for price, size in levels:
                    if float(size) == 0:
                        self.state[side].pop(price, None)
                    else:
                        self.state[side][price] = size
        elif self.kind in ("trade", "liquidation"):
            self.state = (self.state + list(data))[-50:]
        else:
            self.state.update(data)

    def snapshots_after(self, t: float) -> int:
        return sum(1 for s in self.snapshots if s > t)

    def resynced_after(self, t: float) -> float | None:
        """Arrival time of the first snapshot after ``t`` (None: not yet)."""
        return next((s for s in self.snapshots if s > t), None)


class Tracker:
    """A client (``websockets``) subscribed to ``names`` that reads in the background and
    checks every message with a StreamView per stream and connection. Reconnecting (for
    instance to another node) starts new views; breaches of earlier connections are kept."""

    def __init__(self, url: str, names: list[str]) -> None:
        self.url = url
        self.names = names
        self.views: dict[str, StreamView] = {}
        self.connections = 0
        self.violations: list[str] = []
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.closed = None  # asyncio.Event, created on the running loop
        self.ws: Any = None
        self.task: Any = None

    async def connect(self, url: str | None = None, timeout: float = 20) -> None:
        import asyncio
        self.url = url or self.url
        self.closed = asyncio.Event()
        self.closed_at = self.close_code = None
        self.violations += [v for view in self.views.values() for v in view.violations]
        self.views = {public_name(n): StreamView(public_name(n)) for n in self.names}
        self.ws = await websockets.connect(self.url, max_size=2**24, open_timeout=timeout)
        self.connections += 1
        await self.ws.send(json.dumps({"op": "subscribe", "args": self.names}))
        self.task = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                now = time.monotonic()
                try:
                    msg = json.loads(raw)
                except ValueError:
                    self.violations.append(f"not JSON: {raw!r:.200}")
                    continue
                if "stream" in msg:
                    view = self.views.get(msg["stream"])
                    if view is None:
                        self.violations.append(f"not subscribed: {msg!r:.200}")
                    else:
                        view.feed(msg, now)
                elif msg.get("op") == "subscribe":
                    if not msg.get("success") or msg.get("rejected"):
                        self.violations.append(f"subscribe refused: {msg}")
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()
            self.close_code = ws.close_code
            assert self.closed is not None
            self.closed.set()

    @property
    def connected(self) -> bool:
        return self.closed is not None and not self.closed.is_set()

    def all_violations(self) -> list[str]:
        return self.violations + [v for view in self.views.values() for v in view.violations]

    def has_snapshots(self) -> bool:
        return all(v.snapshots for v in self.views.values())

    def resynced_after(self, t: float) -> float | None:
        """When every stream had a snapshot after ``t`` (None: not yet)."""
        times = [v.resynced_after(t) for v in self.views.values()]
        return None if None in times else max(times)  # type: ignore[type-var]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            await self.task


async def connect_all(trackers: list[Tracker], batch: int = 50) -> None:
    """Connect in batches, so that a few hundred clients do not all knock at once."""
    import asyncio
    for i in range(0, len(trackers), batch):
        await asyncio.gather(*(t.connect() for t in trackers[i:i + batch]))


async def http_get_async(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """``http_get`` off the event loop, for tests whose clients read in the background."""
    import asyncio
    return await asyncio.to_thread(http_get, url, timeout)
