// The role views above the meter list: the member's energy, the manager's accounts and device health, the
// control centre's batteries and commands. The server decides what each role may read (/api/views/*); this file
// only draws it. Batteries and command results update live from the page's event stream ("twin-der").
import { bars, el, formatAge, formatPercent, formatUnit, getJson, meterState, now } from "./common.js";

const view = document.getElementById("view");
const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const eur = new Intl.NumberFormat(undefined, { style: "currency", currency: "EUR" });
const fixed = (v, digits) => (isNumber(v) ? new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v) : "–");

function tile(label, value, id) {
  return el("div", { class: "tile" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

function table(headers, rows, attrs = {}) {
  return el("div", { class: "scroll" }, el("table", { class: "values", ...attrs },
    el("thead", {}, el("tr", {}, ...headers.map((h, i) => el("th", i === 0 ? { style: "text-align:left" } : {}, h)))),
    el("tbody", {}, ...rows)));
}

function stateBadge(state) {
  return el("span", { class: "state", dataset: { state } }, { live: "Live", stale: "Stale", offline: "Offline", never: "Never seen" }[state] || state);
}

function notice(text, id) { return el("p", { class: "view-notice", id }, text); }

const sum = (values) => (values || []).filter(isNumber).reduce((s, v) => s + v, 0);

// -- member ----------------------------------------------------------------------------------------------------
function memberAccounts(body) {
  const card = el("section", { class: "card", id: "my-energy" }, el("h2", {}, "My energy"));
  if (!body.accounts) { card.append(notice(body.accountsUnavailable, "accounts-unavailable")); return card; }
  const a = body.accounts;
  card.append(el("p", { class: "muted" }, `${a.community} · ${a.period.label} (to ${new Date(a.period.end).toLocaleString()})`));
  for (const row of a.members) {
    card.append(el("section", { class: "totals", dataset: { account: row.member } },
      tile("Consumed", formatUnit(row.consumptionKwh, "kWh")),
      tile("From the shared PV", formatUnit(row.selfConsumedKwh, "kWh")),
      tile("Bought from the grid", formatUnit(row.gridImportKwh, "kWh")),
      tile("Saved", eur.format(row.savingsEur), "my-savings"),
      tile("CO₂ avoided", `${fixed(row.co2AvoidedKg, 1)} kg`, "my-co2"),
      tile("Trees (a year's absorption)", fixed(row.trees, 2), "my-trees")));
    if (row.missingHours) card.append(el("p", { class: "muted" }, `${row.missingHours} h without data are left out.`));
  }
  card.append(el("p", { class: "legend muted" }, `CO₂ factor ${a.co2.factorKgPerKwh} kg/kWh (${a.co2.source}); a tree absorbs ${a.co2.treeKgCo2PerYear} kg CO₂ a year.`));
  return card;
}

function memberForecasts(body) {
  const card = el("section", { class: "card", id: "my-forecast" }, el("h2", {}, "Next 24 hours (forecast)"));
  let any = false;
  for (const meter of body.meters) {
    const f = body.forecasts[meter] || {};
    if (!f.load && !f.pvGeneration) continue;
    any = true;
    const pv = f.pvGeneration ? f.pvGeneration.hourlyValues : [];
    const load = f.load ? f.load.hourlyValues : [];
    const from = (f.load || f.pvGeneration).validFrom;
    card.append(el("div", { dataset: { forecast: meter } },
      el("h3", {}, `${meter} · from ${new Date(from).toLocaleString()}`),
      el("p", {}, `PV ${formatUnit(sum(pv), "kWh")} (orange) · load ${formatUnit(sum(load), "kWh")} (blue)`),
      bars(pv, load, `PV and load forecast of ${meter}, kWh per hour`)));
  }
  if (!any) card.append(notice("No forecast for your meters yet (a forecast needs 7 days of history; docs/forecasts.md)."));
  return card;
}

function batteryRows(batteries) {
  return batteries.map((b) => el("tr", { dataset: { battery: b.device } },
    el("th", {}, b.device),
    el("td", { dataset: { role: "soc" } }, socBar(b.values.statusPercent)),
    el("td", { dataset: { role: "power" } }, formatUnit(b.values.batteryPower, "W")),
    el("td", {}, b.values.chargeState || "–"),
    el("td", { dataset: { role: "state" } }, stateBadge(b.state || "live"))));
}

function socBar(fraction) {
  const wrap = el("span", {}, el("span", { class: "soc" }, el("span", { style: `width:${isNumber(fraction) ? Math.round(fraction * 100) : 0}%` })), " ", formatPercent(fraction, 0));
  return wrap;
}

function renderMember(body) {
  view.dataset.view = "member";
  view.append(memberAccounts(body), memberForecasts(body));
  if (body.batteries.length) {
    view.append(el("section", { class: "card", id: "my-battery" }, el("h2", {}, "My battery"),
      table(["home", "state of charge", "power (+ charging)", "charge state", "reporting"], batteryRows(body.batteries))));
    window.addEventListener("twin-der", (e) => { // the stream carries only the member's own devices
      const b = e.detail;
      const tr = b.type === "BatteryStatus" && view.querySelector(`[data-battery="${CSS.escape(b.device)}"]`);
      if (!tr) return;
      tr.querySelector('[data-role="soc"]').replaceChildren(socBar(b.values.statusPercent));
      tr.querySelector('[data-role="power"]').textContent = formatUnit(b.values.batteryPower, "W");
    });
  }
}

// -- manager ---------------------------------------------------------------------------------------------------
function renderManager(body) {
  view.dataset.view = view.dataset.view ? `${view.dataset.view} manager` : "manager";
  const accounts = el("section", { class: "card", id: "accounts" }, el("h2", {}, "Accounts"));
  if (!body.accounts) accounts.append(notice(body.accountsUnavailable, "accounts-unavailable"));
  else {
    const a = body.accounts;
    accounts.append(el("p", { class: "muted" }, `${a.community} · ${a.period.label}`));
    const row = (r, label) => el("tr", { dataset: { account: label } }, el("th", {}, label),
      ...[r.consumptionKwh, r.assignedKwh, r.selfConsumedKwh, r.gridImportKwh, r.surplusKwh].map((v) => el("td", {}, fixed(v, 1))),
      el("td", {}, eur.format(r.savingsEur)), el("td", {}, fixed(r.co2AvoidedKg, 1)), el("td", {}, fixed(r.trees, 2)),
      el("td", {}, r.paybackYears ? `${fixed(r.paybackYears, 1)} y` : "–"), el("td", {}, String(r.missingHours ?? "")));
    accounts.append(table(["member", "consumed kWh", "assigned kWh", "self-consumed kWh", "grid kWh", "surplus kWh", "saved", "CO₂ kg", "trees", "payback", "gap h"],
      [...a.members.map((r) => row(r, r.member)), row(a.totals, "community")]));
    for (const c of a.coefficients) {
      accounts.append(el("h3", {}, `Coefficients of ${c.installation} (${c.cau}) · ${c.source} · at ${new Date(c.at).toLocaleString()}`),
        table(["member", "β"], Object.entries(c.shares).map(([m, beta]) => el("tr", { dataset: { share: m } }, el("th", {}, m), el("td", {}, formatPercent(beta, 2))))));
    }
    for (const note of a.notes || []) accounts.append(el("p", { class: "muted" }, note));
  }
  if (body.accounts) accounts.append(el("p", { class: "legend muted" }, "Payback here: investment / this period's savings scaled to a year (a winter month understates a year's savings); the revision below gives it on an expected year."));
  const counts = body.healthCounts;
  const health = el("section", { class: "card", id: "health" }, el("h2", {}, "Devices"),
    el("p", {}, ["live", "stale", "offline", "never"].map((s) => `${counts[s] || 0} ${s}`).join(" · ")),
    table(["device", "kind", "state", "last seen", "device state", "control"], body.health.map((h) => el("tr", { dataset: { health: `${h.device}:${h.kind}`, state: h.state } },
      el("th", {}, h.device), el("td", {}, h.kind), el("td", {}, stateBadge(h.state)),
      el("td", { title: h.lastSeen || "" }, h.lastSeen ? formatAge((now() - Date.parse(h.lastSeen)) / 1000) : "never"),
      el("td", {}, h.deviceState || "–"), el("td", {}, h.controlState || "")))));
  const events = el("section", { class: "card", id: "anomalies" }, el("h2", {}, `Open power-quality events (${body.openEvents.length})`),
    ...body.openEvents.map((e) => el("div", { class: "event", dataset: { severity: e.severity, status: e.status } },
      el("span", { class: "severity", dataset: { severity: e.severity } }, e.severity), el("strong", {}, e.device),
      el("span", { class: "event-when" }, new Date(e.dateDetected).toLocaleString()), el("span", { class: "event-text" }, e.description || ""))));
  view.append(accounts, ...(body.accounts ? [revisionCard()] : []), health, events);
}

// The coefficient revision: computed on demand (an LP over a year), read only; adopting is the CLI's step.
function revisionCard() {
  const card = el("section", { class: "card", id: "revision" }, el("h2", {}, "Coefficient revision"),
    el("p", { class: "muted" }, "The agreement in force against new coefficients, both settled on the year expected from this period's history. Nothing is sent to the distributor from here: adopt them with the command shown."));
  const select = el("select", { id: "revision-method", "aria-label": "method" },
    ...["optimal", "proportional", "fixed", "optimal-mean"].map((m) => el("option", { value: m }, m)));
  const run = el("button", { type: "button", id: "revision-run" }, "Compare");
  const out = el("div", { id: "revision-result" });
  run.addEventListener("click", async () => {
    run.disabled = true;
    out.replaceChildren(notice("computing…"));
    try { out.replaceChildren(...revisionBody(await getJson(`/api/views/manager/revision?method=${encodeURIComponent(select.value)}`))); }
    catch (error) { out.replaceChildren(notice(`The revision could not be loaded: ${error.message}`, "revision-error")); }
    run.disabled = false;
  });
  card.append(el("div", { class: "command" }, select, run), out);
  return card;
}

function revisionBody(body) {
  if (!body.revision) return [notice(body.unavailable, "revision-unavailable")];
  const years = (v) => (isNumber(v) ? `${fixed(v, 1)} y` : "–");
  const signed = (v) => `${v > 0 ? "+" : ""}${eur.format(v)}`;
  const out = [];
  for (const inst of body.revision.installations) {
    out.push(el("h3", {}, `${inst.installation} (${inst.cau}) · ${inst.year}: ${inst.inForce} → ${inst.method}`),
      el("p", {}, `Expected generation ${fixed(inst.expectedGenerationKwh, 0)} kWh; self-consumed ${fixed(inst.selfConsumedKwh, 0)} → ${fixed(inst.proposedSelfConsumedKwh, 0)} kWh; savings ${eur.format(inst.savingsEur)} → ${eur.format(inst.proposedSavingsEur)} a year.`),
      table(["member", "self-consumed kWh now", `${inst.method} kWh`, "saves now", `${inst.method} saves`, "change", "payback now", `payback ${inst.method}`],
        inst.members.map((m) => el("tr", { dataset: { revision: m.member } }, el("th", {}, m.member),
          el("td", {}, fixed(m.selfConsumedKwh, 1)), el("td", {}, fixed(m.proposedSelfConsumedKwh, 1)),
          el("td", {}, eur.format(m.savingsEur)), el("td", {}, eur.format(m.proposedSavingsEur)), el("td", {}, signed(m.changeEur)),
          el("td", {}, years(m.paybackYears)), el("td", {}, years(m.proposedPaybackYears))))));
    for (const v of inst.violations) out.push(el("p", { class: "view-notice" }, `The ${inst.method} coefficients break the rules: ${v}`));
    for (const v of inst.inForceViolations) out.push(el("p", { class: "muted" }, `The agreement in force: ${v}`));
    for (const n of inst.notes) out.push(el("p", { class: "muted" }, n));
    if (inst.adopt) out.push(el("p", {}, "To adopt (writes the distributor's file): ", el("code", { class: "adopt" }, inst.adopt)));
  }
  out.push(el("p", { class: "legend muted" }, "Payback: investment / expected yearly savings, undiscounted (simple payback, NREL/TP-462-5173)."));
  return out;
}

// -- control centre --------------------------------------------------------------------------------------------
const der = new Map(); // entity id -> { row, tr }

function commandCell(entity, name, unit, placeholder) {
  const input = el("input", { type: "number", step: "any", placeholder, "aria-label": `${name} (${unit})`, dataset: { command: name } });
  const status = el("span", { class: "cmd-status", dataset: { role: `status-${name}` } }, "");
  const send = async (value) => {
    status.dataset.status = "sending"; status.textContent = "sending…";
    const response = await fetch("/api/control/commands", { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ entity, command: name, value }) });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) window.location.assign("/login");
    if (response.ok) { status.dataset.status = "sent"; status.textContent = "sent, waiting for the device…"; }
    else { status.dataset.status = "refused"; status.textContent = `refused: ${body.detail || response.status}`; }
  };
  const go = el("button", { type: "button", dataset: { send: name } }, "Send");
  go.addEventListener("click", () => { if (input.value !== "") send(Number(input.value)); });
  const release = el("button", { type: "button", title: "back to automatic", dataset: { release: name } }, "Auto");
  release.addEventListener("click", () => send(null));
  return el("td", {}, el("div", { class: "command" }, input, el("span", { class: "muted" }, unit), go, release), status);
}

function showCommandStatus(item) {
  for (const [name, c] of Object.entries(item.row.commands || {})) {
    const s = item.tr.querySelector(`[data-role="status-${name}"]`);
    if (!s || !c.status || c.status === "UNKNOWN") continue;
    s.dataset.status = c.status;
    const info = c.info === null || c.info === undefined ? "" : typeof c.info === "string" ? c.info : JSON.stringify(c.info);
    s.textContent = `${c.status}${info ? `: ${info}` : ""}`;
  }
}

function drawDer(item) {
  const { row, tr } = item;
  const v = row.values;
  const { state, ageS } = meterState(row.observedAt, row.periodS);
  row.state = state;
  tr.dataset.state = state;
  const set = (role, content) => { const c = tr.querySelector(`[data-role="${role}"]`); if (c) c.replaceChildren(content); };
  if (row.type === "BatteryStatus") {
    set("soc", socBar(v.statusPercent));
    set("power", formatUnit(v.batteryPower, "W"));
    set("mode", `${v.chargeState || "–"} · ${v.controlState || "–"}${row.fleetControlState ? ` · fleet: ${row.fleetControlState}` : ""}`);
  } else {
    set("power", formatUnit(isNumber(v.activePower) ? v.activePower * 1000 : null, "W"));
    set("mode", `${v.inverterOperatingState || "–"} · cap ${isNumber(v.pvPowerLimitActive) ? `${v.pvPowerLimitActive} %` : "–"} · ${v.controlState || "–"}`);
  }
  set("state", stateBadge(state));
  set("age", formatAge(ageS));
  showCommandStatus(item);
}

function fleetMean() {
  const socs = [...der.values()].filter((d) => d.row.type === "BatteryStatus" && d.row.state === "live" && isNumber(d.row.values.statusPercent)).map((d) => d.row.values.statusPercent);
  const out = document.getElementById("fleet-mean");
  if (out) out.textContent = socs.length ? formatPercent(sum(socs) / socs.length, 1) : "–";
  const count = document.getElementById("fleet-count");
  if (count) count.textContent = String(socs.length);
}

function renderControl(body) {
  view.dataset.view = view.dataset.view ? `${view.dataset.view} control` : "control";
  const batteries = body.batteries.map((b) => {
    const tr = el("tr", { dataset: { battery: b.device } }, el("th", {}, b.device), el("td", { dataset: { role: "soc" } }),
      el("td", { dataset: { role: "power" } }), el("td", { dataset: { role: "mode" } }), el("td", { dataset: { role: "state" } }),
      el("td", { dataset: { role: "age" } }), commandCell(b.id, "batteryPowerSetpoint", "W", "+ charge / − discharge"));
    der.set(b.id, { row: b, tr });
    return tr;
  });
  const inverters = body.inverters.map((p) => {
    const tr = el("tr", { dataset: { inverter: p.device } }, el("th", {}, p.device), el("td", { dataset: { role: "power" } }),
      el("td", { dataset: { role: "mode" } }), el("td", { dataset: { role: "state" } }), el("td", { dataset: { role: "age" } }),
      commandCell(p.id, "exportLimit", "W", "export ≤"), commandCell(p.id, "pvPowerLimit", "%", "0–100"));
    der.set(p.id, { row: p, tr });
    return tr;
  });
  const controller = isNumber(body.controllerMeanStatusPercent) ? ` · the fleet controller's mean ${formatPercent(body.controllerMeanStatusPercent, 1)}` : "";
  view.append(
    el("section", { class: "totals", id: "fleet" }, tile("Batteries", String(body.batteries.length)),
      tile("Fleet mean SoC", "–", "fleet-mean"), tile("Reporting now", "–", "fleet-count")),
    el("section", { class: "card", id: "batteries" }, el("h2", {}, "Batteries"), el("p", { class: "muted" }, `State of charge per home; the mean counts the batteries reporting now${controller}.`),
      batteries.length ? table(["home", "state of charge", "power (+ charging)", "mode", "reporting", "last read", "battery power setpoint"], batteries)
        : notice("No BatteryStatus entity in this tenant (run energytwin demo --homes N, or the SunSpec bridge).")),
    el("section", { class: "card", id: "inverters" }, el("h2", {}, "PV inverters"),
      inverters.length ? table(["home", "AC power", "state", "reporting", "last read", "export limit", "curtailment"], inverters)
        : notice("No PhotovoltaicMeasurement entity in this tenant.")));
  for (const item of der.values()) drawDer(item);
  fleetMean();
  window.addEventListener("twin-der", (e) => {
    const item = der.get(e.detail.id);
    if (!item) return;
    item.row = { ...item.row, ...e.detail, values: { ...item.row.values, ...e.detail.values }, periodS: item.row.periodS };
    drawDer(item);
    fleetMean();
  });
  setInterval(() => { for (const item of der.values()) drawDer(item); fleetMean(); }, 1000);
}

// -- which view ------------------------------------------------------------------------------------------------
async function start() {
  let me;
  try { me = await getJson("/api/me"); } catch (_) { return; }
  const role = me.accessControl ? me.role : "admin"; // no login (development): every view
  try {
    if (role === "member") renderMember(await getJson("/api/views/member"));
    if (role === "manager" || role === "admin") renderManager(await getJson("/api/views/manager"));
    if (role === "control-centre" || role === "admin") renderControl(await getJson("/api/views/control"));
  } catch (error) {
    view.append(notice(`This view could not be loaded: ${error.message}`, "view-error"));
  }
}
start();
