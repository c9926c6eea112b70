"""The simulator's REST endpoints and process contract, over real HTTP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integration.test_sim_support import ROOT, SimProc, assert_shape, fixture

pytestmark = pytest.mark.integration

INSTRUMENTS = fixture("instruments_info_linear_page.json")
TICKERS = fixture("market_tickers_inverse.json")  # same row schema as linear


@pytest_asyncio.fixture(scope="module")
async def sim() -> AsyncIterator[SimProc]:
    async with SimProc("--symbols", "300") as proc:
        yield proc


async def test_instruments_pagination_covers_the_universe_once(sim: SimProc) -> None:
    seen: list[str] = []
    cursor, pages = "", 0
    while True:
        path = "/v5/market/instruments-info?category=linear&limit=70"
        status, body = await sim.get(path + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        assert_shape({**INSTRUMENTS, "time": 1}, body)
        assert body["result"]["category"] == "linear" and len(body["result"]["list"]) <= 70
        seen += [row["symbol"] for row in body["result"]["list"]]
        pages += 1
        cursor = body["result"]["nextPageCursor"]
        if not cursor:
            break
    assert pages == 5 and len(seen) == 300 and len(set(seen)) == 300
    assert seen[:3] == sorted(seen)[:3] and "BTCUSDT" in seen
    _, default = await sim.get("/v5/market/instruments-info?category=linear")
    assert len(default["result"]["list"]) == 300 and default["result"]["nextPageCursor"] == ""


async def test_instrument_rows_describe_the_grid(sim: SimProc) -> None:
    _, body = await sim.get("/v5/market/instruments-info?category=linear&symbol=BTCUSDT")
    (row,) = body["result"]["list"]
    assert (row["status"], row["contractType"], row["quoteCoin"]) == ("Trading", "LinearPerpetual", "USDT")
    assert (row["priceFilter"]["tickSize"], row["priceScale"]) == ("0.10", "2")
    assert row["lotSizeFilter"]["qtyStep"] == "0.001"
    _, none = await sim.get("/v5/market/instruments-info?category=linear&symbol=NOPEUSDT")
    assert none["retCode"] == 0 and none["result"]["list"] == []


async def test_rest_errors_are_bybit_errors(sim: SimProc) -> None:
    for path in ("/v5/market/instruments-info?category=spotty", "/v5/market/tickers",
                 "/v5/market/tickers?category=linear&symbol=NOPEUSDT",
                 "/v5/market/instruments-info?category=linear&cursor=garbage!"):
        status, body = await sim.get(path)
        assert status == 200, path
        assert list(body) == ["retCode", "retMsg", "result", "retExtInfo", "time"]
        assert body["retCode"] == 10001 and body["result"] == {}, (path, body)
    status, _ = await sim.get("/v5/market/nothing")
    assert status == 404


async def test_rest_tickers_have_the_linear_row_schema(sim: SimProc) -> None:
    status, body = await sim.get("/v5/market/tickers?category=linear&symbol=ETHUSDT")
    assert status == 200
    expected = {**TICKERS, "result": {**TICKERS["result"], "category": "linear"}}
    assert_shape(expected, body)
    assert body["result"]["category"] == "linear"
    (row,) = body["result"]["list"]
    assert row["symbol"] == "ETHUSDT" and row["fundingIntervalHour"] == "8"
    _, everything = await sim.get("/v5/market/tickers?category=linear")
    assert len(everything["result"]["list"]) == 300


async def test_stats_and_unknown_control_paths(sim: SimProc) -> None:
    stats = await sim.control("stats")
    assert stats["mode"] == "synthetic" and stats["paused"] is False
    assert isinstance(stats["messages_sent"], int) and stats["connections"] == 0
    status, body = await sim.get("/sim/nothing")
    assert status == 404 and body["ok"] is False
    status, body = await sim.get("/sim/fault?kind=meteor")
    assert status == 400 and "meteor" in body["error"]


async def test_ready_line_ready_file_and_clean_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "port"
    sim = SimProc("--symbols", "5", "--ready-file", str(ready), "--log-format", "json")
    async with sim:
        assert int(ready.read_text()) == sim.port
        client = await sim.client()
        assert (await client.op("subscribe", ["tickers.BTCUSDT"]))["success"] is True
        assert await sim.stop() == 0  # with a client still connected


async def test_bad_arguments_fail_fast() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotpath.sim.cli", "--replay", "/nonexistent.jsonl", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1 and out == b"" and b"failed to start" in err
