"""The NGSI-LD request builder: every operation once, as a generator of `Call`s (no I/O here).

Paths, parameters, headers and paging follow ETSI GS CIM 009 v1.8.1: entities (clause 6.4-6.5), batch
operations (clause 6.14-6.17), subscriptions (clause 6.10-6.11), the temporal API (clause 6.18-6.20), the
`NGSILD-Tenant` header (clause 6.3.14), the `Link` header naming the user @context for `application/json`
requests (clause 6.3.5), `count=true` with `NGSILD-Results-Count` (clause 6.3.13), and the temporal 206 answer
whose `Content-Range: date-time <from>-<to>/<n>` says which part of the interval came back (clause 6.3.10).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from datamodels.context import CONTEXT_BY_TYPE, CORE_CONTEXT, link_header

from ._attributes import instances, iso, parse_time
from ._errors import BatchError, BrokerError, NotFound
from ._http import Call, Op
from ._models import BatchResult, SubscriptionOutcome

NGSI_LD = "/ngsi-ld/v1"
MAX_PAGE = 1000  # the largest `limit` Orion-LD and the embedded broker accept
LD_JSON = "application/ld+json"
_CONTENT_RANGE = re.compile(r"date-time\s+(?P<start>\S+?)-(?P<end>\d{4}-\S+?)(?:/\S*)?$")
_CORE_KEYS = frozenset({"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"})


@dataclass(frozen=True)
class EntityQuery:
    """GET /entities parameters (clause 6.4.3.2): what to match and how to answer."""

    type: str | None = None
    q: str | None = None
    attrs: Sequence[str] | None = None
    ids: Sequence[str] | None = None
    id_pattern: str | None = None
    key_values: bool = False
    context: str | None = None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, value in (("type", self.type), ("q", self.q), ("idPattern", self.id_pattern)):
            if value:
                params[name] = value
        if self.attrs:
            params["attrs"] = ",".join(self.attrs)
        if self.ids:
            params["id"] = ",".join(self.ids)
        if self.key_values:
            params["options"] = "keyValues"
        return params


@dataclass(frozen=True)
class TemporalQuery:
    """Temporal API parameters (clause 6.18.3.2): the time interval, attributes and representation."""

    timerel: str | None = None  # before | after | between
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    attrs: Sequence[str] | None = None
    options: Sequence[str] = ()  # temporalValues, aggregatedValues
    last_n: int | None = None
    aggr_methods: Sequence[str] | None = None
    aggr_period: str | None = None  # ISO 8601 duration: PT1H
    type: str | None = None  # for queries over many entities
    q: str | None = None
    context: str | None = None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.timerel:
            params["timerel"] = self.timerel
        if self.time_at is not None:
            params["timeAt"] = iso(self.time_at)
        if self.end_time_at is not None:
            params["endTimeAt"] = iso(self.end_time_at)
        for name, values in (("attrs", self.attrs), ("options", self.options), ("aggrMethods", self.aggr_methods)):
            if values:
                params[name] = ",".join(values)
        for name, value in (("lastN", self.last_n), ("aggrPeriodDuration", self.aggr_period), ("type", self.type),
                            ("q", self.q)):
            if value is not None:
                params[name] = value
        return params


def type_of(entity_id: str) -> str | None:
    """The entity type an NGSI-LD URN names by convention (`urn:ngsi-ld:<Type>:<id>`), None for other ids."""
    parts = entity_id.split(":")
    return parts[2] if len(parts) > 3 and parts[0] == "urn" and parts[1] == "ngsi-ld" else None


def subscription_differences(desired: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The meaningful fields of `desired` the live subscription does not have (empty: nothing to change).

    Compares what decides which notifications go where: the entity selectors, watched attributes, `q`, the
    notification's attributes, format and endpoint (uri, accept, receiverInfo), throttling, and that the
    subscription is active. Fields the broker adds (status counters, times) are not compared; types and
    attribute names are compared as the broker compacts them with the context the subscription was read with.
    """
    differs: list[str] = []
    want_n = desired.get("notification") or {}
    have_n = current.get("notification") or {}
    want_e, have_e = want_n.get("endpoint") or {}, have_n.get("endpoint") or {}
    checks: list[tuple[str, Any, Any]] = [
        ("entities", _selectors(desired.get("entities")), _selectors(current.get("entities"))),
        ("watchedAttributes", sorted(desired.get("watchedAttributes") or []),
         sorted(current.get("watchedAttributes") or [])),
        ("q", desired.get("q"), current.get("q")),
        ("notification.attributes", sorted(want_n.get("attributes") or []), sorted(have_n.get("attributes") or [])),
        ("notification.format", want_n.get("format", "normalized"), have_n.get("format", "normalized")),
        ("notification.endpoint.uri", want_e.get("uri"), have_e.get("uri")),
        ("notification.endpoint.accept", want_e.get("accept", "application/json"),
         have_e.get("accept", "application/json")),
        ("notification.endpoint.receiverInfo", want_e.get("receiverInfo") or [], have_e.get("receiverInfo") or []),
        ("throttling", desired.get("throttling"), current.get("throttling")),
    ]
    differs = [name for name, want, have in checks if want != have]
    wants_active = desired.get("isActive", True) is not False
    is_active = current.get("isActive", True) is not False and current.get("status", "active") == "active"
    if wants_active != is_active:
        differs.append("status")
    return differs


def _selectors(selectors: Any) -> list[tuple[str, str, str]]:
    out = []
    for selector in selectors or []:
        if isinstance(selector, dict):
            # A type the read context does not know comes back as an IRI: compare its last segment.
            kind = str(selector.get("type", "")).rsplit("/", 1)[-1].rsplit("#", 1)[-1]
            out.append((kind, str(selector.get("id", "")), str(selector.get("idPattern", ""))))
    return sorted(out)


class NgsiLdRequests:
    """Builds every NGSI-LD operation for one tenant; the clients drive them."""

    # Where the temporal API lives: /ngsi-ld/v1/temporal on the embedded broker and Orion-LD; Mintaka (Orion-LD's
    # TRoE reader) serves it at /temporal on its own port.
    temporal_path: str = f"{NGSI_LD}/temporal"

    def __init__(self, tenant: str | None, context: str | None, page_size: int, batch_size: int) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size {page_size}: give 1..{MAX_PAGE}")
        self.tenant = tenant
        self.context = context
        self.page_size = page_size
        self.batch_size = batch_size

    # -- headers --------------------------------------------------------------------------------------------
    def context_of(self, entity_type: str | None = None, entity_id: str | None = None,
                   override: str | None = None) -> str | None:
        """The user @context of a request: the call's, the client's, else the one datamodels gives the type."""
        if override or self.context:
            return override or self.context
        entity_type = entity_type or (type_of(entity_id) if entity_id else None)
        contexts = CONTEXT_BY_TYPE.get(entity_type or "")
        return contexts[0] if contexts else None

    def headers(self, context: str | None) -> dict[str, str]:
        headers = {"NGSILD-Tenant": self.tenant} if self.tenant else {}
        if context and context != CORE_CONTEXT:
            headers["Link"] = link_header(context)
        return headers

    def _with_context(self, entity: Mapping[str, Any], override: str | None) -> dict[str, Any]:
        """The entity as an `application/ld+json` body: with its own @context, or the one for its type."""
        if "@context" in entity:
            return dict(entity)
        context = self.context_of(entity.get("type"), entity.get("id"), override)
        return {**entity, "@context": [context, CORE_CONTEXT] if context and context != CORE_CONTEXT
                else [CORE_CONTEXT]}

    # -- entities -------------------------------------------------------------------------------------------
    def get_entity(self, entity_id: str, attrs: Sequence[str] | None, key_values: bool,
                   context: str | None) -> Op[dict[str, Any]]:
        params: dict[str, Any] = {}
        if attrs:
            params["attrs"] = ",".join(attrs)
        if key_values:
            params["options"] = "keyValues"
        response = yield Call("GET", f"{NGSI_LD}/entities/{entity_id}", params,
                              self.headers(self.context_of(None, entity_id, context)))
        return response.json()

    def entity_page(self, query: EntityQuery, offset: int) -> Op[tuple[list[dict[str, Any]], int | None]]:
        """One page of a query, and the offset of the next (None: this was the last)."""
        params = {**query.params(), "limit": self.page_size, "offset": offset, "count": "true"}
        response = yield Call("GET", f"{NGSI_LD}/entities", params,
                              self.headers(self.context_of(query.type, None, query.context)))
        return _page(response, offset, self.page_size)

    def query_entities(self, query: EntityQuery) -> Op[list[dict[str, Any]]]:
        return (yield from _every_page(lambda offset: self.entity_page(query, offset)))

    def upsert_entities(self, entities: Iterable[Mapping[str, Any]], update: bool,
                        context: str | None) -> Op[BatchResult]:
        """POST /entityOperations/upsert in chunks of `batch_size`; BatchError names every entity refused."""
        bodies = [self._with_context(e, context) for e in entities]
        succeeded: list[str] = []
        errors: dict[str, dict[str, Any]] = {}
        last: httpx.Response | None = None
        for start in range(0, len(bodies), self.batch_size):
            chunk = bodies[start:start + self.batch_size]
            call = Call.json("POST", f"{NGSI_LD}/entityOperations/upsert", chunk, LD_JSON,
                             params={"options": "update"} if update else None, headers=self.headers(None),
                             expect=frozenset({200, 201, 204, 207}))
            last = yield call
            done, refused = _batch_outcome(last, [str(e.get("id")) for e in chunk])
            succeeded += done
            errors.update(refused)
        if errors:
            first = next(iter(errors.items()))
            raise BatchError(f"batch upsert: {len(errors)} of {len(bodies)} entities refused, e.g. {first[0]}: "
                             f"{first[1].get('detail') or first[1].get('title')}", errors=errors,
                             succeeded=succeeded, status=last.status_code if last else None,
                             request=last.request if last else None, response=last)
        return BatchResult(succeeded)

    def update_attrs(self, entity_id: str, attrs: Mapping[str, Any], context: str | None) -> Op[None]:
        """PATCH /entities/{id}/attrs: update attributes that exist (clause 6.6.3.2)."""
        call = Call.json("PATCH", f"{NGSI_LD}/entities/{entity_id}/attrs", dict(attrs),
                         headers=self.headers(self.context_of(None, entity_id, context)),
                         expect=frozenset({204, 207}))
        response = yield call
        if response.status_code == 207:
            body = response.json() if response.content else {}
            refused = {str(item.get("attributeName")): item for item in body.get("notUpdated", [])}
            raise BatchError(f"PATCH {entity_id}: attributes not updated: {', '.join(refused) or '?'}",
                             errors=refused, succeeded=list(body.get("updated", [])), status=207,
                             request=response.request, response=response)

    def delete_entity(self, entity_id: str, missing_ok: bool) -> Op[bool]:
        """DELETE /entities/{id}; False when it did not exist and `missing_ok`."""
        return (yield from self._delete(f"{NGSI_LD}/entities/{entity_id}", missing_ok))

    def _delete(self, path: str, missing_ok: bool) -> Op[bool]:
        try:
            yield Call("DELETE", path, headers=self.headers(None), expect=frozenset({204}))
        except NotFound:
            if not missing_ok:
                raise
            return False
        return True

    # -- temporal -------------------------------------------------------------------------------------------
    def temporal_entity(self, entity_id: str, query: TemporalQuery, max_pages: int) -> Op[dict[str, Any]]:
        """GET /temporal/entities/{id}, following 206 partial answers forward until the interval is covered."""
        path = f"{self.temporal_path}/entities/{entity_id}"
        headers = self.headers(self.context_of(None, entity_id, query.context))
        merged: dict[str, Any] = {}
        for _ in range(max_pages):
            response = yield Call("GET", path, query.params(), headers, expect=frozenset({200, 206}),
                                  temporal=True)
            page = response.json()
            if isinstance(page, list):  # some brokers answer a one-element array
                page = page[0] if page else {}
            _merge_temporal(merged, page)
            if response.status_code != 206:
                return merged
            query = replace(query, time_at=self._next_start(entity_id, query, page, response),
                            timerel="between" if query.end_time_at is not None else "after")
        raise BrokerError(f"{entity_id}: more than {max_pages} pages of history; narrow the interval")

    @staticmethod
    def _next_start(entity_id: str, query: TemporalQuery, page: dict[str, Any],
                    response: httpx.Response) -> datetime:
        """Where the next page starts: the end of the Content-Range, else the earliest attribute's last instant."""
        found = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
        start: datetime | None = None
        if found:
            try:
                start = parse_time(found["end"])
            except ValueError:
                start = None
        if start is None:
            lasts = [series[-1][0] for name in page if name not in _CORE_KEYS and (series := instances(page, name))]
            start = min(lasts) if lasts else None
        if start is None or (query.time_at is not None and start <= query.time_at):
            raise BrokerError(f"{entity_id}: the broker answered a partial page (206) that does not advance past "
                              f"{query.time_at.isoformat() if query.time_at else 'the start'}; cannot page further",
                              status=206, request=response.request, response=response)
        return start

    def temporal_page(self, query: TemporalQuery, offset: int) -> Op[tuple[list[dict[str, Any]], int | None]]:
        params = {**query.params(), "limit": self.page_size, "offset": offset, "count": "true"}
        response = yield Call("GET", f"{self.temporal_path}/entities", params,
                              self.headers(self.context_of(query.type, None, query.context)),
                              expect=frozenset({200, 206}), temporal=True)
        return _page(response, offset, self.page_size)

    def query_temporal(self, query: TemporalQuery) -> Op[list[dict[str, Any]]]:
        return (yield from _every_page(lambda offset: self.temporal_page(query, offset)))

    # -- subscriptions --------------------------------------------------------------------------------------
    def _subscription_context(self, body: Mapping[str, Any], context: str | None) -> str | None:
        declared = body.get("@context")
        declared = [declared] if isinstance(declared, str) else list(declared or [])
        user = [c for c in declared if isinstance(c, str) and c != CORE_CONTEXT]
        if user:
            return user[0]
        types = [e.get("type") for e in body.get("entities") or [] if isinstance(e, dict)]
        return self.context_of(types[0] if types else None, None, context)

    def get_subscription(self, subscription_id: str, context: str | None) -> Op[dict[str, Any]]:
        response = yield Call("GET", f"{NGSI_LD}/subscriptions/{subscription_id}",
                              headers=self.headers(context or self.context))
        return response.json()

    def ensure_subscription(self, body: Mapping[str, Any], context: str | None) -> Op[SubscriptionOutcome]:
        """Make the broker hold exactly `body` under its id: create, keep, or replace when a meaningful field differs."""
        subscription_id = str(body["id"])
        context = self._subscription_context(body, context)
        try:
            current = yield from self.get_subscription(subscription_id, context)
        except NotFound:  # no such subscription, or a tenant nothing was written to yet
            current = None
        if current is not None:
            differences = tuple(subscription_differences(body, current))
            if not differences:
                return SubscriptionOutcome(subscription_id, "unchanged")
            yield from self.delete_subscription(subscription_id, True)
        created = yield self._post_subscription(body, context, frozenset({201, 409}))
        if created.status_code == 409:  # created meanwhile (another instance of the same service): ours wins
            yield from self.delete_subscription(subscription_id, True)
            yield self._post_subscription(body, context, frozenset({201}))
        if current is None:
            return SubscriptionOutcome(subscription_id, "created")
        return SubscriptionOutcome(subscription_id, "replaced", differences)

    def _post_subscription(self, body: Mapping[str, Any], context: str | None, expect: frozenset[int]) -> Call:
        if "@context" in body:
            return Call.json("POST", f"{NGSI_LD}/subscriptions", dict(body), LD_JSON, headers=self.headers(None),
                             expect=expect)
        return Call.json("POST", f"{NGSI_LD}/subscriptions", dict(body), headers=self.headers(context),
                         expect=expect)

    def delete_subscription(self, subscription_id: str, missing_ok: bool) -> Op[bool]:
        return (yield from self._delete(f"{NGSI_LD}/subscriptions/{subscription_id}", missing_ok))

    def subscription_page(self, context: str | None, offset: int) -> Op[tuple[list[dict[str, Any]], int | None]]:
        response = yield Call("GET", f"{NGSI_LD}/subscriptions",
                              {"limit": self.page_size, "offset": offset, "count": "true"},
                              self.headers(context or self.context))
        return _page(response, offset, self.page_size)

    def query_subscriptions(self, context: str | None) -> Op[list[dict[str, Any]]]:
        """Every subscription of the tenant, read with `context` (types and attributes compact with it)."""
        return (yield from _every_page(lambda offset: self.subscription_page(context, offset)))


Page = tuple[list[dict[str, Any]], int | None]  # a page's items and the offset of the next (None: last page)


def _every_page(page: Callable[[int], Op[Page]]) -> Op[list[dict[str, Any]]]:
    """Every item of a paged query: pages from offset 0 until one says it was the last."""
    found: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        items, offset = yield from page(offset)
        found += items
    return found


def _page(response: httpx.Response, offset: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """A page's entities and the next offset, from NGSILD-Results-Count when sent, else from a full page."""
    batch = response.json()
    if not isinstance(batch, list):
        raise BrokerError(f"{response.request.method} {response.request.url.path}: expected a JSON array, got "
                          f"{type(batch).__name__}", status=response.status_code, request=response.request,
                          response=response)
    end = offset + len(batch)
    try:
        total: int | None = int(response.headers["NGSILD-Results-Count"])
    except (KeyError, ValueError):
        total = None
    more = bool(batch) and (end < total if total is not None else len(batch) >= limit)
    return batch, end if more else None


def _batch_outcome(response: httpx.Response, ids: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    if response.status_code == 204 or not response.content:
        return ids, {}
    body = response.json()
    if isinstance(body, list):  # 201: the ids created
        return [str(i) for i in body] or ids, {}
    errors = {str(item.get("entityId")): item.get("error") or {} for item in body.get("errors", [])
              if isinstance(item, dict)}
    return [str(i) for i in body.get("success", [])], errors


def _merge_temporal(into: dict[str, Any], page: dict[str, Any]) -> None:
    """Add one page of a temporal entity to what earlier pages gave, each instant once."""
    for name, node in page.items():
        if name in _CORE_KEYS:
            into.setdefault(name, node)
            continue
        have = into.get(name)
        if have is None:
            into[name] = node
        elif isinstance(have, dict) and isinstance(node, dict) and "values" in have and "values" in node:
            seen = {pair[1] for pair in have["values"] if isinstance(pair, list) and len(pair) >= 2}
            have["values"] += [pair for pair in node["values"]
                               if isinstance(pair, list) and len(pair) >= 2 and pair[1] not in seen]
        else:
            old = have if isinstance(have, list) else [have]
            seen = {part.get("observedAt") for part in old if isinstance(part, dict)}
            new = node if isinstance(node, list) else [node]
            into[name] = old + [part for part in new if not (isinstance(part, dict) and part.get("observedAt") in seen)]
