// One meter: phasors, per-phase values, line-to-line, unbalance, energy counters, the last hour, PQ events; live.
import {
  LiveStream, PHASES, PeriodTracker, STATE_LABEL, describe, el, formatAge, formatClock, formatDateTime,
  formatMeasure, formatPercent, formatUnit, getJson, loadMeasures, meterState, now, showBanner,
} from "./common.js";

const device = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const HOUR_MS = 3600 * 1000;
const COLORS = { L1: "#a0522d", L2: "#1f2937", L3: "#7c8594" }; // IEC 60445: brown, black, grey

const page = {
  reading: null,
  period: new PeriodTracker(null),
  open: new Map(),
  recent: new Map(),
  power: [], // [t_ms, W]
  voltage: { L1: [], L2: [], L3: [] }, // [t_ms, V]
  historyGapMs: 30000,
};

// -- tables --------------------------------------------------------------------------------------------------
const PHASE_ROWS = [
  ["phaseVoltage", "Voltage"], ["current", "Current"], ["activePower", "Active power"],
  ["reactivePower", "Reactive power"], ["apparentPower", "Apparent power"], ["powerFactor", "Power factor"],
  ["thdVoltage", "THD voltage"], ["thdCurrent", "THD current"], ["phaseCurrentAngle", "Angle V→I"],
];
const LINE_ROWS = [["phaseToPhaseVoltage", "Voltage"], ["phaseVoltageAngle", "Angle between phases"]];
const ENERGY_ROWS = [
  ["activeEnergyImport", "Active import", "totalActiveEnergyImport"],
  ["activeEnergyExport", "Active export", "totalActiveEnergyExport"],
  ["reactiveEnergyImport", "Reactive import"], ["reactiveEnergyExport", "Reactive export"],
  ["apparentEnergyImport", "Apparent import"], ["apparentEnergyExport", "Apparent export"],
];

function buildTable(id, columns, rows) {
  const table = document.getElementById(id);
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", {}, ""), ...columns.map((c) => el("th", {}, c)))));
  const body = el("tbody");
  for (const [attr, label, totalAttr] of rows) {
    const cells = columns.map((key) => {
      const cellAttr = key === "Total" ? totalAttr : attr;
      return el("td", { dataset: { cell: cellAttr ? (key === "Total" ? cellAttr : `${attr}.${key}`) : "" } }, cellAttr ? "–" : "");
    });
    body.append(el("tr", {}, el("th", { scope: "row", title: describe(attr) }, label), ...cells));
  }
  table.append(body);
}

function setText(selector, text) {
  for (const node of document.querySelectorAll(selector)) if (node.textContent !== text) node.textContent = text;
}

function renderValues() {
  const v = page.reading.values;
  for (const node of document.querySelectorAll("[data-cell]")) {
    const key = node.dataset.cell;
    if (!key) continue;
    const [attr, sub] = key.split(".");
    const value = sub ? (v[attr] || {})[sub] : v[attr];
    const text = formatMeasure(attr, value);
    if (node.textContent !== text) node.textContent = text;
  }
  for (const attr of ["totalActivePower", "totalReactivePower", "totalApparentPower", "totalPowerFactor", "frequency"]) {
    setText(`[data-field="${attr}"]`, formatMeasure(attr, v[attr]));
  }
  const d = page.reading.derived || {};
  setText('[data-field="voltageUnbalance"]', formatPercent(d.voltageUnbalance, 2));
  setText('[data-field="currentUnbalance"]', formatPercent(d.currentUnbalance, 1));
  drawPhasors();
}

// -- phasor diagram ------------------------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, val] of Object.entries(attrs)) node.setAttribute(k, val);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawPhasors() {
  const root = document.getElementById("phasors");
  const v = page.reading.values;
  const d = page.reading.derived || {};
  const volts = v.phaseVoltage || {};
  const amps = v.current || {};
  const vAngles = d.voltagePhasorDeg || { L1: 0, L2: -120, L3: 120 };
  const iAngles = d.currentPhasorDeg || {};
  const vMax = Math.max(1, ...PHASES.map((p) => volts[p] || 0));
  const iMax = Math.max(1e-9, ...PHASES.map((p) => amps[p] || 0));
  const nodes = [];
  const defs = svg("defs");
  for (const p of PHASES) {
    const marker = svg("marker", { id: `arrow-${p}`, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7",
      markerHeight: "7", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: COLORS[p] }));
    defs.append(marker);
  }
  nodes.push(defs);
  for (const r of [40, 80, 120]) nodes.push(svg("circle", { cx: 0, cy: 0, r, class: "grid" }));
  nodes.push(svg("line", { x1: -135, y1: 0, x2: 135, y2: 0, class: "grid" }));
  nodes.push(svg("line", { x1: 0, y1: -135, x2: 0, y2: 135, class: "grid" }));
  const arrow = (p, length, angleDeg, dashed, label) => {
    const a = (angleDeg * Math.PI) / 180;
    const x = length * Math.cos(a);
    const y = -length * Math.sin(a);
    nodes.push(svg("line", { x1: 0, y1: 0, x2: x.toFixed(1), y2: y.toFixed(1), stroke: COLORS[p],
      "stroke-width": dashed ? 2 : 3, "stroke-dasharray": dashed ? "6 4" : "none", "marker-end": `url(#arrow-${p})`,
      class: dashed ? "phasor current" : "phasor voltage" }));
    const off = dashed ? 12 : 0; // current labels step aside from a voltage phasor at the same angle
    const lx = (length + 14) * Math.cos(a) + off * Math.sin(a);
    const ly = -(length + 14) * Math.sin(a) + off * Math.cos(a);
    nodes.push(svg("text", { x: lx.toFixed(1), y: (ly + 4).toFixed(1), fill: COLORS[p], class: "phasor-label",
      "text-anchor": "middle" }, label));
  };
  for (const p of PHASES) {
    if (typeof volts[p] === "number") arrow(p, (120 * volts[p]) / vMax, vAngles[p] ?? 0, false, `V${p.slice(1)}`);
  }
  for (const p of PHASES) {
    if (typeof amps[p] === "number" && typeof iAngles[p] === "number" && amps[p] > 0) {
      arrow(p, Math.max(12, (90 * amps[p]) / iMax), iAngles[p], true, `I${p.slice(1)}`);
    }
  }
  root.replaceChildren(...nodes);
  const legend = document.getElementById("phasor-legend");
  legend.replaceChildren(...PHASES.map((p) => el("li", { style: `color:${COLORS[p]}` },
    el("strong", {}, p), ` V ${formatMeasure("phaseVoltage", volts[p])} ∠${formatUnit(vAngles[p], "°")}`,
    ` · I ${formatMeasure("current", amps[p])} ∠${formatUnit(iAngles[p], "°")}`)));
}

// -- charts --------------------------------------------------------------------------------------------------
function niceStep(span, count) {
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function drawChart(id, series, format) {
  const root = document.getElementById(id);
  const width = Math.max(280, Math.round(root.clientWidth || 720));
  const height = 200;
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const pad = { l: 64, r: 12, t: 10, b: 24 };
  const t1 = now();
  const t0 = t1 - HOUR_MS;
  let lo = Infinity; let hi = -Infinity;
  for (const s of series) for (const [t, y] of s.points) if (t >= t0) { lo = Math.min(lo, y); hi = Math.max(hi, y); }
  const nodes = [];
  if (!Number.isFinite(lo)) {
    nodes.push(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no history yet"));
    root.replaceChildren(...nodes);
    return;
  }
  const minSpan = Math.max(Math.abs(hi), Math.abs(lo)) * 0.01 || 1; // a flat line sits mid-chart, not on noise
  if (hi - lo < minSpan) { const mid = (hi + lo) / 2; hi = mid + minSpan / 2; lo = mid - minSpan / 2; }
  const margin = (hi - lo) * 0.08;
  lo -= margin; hi += margin;
  const step = niceStep(hi - lo, 4);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (height - pad.t - pad.b);
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    nodes.push(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    nodes.push(svg("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, format(v, step)));
  }
  // time ticks every 10, 15, 20 or 30 minutes: as many as fit with labels at least 70 px apart
  const plotWidth = width - pad.l - pad.r;
  const tickMin = [10, 15, 20, 30].find((m) => (plotWidth * m) / 60 >= 70) || 30;
  const tickMs = tickMin * 60 * 1000;
  for (let t = Math.ceil(t0 / tickMs) * tickMs; t <= t1; t += tickMs) {
    nodes.push(svg("line", { x1: x(t), x2: x(t), y1: pad.t, y2: height - pad.b, class: "grid" }));
    nodes.push(svg("text", { x: x(t), y: height - 6, "text-anchor": "middle", class: "axis" },
      new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })));
  }
  for (const s of series) {
    // A gap longer than three points' spacing (the meter was silent) breaks the line instead of bridging it.
    let d = ""; let prev = null;
    for (const [t, v] of s.points) {
      if (t < t0) continue;
      d += `${prev === null || t - prev > page.historyGapMs ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      prev = t;
    }
    nodes.push(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.8, class: "series" }));
  }
  root.replaceChildren(...nodes);
}

// Axis labels carry as many decimals as the tick step needs, in kW once the values reach a kilowatt.
function axisLabel(v, step, unit) {
  const kilo = unit === "W" && Math.abs(v) >= 1000;
  const scale = kilo ? 1000 : 1;
  const digits = Math.max(0, Math.min(3, -Math.floor(Math.log10(step / scale) + 1e-9)));
  const text = new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v / scale);
  return `${text} ${kilo ? "k" : ""}${unit}`;
}

function drawCharts() {
  drawChart("chart-power", [{ color: "#2563eb", points: page.power }], (v, step) => axisLabel(v, step, "W"));
  drawChart("chart-voltage", PHASES.map((p) => ({ color: COLORS[p], points: page.voltage[p] })),
    (v, step) => axisLabel(v, step, "V"));
}

function appendLive(reading) {
  const t = Date.parse(reading.observedAt);
  if (Number.isNaN(t)) return;
  const v = reading.values;
  const last = page.power.length ? page.power[page.power.length - 1][0] : -Infinity;
  if (t <= last) return;
  if (typeof v.totalActivePower === "number") page.power.push([t, v.totalActivePower]);
  for (const p of PHASES) {
    const volts = (v.phaseVoltage || {})[p];
    if (typeof volts === "number") page.voltage[p].push([t, volts]);
  }
  const cutoff = now() - HOUR_MS;
  while (page.power.length && page.power[0][0] < cutoff) page.power.shift();
  for (const p of PHASES) while (page.voltage[p].length && page.voltage[p][0][0] < cutoff) page.voltage[p].shift();
}

async function loadHistory() {
  const body = await getJson(`/api/meters/${encodeURIComponent(device)}/history?minutes=60`);
  const half = (body.periodS * 1000) / 2;
  const points = (rows) => rows.map(([t, avg]) => [Date.parse(t) + half, avg]);
  page.historyGapMs = Math.max(3 * body.periodS * 1000, 3 * 1000 * (page.period.periodS || 1));
  page.power = points(body.totalActivePower);
  for (const p of PHASES) page.voltage[p] = points(body.phaseVoltage[p] || []);
  if (page.reading) appendLive(page.reading);
  drawCharts();
}

// -- events --------------------------------------------------------------------------------------------------
function eventRow(e) {
  const started = e.validFrom || e.dateDetected;
  const when = e.status === "open" ? `since ${formatDateTime(started)}`
    : `${formatDateTime(started)} – ${formatClock(e.validTo)}`;
  const measured = typeof e.measuredValue === "number"
    ? `${formatMeasure(e.anomalousProperty, e.measuredValue)} (limit ${formatMeasure(e.anomalousProperty, e.thresholdValue)})` : "";
  return el("div", { class: "event", dataset: { eventId: e.id, severity: e.severity, status: e.status } },
    el("span", { class: "severity", dataset: { severity: e.severity } }, e.severity),
    el("span", { class: "event-what" }, el("strong", {}, `${e.name || e.anomalousProperty} · ${e.phase}`), " ", measured),
    el("span", { class: "event-when muted" }, when),
    el("span", { class: "event-text" }, e.description));
}

function renderEvents() {
  const byTime = (a, b) => (b.dateDetected > a.dateDetected ? 1 : -1);
  const open = [...page.open.values()].sort(byTime);
  const recent = [...page.recent.values()].sort(byTime).slice(0, 20);
  const openEl = document.getElementById("events-open");
  openEl.replaceChildren(...(open.length ? open.map(eventRow) : [el("p", { class: "muted" }, "No open event.")]));
  const recentEl = document.getElementById("events-recent");
  recentEl.replaceChildren(...(recent.length ? recent.map(eventRow) : [el("p", { class: "muted" }, "None.")]));
}

function onEvent(e) {
  if (e.device !== device) return;
  if (e.status === "open") { page.open.set(e.id, e); page.recent.delete(e.id); } else { page.open.delete(e.id); page.recent.set(e.id, e); }
  renderEvents();
}

// -- state and live updates ----------------------------------------------------------------------------------
function tick() {
  if (!page.reading) return;
  const { state, ageS } = meterState(page.reading.observedAt, page.period.periodS);
  const badge = document.getElementById("meter-state");
  badge.dataset.state = state;
  badge.textContent = STATE_LABEL[state];
  document.body.dataset.meterState = state;
  setText("#last-age", formatAge(ageS));
  setText("#last-time", `(${formatDateTime(page.reading.observedAt)})`);
  if (page.period.periodS) setText("#period", `· reports every ${formatUnit(page.period.periodS, "s")}`);
  if (state === "stale") showBanner(`No reading from ${device} for ${formatAge(ageS).replace(" ago", "")}: the values shown are the last ones received.`, "warn");
  else if (state === "offline") showBanner(`${device} is offline: last reading ${formatDateTime(page.reading.observedAt)}. The values shown are from then.`, "error");
  else showBanner(null);
}

function onReading(reading) {
  if (reading.device !== device) return;
  const values = { ...(page.reading ? page.reading.values : {}), ...reading.values };
  page.reading = { ...reading, values };
  page.period.observe(reading.observedAt);
  renderValues();
  appendLive(reading);
  drawCharts();
  tick();
}

async function load() {
  try {
    const body = await getJson(`/api/meters/${encodeURIComponent(device)}`);
    page.reading = body.reading;
    if (body.periodS) page.period.periodS = body.periodS;
    page.period.observe(body.reading.observedAt);
    page.open = new Map(body.events.open.map((e) => [e.id, e]));
    page.recent = new Map(body.events.recent.map((e) => [e.id, e]));
    renderValues();
    renderEvents();
    tick();
    await loadHistory();
  } catch (error) {
    if (error.status === 404) showBanner(`No meter ${device} in this tenant yet: it appears as soon as it reports.`, "warn");
    else showBanner(`Cannot read the twin: ${error.message}. Retrying…`);
    setTimeout(load, 5000);
  }
}

document.getElementById("meter-name").textContent = device;
document.title = `energytwin · ${device}`;
await loadMeasures();
buildTable("phase-table", ["L1", "L2", "L3", "N"], PHASE_ROWS);
for (const row of document.querySelectorAll('#phase-table td[data-cell$=".N"]')) {
  if (!row.dataset.cell.startsWith("current.")) { row.dataset.cell = ""; row.textContent = ""; }
}
buildTable("line-table", ["L12", "L23", "L31"], LINE_ROWS);
buildTable("energy-table", ["L1", "L2", "L3", "Total"], ENERGY_ROWS);
await load();
new LiveStream(`/api/stream?device=${encodeURIComponent(device)}`, { onReading, onEvent, onResync: load });
setInterval(tick, 1000);
setInterval(() => loadHistory().catch(() => {}), 5 * 60 * 1000); // settle live points into 10 s averages
addEventListener("resize", () => page.reading && drawCharts());
