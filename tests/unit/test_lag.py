from hotpath.lag import LagHistogram


def test_percentiles_are_bucket_upper_bounds():
    h = LagHistogram()
    for ms in [0.05] * 50 + [1.23] * 49 + [250.0]:
        h.add(ms)
    assert h.percentiles((50, 99, 100)) == (0.1, 1.3, 251.0)


def test_negative_and_huge_lags_are_clamped_and_empty_is_zero():
    h = LagHistogram()
    assert h.percentiles((50,)) == (0.0,)
    h.add(-5.0)
    h.add(1e9)
    assert h.percentiles((50, 100)) == (0.1, 10101.0)
    h.clear()
    assert h.total == 0 and h.percentiles((99,)) == (0.0,)


def test_a_batch_counts_every_message_at_its_wait():
    h = LagHistogram()
    h.add(0.35, 98)
    h.add(7.0, 2)
    assert h.total == 100
    assert h.percentiles((50, 98, 99)) == (0.4, 0.4, 7.1)
