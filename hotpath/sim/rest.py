"""Bybit V5 market REST endpoints the ingest uses, as pure functions of a query.

Errors are Bybit's: HTTP 200 with a non-zero ``retCode`` (10001, parameter error).
Pagination of instruments-info: ``limit`` 1..1000, default 500, opaque ``cursor``;
the last page has ``nextPageCursor: ""``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from hotpath.sim.instruments import Instrument
from hotpath.sim.messages import RestReply, encode
from hotpath.sim.numfmt import fixed
from hotpath.sim.ticker import rest_row

PARAMS_ERROR = 10001
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
CATEGORIES = ("linear",)

TickerSource = Callable[[str], dict[str, str]]


def reply(result: Any, now_ms: int, code: int = 0, message: str = "OK") -> bytes:
    return encode(RestReply(code, message, result, {}, now_ms))


def error(message: str, now_ms: int, code: int = PARAMS_ERROR) -> bytes:
    return reply({}, now_ms, code, message)


def _category_error(query: dict[str, str], now_ms: int) -> bytes | None:
    category = query.get("category", "")
    if not category:
        return error("params error: category is required", now_ms)
    if category not in CATEGORIES:
        return error("Illegal category", now_ms)
    return None


def instrument_row(inst: Instrument, status: str = "Trading") -> dict[str, Any]:
    """One instruments-info row, field for field as Bybit's linear example."""
    ps, qs = inst.price_scale, inst.qty_scale
    max_qty = fixed(inst.qty_step * max(1000, inst.level_lots * 2000), qs)
    return {
        "symbol": inst.symbol, "symbolId": inst.symbol_id, "contractType": "LinearPerpetual",
        "status": status, "baseCoin": inst.base_coin, "quoteCoin": "USDT",
        "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
        "priceScale": str(ps),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "50.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": inst.tick_size, "maxPrice": fixed(inst.start_price * 1000, ps),
                        "tickSize": inst.tick_size},
        "lotSizeFilter": {"maxOrderQty": max_qty, "minOrderQty": inst.qty_step_text,
                          "qtyStep": inst.qty_step_text, "postOnlyMaxOrderQty": max_qty,
                          "maxMktOrderQty": max_qty, "minNotionalValue": "5"},
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": "USDT",
        "copyTrading": "both", "upperFundingRate": "0.005", "lowerFundingRate": "-0.005",
        "isPreListing": False, "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "symbolType": "",
    }


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    key, _, value = text.partition("=")
    return int(value) if key == "offset" and value.isdigit() else None


def instruments_info(universe: list[Instrument], query: dict[str, str], now_ms: int,
                     closed: frozenset[str] = frozenset()) -> bytes:
    """GET /v5/market/instruments-info (linear); ``closed`` symbols say status Closed."""
    bad = _category_error(query, now_ms)
    if bad is not None:
        return bad
    limit_text = query.get("limit", str(DEFAULT_LIMIT))
    if not limit_text.isdigit() or int(limit_text) < 1:
        return error("params error: limit must be an integer in [1, 1000]", now_ms)
    limit = min(int(limit_text), MAX_LIMIT)
    rows = sorted(universe, key=lambda inst: inst.symbol)
    if "symbol" in query:
        rows = [inst for inst in rows if inst.symbol == query["symbol"]]
    offset = 0
    if query.get("cursor"):
        decoded = _decode_cursor(query["cursor"])
        if decoded is None:
            return error("params error: invalid cursor", now_ms)
        offset = decoded
    page = rows[offset:offset + limit]
    more = offset + limit < len(rows)
    rows_out = [instrument_row(inst, "Closed" if inst.symbol in closed else "Trading")
                for inst in page]
    result = {"category": "linear", "list": rows_out,
              "nextPageCursor": _encode_cursor(offset + limit) if more else ""}
    return reply(result, now_ms)


def tickers(symbols: list[str], source: TickerSource, query: dict[str, str], now_ms: int) -> bytes:
    """GET /v5/market/tickers (linear): one row, or every symbol."""
    bad = _category_error(query, now_ms)
    if bad is not None:
        return bad
    wanted = symbols
    if query.get("symbol"):
        if query["symbol"] not in symbols:
            return error("Not supported symbols", now_ms)
        wanted = [query["symbol"]]
    result = {"category": "linear", "list": [rest_row(source(s)) for s in wanted]}
    return reply(result, now_ms)


def server_time(now_ms: int) -> bytes:
    """GET /v5/market/time."""
    result = {"timeSecond": str(now_ms // 1000), "timeNano": str(now_ms * 1_000_000)}
    return reply(result, now_ms)
