"""Reading NGSI-LD entities: normalized attributes to plain values, temporal representations to time series.

The attribute shapes are those of ETSI GS CIM 009 v1.8.1 clause 4.5 (normalized: Property `value`, Relationship
`object`, GeoProperty `value`, LanguageProperty `languageMap`) and clause 4.5.8/4.5.9 (temporal: an array of
instances, or `values` pairs `[value, time]` with `options=temporalValues`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from datamodels.attributes import attribute_value, parse_time

_CORE = {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}


def unwrap(entity: dict[str, Any]) -> dict[str, Any]:
    """The entity in key-values form: each attribute's plain value, `id` and `type` kept."""
    out: dict[str, Any] = {"id": entity.get("id"), "type": entity.get("type")}
    for name, attribute in entity.items():
        if name not in _CORE:
            out[name] = attribute_value(attribute)
    return out


def observed_at(entity: dict[str, Any], attribute: str) -> datetime | None:
    """When the attribute was observed (its `observedAt`), None when it carries none."""
    node = entity.get(attribute)
    if isinstance(node, list):
        node = node[0] if node else None
    when = node.get("observedAt") if isinstance(node, dict) else None
    return parse_time(when) if isinstance(when, str) else None


def instances(entity: Any, attribute: str) -> list[tuple[datetime, Any]]:
    """(time, value) pairs of one attribute of a temporal entity, in either temporal form, in time order."""
    if isinstance(entity, list):  # some brokers answer a one-element array
        entity = entity[0] if entity else {}
    node = entity.get(attribute) if isinstance(entity, dict) else None
    if node is None:
        return []
    samples: list[tuple[datetime, Any]] = []
    for part in node if isinstance(node, list) else [node]:
        if not isinstance(part, dict):
            continue
        if "values" in part:  # temporalValues: [[value, time], ...]
            samples += [(parse_time(pair[1]), pair[0]) for pair in part["values"]
                        if isinstance(pair, list) and len(pair) >= 2]
        elif "observedAt" in part:  # normalized instance
            samples.append((parse_time(part["observedAt"]), attribute_value(part)))
    return sorted(samples, key=lambda sample: sample[0])


def iso(moment: datetime) -> str:
    """A DateTime as brokers accept it in `timeAt`: UTC, `Z`, milliseconds when there are any."""
    moment = moment.astimezone(UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")
