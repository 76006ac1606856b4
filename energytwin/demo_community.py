"""The demo's energy community: one member per simulated meter sharing a simulated roof, so the page's member and
manager views show kWh, EUR, CO2 and trees as soon as `energytwin demo` starts.

Two halves, because the page reads its community file when it starts (`--community`, which the demo sets as
`StackConfig.community`: energytwin/page_login.py with access control, energytwin/page_web.py without), before
any demo part runs:

* `write_demo_community(folder, ...)` writes `community.yaml` (the format of docs/community.md, validated by
  community.config) and the roof's hourly `roof.csv` into the demo's data dir, before the stack starts. Members
  are the demo meters (`meter: meter-001`, ...: their accounts come from the twin's history, as a real
  community's do), each with a CUPS (valid control letters) and the tariff below; the installation is the
  simulated households' roof (simulation/households.py, the roof the demo's forecasts give each meter: 1.5 kWp a
  member, Madrid), with no meter of its own: its generation is the simulation's, written for this month and the
  next. Fixed shares by investment (equal here), no coefficient file.
* `DemoCommunity`, a demo part that runs before the meters, gives each member's meter this month's history up to
  the moment the demo started: the consumption of the simulated household the forecasts use for that meter
  (energytwin/forecast_targets.py `SimulatedHistory`, same seed and position), as energy counters every 15 min
  and one at the start itself (the community's 15-min gap rule reads them as complete hours), each instance
  marked `historySource: simulation`. A fresh twin holds minutes of readings, not a month; without this the
  accounts would stay empty until the first complete daylight hour. A meter whose twin already holds this month
  (an earlier demo run on the same data dir) is left as it is.
* The simulated meters restart their counters at zero (a fresh ADE9000 and flash). Written straight into the
  broker, the backfilled counters are unknown to the IoT Agent, so its counter-reset rule
  (twin_service/agent/continuity.py: a value lower than the last one the meter sent continues from it) would not
  see the step back, and the hour the demo started would be a counter reset, missing in the accounts. So the part
  then publishes, over MQTT as the device itself, one reading with the backfill's last counters
  (`seed_agent_counters`) and waits for it in the twin: the meter's first reading is then a reset the agent
  bridges (marked `counterReset`, the meter's own value in `meterReading`), and the cumulative goes on.

What this does not hide: only the total counters (`totalActiveEnergyImport`/`Export`, what the accounts read)
are continued; the per-phase counters start at zero on a first run, so on a backfilled meter the total is not
the sum of its phases. The live hours count the meter's own readings (the demo's fixed loads), not the
simulated household; the roof's generation is simulated for every hour, past and live. Tariff and investment are
illustrative round figures, not a quote.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import yaml

from datamodels.measures import TIME_INSTANT, measurement_id
from energytwin.forecast_targets import SimulatedHistory
from fiware_client import NgsiLdClient, NonexistentTenant, NotFound, parse_time

log = logging.getLogger("energytwin.demo")

COMMUNITY_ENV = "ENERGYTWIN_COMMUNITY"  # the user's own community file, which wins over the demo's
FOLDER = "community"  # under the demo's data dir
TIMEZONE = "Europe/Madrid"  # the simulated households' and roof's
MAX_MEMBERS = 20  # the first 20 meters are members: each member's month of history is read at every refresh
ROOF_KWP_PER_MEMBER = SimulatedHistory.ROOF_KWP
INVESTMENT_EUR_PER_KWP = 1200.0  # illustrative: a shared roof's cost per kWp bought
TARIFF_NAME = "demo-flat"
TARIFF = {"import_price_eur_per_kwh": 0.15, "surplus_price_eur_per_kwh": 0.06, "compensation": "simplified"}
SAMPLE_MINUTES = 15  # backfilled counter spacing: not longer than the community's gap rule (max_sample_gap_min)
IMPORT_ATTR, EXPORT_ATTR = "totalActiveEnergyImport", "totalActiveEnergyExport"
SEED_DELAY = timedelta(seconds=1)  # the agent's continuity reading: 1 s after the backfill's last instance
HISTORY_SOURCE = "simulation"  # the backfilled instances' `historySource`, as the forecasts' entities say it

# CUPS control letters (the 16 digits modulo 529, quotient and remainder by 23, as python-stdnum's stdnum.es.cups
# implements the Spanish rule).
_CUPS_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_DISTRIBUTOR = "0031"  # the distributor code of the example community (community/examples/community.yaml)


def cups_control_letters(digits16: str) -> str:
    if len(digits16) != 16 or not digits16.isdigit():
        raise ValueError(f"a CUPS has 16 digits after ES, not {digits16!r}")
    quotient, remainder = divmod(int(digits16) % 529, 23)
    return _CUPS_LETTERS[quotient] + _CUPS_LETTERS[remainder]


def demo_cups(index: int) -> str:
    """ES0031 9999 0000 00nn + control letters: index 0 is the roof's supply point, n the n-th member."""
    digits = f"{_DISTRIBUTOR}9999{index:08d}"
    return f"ES{digits}{cups_control_letters(digits)}"


def demo_cau() -> str:
    """The roof's installation code: its CUPS + A + 3 digits (docs/community.md, the distributor file)."""
    return f"{demo_cups(0)}A001"


def month_start(now: datetime, tz: str = TIMEZONE) -> datetime:
    local = now.astimezone(ZoneInfo(tz))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)


def _hours(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 3600)


def _history(devices: list[str]) -> SimulatedHistory:
    """The forecasts' simulated households, by the same positions (meter n = household n mod 8)."""
    return SimulatedHistory([measurement_id(d) for d in devices])


@dataclass(frozen=True)
class DemoCommunityFile:
    path: Path
    members: list[str]  # the member ids = the meters' device ids
    roof_kwp: float

    def page_file(self) -> Path:
        """The community file the demo's page shows (StackConfig.community, its --community): one the user set in
        ENERGYTWIN_COMMUNITY before the demo started wins, else this one."""
        chosen = os.environ.get(COMMUNITY_ENV)
        return Path(chosen).resolve() if chosen else self.path.resolve()


def write_demo_community(folder: Path, devices: list[str], broker_url: str, tenant: str,
                         now: datetime | None = None) -> DemoCommunityFile:
    """Write community.yaml and roof.csv into `folder` (replaced at every demo start); see the module docstring."""
    now = now or datetime.now(UTC)
    members = list(devices[:MAX_MEMBERS])
    if not members:
        raise ValueError("the demo community needs at least one meter")
    folder.mkdir(parents=True, exist_ok=True)
    roof_kwp = ROOF_KWP_PER_MEMBER * len(members)
    start = month_start(now)
    end = _next_month(_next_month(start))  # this month and the next: a demo running past midnight of the 1st
    history = _history(members)
    per_roof = history.pv_target(measurement_id(members[0])).history(start, _hours(start, end))
    generation = np.nan_to_num(np.asarray(per_roof, float)) * (roof_kwp / ROOF_KWP_PER_MEMBER)
    with (folder / "roof.csv").open("w", newline="", encoding="utf-8") as out:
        out.write(f"# simulated generation of the demo's {roof_kwp:g} kWp roof (simulation/households.py), "
                  "not a measurement\n")
        writer = csv.writer(out)
        writer.writerow(["hour_start", "generation_kwh"])
        for k, kwh in enumerate(generation):
            hour = (start.astimezone(UTC) + timedelta(hours=k)).astimezone(ZoneInfo(TIMEZONE))
            writer.writerow([hour.isoformat(), f"{kwh:.4f}"])
    body: dict[str, Any] = {
        "name": "energytwin demo community",
        "timezone": TIMEZONE,
        "twin": {"url": broker_url, "tenant": tenant, "max_sample_gap_min": SAMPLE_MINUTES},
        "co2": {"factor_kg_per_kwh": 0.331, "factor_source": "RITE 2014 official factor, Spain peninsula (CTE DB-HE)",
                "tree_kg_co2_per_year": 21.77},
        "tariffs": {TARIFF_NAME: dict(TARIFF)},
        "installations": [{"id": "demo-roof", "cau": demo_cau(), "csv": "roof.csv", "peak_power_kwp": roof_kwp,
                           "latitude_deg": 40.42, "longitude_deg": -3.70, "tilt_deg": 30, "azimuth_deg": 180}],
        "members": [{"id": device, "cups": demo_cups(n + 1), "meter": device, "tariff": TARIFF_NAME,
                     "investment_eur": round(ROOF_KWP_PER_MEMBER * INVESTMENT_EUR_PER_KWP, 2)}
                    for n, device in enumerate(members)],
        "rules": {"fixed_shares": "investment"},
    }
    path = folder / "community.yaml"
    header = ("# Written by `energytwin demo` at every start (energytwin/demo_community.py): one member per simulated\n"
              "# meter, sharing a simulated roof. The fields are docs/community.md's; copy it to start your own.\n")
    path.write_text(header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return DemoCommunityFile(path, members, roof_kwp)


@dataclass(frozen=True)
class StoredCounters:
    """A meter's energy counters in the twin: what the twin shows and the agent's offset in them (the value minus
    the `meterReading` the meter sent, twin_service/agent/continuity.py; 0 when the agent added none)."""

    observed_at: datetime | None = None
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    import_offset_kwh: float = 0.0
    export_offset_kwh: float = 0.0


def _offset(attribute: dict[str, Any]) -> float:
    reading = (attribute.get("meterReading") or {}).get("value")
    value = attribute.get("value")
    if isinstance(reading, (int, float)) and isinstance(value, (int, float)):
        return float(value) - float(reading)
    return 0.0


def _stored_counters(client: NgsiLdClient, entity_id: str) -> StoredCounters:
    """The meter's counters in the twin; all zero (observed_at None) when it has none."""
    try:
        entity = client.get_entity(entity_id, attrs=[IMPORT_ATTR, EXPORT_ATTR])
    except (NotFound, NonexistentTenant):
        return StoredCounters()
    imp, exp = entity.get(IMPORT_ATTR) or {}, entity.get(EXPORT_ATTR) or {}
    at = imp.get("observedAt")
    return StoredCounters(parse_time(at) if isinstance(at, str) else None, float(imp.get("value") or 0.0),
                          float(exp.get("value") or 0.0), _offset(imp), _offset(exp))


def _counter(value: float, at: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": round(value, 6), "unitCode": "KWH",
            "observedAt": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "historySource": {"type": "Property", "value": HISTORY_SOURCE}}


def history_fragments(device: str, hourly_import_kwh: np.ndarray, start: datetime, *, base_import_kwh: float = 0.0,
                      base_export_kwh: float = 0.0, until: datetime | None = None) -> list[dict[str, Any]]:
    """Upsert fragments of one meter's counters from `start`, every SAMPLE_MINUTES, each hour's kWh spread evenly
    (the simulation is hourly); export stays where it is (the simulated households export nothing). `until`:
    stop there (within the last hour given), with a last instance at `until` itself."""
    steps = 60 // SAMPLE_MINUTES
    entity_id = measurement_id(device)
    value, out = base_import_kwh, []
    at = start.astimezone(UTC)
    stop = until.astimezone(UTC).replace(microsecond=0) if until is not None else None

    def instance(kwh: float, moment: datetime) -> dict[str, Any]:
        return {"id": entity_id, "type": "ThreePhaseAcMeasurement", IMPORT_ATTR: _counter(kwh, moment),
                EXPORT_ATTR: _counter(base_export_kwh, moment)}

    out.append(instance(value, at))
    for kwh in np.nan_to_num(np.asarray(hourly_import_kwh, float)):
        for _ in range(steps):
            step = timedelta(minutes=SAMPLE_MINUTES)
            if stop is not None and at + step > stop:
                if stop > at:  # the part of this step up to `until`
                    value += float(kwh) / steps * ((stop - at) / step)
                    out.append(instance(value, stop))
                return out
            value += float(kwh) / steps
            at += step
            out.append(instance(value, at))
    return out


@dataclass(frozen=True)
class Backfilled:
    """One meter's backfill: hours written and where its counters end (what the agent must continue from)."""

    hours: int
    end: datetime | None = None
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    stored: StoredCounters = field(default_factory=StoredCounters)


def backfill_meters(broker_url: str, tenant: str, devices: list[str],
                    now: datetime | None = None) -> dict[str, Backfilled]:
    """Give each device's meter this month's simulated history up to the current hour (hours 0: the twin already
    holds this month for it, or the month has no complete hour yet)."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start = month_start(now)
    end = now.replace(minute=0, second=0)
    hours = _hours(start, end)  # complete hours; the current one is written up to `now`
    history = _history(devices)
    written: dict[str, Backfilled] = {}
    with NgsiLdClient(broker_url, tenant=tenant) as client:
        for device in devices:
            stored = _stored_counters(client, measurement_id(device))
            if hours <= 0 or (stored.observed_at is not None and stored.observed_at >= start):
                written[device] = Backfilled(0, stored=stored)
                continue
            load = history.load(measurement_id(device), start, hours + 1)
            fragments = history_fragments(device, load, start, base_import_kwh=stored.import_kwh,
                                          base_export_kwh=stored.export_kwh, until=now)
            client.upsert_entities(fragments, update=True)
            last = fragments[-1]
            written[device] = Backfilled(hours, parse_time(last[IMPORT_ATTR]["observedAt"]),
                                         float(last[IMPORT_ATTR]["value"]), float(last[EXPORT_ATTR]["value"]), stored)
    return written


def backfill(broker_url: str, tenant: str, devices: list[str], now: datetime | None = None) -> dict[str, int]:
    """`backfill_meters`, as device -> hours written."""
    return {device: b.hours for device, b in backfill_meters(broker_url, tenant, devices, now).items()}


def attrs_topic(apikey: str, device_id: str) -> str:
    """The IoT Agent JSON measures topic (the FIWARE IoT Agent JSON's MQTT binding)."""
    return f"/json/{apikey}/{device_id}/attrs"


def continuity_payload(b: Backfilled) -> dict[str, Any]:
    """The one reading that tells the IoT Agent where a backfilled meter's counters stand, so the agent's
    counter-reset rule (twin_service/agent/continuity.py) bridges the simulated meter's restart at zero: the
    backfill's last counters, as the meter's own raw values (the agent's offset taken out, it adds it back),
    stamped one second after the backfill's last instance (so its arrival in the twin is recognisable)."""
    assert b.end is not None
    return {"eait": round(b.import_kwh - b.stored.import_offset_kwh, 6),
            "eaet": round(b.export_kwh - b.stored.export_offset_kwh, 6),
            TIME_INSTANT: (b.end + SEED_DELAY).strftime("%Y-%m-%dT%H:%M:%S.000Z")}


def seed_agent_counters(broker_url: str, tenant: str, mqtt_host: str, mqtt_port: int, apikey: str,
                        backfilled: dict[str, Backfilled], login: Any, timeout_s: float = 30.0) -> list[str]:
    """Publish `continuity_payload` for each backfilled meter through MQTT (the device's own login, `login(apikey,
    device)`) and wait until the twin holds it, i.e. the agent has recorded those counters; returns the devices
    seeded. The devices must be provisioned. Raises TimeoutError naming the devices the agent did not take."""
    import paho.mqtt.client as mqtt

    pending = {device: b for device, b in backfilled.items() if b.hours and b.end is not None}
    for device, b in pending.items():
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"energytwin-demo-seed-{device}")
        credentials = login(apikey, device)
        if credentials is not None:
            client.username_pw_set(*credentials)
        client.connect(mqtt_host, mqtt_port)
        try:  # the network loop run here, in short steps (paho's own thread sleeps up to 1 s between them)
            sent = client.publish(attrs_topic(apikey, device), json.dumps(continuity_payload(b)), qos=1)
            deadline = time.monotonic() + timeout_s
            while not sent.is_published():
                if time.monotonic() > deadline or client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                    raise TimeoutError(f"MQTT broker at {mqtt_host}:{mqtt_port} did not take the continuity reading "
                                       f"of {device}")
        finally:
            client.disconnect()
    deadline = time.monotonic() + timeout_s
    waiting = set(pending)
    with NgsiLdClient(broker_url, tenant=tenant) as twin:
        while waiting and time.monotonic() < deadline:
            for device in sorted(waiting):
                at = _stored_counters(twin, measurement_id(device)).observed_at
                end = pending[device].end
                if at is not None and end is not None and at >= end + SEED_DELAY:
                    waiting.discard(device)
            if waiting:
                time.sleep(0.2)
    if waiting:
        raise TimeoutError(f"the IoT Agent did not take the counters of {', '.join(sorted(waiting))} within "
                           f"{timeout_s:.0f} s (see logs/agent.log)")
    return sorted(pending)


@dataclass
class DemoCommunity:
    """A demo part, started before the meters: backfills the members' history and says where the accounts are."""

    file: DemoCommunityFile
    name: str = "community"
    written: dict[str, int] = field(default_factory=dict)
    seeded: list[str] = field(default_factory=list)  # meters whose backfilled counters the agent continues

    def start(self, ctx: Any) -> list[str]:
        from energytwin.demo import DEMO_APIKEY, demo_device_id, provision_demo

        options = ctx.options
        # the meters part's own inventory (it then finds nothing to change): the agent must know the devices
        # before it takes their continuity readings
        plan = provision_demo(ctx.agent_url, ctx.broker_url, [demo_device_id(n + 1) for n in range(options.meters)],
                              options.frequency_hz)
        backfilled = backfill_meters(ctx.broker_url, ctx.site.service, self.file.members)
        self.written = {device: b.hours for device, b in backfilled.items()}
        self.seeded = seed_agent_counters(ctx.broker_url, ctx.site.service, options.stack.host,
                                          options.stack.mqtt_port, DEMO_APIKEY, backfilled, ctx.mqtt_login)
        used = str(self.file.page_file())
        lines = [(f"community: {len(self.file.members)} member(s) (one per meter) sharing a simulated "
                  f"{self.file.roof_kwp:g} kWp roof: {self.file.path}")]
        done = {d: h for d, h in self.written.items() if h}
        if done:
            lines.append(f"  this month's history simulated for {', '.join(sorted(done))} ({max(done.values())} h, "
                         "historySource: simulation); the member view shows their EUR savings, the manager view "
                         "the accounts")
        lines += [f"  provisioning: {a.verb} {a.kind} {a.key}" for a in plan.changes()]
        if self.seeded:
            lines.append("  the IoT Agent continues their counters from the simulated month (the meters start at 0: "
                         "a counter reset it bridges, marked counterReset)")
        if Path(used) != self.file.path.resolve():
            lines.append(f"  the page shows {COMMUNITY_ENV}={used} instead (set before the demo started)")
        return lines

    def stop(self) -> None:
        """Nothing runs: the history and the file stay in the data dir."""
