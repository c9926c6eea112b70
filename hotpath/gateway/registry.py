"""Which clients want which streams, per worker. Pure: no I/O.

A client on a stream is *pending* (waiting for its snapshot), *live* (has had its
snapshot and receives updates) or *paused* (a slow reader held back on a
latest-value stream; it gets a fresh snapshot once it has drained). The ordering
guarantee rests on this split: updates go only to live clients, a requested snapshot
only to pending ones, and a stream-restarting snapshot to live and pending ones.
"""

from __future__ import annotations

from typing import Generic, Hashable, TypeVar

from hotpath.protocol.streams import LATEST_VALUE_KINDS, Stream

C = TypeVar("C", bound=Hashable)


class Slot(Generic[C]):
    """One stream's subscribers in this worker."""

    __slots__ = ("stream", "channel", "live", "pending", "paused", "seq", "requested_at",
                 "empty_since", "messages", "subscribed", "latest_value")

    def __init__(self, stream: Stream, channel: bytes) -> None:
        self.stream = stream
        self.channel = channel
        self.live: set[C] = set()
        self.pending: set[C] = set()
        self.paused: set[C] = set()
        self.latest_value = stream.kind in LATEST_VALUE_KINDS
        self.seq = 0  # seq of the last message seen on the channel
        self.requested_at = 0.0  # when a snapshot was last asked for (0: not waiting)
        self.empty_since = 0.0
        self.messages = 0
        self.subscribed = False  # Redis confirmed the channel subscription

    def __len__(self) -> int:
        return len(self.live) + len(self.pending) + len(self.paused)

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
        slot.paused.discard(client)
        if not slot:
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

    def pause(self, client: C) -> int:
        """Hold ``client`` back on its latest-value streams; returns how many."""
        held = 0
        for name in self.clients.get(client, ()):
            slot = self.by_name[name]
            if slot.latest_value and client in slot.live:
                slot.live.discard(client)
                slot.paused.add(client)
                held += 1
        return held

    def hold_back(self, slot: Slot[C], clients: list[C]) -> None:
        """``clients``, live on ``slot``, are behind: paused like their other streams."""
        for client in clients:
            slot.live.discard(client)
            slot.paused.add(client)

    def resume(self, client: C) -> list[Slot[C]]:
        """Paused streams of ``client`` wait for a fresh snapshot; returns their slots."""
        slots = []
        for name in self.clients.get(client, ()):
            slot = self.by_name[name]
            if client in slot.paused:
                slot.paused.discard(client)
                slot.pending.add(client)
                slots.append(slot)
        return slots

    def drop_slot(self, slot: Slot[C]) -> None:
        self.slots.pop(slot.channel, None)
        self.by_name.pop(slot.stream.name, None)

    def idle_slots(self, now: float, linger: float) -> list[Slot[C]]:
        return [s for s in self.slots.values()
                if not s and s.empty_since and now - s.empty_since >= linger]
