from hotpath.gateway.limits import TokenBucket


def test_burst_then_refill_at_rate():
    bucket = TokenBucket(rate=10, burst=10, now=0.0)
    assert all(bucket.take(0.0) for _ in range(10))
    assert not bucket.take(0.0)
    assert bucket.take(0.1)          # one token back after 1/rate seconds
    assert not bucket.take(0.1)
    assert all(bucket.take(5.0) for _ in range(10))  # refill is capped at burst
    assert not bucket.take(5.0)


def test_cost_larger_than_one():
    bucket = TokenBucket(rate=1, burst=3, now=0.0)
    assert bucket.take(0.0, cost=3)
    assert not bucket.take(0.5, cost=1)
    assert bucket.take(1.0, cost=1)
