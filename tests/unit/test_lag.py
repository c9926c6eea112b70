from hotpath.lag import LagHistogram, percentiles_between


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


def test_add_since_counts_each_stamp_as_add_would():
    stamps = [1000.0 - ms for ms in (0.05, 1.23, 1.23, 99.99, 250.0, 1e9)] + [1000.5]
    one_by_one, at_once = LagHistogram(), LagHistogram()
    for t in stamps:
        one_by_one.add(1000.0 - t)
    at_once.add_since(1000.0, stamps)
    assert at_once.counts == one_by_one.counts and at_once.total == len(stamps) == 7


def test_add_between_counts_each_pair_as_add_would():
    arrived = [10.0, 12.5, 400.0, 5.0]
    stamped = [9.9, 10.0, 100.0, 6.0]  # the last arrived before it was stamped: clamped
    one_by_one, at_once = LagHistogram(), LagHistogram()
    for a, t in zip(arrived, stamped):
        one_by_one.add(a - t)
    at_once.add_between(arrived, stamped)
    assert at_once.counts == one_by_one.counts and at_once.total == 4
    assert at_once.percentiles((25, 100)) == (0.1, 301.0)


def test_kept_counts_span_periods_and_two_samples_give_the_percentiles_between():
    h = LagHistogram(keep_all=True)
    h.add_between([10.0] * 50, [9.5] * 50)  # 50 at 0.5 ms
    assert h.since_start == {5: 50}
    before = dict(h.since_start)
    h.clear()  # a new reporting period: the kept counts go on
    assert h.total == 0
    h.add(2.05, 98)
    h.add_since(200.0, [100.0, 199.0])  # 100 ms and 1 ms
    assert h.since_start == {5: 50, 20: 98, 10: 1, 1000: 1}
    assert h.percentiles((50, 100)) == (2.1, 101.0)  # the period's own view
    # between the samples: 98 at 2.05 ms, one at 1 ms, one at 100 ms; none of the first 50
    assert percentiles_between(h.since_start, before, (1, 50, 99, 100)) == (1.1, 2.1, 2.1, 101.0)
    assert percentiles_between(h.since_start, None, (25,)) == (0.6,)
    assert percentiles_between(before, before, (50,)) == (0.0,)
    assert LagHistogram().since_start is None  # only when asked for
