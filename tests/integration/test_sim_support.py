"""Helpers for the simulator's integration tests: the sim as a real subprocess, a real
WebSocket client, plain HTTP, and the "shape" comparator against captured Bybit frames.

No tests here; the test_sim_* modules import from this one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"
READY_TIMEOUT = 15.0


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# -- shapes -----------------------------------------------------------------------------


def scalar_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def shape_errors(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Differences in envelope, key order and value types between two JSON values.

    Dicts must have the same keys in the same order; list elements of ``actual`` must
    each have the shape of ``expected[0]``; scalars must have the same JSON type
    (a price string is not a number, a bool is not an int).
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected object, got {scalar_type(actual)}"]
        if list(expected) != list(actual):
            return [f"{path}: keys {list(actual)} != {list(expected)}"]
        errors: list[str] = []
        for key in expected:
            errors += shape_errors(expected[key], actual[key], f"{path}.{key}")
        return errors
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected array, got {scalar_type(actual)}"]
        if not expected:
            return []
        errors = []
        for i, item in enumerate(actual):
            errors += shape_errors(expected[0], item, f"{path}[{i}]")
        return errors
    if scalar_type(expected) != scalar_type(actual):
        return [f"{path}: {scalar_type(actual)} != {scalar_type(expected)} ({actual!r})"]
    return []


def assert_shape(expected: Any, actual: Any) -> None:
    errors = shape_errors(expected, actual)
    assert not errors, "\n".join(errors[:10]) + f"\nactual: {json.dumps(actual)[:400]}"


# -- the simulator process ---------------------------------------------------------------


class SimProc:
    """``python -m hotpath.sim.cli`` on a free port; ``async with SimProc(args) as sim``."""

    def __init__(self, *args: str) -> None:
        self.args = ["--port", "0", *args]
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.returncode: int | None = None

    async def __aenter__(self) -> "SimProc":
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotpath.sim.cli", *self.args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT)
        assert line.startswith(b"SIM_READY port="), line
        self.port = int(line.strip().split(b"=")[1])
        return self

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        self.returncode = await asyncio.wait_for(self.proc.wait(), 10)
        return self.returncode

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v5/public/linear"

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{self.port}{path}") as response:
                return response.status, json.loads(await response.read())

    async def control(self, path: str) -> Any:
        status, body = await self.get(f"/sim/{path}")
        assert status == 200, (path, status, body)
        return body

    async def client(self) -> "Client":
        # max_queue=None: a test that stops reading must still be able to close quickly.
        return Client(await connect(self.ws_url, max_size=2**24, max_queue=None,
                                    ping_interval=None))


# -- a WebSocket client ------------------------------------------------------------------


class Client:
    """A Bybit-style client: ops out, JSON frames in, with timeouts everywhere."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._req = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return json.loads(raw)  # type: ignore[no-any-return]

    async def op(self, op: str, args: list[str] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Send an op with a fresh req_id and return its reply (skipping topic frames)."""
        self._req += 1
        req_id = f"r{self._req}"
        message: dict[str, Any] = {"op": op, "req_id": req_id}
        if args is not None:
            message["args"] = args
        await self.send(message)
        reply, _ = await self.until(lambda m: m.get("req_id") == req_id, timeout)
        return reply

    async def until(self, predicate: Callable[[dict[str, Any]], bool],
                    timeout: float = 5.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read until a frame matches; returns it and every frame read before it."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if predicate(message):
                return message, seen
            seen.append(message)

    async def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame that arrives within ``seconds``."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(await self.recv(left))
            except asyncio.TimeoutError:
                break
        return out

    async def barrier(self) -> list[dict[str, Any]]:
        """Ping and read up to the pong: every frame the server sent before it."""
        await self.send({"op": "ping", "req_id": "barrier"})
        _, seen = await self.until(lambda m: m.get("req_id") == "barrier", 5.0)
        return seen

    async def close(self) -> None:
        await self.ws.close()


def by_topic(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        if "topic" in message:
            out.setdefault(message["topic"], []).append(message)
    return out
