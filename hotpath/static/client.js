/**
 * @file hotpath JavaScript client: one object that keeps live market state for a set of
 * hotpath streams (tickers, order books, klines, trades, liquidations).
 *
 *   as a script:     <script src="/client.js"></script>  ->  window.HotpathClient
 *   as an ES module: import { HotpathClient } from "/client.mjs";
 *   in Node (CJS):   const { HotpathClient } = require("./client.js");
 *
 * It connects to ws://HOST:PORT/ws, subscribes, applies each stream's snapshot and its
 * updates in seq order, resubscribes a stream whose seq jumps (fresh snapshot), pings
 * every 20 s, reconnects with exponential backoff and full jitter and resubscribes
 * everything. Streams beyond the server's per-connection limit (max_subscriptions, 100)
 * go on extra connections. No dependencies, no build step; ES2020.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module !== null && module.exports) {
    module.exports = api; // CommonJS (Node); client.mjs re-exports it for ES modules
  } else {
    root.Hotpath = api;
    root.HotpathClient = api.HotpathClient;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const VERSION = "0.1.0";
  const KINDS = ["ticker", "kline", "trade", "orderbook", "liquidation"];
  const KLINE_INTERVALS = ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h",
    "1d", "1w", "1M"];
  const RETRYABLE = new Set([429, 503]); // rate limited, instrument list not loaded yet
  const TOO_MANY = "TOO_MANY_SUBSCRIPTIONS";

  /**
   * @typedef {object} ReconnectOptions
   * @property {number} [baseDelay=500] first backoff step, ms
   * @property {number} [maxDelay=30000] cap of the backoff, ms
   *
   * @typedef {object} ClientOptions
   * @property {string[]} [streams] streams to subscribe at once
   * @property {string | (() => string)} [token] for a node with authentication on: sent as
   *   the first message of every connection (a function is called each time, so it can
   *   hand out a fresh JWT); a refused token is an `error` event with code 401
   * @property {boolean | ReconnectOptions} [reconnect=true] false: never reconnect
   * @property {number} [pingInterval=20000] keep-alive ping period, ms
   * @property {number} [maxSubscriptions=100] streams per connection (server limit)
   * @property {number} [retryDelay=1000] wait before retrying a subscribe refused with 429/503
   * @property {number} [klineLimit=500] candles kept per kline stream
   * @property {number} [tradeLimit=200] trades kept per trade stream
   * @property {number} [liquidationLimit=100] liquidations kept per liquidation stream
   * @property {boolean} [autoConnect=true] connect from the constructor
   * @property {typeof WebSocket} [WebSocket] WebSocket implementation (default: the global)
   *
   * @typedef {{name: string, kind: string, symbol: string, param: string}} StreamId
   */
  const DEFAULTS = {
    streams: [],
    pingInterval: 20000,
    maxSubscriptions: 100,
    retryDelay: 1000,
    klineLimit: 500,
    tradeLimit: 200,
    liquidationLimit: 100,
    autoConnect: true,
  };
  const RECONNECT = { baseDelay: 500, maxDelay: 30000 };

  // -- stream names ---------------------------------------------------------------------

  /** @returns {StreamId} */
  function makeId(kind, symbol, param) {
    const name = param ? `${kind}:${param}:${symbol}` : `${kind}:${symbol}`;
    return { name, kind, symbol, param };
  }

  /**
   * Parse a client stream name ("ticker:btcusdt", "tickers.BTCUSDT", "kline:1H:ETHUSDT")
   * into its canonical form, as the server canonicalises it.
   * @param {string} raw
   * @returns {StreamId}
   */
  function parseStream(raw) {
    if (typeof raw !== "string") throw new TypeError("stream names are strings");
    let kind;
    let rest;
    if (raw.startsWith("tickers.")) {
      kind = "ticker";
      rest = [raw.slice("tickers.".length)];
    } else {
      [kind, ...rest] = raw.split(":");
      kind = kind.toLowerCase();
    }
    const withParam = kind === "kline" || kind === "orderbook";
    if (!KINDS.includes(kind) || rest.length !== (withParam ? 2 : 1) || !rest[rest.length - 1]) {
      throw new Error(`invalid stream '${raw}'`);
    }
    const param = withParam ? canonicalParam(kind, rest[0]) : "";
    return makeId(kind, rest[rest.length - 1].toUpperCase(), param);
  }

  function canonicalParam(kind, param) {
    if (kind === "orderbook") return /^\d+$/.test(param) ? String(Number(param)) : param;
    if (KLINE_INTERVALS.includes(param)) return param;
    const lower = param.toLowerCase();
    return KLINE_INTERVALS.includes(lower) && lower !== "1m" ? lower : param; // "1M" is a month
  }

  /**
   * The stream of a data message's `stream` field ("hotpath.futures.orderbook.50.BTCUSDT").
   * The prefix is configurable on the server, so the name is read from the right.
   * @param {string} publicName
   * @returns {StreamId | null}
   */
  function streamFromPublic(publicName) {
    const parts = String(publicName).split(".");
    const n = parts.length;
    if (n >= 2 && ["ticker", "trade", "liquidation"].includes(parts[n - 2])) {
      return makeId(parts[n - 2], parts[n - 1], "");
    }
    if (n >= 3 && (parts[n - 3] === "kline" || parts[n - 3] === "orderbook")) {
      return makeId(parts[n - 3], parts[n - 1], parts[n - 2]);
    }
    return null;
  }

  // -- decimal strings ------------------------------------------------------------------

  const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?$/;

  /** @returns {{neg: boolean, int: string, frac: string} | null} */
  function splitDecimal(s) {
    const m = DECIMAL.exec(s);
    if (!m || (m[2] === "" && !m[3])) return null;
    const int = m[2].replace(/^0+/, "");
    const frac = (m[3] || "").replace(/0+$/, "");
    return { neg: m[1] === "-" && (int !== "" || frac !== ""), int, frac };
  }

  /**
   * Compare two decimal strings exactly ("-6.69" < "0.5" < "10"), without going through
   * floats; falls back to Number() for anything else (exponents, numbers).
   * @param {string | number} a
   * @param {string | number} b
   * @returns {number} negative, zero or positive
   */
  function compareDecimal(a, b) {
    const x = typeof a === "string" ? splitDecimal(a) : null;
    const y = typeof b === "string" ? splitDecimal(b) : null;
    if (!x || !y) return Math.sign(Number(a) - Number(b)) || 0;
    if (x.neg !== y.neg) return x.neg ? -1 : 1;
    const magnitude = x.int.length !== y.int.length
      ? x.int.length - y.int.length
      : compareStrings(x.int, y.int) || compareStrings(x.frac, y.frac);
    return Math.sign(x.neg ? -magnitude : magnitude);
  }

  function compareStrings(a, b) {
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /** Compare field values: decimal strings and numbers numerically, other strings as text. */
  function compareValues(a, b) {
    const numeric = (v) => typeof v === "number" || (typeof v === "string" && splitDecimal(v));
    if (numeric(a) && numeric(b)) return compareDecimal(a, b);
    return String(a).localeCompare(String(b));
  }

  function isZero(size) {
    return Number(size) === 0;
  }

  // -- per-stream state -----------------------------------------------------------------

  /**
   * An order book of one depth: price -> size maps plus sorted views, built lazily once
   * per change. Bids best (highest) first, asks best (lowest) first.
   */
  class OrderBook {
    constructor() {
      this.symbol = "";
      /** @type {Map<string, string>} */
      this.bids = new Map();
      /** @type {Map<string, string>} */
      this.asks = new Map();
      /** @type {[string, string][] | null} */
      this._bidView = null;
      /** @type {[string, string][] | null} */
      this._askView = null;
    }

    /** @param {{symbol: string, bids: [string, string][], asks: [string, string][]}} data */
    reset(data) {
      this.symbol = data.symbol || this.symbol;
      this.bids.clear();
      this.asks.clear();
      this.apply(data);
    }

    /** Apply changed levels; size "0" removes a level. */
    apply(data) {
      applyLevels(this.bids, data.bids);
      applyLevels(this.asks, data.asks);
      this._bidView = null;
      this._askView = null;
    }

    /** @returns {[string, string][]} [price, size], best (highest) first */
    bidLevels() {
      if (!this._bidView) this._bidView = sortLevels(this.bids, -1);
      return this._bidView;
    }

    /** @returns {[string, string][]} [price, size], best (lowest) first */
    askLevels() {
      if (!this._askView) this._askView = sortLevels(this.asks, 1);
      return this._askView;
    }

    /** @returns {[string, string] | undefined} */
    bestBid() {
      return this.bidLevels()[0];
    }

    /** @returns {[string, string] | undefined} */
    bestAsk() {
      return this.askLevels()[0];
    }
  }

  function applyLevels(side, levels) {
    for (const [price, size] of levels || []) {
      if (isZero(size)) side.delete(price);
      else side.set(price, size);
    }
  }

  function sortLevels(side, direction) {
    return [...side].sort((a, b) => direction * compareDecimal(a[0], b[0]));
  }

  /**
   * @typedef {{symbol: string, interval: string, start: number, end: number, open: string,
   *   high: string, low: string, close: string, volume: string, turnover: string,
   *   confirm: boolean}} Candle
   */

  /** The last `limit` candles of one kline stream, oldest first, one per start time. */
  class CandleSeries {
    /** @param {number} limit */
    constructor(limit) {
      this.limit = limit;
      /** @type {Candle[]} */
      this.candles = [];
    }

    /**
     * A snapshot holds the current candle. Closed (confirmed) candles before it never
     * change, so they are kept; an unconfirmed older one may have missed its last update
     * while we were away, so it goes.
     * @param {Candle} candle
     */
    reset(candle) {
      this.candles = this.candles.filter((c) => c.confirm && c.start < candle.start);
      this.apply(candle);
    }

    /** @param {Candle | Candle[]} data */
    apply(data) {
      for (const candle of Array.isArray(data) ? data : [data]) this._put(candle);
      const excess = this.candles.length - this.limit;
      if (excess > 0) this.candles.splice(0, excess);
    }

    /** @returns {Candle | undefined} */
    get current() {
      return this.candles[this.candles.length - 1];
    }

    _put(candle) {
      const list = this.candles;
      let i = list.length;
      while (i > 0 && list[i - 1].start > candle.start) i--;
      if (i > 0 && list[i - 1].start === candle.start) list[i - 1] = candle;
      else list.splice(i, 0, candle);
    }
  }

  /** A bounded FIFO of recent events (trades, liquidations), oldest first. */
  class Ring {
    /** @param {number} limit */
    constructor(limit) {
      this.limit = limit;
      /** @type {any[]} */
      this.items = [];
    }

    reset(items) {
      this.items = [];
      this.push(items);
    }

    push(items) {
      const list = Array.isArray(items) ? items : [items];
      this.items.push(...list);
      if (this.items.length > this.limit) this.items.splice(0, this.items.length - this.limit);
    }

    /** @param {number} [n] @returns {any[]} the newest n items, newest first */
    latest(n = this.items.length) {
      return this.items.slice(-n).reverse();
    }
  }

  /** How each stream kind builds its state from a snapshot and applies an update. */
  const REDUCERS = {
    ticker: {
      create: () => ({}),
      snapshot(state, data) {
        for (const key of Object.keys(state)) delete state[key];
        Object.assign(state, data);
      },
      update: (state, data) => Object.assign(state, data), // bid/ask come whole
    },
    orderbook: {
      create: () => new OrderBook(),
      snapshot: (book, data) => book.reset(data),
      update: (book, data) => book.apply(data),
    },
    kline: {
      create: (o) => new CandleSeries(o.klineLimit),
      snapshot: (series, data) => series.reset(data),
      update: (series, data) => series.apply(data),
    },
    trade: {
      create: (o) => new Ring(o.tradeLimit),
      snapshot: (ring, data) => ring.reset(data),
      update: (ring, data) => ring.push(data),
    },
    liquidation: {
      create: (o) => new Ring(o.liquidationLimit),
      snapshot: (ring, data) => ring.reset(data),
      update: (ring, data) => ring.push(data),
    },
  };

  // -- one WebSocket --------------------------------------------------------------------

  /** One WebSocket of a client, carrying up to maxSubscriptions streams. */
  class Connection {
    /** @param {HotpathClient} client @param {number} index */
    constructor(client, index) {
      this.client = client;
      this.index = index;
      /** @type {Set<string>} canonical names of the streams this connection carries */
      this.streams = new Set();
      /** @type {WebSocket | null} */
      this.ws = null;
      this.isOpen = false;
      this.started = false;
      this.stopped = false;
      this.attempt = 0;
      this.lastSeen = 0;
      /** @type {Map<number, {op: string, args: string[], resync: boolean}>} */
      this.pending = new Map();
      this.retryNames = new Set();
      this.resyncNames = new Set();
      this.timers = { reconnect: null, ping: null, retry: null, resync: null };
    }

    start() {
      if (this.started || this.stopped) return;
      this.started = true;
      this._open();
    }

    stop() {
      this.stopped = true;
      this._clearTimers();
      if (this.ws) this.ws.close(1000, "client closed");
    }

    /**
     * Send an op now if the socket is open; returns false otherwise (the streams go out
     * with the subscribe sent on the next open).
     */
    send(op, args, resync = false) {
      if (!this.isOpen || !this.ws) return false;
      const reqId = this.client._nextReqId();
      if (args) this.pending.set(reqId, { op, args, resync });
      this.ws.send(JSON.stringify(args ? { op, args, req_id: reqId } : { op, req_id: reqId }));
      return true;
    }

    /** Unsubscribe + subscribe these streams soon (batched: ops are rate limited). */
    resync(name) {
      this.resyncNames.add(name);
      if (!this.timers.resync) this.timers.resync = setTimeout(() => this._flushResync(), 0);
    }

    /** Subscribe these streams again after retryDelay (±50 % jitter). */
    retryLater(names) {
      names.forEach((n) => this.retryNames.add(n));
      if (this.timers.retry) return;
      const delay = this.client.options.retryDelay * (0.5 + Math.random());
      this.timers.retry = setTimeout(() => this._flushRetry(), delay);
    }

    _flushResync() {
      this.timers.resync = null;
      const names = [...this.resyncNames].filter((n) => this.streams.has(n));
      this.resyncNames.clear();
      if (names.length && this.send("unsubscribe", names, true)) this.send("subscribe", names);
    }

    _flushRetry() {
      this.timers.retry = null;
      const names = [...this.retryNames].filter((n) => this.streams.has(n));
      this.retryNames.clear();
      if (names.length) this.send("subscribe", names);
    }

    _open() {
      const { WebSocket: Impl } = this.client.options;
      let ws;
      try {
        ws = new Impl(this.client.url);
      } catch (err) {
        this.client._emit("error", { connection: this.index, message: String(err) });
        this._onClose(1006, "cannot connect");
        return;
      }
      this.ws = ws;
      ws.onopen = () => this._onOpen();
      ws.onmessage = (event) => this._onMessage(event);
      ws.onclose = (event) => this._onClose(event.code, event.reason);
      // A failed handshake fires error; some implementations (Node 20's) never follow it
      // with close, so a socket that never opened is given up here.
      ws.onerror = () => {
        if (!this.isOpen) this._onClose(1006, "connection failed");
      };
    }

    _onOpen() {
      this.isOpen = true;
      this.lastSeen = Date.now();
      this.timers.ping = setInterval(() => this._keepAlive(), this.client.options.pingInterval);
      const { token } = this.client.options;
      if (token) this._authenticate(typeof token === "function" ? token() : token);
      if (this.streams.size) this.send("subscribe", [...this.streams]);
      else if (!token) this.attempt = 0; // else once the token is accepted
      this.client._connectionOpened(this);
    }

    _authenticate(token) {
      const reqId = this.client._nextReqId();
      this.ws.send(JSON.stringify({ op: "auth", token: String(token), req_id: reqId }));
    }

    _onMessage(event) {
      this.lastSeen = Date.now();
      if (typeof event.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      this.client._dispatch(msg, this);
    }

    _keepAlive() {
      // Two ping periods without even a pong: the path is dead, a close may never come.
      if (Date.now() - this.lastSeen > 2 * this.client.options.pingInterval) {
        this._onClose(4000, "keep-alive timeout");
        return;
      }
      this.send("ping");
    }

    _onClose(code, reason) {
      const ws = this.ws;
      if (ws) {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        this.ws = null;
        if (ws.readyState < 2) ws.close(4000, reason); // given up on: release it
      }
      const wasOpen = this.isOpen;
      this.isOpen = false;
      this._clearTimers();
      this.pending.clear();
      this.retryNames.clear();
      this.resyncNames.clear();
      const reconnectIn = this.stopped ? null : this._scheduleReconnect();
      this.client._connectionClosed(this, { code, reason: reason || "", wasOpen, reconnectIn });
    }

    /** @returns {number | null} ms until the next attempt, null when not reconnecting */
    _scheduleReconnect() {
      const policy = this.client.options.reconnect;
      if (!policy) return null;
      const ceiling = Math.min(policy.maxDelay, policy.baseDelay * 2 ** Math.min(this.attempt, 30));
      const delay = Math.round(Math.random() * ceiling); // full jitter
      this.attempt += 1;
      this.timers.reconnect = setTimeout(() => {
        this.timers.reconnect = null;
        this._open();
      }, delay);
      return delay;
    }

    _clearTimers() {
      clearTimeout(this.timers.reconnect);
      clearInterval(this.timers.ping);
      clearTimeout(this.timers.retry);
      clearTimeout(this.timers.resync);
      this.timers = { reconnect: null, ping: null, retry: null, resync: null };
    }
  }

  // -- the client -----------------------------------------------------------------------

  /**
   * @typedef {object} StreamEntry
   * @property {StreamId} id
   * @property {Connection} conn
   * @property {any} state
   * @property {number} seq       last applied seq, -1 before the first snapshot
   * @property {boolean} synced   a snapshot was applied since the last (re)subscribe
   * @property {boolean} hasData  some snapshot was ever applied (state is meaningful)
   * @property {boolean} stale    the state may be behind (disconnected, status, gap)
   * @property {string | null} status  last status: stale, resync, delisted, gap, disconnected
   * @property {number} timestamp exchange timestamp of the last message, ms
   */

  /**
   * Live market state for a set of hotpath streams.
   *
   * Events (`on(name, fn)`, `off(name, fn)`):
   * - `connected`    {connection, open, total}
   * - `disconnected` {connection, code, reason, reconnectIn, open, total}; also after each
   *                  failed attempt; reconnectIn: ms until the next one (null: none)
   * - `data`         {stream, kind, symbol, type, seq, timestamp, state, data}
   * - `status`       {stream, kind, symbol, status, reason, seq, local}; local: true for a
   *                  gap the client found itself (it resubscribes the stream)
   * - `error`        {message, code?, error?, stream?, connection?, retrying?}; retrying:
   *                  a subscribe refused with 429/503 that the client repeats by itself
   *
   * State objects are live: the same object for the life of a subscription, changed in
   * place by each message (ticker: plain object; orderbook: OrderBook; kline:
   * CandleSeries; trade and liquidation: Ring).
   */
  class HotpathClient {
    /**
     * @param {string} url  ws://HOST:PORT/ws
     * @param {ClientOptions} [options]
     */
    constructor(url, options = {}) {
      this.url = url;
      this.options = {
        ...DEFAULTS,
        WebSocket: typeof WebSocket === "function" ? WebSocket : undefined,
        ...options,
        reconnect: reconnectPolicy(options.reconnect),
      };
      if (typeof this.options.WebSocket !== "function") {
        throw new Error("no WebSocket implementation: pass options.WebSocket");
      }
      /** @type {Map<string, Set<Function>>} */
      this._listeners = new Map();
      /** @type {Map<string, StreamEntry>} */
      this._entries = new Map();
      /** @type {Map<string, string>} public stream name -> canonical name */
      this._names = new Map();
      /** @type {Connection[]} */
      this._connections = [];
      this._opened = 0; // connections ever made: the next one's index
      this._reqId = 0;
      this._started = false;
      /** Stream messages received (all streams, all connections). */
      this.messages = 0;
      if (this.options.streams.length) this.subscribe(this.options.streams);
      if (this.options.autoConnect) this.connect();
    }

    /** Open the connections (done by the constructor unless autoConnect is false). */
    connect() {
      this._started = true;
      if (!this._connections.length) this._connections.push(this._newConnection());
      this._connections.forEach((c) => c.start());
      return this;
    }

    /** Close every connection for good. */
    close() {
      this._started = false;
      this._connections.forEach((c) => c.stop());
      return this;
    }

    /** @param {string | string[]} streams */
    subscribe(streams) {
      const batches = new Map();
      for (const raw of toList(streams)) {
        const id = this._parse(raw);
        if (!id || this._entries.has(id.name)) continue;
        const conn = this._connectionWithRoom();
        this._entries.set(id.name, this._newEntry(id, conn));
        conn.streams.add(id.name);
        if (!batches.has(conn)) batches.set(conn, []);
        batches.get(conn).push(id.name);
      }
      for (const [conn, names] of batches) {
        if (this._started && !conn.started) conn.start(); // subscribes on open
        else conn.send("subscribe", names);
      }
      return this;
    }

    /** @param {string | string[]} streams */
    unsubscribe(streams) {
      const batches = new Map();
      for (const raw of toList(streams)) {
        const id = this._parse(raw);
        const entry = id && this._entries.get(id.name);
        if (!entry) continue;
        this._forget(entry);
        if (!batches.has(entry.conn)) batches.set(entry.conn, []);
        batches.get(entry.conn).push(id.name);
      }
      for (const [conn, names] of batches) {
        conn.send("unsubscribe", names);
        this._closeIfIdle(conn);
      }
      return this;
    }

    /** @param {string} event @param {Function} fn */
    on(event, fn) {
      if (!this._listeners.has(event)) this._listeners.set(event, new Set());
      this._listeners.get(event).add(fn);
      return this;
    }

    /** @param {string} event @param {Function} fn */
    off(event, fn) {
      const set = this._listeners.get(event);
      if (set) set.delete(fn);
      return this;
    }

    /**
     * The live state of a stream (any accepted spelling), or undefined before its first
     * snapshot.
     * @param {string} stream
     */
    get(stream) {
      const entry = this._entryOf(stream);
      return entry && entry.hasData ? entry.state : undefined;
    }

    /**
     * Bookkeeping of a stream: seq, whether it is stale and why, exchange timestamp.
     * @param {string} stream
     */
    meta(stream) {
      const e = this._entryOf(stream);
      if (!e) return undefined;
      return { seq: e.seq, synced: e.synced, stale: e.stale, status: e.status,
        timestamp: e.timestamp, connection: e.conn.index };
    }

    /** @returns {string[]} the symbols that have ticker state */
    symbols() {
      return this._tickers().map((e) => e.id.symbol);
    }

    /**
     * Ticker states sorted by a field, numerically for decimal strings (exactly, not via
     * floats) and as text otherwise; a dotted path reaches into bid/ask ("bid.price").
     * Tickers without the field come last.
     * @param {string} field  e.g. "change24hPercent"
     * @param {boolean} [descending=false]
     * @returns {object[]}
     */
    sorted(field, descending = false) {
      const path = field.split(".");
      const value = (t) => path.reduce((v, k) => (v == null ? undefined : v[k]), t);
      const sign = descending ? -1 : 1;
      return this._tickers().map((e) => e.state).sort((a, b) => {
        const x = value(a);
        const y = value(b);
        if (x == null || y == null) return (x == null) - (y == null);
        return sign * compareValues(x, y);
      });
    }

    /** @returns {{open: number, total: number}} connections open / wanted */
    connections() {
      const live = this._connections.filter((c) => c.started && !c.stopped);
      return { open: live.filter((c) => c.isOpen).length, total: live.length };
    }

    /** True when every connection is open. */
    get connected() {
      const { open, total } = this.connections();
      return total > 0 && open === total;
    }

    /**
     * Apply one stream message ({stream, type, data, seq, timestamp}) to the local state;
     * what the connections call for every data message. Returns false for a stream that
     * is not subscribed.
     * @param {{stream: string, type: string, data: any, seq: number, timestamp: number}} msg
     */
    handleMessage(msg) {
      const entry = this._entryOfPublic(msg.stream);
      if (!entry) return false;
      entry.timestamp = msg.timestamp;
      if (msg.type === "snapshot") this._applySnapshot(entry, msg);
      else if (msg.type === "update") this._applyUpdate(entry, msg);
      else if (msg.type === "status") this._applyStatus(entry, msg);
      return true;
    }

    // -- messages ---------------------------------------------------------------------

    _applySnapshot(entry, msg) {
      REDUCERS[entry.id.kind].snapshot(entry.state, msg.data);
      Object.assign(entry, { seq: msg.seq, synced: true, hasData: true, stale: false,
        status: null });
      this._emitData(entry, msg);
    }

    _applyUpdate(entry, msg) {
      if (!entry.synced) return; // waiting for the snapshot of a (re)subscribe
      if (msg.seq !== entry.seq + 1) {
        this._gap(entry, msg.seq);
        return;
      }
      entry.seq = msg.seq;
      REDUCERS[entry.id.kind].update(entry.state, msg.data);
      this._emitData(entry, msg);
    }

    _applyStatus(entry, msg) {
      const { status = "unknown", reason = "" } = msg.data || {};
      entry.status = status;
      entry.stale = true; // until the fresh snapshot that follows (or for good: delisted)
      if (status === "delisted") {
        this._forget(entry); // the server ended the subscription
        this._closeIfIdle(entry.conn);
      }
      this._emitStatus(entry, status, reason, false);
    }

    _gap(entry, seq) {
      const expected = entry.seq + 1;
      Object.assign(entry, { synced: false, stale: true, status: "gap" });
      this._emitStatus(entry, "gap", `seq ${seq} where ${expected} was due; resubscribing`, true);
      entry.conn.resync(entry.id.name);
    }

    _emitData(entry, msg) {
      const { name: stream, kind, symbol } = entry.id;
      this._emit("data", { stream, kind, symbol, type: msg.type, seq: msg.seq,
        timestamp: msg.timestamp, state: entry.state, data: msg.data });
    }

    _emitStatus(entry, status, reason, local) {
      const { name: stream, kind, symbol } = entry.id;
      this._emit("status", { stream, kind, symbol, status, reason, seq: entry.seq, local });
    }

    /** Everything a connection receives. */
    _dispatch(msg, conn) {
      if (msg === null || typeof msg !== "object") return;
      if (typeof msg.stream === "string") {
        this.messages += 1;
        this.handleMessage(msg);
      } else if (msg.op === "subscribe" || msg.op === "unsubscribe") {
        this._onReply(msg, conn);
      } else if (msg.op === "error") {
        this._onError(msg, conn);
      } else if (msg.op === "auth" && msg.success) {
        conn.attempt = 0; // backoff starts over
      }
    }

    _onReply(msg, conn) {
      const request = conn.pending.get(msg.req_id);
      conn.pending.delete(msg.req_id);
      if (msg.op === "subscribe" && msg.success) conn.attempt = 0; // backoff starts over
      const tooMany = [];
      for (const { arg, reason } of msg.rejected || []) {
        if (String(reason).startsWith(TOO_MANY)) tooMany.push(arg);
        else if (msg.op === "subscribe") this._rejected(arg, reason, conn);
      }
      if (tooMany.length && request) this._moveElsewhere(tooMany, conn);
    }

    _onError(msg, conn) {
      const request = conn.pending.get(msg.req_id);
      conn.pending.delete(msg.req_id);
      const retrying = Boolean(request && RETRYABLE.has(msg.code));
      if (retrying && request.resync) request.args.forEach((n) => conn.resync(n));
      else if (retrying && request.op === "subscribe") conn.retryLater(request.args);
      if (msg.error === TOO_MANY) return; // handled with the reply's rejected list
      this._emit("error", { message: msg.message, code: msg.code, error: msg.error,
        connection: conn.index, retrying });
    }

    _rejected(arg, reason, conn) {
      const id = this._parse(String(arg), true);
      const entry = id && this._entries.get(id.name);
      if (entry && entry.conn === conn) this._forget(entry);
      this._emit("error", { message: `subscription refused: ${reason}`, stream: String(arg),
        connection: conn.index });
    }

    /** The server allows fewer streams per connection than we assumed: spread them out. */
    _moveElsewhere(names, conn) {
      const moving = names.map((n) => this._parse(String(n), true)).filter(Boolean)
        .map((id) => this._entries.get(id.name)).filter((e) => e && e.conn === conn);
      moving.forEach((e) => conn.streams.delete(e.id.name));
      this.options.maxSubscriptions = Math.max(1, Math.min(this.options.maxSubscriptions,
        conn.streams.size));
      moving.forEach((e) => this._entries.delete(e.id.name));
      this.subscribe(moving.map((e) => e.id.name));
    }

    // -- connections ------------------------------------------------------------------

    _connectionOpened(conn) {
      this._emit("connected", { connection: conn.index, ...this.connections() });
    }

    _connectionClosed(conn, info) {
      if (!this._connections.includes(conn)) return; // an idle extra one we closed
      for (const name of conn.streams) {
        const entry = this._entries.get(name);
        if (entry) Object.assign(entry, { synced: false, stale: true, status: "disconnected" });
      }
      this._emit("disconnected", { connection: conn.index, code: info.code, reason: info.reason,
        reconnectIn: info.reconnectIn, ...this.connections() });
    }

    _connectionWithRoom() {
      const limit = this.options.maxSubscriptions;
      let conn = this._connections.find((c) => !c.stopped && c.streams.size < limit);
      if (!conn) {
        conn = this._newConnection();
        this._connections.push(conn);
      }
      return conn;
    }

    _newConnection() {
      this._opened += 1;
      return new Connection(this, this._opened - 1);
    }

    /** Extra connections that carry nothing are closed; the first one stays. */
    _closeIfIdle(conn) {
      if (conn !== this._connections[0] && conn.streams.size === 0 && conn.started) {
        conn.stop();
        this._connections = this._connections.filter((c) => c !== conn);
      }
    }

    _nextReqId() {
      this._reqId += 1;
      return this._reqId;
    }

    // -- bookkeeping ------------------------------------------------------------------

    _newEntry(id, conn) {
      return { id, conn, state: REDUCERS[id.kind].create(this.options), seq: -1, synced: false,
        hasData: false, stale: false, status: null, timestamp: 0 };
    }

    _forget(entry) {
      this._entries.delete(entry.id.name);
      entry.conn.streams.delete(entry.id.name);
    }

    _tickers() {
      return [...this._entries.values()].filter((e) => e.id.kind === "ticker" && e.hasData);
    }

    _parse(raw, quiet = false) {
      try {
        return parseStream(raw);
      } catch (err) {
        if (!quiet) this._emit("error", { message: err.message, stream: String(raw) });
        return null;
      }
    }

    _entryOf(stream) {
      const id = this._parse(stream, true);
      return id ? this._entries.get(id.name) : undefined;
    }

    _entryOfPublic(publicName) {
      let name = this._names.get(publicName);
      if (name === undefined) {
        const id = streamFromPublic(publicName);
        if (!id) return undefined;
        name = id.name;
        this._names.set(publicName, name);
      }
      return this._entries.get(name);
    }

    _emit(event, payload) {
      const set = this._listeners.get(event);
      if (!set) return;
      for (const fn of [...set]) {
        try {
          fn(payload);
        } catch (err) {
          // A broken listener must not break the feed; report it like an event target does.
          setTimeout(() => { throw err; }, 0);
        }
      }
    }
  }

  /** @returns {ReconnectOptions | null} */
  function reconnectPolicy(option) {
    if (option === false) return null;
    return { ...RECONNECT, ...(typeof option === "object" && option ? option : {}) };
  }

  function toList(streams) {
    return Array.isArray(streams) ? streams : [streams];
  }

  return { VERSION, HotpathClient, OrderBook, CandleSeries, Ring, parseStream,
    streamFromPublic, compareDecimal, KINDS, KLINE_INTERVALS };
});
