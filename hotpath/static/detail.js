/**
 * @file The detail view of one symbol: ticker figures, a 1m candle chart, the order book
 * (depth 50, cumulative), recent trades and liquidations. Subscribes its streams while a
 * symbol is shown; redraws the parts that changed once per animation frame.
 */

import { CandleChart } from "./chart.js";
import * as fmt from "./format.js";

const BOOK_DEPTH = 50;
const TRADE_ROWS = 60;
const LIQUIDATION_ROWS = 12;

/** @param {string} symbol */
export function detailStreams(symbol) {
  return [`orderbook:${BOOK_DEPTH}:${symbol}`, `trade:${symbol}`, `kline:1m:${symbol}`,
    `liquidation:${symbol}`];
}

export class DetailView {
  /**
   * @param {HTMLElement} root  the #detail element of dashboard.html
   * @param {import("../client.mjs").HotpathClient} client
   */
  constructor(root, client) {
    this.root = root;
    this.client = client;
    this.symbol = "";
    /** @type {Set<string>} stream kinds to redraw */
    this.dirty = new Set();
    this.frame = 0;
    const $ = (sel) => root.querySelector(sel);
    this.el = {
      symbol: $("#d-symbol"), price: $("#d-price"), change: $("#d-change"),
      stats: $("#d-stats"), spread: $("#book-spread"), trades: $("#trades tbody"),
      liquidations: $("#liquidations tbody"),
    };
    this.bids = new LevelList($("#book-bids .rows"), "bid");
    this.asks = new LevelList($("#book-asks .rows"), "ask");
    this.chart = new CandleChart($("#chart"));
    this.chart.clear("select a market");
    setInterval(() => this._mark("ticker"), 1000); // the funding countdown
  }

  /** Show a symbol: swap the detail streams, draw what is already known. */
  show(symbol) {
    if (symbol === this.symbol) return;
    if (this.symbol) this.client.unsubscribe(detailStreams(this.symbol));
    this.symbol = symbol;
    this.root.dataset.symbol = symbol;
    this.client.subscribe(detailStreams(symbol));
    this.el.symbol.textContent = symbol;
    this.bids.clear();
    this.asks.clear();
    this.el.trades.replaceChildren();
    this.el.liquidations.replaceChildren();
    this.chart.clear("waiting for candles…");
    ["ticker", "orderbook", "trade", "kline", "liquidation"].forEach((k) => this._mark(k));
  }

  /** A data event from the client. */
  onData(event) {
    if (event.symbol === this.symbol) this._mark(event.kind);
  }

  _mark(kind) {
    if (!this.symbol) return;
    this.dirty.add(kind);
    if (!this.frame) this.frame = requestAnimationFrame(() => this._draw());
  }

  _draw() {
    this.frame = 0;
    const s = this.symbol;
    const get = (stream) => this.client.get(stream);
    if (this.dirty.has("ticker")) this._drawTicker(get(`ticker:${s}`));
    if (this.dirty.has("orderbook")) this._drawBook(get(`orderbook:${BOOK_DEPTH}:${s}`));
    if (this.dirty.has("trade")) this._drawTrades(get(`trade:${s}`));
    if (this.dirty.has("liquidation")) this._drawLiquidations(get(`liquidation:${s}`));
    if (this.dirty.has("kline")) {
      const series = get(`kline:1m:${s}`);
      if (series) this.chart.setCandles(series.candles);
    }
    this.dirty.clear();
    this.checkStale();
  }

  /** Dim the view while its book may be behind (disconnected, stale, resubscribing). */
  checkStale() {
    const meta = this.symbol && this.client.meta(`orderbook:${BOOK_DEPTH}:${this.symbol}`);
    this.root.classList.toggle("stale", Boolean(meta && meta.stale));
  }

  _drawTicker(t) {
    if (!t) return;
    this.el.price.textContent = fmt.price(t.price);
    this.el.change.textContent = fmt.percent(t.change24hPercent);
    this.el.change.className = `change ${fmt.signClass(t.change24hPercent)}`;
    const figures = [
      ["Mark", fmt.price(t.markPrice)], ["Index", fmt.price(t.indexPrice)],
      ["24h high", fmt.price(t.high24h)], ["24h low", fmt.price(t.low24h)],
      ["24h volume", fmt.groupedNumber(t.volume24h)],
      ["Open interest", fmt.groupedNumber(t.openInterest)],
      ["Funding", fmt.fundingRate(t.fundingRate)],
      ["Next funding", t.nextFundingTime ? fmt.countdown(t.nextFundingTime) : "—"],
    ];
    const dl = this.el.stats;
    if (dl.children.length !== figures.length * 2) {
      dl.replaceChildren(...figures.flatMap(() => [document.createElement("dt"),
        document.createElement("dd")]));
    }
    figures.forEach(([label, value], i) => {
      setText(dl.children[2 * i], label);
      setText(dl.children[2 * i + 1], value);
    });
  }

  _drawBook(book) {
    if (!book) return;
    const bids = cumulative(book.bidLevels());
    const asks = cumulative(book.askLevels());
    const decimals = Math.max(0, ...[...bids, ...asks].map((l) => decimalsOf(l.size)));
    const deepest = Math.max(bids.length ? bids[bids.length - 1].total : 0,
      asks.length ? asks[asks.length - 1].total : 0) || 1;
    this.bids.draw(bids, deepest, decimals);
    this.asks.draw(asks, deepest, decimals);
    const bid = book.bestBid();
    const ask = book.bestAsk();
    if (bid && ask) {
      const spread = Number(ask[0]) - Number(bid[0]);
      const tick = Math.max(decimalsOf(bid[0]), decimalsOf(ask[0]));
      const mid = (Number(ask[0]) + Number(bid[0])) / 2;
      this.el.spread.textContent = `spread ${spread.toFixed(tick)} ` +
        `(${((spread / mid) * 100).toFixed(3)}%) · mid ${mid.toFixed(tick + 1)}`;
    }
  }

  _drawTrades(ring) {
    if (!ring) return;
    fillRows(this.el.trades, ring.latest(TRADE_ROWS), (tr, trade) => {
      tr.className = `trade ${trade.side === "Buy" ? "up" : "down"}`;
      setCells(tr, [fmt.clock(trade.time), trade.price, trade.size]);
    });
  }

  _drawLiquidations(ring) {
    if (!ring) return;
    fillRows(this.el.liquidations, ring.latest(LIQUIDATION_ROWS), (tr, liq) => {
      // side is the liquidated position's side: Buy = a long was liquidated.
      tr.className = `liquidation ${liq.side === "Buy" ? "down" : "up"}`;
      setCells(tr, [fmt.clock(liq.time), liq.side === "Buy" ? "long" : "short", liq.price,
        liq.size]);
    });
  }
}

/** One side of the book: rows reused in place, depth bars drawn by CSS from --depth. */
class LevelList {
  /** @param {HTMLElement} container @param {"bid" | "ask"} side */
  constructor(container, side) {
    this.container = container;
    this.side = side;
  }

  clear() {
    this.container.replaceChildren();
  }

  /**
   * @param {{price: string, size: string, total: number}[]} levels best first
   * @param {number} deepest  the larger side's total: bars of both sides share a scale
   * @param {number} decimals of the sizes, for the running totals
   */
  draw(levels, deepest, decimals) {
    const rows = this.container.children;
    while (rows.length > levels.length) this.container.lastElementChild.remove();
    while (rows.length < levels.length) this.container.append(this._row());
    levels.forEach((level, i) => {
      const row = /** @type {HTMLElement} */ (rows[i]);
      row.style.setProperty("--depth", `${((level.total / deepest) * 100).toFixed(1)}%`);
      const cells = [level.total.toFixed(decimals), level.size, level.price];
      const ordered = this.side === "bid" ? cells : cells.reverse();
      ordered.forEach((text, j) => setText(row.children[j], text));
    });
  }

  _row() {
    const row = document.createElement("div");
    row.className = `level ${this.side}`;
    row.append(...[0, 1, 2].map(() => document.createElement("span")));
    return row;
  }
}

/** [[price, size], ...] best first -> [{price, size, total}] with the running total. */
function cumulative(levels) {
  let total = 0;
  return levels.map(([price, size]) => {
    total += Number(size);
    return { price, size, total };
  });
}

/** Make tbody hold exactly items.length rows (reused), then fill each. */
function fillRows(tbody, items, fill) {
  while (tbody.rows.length > items.length) tbody.deleteRow(-1);
  while (tbody.rows.length < items.length) tbody.insertRow();
  items.forEach((item, i) => fill(tbody.rows[i], item));
}

function setCells(tr, values) {
  while (tr.cells.length < values.length) tr.insertCell();
  values.forEach((v, i) => setText(tr.cells[i], v));
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function decimalsOf(decimal) {
  const dot = decimal.indexOf(".");
  return dot < 0 ? 0 : decimal.length - dot - 1;
}
