import hiredis
import msgspec
import pytest

from hotpath.bus import channels
from hotpath.protocol import messages
from hotpath.bus.resp import Address, command, publish_command
from hotpath.protocol.streams import Stream


def test_pack_round_trip():
    payload = channels.pack(channels.UPDATE, 2**40 + 5, b'{"x":1}')
    assert channels.unpack_header(payload) == (channels.UPDATE, 2**40 + 5)
    assert payload[channels.HEADER_SIZE:] == b'{"x":1}'


@pytest.mark.parametrize("payload", [b"", b"U12345678", b"Z" + bytes(8) + b"{}"])
def test_unpack_rejects_foreign_payloads(payload):
    with pytest.raises(ValueError):
        channels.unpack_header(payload)


def test_channel_names_come_from_validated_streams():
    ch = channels.Channels("hp")
    assert ch.stream(Stream("kline", "BTCUSDT", "1h")) == b"hp:s:kline:1h:BTCUSDT"
    assert ch.control == b"hp:ctl" and ch.status == b"hp:status"


def test_resp_encoding_parses_back():
    reader = hiredis.Reader()
    reader.feed(command(b"SUBSCRIBE", "a", 5) + publish_command(b"ch", b"\r\n\x00bin"))
    assert reader.gets() == [b"SUBSCRIBE", b"a", b"5"]
    assert reader.gets() == [b"PUBLISH", b"ch", b"\r\n\x00bin"]


@pytest.mark.parametrize("url, expect", [
    ("redis://localhost:6380/2", ("localhost", 6380, 2, "", False)),
    ("rediss://:s3cret@example:6379", ("example", 6379, 0, "s3cret", True)),
    ("unix:///tmp/r.sock?db=3", ("127.0.0.1", 6379, 3, "", False)),
])
def test_address_parsing(url, expect):
    a = Address(url)
    assert (a.host, a.port, a.db, a.password, a.tls) == expect


def test_unix_address_path_and_bad_scheme():
    assert Address("unix:///tmp/r.sock").path == "/tmp/r.sock"
    with pytest.raises(ValueError):
        Address("http://x")


@pytest.mark.parametrize("kind, type_", [(channels.UPDATE, "update"),
                                         (channels.SNAPSHOT, "snapshot"),
                                         (channels.REPLY, "snapshot")])
@pytest.mark.parametrize("seq", [1, 255, 2**40 + 7])
def test_stream_commands_publish_the_packed_client_message(kind, type_, seq):
    """The prebuilt command is byte for byte the general path's."""
    channel = channels.Channels("ns").stream(Stream("ticker", "BTCUSDT"))
    commands = channels.StreamCommands(channel, "hp.ticker.BTCUSDT", 'src "q"\u00e9')
    data = {"price": "1.50", "bid": {"price": "1.49", "size": "0.001"}}
    built = commands.build(kind, msgspec.json.encode(data), 1700000000123, seq)
    body = messages.encode("hp.ticker.BTCUSDT", type_, data, 1700000000123,
                           'src "q"\u00e9', seq)
    assert built == publish_command(channel, channels.pack(kind, seq, body))
    reader = hiredis.Reader()
    reader.feed(built)
    name, got_channel, payload = reader.gets()
    assert (name, got_channel) == (b"PUBLISH", channel)
    assert channels.unpack_header(payload) == (kind, seq)
    message = messages.client_message_decoder.decode(payload[channels.HEADER_SIZE:])
    assert (message.type, message.data, message.seq) == (type_, data, seq)
