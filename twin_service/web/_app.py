"""The page service: static page, JSON snapshots from the twin, the live stream, /notify and /health.

Routes are listed once in ROUTES; broker errors become one JSON error shape (503) in one exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import socket
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fiware_client import BrokerError, async_history_reader, parse_time

from . import _views
from ._auth import AuthMiddleware, PageAuth
from ._der import der_json, period_s
from ._live import LiveHub, now_iso
from ._measures import measures_json
from ._problem import problem
from ._readings import event_json, reading_json
from ._revision import revision_view
from ._twin import PERIOD_WINDOW, TwinClient

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
HISTORY_PERIOD_S = 10  # one chart point per 10 s: 360 points for the hour, any meter period
RECENT_EVENTS_H = 24.0
RECENT_EVENTS_MAX = 20
ENERGY_COUNTERS = ("totalActiveEnergyImport", "totalActiveEnergyExport")


@dataclass
class WebConfig:
    """Which broker and tenant to show, where to listen, where the broker should send notifications."""

    broker_url: str
    tenant: str | None = "energytwin"
    history: str = "ngsi-ld"  # or "quantumleap": where the "last hour" and today's energy are read
    history_url: str | None = None  # the history server (Mintaka, QuantumLeap) when history != "ngsi-ld"
    host: str = "127.0.0.1"
    port: int = 8080
    notify_url: str | None = None  # default: http://<host, or this host's name for 0.0.0.0>:<port>/notify
    resubscribe_s: float = 30.0  # how often the subscriptions are checked (a broker reset loses them)
    auth: PageAuth | None = None  # None: no login (development only); see _auth.py
    accounts: _views.AccountsSource | None = None  # the community's accounts (energytwin/page_views.py)
    public_guard: _views.PublicGuard | None = None  # the public view's differencing defence (access/)

    def endpoint(self) -> str:
        if self.notify_url:
            return self.notify_url
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()  # in a container: resolvable on the compose network
        return f"http://{host}:{self.port}/notify"


@dataclass
class WebState:
    """What the handlers share and /health reports."""

    config: WebConfig
    twin: TwinClient
    hub: LiveHub = field(default_factory=LiveHub)
    subscribed: bool = False
    subscription_detail: str = "not yet created"
    notifications: int = 0
    last_notification_at: str | None = None

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.subscribed else "degraded",
            "broker": self.config.broker_url,
            "tenant": self.config.tenant,
            "notifyEndpoint": self.config.endpoint(),
            "subscriptions": self.subscription_detail,
            "notifications": self.notifications,
            "lastNotificationAt": self.last_notification_at,
            "pagesConnected": len(self.hub.clients),
            "messagesRelayed": self.hub.relayed,
        }


def _state(request: Request) -> WebState:
    return request.app.state.web


def _time_param(request: Request, name: str, default: datetime) -> datetime:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return parse_time(raw)
    except ValueError:
        raise _BadParameter(f"{name}={raw!r} is not an ISO 8601 time") from None


class _BadParameter(ValueError):
    pass


class _Foreign(PermissionError):
    """A member asked for a meter that is not theirs: 403, the same answer whether it exists or not."""


def _check_sees(request: Request, device: str) -> None:
    sees = getattr(request.state, "sees_device", None)
    if sees is not None and not sees(device):
        raise _Foreign("that meter is not one of yours")  # the id is not echoed: no foreign id in any body


def _local_midnight() -> datetime:
    return datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


# -- pages and table -----------------------------------------------------------------------------------------
async def overview_page(request: Request) -> Response:
    """The role's home: the public screen for the public role, the meters (and the role's view) for the others."""
    identity = getattr(request.state, "identity", None)
    page = "public.html" if identity is not None and identity.role == "public" else "index.html"
    return FileResponse(STATIC_DIR / page, headers={"Cache-Control": "no-cache"})


async def public_page(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "public.html", headers={"Cache-Control": "no-cache"})


async def meter_page(request: Request) -> Response:
    _check_sees(request, request.path_params["device"])
    return FileResponse(STATIC_DIR / "meter.html", headers={"Cache-Control": "no-cache"})


async def measures(request: Request) -> Response:
    return JSONResponse(measures_json(), headers={"Cache-Control": "max-age=3600"})


# -- snapshots -----------------------------------------------------------------------------------------------
async def meters(request: Request) -> Response:
    """GET /api/meters?dayStart=<ISO>: every meter with its last reading, period, open events, energy today."""
    state = _state(request)
    now = datetime.now(UTC)
    day_start = _time_param(request, "dayStart", _local_midnight())
    entities, counters, times, open_events = await asyncio.gather(
        state.twin.measurements(),
        state.twin.counters_since(day_start, ENERGY_COUNTERS),
        state.twin.recent_times(now - PERIOD_WINDOW),
        state.twin.open_anomalies(),
    )
    events_by_device: dict[str, list[dict[str, Any]]] = {}
    for entity in open_events:
        event = event_json(entity)
        if event is not None:
            events_by_device.setdefault(event["device"], []).append(event)
    rows = []
    for entity in entities:
        reading = reading_json(entity)
        if reading is None:
            continue
        at_start = {}
        for attr in ENERGY_COUNTERS:
            mins = (counters.get(entity["id"], {}).get(attr) or {}).get("min") or []
            if mins and isinstance(mins[0][0], (int, float)):
                at_start[attr] = mins[0][0]
        rows.append({
            "device": reading["device"],
            "reading": reading,
            "periodS": period_s(times.get(entity["id"], [])),
            "counterAtDayStart": at_start,
            "openEvents": events_by_device.get(reading["device"], []),
        })
    sees = getattr(request.state, "sees_device", None)
    if sees is not None:  # a member: only their own meters, never another's id
        rows = [r for r in rows if sees(r["device"])]
    rows.sort(key=lambda r: r["device"])
    return JSONResponse({"serverTime": now_iso(), "tenant": state.config.tenant, "dayStart": day_start.isoformat(),
                         "meters": rows})


async def meter(request: Request) -> Response:
    """GET /api/meters/{device}: the whole reading, the meter's period, open and recent events."""
    state = _state(request)
    device = request.path_params["device"]
    _check_sees(request, device)
    now = datetime.now(UTC)
    entity, times, anomalies = await asyncio.gather(
        state.twin.measurement(device),
        state.twin.recent_times(now - PERIOD_WINDOW),
        state.twin.anomalies_of(device),
    )
    if entity is None:
        return problem(404, "Unknown meter", f"no measurement of {device} in tenant "
                             f"{state.config.tenant!r} yet")
    reading = reading_json(entity)
    events = [e for e in (event_json(a) for a in anomalies) if e is not None]
    events.sort(key=lambda e: e["dateDetected"], reverse=True)
    cutoff = now - timedelta(hours=RECENT_EVENTS_H)
    recent = [e for e in events if e["status"] != "open"
              and parse_time(e.get("validTo") or e["dateDetected"]) >= cutoff][:RECENT_EVENTS_MAX]
    return JSONResponse({
        "serverTime": now_iso(),
        "tenant": state.config.tenant,
        "reading": reading,
        "periodS": period_s(times.get(entity["id"], [])),
        "events": {"open": [e for e in events if e["status"] == "open"], "recent": recent},
    })


async def history(request: Request) -> Response:
    """GET /api/meters/{device}/history?minutes=60: total power and phase voltages, 10 s averages (+min/max)."""
    state = _state(request)
    device = request.path_params["device"]
    _check_sees(request, device)
    try:
        minutes = min(max(int(request.query_params.get("minutes", "60")), 1), 24 * 60)
    except ValueError:
        raise _BadParameter("minutes must be a whole number") from None
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    body = await state.twin.history(device, start, ("totalActivePower", "phaseVoltage"), ("avg", "min", "max"),
                                    f"PT{HISTORY_PERIOD_S}S")
    out: dict[str, Any] = {"start": start.isoformat(), "periodS": HISTORY_PERIOD_S,
                           "totalActivePower": [], "phaseVoltage": {}}
    if body is None:
        return JSONResponse(out)
    power = body.get("totalActivePower") or {}
    out["totalActivePower"] = [[t, v, lo, hi] for (v, t, _), (lo, _, _), (hi, _, _)
                               in zip(power.get("avg", []), power.get("min", []), power.get("max", []))
                               if isinstance(v, (int, float))]
    volts = body.get("phaseVoltage") or {}
    for (avg, t, _), (lo, _, _), (hi, _, _) in zip(volts.get("avg", []), volts.get("min", []),
                                                    volts.get("max", [])):
        if not isinstance(avg, dict):
            continue
        for phase, value in avg.items():
            if isinstance(value, (int, float)):
                out["phaseVoltage"].setdefault(phase, []).append([t, value, (lo or {}).get(phase),
                                                                  (hi or {}).get(phase)])
    return JSONResponse(out)


# -- live ----------------------------------------------------------------------------------------------------
async def stream(request: Request) -> Response:
    """GET /api/stream[?device=…]: Server-Sent Events `hello`, `reading`, `event`, `ping`."""
    device = request.query_params.get("device") or None
    # The caller's scope, set by the page's authentication when access control is on (a member: own meters).
    sees = getattr(request.state, "sees_device", None)
    return StreamingResponse(_state(request).hub.stream(device, sees), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def notify(request: Request) -> Response:
    """POST /notify: an NGSI-LD notification from the broker (measurements or Anomaly entities)."""
    state = _state(request)
    try:
        body = await request.json()
    except ValueError:
        return problem(400, "Invalid notification", "body is not JSON")
    entities = body.get("data") if isinstance(body, dict) else body
    if not isinstance(entities, list):
        return problem(400, "Invalid notification", "data must be a list")
    state.notifications += 1
    state.last_notification_at = now_iso()
    notified_at = body.get("notifiedAt") if isinstance(body, dict) else None
    for entity in entities:
        if not isinstance(entity, dict):
            continue
        if entity.get("type") == "Anomaly":
            event = event_json(entity)
            if event is not None:
                state.hub.publish("event", event["device"], event)
            continue
        der = der_json(entity)
        if der is not None:  # a battery or inverter: the control centre's (and its owner's) screen
            state.hub.publish("der", der["device"], der)
            continue
        reading = reading_json(entity)
        if reading is not None:
            reading["notifiedAt"] = notified_at  # lets a page (and the tests) see the relay's own latency
            state.hub.publish("reading", reading["device"], reading)
    return Response(status_code=204)


async def health(request: Request) -> Response:
    """GET /health: 200 with what the service is doing (status "degraded" until the broker took the subscriptions)."""
    return JSONResponse(_state(request).health())


async def _twin_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: the twin did not answer: %s", request.method, request.url.path, exc)
    return problem(503, "Twin unavailable", f"broker {_state(request).config.broker_url}: {exc}")


async def _foreign(request: Request, exc: Exception) -> Response:
    return problem(403, "Forbidden", str(exc))


LOGIN_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>energytwin: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/static/app.css">
</head><body><main><h1>Log in</h1>{error}<form method="post" action="/login">
<label>User <input name="user" autocomplete="username"></label>
<label>Secret <input name="secret" type="password" autocomplete="current-password"></label>
<p>or a bearer token:</p><label>Token <input name="token"></label>
<button type="submit">Log in</button></form></main></body></html>"""


async def login_page(request: Request) -> Response:
    return HTMLResponse(LOGIN_HTML.format(error=""), headers={"Cache-Control": "no-cache"})


async def login(request: Request) -> Response:
    """POST /login (form or JSON: user + secret, or token): sets the session cookie, 303 to the page."""
    auth = _state(request).config.auth
    if auth is None:
        return RedirectResponse("/", status_code=303)
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            fields = json.loads(raw or b"{}")
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return problem(400, "Invalid login", "body is not a JSON object")
    else:
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
    token = str(fields.get("token") or "").strip()
    reason = None
    try:
        if not token:
            if auth.login is None:
                raise ValueError("this page takes bearer tokens only")
            token = auth.login(str(fields.get("user") or ""), str(fields.get("secret") or ""))
        identity = auth.verify(token)
    except Exception as exc:  # noqa: BLE001 - UserError, TokenError: the reason is shown
        reason = str(getattr(exc, "reason", exc))
    if reason is not None:
        auth.refused += 1
        log.info("page login refused: %s", reason)
        return HTMLResponse(LOGIN_HTML.format(error=f"<p class=error>{html.escape(reason)}</p>"), status_code=401)
    log.info("page login: %s (%s)", identity.subject, identity.role)
    response = RedirectResponse("/", status_code=303)
    response.headers["set-cookie"] = auth.cookie(token)
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.headers["set-cookie"] = PageAuth.clear_cookie()
    return response


async def whoami(request: Request) -> Response:
    """GET /api/me: who the page thinks is logged in (the page shows it beside the logout button)."""
    identity = getattr(request.state, "identity", None)
    if identity is None:
        return JSONResponse({"subject": None, "role": None, "accessControl": False})
    return JSONResponse({"subject": identity.subject, "role": identity.role, "member": identity.member,
                         "accessControl": True})


async def _bad_parameter(request: Request, exc: Exception) -> Response:
    return problem(400, "Invalid parameter", str(exc))


ROUTES = [
    Route("/", overview_page, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["GET", "POST"]),
    Route("/api/me", whoami, methods=["GET"]),
    Route("/meters/{device}", meter_page, methods=["GET"]),
    Route("/api/measures", measures, methods=["GET"]),
    Route("/api/meters", meters, methods=["GET"]),
    Route("/api/meters/{device}", meter, methods=["GET"]),
    Route("/api/meters/{device}/history", history, methods=["GET"]),
    Route("/api/stream", stream, methods=["GET"]),
    Route("/public", public_page, methods=["GET"]),
    Route("/api/views/member", _views.member_view, methods=["GET"]),
    Route("/api/views/manager", _views.manager_view, methods=["GET"]),
    Route("/api/views/manager/revision", revision_view, methods=["GET"]),
    Route("/api/views/public", _views.public_view, methods=["GET"]),
    Route("/api/views/control", _views.control_view, methods=["GET"]),
    Route("/api/control/commands", _views.send_command, methods=["POST"]),
    Route("/notify", notify, methods=["POST"]),
    Route("/health", health, methods=["GET"]),
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]


async def keep_subscribed(state: WebState) -> None:
    """Create the subscriptions, then check them every `resubscribe_s` (retrying while the broker is down)."""
    endpoint = state.config.endpoint()
    while True:
        try:
            ids = await state.twin.ensure_subscriptions(endpoint)
            if not state.subscribed:
                log.info("subscribed at %s (tenant %s): %s -> %s", state.config.broker_url, state.config.tenant,
                         ", ".join(ids), endpoint)
            state.subscribed = True
            state.subscription_detail = f"notifying {endpoint}"
            await asyncio.sleep(state.config.resubscribe_s)
        except BrokerError as exc:
            state.subscribed = False
            state.subscription_detail = f"pending: {exc}"
            log.warning("cannot subscribe at %s: %s; retrying in 2 s (the page shows no live updates meanwhile)",
                        state.config.broker_url, exc)
            await asyncio.sleep(2.0)


def create_app(config: WebConfig, *, subscribe: bool = True) -> Starlette:
    """The page service as an ASGI app; `subscribe=False` for tests that post notifications themselves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        history = None
        if config.history != "ngsi-ld":
            history = async_history_reader(config.history, broker_url=config.broker_url, tenant=config.tenant,
                                           history_url=config.history_url)
        state = WebState(config, TwinClient(config.broker_url, config.tenant, history=history))
        app.state.web = state
        task = asyncio.create_task(keep_subscribed(state)) if subscribe else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            state.hub.close_all()  # let open streams end so the server can stop
            await state.twin.close()

    middleware = [Middleware(AuthMiddleware, auth=config.auth)] if config.auth is not None else []
    if config.auth is None:
        log.warning("the page has NO LOGIN: every visitor sees every meter (development only)")
    return Starlette(routes=ROUTES, lifespan=lifespan, middleware=middleware, exception_handlers={
        BrokerError: _twin_unavailable, _BadParameter: _bad_parameter, _Foreign: _foreign,
        _views._Refused: _views.refused})
