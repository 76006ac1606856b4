"""The NGSI-LD HTTP API: routes in one list, short handlers, one exception handler producing ProblemDetails."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import platform
import re
import sqlite3
import time
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from datamodels.context import CORE_CONTEXT

from . import _entity_api as entity_api
from . import _operations as ops
from . import _subscription_api as subscription_api
from . import _temporal as temporal
from . import _types as types
from ._api import BASE, Broker, Handler, broker_of, endpoint, existing_tenant, read, write
from ._context import ActiveContext, ContextResolver
from ._errors import NgsiLdError, bad_request, not_found
from ._http import (
    body_context,
    bool_param,
    entity_response,
    int_param,
    link_context,
    list_param,
    negotiate,
    read_body,
    tenant_of,
)
from ._model import RenderOptions, parse_entity, render_entity
from ._notifier import RETRY_DELAYS_S, SubscriptionManager
from ._query import compile_q
from ._store import EntityQuery, Store

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
RETENTION_PASS_S = 3600.0
MAX_LIMIT = 1000  # Orion-LD's cap; above it is 400, not a silently shortened page
_OPTIONS = frozenset({"keyValues", "simplified", "normalized", "sysAttrs", "concise"})
# Query features not implemented; refused loudly rather than ignored (an ignored filter returns too much).
_NOT_SUPPORTED = ("georel", "geometry", "coordinates", "geoproperty", "csf", "scopeQ", "lang", "datasetId")

async def problem_details(request: Request, exc: Exception) -> Response:
    """The one exception handler: every refusal becomes NGSI-LD ProblemDetails."""
    if isinstance(exc, HTTPException):
        error_type = "ResourceNotFound" if exc.status_code == 404 else "InvalidRequest"
        title = "Service Not Found" if exc.status_code == 404 else str(exc.detail)
        exc = NgsiLdError(error_type, title, f"{request.method} {request.url.path}", status=exc.status_code,
                          headers=dict(exc.headers or {}))
    assert isinstance(exc, NgsiLdError)  # registered for these two only; _endpoint converts everything else
    level = logging.WARNING if exc.status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d %s: %s %s", request.method, request.url.path, exc.status, exc.error_type,
            exc.title, exc.detail)
    return exc.response()


# -- handlers -------------------------------------------------------------------------------------------
@endpoint
async def create_entity(request: Request) -> Response:
    """POST /entities: 201 + Location, 409 when the id exists."""
    broker = broker_of(request)
    tenant = tenant_of(request)
    body = await read_body(request)
    if not isinstance(body.json, dict):
        raise bad_request("Invalid Entity", "POST /entities takes one JSON object")
    ctx = await broker.contexts.activate(body_context(body, body.json))
    entity = parse_entity(body.json, ctx)
    await write(broker, ops.create_entity, tenant, entity)
    return Response(status_code=201, headers={"Location": f"{BASE}/entities/{entity.id}"})


@endpoint
async def retrieve_entity(request: Request) -> Response:
    """GET /entities/{id}: one entity, compacted with the request's context."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    media = negotiate(request)
    ctx = await broker.contexts.activate(link_context(request))
    options = _render_options(request, ctx)
    entity_id = request.path_params["entity_id"]
    entity = broker.store.get_entity(tenant, entity_id)
    wanted_types = list_param(request.query_params, "type")
    if entity is None or (wanted_types and entity.type not in {ctx.expand(t) for t in wanted_types}):
        raise not_found(entity_id)
    return entity_response(render_entity(entity, ctx, options), media, ctx)


@endpoint
async def query_entities(request: Request) -> Response:
    """GET /entities: filter by type/id/idPattern/attrs, page with limit/offset, count on request."""
    broker = broker_of(request)
    params = request.query_params
    for name in _NOT_SUPPORTED:
        if name in params:
            raise NgsiLdError("OperationNotSupported", f"URI parameter {name} is not supported",
                              "the embedded broker filters by type, id, idPattern, attrs and q", status=501)
    types, attrs, q_text = list_param(params, "type"), list_param(params, "attrs"), params.get("q")
    if types is None and attrs is None and q_text is None:
        raise bad_request("Too broad query", "give at least one of type, attrs or q")
    limit = int_param(params, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
    offset = int_param(params, "offset", 0)
    count = bool_param(params, "count")
    id_pattern = params.get("idPattern")
    if id_pattern is not None:
        try:
            re.compile(id_pattern)
        except re.error as exc:
            raise bad_request("Invalid idPattern", f"{id_pattern!r}: {exc}") from None
    tenant = existing_tenant(request, broker)
    media = negotiate(request)
    ctx = await broker.contexts.activate(link_context(request))
    options = _render_options(request, ctx)
    ids = list_param(params, "id")
    query = EntityQuery(types=tuple(ctx.expand(t) for t in types) if types else None,
                        ids=tuple(ids) if ids else None, id_pattern=id_pattern,
                        attrs=tuple(sorted(options.attrs)) if options.attrs is not None else None)
    q = compile_q(q_text, ctx) if q_text is not None else None
    # on a worker thread: a page of up to 1000 entities is megabytes of JSON to decode, too long for the loop
    entities, total = await read(broker.store.query_entities, tenant, query, limit, offset,
                                 q.matches if q is not None else None)
    headers = {"NGSILD-Results-Count": str(total)} if count else {}
    return entity_response([render_entity(e, ctx, options) for e in entities], media, ctx, headers)


@endpoint
async def delete_entity(request: Request) -> Response:
    """DELETE /entities/{id}: 204, 404 when absent."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    await write(broker, ops.delete_entity, tenant, request.path_params["entity_id"])
    return Response(status_code=204)


@endpoint
async def batch_upsert(request: Request) -> Response:
    """POST /entityOperations/upsert: fragments applied in order; 201 created ids, 204, or 207."""
    broker = broker_of(request)
    tenant = tenant_of(request)
    raw_mode = request.query_params.get("options", ops.UpsertMode.REPLACE.value)
    try:
        mode = ops.UpsertMode(raw_mode)
    except ValueError:
        raise bad_request("Invalid value for URI parameter options", f"{raw_mode!r}: use update or replace") from None
    fragments = await entity_api.parse_batch(request)
    result = await write(broker, ops.upsert_batch, tenant, fragments, mode)
    return entity_api.batch_response(result, tenant, created_status=True)


@endpoint
async def version(request: Request) -> Response:
    """GET /version: Orion-LD's shape, which health checks and tools read."""
    broker = broker_of(request)
    uptime_s = int(time.monotonic() - broker.started_at)
    days, rest = divmod(uptime_s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return JSONResponse({
        "orionld version": f"energytwin-{_package_version()}",
        "orion version": "1.15.0-next",
        "uptime": f"{days} d, {hours} h, {minutes} m, {seconds} s",
        "git_hash": "nogitversion",
        "compile_time": "",
        "compiled_by": "",
        "compiled_in": "",
        "release_date": "",
        "doc": "docs/compatibility.md",
        "core@context": CORE_CONTEXT,
        "broker": "energytwin embedded NGSI-LD broker (SQLite)",
    })


@endpoint
async def library_versions(request: Request) -> Response:
    """GET /ngsi-ld/ex/v1/version: the libraries this broker runs on, as Orion-LD lists its own."""
    return JSONResponse({
        "Orion-LD version": f"energytwin-{_package_version()}",
        "based on orion": "1.15.0-next",
        "python version": platform.python_version(),
        "sqlite version": sqlite3.sqlite_version,
        "starlette version": _package_version("starlette"),
        "uvicorn version": _package_version("uvicorn"),
        "core@context": CORE_CONTEXT,
    })


# -- helpers ----------------------------------------------------------------------------------------------
def _render_options(request: Request, ctx: ActiveContext) -> RenderOptions:
    params = request.query_params
    options = set(list_param(params, "options") or [])
    fmt = params.get("format")
    if fmt is not None:
        options.add(fmt)
    unknown = options - _OPTIONS
    if unknown:
        raise bad_request("Invalid value for URI parameter options",
                          f"{', '.join(sorted(unknown))}: supported are {', '.join(sorted(_OPTIONS))}")
    shapes = {"keyValues" if o == "simplified" else o for o in options & {"keyValues", "simplified", "concise",
                                                                            "normalized"}}
    if len(shapes) > 1:
        raise bad_request("Conflicting options", "choose one of normalized, concise and keyValues/simplified")
    attrs, pick, omit = list_param(params, "attrs"), list_param(params, "pick"), list_param(params, "omit")
    if pick and omit:
        raise bad_request("Conflicting URI parameters", "pick and omit exclude each other")

    def names(items: list[str] | None) -> frozenset[str] | None:
        return frozenset(i if i in ("id", "type") else ctx.expand(i) for i in items) if items else None

    return RenderOptions(key_values=bool(options & {"keyValues", "simplified"}), sys_attrs="sysAttrs" in options,
                         attrs=frozenset(ctx.expand(a) for a in attrs) if attrs else None,
                         concise="concise" in options, pick=names(pick), omit=names(omit))


@functools.cache
def _package_version(name: str = "energytwin") -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _by_method(**handlers: Handler) -> Handler:
    """One endpoint for a path served by several handlers, so a 405 lists every allowed method."""

    async def dispatch(request: Request) -> Response:
        # Starlette adds HEAD wherever GET is allowed; it is answered like GET (the server drops the body).
        return await handlers.get(request.method, handlers.get("GET") or next(iter(handlers.values())))(request)

    return dispatch


ROUTES = [
    Route("/version", version, methods=["GET"]),
    Route("/ngsi-ld/ex/v1/version", library_versions, methods=["GET"]),
    Route(f"{BASE}/entities", _by_method(GET=query_entities, POST=create_entity), methods=["GET", "POST"]),
    Route(f"{BASE}/entities/", query_entities, methods=["GET"]),  # FiLiP queries with the trailing slash
    Route(f"{BASE}/entities/{{entity_id}}",
          _by_method(GET=retrieve_entity, DELETE=delete_entity, PATCH=entity_api.merge_entity,
                     PUT=entity_api.replace_entity), methods=["GET", "DELETE", "PATCH", "PUT"]),
    Route(f"{BASE}/entities/{{entity_id}}/attrs",
          _by_method(POST=entity_api.append_attributes, PATCH=entity_api.update_attributes),
          methods=["POST", "PATCH"]),
    Route(f"{BASE}/entities/{{entity_id}}/attrs/", entity_api.append_attributes, methods=["POST"]),  # FiLiP
    Route(f"{BASE}/entities/{{entity_id}}/attrs/{{attr}}",
          _by_method(PATCH=entity_api.partial_attribute_update, DELETE=entity_api.delete_attribute),
          methods=["PATCH", "DELETE"]),
    Route(f"{BASE}/entityOperations/create", entity_api.batch_create, methods=["POST"]),
    Route(f"{BASE}/entityOperations/update", entity_api.batch_update, methods=["POST"]),
    Route(f"{BASE}/entityOperations/delete", entity_api.batch_delete, methods=["POST"]),
    Route(f"{BASE}/entityOperations/upsert", batch_upsert, methods=["POST"]),
    Route(f"{BASE}/entityOperations/upsert/", batch_upsert, methods=["POST"]),  # what the IoT Agent sends
    Route(f"{BASE}/subscriptions", _by_method(GET=subscription_api.list_subscriptions,
                                              POST=subscription_api.create_subscription), methods=["GET", "POST"]),
    Route(f"{BASE}/subscriptions/", _by_method(GET=subscription_api.list_subscriptions,
                                               POST=subscription_api.create_subscription), methods=["GET", "POST"]),
    Route(f"{BASE}/subscriptions/{{sub_id}}",
          _by_method(GET=subscription_api.retrieve_subscription, PATCH=subscription_api.update_subscription,
                     DELETE=subscription_api.delete_subscription), methods=["GET", "PATCH", "DELETE"]),
    Route(f"{BASE}/types", types.list_types, methods=["GET"]),
    Route(f"{BASE}/types/{{type:path}}", types.type_info, methods=["GET"]),
    Route(f"{BASE}/attributes", types.list_attributes, methods=["GET"]),
    Route(f"{BASE}/attributes/{{attr:path}}", types.attribute_info, methods=["GET"]),
    Route(f"{BASE}/temporal/entities", temporal.query_temporal_entities, methods=["GET"]),
    Route(f"{BASE}/temporal/entities/", temporal.query_temporal_entities, methods=["GET"]),
    Route(f"{BASE}/temporal/entities/{{entity_id}}", temporal.retrieve_temporal_entity, methods=["GET"]),
]


def create_app(data_dir: Path, *, retention_days: float | None = None,
               notification_retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S) -> Starlette:
    """The broker as an ASGI app, keeping its state in `<data_dir>/twin.sqlite`.

    `retention_days` bounds the history: instances observed longer ago are pruned at start and every hour.
    """
    store = Store(Path(data_dir))
    contexts = ContextResolver(store)
    manager = SubscriptionManager(store, contexts, notification_retry_delays_s)
    broker = Broker(store, contexts, time.monotonic(), manager,
                    retention_days * 86400 if retention_days is not None else None)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        await manager.start()
        pruner = asyncio.create_task(_retention_loop(broker)) if broker.retention_s is not None else None
        try:
            yield
        finally:
            if pruner is not None:
                pruner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruner
            await manager.stop()
            store.close()
            log.info("broker stopped; state saved in %s", store.path)

    app = Starlette(routes=ROUTES, lifespan=lifespan,
                    exception_handlers={NgsiLdError: problem_details, HTTPException: problem_details})
    app.state.broker = broker
    return app


async def _retention_loop(broker: Broker) -> None:
    """Prune history older than the retention setting now and every RETENTION_PASS_S."""
    assert broker.retention_s is not None
    while True:
        cutoff = time.time() - broker.retention_s
        deleted = await asyncio.to_thread(broker.store.prune_history, cutoff)
        if deleted:
            log.info("retention: %d history instances older than %.1f days removed", deleted,
                     broker.retention_s / 86400)
        await asyncio.sleep(RETENTION_PASS_S)
