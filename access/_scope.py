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

import json
import re
from collections.abc import Iterable
from typing import Any

from access._tokens import Identity

OWNER_RELATIONSHIPS = ("detectedBy",)


def id_type(entity_id: str) -> str | None:
    """The entity type an id names by the NGSI-LD URN convention `urn:ngsi-ld:<Type>:<id>` (the one
    fiware_client's `type_of` reads; not imported here to keep the PEP's start light); None for other ids."""
    parts = entity_id.split(":")
    return parts[2] if len(parts) > 3 and parts[0] == "urn" and parts[1] == "ngsi-ld" else None


def write_type_refusal(write_types: frozenset[str], path_id: str | None, body: bytes) -> str | None:
    """Why a write is outside the role's entity types, or None. Fails closed: an id without a type in it, or a
    batch body whose ids cannot be read, is refused."""
    allowed = ", ".join(sorted(write_types))
    if path_id is not None:
        found = id_type(path_id)
        return None if found in write_types else f"this role writes only {allowed}, not {found or path_id!r}"
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return "the write's entities cannot be checked (the body is not JSON)"
    items = data if isinstance(data, list) else [data]
    for item in items:
        item_id = item.get("id") if isinstance(item, dict) else item if isinstance(item, str) else None
        found = id_type(str(item_id)) if item_id is not None else None
        if found not in write_types:
            return f"this role writes only {allowed}, not {found or item_id!r}"
    return None


_ATTRS_PATH = re.compile(r"^/ngsi-ld/v1/entities/(?P<id>[^/]+)/attrs(?:/(?P<attr>[^/]+))?$")
# The NGSI-LD core context (any version) defines only core terms and is in effect in every request anyway.
_CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context"
_LINK = re.compile(r'<([^>]*)>\s*((?:;[^,;]*)*)')


def _link_contexts(links: Iterable[str]) -> list[str] | None:
    """The @context URLs of `Link` headers (ETSI GS CIM 009 §6.3.5: rel json-ld#context), None if unreadable."""
    out: list[str] = []
    for header in links:
        rest = header.strip()
        while rest:
            match = _LINK.match(rest)
            if match is None:
                return None
            if "json-ld#context" in match.group(2):
                out.append(match.group(1))
            rest = rest[match.end():].lstrip().removeprefix(",").lstrip()
    return out


def write_attribute_refusal(write_attrs: dict[str, frozenset[str]], contexts: frozenset[str], method: str,
                            path: str, links: Iterable[str], body: bytes) -> str | None:
    """Why a write is outside the attributes a role may update, or None (the entity type is checked before).

    Such a role may only update attributes it lists: PATCH /entities/{id}/attrs (every key of the body) or PATCH
    /entities/{id}/attrs/{attr}, with no @context or one of `contexts`. The names are JSON-LD terms, so they
    mean what the request's @context says: an inline or unknown context could map `batteryPowerSetpoint` to
    another attribute's IRI, and is refused; an expanded IRI as a name is not in the list, and is refused.
    Everything else (create, replace, delete, append, batch, temporal writes) is refused: fails closed."""
    match = _ATTRS_PATH.match(path) if method == "PATCH" else None
    if match is None:
        return (f"this role may only update the attributes it lists ({_listing(write_attrs)}) with PATCH "
                f"/ngsi-ld/v1/entities/{{id}}/attrs[/{{attr}}], not {method} {path}")
    allowed = write_attrs.get(id_type(match.group("id")) or "", frozenset())
    named = _link_contexts(links)
    if named is None:
        return "the request's Link header cannot be read"
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return "the write's attributes cannot be checked (the body is not JSON)"
    if not isinstance(data, dict) or not data:
        return "the write's attributes cannot be checked (the body is not a JSON object)"
    inline = data.get("@context")
    if inline is not None:
        inline_list = inline if isinstance(inline, list) else [inline]
        if not all(isinstance(c, str) for c in inline_list):
            return "an inline @context may redefine attribute names: name one of the role's contexts by URL"
        named += inline_list
    unknown = [c for c in named if c not in contexts and not c.startswith(_CORE_CONTEXT)]
    if unknown:
        return (f"@context {unknown[0]!r} is not one this role writes with ({', '.join(sorted(contexts))}): "
                f"it could map a listed name to another attribute")
    names = [match.group("attr")] if match.group("attr") else [k for k in data if k != "@context"]
    refused = [n for n in names if n not in allowed] or ([] if names else ["(none)"])
    if refused:
        return (f"this role may update only {', '.join(sorted(allowed)) or 'no attribute'} of "
                f"{id_type(match.group('id'))}, not {refused[0]!r}")
    return None


def _listing(write_attrs: dict[str, frozenset[str]]) -> str:
    return "; ".join(f"{t}: {', '.join(sorted(a))}" for t, a in sorted(write_attrs.items()))


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
