"""The simulator's frozen configuration, built once by the CLI (or by tests)."""

from __future__ import annotations

import msgspec

from hotpath.sim.topics import ORDERBOOK_INTERVALS_MS

BYBIT_IDLE_TIMEOUT = 600.0  # Bybit V5 "Connect": no heartbeat for 10 minutes -> cut off


class SimConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every knob of ``hotpath sim``; see ``cli.py`` for what each one means."""

    host: str = "127.0.0.1"
    port: int = 0
    symbols: int = 300
    symbol_list: tuple[str, ...] = ()
    seed: int = 1
    step_ms: int = 10
    clock_speed: float = 1.0
    ticker_interval_ms: int = 100
    ticker_spread: bool = False
    book_spread: bool = False
    orderbook_intervals_ms: dict[int, int] = msgspec.field(
        default_factory=lambda: dict(ORDERBOOK_INTERVALS_MS))
    moves_per_second: float = 4.0
    trade_rate: float = 5.0
    book_churn: float = 100.0
    kline_push_ms: int = 1000
    liquidation_interval_ms: int = 500
    liquidation_rate: float = 0.2
    idle_timeout: float = BYBIT_IDLE_TIMEOUT
    max_buffer: int = 64 * 1024 * 1024
    stamp_at_write: bool = False
    replay: str = ""
    replay_speed: float = 1.0
    replay_loop: bool = False
    ready_file: str = ""

    def ticks(self, period_ms: int) -> int:
        """A push interval in master-clock ticks (at least one)."""
        return max(1, round(period_ms / self.step_ms))
