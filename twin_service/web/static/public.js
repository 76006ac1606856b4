// The public screen: the community's headline results and its last 24 complete hours, nothing per member.
import { bars, el, formatUnit, getJson, showBanner } from "./common.js";

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const fixed = (v, d) => (isNumber(v) ? new Intl.NumberFormat(undefined, { minimumFractionDigits: d, maximumFractionDigits: d }).format(v) : "–");
const eur = new Intl.NumberFormat(undefined, { style: "currency", currency: "EUR" });

function tile(label, value, id) {
  return el("div", { class: "tile" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

async function load() {
  let body;
  try { body = await getJson("/api/views/public"); } catch (error) { showBanner(`Cannot read the community's figures: ${error.message}`); return; }
  showBanner(null);
  document.getElementById("community").textContent = body.community ? `· ${body.community}` : "";
  const withheld = document.getElementById("withheld");
  withheld.hidden = !body.withheld;
  withheld.textContent = body.withheld || "";
  const headline = document.getElementById("headline");
  const hours = document.getElementById("hours");
  if (body.withheld) { headline.hidden = true; hours.hidden = true; return; }
  const tiles = [tile("Members", String(body.members), "public-members")];
  if (body.totals) {
    const t = body.totals;
    tiles.push(tile(`Solar energy shared (${body.period.label})`, formatUnit(t.selfConsumedKwh, "kWh"), "public-self-consumed"),
      tile("Saved together", eur.format(t.savingsEur), "public-savings"),
      tile("CO₂ avoided", `${fixed(t.co2AvoidedKg, 0)} kg`, "public-co2"),
      tile("Trees (a year's absorption)", fixed(t.trees, 1), "public-trees"));
  }
  headline.replaceChildren(...tiles);
  headline.hidden = false;
  const settled = body.settled.length ? body.settled : null;
  const a = settled ? settled.map((h) => h.generationKwh) : body.hourly.map((h) => h.exportKwh);
  const b = settled ? settled.map((h) => h.consumptionKwh) : body.hourly.map((h) => h.importKwh);
  const first = (settled || body.hourly)[0];
  document.getElementById("hours-legend").textContent = settled
    ? `Generation (orange) and consumption (blue), kWh per hour, from ${new Date(first.start).toLocaleString()}`
    : `Exported (orange) and imported (blue) by the community's meters, kWh per hour, from ${first ? new Date(first.start).toLocaleString() : "–"}`;
  document.getElementById("hours-chart").replaceChildren(bars(a, b, "community energy per hour"));
  hours.hidden = false;
}

await load();
setInterval(load, 5 * 60 * 1000); // the figures change once an hour
