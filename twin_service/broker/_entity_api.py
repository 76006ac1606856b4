"""HTTP handlers of the entity resources, grouped as ETSI GS CIM 009 V1.8.1 §6.4-§6.7 and §6.14-§6.17 bind them.

`/entities` (create, query, purge), `/entities/{id}` (retrieve, delete, merge-patch, replace),
`/entities/{id}/attrs` (append, update), `/entities/{id}/attrs/{attr}` (partial update, delete) and the batch
operations under `/entityOperations` (create, upsert, update, merge, delete, query). Each handler checks the
request and hands one call to `_operations` inside one transaction (writes) or to the store (reads).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import _operations as ops
from ._api import BASE, Broker, broker_of, endpoint, existing_tenant, read, write
from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request, invalid_request, not_found
from ._geo import GeoQuery, feature, feature_collection, parse_geo_query
from ._http import (
    GEO_JSON,
    JSON,
    Body,
    add_paging_links,
    body_context,
    bool_param,
    entity_response,
    int_param,
    link_context,
    list_param,
    location,
    negotiate,
    read_body,
    tenant_of,
)
from ._json import dumps_bytes
from ._model import (
    Entity,
    RenderOptions,
    attribute_name,
    check_entity_id,
    parse_attribute,
    parse_entity,
    parse_lang,
    render_entity,
)
from ._query import compile_q, type_selection
from ._store import EntityQuery

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
        attrs[attribute_name(key, ctx)] = parse_attribute(key, raw, ctx)
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


# -- /entities and /entities/{id} (§6.4, §6.5) ---------------------------------------------------------------
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000  # Orion-LD's cap; above it is 400, not a silently shortened page
_OPTIONS = frozenset({"keyValues", "simplified", "normalized", "sysAttrs", "concise"})
# Query features not implemented; refused loudly rather than ignored (an ignored filter returns too much).
_NOT_SUPPORTED = ("csf", "scopeQ", "datasetId")
Selector = tuple[tuple[str, ...] | None, tuple[str, ...] | None, str | None]  # (types, ids, idPattern)


@endpoint
async def create_entity(request: Request) -> Response:
    """POST /entities (§5.6.1, §6.4.3.1): 201 + Location, 409 AlreadyExists when the id exists."""
    broker = broker_of(request)
    tenant = tenant_of(request)
    body = await read_body(request)
    if not isinstance(body.json, dict):
        raise bad_request("Invalid Entity", "POST /entities takes one JSON object")
    ctx = await broker.contexts.activate(body_context(body, body.json))
    entity = parse_entity(body.json, ctx)
    await write(broker, ops.create_entity, tenant, entity)
    return Response(status_code=201, headers=location(f"{BASE}/entities/{entity.id}"))


@endpoint
async def retrieve_entity(request: Request) -> Response:
    """GET /entities/{id} (§5.7.1, §6.5.3.1): one entity, compacted with the request's context.

    `Accept: application/geo+json` answers a GeoJSON Feature (§4.5.16) whose geometry is the GeoProperty named by
    `geometryProperty` (default `location`).
    """
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    media = negotiate(request, geo=True)
    entity_id = _entity_id(request)
    ctx = await broker.contexts.activate(link_context(request))
    options = render_options(request.query_params, ctx)
    entity = broker.store.get_entity(tenant, entity_id)
    wanted_types = list_param(request.query_params, "type")
    if entity is None or (wanted_types and entity.type not in {ctx.expand(t) for t in wanted_types}):
        raise not_found(entity_id)
    rendered = render_entity(entity, ctx, options)
    if media == GEO_JSON:
        return _geo_response(feature(rendered, entity, _geometry_property(request.query_params, ctx)), ctx, {})
    return entity_response(rendered, media, ctx)


@endpoint
async def query_entities(request: Request) -> Response:
    """GET /entities (§5.7.2, §6.4.3.2): filter by type/id/idPattern/attrs/q/geo-query, page, count.

    id and idPattern select on their own (no type needed, as FiLiP's default `get_entity_list()` sends `id=`).
    """
    broker = broker_of(request)
    params = request.query_params
    _refuse_unsupported(params)
    ids, id_pattern = list_param(params, "id"), params.get("idPattern")
    attrs, q_text = list_param(params, "attrs"), params.get("q")
    tenant = existing_tenant(request, broker)
    media = negotiate(request, geo=True)
    ctx = await broker.contexts.activate(link_context(request))
    types = type_selection(params.get("type"), ctx)
    geo = parse_geo_query(params.get("georel"), params.get("geometry"), params.get("coordinates"),
                          params.get("geoproperty"), ctx)
    local = bool_param(params, "local")  # local=true: this broker's entities only, which is all it has
    if (types is None and ids is None and id_pattern is None and attrs is None and q_text is None and geo is None
            and not local):
        raise bad_request("Too broad query", "give at least one of type, id, idPattern, attrs, q, a geo-query "
                                             "or local=true")
    selectors: list[Selector] = [(types, tuple(ids) if ids else None, _checked_pattern(id_pattern))]
    return await _answer_query(request, broker, tenant, ctx, media, params, selectors, q_text, geo)


@endpoint
async def purge_entities(request: Request) -> Response:
    """DELETE /entities (Purge Entities, §5.6.21, §6.4.3.3): delete every entity the type/id/idPattern/q select.

    At least one of them is required (a bare DELETE /entities would wipe the tenant: 400 BadRequestData).
    Answers 204, also when nothing matched (the state asked for holds).
    """
    broker = broker_of(request)
    params = request.query_params
    _refuse_unsupported(params)
    ids, id_pattern, q_text = list_param(params, "id"), params.get("idPattern"), params.get("q")
    if params.get("type") is None and ids is None and id_pattern is None and q_text is None:
        raise bad_request("Too broad purge", "give at least one of type, id, idPattern or q")
    tenant = existing_tenant(request, broker)
    ctx = await broker.contexts.activate(link_context(request))
    query, keep = _selection([(type_selection(params.get("type"), ctx), tuple(ids) if ids else None,
                               _checked_pattern(id_pattern))], None, q_text, None, ctx)

    def matching() -> list[str]:
        return [e.id for e in broker.store.entities_of(tenant, query) if keep is None or keep(e)]

    selected = await read(matching)
    if selected:
        await write(broker, ops.purge_entities, tenant, selected)
    return Response(status_code=204)


@endpoint
async def delete_entity(request: Request) -> Response:
    """DELETE /entities/{id} (§5.6.6, §6.5.3.2): 204, 404 when absent, 400 when the id is not a URI."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    await write(broker, ops.delete_entity, tenant, _entity_id(request))
    return Response(status_code=204)


def render_options(params: QueryParams, ctx: ActiveContext) -> RenderOptions:
    """The representation a client asked for: options/format, attrs, pick, omit (§6.3.7, §4.21)."""
    options = set(list_param(params, "options") or [])
    fmt = params.get("format")
    if fmt is not None:
        options.add(fmt)
    unknown = options - _OPTIONS
    if unknown:  # a malformed URI parameter makes the request invalid (§6.3.7, ProblemDetails InvalidRequest)
        raise invalid_request("Invalid value for URI parameter " + ("format" if fmt in unknown else "options"),
                              f"{', '.join(sorted(unknown))}: supported are {', '.join(sorted(_OPTIONS))}")
    for name in ("join", "joinLevel"):
        if name in params:  # linked-entity retrieval (§4.5.23) is not implemented: refused, never ignored
            raise NgsiLdError("OperationNotSupported", f"URI parameter {name} is not supported",
                              "linked entities are not retrieved by this broker; see docs/compatibility.md",
                              status=501)
    shapes = {"keyValues" if o == "simplified" else o for o in options & {"keyValues", "simplified", "concise",
                                                                            "normalized"}}
    if len(shapes) > 1:
        raise bad_request("Conflicting options", "choose one of normalized, concise and keyValues/simplified")
    attrs, pick, omit = list_param(params, "attrs"), list_param(params, "pick"), list_param(params, "omit")
    if pick and omit:
        raise bad_request("Conflicting URI parameters", "pick and omit exclude each other")
    if attrs and (pick or omit):  # §4.21: pick/omit are the projection; attrs keeps only its selection meaning
        raise bad_request("Conflicting URI parameters", f"attrs cannot be combined with {'pick' if pick else 'omit'}")

    def names(items: list[str] | None) -> frozenset[str] | None:
        return frozenset(i if i in ("id", "type") else ctx.expand(i) for i in items) if items else None

    return RenderOptions(key_values=bool(options & {"keyValues", "simplified"}), sys_attrs="sysAttrs" in options,
                         attrs=frozenset(ctx.expand(a) for a in attrs) if attrs else None,
                         concise="concise" in options, pick=names(pick), omit=names(omit),
                         lang=parse_lang(params.get("lang")))


def _refuse_unsupported(params: QueryParams) -> None:
    for name in _NOT_SUPPORTED:
        if name in params:
            raise NgsiLdError("OperationNotSupported", f"URI parameter {name} is not supported",
                              "see docs/compatibility.md for what the embedded broker filters by", status=501)


def _checked_pattern(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise bad_request("Invalid idPattern", f"{pattern!r}: {exc}") from None
    return pattern


def _selection(selectors: list[Selector], attrs: frozenset[str] | None, q_text: str | None, geo: GeoQuery | None,
               ctx: ActiveContext) -> tuple[EntityQuery, Callable[[Entity], bool] | None]:
    """The SQL-side filter and the Python-side test (q, geo-query, several entity selectors ORed together)."""
    attr_filter = tuple(sorted(attrs)) if attrs is not None else None
    tests: list[Callable[[Entity], bool]] = []
    selectors = [s for s in selectors if s[0] is None or s[0]]  # a type expression selecting no type: nothing
    if not selectors:
        return EntityQuery(attrs=attr_filter), lambda e: False
    if len(selectors) == 1:
        types, ids, pattern = selectors[0]
        query = EntityQuery(types=types, ids=ids, id_pattern=pattern, attrs=attr_filter)
    else:
        query = EntityQuery(attrs=attr_filter)
        compiled = [(types, ids, re.compile(pattern) if pattern else None) for types, ids, pattern in selectors]
        tests.append(lambda e: any((types is None or e.type in types) and (ids is None or e.id in ids)
                                   and (pattern is None or pattern.search(e.id) is not None)
                                   for types, ids, pattern in compiled))
    if q_text is not None:
        tests.append(compile_q(q_text, ctx).matches)
    if geo is not None:
        tests.append(geo.matches)
    if not tests:
        return query, None
    if len(tests) == 1:
        return query, tests[0]
    return query, lambda e: all(test(e) for test in tests)


def _geometry_property(params: QueryParams, ctx: ActiveContext) -> str:
    return ctx.expand(params.get("geometryProperty", "location"))


async def _answer_query(request: Request, broker: Broker, tenant: str, ctx: ActiveContext, media: str,
                        params: QueryParams, selectors: list[Selector], q_text: str | None,
                        geo: GeoQuery | None, body_attrs: list[str] | None = None) -> Response:
    """One page of a query (GET /entities or POST /entityOperations/query) in the negotiated representation."""
    limit = int_param(params, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
    offset = int_param(params, "offset", 0)
    count = bool_param(params, "count")
    options = render_options(params, ctx)
    if body_attrs:
        options = dataclasses.replace(options, attrs=frozenset(ctx.expand(a) for a in body_attrs))
    query, keep = _selection(selectors, options.attrs, q_text, geo, ctx)
    # on a worker thread: a page of up to 1000 entities is megabytes of JSON to decode, too long for the loop
    entities, total = await read(broker.store.query_entities, tenant, query, limit, offset, keep)
    headers = {"NGSILD-Results-Count": str(total)} if count else {}
    if media == GEO_JSON:
        where = _geometry_property(params, ctx)
        response = _geo_response(feature_collection([feature(render_entity(e, ctx, options), e, where)
                                                     for e in entities]), ctx, headers)
    else:
        response = entity_response([render_entity(e, ctx, options) for e in entities], media, ctx, headers)
    if request.method == "GET":  # POST /entityOperations/query pages through its body: no URL to link to
        add_paging_links(response, request, offset, limit, len(entities), total)
    return response


def _geo_response(payload: dict[str, Any], ctx: ActiveContext, headers: dict[str, str]) -> Response:
    """GeoJSON (RFC 7946) with the @context as a top-level member of the Feature / FeatureCollection, where the
    ETSI test suite's expectations put it (data/entities/expectations/*.geojson)."""
    payload["@context"] = ctx.echo
    return Response(dumps_bytes(payload), headers=headers, media_type=GEO_JSON)


# -- /entities/{id}/attrs and /entities/{id}/attrs/{attr} (§6.6, §6.7) -----------------------------------------
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
    """DELETE /entities/{id}/attrs/{attr} (§5.6.5, §6.7.3.2): 204; 404 when the entity or the attribute is absent.

    An attribute here holds one instance, so `deleteAll=true` deletes it as a plain delete does, and
    `datasetId=X` deletes it only when its datasetId is X (404 otherwise, as for an absent instance).
    """
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    bool_param(request.query_params, "deleteAll")  # validated; every instance (there is one) goes either way
    dataset_id = request.query_params.get("datasetId")
    if dataset_id is not None and "deleteAll" in request.query_params:
        raise bad_request("Conflicting URI parameters", "datasetId and deleteAll exclude each other")
    ctx = await broker.contexts.activate(link_context(request))
    await write(broker, ops.delete_attribute, tenant, entity_id, ctx.expand(request.path_params["attr"]), ctx,
                dataset_id)
    return Response(status_code=204)


@endpoint
async def replace_attribute(request: Request) -> Response:
    """PUT /entities/{id}/attrs/{attr} (Replace Attribute, §5.6.19, §6.7.3.3): the attribute becomes the body; 204,
    404 when the entity or the attribute is absent."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    entity_id = _entity_id(request)
    _, document, ctx = await _object_body(request)
    short = request.path_params["attr"]
    attribute = parse_attribute(short, {k: v for k, v in document.items() if k != "@context"}, ctx)
    await write(broker, ops.replace_attribute, tenant, entity_id, attribute_name(short, ctx),
                attribute, ctx)
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
    _refuse_non_objects(body.json, "a batch operation")
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


def _refuse_non_objects(items: list[Any], what: str) -> None:
    """An item that is not a JSON object (null, a number, a string) makes the payload not an array of entities:
    the whole request is refused with 400 (§6.14.3.1, §6.31.3.1), not reported per entity in a 207."""
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad_request("Invalid payload", f"{what} takes an array of entities (JSON objects); item "
                                                 f"{position} is {json.dumps(item)[:60]}")


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


# -- /entityOperations (§6.14-§6.17, §6.23, §6.31) -------------------------------------------------------------
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


@endpoint
async def batch_upsert(request: Request) -> Response:
    """POST /entityOperations/upsert (§5.6.8): fragments applied in order; 201 created ids, 204, or 207."""
    broker = broker_of(request)
    tenant = tenant_of(request)
    raw_mode = request.query_params.get("options", ops.UpsertMode.REPLACE.value)
    try:
        mode = ops.UpsertMode(raw_mode)
    except ValueError:
        raise bad_request("Invalid value for URI parameter options", f"{raw_mode!r}: use update or replace") from None
    fragments = await parse_batch(request)
    result = await write(broker, ops.upsert_batch, tenant, fragments, mode)
    return batch_response(result, tenant, created_status=True)


@endpoint
async def batch_merge(request: Request) -> Response:
    """POST /entityOperations/merge (Batch Entity Merge, §5.6.20): merge-patch each entity; 204, or 207."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    body = await read_body(request)
    if not isinstance(body.json, list) or not body.json:
        raise bad_request("Invalid payload", "a batch merge takes a non-empty JSON array of entities")
    _refuse_non_objects(body.json, "a batch merge")
    items: list[tuple[str, dict[str, Any], ActiveContext] | tuple[str | None, NgsiLdError]] = []
    for item in body.json:
        entity_id = item.get("id") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise bad_request("Invalid Entity", "each item of a batch merge is an entity (JSON object)")
            check_entity_id(entity_id)
            ctx = await broker.contexts.activate(body_context(body, item))
        except NgsiLdError as exc:
            if exc.error_type == "LdContextNotAvailable":
                raise
            items.append((entity_id, exc))
            continue
        items.append((entity_id, item, ctx))
    result = await write(broker, ops.merge_batch, tenant, items)
    return batch_response(result, tenant, created_status=False)


@endpoint
async def batch_query(request: Request) -> Response:
    """POST /entityOperations/query (Query Entities via POST, §5.7.2, §6.23.3.1): a Query (§5.2.23) in the body.

    `entities` (each {type, id, idPattern}, ORed), `attrs`, `q` and `geoQ` select as the GET parameters do;
    limit, offset, count, options/format, pick and omit stay URI parameters.
    """
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    media = negotiate(request, geo=True)
    body = await read_body(request)
    query = body.json
    if not isinstance(query, dict):
        raise bad_request("Invalid Query", "POST /entityOperations/query takes one Query object")
    if query.get("type", "Query") != "Query":
        raise bad_request("Invalid Query", f"type must be Query, not {query.get('type')!r}")
    for name in ("csf", "scopeQ", "temporalQ"):
        if name in query:
            raise NgsiLdError("OperationNotSupported", f"Query member {name} is not supported",
                              "see docs/compatibility.md", status=501)
    ctx = await broker.contexts.activate(body_context(body, query))
    selectors = [_selector(item, ctx) for item in _list_member(query, "entities", dict)]
    attrs = _list_member(query, "attrs", str) or None
    q_text = query.get("q")
    if q_text is not None and not isinstance(q_text, str):
        raise bad_request("Invalid Query", "q must be a string")
    geo_q = query.get("geoQ")
    if geo_q is not None and not isinstance(geo_q, dict):
        raise bad_request("Invalid Query", "geoQ must be an object")
    geo = parse_geo_query(geo_q.get("georel"), geo_q.get("geometry"), geo_q.get("coordinates"),
                          geo_q.get("geoproperty"), ctx) if geo_q else None
    if not selectors and attrs is None and q_text is None and geo is None:
        raise bad_request("Too broad query", "give at least one of entities, attrs, q or geoQ")
    return await _answer_query(request, broker, tenant, ctx, media, request.query_params,
                               selectors or [(None, None, None)], q_text, geo, body_attrs=attrs)


def _list_member(document: dict[str, Any], name: str, kind: type) -> list[Any]:
    value = document.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise bad_request("Invalid Query", f"{name} must be an array of {'objects' if kind is dict else 'strings'}")
    return value


def _selector(item: dict[str, Any], ctx: ActiveContext) -> Selector:
    """One EntitySelector (§5.2.33): any of type, id, idPattern; a type may list several, comma-separated."""
    raw_type, entity_id, pattern = item.get("type"), item.get("id"), item.get("idPattern")
    if raw_type is None and entity_id is None and pattern is None:
        raise bad_request("Invalid Query", "an entity selector needs type, id or idPattern")
    for name, value in (("type", raw_type), ("id", entity_id), ("idPattern", pattern)):
        if value is not None and not isinstance(value, str):
            raise bad_request("Invalid Query", f"entities[].{name} must be a string")
    return (type_selection(raw_type, ctx), (check_entity_id(entity_id),) if entity_id else None,
            _checked_pattern(pattern))
