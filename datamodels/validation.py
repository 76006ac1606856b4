"""Validate entities against the official Smart Data Models JSON Schemas, offline.

The SDM schemas describe the key-values form only (each model's schema.json on smart-data-models; normalized examples are separate files), so a normalized NGSI-LD entity is
flattened first. The schemas `$ref` each other by absolute URL; every referenced file is vendored under
`datamodels/schemas/` and served from a `referencing.Registry` keyed by its `$id`, so validation never touches the
network (a `$ref` to anything not vendored fails loudly instead of being fetched).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

SCHEMAS_DIR = Path(__file__).parent / "schemas"

# Vendored schema files (see NOTICE.md). Each is registered under its own `$id`.
SCHEMA_FILES: tuple[str, ...] = (
    "common-schema.json",
    "ThreePhaseAcMeasurement.schema.json",
    "Device.schema.json",
    "DeviceModel.schema.json",
    "device-schema.energytwin.json",
    "Anomaly.schema.json",
    "EnergyForecast.energytwin.json",
    "PhotovoltaicMeasurement.schema.json",
    "BatteryStatus.schema.json",
)

# Upstream defects corrected in memory when a vendored file is loaded (the file itself stays byte for byte).
# Each entry: file -> [(path of keys to the object, key, corrected value, why)]. See NOTICE.md.
SCHEMA_ERRATA: dict[str, list[tuple[tuple[str | int, ...], str, object, str]]] = {
    "BatteryStatus.schema.json": [
        (("allOf", 2, "properties", "statusPercent"), "type", "number",
         ("schema.json types statusPercent as an integer in 0..1, so only 0 and 1 would validate; the same "
         "model's model.yaml says type number and its example.json has 0.97")),
        (("allOf", 2, "properties"), "refBattery", {
            "anyOf": [{"type": "string", "format": "uri"},
                      {"$ref": "https://smart-data-models.github.io/data-models/common-schema.json#/definitions/"
                               "EntityIdentifierType"}],
            "description": "Relationship. Model:'http://schema.org/URL'. Reference to the battery entity"},
         ("refBattery is a oneOf of 'a URI' and EntityIdentifierType, which itself accepts every URI, so every "
         "entity id matches both branches and fails; anyOf states the evident intent (a URI or an entity id)")),
    ],
}

_SDM = "https://smart-data-models.github.io"
SCHEMA_ID_BY_TYPE: dict[str, str] = {
    "EnergyForecast": "https://energytwin.example/schemas/EnergyForecast/schema.json",  # ours: docs/forecasts.md
    "ThreePhaseAcMeasurement": f"{_SDM}/dataModel.Energy/ThreePhaseAcMeasurement/schema.json",
    "Device": f"{_SDM}/dataModel.Device/Device/schema.json",
    "DeviceModel": f"{_SDM}/dataModel.Device/DeviceModel/schema.json",
    # The upstream Anomaly schema still carries its incubation $id.
    "Anomaly": f"{_SDM}/incubated/Anomaly/schema.json",
    # Upstream's $id for PhotovoltaicMeasurement names data-models.Energy although it lives in dataModel.GreenEnergy.
    "PhotovoltaicMeasurement": f"{_SDM}/data-models.Energy/PhotovoltaicMeasurement/schema.json",
    "BatteryStatus": f"{_SDM}/dataModel.Battery/BatteryStatus/schema.json",
}

# NGSI-LD attribute types whose payload sits under `value` (or `object` for relationships).
_VALUE_TYPES = frozenset({"Property", "GeoProperty", "LanguageProperty", "VocabProperty", "JsonProperty"})


class EntityValidationError(ValueError):
    """An entity does not conform to its Smart Data Models schema; `errors` lists every violation by path."""

    def __init__(self, entity_id: str | None, entity_type: str | None, errors: list[str]) -> None:
        self.entity_id = entity_id
        self.entity_type = entity_type
        self.errors = errors
        lines = "\n".join(f"  - {error}" for error in errors)
        super().__init__(f"{entity_type} {entity_id} does not conform to the Smart Data Models schema:\n{lines}")


def _no_network(uri: str) -> Resource:
    # Called for any $ref the registry does not hold: refuse instead of fetching.
    raise NoSuchResource(ref=uri)


@cache
def schema_registry() -> Registry:
    """Registry of every vendored schema under its `$id`; unknown URIs raise instead of being fetched."""
    resources = []
    for name in SCHEMA_FILES:
        contents = json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))
        for path, key, value, _why in SCHEMA_ERRATA.get(name, []):
            target = contents
            for step in path:
                target = target[step]
            target[key] = value
        # Several SDM schemas declare "$schema": "http://json-schema.org/schema#", which names no draft;
        # they are all written for 2020-12, so the dialect is fixed here rather than sniffed.
        resources.append((contents["$id"], DRAFT202012.create_resource(contents)))
    return Registry(retrieve=_no_network).with_resources(resources).crawl()


def schema_for(entity_type: str) -> dict[str, Any]:
    """The parsed official schema for an entity type; KeyError names the types that have one."""
    try:
        schema_id = SCHEMA_ID_BY_TYPE[entity_type]
    except KeyError:
        raise KeyError(f"no vendored schema for type {entity_type!r}; known: {sorted(SCHEMA_ID_BY_TYPE)}") from None
    contents: dict[str, Any] = schema_registry().contents(schema_id)
    return contents


def _format_checker() -> FormatChecker:
    # jsonschema checks date-time only when the optional rfc3339-validator is installed; check it with the
    # standard library instead so a bad timestamp is never silently accepted.
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        if "T" not in instance.upper():
            raise ValueError("date-time needs a 'T' between date and time")
        parsed = datetime.fromisoformat(instance.replace("z", "Z"))
        if parsed.tzinfo is None:
            raise ValueError("date-time needs a UTC offset or 'Z'")
        return True

    return checker


def _array_properties(schema: dict[str, Any]) -> frozenset[str]:
    """Attributes the schema's own (non-$ref) part declares as arrays, such as `refDevice`."""
    names = set()
    for part in schema.get("allOf", []):
        for name, spec in part.get("properties", {}).items():
            if spec.get("type") == "array":
                names.add(name)
    return frozenset(names)


def _unwrap(value: Any) -> Any:
    # JSON-LD typed literal, e.g. {"@type": "DateTime", "@value": "2025-01-01T00:00:00Z"}.
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def to_key_values(entity: dict[str, Any]) -> dict[str, Any]:
    """Flatten a normalized NGSI-LD entity to the key-values form the SDM schemas describe.

    Properties and GeoProperties become their `value`, Relationships their `object` (wrapped in a list where the
    schema wants an array, since NGSI-LD brokers are given a single URI), typed literals are unwrapped, and
    `@context` and sub-attributes such as `observedAt`/`unitCode` are dropped. Key-values input passes through.
    """
    entity_type = entity.get("type")
    arrays = _array_properties(schema_for(entity_type)) if entity_type in SCHEMA_ID_BY_TYPE else frozenset()
    flat: dict[str, Any] = {}
    for key, attr in entity.items():
        if key == "@context":
            continue
        if key in ("id", "type") or not isinstance(attr, dict):
            flat[key] = attr
            continue
        kind = attr.get("type")
        if kind == "Relationship":
            target = attr.get("object")
            flat[key] = [target] if key in arrays and not isinstance(target, list) else target
        elif kind in _VALUE_TYPES:
            flat[key] = _unwrap(attr.get("value"))
        else:
            flat[key] = _unwrap(attr)
    return flat


def validate_entity(entity: dict[str, Any]) -> None:
    """Raise EntityValidationError listing every schema violation; accepts normalized or key-values entities."""
    entity_type = entity.get("type")
    entity_id = entity.get("id")
    if entity_type not in SCHEMA_ID_BY_TYPE:
        raise EntityValidationError(
            entity_id, entity_type, [f"type: no vendored schema for {entity_type!r}; known {sorted(SCHEMA_ID_BY_TYPE)}"]
        )
    validator = Draft202012Validator(
        schema_for(entity_type), registry=schema_registry(), format_checker=_format_checker()
    )
    flat = to_key_values(entity)
    errors = sorted(validator.iter_errors(flat), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        messages = [f"{'/'.join(str(p) for p in e.absolute_path) or '(entity)'}: {e.message}" for e in errors]
        raise EntityValidationError(entity_id, entity_type, messages)
