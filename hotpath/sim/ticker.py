"""Linear ticker fields (WebSocket ``tickers.{S}`` and REST ``/v5/market/tickers``), pure.

Mark, index, open interest and funding are not simulated processes of their own: they
are cheap deterministic functions of the symbol, its reference price and the market's
(frozen-while-paused) clock, so they move like Bybit's without costing a step each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hotpath.sim.market import SymbolState
from hotpath.sim.messages import Formats
from hotpath.sim.numfmt import fixed, ratio, rescale, stripped

# Wire order of a linear ticker snapshot (tests/fixtures/bybit/linear_tickers_snapshot.json).
TICKER_FIELDS: tuple[str, ...] = (
    "symbol", "tickDirection", "price24hPcnt", "lastPrice", "prevPrice24h", "highPrice24h",
    "lowPrice24h", "prevPrice1h", "markPrice", "indexPrice", "openInterest",
    "openInterestValue", "turnover24h", "volume24h", "nextFundingTime", "fundingRate",
    "bid1Price", "bid1Size", "ask1Price", "ask1Size",
)
# Wire order of a REST ticker row (tests/fixtures/bybit/market_tickers_inverse.json;
# linear and inverse share the schema), with the constant fields of a perpetual.
_REST_ORDER: tuple[str, ...] = (
    "symbol", "lastPrice", "indexPrice", "markPrice", "prevPrice24h", "price24hPcnt",
    "highPrice24h", "lowPrice24h", "prevPrice1h", "openInterest", "openInterestValue",
    "turnover24h", "volume24h", "fundingRate", "nextFundingTime", "predictedDeliveryPrice",
    "basisRate", "deliveryFeeRate", "deliveryTime", "ask1Size", "bid1Price", "ask1Price",
    "bid1Size", "basis", "preOpenPrice", "preQty", "curPreListingPhase",
    "fundingIntervalHour", "basisRateYear", "fundingCap",
)
_REST_CONSTANTS = {
    "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
    "basis": "", "preOpenPrice": "", "preQty": "", "curPreListingPhase": "",
    "fundingIntervalHour": "8", "basisRateYear": "", "fundingCap": "0.005",
}
FUNDING_INTERVAL_MS = 8 * 3_600_000


def noise(salt: int, block: int) -> int:
    """A stateless pseudo-random integer in [-1000, 1000] for (salt, block)."""
    x = (salt * 0x9E3779B1 + block * 0x85EBCA6B + 0x27D4EB2F) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    return x % 2001 - 1000


def _top(state: SymbolState, now_ms: int) -> tuple[int, int, int, int]:
    """(bid price, bid lots, ask price, ask lots) from the book, or synthesised."""
    detail = state.detail
    if detail is not None and detail.book.bids and detail.book.asks:
        book = detail.book
        bid, ask = book.bids[-1], book.asks[0]
        return bid, book.bid_size[bid], ask, book.ask_size[ask]
    lots = state.inst.level_lots
    wobble = noise(state.inst.salt ^ 0xB1D, now_ms // 1000)
    return state.ref, lots + lots * abs(wobble) // 1000, state.ref + state.spread, lots


def ticker_raw(state: SymbolState, now_ms: int) -> tuple[Any, ...]:
    """The ticker as integers in output units, in TICKER_FIELDS order (symbol first).

    Formatting is injective per field, so two raw tuples differ in a field exactly when
    the strings would: feeds compare raw tuples and format only what changed.
    """
    inst = state.inst
    ps, qs, tick, salt, step = inst.price_scale, inst.qty_scale, inst.tick, inst.salt, inst.qty_step
    mid = state.ref + state.spread // 2
    index = mid + noise(salt, now_ms // 500) * 3 * tick // 1000
    mark = index + noise(salt ^ 0x3A7, now_ms // 500) * tick // 1000
    base_oi = inst.level_lots * step * 500
    oi = base_oi + base_oi * noise(salt ^ 0x01, now_ms // 2000) // 10_000
    bid, bid_lots, ask, ask_lots = _top(state, now_ms)
    return (
        inst.symbol, state.direction,
        ratio(state.last - state.prev_24h, state.prev_24h, 6),
        state.last, state.prev_24h, state.high_24h, state.low_24h, state.prev_1h, mark, index,
        oi, rescale(oi * mark, ps + qs, 2), rescale(state.turnover, ps + qs, 4),
        rescale(state.volume, qs, 4),
        (now_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS,
        10_000 + noise(salt ^ 0xF0, now_ms // 3_600_000) * 5,
        bid, bid_lots * step, ask, ask_lots * step,
    )


def _formatters(fmt: Formats) -> tuple[Callable[[Any], str], ...]:
    ps, qs = fmt.inst.price_scale, fmt.inst.qty_scale
    price, qty = fmt.price, fmt.qty

    def same(value: Any) -> str:
        return str(value)

    return (
        same, same, lambda v: fixed(v, 6), price, price, price, price, price,
        lambda v: fixed(v, ps), lambda v: fixed(v, ps), lambda v: fixed(v, qs),
        lambda v: fixed(v, 2), lambda v: fixed(v, 4), lambda v: fixed(v, 4), same,
        lambda v: stripped(v, 8), price, qty, price, qty,
    )


class TickerFormat:
    """Formats raw ticker tuples of one instrument, all fields or only changed ones."""

    __slots__ = ("_fns",)

    def __init__(self, fmt: Formats) -> None:
        self._fns = _formatters(fmt)

    def full(self, raw: tuple[Any, ...]) -> dict[str, str]:
        return {name: fn(v) for name, fn, v in zip(TICKER_FIELDS, self._fns, raw)}

    def changed(self, old: tuple[Any, ...], new: tuple[Any, ...]) -> dict[str, str]:
        """``symbol`` plus every field that differs, or {} when none does."""
        out: dict[str, str] = {}
        for name, fn, was, value in zip(TICKER_FIELDS, self._fns, old, new):
            if value != was:
                out[name] = fn(value)
        if out:
            out = {"symbol": new[0], **out}
        return out


def ticker_fields(state: SymbolState, fmt: Formats, now_ms: int) -> dict[str, str]:
    """All linear ticker fields, as strings, in Bybit's snapshot order."""
    return TickerFormat(fmt).full(ticker_raw(state, now_ms))


def rest_row(fields: dict[str, str]) -> dict[str, str]:
    """A ``/v5/market/tickers`` row (linear) from the WebSocket ticker fields."""
    merged = {**_REST_CONSTANTS, **fields}
    return {key: merged[key] for key in _REST_ORDER}
