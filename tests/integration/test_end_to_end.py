"""Tickers end to end: simulator -> ingest -> Redis -> gateway -> a real WebSocket client."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import Client, http_get, merge_ticker

pytestmark = pytest.mark.integration


def expected_client_ticker(bybit_state: dict[str, Any]) -> dict[str, Any]:
    """The client-schema ticker for a Bybit ticker state, written out independently."""
    s = bybit_state
    return {
        "symbol": s["symbol"], "price": s["lastPrice"], "markPrice": s["markPrice"],
        "indexPrice": s["indexPrice"], "high24h": s["highPrice24h"],
        "low24h": s["lowPrice24h"], "volume24h": s["volume24h"],
        "change24hPercent": format(Decimal(s["price24hPcnt"]) * 100, "f"),
        "bid": {"price": s["bid1Price"], "size": s["bid1Size"]},
        "ask": {"price": s["ask1Price"], "size": s["ask1Size"]},
        "fundingRate": s["fundingRate"], "openInterest": s["openInterest"],
        "nextFundingTime": s["nextFundingTime"],
    }


def _same_numbers(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal field by field; change24hPercent compared as a decimal (trailing zeros)."""
    if a.keys() != b.keys():
        return False
    return all(Decimal(a[k]) == Decimal(b[k]) if k == "change24hPercent" else a[k] == b[k]
               for k in a)


async def test_snapshot_then_updates_merge_to_the_simulators_state(node, sim):
    client = await Client.connect(node.ws_url)
    try:
        await client.send({"op": "subscribe", "args": ["ticker:BTCUSDT"]})
        assert await client.recv() == {"op": "subscribe", "success": True,
                                       "args": ["ticker:BTCUSDT"], "rejected": None}
        snap = await client.recv()
        assert snap["type"] == "snapshot"
        assert snap["stream"] == "hotpath.futures.ticker.BTCUSDT"
        assert snap["source"] == "hotpath"
        assert isinstance(snap["timestamp"], int) and snap["timestamp"] > 1_600_000_000_000
        assert set(snap["data"]) == {"symbol", "price", "markPrice", "indexPrice", "high24h",
                                     "low24h", "volume24h", "change24hPercent", "bid", "ask",
                                     "fundingRate", "openInterest", "nextFundingTime"}
        assert all(isinstance(v, str) for k, v in snap["data"].items() if k not in ("bid", "ask"))
        state, seq = snap["data"], snap["seq"]
        updates = 0
        while updates < 5:
            msg = await client.recv()
            assert msg["type"] == "update" and msg["seq"] == seq + 1, msg
            assert msg["data"] and set(msg["data"]) <= set(state)
            assert any(state[k] != v for k, v in msg["data"].items()), "unchanged field sent"
            state, seq, updates = merge_ticker(state, msg), msg["seq"], updates + 1
        sim.control("pause")
        try:
            expected = expected_client_ticker(sim.control("state?symbol=BTCUSDT")["data"])
            while not _same_numbers(state, expected):
                msg = await client.recv(timeout=5)
                assert msg["seq"] == seq + 1
                state, seq = merge_ticker(state, msg), msg["seq"]
        finally:
            sim.control("resume")
    finally:
        await client.close()


async def test_ping_pong_and_health(node):
    client = await Client.connect(node.ws_url)
    try:
        await client.send({"op": "ping"})
        pong = await client.recv()
        assert pong["op"] == "pong" and isinstance(pong["timestamp"], int)
        await client.send({"op": "ping", "req_id": "r1"})
        assert (await client.recv())["req_id"] == "r1"
    finally:
        await client.close()
    status, body = http_get(node.url + "/health")
    assert status == 200 and body["status"] == "ok" and body["down"] == []


async def test_second_subscriber_gets_its_own_snapshot_and_continuous_seq(node):
    first, second = await Client.connect(node.ws_url), await Client.connect(node.ws_url)
    try:
        await first.send({"op": "subscribe", "args": ["tickers.ETHUSDT"]})
        assert (await first.recv())["args"] == ["ticker:ETHUSDT"]
        assert (await first.recv())["type"] == "snapshot"
        await first.recv()  # let updates flow before the second client joins
        await second.send({"op": "subscribe", "args": ["ticker:ethusdt", "ticker:ETHUSDT"]})
        assert (await second.recv())["args"] == ["ticker:ETHUSDT"]
        snap = await second.recv()
        assert snap["type"] == "snapshot"
        seq = snap["seq"]
        for _ in range(3):
            msg = await second.recv()
            assert (msg["type"], msg["seq"]) == ("update", seq + 1)
            seq = msg["seq"]
    finally:
        await first.close()
        await second.close()


async def test_mudrex_compat_names(redis_url, sim, namespace, tmp_path):
    from tests.helpers import Node
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=["--compat", "mudrex"]) as n:
        client = await Client.connect(n.ws_url)
        try:
            await client.send({"op": "subscribe", "args": ["ticker:SOLUSDT"]})
            await client.recv()
            snap = await client.recv()
            assert (snap["stream"], snap["source"]) == ("mudrex.futures.ticker.SOLUSDT", "mudrex")
        finally:
            await client.close()


async def test_unknown_symbol_and_wildcard_are_rejected(node):
    client = await Client.connect(node.ws_url)
    try:
        await client.send({"op": "subscribe", "args": ["ticker:NOPEUSDT", "tickers.*"]})
        reply = await client.recv()
        assert reply["success"] is False and reply["args"] == []
        assert [r["arg"] for r in reply["rejected"]] == ["ticker:NOPEUSDT", "tickers.*"]
        assert reply["rejected"][1]["reason"].startswith("Wildcards (e.g. tickers.*)")
    finally:
        await client.close()


def test_hotpath_watch_prints_snapshot_then_updates(node):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "hotpath", "watch", "ticker:BTCUSDT",
                             "--url", node.ws_url, "--seconds", "2"],
                            capture_output=True, text=True, timeout=30)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert '"success":true' in lines[0]
    rows = [line.split(None, 3) for line in lines[1:]]
    assert rows[0][1:3] == ["snapshot", "hotpath.futures.ticker.BTCUSDT"]
    assert len(rows) >= 3 and all(r[1] == "update" for r in rows[1:])
    seqs = [int(r[0]) for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
