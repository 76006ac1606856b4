"""The policy enforcement point: a reverse proxy in front of an NGSI-LD broker or the IoT Agent's north API.

Every request: bearer token → Identity (401 without a valid one) → action from method and path (403 when the
role may not) → for scope `own`, ids in the path and in write bodies must be the caller's (403) → forwarded over
HTTP to the upstream (the embedded broker or Orion-LD alike: nothing of the broker is imported) → bodies that list
entities, temporal entities, subscriptions or devices are filtered to what the caller may see, and counts that
would reveal others' entities are dropped.

Notifications: a subscription created through the PEP by a caller of scope `own` gets its endpoint replaced by
the PEP's relay URL (`/pep/relay/<key>`, key random); the relay keeps the caller's entities of each
notification and forwards it to the original endpoint, so a foreign entity never reaches a member's receiver.
Listing subscriptions shows a caller only those they created, with their own endpoint put back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from access._policy import Policy, classify
from access._tokens import Identity, TokenError, TokenVerifier

log = logging.getLogger(__name__)

PROBLEM = "application/json"
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                "content-length", "authorization", "proxy-authorization"}
_COUNT_KEYS = {"entityCount", "attributeCount"}


def problem(status: int, title: str, detail: str, kind: str) -> JSONResponse:
    """NGSI-LD ProblemDetails (RFC 9457 shape, as ETSI GS CIM 009 §5.5.2 answers errors)."""
    headers = {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'} \
        if status == 401 else None
    return JSONResponse({"type": f"urn:energytwin:errors:{kind}", "title": title, "status": status,
                         "detail": detail}, status_code=status, headers=headers)


@dataclass
class _Relay:
    owner: str
    target: str
    identity: Identity
    subscription_id: str | None = None


@dataclass
class Pep:
    upstream: str
    verifier: TokenVerifier
    policy: Policy
    relay_base_url: str = ""  # how the upstream reaches this PEP (for notifications)
    state_file: Path | None = None
    counters: Counter = field(default_factory=Counter)
    _relays: dict[str, _Relay] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        if self.state_file is not None and self.state_file.exists():
            for key, body in json.loads(self.state_file.read_text(encoding="utf-8")).items():
                ident = body["identity"]
                self._relays[key] = _Relay(body["owner"], body["target"], Identity(
                    ident["subject"], ident["role"], ident.get("member"), frozenset(ident.get("devices", ())),
                    frozenset(ident.get("cups", ())), ident.get("tenant")), body.get("subscription_id"))

    def _save(self) -> None:
        if self.state_file is None:
            return
        body = {k: {"owner": r.owner, "target": r.target, "subscription_id": r.subscription_id,
                    "identity": {"subject": r.identity.subject, "role": r.identity.role,
                                 "member": r.identity.member, "devices": sorted(r.identity.devices),
                                 "cups": sorted(r.identity.cups), "tenant": r.identity.tenant}}
                for k, r in self._relays.items()}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        tmp.replace(self.state_file)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=200))
        return self._client

    # --- the request path ---

    def _identity(self, request: Request) -> Identity:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("no bearer token (send Authorization: Bearer <token>)")
        return self.verifier.verify(token.strip())

    def _refuse(self, status: int, reason: str, request: Request) -> JSONResponse:
        self.counters[f"refused_{status}"] += 1
        log.warning("refused %s %s: %d %s", request.method, request.url.path, status, reason)
        if status == 401:
            return problem(401, "Unauthorized", reason, "Unauthorized")
        return problem(403, "Forbidden", reason, "Forbidden")

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        if path.startswith("/pep/relay/"):
            return await self.relay(request, path.removeprefix("/pep/relay/"))
        try:
            identity = self._identity(request)
        except TokenError as exc:
            return self._refuse(401, exc.reason, request)
        named = request.headers.get("ngsild-tenant") or request.headers.get("fiware-service")
        if identity.tenant is not None and named is not None and named != identity.tenant:
            return self._refuse(403, f"this token is for tenant {identity.tenant!r}, not {named!r}", request)
        rule = self.policy.rule(identity.role)
        found = classify(request.method, path)
        if found is None:
            return self._refuse(403, f"{request.method} {path} is not an endpoint this access layer opens", request)
        action, ids = found
        if rule is None or not rule.allows(action):
            return self._refuse(403, f"role {identity.role!r} may not {action}", request)
        scope = rule.scope
        body = await request.body()
        if scope != "all":
            refusal = self._check_own(identity, action, ids, body, request)
            if refusal:
                return self._refuse(403, refusal, request)
            if action == "subscriptions.write" and request.method == "POST":
                return await self._create_subscription(request, identity, body)
            if action.startswith("subscriptions") and "sid" in ids and not self._owns_subscription(identity,
                                                                                                    ids["sid"]):
                return self._refuse(403, "that subscription is not yours", request)
            if action == "subscriptions.write" and request.method == "PATCH":
                body = self._rewrite_patch(identity, ids["sid"], body)
        upstream = await self._forward(request, body, identity.tenant)
        self.counters["forwarded"] += 1
        if scope == "all" or upstream.status_code >= 300 or not upstream.content:
            return self._respond(upstream, upstream.content)
        filtered = self._filter(identity, action, ids, upstream)
        if request.method == "DELETE" and "sid" in ids:
            self._forget_subscription(ids["sid"])
        return self._respond(upstream, filtered, drop_counts=True)

    async def _forward(self, request: Request, body: bytes, tenant: str | None = None) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS]
        if tenant is not None and not any(k.lower() in ("ngsild-tenant", "fiware-service") for k, _ in headers):
            headers.append(("fiware-service" if request.url.path.startswith("/iot") else "NGSILD-Tenant", tenant))
        url = self.upstream + request.url.path
        return await self.client.request(request.method, url, params=request.query_params.multi_items(),
                                         headers=headers, content=body)

    @staticmethod
    def _respond(upstream: httpx.Response, content: bytes, drop_counts: bool = False) -> Response:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
                   and k.lower() != "content-encoding"
                   and not (drop_counts and k.lower() == "ngsild-results-count")}
        return Response(content, status_code=upstream.status_code, headers=headers)

    # --- scope `own` ---

    def _check_own(self, identity: Identity, action: str, ids: dict[str, str], body: bytes,
                   request: Request) -> str | None:
        entity_id = ids.get("id")
        if entity_id and not identity.owns(entity_id):
            return "that entity is not yours"
        if action in ("entities.write", "temporal.write") and body:
            try:
                data = json.loads(body)
            except ValueError:
                return None  # the upstream answers the malformed body itself
            items = data if isinstance(data, list) else [data]
            for item in items:
                item_id = item.get("id") if isinstance(item, dict) else item if isinstance(item, str) else None
                if item_id is not None and not identity.owns(str(item_id)):
                    return "a write names an entity that is not yours"
        return None

    def _filter(self, identity: Identity, action: str, ids: dict[str, str], upstream: httpx.Response) -> bytes:
        try:
            data = orjson.loads(upstream.content)
        except orjson.JSONDecodeError:
            return b"" if action not in ("version",) else upstream.content
        if action in ("entities.read", "temporal.read"):
            if isinstance(data, list):
                data = [e for e in data if isinstance(e, dict) and identity.owns(str(e.get("id", "")))]
            elif isinstance(data, dict) and "id" in data and not identity.owns(str(data["id"])):
                data = {}
        elif action.startswith("subscriptions"):
            if isinstance(data, list):
                data = [self._own_view(s) for s in data if isinstance(s, dict)
                        and self._owns_subscription(identity, str(s.get("id", "")))]
            elif isinstance(data, dict):
                data = self._own_view(data)
        elif action == "types.read":
            data = _strip_counts(data)
        return orjson.dumps(data)

    # --- subscriptions and the notification relay ---

    def _owns_subscription(self, identity: Identity, sid: str) -> bool:
        return any(r.subscription_id == sid and r.owner == identity.subject for r in self._relays.values())

    def _own_view(self, sub: dict[str, Any]) -> dict[str, Any]:
        relay = next((r for r in self._relays.values() if r.subscription_id == sub.get("id")), None)
        endpoint = (sub.get("notification") or {}).get("endpoint")
        if relay is not None and isinstance(endpoint, dict):
            endpoint["uri"] = relay.target
        return sub

    def _forget_subscription(self, sid: str) -> None:
        with self._lock:
            for key in [k for k, r in self._relays.items() if r.subscription_id == sid]:
                del self._relays[key]
            self._save()

    def _new_relay(self, identity: Identity, target: str) -> str:
        key = secrets.token_urlsafe(24)
        with self._lock:
            self._relays[key] = _Relay(identity.subject, target, identity)
        return f"{self.relay_base_url.rstrip('/')}/pep/relay/{key}"

    def _rewrite_patch(self, identity: Identity, sid: str, body: bytes) -> bytes:
        try:
            data = json.loads(body)
        except ValueError:
            return body
        endpoint = (data.get("notification") or {}).get("endpoint") if isinstance(data, dict) else None
        if isinstance(endpoint, dict) and "uri" in endpoint:
            relay = next(r for r in self._relays.values() if r.subscription_id == sid)
            relay.target = str(endpoint["uri"])
            endpoint["uri"] = next(f"{self.relay_base_url.rstrip('/')}/pep/relay/{k}"
                                   for k, r in self._relays.items() if r is relay)
            with self._lock:
                self._save()
        return json.dumps(data).encode()

    async def _create_subscription(self, request: Request, identity: Identity, body: bytes) -> Response:
        try:
            data = json.loads(body)
            endpoint = data["notification"]["endpoint"]
            target = str(endpoint["uri"])
        except (ValueError, KeyError, TypeError):
            upstream = await self._forward(request, body, identity.tenant)  # the broker explains what is wrong with it
            return self._respond(upstream, upstream.content)
        if not target.startswith(("http://", "https://")):
            return self._refuse(403, "through the access layer, notifications go to http(s) endpoints only",
                                request)
        relay_url = self._new_relay(identity, target)
        endpoint["uri"] = relay_url
        upstream = await self._forward(request, json.dumps(data).encode(), identity.tenant)
        key = relay_url.rsplit("/", 1)[-1]
        with self._lock:
            if upstream.status_code == 201:
                self._relays[key].subscription_id = upstream.headers.get("location", "").rsplit("/", 1)[-1]
                self._save()
            else:
                self._relays.pop(key, None)
        return self._respond(upstream, upstream.content)

    async def relay(self, request: Request, key: str) -> Response:
        relay = self._relays.get(key)
        if relay is None:
            self.counters["relay_unknown"] += 1
            return problem(404, "Not found", "no such notification relay", "ResourceNotFound")
        try:
            note = json.loads(await request.body())
        except ValueError:
            return problem(400, "Bad notification", "the notification is not JSON", "BadRequestData")
        entities = [e for e in note.get("data", []) if isinstance(e, dict)
                    and relay.identity.owns(str(e.get("id", "")))]
        dropped = len(note.get("data", [])) - len(entities)
        self.counters["notification_entities_dropped"] += dropped
        if not entities:
            return Response(status_code=204)
        note["data"] = entities
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in _HOP_HEADERS and k.lower() != "ngsild-results-count"}
        try:
            answer = await self.client.post(relay.target, content=json.dumps(note).encode(), headers=headers)
        except httpx.HTTPError as exc:
            self.counters["relay_failed"] += 1
            log.warning("notification relay to %s failed: %s", relay.target, exc)
            return problem(502, "Receiver unreachable", str(exc), "InternalError")
        self.counters["notifications_relayed"] += 1
        return Response(status_code=answer.status_code)


def _strip_counts(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip_counts(v) for k, v in data.items() if k not in _COUNT_KEYS}
    if isinstance(data, list):
        return [_strip_counts(v) for v in data]
    return data


def build_app(pep: Pep) -> Starlette:
    async def endpoint(request: Request) -> Response:
        try:
            return await pep.handle(request)
        except httpx.HTTPError as exc:
            pep.counters["upstream_failed"] += 1
            log.error("upstream %s unreachable: %s", pep.upstream, exc)
            return problem(502, "Upstream unreachable", f"{pep.upstream}: {exc}", "InternalError")

    methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if pep._client is not None:
            await pep._client.aclose()

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)], lifespan=lifespan)
