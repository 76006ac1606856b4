"""Turn one MQTT measure payload into NGSI-LD entity fragments, as the FIWARE IoT Agent JSON does in LD mode.

Pure functions: (resolved device, parsed payload, arrival time) -> fragments + rejections. No I/O, so every rule
below is tested without a broker.

Rules (iotagent-json docs/usermanual.md as docs/compatibility.md "What the FIWARE IoT Agent JSON does" sums it
up; the meter contract in docs/architecture.md):
- each payload key is looked up in the device's then the group's `attributes` (by `object_id`, else `name`),
  then in the measure table (`datamodels.measures`), else passes through under its own name (explicitAttrs false);
  keys `id` / `type` become `measure_id` / `measure_type`;
- values of table attributes are checked with `check_value`; a bad one is dropped and counted (`bad_value`),
  the good measures of the same payload still go through (the FIWARE agent also passes the good ones);
- `TimeInstant` becomes `observedAt` on every attribute, static ones included; without it the arrival time is
  used unless timestamps are off; an invalid one drops that measure object (`bad_timestamp`), and so does one more
  than 5 min ahead of the agent's clock (`future_timestamp`);
- an array of objects (offline replay) becomes one fragment per object, sorted by TimeInstant, for one upsert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datamodels.context import CORE_CONTEXT, context_for
from datamodels.measures import (
    BY_ATTRIBUTE,
    BY_OBJECT_ID,
    MEASUREMENT_TYPE,
    TIME_INSTANT,
    ShapeError,
    check_value,
)

from .models import AttributeSpec, StaticAttribute
from .registry import ResolvedDevice
from .timestamps import MAX_AHEAD_S, BadTimestamp, observed_at, parse_time_instant

_RENAMED_KEYS = {"id": "measure_id", "type": "measure_type"}  # node-lib: ids and types are the entity's own
_NUMBER_TYPES = {"number", "float", "integer", "double"}
_GEO_TYPES = {"geo:point", "geo:json", "point", "geoproperty", "linestring", "polygon"}
_DATE_TYPES = {"datetime", "date", "time", "iso8601"}


@dataclass(frozen=True)
class Rejection:
    """Why a message, a measure object or one measure was not written; `reason` is the metric label."""

    reason: str
    detail: str


@dataclass
class MappedMessage:
    """What one MQTT message becomes: fragments for one upsert, how many measures they carry, what was dropped."""

    fragments: list[dict[str, Any]] = field(default_factory=list)
    measures: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    ignored: int = 0  # measures left out by explicitAttrs (not an error: the FIWARE agent drops them silently)


def entity_context(entity_type: str) -> list[str]:
    """The @context for a type: the project's, or the core context alone for types the project does not model."""
    try:
        return context_for(entity_type)
    except KeyError:
        return [CORE_CONTEXT]


def map_payload(
    device: ResolvedDevice, payload: Any, received_at: datetime, timestamp_default: bool = True
) -> MappedMessage:
    """Map a parsed `/attrs` payload (object or array of objects) to fragments of the device's entity."""
    result = MappedMessage()
    objects = payload if isinstance(payload, list) else [payload]
    if isinstance(payload, list) and not payload:
        result.rejections.append(Rejection("no_measures", "empty JSON array"))
        return result
    stamped: list[tuple[datetime, int, dict[str, Any], str | None]] = []
    for index, item in enumerate(objects):
        where = f"element {index}: " if isinstance(payload, list) else ""
        if not isinstance(item, dict):
            result.rejections.append(
                Rejection(
                    "not_an_object", f"{where}expected a JSON object of measures, got {_json_kind(item)}"
                )
            )
            continue
        time_value = item.get(TIME_INSTANT)
        if time_value is not None:
            try:
                moment = parse_time_instant(time_value)
            except BadTimestamp as exc:
                result.rejections.append(Rejection("bad_timestamp", f"{where}{exc}"))
                continue
            ahead_s = (moment - received_at).total_seconds()
            if ahead_s > MAX_AHEAD_S:
                result.rejections.append(Rejection("future_timestamp", (
                    f"{where}TimeInstant {time_value} is {ahead_s:.0f} s ahead of the agent's clock (limit "
                    f"{MAX_AHEAD_S:.0f} s): the meter's clock is wrong")))
                continue
            stamped.append((moment, index, item, observed_at(moment)))
        else:
            use_arrival = device.timestamp if device.timestamp is not None else timestamp_default
            stamped.append((received_at, index, item, observed_at(received_at) if use_arrival else None))
    stamped.sort(key=lambda entry: (entry[0], entry[1]))  # stable on equal times: payload order
    for _, index, item, when in stamped:
        where = f"element {index}: " if isinstance(payload, list) else ""
        fragment = _fragment(device, item, when, result, where)
        if fragment is not None:
            result.fragments.append(fragment)
    return result


def map_single_attribute(
    device: ResolvedDevice, object_id: str, value: Any, received_at: datetime, timestamp_default: bool = True
) -> MappedMessage:
    """Map a bare value published on `/json/<apikey>/<device_id>/attrs/<object_id>`."""
    return map_payload(device, {object_id: value}, received_at, timestamp_default)


def _fragment(
    device: ResolvedDevice, item: dict[str, Any], when: str | None, result: MappedMessage, where: str
) -> dict[str, Any] | None:
    attributes: dict[str, Any] = {}
    specs = _provisioned(device)
    for key, value in item.items():
        if key == TIME_INSTANT:
            continue
        key = _RENAMED_KEYS.get(key, key)
        spec = specs.get(key)
        name = spec.name if spec else (BY_OBJECT_ID[key].attribute if key in BY_OBJECT_ID else key)
        if not _explicitly_allowed(device.explicit_attrs, key, name, spec):
            result.ignored += 1
            continue
        try:
            attributes[name] = _ngsi_ld_attribute(
                name, spec.type if spec else "Property", value, spec.unit_code() if spec else None, when,
                meter_table=device.entity_type == MEASUREMENT_TYPE,
            )
        except (ShapeError, ValueError) as exc:
            result.rejections.append(Rejection("bad_value", f"{where}{key}: {exc}"))
            continue
        result.measures += 1
    if not attributes:
        if result.ignored:
            result.rejections.append(Rejection("no_measures", f"{where}no measure left after explicitAttrs"))
        elif not any(key != TIME_INSTANT for key in item):
            result.rejections.append(Rejection("no_measures", f"{where}no measures besides TimeInstant"))
        return None
    for static in device.static_attributes:
        explicit = device.explicit_attrs
        if isinstance(explicit, frozenset) and static.name not in explicit:
            continue
        attributes.setdefault(static.name, _static(static, when))
    return {
        "id": device.entity_id,
        "type": device.entity_type,
        **attributes,
        "@context": entity_context(device.entity_type),
    }


def _explicitly_allowed(
    explicit: bool | frozenset[str], key: str, name: str, spec: AttributeSpec | None
) -> bool:
    """explicitAttrs: false lets every measure through, true only provisioned ones, a list only those named."""
    if explicit is False:
        return True
    if explicit is True:
        return spec is not None
    return key in explicit or name in explicit


def _provisioned(device: ResolvedDevice) -> dict[str, AttributeSpec]:
    """Payload key -> its provisioned attribute (the first listed wins: device entries before the group's).

    Built once per message: a linear search per key cost ~30 x 30 lookups for the firmware's message."""
    specs: dict[str, AttributeSpec] = {}
    for spec in device.attributes:
        specs.setdefault(spec.wire_key, spec)
    return specs


def _ngsi_ld_attribute(
    name: str, attr_type: str, value: Any, unit_code: str | None, when: str | None, meter_table: bool = True
) -> dict[str, Any]:
    """One NGSI-LD attribute from a measure, typed as node-lib's `convertAttrNGSILD` types it.

    The measure table's shape and range checks apply to the meter's entity type only: other types use the same
    SDM names with other shapes (PhotovoltaicMeasurement's `activePower` is one number in kW, not per phase).
    """
    kind = attr_type.lower()
    if kind in _NUMBER_TYPES and isinstance(value, str):
        try:
            value = int(value) if kind == "integer" else float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number (attribute type {attr_type})") from None
    elif kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    table = BY_ATTRIBUTE.get(name) if meter_table else None
    if table is not None:
        check_value(table, value)
        unit_code = unit_code or table.unit_code
    if kind == "relationship":
        attribute: dict[str, Any] = {"type": "Relationship", "object": value}
    elif kind in _GEO_TYPES:
        attribute = {"type": "GeoProperty", "value": _geo_value(kind, value)}
    elif kind in _DATE_TYPES:
        attribute = {"type": "Property", "value": {"@type": "DateTime", "@value": _date_value(value)}}
    else:
        attribute = {"type": "Property", "value": value}
    if unit_code:
        attribute["unitCode"] = unit_code
    if when:
        attribute["observedAt"] = when
    return attribute


def _static(static: StaticAttribute, when: str | None) -> dict[str, Any]:
    unit = None
    if static.metadata and isinstance(static.metadata.get("unitCode"), dict):
        unit = static.metadata["unitCode"].get("value")
    return _ngsi_ld_attribute(static.name, static.type, static.value, unit, when)


def _geo_value(kind: str, value: Any) -> Any:
    """`geo:point` is `"lat, lon"` in NGSI-v2; NGSI-LD wants a GeoJSON Point with [lon, lat]."""
    if kind == "geo:point" and isinstance(value, str):
        try:
            lat, lon = (float(part) for part in value.split(","))
        except ValueError:
            raise ValueError(f"{value!r} is not 'latitude, longitude'") from None
        return {"type": "Point", "coordinates": [lon, lat]}
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError("expected a GeoJSON object")
    return value


def _date_value(value: Any) -> str:
    try:
        return observed_at(parse_time_instant(value))
    except BadTimestamp as exc:
        raise ValueError(str(exc)) from None


def _json_kind(value: Any) -> str:
    return {
        list: "array",
        str: "string",
        bool: "boolean",
        type(None): "null",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)
