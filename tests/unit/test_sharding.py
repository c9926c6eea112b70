from hotpath.ingest.sharding import MAX_ARGS_CHARS, has_room, shard


def test_groups_respect_count_and_characters():
    topics = [f"orderbook.1000.SYM{i:05d}USDT" for i in range(3000)]
    groups = shard(topics, per_connection=1000)
    assert [t for g in groups for t in g] == topics
    assert all(len(g) <= 1000 for g in groups)
    assert all(sum(map(len, g)) <= MAX_ARGS_CHARS for g in groups)
    assert len(groups) > 3  # 27-character topics: the character cap binds first


def test_has_room():
    assert has_room(0, 0, "x" * 10, per_connection=1)
    assert not has_room(1, 10, "y", per_connection=1)
    assert not has_room(0, MAX_ARGS_CHARS - 5, "tickers.X", per_connection=100)
