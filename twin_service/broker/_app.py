"""The NGSI-LD HTTP API: routes in one list, short handlers, one exception handler producing ProblemDetails."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import platform
import sqlite3
import time
from contextlib import asynccontextmanager
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from datamodels.context import CORE_CONTEXT

from . import _context_api as context_api
from . import _entity_api as entity_api
from . import _subscription_api as subscription_api
from . import _temporal as temporal
from . import _temporal_provision as temporal_provision
from . import _types as types
from ._api import BASE, Broker, Handler, broker_of, endpoint
from ._context import ContextResolver
from ._errors import NgsiLdError
from ._notifier import RETRY_DELAYS_S, SubscriptionManager
from ._store import Store

log = logging.getLogger(__name__)

RETENTION_PASS_S = 3600.0
# 1-min rollups are ~4.5 MB per meter-day, most of what the rollups of a year cost (docs/performance.md): kept a
# month by default; the 10-min (the EN 50160 interval) and hourly ones, ~0.6 MB per meter-day, are kept for good
DEFAULT_ROLLUP_1MIN_RETENTION_DAYS = 31.0

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


# -- handlers (the entity, subscription, temporal and discovery ones live in their modules) -------------------
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


class _IdConvertor(Convertor[str]):
    """One path segment holding an id or a name, in which a percent-encoded slash (`%2F`) stands for `/`.

    `http://example.org/site/` is a valid entity id; a client sends it as `http:%2F%2Fexample.org%2Fsite%2F`.
    `_WithoutTrailingSlash` keeps those `%2F` encoded in the routed path, so routing sees one segment, and this
    convertor hands the handler the id with its slashes back.
    """

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value.replace("%2F", "/").replace("%2f", "/")

    def to_string(self, value: str) -> str:
        return value.replace("/", "%2F")


register_url_convertor("ngsild_id", _IdConvertor())


ROUTES = [
    Route("/version", version, methods=["GET"]),
    Route("/ngsi-ld/ex/v1/version", library_versions, methods=["GET"]),
    # a trailing slash on any of these paths is served too (ngsildclient, FiLiP and the IoT Agent send one):
    # see _without_trailing_slash
    Route(f"{BASE}/entities", _by_method(GET=entity_api.query_entities, POST=entity_api.create_entity,
                                         DELETE=entity_api.purge_entities), methods=["GET", "POST", "DELETE"]),
    Route(f"{BASE}/entities/{{entity_id:ngsild_id}}",
          _by_method(GET=entity_api.retrieve_entity, DELETE=entity_api.delete_entity, PATCH=entity_api.merge_entity,
                     PUT=entity_api.replace_entity), methods=["GET", "DELETE", "PATCH", "PUT"]),
    Route(f"{BASE}/entities/{{entity_id:ngsild_id}}/attrs",
          _by_method(POST=entity_api.append_attributes, PATCH=entity_api.update_attributes),
          methods=["POST", "PATCH"]),
    Route(f"{BASE}/entities/{{entity_id:ngsild_id}}/attrs/{{attr:ngsild_id}}",
          _by_method(PATCH=entity_api.partial_attribute_update, DELETE=entity_api.delete_attribute,
                     PUT=entity_api.replace_attribute), methods=["PATCH", "DELETE", "PUT"]),
    Route(f"{BASE}/entityOperations/create", entity_api.batch_create, methods=["POST"]),
    Route(f"{BASE}/entityOperations/update", entity_api.batch_update, methods=["POST"]),
    Route(f"{BASE}/entityOperations/delete", entity_api.batch_delete, methods=["POST"]),
    Route(f"{BASE}/entityOperations/upsert", entity_api.batch_upsert, methods=["POST"]),
    Route(f"{BASE}/entityOperations/merge", entity_api.batch_merge, methods=["POST"]),
    Route(f"{BASE}/entityOperations/query", entity_api.batch_query, methods=["POST"]),
    Route(f"{BASE}/subscriptions", _by_method(GET=subscription_api.list_subscriptions,
                                              POST=subscription_api.create_subscription), methods=["GET", "POST"]),
    Route(f"{BASE}/subscriptions/{{sub_id:ngsild_id}}",
          _by_method(GET=subscription_api.retrieve_subscription, PATCH=subscription_api.update_subscription,
                     DELETE=subscription_api.delete_subscription), methods=["GET", "PATCH", "DELETE"]),
    Route(f"{BASE}/types", types.list_types, methods=["GET"]),
    Route(f"{BASE}/types/{{type:path}}", types.type_info, methods=["GET"]),
    Route(f"{BASE}/attributes", types.list_attributes, methods=["GET"]),
    Route(f"{BASE}/attributes/{{attr:path}}", types.attribute_info, methods=["GET"]),
    Route(f"{BASE}/jsonldContexts", _by_method(GET=context_api.list_contexts, POST=context_api.add_context),
          methods=["GET", "POST"]),
    Route(f"{BASE}/jsonldContexts/{{context_id:path}}",
          _by_method(GET=context_api.serve_context, DELETE=context_api.delete_context), methods=["GET", "DELETE"]),
    Route(f"{BASE}/temporal/entityOperations/query", temporal_provision.query_temporal_via_post, methods=["POST"]),
    Route(f"{BASE}/temporal/entities", _by_method(GET=temporal.query_temporal_entities,
                                                  POST=temporal_provision.create_temporal_entity),
          methods=["GET", "POST"]),
    Route(f"{BASE}/temporal/entities/{{entity_id:ngsild_id}}",
          _by_method(GET=temporal.retrieve_temporal_entity, DELETE=temporal_provision.delete_temporal_entity),
          methods=["GET", "DELETE"]),
    Route(f"{BASE}/temporal/entities/{{entity_id:ngsild_id}}/attrs", temporal_provision.add_temporal_attributes,
          methods=["POST"]),
    Route(f"{BASE}/temporal/entities/{{entity_id:ngsild_id}}/attrs/{{attr:ngsild_id}}", temporal_provision.delete_temporal_attribute,
          methods=["DELETE"]),
    Route(f"{BASE}/temporal/entities/{{entity_id:ngsild_id}}/attrs/{{attr:ngsild_id}}/{{instance_id:ngsild_id}}",
          _by_method(DELETE=temporal_provision.delete_temporal_instance,
                     PATCH=temporal_provision.modify_temporal_instance), methods=["DELETE", "PATCH"]),
]


class _WithoutTrailingSlash:
    """ASGI middleware: `/ngsi-ld/v1/<resource>/` is served as `/ngsi-ld/v1/<resource>`.

    The NGSI-LD API paths (ETSI GS CIM 009 V1.8.1 §6.1) have no trailing slash, but client libraries add one
    (`ngsildclient` on every create, FiLiP on queries, the IoT Agent on upserts) and Orion-LD serves them alike.
    Rewriting the path before routing keeps one route per resource instead of a slashed twin of each.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, raw = scope["path"], scope.get("raw_path")
            if raw and b"%2f" in raw.lower() and path.startswith(BASE + "/"):
                # an encoded slash belongs to the id in its segment: keep it encoded for routing (_IdConvertor)
                text = raw.decode("latin-1").replace("%2F", "%252F").replace("%2f", "%252F")
                path = unquote(text)
                scope = {**scope, "path": path}
            slashed = raw.endswith(b"/") if raw else path.endswith("/")
            if slashed and len(path) > len(BASE) + 1 and path.startswith(BASE + "/"):
                scope = {**scope, "path": path[:-1]}
                if raw:
                    scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)


def create_app(data_dir: Path, *, retention_days: float | None = None,
               rollup_1min_retention_days: float | None = None,
               notification_retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S) -> Starlette:
    """The broker as an ASGI app, keeping its state in `<data_dir>/twin.sqlite`.

    `retention_days` bounds the raw history: instances observed longer ago are pruned at start and every hour.
    `rollup_1min_retention_days` does the same for the 1-minute rollups in the same pass (None or infinity: kept;
    the command line's default is DEFAULT_ROLLUP_1MIN_RETENTION_DAYS); the 10-minute and hourly ones are kept.
    """
    store = Store(Path(data_dir))
    contexts = ContextResolver(store)
    manager = SubscriptionManager(store, contexts, notification_retry_delays_s)
    broker = Broker(store, contexts, time.monotonic(), manager,
                    retention_days * 86400 if retention_days is not None else None)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        await manager.start()
        rollup_1min_s = (rollup_1min_retention_days * 86400 if rollup_1min_retention_days is not None
                         and math.isfinite(rollup_1min_retention_days) else None)
        pruner = (asyncio.create_task(_retention_loop(broker, rollup_1min_s))
                  if broker.retention_s is not None or rollup_1min_s is not None else None)
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

    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=[Middleware(_WithoutTrailingSlash)],
                    exception_handlers={NgsiLdError: problem_details, HTTPException: problem_details})
    app.state.broker = broker
    return app


async def _retention_loop(broker: Broker, rollup_1min_s: float | None = None) -> None:
    """Prune raw history and 1-min rollups older than their retention settings now and every RETENTION_PASS_S."""
    while True:
        if broker.retention_s is not None:
            cutoff = time.time() - broker.retention_s
            deleted = await asyncio.to_thread(broker.store.prune_history, cutoff)
            if deleted:
                log.info("retention: %d history instances older than %.1f days removed", deleted,
                         broker.retention_s / 86400)
        if rollup_1min_s is not None:
            deleted = await asyncio.to_thread(broker.store.prune_rollups, 60, time.time() - rollup_1min_s)
            if deleted:
                log.info("retention: %d 1-min rollup buckets older than %.1f days removed (10-min and hourly kept)",
                         deleted, rollup_1min_s / 86400)
        await asyncio.sleep(RETENTION_PASS_S)
