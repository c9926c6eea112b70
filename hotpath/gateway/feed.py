"""The Redis side of one gateway worker: stream channels followed by local demand,
messages routed to pending, live and paused clients, snapshot requests, the demand
this worker reports to the ingest, and the ingest's liveness.

Kinds on a stream channel (``hotpath.bus.channels``): S restarts the stream for live
and pending clients, U goes to live clients (a seq jump sends everyone back to
pending), R answers a snapshot request and goes to pending clients only, X (status)
goes to every client of the stream and does not advance its seq.

Anything else on our channels (a foreign publisher, a corrupted payload) is ignored and
counted in ``unexpected`` (the node's ``redis_unexpected``): clients never see it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import msgspec

from hotpath.bus import control
from hotpath.bus.channels import HEADER_SIZE, REPLY, SNAPSHOT, STATUS, UPDATE, Channels
from hotpath.bus.publisher import Publisher
from hotpath.bus.status import IngestStatus
from hotpath.bus.status import decoder as status_decoder
from hotpath.bus.subscriber import Subscriber
from hotpath.config import Config
from hotpath.gateway.fanout import Fanout
from hotpath.protocol.wsframe import text_frame as frame
from hotpath.gateway.listener import Client
from hotpath.gateway.registry import Registry, Slot
from hotpath.protocol import messages, streams

log = logging.getLogger("hotpath.gateway")

INGEST_FRESH = 3.0  # seconds: an ingest status older than this means the ingest is down
DELISTED = "delisted"
INGEST_DOWN = {"status": "stale", "reason": "ingest down"}
INGEST_RESTARTED = {"status": "stale", "reason": "ingest restarted; fresh snapshots follow"}


class _StatusData(msgspec.Struct):
    status: str = ""


class _StatusMessage(msgspec.Struct):
    data: _StatusData = msgspec.field(default_factory=_StatusData)


_stream_status_decoder = msgspec.json.Decoder(_StatusMessage)


class _Envelope(msgspec.Struct):
    """What every stream message body must be: the client envelope (data left unparsed)."""

    stream: str
    type: str
    data: msgspec.Raw
    seq: int


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_TYPE_OF_KIND = {UPDATE: "update", SNAPSHOT: "snapshot", REPLY: "snapshot", STATUS: "status"}


def well_formed(kind: int, seq: int, body: memoryview) -> bool:
    """Whether ``body`` is the client message the header announces: JSON with the type of
    ``kind`` and the same seq, valid UTF-8 (it goes out as a text frame). Once per Redis
    message, not per client: about 0.4 us for a ticker update."""
    expected = _TYPE_OF_KIND.get(kind)
    if expected is None:
        return False
    try:
        envelope = _envelope_decoder.decode(body)
        str(body, "utf-8")  # msgspec does not look inside the strings it skips
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return False
    return envelope.type == expected and envelope.seq == seq


class Feed:
    """Stream channels of one worker and what flows through them to its clients."""

    def __init__(self, config: Config, registry: Registry[Client], fanout: Fanout,
                 worker_id: str, name: str) -> None:
        self.config = config
        self.registry = registry
        self.fanout = fanout
        self.worker_id = worker_id
        self.channels = Channels(config.redis.namespace)
        self.prefix = config.stream_prefix
        self.source = config.source
        self.loop = asyncio.get_running_loop()
        self.symbols: frozenset[str] = frozenset()
        self.ingest: IngestStatus | None = None
        self.ingest_seen = 0.0
        self.stale_notified = False
        self.to_request: set[str] = set()
        self.request_scheduled = False
        self.demand_scheduled = False
        self.demand_sent_at = 0.0
        self.snapshot_requests = 0
        self.gaps = 0
        self.unexpected = 0
        self.unexpected_logged: set[str] = set()
        url = config.redis.url
        self.publisher = Publisher(url, f"{name}-publisher", on_connected=self._connected)
        self.subscriber = Subscriber(url, f"{name}-subscriber",
                                     on_message=self.on_message, on_batch_end=fanout.batch_end,
                                     on_connected=self._connected,
                                     on_disconnected=self._redis_lost,
                                     on_subscribed=self.on_subscribed)

    async def start(self, timeout: float) -> bool:
        await self.publisher.start()
        self.subscriber.subscribe([self.channels.status])
        await self.subscriber.start()
        return await self.subscriber.wait_connected(timeout)

    async def close(self) -> None:
        await self.subscriber.close()
        await self.publisher.close()

    @property
    def connected(self) -> bool:
        return self.subscriber.connected and self.publisher.connected

    # -- clients join and leave streams ---------------------------------------------------

    def join(self, client: Client, stream: streams.Stream) -> None:
        slot, created = self.registry.subscribe(client, stream, self.channels.stream(stream))
        if created:
            self.subscriber.subscribe([slot.channel])  # snapshot asked once Redis confirms
            self._schedule_demand()
        elif slot.subscribed and not slot.requested_at:
            self.request(slot)

    def resume(self, client: Client) -> None:
        """A slow client drained: its held-back streams wait for a fresh snapshot."""
        for slot in self.registry.resume(client):
            if slot.subscribed and not slot.requested_at:
                self.request(slot)

    def drop_idle(self, now: float) -> None:
        """Unsubscribe the channels nobody wanted for the whole linger."""
        idle = self.registry.idle_slots(now, self.config.gateway.stream_linger)
        if idle:
            self.subscriber.unsubscribe([s.channel for s in idle])
            for slot in idle:
                self.registry.drop_slot(slot)

    # -- the hot path -----------------------------------------------------------------------

    def on_message(self, channel: bytes, payload: bytes) -> None:
        slot = self.registry.slots.get(channel)
        if slot is None:
            if channel == self.channels.status:
                self._on_status(payload)
            else:
                self.unexpected += 1  # e.g. a stream unsubscribed a moment ago
            return
        if len(payload) <= HEADER_SIZE:
            self._ignore("a message too short for the header", channel, payload)
            return
        kind = payload[0]
        seq = int.from_bytes(payload[1:HEADER_SIZE], "big")
        body = memoryview(payload)[HEADER_SIZE:]
        if not well_formed(kind, seq, body):
            self._ignore("a message that is not a hotpath stream message", channel, payload)
            return
        slot.messages += 1
        if kind == UPDATE:
            last, slot.seq = slot.seq, seq
            if not slot.live:
                return
            if seq != last + 1:
                self._gap(slot, last, seq)
                return
            targets = slot.live
        elif kind == SNAPSHOT:
            slot.seq = seq
            slot.promote()
            targets = slot.live
        elif kind == REPLY:
            if not slot.pending:
                return
            if slot.live and slot.seq != seq:
                slot.demote()  # this worker missed messages: everyone restarts from here
            slot.seq = seq
            targets = slot.promote()
        else:  # STATUS
            self._on_stream_status(slot, seq, body)
            return
        if targets:
            self.fanout.queue(targets, frame(body))
            if kind != UPDATE and slot.latest_value:
                # A client that fell behind while it waited for this snapshot has its other
                # latest-value streams held back already: this one joins them (updates
                # wait, a fresh snapshot follows once it has drained).
                behind = [client for client in targets if client.behind_since]
                if behind:
                    self.registry.hold_back(slot, behind)

    def _ignore(self, what: str, channel: bytes, payload: bytes) -> None:
        """Not ours: counted, and logged once per kind of oddity."""
        self.unexpected += 1
        if what not in self.unexpected_logged:
            self.unexpected_logged.add(what)
            log.warning("ignoring %s on %s (%d bytes: %.60r); counting further ones in "
                        "redis_unexpected", what, channel.decode(errors="replace"),
                        len(payload), payload[:60])

    def _gap(self, slot: Slot[Client], last: int, seq: int) -> None:
        self.gaps += 1
        log.warning("%s: seq %d after %d on Redis; fresh snapshot for %d clients",
                    slot.stream.name, seq, last, len(slot.live))
        slot.demote()
        self.request(slot)

    def _on_stream_status(self, slot: Slot[Client], seq: int, body: memoryview) -> None:
        targets = slot.live | slot.pending | slot.paused
        if targets:
            self.fanout.queue(targets, frame(body))
        try:
            status = _stream_status_decoder.decode(body).data.status
        except msgspec.MsgspecError:
            status = ""
        if status == DELISTED:
            self._delist(slot, targets)
        elif slot.live and seq != slot.seq:
            # A status carries the stream's current seq: a difference means this worker
            # missed messages (the clients got the status, then get a fresh snapshot).
            self._gap(slot, slot.seq, seq)

    def _delist(self, slot: Slot[Client], clients: set[Client]) -> None:
        """The symbol is gone: its clients lose the stream (they got the status first)."""
        log.info("%s delisted: removed from %d clients", slot.stream.name, len(clients))
        now = time.monotonic()
        for client in clients:
            self.registry.unsubscribe(client, slot.stream.name, now)
        self.registry.drop_slot(slot)
        self.subscriber.unsubscribe([slot.channel])

    def on_subscribed(self, channel: bytes) -> None:
        slot = self.registry.slots.get(channel)
        if slot is None:
            return
        slot.subscribed = True
        if slot.live:
            slot.demote()  # after a Redis reconnect: updates may have been missed
        if slot.pending:
            self.request(slot)

    # -- requests to the ingest ---------------------------------------------------------------

    def request(self, slot: Slot[Client]) -> None:
        """Ask the ingest for a snapshot of ``slot``'s stream (coalesced per loop turn)."""
        self.snapshot_requests += 1
        slot.requested_at = time.monotonic()
        self.to_request.add(slot.stream.name)
        if not self.request_scheduled:
            self.request_scheduled = True
            self.loop.call_soon(self._send_requests)

    def _send_requests(self) -> None:
        self.request_scheduled = False
        names, self.to_request = sorted(self.to_request), set()
        if names:
            self.publisher.publish(self.channels.control, control.snapshot(names))

    def retry_snapshots(self, now: float) -> None:
        if not self.subscriber.connected:
            return
        timeout = self.config.gateway.snapshot_timeout
        for slot in self.registry.slots.values():
            if slot.pending and slot.requested_at and now - slot.requested_at > timeout:
                self.request(slot)

    def _schedule_demand(self) -> None:
        if not self.demand_scheduled:
            self.demand_scheduled = True
            self.loop.call_soon(self.send_demand)

    def send_demand(self) -> None:
        """Tell the ingest every stream this worker holds a slot for (lingering ones too)."""
        self.demand_scheduled = False
        self.demand_sent_at = time.monotonic()
        self.publisher.publish(self.channels.control,
                               control.demand(self.worker_id, sorted(self.registry.by_name),
                                              control.DEMAND_TTL))

    def refresh_demand(self, now: float) -> None:
        if now - self.demand_sent_at >= control.DEMAND_INTERVAL:
            self.send_demand()

    # -- Redis connection and the ingest's liveness ----------------------------------------------

    def _connected(self) -> None:
        """Redis is back (either connection): our demand, a status, lost requests again."""
        self.publisher.publish(self.channels.control, b'{"op":"status"}')
        if not self.publisher.connected:
            return
        self._schedule_demand()
        for slot in self.registry.slots.values():
            if slot.subscribed and slot.pending and slot.requested_at:
                self.request(slot)

    def _redis_lost(self) -> None:
        for slot in self.registry.slots.values():
            slot.subscribed = False
            slot.requested_at = 0.0

    def _on_status(self, payload: bytes) -> None:
        try:
            status = status_decoder.decode(payload)
        except msgspec.MsgspecError:
            self._ignore("a message that is not an ingest status", self.channels.status, payload)
            return
        previous = self.ingest
        if previous is None or status.symbols != previous.symbols:
            self.symbols = frozenset(status.symbols)
            log.info("instrument list: %d symbols", len(self.symbols))
        # pid and start time: ingests in two containers may well share a pid.
        restarted = previous is not None and (status.pid, status.started) != (
            previous.pid, previous.started)
        if previous is None or restarted:
            if previous is not None:
                log.info("ingest restarted (pid %d -> %d); sending our demand again",
                         previous.pid, status.pid)
            self._schedule_demand()
        if restarted and not self.stale_notified:
            # The new ingest starts with no state: until its snapshots arrive, say so.
            self._tell_stale(INGEST_RESTARTED)
        self.ingest = status
        self.ingest_seen = time.monotonic()
        self.stale_notified = False

    def ingest_age(self, now: float) -> float | None:
        return now - self.ingest_seen if self.ingest_seen else None

    def ingest_fresh(self, now: float) -> bool:
        age = self.ingest_age(now)
        return age is not None and age <= INGEST_FRESH

    def check_ingest(self, now: float) -> None:
        """Once per incident, tell every client whose stream went quiet that the ingest is down."""
        if self.stale_notified or not self.ingest_seen or self.ingest_fresh(now):
            return
        self.stale_notified = True
        age = self.ingest_age(now) or 0.0
        log.warning("no ingest status for %.1fs: telling the clients of %d streams", age,
                    len(self.registry.slots))
        self._tell_stale(INGEST_DOWN)

    def _tell_stale(self, data: dict[str, str]) -> None:
        """One status message to every client of every stream of this worker."""
        timestamp = int(time.time() * 1000)
        for slot in self.registry.slots.values():
            targets = slot.live | slot.pending | slot.paused
            if targets:
                body = messages.encode(streams.public_name(slot.stream, self.prefix), "status",
                                       data, timestamp, self.source, slot.seq)
                self.fanout.queue(targets, frame(body))
        self.fanout.flush()
