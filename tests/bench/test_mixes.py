"""Subscription mixes and source addresses."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bench.loadgen.mixes import Mix, MixError, draw_distinct, parse_addresses, zipf_weights
from bench.scenarios import Settings, build, floor_shape, symbols


def test_hot_mix_gives_everyone_the_same_streams() -> None:
    mix = Mix("hot", streams=["ticker:BTCUSDT", "trade:BTCUSDT"])
    assert mix.streams_for(0) == mix.streams_for(999) == ["ticker:BTCUSDT", "trade:BTCUSDT"]


def test_zipf_mix_is_deterministic_distinct_and_deals_kinds() -> None:
    names = [f"S{i}USDT" for i in range(200)]
    mix = Mix("zipf", symbols=names, per_client=5, kinds=["ticker", "trade"], seed=3)
    streams = mix.streams_for(42)
    assert streams == mix.streams_for(42)
    assert len(streams) == 5
    syms = [s.split(":")[-1] for s in streams]
    assert len(set(syms)) == 5
    kinds = Counter(s.split(":")[0] for s in streams)
    assert sorted(kinds.values()) == [2, 3]


def test_zipf_popularity_falls_with_rank() -> None:
    names = [f"S{i}USDT" for i in range(200)]
    mix = Mix("zipf", symbols=names, per_client=5, kinds=["ticker"])
    counts = Counter(s for i in range(3000) for s in mix.streams_for(i))
    assert counts["ticker:S0USDT"] > counts["ticker:S9USDT"] > counts["ticker:S150USDT"]
    assert counts["ticker:S0USDT"] > 0.4 * 3000  # the top symbol is in most clients' picks


def test_draw_distinct_never_repeats_even_when_asking_for_everything() -> None:
    cumulative = zipf_weights(5, 3.0)  # steep: rank 1 dominates
    picks = draw_distinct(cumulative, 5, random.Random(1))
    assert sorted(picks) == [0, 1, 2, 3, 4]


def test_mix_arguments_are_validated() -> None:
    with pytest.raises(MixError):
        Mix("hot")
    with pytest.raises(MixError):
        Mix("zipf", symbols=[])
    with pytest.raises(MixError):
        Mix("everything")


def test_parse_addresses_with_ranges() -> None:
    assert parse_addresses("127.0.0.1,127.0.1.2-4") == [
        "127.0.0.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"]
    with pytest.raises(ValueError):
        parse_addresses("127.0.0.300")
    with pytest.raises(MixError):
        parse_addresses("127.0.0.9-3")


def test_scenarios_build_with_defaults() -> None:
    s = Settings()
    s1, s2, s3, s4, s5 = (build(k, s) for k in ("S1", "S2", "S3", "S4", "S5"))
    assert s1.mix.streams == ["ticker:BTCUSDT"] and s1.clients == 10_000
    assert "--ticker-interval-ms" in s1.sim_args
    assert s2.mix.kinds == ["ticker", "trade"] and len(s2.mix.symbols) == 200
    assert s2.mix.symbols[0] == "BTCUSDT"  # the majors first: Zipf rank 1 is BTC
    assert s3.churn_rate > 0 and s3.clients == 0
    assert s4.servers == ("hotpath",) and s4.lagprobe
    assert "--stamp-at-write" in s4.sim_args and "write" in s4.notes[0]
    assert "--stamp-at-write" not in build("S4", Settings(s4_stamp="build")).sim_args
    assert s5.mix.kind == "none"
    with pytest.raises(ValueError):
        build("S9", s)
    assert symbols(3) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"] or len(symbols(3)) == 3


def test_floor_shape_follows_hotpath_delivery() -> None:
    s2 = build("S2", Settings())
    hotpath = {"deliveries": {"per_client_per_second": 12.0}, "node": {"frames_per_write": 3.2},
               "sample_update": '{"stream":"hotpath.futures.ticker.ETHUSDT","type":"update",'
                                '"data":{"price":"1.5"},"timestamp":1,"source":"hotpath","seq":2}'}
    rate, batch, stream, data = floor_shape(hotpath, s2)
    assert batch == 3.2 and rate == pytest.approx(12.0 / 3.2)
    assert stream == "hotpath.futures.ticker.ETHUSDT" and data == '{"price":"1.5"}'
    assert floor_shape(None, build("S5", Settings()))[0] < 0.1  # idle: no tick in the window
