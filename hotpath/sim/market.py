"""Seeded random-walk market: pure state, advanced one fixed step at a time.

Every symbol's reference price walks on its tick grid at every step (one ``random()``
call, so the whole universe stays cheap). Symbols somebody subscribed to are *active*:
they also keep a full order book around the reference price, churn its levels and
print taker trades that eat the book, which is what moves ``lastPrice``.

Determinism: the reference walk of a symbol depends only on (seed, symbol, step index).
Book and trade detail use a second generator seeded from (seed, symbol, activation step),
so subscribing to one symbol never changes another symbol's path.
"""

from __future__ import annotations

import random

import msgspec

from hotpath.sim.book import BUY, SELL, Book
from hotpath.sim.candles import Candle
from hotpath.sim.instruments import Instrument

_MAX_TAKER_LEVELS = 4  # a taker order sweeps at most this many levels
_SLACK = 8  # levels a side may grow past its cap before it is trimmed
_MASK62 = (1 << 62) - 1
_MIX62 = 0x2545F4914F6CDD1D & _MASK62  # odd, so multiplying is a bijection mod 2**62
# A version-5, RFC 4122 variant UUID: clear the version and variant bits, set them below.
_UUID_KEEP = (1 << 128) - 1 & ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID_SET = 5 << 76 | 0x8000 << 48


class MarketParams(msgspec.Struct, frozen=True):
    """How lively the market is; rates are per symbol."""

    step_ms: int = 10  # one market step, wall-clock milliseconds
    moves_per_second: float = 4.0  # reference price moves
    trade_rate: float = 5.0  # taker orders per second (each prints 1-4 trades)
    book_churn: float = 100.0  # level changes per second
    min_levels: int = 25  # levels kept per side when no deep book is subscribed


class Trade(msgspec.Struct, frozen=True, array_like=True):
    """One print, before formatting."""

    time_ms: int
    side: str
    qty: int  # qty units
    price: int  # price units
    direction: str  # PlusTick, ZeroPlusTick, MinusTick, ZeroMinusTick
    trade_id: str
    seq: int


class Detail:
    """Book, trade counter and candles of an active symbol."""

    __slots__ = ("rng", "book", "cap", "trades", "keep_trades", "trade_no", "candles")

    def __init__(self, seed: int, cap: int) -> None:
        self.rng = random.Random(seed)
        self.book = Book()
        self.cap = cap
        self.trades: list[Trade] = []  # printed since the trade feed last took them
        self.keep_trades = False  # only while someone subscribes to publicTrade
        self.trade_no = 0
        self.candles: dict[str, Candle] = {}  # kline interval -> open candle


class SymbolState:
    """Everything the simulator knows about one symbol, as integers."""

    def __init__(self, inst: Instrument, seed: int, params: MarketParams) -> None:
        self.inst = inst
        self.seed = seed
        self.params = params
        self.salt = inst.salt
        self.walk = random.Random((seed << 32) ^ inst.salt).random  # the reference walk's draws
        init = random.Random(inst.salt)  # 24h statistics: per symbol, not per seed
        self.tick = tick = inst.tick
        self.level_lots = inst.level_lots
        self.spread = tick * (1 if inst.level_lots and init.random() < 0.7 else 2)
        self.ref = inst.start_price  # best bid the book is pulled towards
        self.move_p = params.moves_per_second * params.step_ms / 1000
        self.moved = False  # the reference moved since the last detail step
        self.every = 1  # detail step every this many market steps
        self._set_rates(1)
        self.move_max = max(1, round(inst.start_price * 1e-5 / tick))
        self.last = self.ref
        self.direction = "ZeroPlusTick"
        self.prev_24h = _on_grid(self.ref * (1 + init.uniform(-0.05, 0.05)), tick)
        self.prev_1h = _on_grid(self.ref * (1 + init.uniform(-0.01, 0.01)), tick)
        self.high_24h = max(self.ref, self.prev_24h) + tick * init.randint(1, 50)
        self.low_24h = max(tick, min(self.ref, self.prev_24h) - tick * init.randint(1, 50))
        self.volume = inst.level_lots * inst.qty_step * init.randint(2_000, 20_000)
        self.turnover = self.volume * self.ref
        self.seq = init.randint(10**9, 10**11)
        self.detail: Detail | None = None

    # -- reference walk (every symbol, every step) ---------------------------------

    def move(self) -> None:
        """Move the reference price: the step's first ``walk()`` (drawn by the market,
        see :meth:`Market.step`) came in under ``move_p``."""
        rnd = self.walk
        size = (1 + int(rnd() * self.move_max)) * self.tick
        # A gentle pull towards the start price keeps a long run in a sane range.
        up_p = 0.5 + max(-0.2, min(0.2, (self.inst.start_price - self.ref) / self.inst.start_price))
        self.ref = self.ref + size if rnd() < up_p else max(self.tick * 10, self.ref - size)
        self.moved = True
        if self.detail is None:
            self._print_price(self.ref)

    def _print_price(self, price: int) -> None:
        if price > self.last:
            self.direction = "PlusTick"
        elif price < self.last:
            self.direction = "MinusTick"
        elif self.direction in ("PlusTick", "MinusTick"):
            self.direction = "Zero" + self.direction
        self.last = price
        if price > self.high_24h:
            self.high_24h = price
        elif price < self.low_24h:
            self.low_24h = price

    # -- detail (active symbols only) ------------------------------------------------

    def _set_rates(self, every: int) -> None:
        span_s = self.params.step_ms * every / 1000
        churn = self.params.book_churn * span_s
        self.churn_whole, self.churn_frac = int(churn), churn % 1
        self.trade_p = min(1.0, self.params.trade_rate * span_s)
        self.every = every

    def activate(self, cap: int, step: int, every: int = 1) -> None:
        """Start keeping a book of ``cap`` levels per side (or resize an existing one),
        stepped every ``every`` market steps with rates scaled to match."""
        if every != self.every:
            self._set_rates(every)
        if self.detail is None:
            self.detail = Detail((self.seed * 1_000_003) ^ self.inst.salt ^ (step << 20), cap)
            self._rebuild_book()
        elif cap != self.detail.cap:
            self.detail.cap = cap
            self._extend(self.detail)
            self.detail.book.trim(cap)

    def deactivate(self) -> None:
        self.detail = None

    def step_detail(self, now_ms: int) -> None:
        """One step of book churn and taker flow around the reference price."""
        detail = self.detail
        if detail is None:
            return
        rnd = detail.rng.random
        changes = self.churn_whole + (rnd() < self.churn_frac)
        for _ in range(changes):
            self._churn(detail)
        traded = rnd() < self.trade_p
        if traded:
            self._taker(detail, now_ms)
        if self.moved or changes or traded:
            self._follow_ref(detail)
        self.moved = False

    def _lots(self, detail: Detail) -> int:
        r = detail.rng.random()
        return 1 + int(self.level_lots * (0.1 + 2.5 * r * r))

    def _rebuild_book(self) -> None:
        detail = self.detail
        assert detail is not None
        detail.book = Book()
        self._follow_ref(detail)
        self._extend(detail)

    def _follow_ref(self, detail: Detail) -> None:
        """Pull the top of book to the reference: cancel what crossed it, refill gaps."""
        book, tick, cap = detail.book, self.tick, detail.cap
        bids, asks = book.bids, book.asks
        bid_target, ask_target = self.ref, self.ref + self.spread
        if (bids and asks and bids[-1] == bid_target and asks[0] == ask_target
                and cap <= len(bids) <= cap + _SLACK and cap <= len(asks) <= cap + _SLACK):
            return  # the common case: nothing to pull, nothing to refill
        while bids and bids[-1] > bid_target:
            book.set_bid(bids[-1], 0)
        while asks and asks[0] < ask_target:
            book.set_ask(asks[0], 0)
        best_bid = bids[-1] if bids else None
        best_ask = asks[0] if asks else None
        if best_bid is None or bid_target - best_bid > tick * cap:
            best_bid = bid_target - tick * min(cap, 8)
        if best_ask is None or best_ask - ask_target > tick * cap:
            best_ask = ask_target + tick * min(cap, 8)
        rnd = detail.rng.random
        for price in range(best_bid + tick, bid_target + 1, tick):
            if price == bid_target or rnd() < 0.7:
                book.set_bid(price, self._lots(detail))
        for price in range(best_ask - tick, ask_target - 1, -tick):
            if price == ask_target or rnd() < 0.7:
                book.set_ask(price, self._lots(detail))
        self._extend(detail)
        if len(bids) > cap + _SLACK or len(asks) > cap + _SLACK:
            book.trim(cap)

    def _extend(self, detail: Detail) -> None:
        """Add levels at the far end until each side has ``cap`` levels."""
        book, tick, rnd = detail.book, self.tick, detail.rng.random
        price = book.bids[0] if book.bids else self.ref + tick
        while len(book.bids) < detail.cap and price > tick:
            price -= tick * (1 + int(rnd() * 2))
            if price > tick:
                book.set_bid(price, self._lots(detail))
        price = book.asks[-1] if book.asks else self.ref + self.spread - tick
        while len(book.asks) < detail.cap:
            price += tick * (1 + int(rnd() * 2))
            book.set_ask(price, self._lots(detail))

    def _churn(self, detail: Detail) -> None:
        """Change one level: new size (60%), cancel (20%) or a new level behind it (20%)."""
        book, rnd = detail.book, detail.rng.random
        is_bid = rnd() < 0.5
        top = book.bids if is_bid else book.asks
        if not top:
            return
        r = rnd()
        index = int(r * r * len(top))  # most churn happens near the top
        price = top[-1 - index] if is_bid else top[index]
        action = rnd()
        if action < 0.6:
            lots = 1 + int(self.level_lots * (0.1 + 2.5 * r * action))
        elif action < 0.8 and index > 0:
            lots = 0
        else:
            price += (-self.tick if is_bid else self.tick) * (1 + int(r * 3))
            lots = self._lots(detail)
        if is_bid:
            book.set_bid(price, lots)
        else:
            book.set_ask(price, lots)
        self.seq += 1

    def _taker(self, detail: Detail, now_ms: int) -> None:
        """A market order sweeps the opposite side; every fill is a public trade."""
        book, rng = detail.book, detail.rng
        side = BUY if rng.random() < 0.5 else SELL
        want = 1 + int(self.level_lots * rng.random() * 0.6)
        self.seq += 1 + int(rng.random() * 20)
        for _ in range(_MAX_TAKER_LEVELS):
            price = book.best_ask() if side == BUY else book.best_bid()
            if price is None or want <= 0:
                break
            sizes = book.ask_size if side == BUY else book.bid_size
            fill = min(want, sizes[price])
            want -= fill
            (book.set_ask if side == BUY else book.set_bid)(price, sizes[price] - fill)
            self._record_trade(detail, now_ms, side, fill, price)

    def _record_trade(self, detail: Detail, now_ms: int, side: str, lots: int, price: int) -> None:
        qty = lots * self.inst.qty_step
        self._print_price(price)
        self.volume += qty
        self.turnover += qty * price
        detail.trade_no += 1
        high = detail.rng.getrandbits(64)  # drawn either way: keeps the stream deterministic
        if detail.keep_trades:
            # Unique by construction: (symbol id, trade number) is mixed bijectively into
            # the 62 low bits the UUID variant leaves alone; the high half is random.
            key = ((self.inst.symbol_id << 40) | detail.trade_no) * _MIX62 & _MASK62
            trade_id = _uuid_text((high << 64) | key)
            detail.trades.append(Trade(now_ms, side, qty, price, self.direction, trade_id, self.seq))
        for candle in detail.candles.values():
            candle.add(price, qty, qty * price, now_ms)


def _uuid_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=5))``, without building a UUID object per trade."""
    h = f"{bits & _UUID_KEEP | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _on_grid(value: float, tick: int) -> int:
    return max(tick, round(value / tick) * tick)


class Market:
    """All symbols, advanced together by :meth:`step` on the master clock."""

    def __init__(self, universe: list[Instrument], seed: int, params: MarketParams) -> None:
        self.params = params
        self.symbols = {inst.symbol: SymbolState(inst, seed, params) for inst in universe}
        self._all = list(self.symbols.values())
        self.active: dict[str, SymbolState] = {}
        self.step_no = 0
        self.now_ms = 0  # simulated time of the last step (frozen while paused)
        self._hour = -1

    def set_interest(self, symbol: str, cap: int, every: int = 1) -> None:
        """Keep a book of ``cap`` levels per side for ``symbol``, stepped every ``every``
        market steps (the finest push interval anybody watches); ``cap == 0`` stops it.

        Stepping detail only as often as it is published keeps CPU per symbol low; the
        rates per second stay the same."""
        state = self.symbols[symbol]
        if cap <= 0:
            state.deactivate()
            self.active.pop(symbol, None)
            return
        state.activate(max(cap, self.params.min_levels), self.step_no, max(1, every))
        self.active[symbol] = state

    def step(self, now_ms: int) -> None:
        """Advance every symbol by one step, stamped ``now_ms`` (simulated time)."""
        self.step_no += 1
        self.now_ms = now_ms
        step_no = self.step_no
        # Every symbol draws whether its reference moves; most steps it does not, so the
        # draw is made here rather than in a call per symbol. Symbols are independent,
        # so the walk of all, then the detail of the active ones, is the same market.
        for state in self._all:
            if state.walk() < state.move_p:
                state.move()
        for state in self.active.values():
            if (step_no + state.salt) % state.every == 0:
                state.step_detail(now_ms)
        hour = now_ms // 3_600_000
        if hour != self._hour:
            if self._hour >= 0:
                for state in self._all:
                    state.prev_1h = state.last
            self._hour = hour
