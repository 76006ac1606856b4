"""QuantumLeap's query API as its specification documents it, over an in-memory table, on a real HTTP server.

QuantumLeap itself needs CrateDB (a JVM service) and cannot run here; this stand-in answers the paths, parameters,
shapes and status codes of `specification/quantumleap.yml` (orchestracities/ngsi-timeseries-api) so the client is
tested over real sockets against the documented behaviour: `fromDate`/`toDate` inclusive, `lastN`, `limit`/`offset`,
`aggrMethod` with `aggrPeriod` bucketing at calendar boundaries on numeric attributes only (index = a moment in the
bucket: its start here), 404 "No records were found for such query.", tenancy by `Fiware-Service` and
`Fiware-ServicePath`. The fixtures under fixtures/quantumleap/ are the spec's examples in our terms.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from twin_service.mqtt_server import free_port

_PERIOD_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
NOT_FOUND = {"error": "Not Found", "description": "No records were found for such query."}


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ql_index(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]  # naive UTC, as QuantumLeap answers


@dataclass
class Row:
    entity_id: str
    entity_type: str
    time_index: datetime
    attrs: dict[str, Any]


@dataclass
class QuantumLeapStandIn:
    rows: dict[tuple[str, str], list[Row]] = field(default_factory=dict)  # (service, path) -> rows
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def insert(self, service: str, entity_id: str, entity_type: str, at: str, attrs: dict[str, Any],
               path: str = "/") -> None:
        self.rows.setdefault((service, path), []).append(Row(entity_id, entity_type, _parse(at), attrs))

    def _select(self, request: Request, *, entity_id: str | None = None, entity_type: str | None = None,
                attr: str | None = None) -> tuple[list[Row], dict[str, str]] | JSONResponse:
        params = dict(request.query_params)
        self.requests.append((request.url.path, params, {k.lower(): v for k, v in request.headers.items()}))
        if "aggrPeriod" in params and "aggrMethod" not in params:
            return JSONResponse({"error": "Bad Request",
                                 "description": "aggrPeriod must be accompanied by an aggrMethod"}, 400)
        if params.get("aggrMethod", "avg") not in ("count", "sum", "avg", "min", "max"):
            return JSONResponse({"error": "Bad Request", "description": "invalid aggrMethod"}, 400)
        key = (request.headers.get("fiware-service", ""), request.headers.get("fiware-servicepath", "/"))
        rows = [r for r in self.rows.get(key, [])
                if (entity_id is None or r.entity_id == entity_id)
                and (entity_type is None or r.entity_type == entity_type)
                and (params.get("type") is None or r.entity_type == params["type"])
                and (attr is None or attr in r.attrs)]
        if "fromDate" in params:
            rows = [r for r in rows if r.time_index >= _parse(params["fromDate"])]
        if "toDate" in params:
            rows = [r for r in rows if r.time_index <= _parse(params["toDate"])]
        rows.sort(key=lambda r: r.time_index)
        if "lastN" in params:
            rows = rows[-int(params["lastN"]):]
        offset, limit = int(params.get("offset", 0)), min(int(params.get("limit", 10000)), 10000)
        return rows[offset:offset + limit], params

    @staticmethod
    def _aggregate(rows: list[Row], name: str, params: dict[str, str]) -> tuple[list[str], list[Any]]:
        method, period = params["aggrMethod"], params.get("aggrPeriod")
        buckets: dict[float, list[float]] = {}
        for row in rows:
            value = row.attrs.get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue  # "applied to all the numeric attributes ...; the rest ... ignored"
            seconds = row.time_index.timestamp()
            start = seconds - seconds % _PERIOD_S[period] if period else 0.0
            buckets.setdefault(start, []).append(float(value))
        index, values = [], []
        for start in sorted(buckets):
            data = buckets[start]
            result = {"count": len(data), "sum": sum(data), "avg": sum(data) / len(data), "min": min(data),
                      "max": max(data)}[method]
            index.append(_ql_index(datetime.fromtimestamp(start, UTC)))
            values.append(result)
        return index, values

    async def entity(self, request: Request) -> JSONResponse:
        selected = self._select(request, entity_id=request.path_params["entity_id"])
        if isinstance(selected, JSONResponse):
            return selected
        rows, params = selected
        if not rows:
            return JSONResponse(NOT_FOUND, 404)
        names = params["attrs"].split(",") if params.get("attrs") else sorted({k for r in rows for k in r.attrs})
        if "aggrMethod" in params:
            attributes, index = [], []
            for name in names:
                index, values = self._aggregate(rows, name, params)
                attributes.append({"attrName": name, "values": values})
        else:
            index = [_ql_index(r.time_index) for r in rows]
            attributes = [{"attrName": n, "values": [r.attrs.get(n) for r in rows]} for n in names]
        return JSONResponse({"entityId": request.path_params["entity_id"], "index": index,
                             "attributes": attributes})

    async def entities(self, request: Request) -> JSONResponse:
        """GET /v2/entities: the entities with history (id, type, index of their last record)."""
        selected = self._select(request)
        if isinstance(selected, JSONResponse):
            return selected
        rows, _ = selected
        if not rows:
            return JSONResponse(NOT_FOUND, 404)
        last: dict[str, Row] = {}
        for row in rows:
            last[row.entity_id] = row
        return JSONResponse([{"id": r.entity_id, "index": [_ql_index(r.time_index)], "type": r.entity_type}
                             for r in last.values()])

    async def type_attr(self, request: Request) -> JSONResponse:
        name = request.path_params["attr"]
        selected = self._select(request, entity_type=request.path_params["entity_type"], attr=name)
        if isinstance(selected, JSONResponse):
            return selected
        rows, _ = selected
        if not rows:
            return JSONResponse(NOT_FOUND, 404)
        entities: dict[str, dict[str, list[Any]]] = {}
        for row in rows:
            entry = entities.setdefault(row.entity_id, {"entityId": row.entity_id, "index": [], "values": []})
            entry["index"].append(_ql_index(row.time_index))
            entry["values"].append(row.attrs[name])
        return JSONResponse({"entityType": request.path_params["entity_type"], "attrName": name,
                             "entities": list(entities.values())})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v2/entities", self.entities),
            Route("/v2/entities/{entity_id:path}", self.entity),
            Route("/v2/types/{entity_type}/attrs/{attr}", self.type_attr),
            Route("/version", lambda request: JSONResponse({"version": "1.0.0"})),
        ])


class Running:
    """A stand-in (anything with `app()` and `url`: this one, tests/fiware_client/mintaka_standin.py) on uvicorn on a
    free loopback port (a context manager)."""

    def __init__(self, standin: Any) -> None:
        self.standin = standin
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(standin.app(), host="127.0.0.1", port=port,
                                                    log_level="warning"))
        standin.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Any:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start the {type(self.standin).__name__}")
            time.sleep(0.02)
        return self.standin

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
