// The client's pure pieces (no server): decimal compare, stream names, state containers,
// and loading client.js as a classic script, as CommonJS and through client.mjs.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { test } from "node:test";
import vm from "node:vm";

import * as esm from "../../hotpath/static/client.mjs";
import { ROOT } from "./live.mjs";

const { CandleSeries, OrderBook, Ring, compareDecimal, parseStream, streamFromPublic } = esm;
const CLIENT_JS = path.join(ROOT, "hotpath/static/client.js");

test("compareDecimal compares decimal strings exactly", () => {
  const ascending = ["-10.5", "-6.69", "-0.0001", "0", "0.00000001", "0.45", "0.5", "2", "9.99",
    "10", "100.000001"];
  for (let i = 1; i < ascending.length; i++) {
    assert.equal(compareDecimal(ascending[i - 1], ascending[i]), -1, ascending.slice(i - 1, i + 1));
    assert.equal(compareDecimal(ascending[i], ascending[i - 1]), 1);
  }
  assert.equal(compareDecimal("1.50", "1.5"), 0);
  assert.equal(compareDecimal("-0", "0.000"), 0);
  assert.equal(compareDecimal("007", "7"), 0);
  // Beyond float precision: these are one unit apart in the 18th digit.
  assert.equal(compareDecimal("0.100000000000000001", "0.1"), 1);
  assert.equal(compareDecimal(3, "2.5"), 1, "numbers compare too");
});

test("parseStream canonicalises like the server", () => {
  assert.equal(parseStream("tickers.btcusdt").name, "ticker:BTCUSDT");
  assert.equal(parseStream("KLINE:1H:ethusdt").name, "kline:1h:ETHUSDT");
  assert.equal(parseStream("kline:1M:ETHUSDT").name, "kline:1M:ETHUSDT", "1M is a month");
  assert.equal(parseStream("orderbook:050:SOLUSDT").name, "orderbook:50:SOLUSDT");
  assert.throws(() => parseStream("candles:BTCUSDT"));
  assert.throws(() => parseStream("orderbook:BTCUSDT"));
  assert.equal(streamFromPublic("hotpath.futures.orderbook.50.BTCUSDT").name,
    "orderbook:50:BTCUSDT");
  assert.equal(streamFromPublic("mudrex.futures.kline.1h.ETHUSDT").name, "kline:1h:ETHUSDT");
  assert.equal(streamFromPublic("hotpath.futures.ticker.XRPUSDT").name, "ticker:XRPUSDT");
  assert.equal(streamFromPublic("nonsense"), null);
});

test("OrderBook applies levels, removes size 0 and keeps sorted views", () => {
  const book = new OrderBook();
  book.reset({ symbol: "X", bids: [["9.5", "1"], ["10", "2"]],
    asks: [["10.5", "1"], ["11", "3"]] });
  assert.deepEqual(book.bidLevels(), [["10", "2"], ["9.5", "1"]]);
  book.apply({ bids: [["10", "0"], ["9.75", "4"]], asks: [["10.25", "2"], ["11", "0.000"]] });
  assert.deepEqual(book.bidLevels(), [["9.75", "4"], ["9.5", "1"]]);
  assert.deepEqual(book.askLevels(), [["10.25", "2"], ["10.5", "1"]]);
  assert.deepEqual(book.bestBid(), ["9.75", "4"]);
  book.reset({ symbol: "X", bids: [], asks: [["12", "1"]] });
  assert.equal(book.bestBid(), undefined);
  assert.deepEqual(book.askLevels(), [["12", "1"]]);
});

test("CandleSeries replaces by start, keeps the last N, keeps closed candles on a snapshot", () => {
  const c = (start, close, confirm = false) => ({ start, close, confirm });
  const series = new CandleSeries(3);
  series.reset(c(60, "1"));
  series.apply(c(60, "2"));
  assert.deepEqual(series.candles, [c(60, "2")]);
  series.apply([c(60, "3", true), c(120, "4"), c(180, "5"), c(240, "6")]);
  assert.deepEqual(series.candles.map((x) => x.start), [120, 180, 240]);
  series.apply(c(180, "5b", true));
  assert.equal(series.candles[1].close, "5b");
  series.reset(c(300, "7")); // after a reconnect: 240 never closed for us, so it goes
  assert.deepEqual(series.candles.map((x) => x.start), [180, 300]);
  assert.equal(series.current.close, "7");
});

test("Ring is bounded, oldest first", () => {
  const ring = new Ring(3);
  ring.reset([1, 2]);
  ring.push([3, 4]);
  ring.push(5);
  assert.deepEqual(ring.items, [3, 4, 5]);
  assert.deepEqual(ring.latest(2), [5, 4]);
});

test("client.js works as a classic script, as CommonJS and as an ES module", () => {
  const sandbox = {};
  vm.runInNewContext(readFileSync(CLIENT_JS, "utf8"), sandbox);
  assert.equal(typeof sandbox.HotpathClient, "function", "a script defines a global");
  assert.equal(sandbox.Hotpath.HotpathClient, sandbox.HotpathClient);

  const cjs = createRequire(import.meta.url)(CLIENT_JS);
  assert.equal(typeof cjs.HotpathClient, "function");
  assert.equal(esm.HotpathClient, cjs.HotpathClient, "client.mjs re-exports the same class");
  assert.equal(esm.default, cjs.HotpathClient);
});

test("without any WebSocket implementation the constructor says so", () => {
  const sandbox = {};
  vm.runInNewContext(readFileSync(CLIENT_JS, "utf8"), sandbox);
  assert.throws(() => new sandbox.HotpathClient("ws://x/ws"), /no WebSocket implementation/);
});
