// The JS client against a live `hotpath serve --upstream sim` (no mocked sockets).
// Run: node --experimental-websocket --test tests/js/   (PYTHON=... picks the interpreter)

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { HotpathClient, compareDecimal } from "../../hotpath/static/client.mjs";
import { Server, nextEvent, rawSnapshot, waitFor } from "./live.mjs";

if (typeof WebSocket !== "function") {
  throw new Error("this Node has no global WebSocket: Node 20/21 need --experimental-websocket");
}

const SERVER_LIMIT = 10; // --max-subscriptions of the test server
const FAST_RECONNECT = { baseDelay: 100, maxDelay: 1000 };

describe("HotpathClient against a live hotpath", () => {
  /** @type {Server} */
  let server;
  /** @type {HotpathClient[]} */
  let clients = [];

  before(async () => {
    server = await Server.start(0, ["--max-subscriptions", String(SERVER_LIMIT)]);
  });

  after(async () => {
    await server.stop();
  });

  afterEach(() => {
    clients.forEach((c) => c.close());
    clients = [];
  });

  /** @param {import("../../hotpath/static/client.mjs").ClientOptions} [options] */
  function connect(options = {}) {
    const client = new HotpathClient(server.wsUrl, { reconnect: FAST_RECONNECT, ...options });
    clients.push(client);
    return client;
  }

  /** Resolves once every stream has had its snapshot. */
  function snapshots(client, streams, timeout = 10000) {
    const missing = new Set(streams.filter((s) => client.get(s) === undefined));
    if (!missing.size) return Promise.resolve();
    return nextEvent(client, "data", (e) => {
      if (e.type === "snapshot") missing.delete(e.stream);
      return missing.size === 0;
    }, timeout);
  }

  /** Copies of a stream's state at every seq, to compare with an independent snapshot. */
  function recordStates(client, stream, copy) {
    const states = new Map();
    client.on("data", (e) => {
      if (e.stream === stream) states.set(e.seq, copy(e.state));
    });
    return states;
  }

  test("ticker: snapshot + updates equal the server's state at the same seq", async () => {
    const client = connect({ streams: ["ticker:BTCUSDT", "ticker:ethusdt"] });
    const states = recordStates(client, "ticker:BTCUSDT", (t) => structuredClone(t));
    await snapshots(client, ["ticker:BTCUSDT", "ticker:ETHUSDT"]);
    await nextEvent(client, "data", (e) => e.stream === "ticker:BTCUSDT" && e.type === "update");

    const reference = await rawSnapshot(server.wsUrl, "ticker:BTCUSDT");
    await waitFor(() => client.meta("ticker:BTCUSDT").seq >= reference.seq, "the client");
    assert.deepEqual(states.get(reference.seq), reference.data);

    const btc = client.get("ticker:BTCUSDT");
    assert.equal(btc.symbol, "BTCUSDT");
    assert.equal(typeof btc.bid.price, "string");
    assert.equal(typeof btc.ask.size, "string");
    assert.deepEqual(client.symbols().sort(), ["BTCUSDT", "ETHUSDT"]);
    assert.equal(client.get("tickers.btcusdt"), btc, "aliases and case reach the same state");
  });

  test("order book: merged levels equal the server's book at the same seq", async () => {
    const stream = "orderbook:50:BTCUSDT";
    const client = connect({ streams: [stream] });
    const levels = (book) => ({ bids: book.bidLevels().map((l) => [...l]),
      asks: book.askLevels().map((l) => [...l]) });
    const states = recordStates(client, stream, levels);
    await snapshots(client, [stream]);
    await nextEvent(client, "data", (e) => e.stream === stream && e.type === "update");

    const reference = await rawSnapshot(server.wsUrl, stream);
    await waitFor(() => client.meta(stream).seq >= reference.seq, "the client");
    assert.deepEqual(states.get(reference.seq),
      { bids: reference.data.bids, asks: reference.data.asks });

    const book = client.get(stream);
    const bids = book.bidLevels();
    const asks = book.askLevels();
    assert.ok(bids.length > 0 && bids.length <= 50 && asks.length > 0 && asks.length <= 50);
    for (let i = 1; i < bids.length; i++) assert.ok(compareDecimal(bids[i - 1][0], bids[i][0]) > 0);
    for (let i = 1; i < asks.length; i++) assert.ok(compareDecimal(asks[i - 1][0], asks[i][0]) < 0);
    assert.ok(compareDecimal(book.bestBid()[0], book.bestAsk()[0]) < 0, "book not crossed");
    assert.ok([...book.bids.values(), ...book.asks.values()].every((size) => Number(size) > 0));
  });

  test("kline, trade and liquidation state", async () => {
    const streams = ["kline:1m:BTCUSDT", "trade:BTCUSDT", "liquidation:BTCUSDT"];
    const client = connect({ streams, tradeLimit: 5 });
    await snapshots(client, streams);
    const candle = client.get("kline:1m:BTCUSDT").current;
    assert.equal(candle.interval, "1m");
    assert.equal(candle.end - candle.start, 59999);

    let seen = client.get("trade:BTCUSDT").items.length;
    const newest = [];
    client.on("data", (e) => {
      if (e.stream !== "trade:BTCUSDT" || e.type !== "update") return;
      seen += e.data.length;
      newest.push(...e.data);
    });
    await waitFor(() => seen > 5, "more than 5 trades", 15000);
    const ring = client.get("trade:BTCUSDT");
    assert.equal(ring.items.length, 5, "the ring keeps the last tradeLimit trades");
    assert.deepEqual(ring.items.slice(-1), newest.slice(-1));
    assert.equal(ring.latest(1)[0], ring.items[4]);
    assert.ok(Array.isArray(client.get("liquidation:BTCUSDT").items));
  });

  test("sorted() orders tickers numerically, by nested fields and by name", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"];
    const client = connect({ streams: symbols.map((s) => `ticker:${s}`) });
    await snapshots(client, symbols.map((s) => `ticker:${s}`));

    const gainers = client.sorted("change24hPercent", true).map((t) => Number(t.change24hPercent));
    assert.deepEqual(gainers, [...gainers].sort((a, b) => b - a));
    const prices = client.sorted("price").map((t) => Number(t.price));
    assert.deepEqual(prices, [...prices].sort((a, b) => a - b));
    const bids = client.sorted("bid.price", true).map((t) => Number(t.bid.price));
    assert.deepEqual(bids, [...bids].sort((a, b) => b - a));
    assert.deepEqual(client.sorted("symbol").map((t) => t.symbol), [...symbols].sort());
  });

  test("a seq gap resubscribes the stream and a fresh snapshot resets it", async () => {
    const stream = "orderbook:50:ETHUSDT";
    const client = connect({ streams: [stream] });
    await snapshots(client, [stream]);
    const { seq } = client.meta(stream);

    const gap = nextEvent(client, "status", (e) => e.stream === stream);
    const fresh = nextEvent(client, "data", (e) => e.stream === stream && e.type === "snapshot");
    client.handleMessage({ stream: "hotpath.futures.orderbook.50.ETHUSDT", type: "update",
      seq: seq + 5, timestamp: Date.now(), source: "hotpath",
      data: { bids: [["1.00", "7"]], asks: [] } });

    const status = await gap;
    assert.equal(status.status, "gap");
    assert.equal(status.local, true);
    assert.equal(client.meta(stream).stale, true);
    assert.equal(client.get(stream).bids.has("1.00"), false, "the update after a gap is dropped");

    await fresh;
    assert.equal(client.meta(stream).stale, false);
    const next = await nextEvent(client, "data", (e) => e.stream === stream && e.type === "update");
    assert.equal(next.seq, client.meta(stream).seq);
  });

  test("status messages are surfaced and keep the seq", async () => {
    const stream = "ticker:SOLUSDT";
    const client = connect({ streams: [stream] });
    await snapshots(client, [stream]);
    const { seq } = client.meta(stream);
    const status = nextEvent(client, "status", (e) => e.stream === stream);
    client.handleMessage({ stream: "hotpath.futures.ticker.SOLUSDT", type: "status", seq,
      timestamp: Date.now(), source: "hotpath",
      data: { status: "stale", reason: "upstream connection lost" } });
    const event = await status;
    assert.equal(event.status, "stale");
    assert.equal(event.local, false);
    assert.equal(client.meta(stream).stale, true);
    // The next update is seq + 1 and applies: a status does not advance the seq.
    const next = await nextEvent(client, "data", (e) => e.stream === stream);
    assert.equal(next.type, "update");
    assert.equal(next.seq, seq + 1);
  });

  test("streams beyond maxSubscriptions go on more connections", async () => {
    const streams = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "ADAUSDT", "DOTUSDT"]
      .map((s) => `ticker:${s}`);
    const client = connect({ streams, maxSubscriptions: 3 });
    await snapshots(client, streams);
    assert.deepEqual(client.connections(), { open: 3, total: 3 });
    assert.ok(client.connected);

    client.unsubscribe(streams[6]); // the third connection carries nothing now: closed
    assert.equal(client.connections().total, 2);
    assert.equal(client.get(streams[6]), undefined);
  });

  test("a lower server limit moves the refused streams to another connection", async () => {
    const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"];
    const streams = symbols.flatMap((s) => [`ticker:${s}`, `trade:${s}`, `liquidation:${s}`]);
    assert.ok(streams.length > SERVER_LIMIT);
    const client = connect({ streams }); // assumes 100 per connection; the server says 10
    await snapshots(client, streams);
    assert.equal(client.connections().total, 2);
  });

  test("sends a keep-alive ping every pingInterval", async () => {
    const sent = [];
    class Recording extends WebSocket {
      send(data) {
        sent.push(JSON.parse(data));
        super.send(data);
      }
    }
    const client = connect({ streams: ["ticker:BTCUSDT"], pingInterval: 150,
      WebSocket: Recording });
    await waitFor(() => sent.filter((m) => m.op === "ping").length >= 3, "three pings", 5000);
    assert.ok(client.connected, "pongs keep the connection alive");
  });

  test("rejected streams are reported and dropped", async () => {
    const client = connect({ streams: ["ticker:NOSUCHUSDT", "ticker:BTCUSDT"] });
    const error = await nextEvent(client, "error", (e) => e.stream === "ticker:NOSUCHUSDT");
    assert.match(error.message, /Unknown symbol/);
    await snapshots(client, ["ticker:BTCUSDT"]);
    assert.equal(client.meta("ticker:NOSUCHUSDT"), undefined);
  });

  test("reconnects and resubscribes by itself after the server restarts", async () => {
    const streams = ["ticker:BTCUSDT", "orderbook:50:BTCUSDT"];
    const client = connect({ streams });
    await snapshots(client, streams);

    const down = nextEvent(client, "disconnected", () => true, 15000);
    await server.stop();
    const event = await down;
    assert.notEqual(event.reconnectIn, null);
    assert.equal(client.meta("ticker:BTCUSDT").stale, true);

    const back = nextEvent(client, "connected", () => true, 30000);
    const fresh = new Set();
    const resubscribed = nextEvent(client, "data", (e) => {
      if (e.type === "snapshot") fresh.add(e.stream);
      return fresh.size === streams.length;
    }, 30000);
    await server.start(); // same port
    await back;
    await resubscribed;
    assert.equal(client.meta("ticker:BTCUSDT").stale, false);
    await nextEvent(client, "data", (e) => e.stream === streams[1] && e.type === "update");
  });

  test("close() stops for good", async () => {
    const client = connect({ streams: ["ticker:BTCUSDT"] });
    await snapshots(client, ["ticker:BTCUSDT"]);
    const closed = nextEvent(client, "disconnected");
    client.close();
    const event = await closed;
    assert.equal(event.reconnectIn, null);
    assert.equal(client.connected, false);
  });
});
