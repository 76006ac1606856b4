"""Who may open the page: bearer token or session cookie -> identity -> role check -> what the caller sees.

The page cannot import the access layer (both are services of one layer), so the caller hands it a `PageAuth`:
`verify(token)` returns an identity (with `.subject`, `.role` and `.owns(device_id)`, as `access.Identity` has)
or raises; `login(user, secret)` returns a token (the local issuer's `energytwin users` credentials). The
session cookie holds that signed token itself: HttpOnly, SameSite=Strict, Secure unless told otherwise, so the
server keeps no session table and a restart logs nobody out. Browsers' EventSource cannot send an Authorization
header, so the SSE stream is authenticated by the cookie.

A pure ASGI middleware (not BaseHTTPMiddleware), so the SSE stream is not buffered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from ._problem import MEDIA_TYPE, problem_body

log = logging.getLogger(__name__)

COOKIE = "energytwin_session"
# Roles that see meters on the page; a member only their own (`sees_device`), the others every meter.
METER_ROLES = frozenset({"member", "manager", "control-centre", "admin"})
# The public role reaches the public screen and nothing else: no meter, no stream, no per-member endpoint.
PUBLIC_ROLE = "public"
PUBLIC_ROLE_PATHS = frozenset({"/", "/public", "/api/me", "/api/views/public"})
OPEN_PATHS = ("/login", "/logout", "/static/", "/health", "/notify")  # /notify: the broker's notifications


@dataclass
class PageAuth:
    verify: Callable[[str], Any]
    login: Callable[[str, str], str] | None = None
    secure_cookie: bool = True  # False only for plain-http loopback tests
    refused: int = 0  # counted, reported by /health

    def cookie(self, token: str, max_age_s: int = 12 * 3600) -> str:
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"

    @staticmethod
    def clear_cookie() -> str:
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"


def _token(scope: dict[str, Any]) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    raw = headers.get("cookie")
    if raw:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # noqa: BLE001 - a malformed cookie header is no session
            return None
        if COOKIE in jar:
            return jar[COOKIE].value or None
    return None


class AuthMiddleware:
    """Every page endpoint (HTML, JSON, SSE) checks the caller's role; sets `state.sees_device` for members.

    The public role reaches only PUBLIC_ROLE_PATHS; the views check their own roles (_views.VIEW_ROLES)."""

    def __init__(self, app: Any, auth: PageAuth):
        self.app = app
        self.auth = auth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        token = _token(scope)
        if token is None:
            await self._refuse(scope, send, 401, "no token: log in at /login or send Authorization: Bearer")
            return
        try:
            identity = self.auth.verify(token)
        except Exception as exc:  # noqa: BLE001 - TokenError or any verifier's refusal
            await self._refuse(scope, send, 401, f"invalid token: {getattr(exc, 'reason', exc)}")
            return
        if identity.role == PUBLIC_ROLE and scope["path"] in PUBLIC_ROLE_PATHS:
            pass  # the public screen: community aggregates only (_views.public_view)
        elif identity.role not in METER_ROLES:
            await self._refuse(scope, send, 403, f"role {identity.role!r} may not see meters on this page")
            return
        state = scope.setdefault("state", {})
        state["identity"] = identity
        state["sees_device"] = identity.owns if identity.role == "member" else None
        await self.app(scope, receive, send)

    async def _refuse(self, scope: dict[str, Any], send: Any, status: int, reason: str) -> None:
        self.auth.refused += 1
        log.info("page refused %s %s: %s", scope.get("method"), scope["path"], reason)
        wants_html = scope["method"] == "GET" and not scope["path"].startswith("/api/")
        if wants_html and status == 401:
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", b"/login"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        title = "Unauthorized" if status == 401 else "Forbidden"
        body = json.dumps(problem_body(status, title, reason)).encode()
        headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer error="invalid_token"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
