"""--flush-window-ms: more frames per write, and still every message in order."""

from __future__ import annotations

import pytest

from tests.helpers import Client, Node, SeqChecker, http_get, wait_for

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"]


async def test_window_coalesces_and_keeps_order(redis_url, sim, namespace, tmp_path):
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=["--flush-window-ms", "50"]) as node:
        client = await Client.connect(node.ws_url)
        try:
            names = [f"ticker:{s}" for s in SYMBOLS]
            await client.send({"op": "subscribe", "args": names})
            await client.recv_until(lambda m: m.get("op") == "subscribe")
            checker = SeqChecker()
            while checker.updates < 120:
                checker.feed(await client.recv())
            await client.send({"op": "unsubscribe", "args": ["ticker:BTCUSDT"]})
            while (msg := await client.recv()).get("op") != "unsubscribe":
                checker.feed(msg)
            for _ in range(30):  # after the ack, nothing more of BTCUSDT
                msg = await client.recv()
                assert "BTCUSDT" not in msg.get("stream", ""), msg
                checker.feed(msg)

            def coalesced():
                body = http_get(node.url + "/stats")[1]["totals"]
                return body if body["frames_out"] >= 150 else None
            totals = wait_for(coalesced, 10, "/stats to count the frames")
            assert totals["writes"] * 1.5 < totals["frames_out"], totals
        finally:
            await client.close()
