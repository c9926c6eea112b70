/**
 * @file The market table: one row per symbol, redrawn at most once per animation frame
 * (only the rows that changed), sortable by any column, filtered by symbol.
 */

import { compareDecimal } from "../client.mjs";
import * as fmt from "./format.js";

/**
 * @typedef {object} Column
 * @property {string} key    ticker field
 * @property {string} label
 * @property {(t: object) => string} text
 * @property {boolean} [numeric]  sorted as a number, first click descending
 * @property {boolean} [signed]   coloured by sign
 */

/** @type {Column[]} */
const COLUMNS = [
  { key: "symbol", label: "Symbol", text: (t) => t.symbol || "" },
  { key: "price", label: "Price", numeric: true, text: (t) => fmt.price(t.price) },
  { key: "change24hPercent", label: "24h change", numeric: true, signed: true,
    text: (t) => fmt.percent(t.change24hPercent) },
  { key: "volume24h", label: "24h volume", numeric: true,
    text: (t) => fmt.compactNumber(t.volume24h) },
  { key: "fundingRate", label: "Funding", numeric: true, signed: true,
    text: (t) => fmt.fundingRate(t.fundingRate) },
  { key: "openInterest", label: "Open interest", numeric: true,
    text: (t) => fmt.compactNumber(t.openInterest) },
];

const RESORT_EVERY = 1000; // ms: live re-sorting faster than this is unreadable
const FLASH_MS = 600;

/**
 * @typedef {object} Row
 * @property {string} symbol
 * @property {number} index   position in the server's list (the unsorted order)
 * @property {HTMLTableRowElement} tr
 * @property {Record<string, HTMLTableCellElement>} cells
 * @property {object | null} ticker
 * @property {string | undefined} price  last price drawn
 * @property {number} flashUntil  performance.now() when the running flash ends
 */

export class MarketTable {
  /**
   * @param {HTMLTableElement} table
   * @param {{onSelect: (symbol: string) => void, onChange?: () => void}} handlers
   */
  constructor(table, handlers) {
    this.table = table;
    this.tbody = table.tBodies[0];
    this.handlers = handlers;
    /** @type {Map<string, Row>} */
    this.rows = new Map();
    /** @type {Set<Row>} */
    this.dirty = new Set();
    /** @type {string | null} */
    this.sortKey = null;
    this.descending = false;
    this.filter = "";
    this.selected = "";
    this.needsSort = false;
    this.lastSort = 0;
    this.sortTimer = 0;
    this.frame = 0;
    this._buildHeader();
    this.tbody.addEventListener("click", (e) => this._onRowEvent(e));
    this.tbody.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") this._onRowEvent(e);
    });
  }

  /** The universe: rows for new symbols, in this order; rows of vanished ones go. */
  setSymbols(symbols) {
    const wanted = new Set(symbols);
    for (const symbol of [...this.rows.keys()]) if (!wanted.has(symbol)) this.remove(symbol);
    symbols.forEach((symbol, index) => {
      const row = this.rows.get(symbol) || this._addRow(symbol);
      row.index = index;
    });
    this.needsSort = true;
    this._schedule();
  }

  /** A ticker changed (the object is the client's live state). */
  update(symbol, ticker) {
    const row = this.rows.get(symbol);
    if (!row) return;
    row.ticker = ticker;
    this.dirty.add(row);
    this._schedule();
  }

  setStale(symbol, stale) {
    const row = this.rows.get(symbol);
    if (row) row.tr.classList.toggle("stale", stale);
  }

  setAllStale(stale) {
    for (const row of this.rows.values()) row.tr.classList.toggle("stale", stale);
  }

  remove(symbol) {
    const row = this.rows.get(symbol);
    if (!row) return;
    row.tr.remove();
    this.rows.delete(symbol);
    this.dirty.delete(row);
    this._changed();
  }

  select(symbol) {
    const previous = this.rows.get(this.selected);
    if (previous) previous.tr.classList.remove("selected");
    this.selected = symbol;
    const row = this.rows.get(symbol);
    if (row) row.tr.classList.add("selected");
  }

  /** @param {string} text case-insensitive part of the symbol */
  setFilter(text) {
    this.filter = text.trim().toUpperCase();
    for (const row of this.rows.values()) row.tr.hidden = !row.symbol.includes(this.filter);
    this._changed();
  }

  /** Click on a header: numbers sort descending first, text ascending; again flips. */
  sortBy(key) {
    const column = COLUMNS.find((c) => c.key === key);
    if (!column) return;
    this.descending = this.sortKey === key ? !this.descending : Boolean(column.numeric);
    this.sortKey = key;
    for (const th of this.table.tHead.rows[0].cells) {
      const active = th.dataset.key === key;
      const order = this.descending ? "descending" : "ascending";
      th.setAttribute("aria-sort", active ? order : "none");
    }
    this.needsSort = true;
    this._schedule();
  }

  /** @returns {{total: number, shown: number}} */
  counts() {
    let shown = 0;
    for (const row of this.rows.values()) if (!row.tr.hidden) shown += 1;
    return { total: this.rows.size, shown };
  }

  // -- drawing ------------------------------------------------------------------------

  _buildHeader() {
    const tr = this.table.tHead.rows[0];
    tr.replaceChildren(...COLUMNS.map((c) => {
      const th = document.createElement("th");
      th.dataset.key = c.key;
      th.scope = "col";
      th.className = c.numeric ? "num" : "";
      th.setAttribute("aria-sort", "none");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = c.label;
      button.addEventListener("click", () => this.sortBy(c.key));
      th.append(button);
      return th;
    }));
  }

  _addRow(symbol) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    tr.tabIndex = 0;
    tr.classList.add("loading");
    const cells = {};
    for (const c of COLUMNS) {
      const td = document.createElement("td");
      td.dataset.key = c.key;
      td.className = c.numeric ? "num" : "sym";
      td.textContent = c.key === "symbol" ? symbol : "—";
      cells[c.key] = td;
      tr.append(td);
    }
    tr.hidden = !symbol.includes(this.filter);
    this.tbody.append(tr);
    const row = { symbol, index: this.rows.size, tr, cells, ticker: null, price: undefined,
      flashUntil: 0 };
    this.rows.set(symbol, row);
    if (symbol === this.selected) tr.classList.add("selected");
    return row;
  }

  _schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this._draw());
  }

  _draw() {
    this.frame = 0;
    const changed = this.dirty.size > 0;
    for (const row of this.dirty) this._drawRow(row);
    this.dirty.clear();
    if (this.needsSort) this._sort();
    else if (changed && this.sortKey !== null) this._sortSoon();
  }

  /** Values changed under a sorted column: re-sort, at most once per RESORT_EVERY. */
  _sortSoon() {
    if (this.sortTimer) return;
    const wait = Math.max(0, RESORT_EVERY - (performance.now() - this.lastSort));
    this.sortTimer = setTimeout(() => {
      this.sortTimer = 0;
      this.needsSort = true;
      this._schedule();
    }, wait);
  }

  _drawRow(row) {
    const t = row.ticker;
    if (!t) return;
    row.tr.classList.remove("loading");
    for (const c of COLUMNS) {
      const text = c.text(t);
      const td = row.cells[c.key];
      if (td.textContent !== text) td.textContent = text;
      if (c.signed) setClass(td, `num ${fmt.signClass(t[c.key])}`);
    }
    this._flashPrice(row, t.price);
  }

  /** Colour the price by its last move and flash the cell (one flash at a time). */
  _flashPrice(row, price) {
    const before = row.price;
    row.price = price;
    if (before === undefined || price === undefined || before === price) return;
    const up = compareDecimal(price, before) > 0;
    const td = row.cells.price;
    setClass(td, up ? "num up" : "num down");
    const now = performance.now();
    if (now < row.flashUntil) return;
    row.flashUntil = now + FLASH_MS;
    td.animate([{ backgroundColor: up ? "var(--flash-up)" : "var(--flash-down)" },
      { backgroundColor: "transparent" }], { duration: FLASH_MS, easing: "ease-out" });
  }

  _sort() {
    this.needsSort = false;
    this.lastSort = performance.now();
    const rows = [...this.rows.values()];
    const key = this.sortKey;
    const sign = this.descending ? -1 : 1;
    const field = (row) => (key === "symbol" ? row.symbol : row.ticker?.[key]);
    rows.sort((a, b) => {
      if (key === null) return a.index - b.index;
      const x = field(a);
      const y = field(b);
      if (x === undefined || y === undefined) return (x === undefined) - (y === undefined);
      const order = key === "symbol" ? x.localeCompare(y) : compareDecimal(x, y);
      return sign * order || a.index - b.index;
    });
    const current = this.tbody.children;
    if (rows.every((row, i) => current[i] === row.tr)) return;
    this.tbody.append(...rows.map((row) => row.tr));
  }

  _changed() {
    if (this.handlers.onChange) this.handlers.onChange();
  }

  _onRowEvent(event) {
    const tr = event.target.closest("tr[data-symbol]");
    if (!tr) return;
    event.preventDefault();
    this.handlers.onSelect(tr.dataset.symbol);
  }
}

function setClass(el, name) {
  if (el.className !== name) el.className = name;
}
