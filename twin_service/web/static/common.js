// Shared by the overview and the meter page: fetching, the server clock, number formats, staleness, the live stream.

export const PHASES = ["L1", "L2", "L3"];

let clockOffsetMs = 0; // server time − browser time: ages stay right on a phone whose clock is off

export function syncClock(serverTime) {
  const t = Date.parse(serverTime);
  if (!Number.isNaN(t)) clockOffsetMs = t - Date.now();
}

export function now() {
  return Date.now() + clockOffsetMs;
}

export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON: reported below */ }
  if (response.status === 401) window.location.assign("/login"); // the session ended: log in again
  if (!response.ok) {
    const detail = body && (body.detail || body.title) ? `${body.title}: ${body.detail}` : `HTTP ${response.status}`;
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  if (body && body.serverTime) syncClock(body.serverTime);
  return body;
}

// -- numbers and units ---------------------------------------------------------------------------------------
let measures = {};

export async function loadMeasures() {
  measures = await getJson("/api/measures");
  return measures;
}

const formatters = new Map();
function number(value, digits) {
  if (!formatters.has(digits)) {
    formatters.set(digits, new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }));
  }
  return formatters.get(digits).format(value);
}

function isNumber(v) { return typeof v === "number" && Number.isFinite(v); }

// Power-like units get k/M prefixes so 1 455 W reads as 1.46 kW; others keep the unit with fixed digits.
const PREFIXED = new Set(["W", "var", "VA"]);
const DIGITS = { V: 1, A: 2, Hz: 2, "°": 1, kWh: 3, kvarh: 3, kVAh: 3 };

export function formatUnit(value, unit) {
  if (!isNumber(value)) return "–";
  if (PREFIXED.has(unit)) {
    const a = Math.abs(value);
    if (a >= 1e6) return `${number(value / 1e6, 2)} M${unit}`;
    if (a >= 1e3) return `${number(value / 1e3, 2)} k${unit}`;
    return `${number(value, 0)} ${unit}`;
  }
  if (unit === "kWh" || unit === "kvarh" || unit === "kVAh") {
    const a = Math.abs(value);
    return `${number(value, a >= 1000 ? 0 : a >= 10 ? 2 : 3)} ${unit}`;
  }
  const digits = DIGITS[unit] ?? 2;
  return unit === "°" ? `${number(value, digits)}°` : `${number(value, digits)} ${unit}`;
}

export function formatPercent(fraction, digits = 1) {
  return isNumber(fraction) ? `${number(fraction * 100, digits)} %` : "–";
}

// A measure of the table by attribute name: thd* and unbalances in %, power factor plain, others with the unit.
export function formatMeasure(attr, value) {
  if (!isNumber(value)) return "–";
  if (attr.startsWith("thd")) return formatPercent(value);
  if (attr === "powerFactor" || attr === "totalPowerFactor") return number(value, 3);
  const m = measures[attr];
  return formatUnit(value, m ? m.unit : "");
}

export function unitOf(attr) {
  if (attr.startsWith("thd")) return "%";
  const m = measures[attr];
  return m && m.unit ? m.unit : "";
}

export function describe(attr) {
  const m = measures[attr];
  return m ? m.description : attr;
}

export function formatAge(seconds) {
  if (!isNumber(seconds)) return "never";
  const s = Math.max(0, seconds);
  if (s < 1.5) return "just now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function formatClock(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? "" : new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function formatDateTime(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? "" : new Date(t).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// -- staleness -----------------------------------------------------------------------------------------------
// A meter is live while its last reading is younger than three periods (at least five seconds more than one
// period, for network jitter), stale after that, and offline after ten periods or a minute, whichever is longer.
export function meterState(observedAt, periodS) {
  const t = Date.parse(observedAt);
  if (Number.isNaN(t)) return { state: "offline", ageS: null };
  const ageS = (now() - t) / 1000;
  const p = isNumber(periodS) && periodS > 0 ? periodS : 5;
  if (ageS <= Math.max(3 * p, p + 5)) return { state: "live", ageS };
  if (ageS <= Math.max(60, 10 * p)) return { state: "stale", ageS };
  return { state: "offline", ageS };
}

export const STATE_LABEL = { live: "Live", stale: "Stale", offline: "Offline", unknown: "…" };

// Keeps a meter's period estimate up to date from the observation times it sees.
export class PeriodTracker {
  constructor(initialS) { this.periodS = initialS ?? null; this.times = []; }
  observe(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t) || this.times.includes(t)) return;
    this.times.push(t);
    this.times.sort((a, b) => a - b);
    if (this.times.length > 11) this.times.shift();
    const gaps = [];
    for (let i = 1; i < this.times.length; i++) gaps.push((this.times[i] - this.times[i - 1]) / 1000);
    if (gaps.length >= 2) {
      gaps.sort((a, b) => a - b);
      this.periodS = gaps[Math.floor(gaps.length / 2)];
    }
  }
}

// -- the live stream -----------------------------------------------------------------------------------------
// EventSource reconnects by itself after a network error; the watchdog also catches a stream that went silent
// (the server pings every 10 s), and `onResync` runs after every reconnect so missed readings are reloaded.
export class LiveStream {
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.source = null;
    this.connectedOnce = false;
    this.lastMessage = 0;
    this.backoffMs = 1000;
    this.watchdog = setInterval(() => this.check(), 5000);
    this.open();
  }

  open() {
    if (this.source) this.source.close();
    const source = new EventSource(this.url);
    this.source = source;
    this.status("connecting");
    source.addEventListener("hello", (e) => {
      const body = JSON.parse(e.data);
      syncClock(body.serverTime);
      this.lastMessage = Date.now();
      this.backoffMs = 1000;
      this.status("live");
      if (this.connectedOnce && this.handlers.onResync) this.handlers.onResync();
      this.connectedOnce = true;
    });
    source.addEventListener("ping", (e) => {
      syncClock(JSON.parse(e.data).serverTime);
      this.lastMessage = Date.now();
    });
    source.addEventListener("reading", (e) => {
      this.lastMessage = Date.now();
      this.handlers.onReading && this.handlers.onReading(JSON.parse(e.data));
    });
    source.addEventListener("event", (e) => {
      this.lastMessage = Date.now();
      this.handlers.onEvent && this.handlers.onEvent(JSON.parse(e.data));
    });
    // A battery or inverter changed (SoC, power, a command's status): the role views listen on the window.
    source.addEventListener("der", (e) => {
      this.lastMessage = Date.now();
      window.dispatchEvent(new CustomEvent("twin-der", { detail: JSON.parse(e.data) }));
    });
    source.onerror = () => {
      this.status("reconnecting");
      if (source.readyState === EventSource.CLOSED) this.retryLater();
    };
  }

  retryLater() {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 30000);
  }

  check() {
    if (this.source && this.source.readyState === EventSource.OPEN && Date.now() - this.lastMessage > 25000) {
      this.status("reconnecting");
      this.source.close();
      this.retryLater();
    }
  }

  status(state) {
    const el = document.getElementById("connection");
    if (el) {
      el.dataset.state = state;
      el.textContent = { live: "● live", connecting: "connecting…", reconnecting: "reconnecting…" }[state] || state;
    }
    this.handlers.onStatus && this.handlers.onStatus(state);
  }
}

export function showBanner(text, kind = "error") {
  const el = document.getElementById("banner");
  if (!el) return;
  if (!text) { el.hidden = true; el.textContent = ""; return; }
  el.hidden = false;
  el.dataset.kind = kind;
  el.textContent = text;
}

export function localMidnightIso() {
  const d = new Date(now());
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export const SEVERITY_RANK = { informational: 0, low: 1, medium: 2, high: 3, critical: 4 };

export function worstSeverity(events) {
  let worst = null;
  for (const e of events) if (worst === null || SEVERITY_RANK[e.severity] > SEVERITY_RANK[worst]) worst = e.severity;
  return worst;
}

// Hourly bars (a 24-value forecast or a day of aggregates); two series side by side when given.
export function bars(a, b, title) {
  const n = Math.max(a.length, b ? b.length : 0);
  const max = Math.max(1e-9, ...a.filter(isNumber), ...(b || []).filter(isNumber));
  const w = 480 / Math.max(n, 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 480 120");
  svg.setAttribute("class", "bars");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const add = (values, cls, offset, width) => values.forEach((v, i) => {
    if (!isNumber(v)) return;
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const h = (110 * v) / max;
    r.setAttribute("x", String(i * w + offset)); r.setAttribute("width", String(width));
    r.setAttribute("y", String(115 - h)); r.setAttribute("height", String(h)); r.setAttribute("class", cls);
    svg.append(r);
  });
  add(a, "a", 1, b ? w / 2 - 1 : w - 2);
  if (b) add(b, "b", w / 2, w / 2 - 1);
  return svg;
}


// -- who is logged in (access control on): name, role and a logout link in the header ------------------------
async function showWho() {
  const who = document.getElementById("who");
  if (!who) return;
  try {
    const me = await getJson("/api/me");
    if (!me.accessControl) { // development only: say it on every screen, not just in the server's log
      who.textContent = "NO LOGIN: access control is off, anyone reaching this page sees every member's data";
      who.dataset.access = "off";
      who.classList.add("who-off");
      who.hidden = false;
      return;
    }
    who.textContent = `${me.subject} (${me.role}) `;
    const out = document.createElement("a");
    out.href = "/logout";
    out.id = "logout";
    out.textContent = "Log out";
    who.append(out);
    who.hidden = false;
  } catch (_) { /* not logged in: the request above already sent the browser to /login */ }
}
showWho();
