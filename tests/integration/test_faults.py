"""Process faults: what clients see when a worker or the ingest is killed with -9.

"Nothing lost" is checked, not assumed: every client's seq is continuous except across
a fresh snapshot, and after recovery its state equals the simulator's.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil
import pytest

from tests.helpers import Client, Node, http_get, merge_ticker, wait_for

pytestmark = pytest.mark.integration


class Follower:
    """One client on one ticker stream, checking what a correct client must see."""

    def __init__(self, client: Client, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.state: dict[str, Any] = {}
        self.seq: int | None = None
        self.snapshots = 0
        self.statuses: list[str] = []
        self.updates = 0

    async def step(self, timeout: float = 10) -> dict[str, Any]:
        msg = await self.client.recv(timeout)
        if msg.get("type") == "status":
            self.statuses.append(msg["data"]["status"])
        elif msg.get("type") == "snapshot":
            self.snapshots += 1
            self.seq, self.state = msg["seq"], merge_ticker(self.state, msg)
        elif msg.get("type") == "update":
            assert self.seq is not None and msg["seq"] == self.seq + 1, (self.seq, msg["seq"])
            self.seq, self.state = msg["seq"], merge_ticker(self.state, msg)
            self.updates += 1
        return msg

    async def until(self, done: Any, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, vars(self)
            await self.step(deadline - time.monotonic())


async def _follow(node: Node, stream: str = "ticker:BTCUSDT") -> Follower:
    client = await Client.connect(node.ws_url)
    await client.send({"op": "subscribe", "args": [stream]})
    await client.recv_until(lambda m: m.get("op") == "subscribe")
    follower = Follower(client, stream)
    await follower.until(lambda: follower.snapshots == 1)
    return follower


def _workers(node: Node) -> dict[int, int]:
    """pid -> worker index, from /stats."""
    status, body = http_get(node.url + "/stats")
    return {row["pid"]: i for i, row in enumerate(body["workers"])}


async def test_kill_9_one_worker_others_see_nothing(node):
    followers = [await _follow(node) for _ in range(8)]
    try:
        peers = {}
        for f in followers:  # which worker serves which client: its peer's pid
            port = f.client.ws.local_address[1]
            for pid in _workers(node):
                if any(c.raddr and c.raddr[1] == port
                       for c in psutil.Process(pid).net_connections(kind="tcp")):
                    peers[f] = pid
        victim = next(iter(set(peers.values())))
        os.kill(victim, signal.SIGKILL)
        survivors = [f for f in followers if peers.get(f) != victim]
        for f in survivors:
            await f.until(lambda f=f: f.updates >= 5)
            assert f.snapshots == 1 and f.statuses == []  # saw nothing of the crash
        wait_for(lambda: victim not in _workers(node) and len(_workers(node)) == 2, 15,
                 "the killed worker to be replaced")
        again = await _follow(node)  # a reconnecting client is served at once
        await again.client.close()
    finally:
        for f in followers:
            await f.client.close()


async def test_kill_9_ingest_clients_told_then_restarted_with_snapshots(node, sim):
    follower = await _follow(node)
    try:
        ingest = [p for p in node.descendants()
                  if "spawn_main" in " ".join(p.cmdline()) and p.pid not in _workers(node)]
        assert len(ingest) == 1
        ingest[0].suspend()  # down but not dead: the supervisor cannot restart it yet
        wait_for(lambda: "ingest" in http_get(node.url + "/health")[1].get("down", []), 15,
                 "/health to name the ingest")
        await follower.until(lambda: "stale" in follower.statuses)
        ingest[0].kill()
        await follower.until(lambda: follower.snapshots >= 2, timeout=30)
        assert follower.statuses == ["stale"]  # told once per incident
        node.wait_healthy()
        sim.control("pause")
        try:
            expected = sim.control("state?symbol=BTCUSDT")["data"]
            await follower.until(lambda: follower.state["price"] == expected["lastPrice"]
                                 and follower.state["bid"]["price"] == expected["bid1Price"],
                                 timeout=10)
        finally:
            sim.control("resume")
        assert "restarting ingest" in node.log()
    finally:
        await follower.client.close()


async def test_fast_ingest_restart_still_tells_clients(node):
    follower = await _follow(node)
    try:
        ingest = [p for p in node.descendants()
                  if "spawn_main" in " ".join(p.cmdline()) and p.pid not in _workers(node)]
        ingest[0].kill()  # restarted within the freshness window: noticed by its new pid
        await follower.until(lambda: "stale" in follower.statuses and follower.snapshots >= 2,
                             timeout=30)
    finally:
        await follower.client.close()
