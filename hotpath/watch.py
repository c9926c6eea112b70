"""``hotpath watch STREAM...``: subscribe to a running hotpath and print what arrives.

A quick look at live data from a terminal, without any other tool:

    hotpath watch ticker:BTCUSDT ticker:ETHUSDT --url ws://localhost:8080/ws

A node with authentication on (``--auth``) needs ``--token`` (or ``--token-file``):
it is sent as the first message, ``{"op":"auth","token":...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import picows
import uvloop


class _Printer(picows.WSListener):  # type: ignore[misc]
    def __init__(self, raw: bool, done: asyncio.Event) -> None:
        self.raw = raw
        self.done = done

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            print(f"closed by server: {frame.get_close_code().value} {frame.get_close_reason()}",
                  file=sys.stderr)
            transport.disconnect()
            return
        if frame.msg_type != picows.WSMsgType.TEXT:
            return
        text = frame.get_payload_as_utf8_text()
        if self.raw:
            print(text, flush=True)
            return
        msg = json.loads(text)
        if "stream" in msg:
            data = json.dumps(msg["data"], separators=(",", ":"))
            print(f"{msg['seq']:>8} {msg['type']:<8} {msg['stream']} {data}", flush=True)
        else:
            print(text, flush=True)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.done.set()


async def _watch(url: str, streams: list[str], raw: bool, seconds: float, token: str) -> int:
    done = asyncio.Event()
    try:
        transport, _ = await picows.ws_connect(lambda: _Printer(raw, done), url)
    except (OSError, picows.WSError) as exc:
        print(f"hotpath watch: cannot connect to {url}: {exc}", file=sys.stderr)
        return 1
    if token:
        transport.send(picows.WSMsgType.TEXT, json.dumps({"op": "auth", "token": token}).encode())
    transport.send(picows.WSMsgType.TEXT,
                   json.dumps({"op": "subscribe", "args": streams}).encode())
    try:
        await asyncio.wait_for(done.wait(), seconds if seconds > 0 else None)
    except asyncio.TimeoutError:
        transport.send_close(picows.WSCloseCode.OK)
        transport.disconnect()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hotpath watch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("streams", nargs="+", help="stream names, e.g. ticker:BTCUSDT")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws", help="hotpath WebSocket URL")
    parser.add_argument("--raw", action="store_true", help="print each message as received")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    parser.add_argument("--token", default="", help="auth token for a node with --auth on")
    parser.add_argument("--token-file", default="", help="read the token from this file")
    args = parser.parse_args(argv)
    token = args.token
    if args.token_file:
        try:
            with open(args.token_file) as f:
                token = f.read().strip()
        except OSError as exc:
            parser.error(f"cannot read --token-file: {exc}")
    try:
        return uvloop.run(_watch(args.url, args.streams, args.raw, args.seconds, token))
    except KeyboardInterrupt:
        return 0
