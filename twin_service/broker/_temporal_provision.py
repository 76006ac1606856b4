"""The temporal provision API (ETSI GS CIM 009 V1.8.1 §5.6.11-§5.6.16, bound in §6.18-§6.22): history written
and deleted directly, without touching the current state of the entity.

- POST /temporal/entities: create or update the temporal representation of an entity (§5.6.11), 201 or 204;
- POST /temporal/entities/{id}/attrs: add attribute instances (§5.6.12), 204;
- DELETE /temporal/entities/{id}/attrs/{attr}: delete an attribute's history (§5.6.13), 204;
- DELETE /temporal/entities/{id}/attrs/{attr}/{instanceId}: delete one instance (§5.6.15), 204;
- DELETE /temporal/entities/{id}: delete the temporal representation (§5.6.16), 204.
Each instance is a normalized attribute; its observedAt places it on the time axis (without one: the time the
broker accepted it, as for every other write). Modifying an instance in place (§5.6.14) is not supported.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._api import BASE, broker_of, endpoint, existing_tenant, write
from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request
from ._http import body_context, link_context, read_body, tenant_of
from ._model import Entity, check_entity_id, check_name, now_iso, parse_attribute
from ._operations import Tx

_INSTANCE_PREFIX = "urn:ngsi-ld:attribute:instance:"
_NOT_ATTRIBUTES = frozenset({"id", "type", "@context", "createdAt", "modifiedAt", "deletedAt", "scope"})


def _instances(document: dict[str, Any], ctx: ActiveContext) -> list[tuple[str, dict[str, Any]]]:
    """(expanded name, attribute) for every instance of a TemporalEntity fragment (each attribute: one or an array)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for key, raw in document.items():
        if key in _NOT_ATTRIBUTES:
            continue
        name = ctx.expand(check_name(key, "attribute name"))
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
        return Response(status_code=201, headers={"Location": f"{BASE}/temporal/entities/{entity_id}"})
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
