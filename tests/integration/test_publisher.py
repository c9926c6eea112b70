"""The pipelined publisher against a real redis-server: every message arrives, in order,
whether Redis agreed to stop answering PUBLISH or (a server without ``CLIENT``) not."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis.asyncio as aioredis

from hotpath.bus.publisher import Publisher
from hotpath.bus.resp import publish_command
from tests.helpers import RedisServer, free_port, until

pytestmark = pytest.mark.integration

COUNT = 2000


async def _publish_and_receive(url: str, replies: int, max_batch: int = 64) -> Publisher:
    """Publish COUNT messages in bursts of 100; return the publisher once a subscriber has
    them all and it has parsed ``replies`` replies."""
    subscriber = aioredis.from_url(url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe("t:ch")
    assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
    publisher = Publisher(url, "test-publisher", max_batch=max_batch)
    await publisher.start()
    assert await publisher.wait_connected(10)
    try:
        for burst in range(0, COUNT, 100):  # each burst one pipelined write
            for i in range(burst, burst + 100):
                assert publisher.send(publish_command(b"t:ch", b"m%d" % i))
            await asyncio.sleep(0)
        got = []
        while len(got) < COUNT:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, f"only {len(got)} of {COUNT} messages arrived"
            got.append(message["data"])
        assert got == [b"m%d" % i for i in range(COUNT)]
        assert (publisher.published, publisher.dropped, publisher.errors) == (COUNT, 0, 0)
        # a write per max_batch messages, and one for the rest of the burst
        assert publisher.writes == COUNT // 100 * math.ceil(100 / max_batch)
        await until(lambda: publisher.replies == replies, 5, f"{replies} replies parsed")
        return publisher
    finally:
        await publisher.close()
        await pubsub.aclose()
        await subscriber.aclose()


async def test_redis_is_told_not_to_answer_and_every_message_arrives(tmp_path):
    with RedisServer(free_port(), tmp_path) as redis_proc:
        publisher = await _publish_and_receive(redis_proc.url, replies=0)
    assert publisher.quiet
    assert publisher.replies == 0  # not one reply came back for 2,000 PUBLISH


async def test_a_server_refusing_client_reply_keeps_answering_and_nothing_is_lost(tmp_path):
    with RedisServer(free_port(), tmp_path, "--rename-command", "CLIENT", "") as redis_proc:
        publisher = await _publish_and_receive(redis_proc.url, replies=COUNT)
    assert not publisher.quiet


async def test_a_burst_goes_out_in_writes_of_at_most_max_batch(tmp_path):
    with RedisServer(free_port(), tmp_path) as redis_proc:
        publisher = await _publish_and_receive(redis_proc.url, replies=0, max_batch=16)
    assert publisher.writes == 140  # 7 per burst of 100: six of 16 and one of 4
