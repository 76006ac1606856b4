"""The distributor's hourly kWh per CUPS into the twin's history, so members without a meter are accounted too.

Each CUPS becomes one Smart Data Models `ThreePhaseAcMeasurement` entity, `urn:ngsi-ld:ThreePhaseAcMeasurement:
<CUPS>` (the supply point's own meter, read by the distributor), whose `totalActiveEnergyImport` (and
`totalActiveEnergyExport` when the file has export) is the cumulative kWh of the file, one instance per hour
boundary with `observedAt` = that boundary (UTC) and unitCode KWH. The community reads it exactly as it reads a
meter's counters (`community/twin.py`), with a 1 h sampling period instead of a meter's seconds. A member's
token with that CUPS sees the entity through the access layer (scope `own` matches CUPS too).

Writes go through fiware_client's NGSI-LD batch upsert, one fragment per hour in time order: the embedded broker
keeps each fragment as its own history instance (as for an IoT Agent offline replay); Orion-LD with TRoE does the
same. `dataProvider` names the file.

Continuing an entity: the new hours must start at or after the last hour already in the twin (a later month's
file). The counter continues from the stored value; hours between the two files are missing in the accounts
(the sample spacing exceeds an hour there), never zero. A file overlapping hours already stored is refused.

Measured or estimated: each hour's closing fragment also carries `readingMethod` ("measured" or "estimated",
the file's REAL/ESTIMADO flag) observed at the same hour boundary, so the history says which hours the
distributor estimated (an estimated hour is settled as given, but the distributor may replace it with a real
reading later, and then the period's accounts change). `estimated_hours` reads it back; the community report
names the members with estimated hours in the period and how many (community/data.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from community.distributor_import import Imported
from datamodels.measures import measurement_id
from fiware_client import HistoryReader, NgsiLdClient, NonexistentTenant, NotFound, parse_time

HOUR = timedelta(hours=1)
SAMPLE_PERIOD = HOUR  # what the community's gap rule allows between two samples of a distributor entity
IMPORT_ATTR, EXPORT_ATTR = "totalActiveEnergyImport", "totalActiveEnergyExport"
METHOD_ATTR = "readingMethod"  # "measured" | "estimated": how the distributor obtained the hour ending here
MEASURED, ESTIMATED = "measured", "estimated"
TYPE = "ThreePhaseAcMeasurement"


class HistoryOverlap(ValueError):
    """The file holds hours the twin already has for that CUPS."""


@dataclass(frozen=True)
class WrittenCups:
    cups: str
    entity_id: str
    hours: int
    first_hour: datetime
    last_hour: datetime
    continued_from_kwh: float  # the stored counter the new hours were added to (0 for a new entity)
    estimated_hours: int


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _prop(value: float, at: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": round(value, 6), "observedAt": _iso(at), "unitCode": "KWH"}


def _stored_counters(client: NgsiLdClient, entity_id: str) -> tuple[datetime | None, float, float]:
    """(last observedAt, import counter, export counter) the twin holds for the entity, (None, 0, 0) if none."""
    try:
        entity = client.get_entity(entity_id, attrs=[IMPORT_ATTR, EXPORT_ATTR])
    except (NotFound, NonexistentTenant):
        return None, 0.0, 0.0
    imp, exp = entity.get(IMPORT_ATTR) or {}, entity.get(EXPORT_ATTR) or {}
    at = imp.get("observedAt")
    return (parse_time(at) if isinstance(at, str) else None, float(imp.get("value") or 0.0),
            float(exp.get("value") or 0.0))


def fragments(cups: str, hours: dict[datetime, tuple[float, float | None, bool]], *, base_import_kwh: float = 0.0,
              base_export_kwh: float = 0.0, source: str = "") -> list[dict[str, Any]]:
    """The upsert fragments of one CUPS, in time order: the counter at the first hour's start, then at the end of
    each hour; a missing hour inside the file leaves a longer spacing (read as missing, not as zero)."""
    entity_id = measurement_id(cups)
    has_export = any(v[1] is not None for v in hours.values())
    imp, exp = base_import_kwh, base_export_kwh
    out: list[dict[str, Any]] = []

    def fragment(at: datetime, estimated: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"id": entity_id, "type": TYPE, IMPORT_ATTR: _prop(imp, at)}
        if has_export:
            body[EXPORT_ATTR] = _prop(exp, at)
        if estimated is not None:  # the hour that ends at `at`
            body[METHOD_ATTR] = {"type": "Property", "value": ESTIMATED if estimated else MEASURED,
                                 "observedAt": _iso(at)}
        if source:
            body["dataProvider"] = {"type": "Property", "value": source}
        return body

    previous_end: datetime | None = None
    for start in sorted(hours):
        if previous_end != start:
            out.append(fragment(start))  # the counter where this run of hours begins
        hour_import, hour_export, estimated = hours[start]
        imp += hour_import
        exp += hour_export or 0.0
        previous_end = start + HOUR
        out.append(fragment(previous_end, estimated))
    return out


def write_to_twin(imported: Imported, client: NgsiLdClient, *, source: str = "") -> list[WrittenCups]:
    """Append every CUPS of `imported` to the twin's history; HistoryOverlap (nothing written) on an overlap."""
    plans = []
    for cups, hours in sorted(imported.hours.items()):
        if not hours:
            continue
        entity_id = measurement_id(cups)
        last_at, base_imp, base_exp = _stored_counters(client, entity_id)
        first = min(hours)
        if last_at is not None and first < last_at:
            raise HistoryOverlap(f"{cups}: the twin already has its hours up to {_iso(last_at)}; this file starts "
                                 f"at {_iso(first)} (import only later hours; nothing was written)")
        plans.append((cups, hours, entity_id, base_imp, base_exp))
    written = []
    for cups, hours, entity_id, base_imp, base_exp in plans:
        client.upsert_entities(fragments(cups, hours, base_import_kwh=base_imp, base_export_kwh=base_exp,
                                         source=source), update=True)
        written.append(WrittenCups(cups, entity_id, len(hours), min(hours), max(hours), base_imp,
                                   sum(1 for v in hours.values() if v[2])))
    return written


def estimated_hours(reader: HistoryReader, cups: str, start: datetime, end: datetime) -> list[datetime]:
    """The UTC starts of the hours in [start, end) the distributor estimated for `cups` (from the twin)."""
    history = reader.attribute_history(measurement_id(cups), [METHOD_ATTR], start, end + HOUR)
    return sorted(at - HOUR for at, value in history.get(METHOD_ATTR, [])
                  if value == ESTIMATED and start <= at - HOUR < end)
