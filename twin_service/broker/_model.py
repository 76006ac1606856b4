"""NGSI-LD entities: validate what clients send, normalize it for storage, and render it back.

Stored entities are expanded (attribute names and types are IRIs) so a term means the same thing whatever
context the writer used; rendering compacts with the reader's context. Property values are opaque JSON, also
when they are objects (`{"L1": 230, "L2": 231, "L3": 229}`): their keys are neither expanded nor compacted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request

# RFC 3986 scheme, then something without whitespace, controls or characters Orion-LD refuses in ids.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\x00-\x20\x7f<>\"{}|\\^`]+$")
# Non-ASCII characters refused in ids and Relationship objects although IRIs (RFC 3987 §2.2 `ucschar`) allow
# most non-ASCII: controls (Cc), format characters (Cf: invisible ones such as U+200B and the bidirectional
# controls RFC 3987 §4.1 forbids), surrogates, private use and unassigned code points, and spaces. Two ids that
# print the same must be the same id, and every id must be writable in a Location header (percent-encoded).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# ETSI GS CIM 009 V1.8.1 §4.5.1: terms the core context defines as non-reified properties (and the members that
# hold an attribute's value) "shall not be used as Attribute names". createdAt/modifiedAt/deletedAt are the
# broker's to set and are ignored when a client sends them back (e.g. a retrieved entity with sysAttrs).
_RESERVED_ATTRIBUTE_NAMES = frozenset({
    "id", "type", "scope", "datasetId", "instanceId", "observedAt", "unitCode", "objectType", "lang", "value",
    "object", "languageMap", "vocab", "json", "valueList", "objectList", "previousValue", "previousObject",
    "previousLanguageMap", "previousVocab", "previousJson", "previousValueList", "previousObjectList",
    "entity", "entityList", "notUpdated", "success", "errors"})
_IGNORED_ENTITY_MEMBERS = frozenset({"id", "type", "@context", "createdAt", "modifiedAt", "deletedAt"})
_reserved_iris: frozenset[str] | None = None
# Characters Orion-LD forbids in attribute and type names (they break its q-language and storage).
_FORBIDDEN_NAME_CHARS = frozenset('<>"\'=;()\\ \t\r\n&?/#')
_VALID_NAMES: set[str] = set()  # names already checked (bounded: clients inventing names cannot grow it)
_MAX_VALID_NAMES = 10_000
GEO_TYPES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"})
# The attribute types of ETSI GS CIM 009 V1.8.1 §4.5 / §5.2 and the member holding each one's value:
# Property (§5.2.5), Relationship (§5.2.6), GeoProperty (§5.2.7), LanguageProperty (§5.2.32, a language map),
# VocabProperty (§5.2.35, terms expanded with the @context), JsonProperty (§5.2.38, JSON never expanded),
# ListProperty (§5.2.36, an ordered list) and ListRelationship (§5.2.37, an ordered list of objects).
VALUE_MEMBER = {"Property": "value", "GeoProperty": "value", "Relationship": "object",
                "LanguageProperty": "languageMap", "VocabProperty": "vocab", "JsonProperty": "json",
                "ListProperty": "valueList", "ListRelationship": "objectList"}
ATTRIBUTE_TYPES = frozenset(VALUE_MEMBER)
VALUE_MEMBERS = frozenset(VALUE_MEMBER.values())


def previous_member(member: str) -> str:
    """Where a showChanges notification puts the value before the change: value -> previousValue (§5.2.14)."""
    return "previous" + member[0].upper() + member[1:]


# Keys of an attribute that are not sub-attributes: kept under their short names, never expanded.
_ATTRIBUTE_KEYWORDS = frozenset({"type", "objectType", "unitCode", "observedAt", "datasetId", "lang",
                                 "createdAt", "modifiedAt", "instanceId", "deletedAt"}) | VALUE_MEMBERS | frozenset(
    previous_member(m) for m in VALUE_MEMBERS)
# BCP 47 language tag (RFC 5646) as far as its shape, or JSON-LD's @none for a string without a language.
_LANGUAGE_TAG = re.compile(r"^(?:[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|@none)$")
_SYSTEM_KEYS = frozenset({"createdAt", "modifiedAt", "deletedAt", "instanceId"})
_PLAIN_PROPERTY_KEYS = frozenset({"type", "value", "unitCode", "observedAt"})  # _plain_property's shape
# Geo attributes the core context defines; Orion-LD insists they be GeoProperties.
_GEO_ATTRIBUTES = frozenset({"https://uri.etsi.org/ngsi-ld/location", "https://uri.etsi.org/ngsi-ld/observationSpace",
                             "https://uri.etsi.org/ngsi-ld/operationSpace"})


@dataclass
class Entity:
    """One entity (or one fragment of it in an upsert): id, expanded type, expanded attributes."""

    id: str
    type: str
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: str | None = None
    modified_at: str | None = None
    deleted_at: str | None = None  # only on what an entityDeleted notification carries


def now_iso() -> str:
    """The current UTC time in the form Orion-LD prints: milliseconds and a `Z`."""
    return format_datetime(datetime.now(UTC))


def format_datetime(moment: datetime) -> str:
    """A UTC DateTime as `YYYY-MM-DDTHH:MM:SS.sssZ`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_datetime(text: Any, what: str, *, utc_z: bool = False) -> str:
    """An ISO 8601 DateTime normalized to UTC with milliseconds; 400 BadRequestData when it is not one.

    `utc_z`: a DateTime in a payload (observedAt, expiresAt), which ETSI GS CIM 009 §4.6.3 wants in UTC with
    the `Z` designator; another offset (`+02:00`, even `+00:00`) or none is refused rather than converted.
    """
    if not isinstance(text, str) or "T" not in text:
        raise bad_request("Invalid DateTime", f"{what}: {text!r} is not an ISO 8601 DateTime")
    if utc_z and not text.endswith(("Z", "z")):
        raise bad_request("Invalid DateTime", f"{what}: {text!r} must be in UTC with the Z designator "
                                              "(e.g. 2026-11-24T10:00:00.000Z)")
    normalized = _normalized_datetime(text)
    if normalized is None:
        raise bad_request("Invalid DateTime", f"{what}: {text!r} is not an ISO 8601 DateTime")
    return normalized


@lru_cache(maxsize=4096)
def _normalized_datetime(text: str) -> str | None:
    """Cached by the text alone (None: not a DateTime): every attribute of one reading, and often every entity
    of a batch, shares one observedAt. Keyed with the attribute's name too, as it was, a meter message's ~30
    attributes were ~30 misses, each a fromisoformat and a strftime (~5 % of the broker at 1,000 meters)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # NGSI-LD DateTimes are UTC; a bare one means UTC
    return format_datetime(moment)


def is_uri(value: Any) -> bool:
    """True for an absolute URI (an IRI without invisible characters), which NGSI-LD demands for entity ids and
    Relationship objects."""
    return (isinstance(value, str) and bool(_URI.match(value))
            and (value.isascii() or not any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in value)))


def check_entity_id(value: Any) -> str:
    """The entity id if it is a URI, else 400 BadRequestData."""
    if not isinstance(value, str) or not value:
        raise bad_request("Invalid Entity", "entity id missing or not a string")
    if not is_uri(value):
        raise bad_request("Invalid Entity id", f"not a URI: {value!r}")
    return value


def check_name(name: Any, what: str) -> str:
    """An attribute or type name without the characters Orion-LD refuses."""
    if not isinstance(name, str) or not name:
        raise bad_request(f"Invalid {what}", f"{what} missing or not a string")
    if name in _VALID_NAMES:  # a meter sends the same ~30 names in every reading
        return name
    bad = sorted(_FORBIDDEN_NAME_CHARS.intersection(name))
    if bad and not is_uri(name):
        raise bad_request(f"Invalid {what}", f"{name!r} holds forbidden characters {''.join(bad)!r}")
    if len(_VALID_NAMES) < _MAX_VALID_NAMES:
        _VALID_NAMES.add(name)
    return name


def parse_entity(body: Any, ctx: ActiveContext) -> Entity:
    """Validate a normalized NGSI-LD entity (no @context left in it) and expand it with `ctx`."""
    if not isinstance(body, dict):
        raise bad_request("Invalid Entity", "an entity must be a JSON object")
    entity_id = check_entity_id(body.get("id"))
    raw_type = body.get("type")
    if isinstance(raw_type, list):
        raise NgsiLdError("OperationNotSupported", "Multi-typed entities are not supported", entity_id)
    entity_type = ctx.expand(check_entity_type(raw_type))
    entity = Entity(entity_id, entity_type)
    for key, raw in body.items():
        if key in _IGNORED_ENTITY_MEMBERS:
            continue  # id and type are read above; system attributes are the broker's to set
        if key == "scope":
            raise NgsiLdError("OperationNotSupported", "Scopes are not supported", entity_id)
        name = attribute_name(key, ctx)
        entity.attrs[name] = parse_attribute(key, raw, ctx)
        if name in _GEO_ATTRIBUTES and entity.attrs[name]["type"] != "GeoProperty":
            raise bad_request("Invalid attribute", f"{key} must be a GeoProperty")
    return entity


def attribute_name(key: Any, ctx: ActiveContext) -> str:
    """The expanded name of an attribute a client writes: valid characters, and not a core term or JSON-LD
    keyword (§4.5.1), whatever the operation (create, append, update, merge, replace, temporal)."""
    name = ctx.expand(check_name(key, "attribute name"))
    if key.startswith("@") or key in _RESERVED_ATTRIBUTE_NAMES or name in _reserved_attribute_iris(ctx):
        raise bad_request("Invalid attribute name", f"{key!r} is an NGSI-LD core term or JSON-LD keyword, "
                                                    "which cannot name an attribute (ETSI GS CIM 009 §4.5.1)")
    return name


def check_entity_type(raw_type: Any) -> str:
    """An entity type name: a URI, or a term that starts with a letter or `_` and is not a JSON-LD keyword or
    the core term `type`/`id` (§4.6.2: type names are terms or IRIs; a term starting with a digit is neither)."""
    name = check_name(raw_type, "entity type")
    if not is_uri(name) and (not (name[0].isalpha() or name[0] == "_") or name in ("type", "id")):
        raise bad_request("Invalid entity type", f"{name!r}: an entity type is a URI or a name starting with a "
                                                 "letter that is not a core term (ETSI GS CIM 009 §4.6.2)")
    return name


def _reserved_attribute_iris(ctx: ActiveContext) -> frozenset[str]:
    """The IRIs of the reserved names (core terms win over user terms, so these are the same for every ctx)."""
    global _reserved_iris
    if _reserved_iris is None:
        _reserved_iris = frozenset(ctx.expand(term) for term in _RESERVED_ATTRIBUTE_NAMES
                                   if not ctx.expand(term).startswith(ctx.vocab))
    return _reserved_iris


def parse_attribute(name: str, raw: Any, ctx: ActiveContext) -> dict[str, Any]:
    """Validate one attribute, normalized or concise (§4.5.3), and its sub-attributes; returns it normalized."""
    if type(raw) is dict and raw.get("type") == "Property" and raw.keys() <= _PLAIN_PROPERTY_KEYS:
        plain = _plain_property(name, raw)
        if plain is not None:
            return plain
    if isinstance(raw, list) and raw and all(isinstance(item, dict) for item in raw):
        raise NgsiLdError("OperationNotSupported", "Multi-attributes (datasetId arrays) are not supported", name)
    raw = _normalized(name, raw)
    if "@context" in raw:
        raise bad_request("Invalid attribute", f"{name}: an attribute cannot carry its own @context "
                                               "(ETSI GS CIM 009 §5.5.7)")
    kind = raw.get("type")
    if kind not in ATTRIBUTE_TYPES:
        raise bad_request("Invalid attribute", f"{name}: type must be one of {sorted(ATTRIBUTE_TYPES)}, "
                                               f"not {kind!r}")
    member = VALUE_MEMBER[kind]
    foreign = sorted((VALUE_MEMBERS - {member}) & raw.keys())
    if foreign:
        raise bad_request("Invalid attribute", f"{name}: a {kind} has {member}, not {', '.join(foreign)}")
    attribute: dict[str, Any] = {"type": kind, member: _attribute_value(name, kind, raw.get(member), ctx)}
    for key, sub in raw.items():
        if key == "type" or key in VALUE_MEMBERS or key in _SYSTEM_KEYS:
            continue
        if key == "observedAt":
            attribute[key] = parse_datetime(sub, f"{name}.observedAt", utc_z=True)
        elif key == "unitCode":
            if kind in ("Relationship", "ListRelationship"):
                raise bad_request("Invalid attribute", f"{name}: a {kind} has no unitCode (ETSI GS CIM 009 "
                                                       "§4.5.3.2: Relationships are unitless)")
            if not isinstance(sub, str) or not sub:
                raise bad_request("Invalid attribute", f"{name}.unitCode must be a non-empty string")
            attribute[key] = sub
        elif key == "datasetId":
            if not is_uri(sub):
                raise bad_request("Invalid attribute", f"{name}.datasetId must be a URI")
            attribute[key] = sub
        elif key == "objectType":
            attribute[key] = sub
        else:
            attribute[ctx.expand(check_name(key, "sub-attribute name"))] = parse_attribute(f"{name}.{key}", sub, ctx)
    return attribute


def _plain_property(name: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    """The common case of a meter's attribute, `{"type": "Property", "value": v, "unitCode": u, "observedAt": t}`
    (any subset of the last two), checked without the general walk: the same answer and the same errors as the
    general path below (tests/broker/test_entities.py), or None to take that path (a null value). A meter message
    is ~30 of these, parsed ~30 times per message in a batch upsert."""
    value = raw.get("value")
    if value is None:
        return None  # missing or null: the general path reports it
    attribute: dict[str, Any] = {"type": "Property", "value": value}
    for key, sub in raw.items():
        if key == "observedAt":
            attribute[key] = parse_datetime(sub, f"{name}.observedAt", utc_z=True)
        elif key == "unitCode":
            if not isinstance(sub, str) or not sub:
                raise bad_request("Invalid attribute", f"{name}.unitCode must be a non-empty string")
            attribute[key] = sub
    return attribute


def _normalized(name: str, raw: Any) -> dict[str, Any]:
    """An attribute in the concise representation (§4.5.3) given its type: a bare value or array is a Property,
    a GeoJSON geometry a GeoProperty, an object holding `value`/`object`/`languageMap`/`vocab`/`json`/
    `valueList`/`objectList` the type that member belongs to (`value` with a geometry: GeoProperty)."""
    if raw is None:
        raise bad_request("Invalid attribute", f"{name}: null is not an attribute value")
    if not isinstance(raw, dict):
        return {"type": "Property", "value": raw}
    if "type" in raw:
        if raw["type"] in GEO_TYPES and "coordinates" in raw:
            return {"type": "GeoProperty", "value": raw}  # a bare GeoJSON geometry
        return raw
    given = sorted(m for m in VALUE_MEMBERS if m in raw)
    if len(given) != 1:
        raise bad_request("Invalid attribute", f"{name}: an attribute without a type (concise) holds exactly one "
                                               f"of {', '.join(sorted(VALUE_MEMBERS))}"
                                               + (f", not {', '.join(given)}" if given else ""))
    member = given[0]
    if member == "value":
        value = raw["value"]
        is_geometry = isinstance(value, dict) and value.get("type") in GEO_TYPES and "coordinates" in value
        kind = "GeoProperty" if is_geometry else "Property"
    else:
        kind = next(t for t, m in VALUE_MEMBER.items() if m == member)
    return {**raw, "type": kind}


def _attribute_value(name: str, kind: str, value: Any, ctx: ActiveContext) -> Any:
    """The value member of one attribute, checked for its type (400 BadRequestData when wrong or missing)."""
    member = VALUE_MEMBER[kind]
    if value is None:
        raise bad_request("Invalid attribute", f"{name}: {member} missing or null")
    if kind == "Relationship":
        return _relationship_object(name, value)
    if kind == "GeoProperty":
        return _geometry(name, value)
    if kind == "LanguageProperty":
        if (not isinstance(value, dict) or not value
                or not all(isinstance(tag, str) and _LANGUAGE_TAG.match(tag) for tag in value)
                or not all(isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(i, str) for i in v))
                           for v in value.values())):
            raise bad_request("Invalid attribute", f"{name}: languageMap must map language tags (BCP 47) to "
                                                   "strings or arrays of strings")
        return value
    if kind == "VocabProperty":
        terms = value if isinstance(value, list) else [value]
        if not terms or not all(isinstance(t, str) and t for t in terms):
            raise bad_request("Invalid attribute", f"{name}: vocab must be a term or an array of terms")
        expanded = [ctx.expand(t) for t in terms]
        return expanded if isinstance(value, list) else expanded[0]
    if kind == "ListProperty":
        if not isinstance(value, list):
            raise bad_request("Invalid attribute", f"{name}: valueList must be an array")
        return value
    if kind == "ListRelationship":
        items = [item.get("object") if isinstance(item, dict) else item for item in value] \
            if isinstance(value, list) else None
        if not items or not all(is_uri(item) for item in items):
            raise bad_request("Invalid attribute", f"{name}: objectList must be an array of URIs (or of "
                                                   "{\"object\": URI})")
        return [{"object": item} for item in items]
    return value  # Property and JsonProperty: any JSON value, opaque


def value_of(attribute: dict[str, Any]) -> Any:
    """What an attribute holds, whatever its type (keyValues and the q language read this)."""
    kind = attribute.get("type")
    if kind == "ListRelationship":
        return [item["object"] for item in attribute.get("objectList", [])]
    return attribute.get(VALUE_MEMBER.get(kind, "value"))


def _relationship_object(name: str, target: Any) -> str | list[str]:
    """A Relationship's object: one URI or a non-empty list of them (Orion-LD accepts arrays)."""
    if is_uri(target):
        return target
    if isinstance(target, list) and target and all(is_uri(t) for t in target):
        return target
    raise bad_request("Invalid attribute", f"{name}: a Relationship object must be a URI or a list of URIs")


def _geometry(name: str, value: Any) -> dict[str, Any]:
    """A GeoJSON geometry, checked only as far as its shape (type + coordinates)."""
    if (not isinstance(value, dict) or value.get("type") not in GEO_TYPES
            or not isinstance(value.get("coordinates"), list)):
        raise bad_request("Invalid attribute", f"{name}: a GeoProperty value must be a GeoJSON geometry "
                                               f"({', '.join(sorted(GEO_TYPES))}) with coordinates")
    return value


@dataclass(frozen=True)
class RenderOptions:
    """How a client asked to see entities: keyValues/concise/sysAttrs, `attrs=`/`pick=`/`omit=` (expanded)."""

    key_values: bool = False
    sys_attrs: bool = False
    attrs: frozenset[str] | None = None
    concise: bool = False
    pick: frozenset[str] | None = None  # may hold "id" and "type" as well
    omit: frozenset[str] | None = None
    lang: tuple[str, ...] | None = None  # `lang=`: LanguageProperties rendered in the first of these languages


def render_entity(entity: Entity, ctx: ActiveContext, options: RenderOptions) -> dict[str, Any]:
    """An entity as a client sees it: compacted with its context, normalized, concise or keyValues."""
    out: dict[str, Any] = {}
    for member, value in (("id", entity.id), ("type", ctx.compact(entity.type))):
        if _shown(member, options):
            out[member] = value
    if entity.deleted_at is not None:
        out["deletedAt"] = entity.deleted_at
    elif options.sys_attrs and not options.key_values:
        out["createdAt"] = entity.created_at
        out["modifiedAt"] = entity.modified_at
    for name, attribute in entity.attrs.items():
        if (options.attrs is not None and name not in options.attrs) or not _shown(name, options):
            continue
        short = ctx.compact(name)
        if options.lang is not None and attribute.get("type") == "LanguageProperty":
            attribute = in_language(attribute, options.lang)
        if options.key_values:
            out[short] = _compact_vocab(value_of(attribute), ctx) if attribute["type"] == "VocabProperty" \
                else value_of(attribute)
        elif options.concise:
            out[short] = concise_attribute(render_attribute(attribute, ctx, options.sys_attrs))
        else:
            out[short] = render_attribute(attribute, ctx, options.sys_attrs)
    return out


def in_language(attribute: dict[str, Any], lang: tuple[str, ...]) -> dict[str, Any]:
    """A LanguageProperty as a Property in the client's language (`lang=`, §4.15): the first tag of `lang` the
    map has (a tag also matches its subtags: `en` matches `en-GB`), else `@none`, else the first entry.
    `lang=*` keeps the whole map."""
    if "*" in lang:
        return attribute
    languages = attribute["languageMap"]
    chosen = next((tag for wanted in lang for tag in languages
                   if tag.lower() == wanted.lower() or tag.lower().startswith(wanted.lower() + "-")), None)
    if chosen is None:
        chosen = "@none" if "@none" in languages else next(iter(languages))
    out = {k: v for k, v in attribute.items() if k != "languageMap"}
    out["type"] = "Property"
    out["value"] = languages[chosen]
    if chosen != "@none":
        out["lang"] = chosen
    return out


def parse_lang(raw: str | None) -> tuple[str, ...] | None:
    """The `lang` URI parameter (`fr`, `fr,en;q=0.8`, `*`): tags by decreasing preference (400 when malformed)."""
    if raw is None:
        return None
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(raw.split(",")):
        tag, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            try:
                quality = float(value) if key == "q" else quality
            except ValueError:
                raise bad_request("Invalid value for URI parameter lang", f"{raw!r}") from None
        if not (tag == "*" or (_LANGUAGE_TAG.match(tag) and tag != "@none")):
            raise bad_request("Invalid value for URI parameter lang", f"{tag!r} is not a language tag")
        weighted.append((-quality, position, tag))
    return tuple(tag for _, _, tag in sorted(weighted))


def _compact_vocab(value: Any, ctx: ActiveContext) -> Any:
    return [ctx.compact(v) for v in value] if isinstance(value, list) else ctx.compact(value)


def _shown(name: str, options: RenderOptions) -> bool:
    return (options.pick is None or name in options.pick) and (options.omit is None or name not in options.omit)


def concise_attribute(attribute: dict[str, Any]) -> Any:
    """The concise form (NGSI-LD 1.6+): no `type`; a Property with nothing but a non-object value is that value.

    An object value keeps its `{"value": …}` wrapper, otherwise a reader could not tell it from sub-attributes.
    """
    out = {k: (concise_attribute(v) if isinstance(v, dict) and "type" in v and k not in ("value", "object") else v)
           for k, v in attribute.items() if k != "type"}
    if attribute.get("type") == "Property" and set(out) == {"value"} and not isinstance(out["value"], dict | list):
        return out["value"]
    return out


def render_attribute(attribute: dict[str, Any], ctx: ActiveContext, sys_attrs: bool) -> dict[str, Any]:
    """One normalized attribute compacted with the reader's context (system times only with sysAttrs)."""
    out: dict[str, Any] = {}
    member = VALUE_MEMBER.get(attribute.get("type", "Property"), "value")
    for key, value in attribute.items():
        if key in _ATTRIBUTE_KEYWORDS:
            if (key in _SYSTEM_KEYS and not sys_attrs and key != "deletedAt") or (key in VALUE_MEMBERS and
                                                                                    key != member):
                continue  # a history instance of a v1.8 type also carries the store's (empty) `value`
            if key == "vocab":
                value = _compact_vocab(value, ctx)
            out[key] = value
        else:
            out[ctx.compact(key)] = render_attribute(value, ctx, sys_attrs)
    return out
