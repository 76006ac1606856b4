"""Discovery: `GET /types`, `/types/{type}`, `/attributes`, `/attributes/{attr}` over the current entities.

Answers are computed from the entities table on each request (SQLite's json_each over the stored attributes);
nothing is kept on the side that could disagree with the entities themselves.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ._api import broker_of, endpoint, existing_tenant, read
from ._context import ActiveContext
from ._errors import NgsiLdError
from ._http import bool_param, entity_response, link_context, negotiate


async def _setup(request: Request) -> tuple[list[tuple[str, str, str, int]], dict[str, int], ActiveContext, str]:
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    media = negotiate(request)
    ctx = await broker.contexts.activate(link_context(request))
    rows = await read(broker.store.type_attributes, tenant)
    counts = await read(broker.store.type_counts, tenant)
    return rows, counts, ctx, media


@endpoint
async def list_types(request: Request) -> Response:
    """GET /types: EntityTypeList, or with details=true one EntityType (with attributeNames) per type."""
    rows, counts, ctx, media = await _setup(request)
    if bool_param(request.query_params, "details"):
        names: dict[str, set[str]] = {t: set() for t in counts}
        for entity_type, attr, _, _ in rows:
            names[entity_type].add(attr)
        body: Any = [{"id": t, "type": "EntityType", "typeName": ctx.compact(t),
                      "attributeNames": sorted(ctx.compact(a) for a in names[t])} for t in sorted(counts)]
        return entity_response(body, media, ctx)
    return entity_response({"id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}", "type": "EntityTypeList",
                            "typeList": sorted(ctx.compact(t) for t in counts)}, media, ctx)


@endpoint
async def type_info(request: Request) -> Response:
    """GET /types/{type}: EntityTypeInfo with the entity count and each attribute's NGSI-LD types."""
    rows, counts, ctx, media = await _setup(request)
    wanted = ctx.expand(request.path_params["type"])
    if wanted not in counts:
        raise NgsiLdError("ResourceNotFound", "Entity Type Not Found", request.path_params["type"])
    details: dict[str, set[str]] = {}
    for entity_type, attr, attr_type, _ in rows:
        if entity_type == wanted:
            details.setdefault(attr, set()).add(attr_type)
    return entity_response({
        "id": wanted, "type": "EntityTypeInfo", "typeName": ctx.compact(wanted), "entityCount": counts[wanted],
        "attributeDetails": [{"id": a, "type": "Attribute", "attributeName": ctx.compact(a),
                              "attributeTypes": sorted(details[a])} for a in sorted(details)]}, media, ctx)


@endpoint
async def list_attributes(request: Request) -> Response:
    """GET /attributes: AttributeList, or with details=true one Attribute (with typeNames) per attribute."""
    rows, _, ctx, media = await _setup(request)
    types: dict[str, set[str]] = {}
    for entity_type, attr, _, _ in rows:
        types.setdefault(attr, set()).add(entity_type)
    if bool_param(request.query_params, "details"):
        body: Any = [{"id": a, "type": "Attribute", "attributeName": ctx.compact(a),
                      "typeNames": sorted(ctx.compact(t) for t in types[a])} for a in sorted(types)]
        return entity_response(body, media, ctx)
    return entity_response({"id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}", "type": "AttributeList",
                            "attributeList": sorted(ctx.compact(a) for a in types)}, media, ctx)


@endpoint
async def attribute_info(request: Request) -> Response:
    """GET /attributes/{attr}: how many entities carry it, its NGSI-LD types and the entity types using it."""
    rows, _, ctx, media = await _setup(request)
    wanted = ctx.expand(request.path_params["attr"])
    matching = [(t, at, n) for t, a, at, n in rows if a == wanted]
    if not matching:
        raise NgsiLdError("ResourceNotFound", "Attribute Not Found", request.path_params["attr"])
    return entity_response({
        "id": wanted, "type": "Attribute", "attributeName": ctx.compact(wanted),
        "attributeCount": sum(n for _, _, n in matching),
        "attributeTypes": sorted({at for _, at, _ in matching}),
        "typeNames": sorted({ctx.compact(t) for t, _, _ in matching})}, media, ctx)
