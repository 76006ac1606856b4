"""@context management (ETSI GS CIM 009 V1.8.1 §5.13, bound in §6.29-§6.30): `/jsonldContexts`.

- POST /jsonldContexts: the broker hosts a context document (`{"@context": …}`); 201 with its URL in Location.
  Requests may then name that URL in a Link header or @context; it is never fetched, whatever host name they use;
- GET /jsonldContexts[?kind=hosted|cached&details=true]: the contexts kept, as URLs or with their details;
- GET /jsonldContexts/{contextId}: the document (contextId: a hosted context's id, or a cached context's URL);
- DELETE /jsonldContexts/{contextId}[?reload=true]: a hosted context is deleted; a cached one is forgotten (and
  fetched again now with reload=true, else when next named).
Cached contexts are the ones fetched for requests; the vendored ones (core, Smart Data Models) are built in.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._api import BASE, broker_of, endpoint
from ._context import HOSTED_PREFIX, hosted_key
from ._errors import NgsiLdError, bad_request
from ._http import JSON_LD, bool_param, read_body
from ._json import dumps_bytes

_KINDS = {"hosted": "Hosted", "cached": "Cached", "implicitlycreated": "ImplicitlyCreated"}


def _hosted_url(request: Request, local_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}{BASE}/jsonldContexts/{local_id}"


def _entries(request: Request) -> list[dict[str, Any]]:
    out = []
    for key, stored_at in broker_of(request).store.context_documents():
        if key.startswith(HOSTED_PREFIX):
            local_id = key[len(HOSTED_PREFIX):]
            out.append({"URL": _hosted_url(request, local_id), "localId": local_id, "kind": "Hosted",
                        "createdAt": stored_at})
        else:
            out.append({"URL": key, "localId": key, "kind": "Cached", "createdAt": stored_at})
    return out


def _context_id(request: Request) -> str:
    """The path's contextId; a cached context's URL may come with its slashes percent-encoded or not."""
    return request.path_params["context_id"].replace("%2F", "/").replace("%2f", "/")


def _key_of(request: Request, context_id: str) -> str:
    """The store key a contextId names: a hosted context's id or URL, or a cached context's URL."""
    hosted = hosted_key(context_id) if context_id.startswith(("http://", "https://")) else None
    if hosted is not None:
        return hosted
    return context_id if context_id.startswith(("http://", "https://")) else HOSTED_PREFIX + context_id


@endpoint
async def add_context(request: Request) -> Response:
    """POST /jsonldContexts (§5.13.2): host the body's @context; 201 + Location."""
    body = await read_body(request)
    document = body.json
    if not isinstance(document, dict) or "@context" not in document:
        raise bad_request("Invalid @context document", 'the body must be a JSON object with an "@context" member')
    context = document["@context"]
    if not isinstance(context, dict | list | str):
        raise bad_request("Invalid @context document", "@context must be an object, an array or a URL")
    broker = broker_of(request)
    await broker.contexts.activate(context)  # a context that cannot be used is refused now, not at first use
    local_id = uuid.uuid4().hex
    await run_in_threadpool(broker.store.put_context_document, HOSTED_PREFIX + local_id, {"@context": context})
    return Response(status_code=201, headers={"Location": f"{BASE}/jsonldContexts/{local_id}"})


@endpoint
async def list_contexts(request: Request) -> Response:
    """GET /jsonldContexts (§5.13.3): the URLs of the contexts kept, or their details."""
    kind = request.query_params.get("kind")
    if kind is not None and kind.lower() not in _KINDS:
        raise bad_request("Invalid value for URI parameter kind", f"{kind!r}: use Hosted, Cached or ImplicitlyCreated")
    entries = [e for e in _entries(request) if kind is None or e["kind"] == _KINDS[kind.lower()]]
    if bool_param(request.query_params, "details"):
        return JSONResponse(entries)
    return JSONResponse([e["URL"] for e in entries])


@endpoint
async def serve_context(request: Request) -> Response:
    """GET /jsonldContexts/{contextId} (§5.13.4): the context document, or its details with details=true."""
    context_id = _context_id(request)
    key = _key_of(request, context_id)
    if bool_param(request.query_params, "details"):
        for entry in _entries(request):
            if _key_of(request, entry["localId"] if entry["kind"] == "Hosted" else entry["URL"]) == key:
                return JSONResponse(entry)
        raise NgsiLdError("ResourceNotFound", "@context not found", context_id)
    document = broker_of(request).store.get_context_document(key)
    if document is None:
        raise NgsiLdError("ResourceNotFound", "@context not found", context_id)
    return Response(dumps_bytes(document), media_type=JSON_LD)


@endpoint
async def delete_context(request: Request) -> Response:
    """DELETE /jsonldContexts/{contextId} (§5.13.5): delete a hosted context, forget (or reload) a cached one."""
    broker = broker_of(request)
    context_id = _context_id(request)
    key = _key_of(request, context_id)
    reload = bool_param(request.query_params, "reload")
    if reload and key.startswith(HOSTED_PREFIX):
        raise bad_request("reload of a hosted @context", "reload=true applies to cached contexts only")
    if not await run_in_threadpool(broker.store.delete_context_document, key):
        raise NgsiLdError("ResourceNotFound", "@context not found", context_id)
    url = _hosted_url(request, key[len(HOSTED_PREFIX):]) if key.startswith(HOSTED_PREFIX) else key
    broker.contexts.forget(url)
    if reload:
        await broker.contexts.activate(url)  # fetched and cached again; 503 when it cannot be
    return Response(status_code=204)
