"""NGSI-LD subscriptions as data: validation of what clients send, matching of changes, rendering back.

A subscription is stored as the client's own JSON (`raw`) plus the @context it was made with, and re-parsed
on load, so a restart rebuilds exactly what the client asked for; its notification status is stored beside it.
Matching (entities/type/idPattern, watchedAttributes, q) is pure and cheap: the notifier runs it for every
committed change.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request
from ._geo import GeoQuery, parse_geo_query
from ._model import Entity, is_uri, now_iso, parse_datetime, parse_lang
from ._operations import Change
from ._query import Query, compile_q, type_selection

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.6.2 token
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")
FORMATS = frozenset({"normalized", "keyValues", "concise", "simplified"})
ACCEPTS = frozenset({"application/json", "application/ld+json"})
# notification member (read only) of this broker: owed notifications dropped because the receiver stayed away
# beyond the backlog's bound (docs/reliability.md); a compact IRI of its own prefix, never an NGSI-LD term
DROPPED_MEMBER = "energytwin:notificationsDropped"
_MEMBERS = frozenset({"id", "type", "subscriptionName", "description", "entities", "watchedAttributes", "q",
                      "notification", "throttling", "timeInterval", "expiresAt", "isActive", "@context",
                      "status", "notificationTrigger", "lang", "jsonldContext", "geoQ"})
_UNSUPPORTED = ("csf", "scopeQ", "temporalQ")
# Notification triggers of ETSI GS CIM 009 V1.8.1 §5.2.12 and the default (deletions are notified only on request).
TRIGGERS = frozenset({"entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated",
                      "attributeDeleted"})
_DEFAULT_TRIGGERS = frozenset({"entityCreated", "entityUpdated", "attributeCreated", "attributeUpdated"})


@dataclass(frozen=True)
class Selector:
    """One `entities` item: its type (expanded; a type expression as written), optionally an id or an idPattern."""

    type: str | None
    id: str | None = None
    id_pattern: re.Pattern[str] | None = None
    types: frozenset[str] | None = None  # what a type expression (§4.17) selects; None: `type` itself

    def matches(self, entity: Entity) -> bool:
        """Whether the entity is one this selector names."""
        if self.types is not None:
            if entity.type not in self.types:
                return False
        elif self.type is not None and entity.type != self.type:
            return False
        if self.id is not None and entity.id != self.id:
            return False
        return self.id_pattern is None or self.id_pattern.search(entity.id) is not None


@dataclass
class Status:
    """Notification counters and times (kept across restarts)."""

    times_sent: int = 0
    times_failed: int = 0
    last_notification: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    failed: bool = False
    dropped: int = 0  # owed notifications dropped for lack of room: kept by the backlog, not stored here

    def to_json(self) -> dict[str, Any]:
        """As stored in SQLite."""
        return {"timesSent": self.times_sent, "timesFailed": self.times_failed,
                "lastNotification": self.last_notification, "lastSuccess": self.last_success,
                "lastFailure": self.last_failure, "failed": self.failed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        """From what `to_json` stored."""
        return cls(data.get("timesSent", 0), data.get("timesFailed", 0), data.get("lastNotification"),
                   data.get("lastSuccess"), data.get("lastFailure"), bool(data.get("failed")))


@dataclass
class Subscription:
    """A parsed subscription with its runtime status."""

    id: str
    tenant: str
    raw: dict[str, Any]  # what the client sent (without @context), for re-parsing on restart and PATCH
    context: Any  # the @context it was made with: notifications are compacted with it
    ctx: ActiveContext
    selectors: tuple[Selector, ...]
    watched: frozenset[str] | None
    q: Query | None
    attributes: frozenset[str] | None
    format: str
    sys_attrs: bool
    uri: str
    accept: str
    receiver_info: tuple[tuple[str, str], ...]
    throttling: float | None
    time_interval: float | None
    expires_at: str | None
    is_active: bool
    triggers: frozenset[str] = _DEFAULT_TRIGGERS
    geo: GeoQuery | None = None
    lang: tuple[str, ...] | None = None  # §5.2.12 lang: LanguageProperties notified in this language
    show_changes: bool = False  # §5.2.14 notification.showChanges: previous values beside the new ones
    pick: frozenset[str] | None = None  # §5.2.14 notification.pick / omit (may hold id and type)
    omit: frozenset[str] | None = None
    status: Status = field(default_factory=Status)
    last_accepted: float = float("-inf")  # monotonic time of the last notification queued (throttling)

    def state(self, now: str | None = None) -> str:
        """`active`, `paused` (isActive false) or `expired` (past expiresAt)."""
        if self.expires_at is not None and (now or now_iso()) >= self.expires_at:
            return "expired"
        return "active" if self.is_active else "paused"

    def selects(self, entity: Entity) -> bool:
        """Whether the entity is in the subscription's scope (entities + q), whatever changed."""
        if self.selectors and not any(s.matches(entity) for s in self.selectors):
            return False
        return (self.q is None or self.q.matches(entity)) and (self.geo is None or self.geo.matches(entity))

    def triggered_by(self, change: Change) -> bool:
        """Whether a committed change should notify (periodic subscriptions never are, they poll)."""
        if self.time_interval is not None:
            return False
        triggers = self.triggers
        if change.deleted:
            hit = "entityDeleted" in triggers
        elif change.created:
            hit = bool({"entityCreated", "attributeCreated"} & triggers)
        else:
            updated = change.attrs - change.new_attrs
            hit = (bool(change.attrs and "entityUpdated" in triggers)
                   or bool(change.new_attrs and "attributeCreated" in triggers)
                   or bool(updated and "attributeUpdated" in triggers)
                   or bool(change.deleted_attrs and "attributeDeleted" in triggers))
        if not hit:
            return False
        if self.watched is not None and not change.deleted:
            touched = change.attrs | (change.deleted_attrs if "attributeDeleted" in triggers else frozenset())
            if not (self.watched & touched):
                return False
        return self.selects(change.entity)

    def render(self, ctx: ActiveContext) -> dict[str, Any]:
        """The subscription as GET answers it, compacted with the reader's context, status included."""
        out: dict[str, Any] = {"id": self.id, "type": "Subscription"}
        for member in ("subscriptionName", "description"):
            if member in self.raw:
                out[member] = self.raw[member]
        if self.selectors:
            out["entities"] = [{k: v for k, v in (("id", s.id), ("idPattern", s.id_pattern.pattern if s.id_pattern
                                                                            else None),
                                                  ("type", s.type if s.types is not None else
                                                   ctx.compact(s.type) if s.type else None)) if v}
                               for s in self.selectors]
        if self.watched is not None:
            out["watchedAttributes"] = sorted(ctx.compact(a) for a in self.watched)
        if self.q is not None:
            out["q"] = self.raw.get("q", self.q.text)  # as written (percent-encoded or not)
        for member in ("geoQ", "lang"):
            if member in self.raw:
                out[member] = self.raw[member]
        notification: dict[str, Any] = {"format": self.format}
        if self.attributes is not None:
            notification["attributes"] = sorted(ctx.compact(a) for a in self.attributes)
        if self.sys_attrs:
            notification["sysAttrs"] = True
        if self.show_changes:
            notification["showChanges"] = True
        for member in ("pick", "omit"):
            if member in self.raw["notification"]:
                notification[member] = self.raw["notification"][member]
        endpoint: dict[str, Any] = {"uri": self.uri, "accept": self.accept}
        if self.receiver_info:
            endpoint["receiverInfo"] = [{"key": k, "value": v} for k, v in self.receiver_info]
        notification["endpoint"] = endpoint
        notification["status"] = "failed" if self.status.failed else "ok"
        notification["timesSent"] = self.status.times_sent
        if self.status.times_failed:
            notification["timesFailed"] = self.status.times_failed
        for key, value in (("lastNotification", self.status.last_notification),
                           ("lastSuccess", self.status.last_success), ("lastFailure", self.status.last_failure)):
            if value is not None:
                notification[key] = value
        if self.status.dropped:  # not NGSI-LD (ETSI GS CIM 009 has no member for it): this broker's own
            notification[DROPPED_MEMBER] = self.status.dropped
        out["notification"] = notification
        if self.throttling is not None:
            out["throttling"] = self.throttling
        if self.time_interval is not None:
            out["timeInterval"] = self.time_interval
        if self.expires_at is not None:
            out["expiresAt"] = self.expires_at
        if "notificationTrigger" in self.raw:
            out["notificationTrigger"] = self.raw["notificationTrigger"]
        out["isActive"] = self.is_active
        out["status"] = self.state()
        return out


def new_subscription_id() -> str:
    """A fresh subscription id (what Orion-LD generates looks the same)."""
    return f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"


def _number(raw: dict[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise bad_request(f"Invalid {name}", f"{name} must be a non-negative number of seconds, not {value!r}")
    return float(value)


def _names(raw: Any, what: str, ctx: ActiveContext) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(a, str) and a for a in raw):
        raise bad_request(f"Invalid {what}", f"{what} must be a non-empty array of attribute names")
    return frozenset(ctx.expand(a) for a in raw)


def parse_subscription(raw: dict[str, Any], tenant: str, context: Any, ctx: ActiveContext,
                       status: Status | None = None, *, check_expiry: bool = True) -> Subscription:
    """Validate a subscription body (400 BadRequestData with the reason) and compile its q."""
    if raw.get("type") != "Subscription":
        raise bad_request("Invalid subscription", "type must be \"Subscription\"")
    for name in _UNSUPPORTED:
        if name in raw:
            raise NgsiLdError("OperationNotSupported", f"{name} in subscriptions is not supported", status=501)
    trigger = raw.get("notificationTrigger")
    if trigger is not None and (not isinstance(trigger, list) or not trigger
                                or not all(isinstance(t, str) for t in trigger) or not set(trigger) <= TRIGGERS):
        raise bad_request("Invalid subscription", f"notificationTrigger must be a non-empty array of "
                                                  f"{', '.join(sorted(TRIGGERS))}")
    unknown = sorted(set(raw) - _MEMBERS)
    if unknown:
        raise bad_request("Invalid subscription", f"unknown members: {', '.join(unknown)}")
    sub_id = raw["id"] if "id" in raw else new_subscription_id()  # "" is an invalid id, not "none given"
    if not is_uri(sub_id):
        raise bad_request("Invalid subscription id", f"not a URI: {sub_id!r}")
    selectors = []
    entities = raw.get("entities")
    if entities is not None:
        if not isinstance(entities, list) or not entities:
            raise bad_request("Invalid subscription", "entities must be a non-empty array")
        for item in entities:
            if not isinstance(item, dict) or not any(k in item for k in ("type", "id", "idPattern")):
                raise bad_request("Invalid subscription", "each entities item needs a type, an id or an idPattern "
                                                          "(§5.2.33 EntitySelector)")
            if not all(isinstance(item[k], str) and item[k] for k in ("type", "id", "idPattern") if k in item):
                raise bad_request("Invalid subscription", "entities type, id and idPattern are non-empty strings")
            if "id" in item and not is_uri(item["id"]):
                raise bad_request("Invalid subscription", f"entities id {item['id']!r} is not a URI")
            pattern = None
            if "idPattern" in item:
                try:
                    pattern = re.compile(item["idPattern"])
                except (re.error, TypeError) as exc:
                    raise bad_request("Invalid subscription", f"idPattern: {exc}") from None
            if "type" not in item:
                selectors.append(Selector(None, item.get("id"), pattern))
            elif any(c in item["type"] for c in ",;|()"):  # a type expression: kept as written, matched as a set
                selected = type_selection(item["type"], ctx)
                selectors.append(Selector(item["type"], item.get("id"), pattern, frozenset(selected or ())))
            else:
                selectors.append(Selector(ctx.expand(item["type"]), item.get("id"), pattern))
    watched = _names(raw.get("watchedAttributes"), "watchedAttributes", ctx)
    if not selectors and watched is None:
        raise bad_request("Invalid subscription", "give entities or watchedAttributes (or both)")
    lang = raw.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise bad_request("Invalid subscription", "lang must be a string such as \"fr\" or \"fr,en;q=0.8\"")
    geo_q = raw.get("geoQ")
    if geo_q is not None and not isinstance(geo_q, dict):
        raise bad_request("Invalid subscription", "geoQ must be an object (§5.2.13 GeoQuery)")
    geo = parse_geo_query(geo_q.get("georel"), geo_q.get("geometry"), geo_q.get("coordinates"),
                          geo_q.get("geoproperty"), ctx) if geo_q else None
    q = raw.get("q")
    if q is not None and (not isinstance(q, str) or not q):
        raise bad_request("Invalid subscription", "q must be a non-empty string")
    notification = raw.get("notification")
    if not isinstance(notification, dict):
        raise bad_request("Invalid subscription", "notification is required")
    fmt = notification.get("format", "normalized")
    if fmt not in FORMATS:
        raise bad_request("Invalid subscription", f"notification.format {fmt!r}: use {', '.join(sorted(FORMATS))}")
    endpoint = notification.get("endpoint")
    if not isinstance(endpoint, dict) or not isinstance(endpoint.get("uri"), str):
        raise bad_request("Invalid subscription", "notification.endpoint.uri is required")
    uri = endpoint["uri"]
    if not uri.startswith(("http://", "https://")):
        raise NgsiLdError("OperationNotSupported", "Only http(s) notification endpoints are supported", uri,
                          status=501)
    accept = endpoint.get("accept", "application/json")
    if accept not in ACCEPTS:
        raise bad_request("Invalid subscription", f"endpoint.accept {accept!r}: use {', '.join(sorted(ACCEPTS))}")
    receiver_info = []
    for pair in endpoint.get("receiverInfo") or []:
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str) or not isinstance(pair.get("value"),
                                                                                                 str):
            raise bad_request("Invalid subscription", "receiverInfo items are {\"key\": …, \"value\": …} strings")
        if not _HEADER_NAME.match(pair["key"]) or not _HEADER_VALUE.match(pair["value"]):
            # each pair becomes a header of every notification: it must be one HTTP can carry (RFC 9110 §5)
            raise bad_request("Invalid subscription", f"receiverInfo {pair['key']!r}: a header name is a token "
                                                      "and its value printable ASCII")
        receiver_info.append((pair["key"], pair["value"]))
    throttling, time_interval = _number(raw, "throttling"), _number(raw, "timeInterval")
    if time_interval is not None and (throttling is not None or watched is not None):
        raise bad_request("Invalid subscription", "timeInterval excludes throttling and watchedAttributes")
    if time_interval == 0:
        raise bad_request("Invalid timeInterval", "timeInterval must be positive")
    expires_at = parse_datetime(raw["expiresAt"], "expiresAt", utc_z=True) if "expiresAt" in raw else None
    if check_expiry and expires_at is not None and expires_at <= now_iso():
        raise bad_request("Invalid expiresAt", f"{expires_at} is in the past")
    is_active = raw.get("isActive", True)
    if not isinstance(is_active, bool):
        raise bad_request("Invalid isActive", "isActive must be true or false")
    sys_attrs = notification.get("sysAttrs", False)
    show_changes = notification.get("showChanges", False)
    if not isinstance(show_changes, bool):
        raise bad_request("Invalid subscription", "notification.showChanges must be true or false")
    projections: dict[str, frozenset[str] | None] = {}
    for member in ("pick", "omit"):
        items = notification.get(member)
        if items is not None and (not isinstance(items, list) or not items
                                  or not all(isinstance(i, str) and i for i in items)):
            raise bad_request("Invalid subscription", f"notification.{member} must be a non-empty array of names")
        projections[member] = frozenset(i if i in ("id", "type") else ctx.expand(i)
                                        for i in items) if items else None
    if projections["pick"] is not None and projections["omit"] is not None:
        raise bad_request("Invalid subscription", "notification.pick and notification.omit exclude each other")
    if (projections["pick"] is not None or projections["omit"] is not None) and "attributes" in notification:
        # §5.2.14 NotificationParams: attributes is the older projection; pick/omit replace it, never beside it
        raise bad_request("Invalid subscription", "notification.attributes cannot be combined with "
                                                  "notification.pick or notification.omit")
    if show_changes and fmt in ("keyValues", "simplified"):
        raise bad_request("Invalid subscription", "notification.showChanges needs the normalized or concise "
                                                  "format: keyValues has no place for previousValue (§5.2.14)")
    return Subscription(
        id=sub_id, tenant=tenant, raw={**{k: v for k, v in raw.items() if k != "@context"}, "id": sub_id},
        context=context, ctx=ctx, selectors=tuple(selectors), watched=watched,
        q=compile_q(subscription_q(q), ctx) if q else None,
        attributes=_names(notification.get("attributes"), "notification.attributes", ctx),
        format="keyValues" if fmt == "simplified" else fmt, sys_attrs=sys_attrs is True, uri=uri, accept=accept,
        receiver_info=tuple(receiver_info), throttling=throttling, time_interval=time_interval,
        expires_at=expires_at, is_active=is_active,
        triggers=frozenset(trigger) if trigger is not None else _DEFAULT_TRIGGERS, geo=geo, lang=parse_lang(lang),
        show_changes=show_changes, pick=projections["pick"], omit=projections["omit"],
        status=status or Status())


def subscription_q(q: str) -> str:
    """The q of a subscription as evaluated: percent-decoded, as URI parameters are, since clients write the
    same (percent-encoded) q text in a payload as in a query string (§4.9; `p==%22a%22` means `p=="a"`).
    A `%` not followed by two hex digits stays as it is."""
    return unquote(q) if "%" in q else q


def merge_patch(raw: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A subscription body with a PATCH applied: members replaced, `notification`/`endpoint` merged, null removes."""
    out = dict(raw)
    for key, value in patch.items():
        if key in ("@context", "id"):
            continue
        if value is None:
            out.pop(key, None)
        elif key == "notification" and isinstance(value, dict) and isinstance(out.get(key), dict):
            notification = dict(out[key])
            for sub_key, sub_value in value.items():
                if sub_key == "endpoint" and isinstance(sub_value, dict) and isinstance(notification.get(sub_key),
                                                                                       dict):
                    notification[sub_key] = {**notification[sub_key], **sub_value}
                else:
                    notification[sub_key] = sub_value
            out[key] = notification
        else:
            out[key] = value
    return out
