"""HTTP handlers of `/subscriptions`: create, list, retrieve, update (PATCH), delete; tenant-scoped."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ._api import BASE, broker_of, endpoint, existing_tenant
from ._errors import NgsiLdError, bad_request
from ._http import (
    add_paging_links,
    body_context,
    bool_param,
    entity_response,
    int_param,
    link_context,
    location,
    negotiate,
    read_body,
    tenant_of,
)
from ._model import is_uri
from ._notifier import SubscriptionManager
from ._subscriptions import merge_patch, parse_subscription

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def _manager(request: Request) -> SubscriptionManager:
    manager = broker_of(request).subscriptions
    if manager is None:
        raise NgsiLdError("InternalError", "Subscriptions are not running")
    return manager


def _not_found(sub_id: str) -> NgsiLdError:
    return NgsiLdError("ResourceNotFound", "Subscription Not Found", sub_id)


def _sub_id(request: Request) -> str:
    """The subscription id of the path; 400 BadRequestData when it is not a URI (§6.11.3: a malformed id is a
    bad request, not a missing subscription)."""
    sub_id = request.path_params["sub_id"]
    if not is_uri(sub_id):
        raise bad_request("Invalid subscription id", f"not a URI: {sub_id!r}")
    return sub_id


@endpoint
async def create_subscription(request: Request) -> Response:
    """POST /subscriptions: 201 + Location; 409 when the id exists; 400 for an invalid subscription."""
    broker = broker_of(request)
    tenant = tenant_of(request)
    body = await read_body(request)
    if not isinstance(body.json, dict):
        raise bad_request("Invalid subscription", "a subscription is one JSON object")
    context = body_context(body, body.json)
    ctx = await broker.contexts.activate(context)
    sub = parse_subscription(body.json, tenant, context, ctx)
    await _manager(request).create(sub)
    return Response(status_code=201, headers=location(f"{BASE}/subscriptions/{sub.id}"))


@endpoint
async def list_subscriptions(request: Request) -> Response:
    """GET /subscriptions[?limit&offset&count]: the tenant's subscriptions with their status."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    limit = int_param(request.query_params, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
    offset = int_param(request.query_params, "offset", 0)
    media = negotiate(request)
    ctx = await broker.contexts.activate(link_context(request))
    subs = _manager(request).list(tenant)
    headers = {"NGSILD-Results-Count": str(len(subs))} if bool_param(request.query_params, "count") else {}
    page = subs[offset:offset + limit]
    response = entity_response([s.render(ctx) for s in page], media, ctx, headers)
    return add_paging_links(response, request, offset, limit, len(page), len(subs))


@endpoint
async def retrieve_subscription(request: Request) -> Response:
    """GET /subscriptions/{id}: 404 when the tenant has no such subscription."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    media = negotiate(request)
    ctx = await broker.contexts.activate(link_context(request))
    sub_id = _sub_id(request)
    sub = _manager(request).get(tenant, sub_id)
    if sub is None:
        raise _not_found(sub_id)
    return entity_response(sub.render(ctx), media, ctx)


@endpoint
async def update_subscription(request: Request) -> Response:
    """PATCH /subscriptions/{id}: members replaced (notification/endpoint merged), re-validated; 204."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    manager = _manager(request)
    sub_id = _sub_id(request)
    current = manager.get(tenant, sub_id)
    if current is None:
        raise _not_found(sub_id)
    body = await read_body(request)
    if not isinstance(body.json, dict):
        raise bad_request("Invalid subscription", "a subscription patch is one JSON object")
    if "id" in body.json and body.json["id"] != sub_id:
        raise bad_request("Invalid subscription", "the id of a subscription cannot change")
    raw = merge_patch(current.raw, body.json)
    context = body_context(body, body.json) if (body.link_context or "@context" in body.json) else current.context
    ctx = await broker.contexts.activate(context)
    await manager.replace(parse_subscription(raw, tenant, context, ctx))
    return Response(status_code=204)


@endpoint
async def delete_subscription(request: Request) -> Response:
    """DELETE /subscriptions/{id}: 204; 404 when the tenant has no such subscription."""
    broker = broker_of(request)
    tenant = existing_tenant(request, broker)
    sub_id = _sub_id(request)
    if not await _manager(request).delete(tenant, sub_id):
        raise _not_found(sub_id)
    return Response(status_code=204)
