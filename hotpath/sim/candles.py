"""Kline intervals and candle aggregation (pure).

Bybit candles are aligned to UTC: minute intervals to multiples of the interval since the
epoch, ``D`` to midnight, ``W`` to Monday midnight, ``M`` to the first of the month.
``end`` is the last millisecond of the candle (``start + length - 1``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

INTERVALS: tuple[str, ...] = ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M")
_MINUTE_MS = 60_000
_DAY_MS = 86_400_000


def bounds(interval: str, t_ms: int) -> tuple[int, int]:
    """(start, end) in ms of the candle of ``interval`` that contains ``t_ms``."""
    if interval.isdigit():
        length = int(interval) * _MINUTE_MS
        start = t_ms - t_ms % length
        return start, start + length - 1
    if interval == "D":
        start = t_ms - t_ms % _DAY_MS
        return start, start + _DAY_MS - 1
    if interval == "W":
        day = t_ms - t_ms % _DAY_MS
        weekday = datetime.fromtimestamp(day / 1000, tz=timezone.utc).weekday()
        start = day - weekday * _DAY_MS
        return start, start + 7 * _DAY_MS - 1
    if interval == "M":
        moment = datetime.fromtimestamp(t_ms / 1000, tz=timezone.utc)
        first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (first + timedelta(days=32)).replace(day=1)
        return int(first.timestamp() * 1000), int(following.timestamp() * 1000) - 1
    raise ValueError(f"unknown kline interval {interval!r}")


class Candle:
    """One open candle; prices in price units, volume in qty units, turnover in both."""

    __slots__ = ("interval", "start", "end", "open", "high", "low", "close",
                 "volume", "turnover", "last_ms")

    def __init__(self, interval: str, t_ms: int, price: int) -> None:
        self.interval = interval
        self.start, self.end = bounds(interval, t_ms)
        self.open = self.high = self.low = self.close = price
        self.volume = 0
        self.turnover = 0
        self.last_ms = self.start

    def add(self, price: int, qty: int, turnover: int, t_ms: int) -> None:
        """Account one trade; trades stamped after ``end`` belong to the next candle,
        and the feed closes this one before they can arrive."""
        self.close = price
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.volume += qty
        self.turnover += turnover
        self.last_ms = t_ms

    def successor(self) -> "Candle":
        """The next candle, opening at this one's close, with no trades yet."""
        return Candle(self.interval, self.end + 1, self.close)
