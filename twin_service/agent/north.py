"""The provisioning API (IoT Agent north port 4041): routes, header checks, body validation, error shape.

Same paths, bodies, statuses and `{"name", "message"}` errors as iotagent-node-lib's `deviceGroupAdministration`
and `deviceProvisioning` servers, so FiLiP, the FIWARE tutorials' curl calls and `energytwin provision` work
unchanged against either agent. Each handler is short: validate at the edge, call the registry, answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import errors
from .metrics import Metrics
from .models import DevicesRequest, DeviceUpdate, GroupUpdate, OpDeleteRequest, ServicesRequest
from .registry import Registry

M = TypeVar("M", bound=BaseModel)

MANDATORY_HEADERS = ("fiware-service", "fiware-servicepath")
COMPATIBLE_WITH = {"libVersion": "4.14.0", "version": "3.14.0-next"}  # the iotagent-json this agent mirrors


def create_north_app(
    registry: Registry,
    metrics: Metrics,
    north_port: int,
    health: Callable[[], dict[str, Any]] | None = None,
) -> Starlette:
    """The Starlette app serving /iot/* , /metrics, /iot/about and /version over `registry`."""

    def tenant(request: Request) -> tuple[str, str]:
        missing = [name for name in MANDATORY_HEADERS if name not in request.headers]
        if missing:
            raise errors.missing_headers(missing)
        return request.headers["fiware-service"], request.headers["fiware-servicepath"]

    async def create_groups(request: Request) -> Response:
        service, subservice = tenant(request)
        body = await _json_body(request)
        if isinstance(body, dict) and _groups_route(request) and "groups" in body:
            body = {"services": body["groups"], **{k: v for k, v in body.items() if k != "groups"}}
        groups = _validate(ServicesRequest, body).services
        registry.create_groups(service, subservice, groups)
        return JSONResponse({}, status_code=201)

    async def list_groups(request: Request) -> Response:
        service, subservice = tenant(request)
        limit, offset = _paging(request)
        groups = registry.list_groups(service, subservice, limit, offset)
        key = "groups" if _groups_route(request) else "services"
        return JSONResponse({"count": len(groups), key: groups})

    async def update_group(request: Request) -> Response:
        service, subservice = tenant(request)
        resource, apikey = _group_key(request)
        update = _validate(GroupUpdate, await _json_body(request))
        registry.update_group(service, subservice, resource, apikey, update)
        return Response(status_code=204)

    async def delete_group(request: Request) -> Response:
        service, subservice = tenant(request)
        resource, apikey = _group_key(request)
        registry.delete_group(service, subservice, resource, apikey)
        return Response(status_code=204)

    async def create_devices(request: Request) -> Response:
        service, subservice = tenant(request)
        body = await _json_body(request)
        listed = body.get("devices") if isinstance(body, dict) else None
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict) and "device_id" not in item:  # node-lib checks this before the schema
                raise errors.missing_attributes(["device_id"], item)
        devices = _validate(DevicesRequest, body).devices
        registry.create_devices(service, subservice, devices)
        return JSONResponse({}, status_code=201)

    async def list_devices(request: Request) -> Response:
        service, subservice = tenant(request)
        limit, offset = _paging(request)
        count, devices = registry.list_devices(service, subservice, limit, offset)
        return JSONResponse({"count": count, "devices": devices})

    async def get_device(request: Request) -> Response:
        service, subservice = tenant(request)
        return JSONResponse(registry.get_device(service, subservice, request.path_params["device_id"]))

    async def update_device(request: Request) -> Response:
        service, subservice = tenant(request)
        update = _validate(DeviceUpdate, await _json_body(request))
        registry.update_device(service, subservice, request.path_params["device_id"], update)
        return Response(status_code=204)

    async def delete_device(request: Request) -> Response:
        service, subservice = tenant(request)
        apikey = request.query_params.get("apikey")
        registry.delete_device(service, subservice, request.path_params["device_id"], apikey)
        return Response(status_code=204)

    async def op_delete(request: Request) -> Response:
        """Bulk delete; like node-lib, every device found is deleted and 404 reports the first one missing."""
        service, subservice = tenant(request)
        body = _validate(OpDeleteRequest, await _json_body(request))
        missing = registry.delete_devices(
            service, subservice, [(item.deviceId, item.apikey) for item in body.devices]
        )
        if missing:
            raise errors.device_not_found(missing[0])
        return Response(status_code=204)

    async def about(request: Request) -> Response:
        return JSONResponse(
            {
                **COMPATIBLE_WITH,
                "port": north_port,
                "baseRoot": "/",
                "energytwin": _package_version(),
                **({"health": health()} if health is not None else {}),
            }
        )

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def provisioning_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.ProvisioningError)
        return JSONResponse(exc.body(), status_code=exc.status)

    groups = {"POST": create_groups, "GET": list_groups, "PUT": update_group, "DELETE": delete_group}
    routes = [
        *(
            Route(path, handler, methods=[method])
            for path in ("/iot/services", "/iot/groups")
            for method, handler in groups.items()
        ),
        Route("/iot/devices", create_devices, methods=["POST"]),
        Route("/iot/devices", list_devices, methods=["GET"]),
        Route("/iot/devices/{device_id}", get_device, methods=["GET"]),
        Route("/iot/devices/{device_id}", update_device, methods=["PUT"]),
        Route("/iot/devices/{device_id}", delete_device, methods=["DELETE"]),
        Route("/iot/op/delete", op_delete, methods=["POST"]),
        Route("/iot/about", about, methods=["GET"]),
        Route("/version", about, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={errors.ProvisioningError: provisioning_error})


def _groups_route(request: Request) -> bool:
    return request.url.path.startswith("/iot/groups")


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.wrong_syntax(f"body is not JSON ({exc})") from None


def _validate(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        raise errors.wrong_syntax(problems) from None


def _group_key(request: Request) -> tuple[str, str]:
    """`resource` and `apikey` query parameters; the FIWARE agent reports them missing as MISSING_HEADERS."""
    missing = [name for name in ("resource", "apikey") if name not in request.query_params]
    if missing:
        raise errors.missing_headers(missing)
    return request.query_params["resource"], request.query_params["apikey"]


def _paging(request: Request) -> tuple[int | None, int]:
    try:
        limit = int(request.query_params["limit"]) if "limit" in request.query_params else None
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        raise errors.wrong_syntax("limit and offset must be integers") from None
    if (limit is not None and limit < 0) or offset < 0:
        raise errors.wrong_syntax("limit and offset must not be negative")
    return limit, offset


def _package_version() -> str:
    try:
        return version("energytwin")
    except PackageNotFoundError:
        return "unknown"
