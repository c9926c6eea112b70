"""Ticker state: Bybit snapshot + delta merge, normalized to the client schema. Pure.

Bybit sends one ``snapshot`` with every field, then ``delta`` messages carrying only
the fields that changed. ``TickerBook`` keeps the merged client-schema state per symbol
and turns each Bybit message into the client fields that changed (None: nothing did).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from hotpath.protocol.bybit import TickerData

# Bybit field -> client field, for the fields copied unchanged.
_PLAIN = (
    ("lastPrice", "price"),
    ("markPrice", "markPrice"),
    ("indexPrice", "indexPrice"),
    ("highPrice24h", "high24h"),
    ("lowPrice24h", "low24h"),
    ("volume24h", "volume24h"),
    ("fundingRate", "fundingRate"),
    ("openInterest", "openInterest"),
    ("nextFundingTime", "nextFundingTime"),
)
CLIENT_FIELDS = ("symbol", "price", "markPrice", "indexPrice", "high24h", "low24h",
                 "volume24h", "change24hPercent", "bid", "ask", "fundingRate",
                 "openInterest", "nextFundingTime")


class BadTicker(ValueError):
    """A ticker message that cannot be applied (e.g. a delta before any snapshot)."""


def percent(fraction: str) -> str:
    """Bybit's price24hPcnt fraction as a percent, exactly: "-0.0669" -> "-6.69"."""
    try:
        value = Decimal(fraction)
    except InvalidOperation:
        raise BadTicker(f"price24hPcnt is not a decimal: {fraction!r}") from None
    if not value.is_finite():
        raise BadTicker(f"price24hPcnt is not finite: {fraction!r}")
    return format(value.scaleb(2), "f")


def _normalize(data: TickerData, into: dict[str, Any]) -> None:
    """Write the client fields that ``data`` carries into ``into``."""
    for bybit_name, client_name in _PLAIN:
        value = getattr(data, bybit_name)
        if value is not None:
            into[client_name] = value
    if data.price24hPcnt is not None:
        into["change24hPercent"] = percent(data.price24hPcnt)


def _side(state: dict[str, Any], key: str, price: str | None, size: str | None) -> None:
    if price is None and size is None:
        return
    old = state.get(key)
    new = {"price": price if price is not None else (old or {}).get("price", ""),
           "size": size if size is not None else (old or {}).get("size", "")}
    if new != old:
        state[key] = new


class TickerBook:
    """Merged ticker state of every symbol, in the client schema."""

    __slots__ = ("states",)

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}

    def apply(self, msg_type: str, data: TickerData) -> dict[str, Any] | None:
        """Apply one Bybit ticker message; return the changed client fields, or None.

        A snapshot replaces the state and returns all of it; one that repeats the state
        held (Bybit re-pushing what it sent) changes nothing and returns None.
        """
        if msg_type == "snapshot":
            state: dict[str, Any] = {"symbol": data.symbol}
            _normalize(data, state)
            _side(state, "bid", data.bid1Price, data.bid1Size)
            _side(state, "ask", data.ask1Price, data.ask1Size)
            state = {k: state[k] for k in CLIENT_FIELDS if k in state}  # contract order
            if self.states.get(data.symbol) == state:
                return None
            self.states[data.symbol] = state
            return state
        held = self.states.get(data.symbol)
        if held is None:
            raise BadTicker(f"delta for {data.symbol} before its snapshot")
        return self._merge(held, data)

    def _merge(self, state: dict[str, Any], data: TickerData) -> dict[str, Any] | None:
        fresh: dict[str, Any] = {}
        _normalize(data, fresh)
        changed = {k: v for k, v in fresh.items() if state.get(k) != v}
        for key, price, size in (("bid", data.bid1Price, data.bid1Size),
                                 ("ask", data.ask1Price, data.ask1Size)):
            before = state.get(key)
            _side(state, key, price, size)
            if state.get(key) is not before:
                changed[key] = state[key]
        if not changed:
            return None
        state.update(changed)
        return changed

    def get(self, symbol: str) -> dict[str, Any] | None:
        return self.states.get(symbol)

    def drop(self, symbol: str) -> None:
        self.states.pop(symbol, None)
