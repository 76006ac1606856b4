"""The four role views: member, manager, public and control centre, as JSON the page's screens draw.

Who sees what (the page's role check, `_auth.py`, lets each role reach only its own view):

* member: their own meters, their own rows of the community's accounts (kWh, EUR, CO2, trees), the current
  EnergyForecast of each of their meters (PV and load, next 24 h) and the state of charge of a battery that is
  theirs. Nothing of another member, not even an id.
* manager: every member's accounts, the sharing coefficients in force, the health of every device (last seen,
  deviceState, live/stale/offline) and the open power-quality events.
* public: the community's aggregates only, by whole hours, never one member's data; a community of fewer than
  PUBLIC_MIN_MEMBERS members gets no figure at all (an aggregate of two homes tells one neighbour the other's
  consumption), only the reason.
* control centre: every battery and inverter live (SoC per home, the fleet's mean), and commands to them
  (battery power setpoint, export limit, curtailment), sent as NGSI-LD PATCHes of the command attribute.

The community's accounting (tariffs, sharing coefficients, CO2 factors) is the `community` part's; this page
cannot import it (same layer, tests/test_layers.py), so whoever starts the page hands it an `AccountsSource`
(energytwin/page_views.py builds one from a community file). Without one the views say so and show what the
twin alone tells: the meters' measured energy.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from datamodels.der import BATTERY_TYPE, PV_TYPE
from datamodels.measures import device_entity_id, device_of
from fiware_client import BrokerError, attribute_value, parse_time

from ._der import CommandError, check_command, der_json, device_state, fleet_mean, period_s, site_device
from ._live import now_iso
from ._problem import problem
from ._readings import event_json, reading_json
from ._twin import PERIOD_WINDOW

log = logging.getLogger(__name__)

PUBLIC_MIN_MEMBERS = 5
PUBLIC_HOURS = 24  # the public screen: the last 24 complete hours
ENERGY_COUNTERS = ("totalActiveEnergyImport", "totalActiveEnergyExport")
FORECAST_QUANTITIES = ("pvGeneration", "load")

# Which roles reach which view; the commands need COMMAND_ROLES. One table, read by the handlers and the docs.
VIEW_ROLES: dict[str, frozenset[str]] = {
    "member": frozenset({"member"}),
    "manager": frozenset({"manager", "admin"}),
    "public": frozenset({"public", "member", "manager", "control-centre", "admin"}),
    "control": frozenset({"control-centre", "admin"}),
}
COMMAND_ROLES = frozenset({"control-centre", "admin"})
ACCOUNT_FIGURES = ("consumptionKwh", "assignedKwh", "selfConsumedKwh", "gridImportKwh", "surplusKwh",
                   "savingsEur", "co2AvoidedKg", "trees")


class AccountsSource(Protocol):
    """The community's accounts for the page, computed by the community part (energytwin/page_views.py).

    `accounts()` returns JSON (it may take seconds: the page calls it in a thread and the source caches):
    `{"community": name, "period": {"start", "end", "label"}, "members": [row...], "totals": row,
    "coefficients": [{"installation", "cau", "source", "at", "shares": {member: beta}}],
    "hourly": [{"start", "consumptionKwh", "generationKwh", "selfConsumedKwh", "surplusKwh", "members"}],
    "co2": {...}, "notes": [...]}` where a row is `{"member", "cups", "meter", "consumptionKwh", "assignedKwh",
    "selfConsumedKwh", "gridImportKwh", "surplusKwh", "savingsEur", "co2AvoidedKg", "trees", "missingHours",
    "investmentEur", "paybackYears"}`."""

    def accounts(self) -> dict[str, Any]: ...


class PublicGuard(Protocol):
    """The public view's differencing defence (access/_disclosure.py `PublicRelease`, wired by
    energytwin/page_login.py): re-releases the body's figures so that no two answers differ by fewer than k
    homes."""

    def apply(self, body: dict[str, Any], *, entities: list[dict[str, Any]] | None = None,
              hours: list[datetime] | None = None, accounts: dict[str, Any] | None = None) -> dict[str, Any]: ...


class _Refused(PermissionError):
    """403: the caller's role does not reach this view (the detail names the roles that do)."""


def _identity(request: Request) -> Any | None:
    return getattr(request.state, "identity", None)


def _require(request: Request, view: str) -> Any | None:
    """The caller's identity when their role reaches `view` (None without access control: development)."""
    identity = _identity(request)
    if identity is not None and identity.role not in VIEW_ROLES[view]:
        raise _Refused(f"the {view} view is for {', '.join(sorted(VIEW_ROLES[view]))}; you are {identity.role}")
    return identity


def _source(request: Request) -> AccountsSource | None:
    return request.app.state.web.config.accounts


def _twin(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.web.twin


async def _accounts(request: Request) -> tuple[dict[str, Any] | None, str | None]:
    """The source's accounts, or (None, why not) when there is no source or it failed (logged, never a 500)."""
    source = _source(request)
    if source is None:
        return None, ("no community file is configured for this page (start it with --community FILE or "
                      "ENERGYTWIN_COMMUNITY): savings, CO2 and coefficients come from the community's definition")
    try:
        return await asyncio.to_thread(source.accounts), None
    except Exception as exc:  # noqa: BLE001 - a broken community file or an unreachable history: shown, not a 500
        log.warning("community accounts unavailable: %s", exc)
        return None, f"the community's accounts could not be computed: {exc}"


def _row_is_theirs(identity: Any, row: dict[str, Any]) -> bool:
    if identity is None:
        return True
    if identity.member is not None and row.get("member") == identity.member:
        return True
    return any(isinstance(row.get(key), str) and identity.owns(row[key]) for key in ("cups", "meter"))


def _sees(request: Request) -> Callable[[str], bool]:
    sees = getattr(request.state, "sees_device", None)
    return sees if sees is not None else (lambda _device: True)


async def _batteries_and_inverters(request: Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    twin = _twin(request)
    batteries, inverters = await asyncio.gather(twin.der(BATTERY_TYPE), twin.der(PV_TYPE))
    sees = _sees(request)
    out = []
    for entities in (batteries, inverters):
        rows = [r for r in (der_json(e) for e in entities) if r is not None and sees(r["device"])]
        rows.sort(key=lambda r: r["id"])
        out.append(rows)
    return out[0], out[1]


async def _states(request: Request, rows: list[dict[str, Any]], entity_type: str, attr: str,
                  now: datetime) -> None:
    """Add `state` (live/stale/offline/never), `ageS` and `periodS` to each battery or inverter row."""
    times = await _twin(request).recent_times_of(entity_type, attr, now - PERIOD_WINDOW)
    for row in rows:
        row["periodS"] = period_s(times.get(row["id"], []))
        row["state"], row["ageS"] = device_state(row["observedAt"], row["periodS"], now)


# -- member ----------------------------------------------------------------------------------------------------
def _forecast_json(entity: dict[str, Any] | None) -> dict[str, Any] | None:
    if entity is None:
        return None

    def stamp(name: str) -> str | None:
        value = attribute_value(entity.get(name))
        return value.get("@value") if isinstance(value, dict) else value if isinstance(value, str) else None

    return {"id": entity.get("id"), "validFrom": stamp("validFrom"), "validTo": stamp("validTo"),
            "dateIssued": stamp("dateIssued"), "unit": attribute_value(entity.get("unit")),
            "method": attribute_value(entity.get("method")), "fallback": attribute_value(entity.get("fallback")),
            "hourlyValues": attribute_value(entity.get("hourlyValues"))}


async def member_view(request: Request) -> Response:
    """GET /api/views/member: the member's own accounts, forecasts and batteries."""
    identity = _require(request, "member")
    twin = _twin(request)
    sees = _sees(request)
    measurements = await twin.measurements(attrs=("totalActivePower",))
    meters = sorted(d for d in (device_of(e["id"]) for e in measurements) if sees(d))
    (accounts, why), batteries_inverters, *forecasts = await asyncio.gather(
        _accounts(request), _batteries_and_inverters(request),
        *[twin.forecast(device, quantity) for device in meters for quantity in FORECAST_QUANTITIES])
    batteries, inverters = batteries_inverters
    now = datetime.now(UTC)
    await _states(request, batteries, BATTERY_TYPE, "statusPercent", now)
    by_meter: dict[str, dict[str, Any]] = {}
    for k, entity in enumerate(forecasts):
        device, quantity = meters[k // len(FORECAST_QUANTITIES)], FORECAST_QUANTITIES[k % len(FORECAST_QUANTITIES)]
        by_meter.setdefault(device, {})[quantity] = _forecast_json(entity)
    body: dict[str, Any] = {"serverTime": now_iso(), "meters": meters, "forecasts": by_meter,
                            "batteries": batteries, "inverters": inverters, "accounts": None,
                            "accountsUnavailable": why}
    if accounts is not None:
        body["accounts"] = {"community": accounts.get("community"), "period": accounts.get("period"),
                            "co2": accounts.get("co2"),
                            "members": [r for r in accounts.get("members", []) if _row_is_theirs(identity, r)]}
    return JSONResponse(body)


# -- manager ---------------------------------------------------------------------------------------------------
async def manager_view(request: Request) -> Response:
    """GET /api/views/manager: every member's accounts, the coefficients, every device's health, open events."""
    _require(request, "manager")
    twin = _twin(request)
    now = datetime.now(UTC)
    (accounts, why), measurements, times, devices, open_events, (batteries, inverters) = await asyncio.gather(
        _accounts(request), twin.measurements(attrs=("totalActivePower", "phaseVoltage", "deviceState")),
        twin.recent_times(now - PERIOD_WINDOW), twin.devices(), twin.open_anomalies(),
        _batteries_and_inverters(request))
    await asyncio.gather(_states(request, batteries, BATTERY_TYPE, "statusPercent", now),
                         _states(request, inverters, PV_TYPE, "activePower", now))
    health = []
    seen = set()
    for entity in measurements:
        reading = reading_json(entity)
        if reading is None:
            continue
        period = period_s(times.get(entity["id"], []))
        state, age = device_state(reading["observedAt"], period, now)
        seen.add(device_entity_id(reading["device"]))
        health.append({"device": reading["device"], "kind": "meter", "lastSeen": reading["observedAt"],
                       "ageS": age, "periodS": period, "state": state,
                       "deviceState": attribute_value(entity.get("deviceState"))})
    for row in [*batteries, *inverters]:
        seen.add(device_entity_id(row["device"]))
        health.append({"device": row["device"], "kind": "battery" if row["type"] == BATTERY_TYPE else "inverter",
                       "lastSeen": row["observedAt"], "ageS": row["ageS"], "periodS": row["periodS"],
                       "state": row["state"], "deviceState": row["values"].get("deviceState"),
                       "controlState": row["values"].get("controlState")})
    for entity in devices:  # provisioned, never reported
        if entity.get("id") not in seen and isinstance(entity.get("id"), str):
            health.append({"device": site_device(entity["id"]), "kind": "device", "lastSeen": None, "ageS": None,
                           "periodS": None, "state": "never", "deviceState": attribute_value(entity.get("deviceState"))})
    health.sort(key=lambda h: (h["device"], h["kind"]))
    events = [e for e in (event_json(a) for a in open_events) if e is not None]
    events.sort(key=lambda e: e["dateDetected"], reverse=True)
    counts: dict[str, int] = {}
    for h in health:
        counts[h["state"]] = counts.get(h["state"], 0) + 1
    return JSONResponse({"serverTime": now_iso(), "accounts": accounts, "accountsUnavailable": why,
                         "health": health, "healthCounts": counts, "openEvents": events})


# -- public ----------------------------------------------------------------------------------------------------
def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hourly_meter_energy(entities: list[dict[str, Any]], hours: list[datetime],
                        min_meters: int = 1) -> dict[str, list[float | None]]:
    """Community import/export per complete hour (kWh), summed over the meters, from each hour's largest counter.

    A meter's energy in hour h is max(h) - max(h-1) (the counter at the end of the hour minus that at the end of
    the previous one); an hour a meter has no reading in, or whose previous hour is missing, adds nothing. An hour
    fewer than `min_meters` meters add to is None: a sum of one or two homes is their own consumption."""
    index = {h: k for k, h in enumerate(hours)}
    sums: dict[str, list[float | None]] = {attr: [None] * len(hours) for attr in ENERGY_COUNTERS}
    counted: dict[str, list[int]] = {attr: [0] * len(hours) for attr in ENERGY_COUNTERS}
    for entity in entities:
        for attr in ENERGY_COUNTERS:
            by_hour: dict[datetime, float] = {}
            for item in (entity.get(attr) or {}).get("max") or []:
                value, start = item[0], item[1]
                if isinstance(value, (int, float)) and isinstance(start, str):
                    by_hour[_hour_floor(parse_time(start).astimezone(UTC))] = float(value)
            for hour, value in by_hour.items():
                previous = by_hour.get(hour - timedelta(hours=1))
                if hour in index and previous is not None and value >= previous:
                    k = index[hour]
                    sums[attr][k] = round((sums[attr][k] or 0.0) + value - previous, 6)
                    counted[attr][k] += 1
    for attr in ENERGY_COUNTERS:
        sums[attr] = [v if counted[attr][k] >= min_meters else None for k, v in enumerate(sums[attr])]
    return sums


SETTLED_FIGURES = ("consumptionKwh", "generationKwh", "selfConsumedKwh", "surplusKwh")


def public_settled_hours(rows: list[dict[str, Any]], min_members: int = PUBLIC_MIN_MEMBERS) -> list[dict[str, Any]]:
    """The settlement's hours for the public: a row's figures only when at least `min_members` members have data
    in that hour (`members`, counted by the accounts source; a row without the count is withheld too)."""
    out = []
    for row in rows:
        members = row.get("members")
        shown = isinstance(members, int) and members >= min_members
        out.append({"start": row.get("start"), **{key: row.get(key) if shown else None for key in SETTLED_FIGURES}})
    return out


async def public_view(request: Request) -> Response:
    """GET /api/views/public: community aggregates by whole hours; nothing at all under PUBLIC_MIN_MEMBERS."""
    _require(request, "public")
    twin = _twin(request)
    accounts, why = await _accounts(request)
    measurements = await twin.measurements(attrs=("totalActivePower",))
    members = len(accounts.get("members", [])) if accounts is not None else len(measurements)
    counted = "members of the community file" if accounts is not None else "meters in the twin"
    body: dict[str, Any] = {"serverTime": now_iso(), "community": (accounts or {}).get("community"),
                            "members": members, "membersCounted": counted, "minimumMembers": PUBLIC_MIN_MEMBERS,
                            "resolution": "PT1H", "withheld": None, "hourly": [], "settled": [], "totals": None,
                            "accountsUnavailable": why}
    if members < PUBLIC_MIN_MEMBERS:
        body["withheld"] = (f"this community has {members} {counted.split(' ')[0]}; with fewer than "
                            f"{PUBLIC_MIN_MEMBERS} an aggregate would let anyone work out one household's "
                            "figures, so the public screen shows none")
        return JSONResponse(body)
    end = _hour_floor(datetime.now(UTC))
    hours = [end - timedelta(hours=PUBLIC_HOURS - k) for k in range(PUBLIC_HOURS)]  # complete hours only
    entities = await twin.hourly_counters(hours[0] - timedelta(hours=1), ENERGY_COUNTERS)
    metered = hourly_meter_energy(entities, hours, PUBLIC_MIN_MEMBERS)
    for k, hour in enumerate(hours):
        body["hourly"].append({"start": hour.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "importKwh": metered["totalActiveEnergyImport"][k],
                               "exportKwh": metered["totalActiveEnergyExport"][k]})
    # The settlement's hours (whole hours by construction): the last PUBLIC_HOURS of the accounts' period.
    hourly = (accounts or {}).get("hourly", [])
    body["settled"] = public_settled_hours(hourly[-PUBLIC_HOURS:])
    if accounts is not None:
        totals = accounts.get("totals") or {}
        # the period's totals only when enough members have any data in it (else they are a few homes' own)
        with_data = sum(1 for m in accounts.get("members", [])
                        if isinstance(m.get("missingHours"), int) and m["missingHours"] < len(hourly))
        body["totals"] = ({key: totals.get(key) for key in ACCOUNT_FIGURES} if with_data >= PUBLIC_MIN_MEMBERS
                          else None)
        body["membersWithData"] = with_data
        body["period"] = accounts.get("period")
        body["co2"] = accounts.get("co2")
    guard = request.app.state.web.config.public_guard
    if guard is not None:  # the differencing defence (docs/access.md): its ledger file is read and written
        body = await asyncio.to_thread(guard.apply, body, entities=entities, hours=hours, accounts=accounts)
    return JSONResponse(body)


# -- control centre --------------------------------------------------------------------------------------------
async def control_view(request: Request) -> Response:
    """GET /api/views/control: every battery (SoC per home, fleet mean) and inverter live, with command results."""
    _require(request, "control")
    now = datetime.now(UTC)
    batteries, inverters = await _batteries_and_inverters(request)
    await asyncio.gather(_states(request, batteries, BATTERY_TYPE, "statusPercent", now),
                         _states(request, inverters, PV_TYPE, "activePower", now))
    live = {b["id"] for b in batteries if b["state"] == "live"}
    published = [b.get("fleetMeanStatusPercent") for b in batteries
                 if isinstance(b.get("fleetMeanStatusPercent"), (int, float))]
    return JSONResponse({"serverTime": now_iso(), "batteries": batteries, "inverters": inverters,
                         "fleetMeanStatusPercent": fleet_mean(batteries, live),
                         "fleetMeanCounted": len(live),
                         "controllerMeanStatusPercent": published[0] if published else None,
                         "mayCommand": True})


async def send_command(request: Request) -> Response:
    """POST /api/control/commands {"entity", "command", "value"}: one IoT Agent command, 202 once the broker took it.

    JSON only (a cross-site form cannot send it, and the session cookie is SameSite=Strict); the result arrives
    as `<command>_status` / `_info` on the entity, live on the control centre's screen."""
    identity = _identity(request)
    if identity is not None and identity.role not in COMMAND_ROLES:
        raise _Refused(f"only {', '.join(sorted(COMMAND_ROLES))} may send commands; you are {identity.role}")
    if not request.headers.get("content-type", "").startswith("application/json"):
        return problem(415, "Unsupported media type", "send the command as application/json")
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return problem(400, "Invalid command", "the body is not JSON")
    if not isinstance(body, dict) or not {"entity", "command"} <= body.keys():
        return problem(400, "Invalid command", 'expected {"entity": <id>, "command": <name>, "value": <number|null>}')
    try:
        entity_type, value = check_command(body["entity"], body["command"], body.get("value"))
    except CommandError as exc:
        return problem(400, "Invalid command", str(exc))
    try:
        await _twin(request).command(body["entity"], entity_type, body["command"], value)
    except BrokerError as exc:
        status = getattr(exc, "status", None)
        if status in (400, 404):
            return problem(status, "Command refused by the twin", str(exc))
        raise
    who = identity.subject if identity is not None else "(no login)"
    log.info("command %s = %r to %s by %s", body["command"], body.get("value"), body["entity"], who)
    return JSONResponse({"entity": body["entity"], "command": body["command"], "value": body.get("value"),
                         "status": "sent", "sentAt": now_iso()}, status_code=202)


async def refused(request: Request, exc: Exception) -> Response:
    return problem(403, "Forbidden", str(exc))
