"""Authenticated notifications, broker → page: a secret in the page's notification endpoint.

The page subscribes at the broker with its own endpoint (`/notify`) and the broker posts every matching entity
there. Notifications carry no bearer token (NGSI-LD brokers send none), so without more anyone who reaches the
page's port could post a forged reading or power-quality event that every viewer's live stream would show. The
page therefore puts a random secret in the endpoint it subscribes with, `.../notify?key=<secret>` (the query
string of the endpoint URI is kept by Orion-LD and by the embedded broker), and refuses a notification without
it (401, NGSI-LD ProblemDetails shape). A broker that supports `receiverInfo` (ETSI GS CIM 009 v1.6+) may send
it as the `X-Energytwin-Notify-Key` header instead.

The secret is new at each start of the page: the page's subscription check replaces a subscription whose
endpoint differs, so the previous secret stops working at once. It is visible to whoever may list the page's
subscriptions at the broker (through the access layer: roles of scope `all`; members see only their own
subscriptions), which is why it authenticates notifications only and grants nothing else.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ._problem import MEDIA_TYPE, problem_body

log = logging.getLogger(__name__)

PARAM = "key"
HEADER = b"x-energytwin-notify-key"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def keyed_endpoint(url: str, key: str) -> str:
    """`url` with the secret in its query string (other query parameters kept)."""
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith(f"{PARAM}="))
    query = f"{query}&{PARAM}={key}" if query else f"{PARAM}={key}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@dataclass
class NotifyKeyMiddleware:
    """ASGI: a POST to one of `paths` passes only with the secret (query parameter or header)."""

    app: Callable[..., Any]
    key: str
    paths: tuple[str, ...] = ("/notify",)
    echoing: tuple[str, ...] = ("/health",)  # open endpoints that show the notification endpoint: key redacted
    refused: int = 0

    def _redacting(self, send: Any) -> Any:
        key = self.key.encode()
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def redacted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)  # held until the whole (small) body is known: its length changes
                return
            if message["type"] != "http.response.body" or not start:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks).replace(key, b"<notify-key>")
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        return redacted

    def _carries_key(self, scope: dict[str, Any]) -> bool:
        given = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == HEADER]
        given += parse_qs(scope.get("query_string", b"").decode("latin-1")).get(PARAM, [])
        return any(hmac.compare_digest(g.encode(), self.key.encode()) for g in given)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"].rstrip("/") or "/" if scope["type"] == "http" else ""
        if path in self.echoing:
            await self.app(scope, receive, self._redacting(send))
            return
        if scope["type"] != "http" or path not in self.paths or self._carries_key(scope):
            await self.app(scope, receive, send)
            return
        self.refused += 1
        log.warning("refused a notification to %s from %s: no or wrong notification key (refused %d so far)",
                    scope["path"], (scope.get("client") or ("?",))[0], self.refused)
        body = json.dumps(problem_body(401, "Unauthorized",
                                       "notifications to this page need the key of its subscription")).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
