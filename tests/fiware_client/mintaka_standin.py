"""A Mintaka stand-in: the NGSI-LD temporal *retrieval* API under Mintaka's root (`/temporal/entities`), answered
by the embedded broker's own temporal API (ETSI GS CIM 009 §6.18–6.19, the same operations Mintaka implements
over Orion-LD's TRoE database; https://github.com/FIWARE/mintaka#api-remarks).

What it checks is the client side of the "mintaka" history backend: the other root, the tenant header passed
through, and that nothing but GETs is ever sent (Mintaka serves reads only; writes go to Orion-LD).
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_PASSED = ("accept", "link", "ngsild-tenant")


class MintakaStandIn:
    """Forwards GET /temporal/entities[/{id}] to `broker_url`/ngsi-ld/v1/temporal/...; records every request."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url.rstrip("/")
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.url = ""

    def app(self) -> Starlette:
        async def temporal(request: Request) -> Response:
            self.requests.append((request.method, request.url.path))
            if request.method != "GET":
                return JSONResponse({"type": "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported",
                                     "title": "Mintaka serves temporal retrieval only"}, status_code=405)
            tail = request.url.path.removeprefix("/temporal")
            headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED}
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"{self.broker_url}/ngsi-ld/v1/temporal{tail}",
                                          params=request.query_params.multi_items(), headers=headers)
            kept = {k: v for k, v in answer.headers.items()
                    if k.lower() in ("content-type", "content-range", "link", "ngsild-results-count")}
            return Response(answer.content, status_code=answer.status_code, headers=kept)

        methods = ["GET", "POST", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/temporal/entities", temporal, methods=methods),
                                 Route("/temporal/entities/{entity_id:path}", temporal, methods=methods)])
