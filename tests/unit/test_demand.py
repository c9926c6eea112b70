from hotpath.ingest.demand import DemandTable


def test_union_of_workers_and_ttl():
    table = DemandTable(linger=60)
    table.update("a/0", ["trade:X"], ttl=15, now=0)
    table.update("b/0", ["trade:Y"], ttl=15, now=10)
    assert table.wanted(now=14) == {"trade:X", "trade:Y"}
    assert table.wanted(now=16) == {"trade:Y"}  # a/0 went silent: forgotten


def test_new_demand_subscribes_at_once_and_linger_delays_the_drop():
    table = DemandTable(linger=60)
    table.update("a/0", ["trade:X"], ttl=15, now=0)
    assert table.plan(active=set(), always={"ticker:X"}, now=0) == (
        {"trade:X", "ticker:X"}, set())
    table.update("a/0", [], ttl=15, now=5)
    assert table.plan({"trade:X", "ticker:X"}, {"ticker:X"}, now=5) == (set(), set())
    assert table.plan({"trade:X", "ticker:X"}, {"ticker:X"}, now=64) == (set(), set())
    assert table.plan({"trade:X", "ticker:X"}, {"ticker:X"}, now=65) == (set(), {"trade:X"})


def test_wanted_again_within_linger_is_kept():
    table = DemandTable(linger=60)
    table.update("a/0", [], ttl=15, now=0)
    assert table.plan({"trade:X"}, set(), now=0) == (set(), set())
    table.update("a/0", ["trade:X"], ttl=15, now=30)
    assert table.plan({"trade:X"}, set(), now=30) == (set(), set())
    table.update("a/0", [], ttl=15, now=40)
    assert table.plan({"trade:X"}, set(), now=40) == (set(), set())  # linger restarts here
    assert table.plan({"trade:X"}, set(), now=99) == (set(), set())
    assert table.plan({"trade:X"}, set(), now=100) == (set(), {"trade:X"})
