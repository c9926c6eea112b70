/**
 * @file The hotpath dashboard (served at /dashboard): a live table of every symbol's
 * ticker, a detail view of one symbol, and a status bar. Built on the JS client; all
 * URLs are relative to the page, so it also works behind a path prefix.
 *
 * Subscriptions: one ticker stream per symbol of GET /symbols, plus four streams for the
 * symbol in the detail view. The client puts at most `max_subscriptions` (GET /, 100 by
 * default) streams on one WebSocket and opens more connections for the rest: 300
 * symbols take 4 connections. Every row stays live, so sorting by any column is exact.
 */

import { HotpathClient } from "../client.mjs";
import { DetailView } from "./detail.js";
import * as fmt from "./format.js";
import { MarketTable } from "./table.js";

const STATS_EVERY = 3000; // ms between GET /stats
const UNIVERSE_EVERY = 60000; // ms between GET /symbols (listings come and go)
const RETRY_EVERY = 3000; // ms between attempts while the server is unreachable

/** @param {string} path relative to the page, e.g. "stats" */
async function getJSON(path) {
  const response = await fetch(new URL(path, location.href), { cache: "no-store" });
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return response.json();
}

function wsUrl() {
  const url = new URL("ws", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.search = "";
  return url.href;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Call fn until it resolves, telling the status bar why we wait. */
async function persist(fn, status) {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      status.note(`${err.message}; retrying`, true);
      await sleep(RETRY_EVERY);
    }
  }
}

/** The status bar: connection, message rate, latency, node stats, last notice. */
class StatusBar {
  constructor() {
    const $ = (id) => document.getElementById(id);
    this.el = { conn: $("st-conn"), rate: $("st-rate"), latency: $("st-latency"),
      node: $("st-node"), note: $("st-note") };
    this.noteTimer = 0;
  }

  /**
   * @param {{open: number, total: number}} c
   * @param {number | null} [reconnectIn] ms, from a disconnected event
   */
  connection(c, reconnectIn) {
    let state = "connected";
    let text = c.total > 1 ? `connected · ${c.total} sockets` : "connected";
    if (c.open === 0 && reconnectIn == null) {
      state = "disconnected";
      text = "disconnected";
    } else if (c.open === 0) {
      state = "connecting";
      text = `reconnecting in ${(reconnectIn / 1000).toFixed(1)}s`;
    } else if (c.open < c.total) {
      state = "partial";
      text = `connected ${c.open}/${c.total} · reconnecting`;
    }
    this.el.conn.dataset.state = state;
    this.el.conn.querySelector(".label").textContent = text;
  }

  rates(perSecond, latency) {
    this.el.rate.textContent = fmt.groupedNumber(perSecond);
    this.el.latency.textContent = latency
      ? `${latency.p50} ms p50 · ${latency.max} ms max` : "—";
  }

  /** @param {object | null} stats GET /stats, null when it failed */
  node(stats) {
    if (!stats) {
      this.el.node.textContent = "node stats unavailable";
      this.el.node.classList.add("down");
      return;
    }
    const r = stats.rates || {};
    const ingest = stats.ingest || {};
    const upstream = ingest.upstream_ok ? "upstream ok" : "upstream down";
    this.el.node.textContent = [
      `node ${stats.node.id}`, plural(stats.node.workers, "worker"),
      plural(stats.clients, "client"), `${stats.subscriptions} subs`,
      `out ${fmt.compactNumber(r.frames_out_per_s || 0)} msg/s ${fmt.byteRate(r.bytes_out_per_s)}`,
      `redis ${fmt.compactNumber(r.redis_messages_per_s || 0)}/s`, upstream,
    ].join(" · ");
    this.el.node.classList.toggle("down", !ingest.upstream_ok);
  }

  /** A transient notice (errors stay longer). */
  note(text, isError = false) {
    this.el.note.textContent = text;
    this.el.note.classList.toggle("error", isError);
    clearTimeout(this.noteTimer);
    this.noteTimer = setTimeout(() => { this.el.note.textContent = ""; }, isError ? 15000 : 6000);
  }
}

/** Messages per second and latency (now − exchange timestamp of updates), per second. */
class Meter {
  constructor(client) {
    this.client = client;
    this.lastCount = client.messages;
    this.lastTime = performance.now();
    /** @type {number[]} */
    this.samples = [];
  }

  /** @param {{type: string, timestamp: number}} event */
  sample(event) {
    if (event.type === "update" && this.samples.length < 10000) {
      this.samples.push(Date.now() - event.timestamp);
    }
  }

  /** @returns {{perSecond: number, latency: {p50: number, max: number} | null}} */
  take() {
    const now = performance.now();
    const perSecond = ((this.client.messages - this.lastCount) * 1000) / (now - this.lastTime);
    this.lastCount = this.client.messages;
    this.lastTime = now;
    const sorted = this.samples.sort((a, b) => a - b);
    this.samples = [];
    const at = (q) => Math.max(0, sorted[Math.floor(q * (sorted.length - 1))]);
    const latency = sorted.length ? { p50: at(0.5), max: at(1) } : null;
    return { perSecond: Math.round(perSecond), latency };
  }
}

class Dashboard {
  constructor(client, symbols, status) {
    this.client = client;
    this.status = status;
    this.symbols = symbols;
    this.meter = new Meter(client);
    this.table = new MarketTable(document.getElementById("markets"), {
      onSelect: (symbol) => this.select(symbol),
      onChange: () => this.summary(),
    });
    this.detail = new DetailView(document.getElementById("detail"), client);
    this.table.setSymbols(symbols);
    this.summary();
    this._listen();
    const wanted = decodeURIComponent(location.hash.slice(1)).toUpperCase();
    this.select(symbols.includes(wanted) ? wanted : symbols[0]);
  }

  select(symbol) {
    if (!symbol) return;
    history.replaceState(null, "", `#${symbol}`);
    this.table.select(symbol);
    this.detail.show(symbol);
  }

  summary() {
    const { total, shown } = this.table.counts();
    document.getElementById("summary").textContent =
      shown === total ? `${total} markets` : `${shown} of ${total} markets`;
  }

  _listen() {
    const { client, table, status } = this;
    client.on("data", (e) => {
      this.meter.sample(e);
      if (e.kind === "ticker") {
        table.update(e.symbol, e.state);
        if (e.type === "snapshot") table.setStale(e.symbol, false);
      }
      this.detail.onData(e);
    });
    client.on("status", (e) => {
      if (e.kind === "ticker" && e.status === "delisted") table.remove(e.symbol);
      else if (e.kind === "ticker") table.setStale(e.symbol, true);
      this.detail.checkStale();
      status.note(`${e.stream}: ${e.status}${e.reason ? ` (${e.reason})` : ""}`);
    });
    client.on("connected", () => status.connection(client.connections()));
    client.on("disconnected", (e) => {
      status.connection(client.connections(), e.reconnectIn);
      for (const symbol of this.symbols) {
        const meta = client.meta(`ticker:${symbol}`);
        if (meta) table.setStale(symbol, meta.stale);
      }
      this.detail.checkStale();
    });
    client.on("error", (e) => status.note(e.message, !e.retrying));
    document.getElementById("filter").addEventListener("input", (e) => {
      table.setFilter(e.target.value);
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "/" && document.activeElement?.id !== "filter") {
        e.preventDefault();
        document.getElementById("filter").focus();
      }
    });
  }

  /** Follow listings and delistings: subscribe new tickers, drop vanished ones. */
  setUniverse(symbols) {
    const before = new Set(this.symbols);
    const after = new Set(symbols);
    this.client.subscribe(symbols.filter((s) => !before.has(s)).map((s) => `ticker:${s}`));
    this.client.unsubscribe(this.symbols.filter((s) => !after.has(s)).map((s) => `ticker:${s}`));
    this.symbols = symbols;
    this.table.setSymbols(symbols);
  }

  startTimers() {
    setInterval(() => {
      const { perSecond, latency } = this.meter.take();
      this.status.rates(perSecond, latency);
    }, 1000);
    const pollStats = () => getJSON("stats").then((s) => this.status.node(s),
      () => this.status.node(null));
    pollStats();
    setInterval(pollStats, STATS_EVERY);
    setInterval(() => {
      getJSON("symbols").then((body) => this.setUniverse(body.symbols), () => {});
    }, UNIVERSE_EVERY);
  }
}

async function main() {
  const status = new StatusBar();
  const info = await persist(() => getJSON("./"), status);
  const { symbols } = await persist(() => getJSON("symbols"), status);
  const limits = info.limits || {};
  const client = new HotpathClient(wsUrl(), {
    streams: symbols.map((s) => `ticker:${s}`),
    maxSubscriptions: limits.max_subscriptions || 100,
  });
  const dashboard = new Dashboard(client, symbols, status);
  dashboard.startTimers();
  window.hotpath = { client, dashboard }; // for the console (and the browser test)
}

main();
