"""The request edge: tenant headers, media types, @context sources, body size and JSON, query parameters.

Everything a handler needs from the raw request is checked here, so handlers only see valid values and every
refusal is an NgsiLdError with the status Orion-LD would give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from ._context import ActiveContext
from ._errors import NgsiLdError, bad_request, invalid_request
from ._json import dumps_bytes, loads
from ._store import DEFAULT_TENANT

JSON = "application/json"
JSON_LD = "application/ld+json"
MERGE_PATCH = "application/merge-patch+json"
GEO_JSON = "application/geo+json"
LINK_REL = "http://www.w3.org/ns/json-ld#context"
# Largest request body accepted. Orion-LD's default is larger, but a meter update is ~2 KiB and a 1000-entity
# batch of them fits; beyond this a client is misbehaving and reading it only costs memory.
MAX_BODY_BYTES = 1024 * 1024
_PARSE_ON_THREAD_BYTES = 16 * 1024
# Orion-LD turns tenants into MongoDB database names: letters, digits, '_' and '-', at most 50.
_TENANT = re.compile(r"^[a-z0-9_\-]{1,50}$")
_LINK = re.compile(r"^\s*<([^>]*)>\s*(;.*)?$")
_URL_SAFE = "/:@!$&'()*+,;=~-._?#[]%"  # RFC 3986 reserved and unreserved characters: kept as they are


@dataclass(frozen=True)
class Body:
    """A parsed request body and where its @context may come from."""

    json: Any
    media_type: str  # JSON or JSON_LD
    link_context: str | None


def tenant_of(request: Request) -> str:
    """The request's tenant: `NGSILD-Tenant` or its synonym `Fiware-Service`, lower-cased ("" = default)."""
    ngsild = request.headers.get("ngsild-tenant", "").strip().lower()
    fiware = request.headers.get("fiware-service", "").strip().lower()
    if ngsild and fiware and ngsild != fiware:
        raise bad_request("Tenant headers disagree", f"NGSILD-Tenant {ngsild!r} vs Fiware-Service {fiware!r}")
    tenant = ngsild or fiware
    if tenant and not _TENANT.match(tenant):
        raise bad_request("Invalid tenant", f"{tenant!r}: use at most 50 letters, digits, '_' or '-'")
    return tenant or DEFAULT_TENANT


def link_context(request: Request) -> str | None:
    """The user @context URL named by a `Link` header with the JSON-LD context relation, if any."""
    header = request.headers.get("link")
    if header is None:
        return None
    for value in header.split(","):
        match = _LINK.match(value)
        if match and LINK_REL in (match.group(2) or ""):
            url = match.group(1).strip()
            if not url:
                break
            return url
    raise bad_request("Invalid Link header", f"expected <url>; rel=\"{LINK_REL}\", got {header[:200]!r}")


def media_type_of(request: Request) -> str:
    """The request body's media type, JSON or JSON-LD; anything else is 415."""
    raw = request.headers.get("content-type", "")
    media = raw.split(";", 1)[0].strip().lower()
    if media == MERGE_PATCH and request.method == "PATCH":
        return JSON  # merge-patch documents follow the application/json rules (context in a Link header)
    if media not in (JSON, JSON_LD):
        raise NgsiLdError("InvalidRequest", "Unsupported Media Type",
                          f"Content-Type {raw or '(none)'!r}: use {JSON} or {JSON_LD}", status=415)
    return media


async def read_body(request: Request) -> Body:
    """The request's JSON body, size-limited, with the @context rules of its media type checked."""
    media = media_type_of(request)
    link = link_context(request)
    if media == JSON_LD and link is not None:
        raise bad_request("Link header with application/ld+json",
                          "with Content-Type application/ld+json the @context goes in the body, not in a Link")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(size)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise invalid_request("Empty payload", "a JSON body is required")
    try:
        # large bodies (batches) are decoded on a worker thread, not on the loop serving other requests
        document = await run_in_threadpool(loads, raw) if len(raw) > _PARSE_ON_THREAD_BYTES else loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request("JSON Parse Error", str(exc)) from None
    return Body(document, media, link)


def body_context(body: Body, item: Any) -> Any:
    """The @context one entity of the body is expanded with (Link header or its own `@context` member)."""
    has_context = isinstance(item, dict) and "@context" in item
    if body.media_type == JSON:
        if has_context:
            raise bad_request("@context in application/json payload",
                              "send it in a Link header, or use Content-Type application/ld+json")
        return body.link_context
    if not has_context:
        raise bad_request("@context missing", "Content-Type application/ld+json needs @context in the payload")
    return item["@context"]


def _too_large(size: int) -> NgsiLdError:
    return NgsiLdError("InvalidRequest", "Payload Too Large",
                       f"{size} bytes; the limit is {MAX_BODY_BYTES} bytes", status=413)


def negotiate(request: Request, geo: bool = False) -> str:
    """The response media type from `Accept`: JSON (context in a Link header) or JSON-LD (context in body).

    `geo`: the operation also offers GeoJSON (`application/geo+json`: retrieve and query entities, §6.3.15).
    """
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return JSON
    best: tuple[float, str] | None = None
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        chosen = {JSON: JSON, JSON_LD: JSON_LD, "*/*": JSON, "application/*": JSON,
                  GEO_JSON: GEO_JSON if geo else None}.get(media.lower())
        if chosen and quality > 0 and (best is None or quality > best[0]):
            best = (quality, chosen)
    if best is None:
        raise NgsiLdError("InvalidRequest", "Not Acceptable",
                          f"Accept {accept!r}: this operation answers {JSON}, {JSON_LD}"
                          f"{' or ' + GEO_JSON if geo else ''}", status=406)
    return best[1]


def location(path: str) -> dict[str, str]:
    """A `Location` header for a created resource, percent-encoded (RFC 3986 §2.1) so that an id holding
    non-ASCII characters (an IRI) is a valid header value; ASCII ids are written unchanged."""
    return {"Location": quote(path, safe=_URL_SAFE)}


def add_paging_links(response: Response, request: Request, offset: int, limit: int, returned: int,
                     total: int) -> Response:
    """`Link` headers to the next and previous pages (§6.3.13 Pagination, RFC 8288 `rel="next"`/`"prev"`): the
    same request with `offset` moved by `limit`; none past either end. Separate from the @context Link."""
    if limit <= 0:
        return response

    def page(at: int) -> str:
        items = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]
        query = urlencode([*items, ("limit", str(limit)), ("offset", str(at))])
        return quote(request.url.path, safe="/:@!$&'()*+,;=~-._%") + "?" + query

    if offset + returned < total:
        response.headers.append("Link", f'<{page(offset + limit)}>; rel="next"; type="{JSON}"')
    if offset > 0:
        response.headers.append("Link", f'<{page(max(0, offset - limit))}>; rel="prev"; type="{JSON}"')
    return response


def entity_response(payload: dict[str, Any] | list[dict[str, Any]], media: str, ctx: ActiveContext,
                    headers: dict[str, str] | None = None) -> Response:
    """Entities in the negotiated shape: @context as a Link header (JSON) or in each entity (JSON-LD)."""
    headers = dict(headers or {})
    if media == JSON_LD:
        items = payload if isinstance(payload, list) else [payload]
        for item in items:
            item["@context"] = ctx.echo
    elif isinstance(ctx.echo, str):
        headers["Link"] = context_link(ctx.echo)
    return Response(dumps_bytes(payload), headers=headers, media_type=media)


def context_link(url: str) -> str:
    """The `Link` header naming an @context; a URL with non-ASCII characters (an IRI from a body @context) is
    percent-encoded so that the header can be written at all."""
    return f'<{quote(url, safe=_URL_SAFE)}>; rel="{LINK_REL}"; type="{JSON_LD}"'


# -- query parameters ---------------------------------------------------------------------------------
_SQLITE_INT_MAX = 2**63 - 1


def int_param(params: QueryParams, name: str, default: int, maximum: int | None = None) -> int:
    """A non-negative integer URI parameter; 400 BadRequestData when malformed or above `maximum`."""
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit() alone also takes '²' and other Unicode digits
        raise bad_request(f"Invalid value for URI parameter {name}", f"{raw!r} is not a non-negative integer")
    if len(raw) > 19 or int(raw) > _SQLITE_INT_MAX:  # SQLite INTEGER is 64-bit: larger would be a 500
        maximum = _SQLITE_INT_MAX if maximum is None else maximum
        raise bad_request(f"Invalid value for URI parameter {name}", f"{raw[:40]} is above the maximum {maximum}")
    value = int(raw)
    if maximum is not None and value > maximum:
        raise bad_request(f"Invalid value for URI parameter {name}", f"{value} is above the maximum {maximum}")
    return value


def list_param(params: QueryParams, name: str) -> list[str] | None:
    """A comma-separated URI parameter as a list (None when absent; empty items dropped)."""
    raw = params.get(name)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise bad_request(f"Empty URI parameter {name}")
    return items


def bool_param(params: QueryParams, name: str) -> bool:
    """A `true`/`false` URI parameter (absent = false)."""
    raw = params.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise bad_request(f"Invalid value for URI parameter {name}", f"{raw!r}: use true or false")
    return raw == "true"
