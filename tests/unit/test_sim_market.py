"""The seeded market, its ticker fields and kline candles (pure, no event loop)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from hotpath.sim.candles import INTERVALS, Candle, bounds
from hotpath.sim.instruments import default_universe, universe_from_names
from hotpath.sim.market import Market, MarketParams
from hotpath.sim.messages import Formats
from hotpath.sim.ticker import TICKER_FIELDS, TickerFormat, rest_row, ticker_fields, ticker_raw

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"
T0 = 1_700_000_000_000


def fixture(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


def run(market: Market, steps: int, t0: int = T0) -> None:
    for i in range(steps):
        market.step(t0 + i * market.params.step_ms)


def test_universe_is_realistic_and_stable() -> None:
    universe = default_universe(300)
    names = [inst.symbol for inst in universe]
    assert len(set(names)) == 300 and names[:3] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    btc = universe[0]
    assert (btc.tick_size, btc.qty_step_text, btc.price_scale) == ("0.10", "0.001", 2)
    assert 50_000 * 100 <= btc.start_price <= 70_000 * 100
    for inst in universe:
        assert inst.start_price % inst.tick == 0 and inst.level_lots >= 1
    assert default_universe(300) == universe  # independent of any seed
    assert universe_from_names(["BTCUSDT", "ZZZUSDT"])[1].symbol == "ZZZUSDT"


def test_same_seed_same_market_other_seed_other_market() -> None:
    universe = default_universe(30)
    a, b, c = (Market(universe, seed, MarketParams()) for seed in (1, 1, 2))
    for market in (a, b, c):
        market.set_interest("BTCUSDT", 50)
        run(market, 500)
    refs = [[s.ref for s in m.symbols.values()] for m in (a, b, c)]
    assert refs[0] == refs[1] and refs[0] != refs[2]
    assert a.symbols["BTCUSDT"].detail.book.bids == b.symbols["BTCUSDT"].detail.book.bids


def test_subscribing_one_symbol_does_not_change_another() -> None:
    universe = default_universe(10)
    quiet, busy = Market(universe, 5, MarketParams()), Market(universe, 5, MarketParams())
    busy.set_interest("ETHUSDT", 200)
    run(quiet, 800)
    run(busy, 800)
    assert quiet.symbols["XRPUSDT"].ref == busy.symbols["XRPUSDT"].ref
    assert quiet.symbols["ETHUSDT"].ref == busy.symbols["ETHUSDT"].ref


def test_active_books_stay_valid_deep_and_on_the_grid() -> None:
    market = Market(default_universe(8), 3, MarketParams(trade_rate=40, book_churn=400))
    for symbol, cap in (("BTCUSDT", 60), ("XRPUSDT", 1100), ("DOGEUSDT", 30)):
        market.set_interest(symbol, cap)  # detail every step: the top sits on the ref
    for chunk in range(20):
        run(market, 50, T0 + chunk * 500)
        for symbol, state in market.active.items():
            book = state.detail.book  # type: ignore[union-attr]
            assert book.check() is None, symbol
            assert len(book.bids) >= state.detail.cap and len(book.asks) >= state.detail.cap
            tick = state.inst.tick
            assert all(p % tick == 0 for p in book.bids + book.asks)
            assert book.bids[-1] == state.ref and book.asks[0] == state.ref + state.spread


def test_trades_print_at_the_book_and_move_last_price() -> None:
    market = Market(default_universe(3), 9, MarketParams(trade_rate=50))
    market.set_interest("ETHUSDT", 50)
    state = market.symbols["ETHUSDT"]
    state.detail.keep_trades = True  # type: ignore[union-attr]
    run(market, 400)
    trades = state.detail.trades  # type: ignore[union-attr]
    assert len(trades) > 50
    assert len({t.trade_id for t in trades}) == len(trades)
    assert trades[-1].price == state.last
    assert all(t.price % state.inst.tick == 0 and t.qty % state.inst.qty_step == 0 for t in trades)
    assert [t.seq for t in trades] == sorted(t.seq for t in trades)
    assert state.volume > 0 and state.turnover > 0


def test_paused_market_is_a_function_of_steps_only() -> None:
    market = Market(default_universe(3), 4, MarketParams())
    market.set_interest("BTCUSDT", 50)
    run(market, 100)
    state = market.symbols["BTCUSDT"]
    fmt = Formats(state.inst)
    before = ticker_fields(state, fmt, market.now_ms)
    assert ticker_fields(state, fmt, market.now_ms) == before  # no step, no change


def test_ticker_fields_match_the_captured_snapshot() -> None:
    market = Market(default_universe(3), 1, MarketParams())
    market.set_interest("BTCUSDT", 50)
    run(market, 50)
    state = market.symbols["BTCUSDT"]
    fields = ticker_fields(state, Formats(state.inst), market.now_ms)
    snapshot = fixture("linear_tickers_snapshot.json")["data"]
    assert list(fields) == list(snapshot) == list(TICKER_FIELDS)
    assert all(isinstance(v, str) for v in fields.values())
    assert fields["bid1Price"] < fields["ask1Price"] and len(fields["price24hPcnt"].split(".")[1]) == 6
    assert int(fields["nextFundingTime"]) % (8 * 3_600_000) == 0
    row = rest_row(fields)
    assert list(row) == list(fixture("market_tickers_inverse.json")["result"]["list"][0])


def test_ticker_format_sends_only_changed_fields() -> None:
    market = Market(default_universe(3), 1, MarketParams())
    market.set_interest("ETHUSDT", 50)
    state = market.symbols["ETHUSDT"]
    fmt = TickerFormat(Formats(state.inst))
    old = ticker_raw(state, market.now_ms)
    assert fmt.changed(old, old) == {}
    run(market, 300)
    new = ticker_raw(state, market.now_ms)
    delta = fmt.changed(old, new)
    full_old, full_new = fmt.full(old), fmt.full(new)
    assert list(delta)[0] == "symbol" and len(delta) > 1
    assert {k for k in full_new if full_new[k] != full_old[k]} == set(delta) - {"symbol"}
    assert {**full_old, **delta} == full_new


def test_candle_bounds_are_utc_aligned() -> None:
    t = int(datetime(2024, 2, 29, 13, 47, 12, tzinfo=timezone.utc).timestamp() * 1000)
    assert bounds("1", t) == (t - 12_000, t - 12_000 + 59_999)
    start, end = bounds("15", t)
    assert datetime.fromtimestamp(start / 1000, timezone.utc).minute == 45 and end - start == 899_999
    day = int(datetime(2024, 2, 29, tzinfo=timezone.utc).timestamp() * 1000)
    assert bounds("D", t) == (day, day + 86_399_999)
    monday = int(datetime(2024, 2, 26, tzinfo=timezone.utc).timestamp() * 1000)
    assert bounds("W", t)[0] == monday
    march = int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp() * 1000)
    assert bounds("M", t) == (int(datetime(2024, 2, 1, tzinfo=timezone.utc).timestamp() * 1000),
                              march - 1)
    for interval in INTERVALS:
        s, e = bounds(interval, t)
        assert s <= t <= e and bounds(interval, e + 1)[0] == e + 1


def test_candle_aggregates_trades_and_hands_over_its_close() -> None:
    candle = Candle("5", T0, 100)
    candle.add(105, 2, 210, T0 + 1)
    candle.add(98, 1, 98, T0 + 2)
    assert (candle.open, candle.high, candle.low, candle.close) == (100, 105, 98, 98)
    assert (candle.volume, candle.turnover, candle.last_ms) == (3, 308, T0 + 2)
    following = candle.successor()
    assert following.start == candle.end + 1 and following.open == 98 and following.volume == 0
