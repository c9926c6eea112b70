/**
 * @file Display formatting for the dashboard. Prices and sizes are the exchange's decimal
 * strings and are shown as they come (their precision is the instrument's tick); only
 * derived figures (volumes, percentages) go through numbers.
 */

const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });
const grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

/** @param {string | undefined} value a decimal string, shown as is */
export function price(value) {
  return value === undefined || value === null || value === "" ? "—" : value;
}

/** 1234567.8 -> "1.23M" */
export function compactNumber(value) {
  const n = Number(value);
  return value === undefined || Number.isNaN(n) ? "—" : compact.format(n);
}

/** 1234567.8 -> "1,234,567.8" */
export function groupedNumber(value) {
  const n = Number(value);
  return value === undefined || Number.isNaN(n) ? "—" : grouped.format(n);
}

/** "-6.6900" (already ×100) -> "-6.69%"; "+" for gains */
export function percent(value, digits = 2) {
  const n = Number(value);
  if (value === undefined || Number.isNaN(n)) return "—";
  return `${n > 0 ? "+" : ""}${n.toFixed(digits)}%`;
}

/** A funding rate fraction ("0.0000794") as a percentage ("0.0079%"). */
export function fundingRate(value) {
  return percent(Number(value) * 100, 4);
}

/** @returns {"up" | "down" | ""} the sign class of a signed decimal string */
export function signClass(value) {
  const n = Number(value);
  return n > 0 ? "up" : n < 0 ? "down" : "";
}

/** ms epoch -> "14:03:07" local time */
export function clock(ms) {
  const d = new Date(Number(ms));
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map(pad2).join(":");
}

/** ms epoch -> "14:03" */
export function hourMinute(ms) {
  const d = new Date(Number(ms));
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** ms -> "2h 05m" / "4m 09s" until then */
export function countdown(ms, now = Date.now()) {
  const left = Math.max(0, Math.round((Number(ms) - now) / 1000));
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  return h > 0 ? `${h}h ${pad2(m)}m` : `${m}m ${pad2(left % 60)}s`;
}

/** bytes/s -> "1.2 MB/s" */
export function byteRate(value) {
  const n = Number(value) || 0;
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}/s`;
}

function pad2(n) {
  return String(n).padStart(2, "0");
}
