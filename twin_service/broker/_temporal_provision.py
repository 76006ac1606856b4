"""The temporal provision API (ETSI GS CIM 009 V1.8.1 §5.6.11-§5.6.16, bound in §6.18-§6.22): history written
and deleted directly, without touching the current state of the entity.

- POST /temporal/entities: create or update the temporal representation of an entity (§5.6.11), 201 or 204;
- POST /temporal/entities/{id}/attrs: add attribute instances (§5.6.12), 204;
- DELETE /temporal/entities/{id}/attrs/{attr}: delete an attribute's history (§5.6.13), 204;
- DELETE /temporal/entities/{id}/attrs/{attr}/{instanceId}: delete one instance (§5.6.15), 204;
- DELETE /temporal/entities/{id}: delete the temporal representation (§5.6.16), 204;
- POST /temporal/entityOperations/query: query history with a Query in the body (§5.7.4 via POST).
Each instance is a normalized attribute; its observedAt places it on the time axis (without one: the time the
broker accepted it, as for every other write). Modifying an instance in place (§5.6.14) is not supported.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ._api import BASE, broker_of, endpoint, existing_tenant, write
from ._context import ActiveContext, is_core_context
from ._errors import NgsiLdError, bad_request
from ._http import body_context, link_context, location, read_body, tenant_of
from ._model import Entity, attribute_name, check_entity_id, check_name, now_iso, parse_attribute
from ._operations import Tx
from ._temporal import query_temporal_entities

_INSTANCE_PREFIX = "urn:ngsi-ld:attribute:instance:"
_NOT_ATTRIBUTES = frozenset({"id", "type", "@context", "createdAt", "modifiedAt", "deletedAt", "scope"})


def _instances(document: dict[str, Any], ctx: ActiveContext) -> list[tuple[str, dict[str, Any]]]:
    """(expanded name, attribute) for every instance of a TemporalEntity fragment (each attribute: one or an array)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key, raw in document.items():
        if key in _NOT_ATTRIBUTES:
            continue
        name = attribute_name(key, ctx)
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise bad_request("Invalid temporal entity", f"{key}: an empty array of instances")
        for item in items:
            if isinstance(item, dict):
                item = {k: v for k, v in item.items() if k != "instanceId"}
            out.append((name, parse_attribute(key, item, ctx)))
    return out


def _record(tx: Tx, tenant: str, entity_id: str, entity_type: str,
            instances: list[tuple[str, dict[str, Any]]], create: bool) -> bool:
    """Write the instances into history; True when the temporal representation is new."""
    store = tx.store
    if create:
        store.ensure_tenant(tenant)
        known = store.temporal_entity(tenant, entity_id)
        if known is not None and known[0] != entity_type:
            raise bad_request("Entity type mismatch", f"{entity_id} has history as {known[0]}")
        new = store.record_temporal_entity(tenant, entity_id, entity_type)
    else:
        known = store.temporal_entity(tenant, entity_id)
        if known is None:
            raise NgsiLdError("ResourceNotFound", "Temporal entity not found", entity_id)
        entity_type, new = known[0], False
    now = now_iso()
    for name, attribute in instances:
        attribute["createdAt"] = attribute["modifiedAt"] = now
        store.record_instances(tenant, Entity(entity_id, entity_type, {name: attribute}), [name], "append", now)
    return new


@endpoint
async def create_temporal_entity(request: Request) -> Response:
    """POST /temporal/entities (§5.6.11): 201 + Location when new, 204 when instances were added to it."""
    broker = broker_of(request)
    tenant = tenant_of(request)
    body = await read_body(request)
    if not isinstance(body.json, dict):
        raise bad_request("Invalid temporal entity", "POST /temporal/entities takes one JSON object")
    ctx = await broker.contexts.activate(body_context(body, body.json))
    entity_id = check_entity_id(body.json.get("id"))
    raw_type = body.json.get("type")
    if isinstance(raw_type, list):
        raise NgsiLdError("OperationNotSupported", "Multi-typed entities are not supported", entity_id)
    entity_type = ctx.expand(check_name(raw_type, "entity type"))
    instances = _instances(body.json, ctx)
    current = broker.store.get_entity(tenant, entity_id) if broker.store.tenant_exists(tenant) else None
    if current is not None and current.type != entity_type:
        raise bad_request("Entity type mismatch", f"{entity_id} is of type {ctx.compact(current.type)}")
    if await write(broker, _record, tenant, entity_id, entity_type, instances, True):
        return Response(status_code=201, headers=location(f"{BASE}/temporal/entities/{entity_id}"))
    return Response(status_code=204)


@endpoint
async def add_temporal_attributes(request: Request) -> Response:
    """POST /temporal/entities/{id}/attrs (§5.6.12): add instances; 404 without a temporal representation."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = check_entity_id(request.path_params["entity_id"])
    body = await read_body(request)
    if not isinstance(body.json, dict):
        raise bad_request("Invalid temporal fragment", "takes one JSON object of attribute instances")
    if "id" in body.json and body.json["id"] != entity_id:
        raise bad_request("Entity id mismatch", f"the body is about {body.json['id']}, the URL about {entity_id}")
    ctx = await broker.contexts.activate(body_context(body, body.json))
    instances = _instances(body.json, ctx)
    if not instances:
        raise bad_request("Empty payload", "no attribute instances to add")
    await write(broker, _record, tenant, entity_id, "", instances, False)
    return Response(status_code=204)


@endpoint
async def delete_temporal_entity(request: Request) -> Response:
    """DELETE /temporal/entities/{id} (§5.6.16): its whole history; 404 when it has none."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = check_entity_id(request.path_params["entity_id"])

    def run(tx: Tx) -> None:
        if tx.store.temporal_entity(tenant, entity_id) is None or not tx.store.delete_history(tenant, entity_id):
            raise NgsiLdError("ResourceNotFound", "Temporal entity not found", entity_id)

    await write(broker, run)
    return Response(status_code=204)


@endpoint
async def delete_temporal_attribute(request: Request) -> Response:
    """DELETE /temporal/entities/{id}/attrs/{attr} (§5.6.13): every instance of it; 404 when it has none."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = check_entity_id(request.path_params["entity_id"])
    if "datasetId" in request.query_params:
        raise NgsiLdError("OperationNotSupported", "URI parameter datasetId is not supported",
                          "multi-attributes (datasetId) are not supported", status=501)
    ctx = await broker.contexts.activate(link_context(request))
    name = ctx.expand(request.path_params["attr"])

    def run(tx: Tx) -> None:
        if not tx.store.delete_history(tenant, entity_id, name):
            raise NgsiLdError("ResourceNotFound", "Attribute Not Found", f"{entity_id} has no history of "
                                                                        f"{request.path_params['attr']}")

    await write(broker, run)
    return Response(status_code=204)


@endpoint
async def delete_temporal_instance(request: Request) -> Response:
    """DELETE /temporal/entities/{id}/attrs/{attr}/{instanceId} (§5.6.15): one instance; 404 when absent."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = check_entity_id(request.path_params["entity_id"])
    raw_instance = request.path_params["instance_id"]
    number = raw_instance.removeprefix(_INSTANCE_PREFIX)
    if not number.isdigit():
        raise bad_request("Invalid instanceId", f"{raw_instance!r} is not an instance id this broker gave")
    ctx = await broker.contexts.activate(link_context(request))
    name = ctx.expand(request.path_params["attr"])

    def run(tx: Tx) -> None:
        if not tx.store.delete_instance(tenant, entity_id, name, int(number)):
            raise NgsiLdError("ResourceNotFound", "Attribute instance not found", raw_instance)

    await write(broker, run)
    return Response(status_code=204)


@endpoint
async def modify_temporal_instance(request: Request) -> Response:
    """PATCH /temporal/entities/{id}/attrs/{attr}/{instanceId} (§5.6.14): not supported (501)."""
    raise NgsiLdError("OperationNotSupported", "Modifying a temporal attribute instance is not supported",
                      "delete the instance and add a new one", status=501)


_TEMPORAL_Q = ("timerel", "timeAt", "endTimeAt", "lastN", "timeproperty", "aggrMethods", "aggrPeriodDuration")


@endpoint
async def query_temporal_via_post(request: Request) -> Response:
    """POST /temporal/entityOperations/query (§5.7.4 via POST, §6.24.3.1): a Query (§5.2.23) with `temporalQ`.

    Answered by the GET /temporal/entities handler with the Query's members as its URI parameters (limit, offset,
    count, options and format stay URI parameters), so both forms agree. Several entity selectors are served when
    they all name only types, or all only ids.
    """
    body = await read_body(request)
    query = body.json
    if not isinstance(query, dict):
        raise bad_request("Invalid Query", "POST /temporal/entityOperations/query takes one Query object")
    if query.get("type", "Query") != "Query":
        raise bad_request("Invalid Query", f"type must be Query, not {query.get('type')!r}")
    for name in ("q", "geoQ", "csf", "scopeQ"):
        if name in query:
            raise NgsiLdError("OperationNotSupported", f"Query member {name} is not supported on temporal queries",
                              "see docs/compatibility.md", status=501)
    params: list[tuple[str, str]] = [(k, v) for k, v in request.query_params.multi_items()]
    selectors = query.get("entities", [])
    if not isinstance(selectors, list) or not all(isinstance(s, dict) for s in selectors):
        raise bad_request("Invalid Query", "entities must be an array of objects")
    params += _selector_params(selectors)
    attrs = query.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, list) or not attrs or not all(isinstance(a, str) and a for a in attrs):
            raise bad_request("Invalid Query", "attrs must be a non-empty array of attribute names")
        params.append(("attrs", ",".join(attrs)))
    temporal_q = query.get("temporalQ", {})
    if not isinstance(temporal_q, dict):
        raise bad_request("Invalid Query", "temporalQ must be an object (§5.2.21 TemporalQuery)")
    unknown = sorted(set(temporal_q) - set(_TEMPORAL_Q))
    if unknown:
        raise bad_request("Invalid Query", f"temporalQ members {', '.join(unknown)}: use {', '.join(_TEMPORAL_Q)}")
    for name, value in temporal_q.items():
        if name == "aggrMethods" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise bad_request("Invalid Query", f"temporalQ.{name} must be a string{' or a number' * (name == 'lastN')}")
        params.append((name, str(value)))
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"content-type", b"content-length", b"link")]
    context = _context_url(body_context(body, query))
    if context is not None:
        headers.append((b"link", f'<{context}>; rel="http://www.w3.org/ns/json-ld#context"'.encode()))
    scope = {**request.scope, "query_string": urlencode(params).encode(), "headers": headers}
    return await query_temporal_entities(Request(scope, request.receive))


def _selector_params(selectors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    if not selectors:
        return []
    for selector in selectors:
        for name in ("type", "id", "idPattern"):
            if name in selector and not isinstance(selector[name], str):
                raise bad_request("Invalid Query", f"entities[].{name} must be a string")
    if len(selectors) == 1:
        return [(k, selector_value) for k, selector_value in selectors[0].items() if k in ("type", "id", "idPattern")]
    if all(set(s) == {"type"} for s in selectors):
        return [("type", ",".join(s["type"] for s in selectors))]
    if all(set(s) == {"id"} for s in selectors):
        return [("id", ",".join(s["id"] for s in selectors))]
    raise NgsiLdError("OperationNotSupported", "These entity selectors cannot be combined on temporal queries",
                      "give one selector, or several that name only types, or only ids", status=501)


def _context_url(context: Any) -> str | None:
    """The one user @context URL a temporal query can be expanded with (a Link header's worth)."""
    if context is None or isinstance(context, str):
        return context
    items = context if isinstance(context, list) else [context]
    if not all(isinstance(c, str) for c in items):
        raise NgsiLdError("OperationNotSupported", "Inline @context in a temporal query is not supported",
                          "name the context by URL (Link header or a URL in @context)", status=501)
    urls = [c for c in items if not is_core_context(c)]
    if len(urls) > 1:
        raise NgsiLdError("OperationNotSupported", "Several user @contexts in a temporal query are not supported",
                          "merge them into one context document", status=501)
    return urls[0] if urls else None
