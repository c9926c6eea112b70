/**
 * @file A candle chart on a plain canvas: candles with wicks, volume bars, a price axis
 * with round ticks, time labels and a line at the last price. Redraws on demand, at most
 * once per animation frame, and on resize (device-pixel sharp).
 */

import { hourMinute } from "./format.js";

const AXIS_WIDTH = 72; // px right of the plot: price labels
const TIME_HEIGHT = 20; // px under the plot: time labels
const VOLUME_SHARE = 0.18; // of the plot height
const SLOT = 9; // px per candle (body 6-7 px + gap)

/** Reads the theme from CSS custom properties once, so colours live in the stylesheet. */
function theme(el) {
  const css = getComputedStyle(el);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    up: v("--up", "#16c784"), down: v("--down", "#f6465d"), grid: v("--grid", "#1c232d"),
    text: v("--muted", "#7d8896"), last: v("--accent", "#4c9ffe"),
    font: `11px ${v("--mono", "monospace")}`,
  };
}

export class CandleChart {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    /** @type {{start: number, open: string, high: string, low: string, close: string,
     *   volume: string}[]} */
    this.candles = [];
    this.message = "waiting for candles…";
    this.frame = 0;
    this.colors = theme(canvas);
    new ResizeObserver(() => this.redraw()).observe(canvas);
  }

  /** @param {object[]} candles oldest first (the client's CandleSeries.candles) */
  setCandles(candles) {
    this.candles = candles;
    this.redraw();
  }

  /** Show a message instead of candles (no symbol, loading). */
  clear(message) {
    this.candles = [];
    this.message = message;
    this.redraw();
  }

  redraw() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this._draw());
  }

  _draw() {
    this.frame = 0;
    const { canvas, ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = this.colors.font;
    const plot = { x: 0, y: 8, w: width - AXIS_WIDTH, h: height - TIME_HEIGHT - 8 };
    const visible = this.candles.slice(-Math.max(1, Math.floor(plot.w / SLOT)));
    if (!visible.length) {
      this._message(plot);
      return;
    }
    const scale = priceScale(visible, plot);
    const last = visible[visible.length - 1];
    const lastY = Math.round(scale.y(Number(last.close))) + 0.5;
    this._grid(plot, scale, lastY);
    this._volumes(visible, plot);
    this._lastLine(plot, lastY); // under the candles: a fresh doji sits right on it
    this._candles(visible, plot, scale);
    this._times(visible, plot);
    this._lastLabel(last.close, plot, lastY);
    if (this.candles.length < 3) this._since(this.candles[0], plot);
  }

  /** There is no history endpoint: say that candles start when the view opened. */
  _since(first, plot) {
    const { ctx } = this;
    ctx.fillStyle = this.colors.text;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    const text = `live since ${hourMinute(first.start)}: one candle per minute`;
    ctx.fillText(text, plot.x + 4, plot.y);
  }

  _message(plot) {
    const { ctx } = this;
    ctx.fillStyle = this.colors.text;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(this.message, plot.w / 2, plot.y + plot.h / 2);
  }

  /** Horizontal lines at round prices, labelled unless the last price label is there. */
  _grid(plot, scale, lastY) {
    const { ctx } = this;
    ctx.strokeStyle = this.colors.grid;
    ctx.fillStyle = this.colors.text;
    ctx.lineWidth = 1;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (const tick of scale.ticks) {
      const y = Math.round(scale.y(tick)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.stroke();
      if (Math.abs(y - lastY) > 16) {
        ctx.fillText(tick.toFixed(scale.decimals), plot.x + plot.w + 8, y);
      }
    }
  }

  _x(i, count, plot) {
    // The newest candle sits at the right edge; history grows to the left.
    return plot.x + plot.w - (count - i) * SLOT + SLOT / 2;
  }

  _volumes(candles, plot) {
    const { ctx } = this;
    const max = Math.max(...candles.map((c) => Number(c.volume))) || 1;
    const area = plot.h * VOLUME_SHARE;
    ctx.globalAlpha = 0.35;
    candles.forEach((c, i) => {
      const h = (Number(c.volume) / max) * area;
      ctx.fillStyle = Number(c.close) >= Number(c.open) ? this.colors.up : this.colors.down;
      ctx.fillRect(Math.round(this._x(i, candles.length, plot) - 3), plot.y + plot.h - h, 7, h);
    });
    ctx.globalAlpha = 1;
  }

  _candles(candles, plot, scale) {
    const { ctx } = this;
    candles.forEach((c, i) => {
      const x = Math.round(this._x(i, candles.length, plot));
      const open = scale.y(Number(c.open));
      const close = scale.y(Number(c.close));
      ctx.strokeStyle = ctx.fillStyle =
        Number(c.close) >= Number(c.open) ? this.colors.up : this.colors.down;
      ctx.beginPath();
      ctx.moveTo(x + 0.5, Math.round(scale.y(Number(c.high))));
      ctx.lineTo(x + 0.5, Math.round(scale.y(Number(c.low))));
      ctx.stroke();
      const top = Math.round(Math.min(open, close));
      ctx.fillRect(x - 3, top, 7, Math.max(1, Math.round(Math.abs(close - open))));
    });
  }

  _times(candles, plot) {
    const { ctx } = this;
    ctx.fillStyle = this.colors.text;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const every = Math.max(1, Math.ceil(64 / SLOT)); // a label per ~64 px
    candles.forEach((c, i) => {
      if ((candles.length - 1 - i) % every !== 0) return;
      const x = this._x(i, candles.length, plot);
      if (x > 24) ctx.fillText(hourMinute(c.start), x, plot.y + plot.h + 5);
    });
  }

  _lastLine(plot, y) {
    const { ctx } = this;
    ctx.strokeStyle = this.colors.last;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(plot.x, y);
    ctx.lineTo(plot.x + plot.w, y);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  _lastLabel(price, plot, y) {
    const { ctx } = this;
    ctx.fillStyle = this.colors.last;
    ctx.fillRect(plot.x + plot.w + 2, y - 9, AXIS_WIDTH - 4, 18);
    ctx.fillStyle = "#fff";
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(price, plot.x + plot.w + 6, y);
  }
}

/** The y mapping for the candles' range (volume area excluded) and round tick values. */
function priceScale(candles, plot) {
  let low = Math.min(...candles.map((c) => Number(c.low)));
  let high = Math.max(...candles.map((c) => Number(c.high)));
  const pad = (high - low) * 0.08 || Math.abs(high) * 0.0005 || 1;
  low -= pad;
  high += pad;
  const top = plot.y;
  const bottom = plot.y + plot.h * (1 - VOLUME_SHARE) - 4;
  const step = niceStep((high - low) / 5);
  const ticks = [];
  for (let t = Math.ceil(low / step) * step; t <= high; t += step) ticks.push(t);
  return {
    ticks,
    decimals: Math.max(0, -Math.floor(Math.log10(step))),
    y: (price) => bottom - ((price - low) / (high - low)) * (bottom - top),
  };
}

/** 1, 2 or 5 times a power of ten, close to raw. */
function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit < 1.5 ? 1 : unit < 3.5 ? 2 : unit < 7.5 ? 5 : 10) * power;
}
