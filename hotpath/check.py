"""``hotpath check``: validate the configuration and say what can be reached.

Prints one line per check and exits 0 when everything needed to serve is there.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import picows
import uvloop

from hotpath.bus.resp import Address, RedisUnavailable, RespProtocol, connect
from hotpath.config import Config
from hotpath.ingest.instruments import BybitRest, RestError
from hotpath.protocol import bybit


class _FirstTopic(picows.WSListener):  # type: ignore[misc]
    def __init__(self, got: asyncio.Future[bybit.Frame]) -> None:
        self.got = got

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.TEXT and not self.got.done():
            parsed = bybit.parse_frame(frame.get_payload_as_bytes())
            if parsed is not None and parsed.topic:
                self.got.set_result(parsed)


async def _redis(config: Config) -> tuple[bool, str]:
    if not config.redis.url:
        binary = shutil.which(config.redis.server_binary)
        if binary is None:
            return False, f"no --redis-url and {config.redis.server_binary} is not installed"
        return True, f"embedded: will start {binary} on a private unix socket"
    try:
        protocol = await connect(Address(config.redis.url), RespProtocol())
    except (RedisUnavailable, ValueError) as exc:
        return False, str(exc)
    protocol.close()
    return True, f"reachable at {Address(config.redis.url)}"


async def _rest(config: Config) -> tuple[bool, str, str]:
    try:
        symbols = await BybitRest(config.rest_url, timeout=10).trading_symbols()
    except RestError as exc:
        return False, f"{config.rest_url}: {exc}", ""
    return True, f"{config.rest_url}: {len(symbols)} trading USDT perpetuals", \
        symbols[0] if symbols else ""


async def _ws(config: Config, symbol: str) -> tuple[bool, str]:
    got: asyncio.Future[bybit.Frame] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    try:
        transport, _ = await picows.ws_connect(lambda: _FirstTopic(got), config.ws_url,
                                               websocket_handshake_timeout=10)
    except (OSError, asyncio.TimeoutError, picows.WSError) as exc:
        return False, f"{config.ws_url}: {exc}"
    transport.send(picows.WSMsgType.TEXT, bybit.op_request("subscribe", [f"tickers.{symbol}"]))
    try:
        frame = await asyncio.wait_for(got, 10)
    except asyncio.TimeoutError:
        return False, f"{config.ws_url}: no tickers.{symbol} message within 10 s"
    finally:
        transport.disconnect()
    return True, (f"{config.ws_url}: {frame.topic} {frame.type} after "
                  f"{(time.monotonic() - started) * 1000:.0f} ms")


async def _check(config: Config) -> int:
    results: list[tuple[str, bool, str]] = [("config", True, "valid")]
    ok, text = await _redis(config)
    results.append(("redis", ok, text))
    if config.upstream.mode == "sim":
        results.append(("upstream", True, "simulator (started by hotpath serve)"))
    else:
        ok, text, symbol = await _rest(config)
        results.append(("upstream REST", ok, text))
        if ok and symbol:
            ok, text = await _ws(config, symbol)
            results.append(("upstream WebSocket", ok, text))
    for name, ok, text in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<20} {text}")
    return 0 if all(ok for _, ok, _ in results) else 1


def main(config: Config) -> int:
    return uvloop.run(_check(config))
