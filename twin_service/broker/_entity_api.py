"""HTTP handlers for attribute-level writes and the batch operations other than upsert.

Append (POST .../attrs), update (PATCH .../attrs), partial attribute update (PATCH .../attrs/{attr}), attribute
delete, merge-patch (PATCH /entities/{id}), replace (PUT /entities/{id}), and entityOperations create/update/
delete. Each handler checks the request and hands one call to `_operations` inside one transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import _operations as ops
from ._api import broker_of, endpoint, existing_tenant, write
from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request
from ._http import JSON, Body, body_context, link_context, list_param, read_body, tenant_of
from ._model import Entity, check_entity_id, check_name, parse_attribute, parse_entity

log = logging.getLogger(__name__)

_NOT_ATTRIBUTES = frozenset({"id", "type", "@context", "createdAt", "modifiedAt", "scope"})


async def _object_body(request: Request) -> tuple[Body, dict[str, Any], ActiveContext]:
    body = await read_body(request)
    if not isinstance(body.json, dict):
        raise bad_request("Invalid payload", f"{request.method} {request.url.path} takes one JSON object")
    ctx = await broker_of(request).contexts.activate(body_context(body, body.json))
    return body, body.json, ctx


def parse_fragment(document: dict[str, Any], ctx: ActiveContext, entity_id: str) -> dict[str, dict[str, Any]]:
    """The attributes of an append/update body, validated and expanded (id, if given, must be the URL's)."""
    if "id" in document and document["id"] != entity_id:
        raise bad_request("Entity id mismatch", f"the body is about {document['id']}, the URL about {entity_id}")
    attrs: dict[str, dict[str, Any]] = {}
    for key, raw in document.items():
        if key in _NOT_ATTRIBUTES:
            continue
        attrs[ctx.expand(check_name(key, "attribute name"))] = parse_attribute(key, raw, ctx)
    if not attrs:
        raise bad_request("Empty payload", "no attributes to write")
    return attrs


def _update_response(result: ops.UpdateResult, ctx: ActiveContext) -> Response:
    """204 when every attribute was written, else 207 with `updated` and `notUpdated` (NGSI-LD UpdateResult)."""
    if not result.not_updated:
        return Response(status_code=204)
    return JSONResponse({"updated": [ctx.compact(n) for n in result.updated],
                         "notUpdated": [{"attributeName": ctx.compact(n), "reason": reason}
                                        for n, reason in result.not_updated]}, status_code=207, media_type=JSON)


def _entity_id(request: Request) -> str:
    return check_entity_id(request.path_params["entity_id"])


@endpoint
async def append_attributes(request: Request) -> Response:
    """POST /entities/{id}/attrs[?options=noOverwrite]: 204, or 207 naming attributes kept as they were."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    _, document, ctx = await _object_body(request)
    options = list_param(request.query_params, "options") or []
    attrs = parse_fragment(document, ctx, entity_id)
    result = await write(broker, ops.append_to, tenant, entity_id, attrs, "noOverwrite" in options)
    return _update_response(result, ctx)


@endpoint
async def update_attributes(request: Request) -> Response:
    """PATCH /entities/{id}/attrs: 204, or 207 naming attributes the entity does not have."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    _, document, ctx = await _object_body(request)
    attrs = parse_fragment(document, ctx, entity_id)
    result = await write(broker, ops.update_attributes, tenant, entity_id, attrs)
    return _update_response(result, ctx)


@endpoint
async def partial_attribute_update(request: Request) -> Response:
    """PATCH /entities/{id}/attrs/{attr}: merge the body's members into the attribute; 204."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    _, document, ctx = await _object_body(request)
    name = ctx.expand(request.path_params["attr"])
    await write(broker, ops.partial_update, tenant, entity_id, name, document, ctx)
    return Response(status_code=204)


@endpoint
async def delete_attribute(request: Request) -> Response:
    """DELETE /entities/{id}/attrs/{attr}: 204; 404 when the entity or the attribute is absent."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    for unsupported in ("datasetId", "deleteAll"):
        if unsupported in request.query_params:
            raise NgsiLdError("OperationNotSupported", f"URI parameter {unsupported} is not supported",
                              "multi-attributes (datasetId) are not supported", status=501)
    ctx = await broker.contexts.activate(link_context(request))
    await write(broker, ops.delete_attribute, tenant, entity_id, ctx.expand(request.path_params["attr"]), ctx)
    return Response(status_code=204)


@endpoint
async def merge_entity(request: Request) -> Response:
    """PATCH /entities/{id} (JSON merge-patch semantics, urn:ngsi-ld:null deletes): 204."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    _, document, ctx = await _object_body(request)
    await write(broker, ops.merge_entity, tenant, entity_id, document, ctx)
    return Response(status_code=204)


@endpoint
async def replace_entity(request: Request) -> Response:
    """PUT /entities/{id}: the entity becomes the body (same id); 204."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    _, document, ctx = await _object_body(request)
    await write(broker, ops.replace_entity, tenant, entity_id, document, ctx)
    return Response(status_code=204)


async def parse_batch(request: Request) -> list[Entity | tuple[str, NgsiLdError]]:
    """A batch body as entities, with the ones that fail validation kept as (id, error) in their place."""
    body = await read_body(request)
    if not isinstance(body.json, list) or not body.json:
        raise bad_request("Invalid payload", "a batch operation takes a non-empty JSON array of entities")
    # Contexts are resolved on the event loop (cached; a first fetch is async), the CPU-heavy validation of
    # the entities on a worker thread, so a 1 MiB batch does not hold up reads served by the loop meanwhile.
    contexts: list[ActiveContext | NgsiLdError] = []
    for item in body.json:
        try:
            contexts.append(await broker_of(request).contexts.activate(body_context(body, item)))
        except NgsiLdError as exc:
            if exc.error_type == "LdContextNotAvailable":
                raise  # the whole batch depends on the broker reaching the context
            contexts.append(exc)

    def parse_all() -> list[Entity | tuple[str, NgsiLdError]]:
        fragments: list[Entity | tuple[str, NgsiLdError]] = []
        for item, ctx in zip(body.json, contexts, strict=True):
            try:
                if isinstance(ctx, NgsiLdError):
                    raise ctx
                fragments.append(parse_entity(item, ctx))
            except NgsiLdError as exc:
                fragments.append((item.get("id") if isinstance(item, dict) else None, exc))
        return fragments

    fragments = await run_in_threadpool(parse_all) if len(body.json) > 1 else parse_all()
    return fragments


def batch_response(result: ops.BatchResult, tenant: str, created_status: bool) -> Response:
    """201 + created ids (create/upsert), 204 when nothing was created, 207 with per-entity errors."""
    if result.errors:
        for entity_id, exc in result.errors:
            log.info("batch operation on %s in tenant %r refused: %s %s", entity_id, tenant, exc.title, exc.detail)
        return JSONResponse({"success": result.success,
                             "errors": [{"entityId": entity_id, "error": exc.problem()}
                                        for entity_id, exc in result.errors]}, status_code=207, media_type=JSON)
    if created_status and result.created:
        return JSONResponse(result.created, status_code=201, media_type=JSON)
    return Response(status_code=204)


@endpoint
async def batch_create(request: Request) -> Response:
    """POST /entityOperations/create: 201 with the ids, or 207 (AlreadyExists / invalid per entity)."""
    broker = broker_of(request)
    tenant = tenant_of(request)
    fragments = await parse_batch(request)
    result = await write(broker, ops.create_batch, tenant, fragments)
    return batch_response(result, tenant, created_status=True)


@endpoint
async def batch_update(request: Request) -> Response:
    """POST /entityOperations/update[?options=noOverwrite]: 204, or 207 (entities that do not exist)."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    options = list_param(request.query_params, "options") or []
    fragments = await parse_batch(request)
    result = await write(broker, ops.update_batch, tenant, fragments, "noOverwrite" in options)
    return batch_response(result, tenant, created_status=False)


@endpoint
async def batch_delete(request: Request) -> Response:
    """POST /entityOperations/delete (a JSON array of ids): 204, or 207 (ids that do not exist)."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    body = await read_body(request)
    if not isinstance(body.json, list) or not body.json or not all(isinstance(i, str) for i in body.json):
        raise bad_request("Invalid payload", "a batch delete takes a non-empty JSON array of entity ids")
    result = await write(broker, ops.delete_batch, tenant, list(body.json))
    return batch_response(result, tenant, created_status=False)
