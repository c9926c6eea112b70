"""Which clients want which streams, per worker. Pure: no I/O.

A client on a stream is either *pending* (waiting for its snapshot) or *live*
(has had its snapshot and receives updates). The ordering guarantee rests on this
split: updates go only to live clients, a requested snapshot only to pending ones,
and a stream-restarting snapshot to both.
"""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

from hotpath.protocol.streams import Stream

C = TypeVar("C", bound=Hashable)


class Slot(Generic[C]):
    """One stream's subscribers in this worker."""

    __slots__ = ("stream", "channel", "live", "pending", "seq", "requested_at", "empty_since",
                 "messages", "subscribed")

    def __init__(self, stream: Stream, channel: bytes) -> None:
        self.stream = stream
        self.channel = channel
        self.live: set[C] = set()
        self.pending: set[C] = set()
        self.seq = 0  # seq of the last message seen on the channel
        self.requested_at = 0.0  # when a snapshot was last asked for (0: not waiting)
        self.empty_since = 0.0
        self.messages = 0
        self.subscribed = False  # Redis confirmed the channel subscription

    def __len__(self) -> int:
        return len(self.live) + len(self.pending)

    def promote(self) -> set[C]:
        """Pending clients become live; returns them."""
        waiting, self.pending = self.pending, set()
        self.live |= waiting
        self.requested_at = 0.0
        return waiting

    def demote(self) -> None:
        """Every client waits for a fresh snapshot (after a gap or a reconnect)."""
        self.pending |= self.live
        self.live = set()
        self.seq = 0
        self.requested_at = 0.0


class Registry(Generic[C]):
    """stream -> clients and client -> streams, kept consistent."""

    def __init__(self) -> None:
        self.slots: dict[bytes, Slot[C]] = {}
        self.by_name: dict[str, Slot[C]] = {}
        self.clients: dict[C, set[str]] = {}

    def add_client(self, client: C) -> None:
        self.clients.setdefault(client, set())

    def streams_of(self, client: C) -> set[str]:
        return self.clients.get(client, set())

    def subscribe(self, client: C, stream: Stream, channel: bytes) -> tuple[Slot[C], bool]:
        """Add ``client`` to ``stream`` as pending. Returns (slot, slot_is_new)."""
        slot = self.by_name.get(stream.name)
        created = slot is None
        if slot is None:
            slot = Slot(stream, channel)
            self.slots[channel] = slot
            self.by_name[stream.name] = slot
        slot.pending.add(client)
        slot.empty_since = 0.0
        self.clients.setdefault(client, set()).add(stream.name)
        return slot, created

    def unsubscribe(self, client: C, name: str, now: float) -> Slot[C] | None:
        """Remove ``client`` from stream ``name``; returns the slot when it became empty."""
        names = self.clients.get(client)
        if names is not None:
            names.discard(name)
        slot = self.by_name.get(name)
        if slot is None:
            return None
        slot.live.discard(client)
        slot.pending.discard(client)
        if not slot.live and not slot.pending:
            slot.empty_since = now
            return slot
        return None

    def remove_client(self, client: C, now: float) -> list[Slot[C]]:
        """Forget ``client``; returns the slots it left empty."""
        emptied = []
        for name in list(self.clients.pop(client, ())):
            slot = self.unsubscribe(client, name, now)
            if slot is not None:
                emptied.append(slot)
        return emptied

    def drop_slot(self, slot: Slot[C]) -> None:
        self.slots.pop(slot.channel, None)
        self.by_name.pop(slot.stream.name, None)

    def idle_slots(self, now: float, linger: float) -> list[Slot[C]]:
        return [s for s in self.slots.values()
                if not s.live and not s.pending and s.empty_since and now - s.empty_since >= linger]
