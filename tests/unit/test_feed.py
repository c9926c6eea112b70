"""Routing of Redis stream messages to pending, live and paused clients (no network:
the feed's Redis connections are never started, so requests are only recorded)."""

import asyncio
import json

import hiredis
import msgspec
import pytest

from hotpath.bus import channels, control
from hotpath.bus.channels import REPLY, SNAPSHOT, STATUS, UPDATE, pack
from hotpath.bus.status import IngestStatus
from hotpath.bus.status import encoder as status_encoder
from hotpath.config import Config, RedisConfig, SchemaConfig
from hotpath.gateway.fanout import Fanout
from hotpath.gateway.feed import Feed
from hotpath.gateway.registry import Registry
from hotpath.protocol import messages
from hotpath.protocol.streams import Stream
from tests.helpers import server_frames
from tests.unit.test_registry import Sink

TICKER = Stream("ticker", "BTCUSDT")


def _body(type_: str, seq: int, data: object = None) -> bytes:
    return messages.encode("hotpath.futures.ticker.BTCUSDT", type_, data or {"price": "1"}, 1,
                           "hotpath", seq)


def _received(sink: Sink) -> list[tuple[str, int, object]]:
    msgs = [msg for data in sink.writes for msg in server_frames(data)]
    return [(m["type"], m["seq"], m["data"]) for m in msgs]


@pytest.fixture
async def feed():
    config = Config(redis=RedisConfig(url="redis://127.0.0.1:1/0", namespace="ns"),
                    schema=SchemaConfig(stream_prefix="acme.perp", source="acme"))
    f = Feed(config, Registry(), Fanout(1 << 20), "node/0", "test")
    f.requested = []
    f.request = lambda slot: (f.requested.append(slot.stream.name),  # type: ignore[method-assign]
                              setattr(slot, "requested_at", 1.0))
    return f


def _deliver(feed: Feed, kind: int, seq: int, body: bytes) -> None:
    feed.on_message(b"ns:s:ticker:BTCUSDT", pack(kind, seq, body))
    feed.fanout.flush()


async def test_snapshot_then_updates_and_a_gap_restarts_everyone(feed):
    a, b = Sink(), Sink()
    feed.join(a, TICKER)
    slot = feed.registry.by_name[TICKER.name]
    feed.on_subscribed(slot.channel)
    assert feed.requested == [TICKER.name]
    _deliver(feed, UPDATE, 4, _body("update", 4))  # nobody is live yet
    _deliver(feed, REPLY, 4, _body("snapshot", 4))
    feed.join(b, TICKER)  # pending while a is live
    _deliver(feed, UPDATE, 5, _body("update", 5))
    _deliver(feed, UPDATE, 7, _body("update", 7))  # 6 went missing on Redis
    assert [m[:2] for m in _received(a)] == [("snapshot", 4), ("update", 5)]
    assert _received(b) == []
    assert slot.pending == {a, b} and feed.gaps == 1
    _deliver(feed, REPLY, 7, _body("snapshot", 7))
    _deliver(feed, UPDATE, 8, _body("update", 8))
    assert [m[:2] for m in _received(a)][2:] == [("snapshot", 7), ("update", 8)]
    assert [m[:2] for m in _received(b)] == [("snapshot", 7), ("update", 8)]


async def test_status_reaches_live_pending_and_paused_and_keeps_the_seq(feed):
    live, pending, paused = Sink(), Sink(), Sink()
    for c in (live, paused):
        feed.join(c, TICKER)
    slot = feed.registry.by_name[TICKER.name]
    _deliver(feed, SNAPSHOT, 3, _body("snapshot", 3))
    feed.registry.pause(paused)
    feed.join(pending, TICKER)
    _deliver(feed, STATUS, 3, _body("status", 3, {"status": "stale", "reason": "upstream"}))
    for c in (live, pending, paused):
        assert _received(c)[-1] == ("status", 3, {"status": "stale", "reason": "upstream"})
    assert slot.seq == 3 and slot.live == {live} and feed.gaps == 0
    _deliver(feed, UPDATE, 4, _body("update", 4))
    assert [m[:2] for m in _received(live)] == [("snapshot", 3), ("status", 3), ("update", 4)]


async def test_status_with_another_seq_means_messages_were_missed(feed):
    a = Sink()
    feed.join(a, TICKER)
    _deliver(feed, SNAPSHOT, 3, _body("snapshot", 3))
    _deliver(feed, STATUS, 5, _body("status", 5, {"status": "resync", "reason": "x"}))
    slot = feed.registry.by_name[TICKER.name]
    assert slot.pending == {a} and feed.gaps == 1 and feed.requested == [TICKER.name]


async def test_delisted_status_is_forwarded_then_the_stream_is_gone(feed):
    a, b = Sink(), Sink()
    feed.join(a, TICKER)
    feed.join(b, TICKER)
    slot = feed.registry.by_name[TICKER.name]
    _deliver(feed, SNAPSHOT, 3, _body("snapshot", 3))
    _deliver(feed, STATUS, 3, _body("status", 3, {"status": "delisted", "reason": "gone"}))
    assert _received(b)[-1][0:2] == ("status", 3)
    assert feed.registry.streams_of(a) == set() and feed.registry.slots == {}
    assert slot.channel not in feed.subscriber.wanted  # freed at once, no linger
    feed.on_message(slot.channel, pack(UPDATE, 4, _body("update", 4)))
    assert feed.unexpected == 1


async def test_ingest_down_tells_every_client_once(feed):
    a, b = Sink(), Sink()
    feed.join(a, TICKER)
    _deliver(feed, SNAPSHOT, 9, _body("snapshot", 9))
    feed.join(b, TICKER)
    feed.ingest_seen = 100.0
    feed.check_ingest(now=102.0)
    assert _received(a) == [("snapshot", 9, {"price": "1"})]
    feed.check_ingest(now=104.0)
    feed.check_ingest(now=105.0)
    for c in (a, b):
        kind, seq, data = _received(c)[-1]
        assert (kind, seq, data) == ("status", 9, {"status": "stale", "reason": "ingest down"})
        assert len([m for m in _received(c) if m[0] == "status"]) == 1
    last = server_frames(a.writes[-1])[0]
    assert (last["stream"], last["source"]) == ("acme.perp.ticker.BTCUSDT", "acme")


def test_stream_status_kind_is_a_stream_message():
    assert channels.unpack_header(pack(STATUS, 3, b"{}")) == (STATUS, 3)


class _Wire:
    """Stands in for the publisher's Redis connection: keeps every PUBLISH."""

    def __init__(self) -> None:
        self.transport = self
        self.reader = hiredis.Reader()
        self.published: list[tuple[bytes, dict]] = []

    def write(self, data: bytes) -> None:
        self.reader.feed(data)
        while (cmd := self.reader.gets()) is not False:
            assert cmd[0] == b"PUBLISH"
            self.published.append((cmd[1], json.loads(cmd[2])))

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.fixture
async def wired():
    config = Config(redis=RedisConfig(url="redis://127.0.0.1:1/0", namespace="ns"))
    f = Feed(config, Registry(), Fanout(1 << 20), "node/3", "test")
    f.publisher.protocol = _Wire()
    return f


def _sent(feed: Feed, op: str) -> list[dict]:
    return [m for ch, m in feed.publisher.protocol.published if ch == b"ns:ctl" and m["op"] == op]


async def _turn() -> None:
    for _ in range(3):  # demand and requests go out on the next loop turns
        await asyncio.sleep(0)


async def test_demand_is_coalesced_and_sent_again_after_a_reconnect_or_a_new_ingest(wired):
    a = Sink()
    wired.join(a, TICKER)
    wired.join(a, Stream("trade", "ETHUSDT"))
    await _turn()
    assert _sent(wired, "demand") == [{"op": "demand", "worker": "node/3", "ttl": 15.0,
                                       "streams": ["ticker:BTCUSDT", "trade:ETHUSDT"]}]
    wired.join(Sink(), TICKER)  # not new: no demand
    await _turn()
    assert len(_sent(wired, "demand")) == 1
    slot = wired.registry.by_name[TICKER.name]
    wired.on_subscribed(slot.channel)
    await _turn()
    wired._redis_lost()
    wired.on_subscribed(slot.channel)
    wired._connected()
    await _turn()
    assert len(_sent(wired, "demand")) == 2 and len(_sent(wired, "status")) == 1
    status = IngestStatus(1, 77, 0.0, True, "u", [], ["BTCUSDT"], {}, 0, 0)
    wired.on_message(b"ns:status", status_encoder.encode(status))
    wired.on_message(b"ns:status", status_encoder.encode(status))
    await _turn()
    assert len(_sent(wired, "demand")) == 3  # first status seen
    wired.on_message(b"ns:status", status_encoder.encode(
        msgspec.structs.replace(status, pid=78)))
    await _turn()
    assert len(_sent(wired, "demand")) == 4  # the ingest restarted
    assert _sent(wired, "snapshot")[-1]["streams"] == ["ticker:BTCUSDT"]


async def test_demand_is_refreshed_even_when_empty(wired):
    wired.refresh_demand(now=wired.demand_sent_at + control.DEMAND_INTERVAL)
    await _turn()
    assert _sent(wired, "demand")[-1]["streams"] == []


async def test_a_client_behind_when_its_snapshot_comes_is_held_back_until_it_drains(feed):
    """It fell behind (its other streams paused) while this stream's snapshot was on its
    way: it gets the snapshot, then no updates, then a fresh snapshot once drained."""
    fine, behind = Sink(), Sink(behind=True)
    feed.join(fine, TICKER)
    feed.join(behind, TICKER)
    slot = feed.registry.by_name[TICKER.name]
    feed.on_subscribed(slot.channel)
    _deliver(feed, REPLY, 4, _body("snapshot", 4))
    assert slot.live == {fine} and slot.paused == {behind}
    _deliver(feed, UPDATE, 5, _body("update", 5))
    assert [m[:2] for m in _received(behind)] == [("snapshot", 4)]
    assert [m[:2] for m in _received(fine)] == [("snapshot", 4), ("update", 5)]
    behind.behind_since = 0.0  # drained
    feed.requested.clear()
    feed.resume(behind)
    assert slot.pending == {behind} and feed.requested == [TICKER.name]
    _deliver(feed, REPLY, 5, _body("snapshot", 5))
    _deliver(feed, UPDATE, 6, _body("update", 6))
    assert [m[:2] for m in _received(behind)] == [("snapshot", 4), ("snapshot", 5),
                                                  ("update", 6)]
