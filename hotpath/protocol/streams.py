"""Client stream names: parse, validate, format. Pure; no I/O.

Canonical names (what replies and Redis channels use):
    ticker:BTCUSDT   kline:1h:BTCUSDT   trade:BTCUSDT
    orderbook:50:BTCUSDT   liquidation:BTCUSDT
Accepted aliases: ``tickers.BTCUSDT``; symbols in any case.
"""

from __future__ import annotations

from typing import Container, NamedTuple

# client interval -> Bybit interval
KLINE_INTERVALS: dict[str, str] = {
    "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30",
    "1h": "60", "2h": "120", "4h": "240", "6h": "360", "12h": "720",
    "1d": "D", "1w": "W", "1M": "M",
}
BYBIT_INTERVALS: dict[str, str] = {v: k for k, v in KLINE_INTERVALS.items()}
ORDERBOOK_DEPTHS: tuple[int, ...] = (1, 50, 200, 1000)
KINDS: tuple[str, ...] = ("ticker", "kline", "trade", "orderbook", "liquidation")
# Streams whose latest value supersedes older ones (safe to conflate).
LATEST_VALUE_KINDS = frozenset({"ticker", "orderbook"})

WILDCARD_REASON = (
    "Wildcards (e.g. tickers.*) are not supported. "
    "Use specific symbols like tickers.BTCUSDT or ticker:ETHUSDT."
)
MAX_NAME_LENGTH = 64


class Stream(NamedTuple):
    """A validated client stream."""

    kind: str
    symbol: str
    param: str = ""  # kline interval ("1h") or orderbook depth ("50")

    @property
    def name(self) -> str:
        if self.param:
            return f"{self.kind}:{self.param}:{self.symbol}"
        return f"{self.kind}:{self.symbol}"

    @property
    def bybit_topic(self) -> str:
        if self.kind == "ticker":
            return f"tickers.{self.symbol}"
        if self.kind == "kline":
            return f"kline.{KLINE_INTERVALS[self.param]}.{self.symbol}"
        if self.kind == "trade":
            return f"publicTrade.{self.symbol}"
        if self.kind == "orderbook":
            return f"orderbook.{self.param}.{self.symbol}"
        return f"allLiquidation.{self.symbol}"


class StreamError(ValueError):
    """A stream name was rejected; str(exc) is the reason shown to the client."""


def parse(raw: object, symbols: Container[str] | None = None) -> Stream:
    """Parse a client stream name; check the symbol against ``symbols`` when given.

    Raises StreamError with the client-facing reason.
    """
    if not isinstance(raw, str):
        raise StreamError("Invalid stream format: stream names are strings")
    if len(raw) > MAX_NAME_LENGTH or not raw.isascii() or not raw.isprintable():
        raise StreamError("Invalid stream format")
    if "*" in raw:
        raise StreamError(WILDCARD_REASON)
    if raw.startswith("tickers."):
        kind, rest = "ticker", [raw[len("tickers."):]]
    else:
        kind, *rest = raw.split(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise StreamError(f"Unknown stream type '{kind}'; expected one of {', '.join(KINDS)}")
    param = ""
    if kind in ("kline", "orderbook"):
        if len(rest) != 2:
            example = "kline:1h:BTCUSDT" if kind == "kline" else "orderbook:50:BTCUSDT"
            raise StreamError(f"Invalid stream format: expected {example}")
        param, rest = rest[0], rest[1:]
        param = _check_param(kind, param)
    if len(rest) != 1 or not rest[0]:
        raise StreamError(f"Invalid stream format: expected {kind}:SYMBOL")
    symbol = rest[0].upper()
    if not symbol.isalnum():
        raise StreamError(f"Invalid symbol '{rest[0]}'")
    if symbols is not None and symbol not in symbols:
        raise StreamError(f"Unknown symbol '{symbol}'")
    return Stream(kind, symbol, param)


def _check_param(kind: str, param: str) -> str:
    if kind == "kline":
        if param in KLINE_INTERVALS:
            return param
        if param.lower() in KLINE_INTERVALS and param.lower() != "1m":
            return param.lower()  # "1H" -> "1h"; "1M" stays month, "1m" minute
        raise StreamError(
            f"Invalid kline interval '{param}'; expected one of {' '.join(KLINE_INTERVALS)}")
    if param.isdigit() and int(param) in ORDERBOOK_DEPTHS:
        return str(int(param))
    raise StreamError(
        f"Invalid orderbook depth '{param}'; expected one of "
        f"{' '.join(str(d) for d in ORDERBOOK_DEPTHS)}")


def from_bybit_topic(topic: str) -> Stream | None:
    """Map a Bybit topic (``tickers.BTCUSDT``) to its client stream, or None."""
    head, _, rest = topic.partition(".")
    if head == "tickers":
        return Stream("ticker", rest)
    if head == "publicTrade":
        return Stream("trade", rest)
    if head == "allLiquidation":
        return Stream("liquidation", rest)
    param, _, symbol = rest.partition(".")
    if head == "kline" and param in BYBIT_INTERVALS:
        return Stream("kline", symbol, BYBIT_INTERVALS[param])
    if head == "orderbook" and param.isdigit():
        return Stream("orderbook", symbol, param)
    return None


def public_name(stream: Stream, prefix: str) -> str:
    """The ``stream`` field of client messages: ``hotpath.futures.ticker.BTCUSDT``."""
    if stream.param:
        return f"{prefix}.{stream.kind}.{stream.param}.{stream.symbol}"
    return f"{prefix}.{stream.kind}.{stream.symbol}"
