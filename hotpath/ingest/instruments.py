"""Bybit REST: the instrument list (paginated) and the initial tickers, with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Sequence

import aiohttp
import msgspec

from hotpath.protocol import bybit

log = logging.getLogger("hotpath.ingest.rest")

PAGE_LIMIT = 1000  # Bybit's maximum for instruments-info
MAX_PAGES = 50


class RestError(Exception):
    """A REST call failed; retry later."""


class BybitRest:
    def __init__(self, base_url: str, category: str = "linear", timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.category = category
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.calls = 0
        self.failures = 0

    async def _get(self, session: aiohttp.ClientSession, path: str,
                   params: dict[str, str]) -> bytes:
        self.calls += 1
        try:
            async with session.get(self.base_url + path, params=params) as resp:
                body = await resp.read()
                if resp.status in (403, 429):
                    raise RestError(f"HTTP {resp.status} (rate limited) from {path}")
                if resp.status != 200:
                    raise RestError(f"HTTP {resp.status} from {path}: {body[:200]!r}")
                return body
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RestError(f"{path}: {exc or type(exc).__name__}") from None

    async def trading_symbols(self) -> list[str]:
        """Every trading USDT perpetual, sorted. Raises RestError."""
        symbols: list[str] = []
        cursor = ""
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            for _ in range(MAX_PAGES):
                params = {"category": self.category, "limit": str(PAGE_LIMIT)}
                if cursor:
                    params["cursor"] = cursor
                body = await self._get(session, "/v5/market/instruments-info", params)
                try:
                    page = bybit.instruments_decoder.decode(body)
                except msgspec.MsgspecError as exc:
                    raise RestError(f"instruments-info: unexpected body: {exc}") from None
                if page.retCode != 0 or page.result is None:
                    raise RestError(f"instruments-info: retCode {page.retCode} {page.retMsg}")
                symbols.extend(i.symbol for i in page.result.items
                               if bybit.is_trading_usdt_perpetual(i))
                cursor = page.result.nextPageCursor
                if not cursor:
                    break
        return sorted(set(symbols))

    async def trading_symbols_retrying(self, max_delay: float = 60.0) -> list[str]:
        """Call trading_symbols until it succeeds, backing off with full jitter."""
        attempt = 0
        while True:
            try:
                return await self.trading_symbols()
            except RestError as exc:
                self.failures += 1
                delay = random.uniform(0, min(max_delay, 1.0 * 2 ** attempt))
                attempt += 1
                log.warning("instrument list: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)


def select(available: Sequence[str], wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """(symbols to serve, wanted symbols that do not exist). Empty ``wanted``: all."""
    if not wanted:
        return list(available), []
    have = set(available)
    return [s for s in wanted if s in have], [s for s in wanted if s not in have]
