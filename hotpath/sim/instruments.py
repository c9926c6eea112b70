"""The simulated universe: USDT perpetuals with realistic names, prices and tick sizes.

An instrument is pure data. Prices are integers in units of ``10**-price_scale`` (BTC:
price_scale 2, tick 10 units = "0.10"), quantities in units of ``10**-qty_scale``. The
universe does not depend on ``--seed``: the same symbols, ticks and starting prices come
back every run, only the random walk differs.
"""

from __future__ import annotations

import math
import random
import zlib

import msgspec

from hotpath.sim.numfmt import fixed

# (symbol, approximate price). Tick and lot are derived by _grid() unless overridden.
_NAMED: tuple[tuple[str, float], ...] = (
    ("BTCUSDT", 60000), ("ETHUSDT", 3000), ("SOLUSDT", 150), ("XRPUSDT", 0.6),
    ("DOGEUSDT", 0.15), ("BNBUSDT", 550), ("ADAUSDT", 0.45), ("AVAXUSDT", 30),
    ("LINKUSDT", 15), ("DOTUSDT", 6), ("TRXUSDT", 0.12), ("LTCUSDT", 80),
    ("BCHUSDT", 400), ("NEARUSDT", 5), ("POLUSDT", 0.45), ("UNIUSDT", 8),
    ("ATOMUSDT", 7), ("APTUSDT", 9), ("ARBUSDT", 0.9), ("OPUSDT", 1.8),
    ("SUIUSDT", 1.5), ("INJUSDT", 25), ("TIAUSDT", 6), ("SEIUSDT", 0.4),
    ("WIFUSDT", 2.5), ("1000PEPEUSDT", 0.01), ("SHIB1000USDT", 0.02), ("FILUSDT", 5),
    ("ETCUSDT", 25), ("XLMUSDT", 0.1), ("HBARUSDT", 0.08), ("ICPUSDT", 10),
    ("RUNEUSDT", 5), ("AAVEUSDT", 100), ("MKRUSDT", 2500), ("ENAUSDT", 0.5),
    ("WLDUSDT", 2.5), ("JUPUSDT", 1.0), ("ORDIUSDT", 40), ("TONUSDT", 6),
    ("NOTUSDT", 0.015), ("ONDOUSDT", 1.0), ("FETUSDT", 1.5), ("LDOUSDT", 2),
    ("STXUSDT", 2), ("IMXUSDT", 1.5), ("GALAUSDT", 0.03), ("SANDUSDT", 0.4),
    ("MANAUSDT", 0.4), ("AXSUSDT", 7), ("CRVUSDT", 0.3), ("DYDXUSDT", 1.5),
    ("GMXUSDT", 30), ("SNXUSDT", 2.5), ("COMPUSDT", 50), ("1INCHUSDT", 0.4),
    ("ALGOUSDT", 0.18), ("EGLDUSDT", 35), ("KASUSDT", 0.15), ("1000BONKUSDT", 0.025),
    ("1000FLOKIUSDT", 0.15), ("BOMEUSDT", 0.008), ("MEMEUSDT", 0.02), ("PYTHUSDT", 0.4),
    ("STRKUSDT", 0.6), ("ZKUSDT", 0.2), ("TAOUSDT", 400), ("RENDERUSDT", 7),
    ("JTOUSDT", 3), ("PENDLEUSDT", 5), ("ENSUSDT", 25), ("GRTUSDT", 0.2),
    ("FLOWUSDT", 0.7), ("MINAUSDT", 0.6), ("KSMUSDT", 30), ("XMRUSDT", 160),
    ("ZECUSDT", 30), ("DASHUSDT", 30), ("EOSUSDT", 0.7), ("NEOUSDT", 12),
    ("THETAUSDT", 1.5), ("VETUSDT", 0.03), ("CHZUSDT", 0.08), ("APEUSDT", 1.2),
    ("BLURUSDT", 0.3), ("SSVUSDT", 30), ("ARKMUSDT", 1.8), ("CFXUSDT", 0.17),
    ("ROSEUSDT", 0.07),
)
# Bybit's real grids for the majors: (price_scale, tick units, qty_scale, qty units).
_GRIDS: dict[str, tuple[int, int, int, int]] = {
    "BTCUSDT": (2, 10, 3, 1),
    "ETHUSDT": (2, 1, 2, 1),
    "SOLUSDT": (3, 10, 1, 1),
    "BNBUSDT": (2, 5, 2, 1),
    "BCHUSDT": (2, 5, 2, 1),
    "XRPUSDT": (4, 1, 0, 1),
}
_MAJORS = frozenset(("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT"))
_LAUNCH_TIME = 1585526400000  # BTCUSDT's real launch time, used for every symbol


class Instrument(msgspec.Struct, frozen=True):
    """One USDT perpetual: identity, price/qty grid and the start of its random walk."""

    symbol: str
    base_coin: str
    symbol_id: int
    price_scale: int  # decimals of every price string
    tick: int  # tick size in price units
    qty_scale: int  # decimals of every size string
    qty_step: int  # lot size in qty units
    start_price: int  # price units, on the tick grid
    level_lots: int  # typical size of one book level, in lots
    salt: int  # stable per-symbol seed component

    @property
    def tick_size(self) -> str:
        return fixed(self.tick, self.price_scale)

    @property
    def qty_step_text(self) -> str:
        return fixed(self.qty_step, self.qty_scale)


def _grid(price: float) -> tuple[int, int, int, int]:
    """Tick and lot for a price, shaped like Bybit's: ~1e-4 relative tick, small lots."""
    magnitude = math.floor(math.log10(price))
    price_scale = min(8, max(1, 4 - magnitude))
    if price >= 10:
        return price_scale, 1, max(0, magnitude - 1), 1
    return price_scale, 1, 0, 1 if price >= 0.01 else 100


def make_instrument(symbol: str, price: float, symbol_id: int, major: bool = False) -> Instrument:
    """Build one instrument; floats are used here only, at start-up, never on output."""
    price_scale, tick, qty_scale, qty_step = _GRIDS.get(symbol) or _grid(price)
    start = max(tick * 100, round(price * 10**price_scale / tick) * tick)
    lot_value = price * qty_step / 10**qty_scale
    notional = 40_000 if major else 4_000
    return Instrument(
        symbol=symbol,
        base_coin=symbol[:-4] if symbol.endswith("USDT") else symbol,
        symbol_id=symbol_id,
        price_scale=price_scale,
        tick=tick,
        qty_scale=qty_scale,
        qty_step=qty_step,
        start_price=start,
        level_lots=max(1, round(notional / lot_value)),
        salt=zlib.crc32(symbol.encode()),
    )


def _generated_name(index: int) -> str:
    letters = ""
    n = index
    for _ in range(3):
        n, r = divmod(n, 26)
        letters = chr(65 + r) + letters
    return f"{letters}{1 + n}USDT"


def _generated_price(symbol: str) -> float:
    # Log-uniform 0.001 .. 500, stable per name (not per --seed).
    rng = random.Random(zlib.crc32(symbol.encode()))
    return float(10 ** rng.uniform(-3, math.log10(500)))


def default_universe(count: int) -> list[Instrument]:
    """``count`` symbols: the real majors first, then generated names (AAA1USDT, ...)."""
    names: list[tuple[str, float]] = list(_NAMED[:count])
    index = 0
    while len(names) < count:
        name = _generated_name(index)
        names.append((name, _generated_price(name)))
        index += 1
    return [make_instrument(s, p, i + 1, s in _MAJORS) for i, (s, p) in enumerate(names)]


def universe_from_names(symbols: list[str]) -> list[Instrument]:
    """Instruments for an explicit ``--symbol-list``; unknown names get a generated price."""
    known = dict(_NAMED)
    out: list[Instrument] = []
    for i, symbol in enumerate(symbols):
        price = known.get(symbol) or _generated_price(symbol)
        out.append(make_instrument(symbol, price, i + 1, symbol in _MAJORS))
    return out
