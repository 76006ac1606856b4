"""The policy enforcement point: a reverse proxy in front of an NGSI-LD broker or the IoT Agent's north API.

Every request: bearer token → Identity (401 without a valid one) → action from method and path (403 when the
role may not) → for scope `own`, ids in the path and in write bodies must be the caller's (403) → forwarded over
HTTP to the upstream (the embedded broker or Orion-LD alike: nothing of the broker is imported) → bodies that list
entities, temporal entities, subscriptions or devices are filtered to what the caller may see, and counts that
would reveal others' entities are dropped. Ownership of an entity is its id or an owner relationship
(`detectedBy` of an Anomaly): access/_scope.py.

Notifications: a subscription created through the PEP by a caller of scope `own` gets its endpoint replaced by
the PEP's relay URL (`/pep/relay/<key>`, key random); the relay keeps the caller's entities of each
notification and forwards it to the original endpoint, so a foreign entity never reaches a member's receiver.
Listing subscriptions shows a caller only those they created, with their own endpoint put back.

The app is raw ASGI (no framework router) and forwards through access/_upstream.py: a caller of scope `all`
(admin, control centre, manager) costs one cached token check, one regex classification and the hop itself; the
body is neither parsed nor re-encoded. Only answers that must be filtered are parsed (orjson).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson

from access._metrics import PepMetrics
from access._policy import Policy, classify
from access._scope import (
    OWNER_RELATIONSHIPS,
    filter_entities,
    owns_entity,
    write_attribute_refusal,
    write_type_refusal,
)
from access._tokens import Identity, TokenError, TokenVerifier
from access._upstream import Answer, Upstream, UpstreamError

log = logging.getLogger(__name__)

_HOP_HEADERS = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"host",
                b"content-length", b"authorization", b"proxy-authorization"}
_TENANT_HEADERS = (b"ngsild-tenant", b"fiware-service")
_COUNT_KEYS = {"entityCount", "attributeCount"}
_JSON = [(b"content-type", b"application/json")]


def problem(status: int, title: str, detail: str, kind: str) -> Answer:
    """NGSI-LD ProblemDetails (RFC 9457 shape, as ETSI GS CIM 009 §5.5.2 answers errors)."""
    headers = list(_JSON)
    if status == 401:
        headers.append((b"www-authenticate",
                        f'Bearer error="invalid_token", error_description="{detail}"'.encode("latin-1", "replace")))
    body = orjson.dumps({"type": f"urn:energytwin:errors:{kind}", "title": title, "status": status,
                         "detail": detail})
    return Answer(status, headers, body)


@dataclass
class Call:
    """One incoming request as the PEP sees it (ASGI scope + body)."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]  # names lower-cased (ASGI)
    body: bytes

    def header(self, name: bytes) -> str | None:
        value = next((v for k, v in self.headers if k == name), None)
        return None if value is None else value.decode("latin-1")

    raw_path: bytes | None = None  # as sent (percent-encoding kept), forwarded unchanged
    caller: str = ""  # "subject (role)" once the token is verified: refusals name who was refused

    @property
    def target(self) -> str:
        path = self.raw_path.decode("latin-1") if self.raw_path else self.path
        return path + ("?" + self.query.decode("latin-1") if self.query else "")


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
    owner_relationships: tuple[str, ...] = OWNER_RELATIONSHIPS
    # The actions this PEP forwards at all (None: every action): a PEP in front of Mintaka forwards
    # temporal.read only, whatever a role may do elsewhere. Its own counters (pep.read) are always served.
    actions: frozenset[str] | None = None
    metrics: PepMetrics = field(default_factory=PepMetrics)
    _relays: dict[str, _Relay] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _forwarder: Upstream | None = None
    _client: httpx.AsyncClient | None = None  # notifications to the members' receivers

    def __post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        if self.state_file is not None and self.state_file.exists():
            for key, body in json.loads(self.state_file.read_text(encoding="utf-8")).items():
                ident = body["identity"]
                self._relays[key] = _Relay(body["owner"], body["target"], Identity(
                    ident["subject"], ident["role"], ident.get("member"), frozenset(ident.get("devices", ())),
                    frozenset(ident.get("cups", ())), ident.get("tenant")), body.get("subscription_id"))
        self.metrics.gauge("token_cache_entries", lambda: len(self.verifier._verified))
        self.metrics.gauge("relays", lambda: len(self._relays))

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
    def forwarder(self) -> Upstream:
        if self._forwarder is None:
            self._forwarder = Upstream(self.upstream)
        return self._forwarder

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30.0)
        return self._client

    async def aclose(self) -> None:
        if self._forwarder is not None:
            await self._forwarder.aclose()
        if self._client is not None:
            await self._client.aclose()

    # --- the request path ---

    def _identity(self, call: Call) -> Identity:
        scheme, _, token = (call.header(b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("no bearer token (send Authorization: Bearer <token>)", "missing")
        return self.verifier.verify(token.strip())

    def _refuse(self, status: int, reason: str, call: Call, label: str) -> Answer:
        """A 401/403 ProblemDetails; `reason` for the caller and the log, `label` (fixed) for the counters."""
        self.metrics.inc("requests_total", outcome="refused")
        self.metrics.inc("refused_total", status=str(status), reason=label)
        log.warning("refused %s %s%s: %d %s", call.method, call.path, f" for {call.caller}" if call.caller else "",
                    status, reason)
        if status == 401:
            return problem(401, "Unauthorized", reason, "Unauthorized")
        return problem(403, "Forbidden", reason, "Forbidden")

    async def handle(self, call: Call) -> Answer:
        if call.path.startswith("/pep/relay/"):
            return await self.relay(call, call.path.removeprefix("/pep/relay/"))
        try:
            identity = self._identity(call)
        except TokenError as exc:
            return self._refuse(401, exc.reason, call, f"token_{exc.kind}")
        call.caller = f"{identity.subject} ({identity.role})"
        named = call.header(b"ngsild-tenant") or call.header(b"fiware-service")
        if identity.tenant is not None and named is not None and named != identity.tenant:
            return self._refuse(403, f"this token is for tenant {identity.tenant!r}, not {named!r}", call, "tenant")
        rule = self.policy.rule(identity.role)
        found = classify(call.method, call.path)
        if found is None:
            return self._refuse(403, f"{call.method} {call.path} is not an endpoint this access layer opens", call,
                                "unknown_endpoint")
        action, ids = found
        if self.actions is not None and action not in self.actions and action != "pep.read":
            return self._refuse(403, f"this access layer forwards only {', '.join(sorted(self.actions))}; "
                                f"{call.method} {call.path} is {action}, served elsewhere", call, "not_forwarded")
        if rule is None or not rule.allows(action):
            return self._refuse(403, f"role {identity.role!r} may not {action}", call, "role")
        if rule.write_types is not None and action in ("entities.write", "temporal.write"):
            refusal = write_type_refusal(rule.write_types, ids.get("id"), call.body)
            if refusal:
                return self._refuse(403, refusal, call, "entity_type")
            if rule.write_attrs is not None:
                refusal = write_attribute_refusal(rule.write_attrs, rule.write_contexts, call.method, call.path,
                                                  [v.decode("latin-1") for k, v in call.headers if k == b"link"],
                                                  call.body)
                if refusal:
                    return self._refuse(403, refusal, call, "attribute")
        if action == "pep.read":  # the PEP's own counters: answered here, never forwarded
            self.metrics.inc("requests_total", outcome="metrics")
            return Answer(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
                          self.metrics.render().encode())
        if rule.scope == "all":
            return await self._forward(call, identity.tenant)
        return await self._scoped(call, identity, action, ids)

    async def _scoped(self, call: Call, identity: Identity, action: str, ids: dict[str, str]) -> Answer:
        """Scope `own`: check what the request names, forward, filter what comes back."""
        refusal = self._check_own(identity, action, ids, call.body)
        if refusal:
            return self._refuse(403, refusal, call, "not_own")
        if action == "subscriptions.write" and call.method == "POST":
            return await self._create_subscription(call, identity)
        if action.startswith("subscriptions") and "sid" in ids and not self._owns_subscription(identity, ids["sid"]):
            return self._refuse(403, "that subscription is not yours", call, "not_own")
        if action == "subscriptions.write" and call.method == "PATCH":
            call.body = self._rewrite_patch(ids["sid"], call.body)
        if action in ("entities.read", "temporal.read"):
            call.query = self._with_owner_attrs(call.query)
        upstream = await self._forward(call, identity.tenant)
        if call.method == "DELETE" and "sid" in ids and upstream.status < 300:
            self._forget_subscription(ids["sid"])  # its relay goes with it (204: no body to filter below)
        if upstream.status >= 300 or not upstream.body:
            return upstream
        by_relationship = "id" in ids and not identity.owns(ids["id"])
        try:
            data = orjson.loads(upstream.body)
        except orjson.JSONDecodeError:
            return (self._refuse(403, "the answer cannot be checked", call, "unverifiable") if by_relationship
                    else upstream)
        if by_relationship:  # a path naming an entity that may be the caller's through a relationship
            if not (isinstance(data, dict) and owns_entity(identity, data, self.owner_relationships)):
                return self._refuse(403, "that entity is not yours", call, "not_own")
        else:
            data = self._filter(identity, action, data)
        headers = [(k, v) for k, v in upstream.headers if k != b"ngsild-results-count"]
        return Answer(upstream.status, headers, orjson.dumps(data))

    async def _forward(self, call: Call, tenant: str | None = None, body: bytes | None = None) -> Answer:
        headers = [(k, v) for k, v in call.headers if k not in _HOP_HEADERS]
        if tenant is not None and not any(k in _TENANT_HEADERS for k, _ in headers):
            name = b"fiware-service" if call.path.startswith("/iot") else b"ngsild-tenant"
            headers.append((name, tenant.encode("latin-1")))
        started = time.perf_counter()
        try:
            answer = await self.forwarder.request(call.method, call.target, headers,
                                                  call.body if body is None else body)
        finally:
            self.metrics.upstream_seconds.observe(time.perf_counter() - started)
        self.metrics.inc("requests_total", outcome="forwarded")
        self.metrics.inc("responses_total", code=f"{answer.status // 100}xx")
        answer.headers = [(k, v) for k, v in answer.headers if k not in _HOP_HEADERS]
        return answer

    # --- scope `own` ---

    def _with_owner_attrs(self, query: bytes) -> bytes:
        """A projection (`attrs=`) keeps the owner relationships, or the answer could not be checked."""
        if b"attrs=" not in query:
            return query
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        out = []
        for key, value in pairs:
            if key == "attrs" and value:
                names = value.split(",")
                value = ",".join(names + [r for r in self.owner_relationships if r not in names])
            out.append((key, value))
        return urlencode(out, safe=",:/").encode("latin-1")

    def _check_own(self, identity: Identity, action: str, ids: dict[str, str], body: bytes) -> str | None:
        entity_id = ids.get("id")
        if entity_id and not identity.owns(entity_id) and action not in ("entities.read", "temporal.read"):
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

    def _filter(self, identity: Identity, action: str, data: Any) -> Any:
        if action in ("entities.read", "temporal.read"):
            return filter_entities(identity, data, self.owner_relationships)
        if action.startswith("subscriptions"):
            if isinstance(data, list):
                return [self._own_view(s) for s in data if isinstance(s, dict)
                        and self._owns_subscription(identity, str(s.get("id", "")))]
            return self._own_view(data) if isinstance(data, dict) else data
        if action == "types.read":
            return _strip_counts(data)
        return data

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

    def _keep_owner_attrs(self, notification: dict[str, Any]) -> None:
        """A subscription notifying chosen attributes keeps the owner relationships, so the relay can check."""
        names = notification.get("attributes")
        if isinstance(names, list) and names:
            notification["attributes"] = names + [r for r in self.owner_relationships if r not in names]

    def _rewrite_patch(self, sid: str, body: bytes) -> bytes:
        try:
            data = json.loads(body)
        except ValueError:
            return body
        notification = data.get("notification") if isinstance(data, dict) else None
        if isinstance(notification, dict):
            self._keep_owner_attrs(notification)
            endpoint = notification.get("endpoint")
            if isinstance(endpoint, dict) and "uri" in endpoint:
                relay = next(r for r in self._relays.values() if r.subscription_id == sid)
                relay.target = str(endpoint["uri"])
                endpoint["uri"] = next(f"{self.relay_base_url.rstrip('/')}/pep/relay/{k}"
                                       for k, r in self._relays.items() if r is relay)
                with self._lock:
                    self._save()
        return json.dumps(data).encode()

    async def _create_subscription(self, call: Call, identity: Identity) -> Answer:
        try:
            data = json.loads(call.body)
            endpoint = data["notification"]["endpoint"]
            target = str(endpoint["uri"])
        except (ValueError, KeyError, TypeError):
            return await self._forward(call, identity.tenant)  # the broker explains what is wrong with it
        if not target.startswith(("http://", "https://")):
            return self._refuse(403, "through the access layer, notifications go to http(s) endpoints only", call,
                                "notification_endpoint")
        self._keep_owner_attrs(data["notification"])
        relay_url = self._new_relay(identity, target)
        endpoint["uri"] = relay_url
        upstream = await self._forward(call, identity.tenant, json.dumps(data).encode())
        key = relay_url.rsplit("/", 1)[-1]
        with self._lock:
            if upstream.status == 201:
                location = (upstream.header(b"location") or b"").decode("latin-1")
                self._relays[key].subscription_id = location.rsplit("/", 1)[-1]
                self._save()
            else:
                self._relays.pop(key, None)
        return upstream

    async def relay(self, call: Call, key: str) -> Answer:
        self.metrics.inc("requests_total", outcome="relay")
        relay = self._relays.get(key)
        if relay is None:
            self.metrics.inc("relay_failures_total", reason="unknown_relay")
            return problem(404, "Not found", "no such notification relay", "ResourceNotFound")
        try:
            note = json.loads(call.body)
        except ValueError:
            return problem(400, "Bad notification", "the notification is not JSON", "BadRequestData")
        data = note.get("data", []) if isinstance(note, dict) else []
        entities = [e for e in data if owns_entity(relay.identity, e, self.owner_relationships)]
        self.metrics.inc("notification_entities_dropped_total", len(data) - len(entities))
        if not entities:
            return Answer(204, [], b"")
        note["data"] = entities
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in call.headers
                   if k not in _HOP_HEADERS and k != b"ngsild-results-count"]
        try:
            answer = await self.client.post(relay.target, content=json.dumps(note).encode(), headers=headers)
        except httpx.HTTPError as exc:
            self.metrics.inc("relay_failures_total", reason="receiver_unreachable")
            log.warning("notification relay to %s failed: %s", relay.target, exc)
            return problem(502, "Receiver unreachable", str(exc), "InternalError")
        self.metrics.inc("notifications_relayed_total")
        return Answer(answer.status_code, [], b"")


def _strip_counts(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip_counts(v) for k, v in data.items() if k not in _COUNT_KEYS}
    if isinstance(data, list):
        return [_strip_counts(v) for v in data]
    return data


def build_app(pep: Pep) -> Any:
    """The PEP as a raw ASGI app (HTTP and lifespan)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await pep.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        call = Call(scope["method"], scope["path"], scope.get("query_string", b""), scope["headers"],
                    b"".join(chunks), scope.get("raw_path"))
        started = time.perf_counter()
        try:
            answer = await pep.handle(call)
        except UpstreamError as exc:
            pep.metrics.inc("upstream_errors_total")
            pep.metrics.inc("requests_total", outcome="upstream_error")
            log.error("upstream %s unreachable: %s", pep.upstream, exc)
            answer = problem(502, "Upstream unreachable", str(exc), "InternalError")
        pep.metrics.request_seconds.observe(time.perf_counter() - started)
        headers = [(k, v) for k, v in answer.headers if k != b"content-length"]
        headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    return app
