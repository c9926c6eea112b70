/**
 * @file hotpath client as an ES module: `import { HotpathClient } from "/client.mjs";`
 *
 * client.js is the implementation (a classic script that also works as CommonJS). In a
 * browser, importing it for its side effect defines globalThis.Hotpath; in Node it is
 * CommonJS and arrives as the default export. Either way the names are re-exported here.
 */
import * as loaded from "./client.js";

const api = loaded.default || globalThis.Hotpath;

export const {
  VERSION, HotpathClient, OrderBook, CandleSeries, Ring, parseStream, streamFromPublic,
  compareDecimal, KINDS, KLINE_INTERVALS,
} = api;
export default HotpathClient;
