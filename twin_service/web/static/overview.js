// The overview: every meter of the tenant with its state, last reading age, open events, power and energy today.
import {
  LiveStream, PeriodTracker, STATE_LABEL, el, formatAge, formatMeasure, formatUnit, getJson, loadMeasures,
  localMidnightIso, meterState, showBanner, worstSeverity,
} from "./common.js";

const meters = new Map(); // device -> { reading, period, counterAtDayStart, openEvents: Map, card }
let dayStart = null;

function energyToday(row, attr) {
  const current = row.reading.values[attr];
  const start = row.counterAtDayStart[attr];
  if (typeof current !== "number") return null;
  return typeof start === "number" ? Math.max(0, current - start) : 0;
}

function card(device) {
  const link = el("a", { class: "meter-card", href: `/meters/${encodeURIComponent(device)}`, dataset: { device } },
    el("div", { class: "meter-head" },
      el("span", { class: "meter-name" }, device),
      el("span", { class: "state", dataset: { role: "state", state: "unknown" } }, "…")),
    el("div", { class: "meter-power", dataset: { role: "power" } }, "–"),
    el("dl", { class: "meter-facts" },
      el("dt", {}, "Last reading"), el("dd", { dataset: { role: "age" } }, "–"),
      el("dt", {}, "Energy today"), el("dd", { dataset: { role: "energy" } }, "–"),
      el("dt", {}, "Voltage"), el("dd", { dataset: { role: "voltage" } }, "–"),
      el("dt", {}, "Open PQ events"), el("dd", { dataset: { role: "events" } }, "–")));
  return link;
}

function part(row, role) { return row.card.querySelector(`[data-role="${role}"]`); }

function render(row) {
  const v = row.reading.values;
  part(row, "power").textContent = formatMeasure("totalActivePower", v.totalActivePower);
  const imported = energyToday(row, "totalActiveEnergyImport");
  const exported = energyToday(row, "totalActiveEnergyExport");
  part(row, "energy").textContent = `↓ ${formatUnit(imported, "kWh")} · ↑ ${formatUnit(exported, "kWh")}`;
  part(row, "energy").title = "imported · exported since local midnight";
  const volts = v.phaseVoltage || {};
  part(row, "voltage").textContent = ["L1", "L2", "L3"].map((p) => formatMeasure("phaseVoltage", volts[p]).replace(" V", ""))
    .join(" / ") + " V";
  const events = [...row.openEvents.values()];
  const eventsEl = part(row, "events");
  eventsEl.textContent = events.length ? `${events.length} (${worstSeverity(events)})` : "none";
  eventsEl.dataset.severity = events.length ? worstSeverity(events) : "";
  tick(row);
}

function tick(row) {
  const { state, ageS } = meterState(row.reading.observedAt, row.period.periodS);
  const stateEl = part(row, "state");
  stateEl.dataset.state = state;
  stateEl.textContent = STATE_LABEL[state];
  part(row, "age").textContent = formatAge(ageS);
  row.card.dataset.state = state;
}

function totals() {
  let live = 0; let power = 0; let events = 0;
  for (const row of meters.values()) {
    const { state } = meterState(row.reading.observedAt, row.period.periodS);
    if (state === "live") { live += 1; power += row.reading.values.totalActivePower || 0; }
    events += row.openEvents.size;
  }
  document.getElementById("count-meters").textContent = meters.size;
  document.getElementById("count-live").textContent = live;
  document.getElementById("site-power").textContent = formatUnit(power, "W");
  document.getElementById("site-power").title = "sum over live meters";
  document.getElementById("count-events").textContent = events;
  document.getElementById("empty").hidden = meters.size > 0;
}

function upsert(device, reading, periodS) {
  let row = meters.get(device);
  if (!row) {
    row = { reading, period: new PeriodTracker(periodS), counterAtDayStart: {}, openEvents: new Map(), card: card(device) };
    meters.set(device, row);
    const list = document.getElementById("meters");
    const after = [...list.children].find((c) => c.dataset.device > device);
    list.insertBefore(row.card, after || null);
  }
  return row;
}

async function load() {
  dayStart = localMidnightIso();
  try {
    const body = await getJson(`/api/meters?dayStart=${encodeURIComponent(dayStart)}`);
    document.getElementById("tenant").textContent = body.tenant ? `· tenant ${body.tenant}` : "";
    for (const item of body.meters) {
      const row = upsert(item.device, item.reading, item.periodS);
      row.reading = item.reading;
      if (item.periodS) row.period.periodS = item.periodS;
      row.period.observe(item.reading.observedAt);
      row.counterAtDayStart = item.counterAtDayStart;
      row.openEvents = new Map(item.openEvents.map((e) => [e.id, e]));
      render(row);
    }
    totals();
    showBanner(null);
  } catch (error) {
    showBanner(`Cannot read the twin: ${error.message}. Retrying…`);
    setTimeout(load, 5000);
  }
}

function onReading(reading) {
  if (!meters.has(reading.device)) { load(); return; } // a new meter: load its energy and events too
  const row = meters.get(reading.device);
  const values = { ...row.reading.values, ...reading.values };
  row.reading = { ...reading, values };
  row.period.observe(reading.observedAt);
  render(row);
  totals();
}

function onEvent(event) {
  const row = meters.get(event.device);
  if (!row) return;
  if (event.status === "open") row.openEvents.set(event.id, event);
  else row.openEvents.delete(event.id);
  render(row);
  totals();
}

await loadMeasures();
await load();
new LiveStream("/api/stream", { onReading, onEvent, onResync: load });
setInterval(() => {
  for (const row of meters.values()) tick(row);
  totals();
  if (localMidnightIso() !== dayStart) load(); // a new day: energy counts from the new midnight
}, 1000);
