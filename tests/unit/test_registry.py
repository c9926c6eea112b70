"""The registry's pending/live/paused split and the fan-out's write coalescing. Pure."""

from hotpath.gateway.fanout import SLOW_CONSUMER, Fanout
from hotpath.gateway.registry import Registry
from hotpath.protocol.streams import Stream

TICKER = Stream("ticker", "BTCUSDT")
TRADE = Stream("trade", "BTCUSDT")


class Sink:
    """A client as fan-out sees it; ``buffered`` is what the kernel would not take.
    Past the soft bound (``behind``) the real transport has paused it."""

    def __init__(self, buffered: int = 0, behind: bool = False) -> None:
        self.out: list[bytes] = []
        self.writes: list[bytes] = []  # what each write() was given
        self.buffered = buffered
        self.closed: tuple[int, str] | None = None
        self.closing = False
        self.behind_since = 1.0 if behind else 0.0
        self.raw = self

    def write(self, data: bytes) -> None:  # the transport: one write
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.closing = True


def test_subscribe_is_pending_until_a_snapshot_promotes_it():
    reg: Registry[str] = Registry()
    slot, created = reg.subscribe("a", TICKER, b"ch")
    assert created and slot.pending == {"a"} and not slot.live
    again, created = reg.subscribe("b", TICKER, b"ch")
    assert again is slot and not created
    assert slot.promote() == {"a", "b"} and slot.live == {"a", "b"} and not slot.pending
    slot.seq = 7
    slot.demote()
    assert slot.pending == {"a", "b"} and not slot.live and slot.seq == 0


def test_pause_holds_back_latest_value_streams_only():
    reg: Registry[str] = Registry()
    ticker, _ = reg.subscribe("a", TICKER, b"t")
    trade, _ = reg.subscribe("a", TRADE, b"x")
    ticker.promote()
    trade.promote()
    assert reg.pause("a") == 1
    assert ticker.paused == {"a"} and not ticker.live
    assert trade.live == {"a"}  # events keep queuing (up to the hard bound)
    assert reg.resume("a") == [ticker]
    assert ticker.pending == {"a"} and not ticker.paused  # waits for a fresh snapshot


def test_leaving_marks_the_slot_empty_and_it_lingers():
    reg: Registry[str] = Registry()
    slot, _ = reg.subscribe("a", TICKER, b"t")
    reg.pause("a")
    assert reg.unsubscribe("a", TICKER.name, now=10.0) is slot
    assert len(slot) == 0 and slot.empty_since == 10.0
    assert reg.idle_slots(now=14.9, linger=5.0) == []
    assert reg.idle_slots(now=15.0, linger=5.0) == [slot]
    reg.subscribe("b", TICKER, b"t")  # wanted again within the linger
    assert slot.empty_since == 0.0 and reg.idle_slots(now=99.0, linger=5.0) == []


def test_remove_client_returns_the_slots_it_emptied():
    reg: Registry[str] = Registry()
    mine, _ = reg.subscribe("a", TICKER, b"t")
    shared, _ = reg.subscribe("a", TRADE, b"x")
    reg.subscribe("b", TRADE, b"x")
    mine.promote()
    assert reg.remove_client("a", now=1.0) == [mine]
    assert "a" not in reg.clients and shared.pending == {"b"}


def test_fanout_writes_each_clients_batch_once():
    fan = Fanout(hard_limit=1000)
    a, b = Sink(), Sink()
    fan.queue([a, b], b"one")
    fan.queue([a], b"two")
    assert a.writes == [] and fan.frames_out == 3
    fan.flush()
    assert a.writes == [b"onetwo"] and b.writes == [b"one"]  # one write each
    assert a.out == [] and fan.writes == 2
    fan.flush()
    assert len(a.writes) == 1  # nothing queued, nothing written


def test_fanout_closes_a_client_past_the_hard_bound():
    fan = Fanout(hard_limit=1000)
    slow, fine = Sink(buffered=1001, behind=True), Sink(buffered=1000, behind=True)
    fan.queue([slow, fine], b"x")
    fan.flush()
    assert slow.closed == (SLOW_CONSUMER, "slow consumer") and fine.closed is None
    assert fan.slow_closed == 1
    fan.queue([fine], b"y")  # several frames in one write: checked the same way
    fan.queue([slow, fine], b"z")
    fine.buffered = 1001
    fan.flush()
    assert fine.closed == (SLOW_CONSUMER, "slow consumer") and fan.slow_closed == 2


def test_a_lone_message_goes_straight_to_each_socket_and_keeps_order_with_a_second():
    fan = Fanout(hard_limit=1000)
    a, b, gone = Sink(), Sink(), Sink()
    gone.closing = True
    targets = {a, b, gone}
    fan.queue(targets, b"one")
    targets.discard(b)  # the set changes before the flush: what was queued still goes
    fan.flush()
    assert a.writes == [b"one"] and b.writes == [b"one"] and gone.writes == []
    fan.queue([a, b], b"two")
    fan.queue([a], b"three")
    fan.flush()
    assert a.writes[1:] == [b"twothree"] and b.writes[1:] == [b"two"]
    assert fan.frames_out == 6 and fan.writes == 5
