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
  the hour the demo started: the consumption of the simulated household the forecasts use for that meter
  (energytwin/forecast_targets.py `SimulatedHistory`, same seed and position), as energy counters every 15 min
  (the community's 15-min gap rule reads them as complete hours), each instance marked `historySource:
  simulation`. A fresh twin holds minutes of readings, not a month; without this the accounts would stay empty
  until the first complete daylight hour. A meter whose twin already holds this month (an earlier demo run on the
  same data dir) is left as it is.

What this does not hide: the simulated meters restart their counters at zero (a fresh ADE9000 and flash), so the
hour the demo started is a counter reset, missing in the accounts; the live hours after it count the meter's
own readings (the demo's fixed loads), not the simulated household; the roof's generation is simulated for
every hour, past and live. Tariff and investment are illustrative round figures, not a quote.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import yaml

from datamodels.measures import measurement_id
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


def _stored_import(client: NgsiLdClient, entity_id: str) -> tuple[datetime | None, float, float]:
    """(observedAt, import, export) of the meter's counters in the twin; (None, 0, 0) when it has none."""
    try:
        entity = client.get_entity(entity_id, attrs=[IMPORT_ATTR, EXPORT_ATTR])
    except (NotFound, NonexistentTenant):
        return None, 0.0, 0.0
    imp, exp = entity.get(IMPORT_ATTR) or {}, entity.get(EXPORT_ATTR) or {}
    at = imp.get("observedAt")
    return (parse_time(at) if isinstance(at, str) else None, float(imp.get("value") or 0.0),
            float(exp.get("value") or 0.0))


def _counter(value: float, at: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": round(value, 6), "unitCode": "KWH",
            "observedAt": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "historySource": {"type": "Property", "value": HISTORY_SOURCE}}


def history_fragments(device: str, hourly_import_kwh: np.ndarray, start: datetime, *, base_import_kwh: float = 0.0,
                      base_export_kwh: float = 0.0) -> list[dict[str, Any]]:
    """Upsert fragments of one meter's counters from `start`, every SAMPLE_MINUTES, each hour's kWh spread evenly
    (the simulation is hourly); export stays where it is (the simulated households export nothing)."""
    steps = 60 // SAMPLE_MINUTES
    entity_id = measurement_id(device)
    value, out = base_import_kwh, []
    at = start.astimezone(UTC)
    out.append({"id": entity_id, "type": "ThreePhaseAcMeasurement", IMPORT_ATTR: _counter(value, at),
                EXPORT_ATTR: _counter(base_export_kwh, at)})
    for kwh in np.nan_to_num(np.asarray(hourly_import_kwh, float)):
        for _ in range(steps):
            value += float(kwh) / steps
            at += timedelta(minutes=SAMPLE_MINUTES)
            out.append({"id": entity_id, "type": "ThreePhaseAcMeasurement", IMPORT_ATTR: _counter(value, at),
                        EXPORT_ATTR: _counter(base_export_kwh, at)})
    return out


def backfill(broker_url: str, tenant: str, devices: list[str], now: datetime | None = None) -> dict[str, int]:
    """Give each device's meter this month's simulated history up to the current hour; device -> hours written
    (0: the twin already holds this month for it, or the month has no complete hour yet)."""
    now = now or datetime.now(UTC)
    start = month_start(now)
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = _hours(start, end)
    history = _history(devices)
    written: dict[str, int] = {}
    with NgsiLdClient(broker_url, tenant=tenant) as client:
        for device in devices:
            at, imp, exp = _stored_import(client, measurement_id(device))
            if hours <= 0 or (at is not None and at >= start):
                written[device] = 0
                continue
            load = history.load(measurement_id(device), start, hours)
            client.upsert_entities(history_fragments(device, load, start, base_import_kwh=imp, base_export_kwh=exp),
                                   update=True)
            written[device] = hours
    return written


@dataclass
class DemoCommunity:
    """A demo part, started before the meters: backfills the members' history and says where the accounts are."""

    file: DemoCommunityFile
    name: str = "community"
    written: dict[str, int] = field(default_factory=dict)

    def start(self, ctx: Any) -> list[str]:
        self.written = backfill(ctx.broker_url, ctx.site.service, self.file.members)
        used = str(self.file.page_file())
        lines = [(f"community: {len(self.file.members)} member(s) (one per meter) sharing a simulated "
                  f"{self.file.roof_kwp:g} kWp roof: {self.file.path}")]
        done = {d: h for d, h in self.written.items() if h}
        if done:
            lines.append(f"  this month's history simulated for {', '.join(sorted(done))} ({max(done.values())} h, "
                         "historySource: simulation); the member view shows their EUR savings, the manager view "
                         "the accounts")
        if Path(used) != self.file.path.resolve():
            lines.append(f"  the page shows {COMMUNITY_ENV}={used} instead (set before the demo started)")
        return lines

    def stop(self) -> None:
        """Nothing runs: the history and the file stay in the data dir."""
