"""Scope `own` on entity bodies: is this entity (in any NGSI-LD representation) one of the caller's?

An entity is the caller's when its id ends with one of their device ids or CUPS (`Identity.owns`), or when it
names one of their devices through an owner relationship. The second rule is for entities *about* a meter that
are not the meter: an `Anomaly` (Smart Data Models dataModel.Alert) of meter-001 is
`urn:ngsi-ld:Anomaly:meter-001:voltageLow-L1-...` and says whose it is in `detectedBy`
(`urn:ngsi-ld:Device:meter-001`), so a member sees their meter's anomalies without the PEP guessing from id
shapes. Relationships are read in every representation ETSI GS CIM 009 defines: normalized (`{"type":
"Relationship", "object": ...}`), concise (`{"object": ...}`), keyValues (the object id as the value), temporal
(a list of instances, or `objects` pairs with `format=temporalValues`), and GeoJSON features (`properties`).

Fails closed: an entity that has no owner relationship in the body (e.g. projected away with `attrs`) is not
the caller's, and one whose relationship names several objects is the caller's only when all of them are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from access._tokens import Identity

OWNER_RELATIONSHIPS = ("detectedBy",)


def _objects(attr: Any) -> list[str]:
    """The object ids of one relationship attribute, whatever its representation."""
    if isinstance(attr, str):
        return [attr]
    if isinstance(attr, list):
        return [o for item in attr for o in _objects(item)]
    if isinstance(attr, dict):
        if "object" in attr:
            return _objects(attr["object"])
        if "objects" in attr:  # temporalValues: [[object, observedAt], ...]
            return [pair[0] if isinstance(pair, list) and pair else pair for pair in attr["objects"]
                    if isinstance(pair, (str, list))]
        if "value" in attr and isinstance(attr["value"], (str, list)):  # keyValues wrapped by some brokers
            return _objects(attr["value"])
    return []


def owns_entity(identity: Identity, entity: Any, relationships: Iterable[str] = OWNER_RELATIONSHIPS) -> bool:
    """True when `entity` (an entity, temporal entity or GeoJSON Feature) is the caller's."""
    if not isinstance(entity, dict):
        return False
    if identity.owns(str(entity.get("id", ""))):
        return True
    body = entity.get("properties") if isinstance(entity.get("properties"), dict) else entity
    found: list[str] = []
    for name in relationships:
        if name in body:
            found += _objects(body[name])
    return bool(found) and all(isinstance(o, str) and identity.owns(o) for o in found)


def filter_entities(identity: Identity, data: Any, relationships: Iterable[str] = OWNER_RELATIONSHIPS) -> Any:
    """An entity-listing answer with only the caller's entities (a list, a GeoJSON FeatureCollection, or one
    entity, which becomes {} when not the caller's)."""
    rels = tuple(relationships)
    if isinstance(data, list):
        return [e for e in data if owns_entity(identity, e, rels)]
    if isinstance(data, dict):
        if data.get("type") == "FeatureCollection":
            return {**data, "features": [f for f in data.get("features") or [] if owns_entity(identity, f, rels)]}
        if "id" in data:
            return data if owns_entity(identity, data, rels) else {}
        return {}  # an unknown shape cannot be checked: nothing of it is shown
    return data
