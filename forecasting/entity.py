"""The NGSI-LD entity of one forecast: `EnergyForecast`, our model shaped after SDM's WeatherForecast.

Two entities per target and quantity (docs/forecasts.md, "Entities"): the *current* forecast at a stable id
(`urn:ngsi-ld:EnergyForecast:<target>:<quantity>`, what a page reads by id) and one *archived* copy per issue
(`...:<quantity>:<yyyymmddThhmmZ>`), so past forecasts stay in the broker and can be scored against what
happened. The schema is datamodels/schemas/EnergyForecast.energytwin.json (validated offline by
datamodels.validation).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

UNITS = {"pvGeneration": "kWh", "load": "kWh", "price": "EUR/MWh"}
HISTORY_SOURCES = ("twin", "simulation", "file")
WEATHER_INPUTS = ("none", "csv", "WeatherForecast")


def target_key(target_id: str) -> str:
    """The target's short name in forecast ids: the last part of a URN (`meter-001`), or the name itself."""
    key = target_id.rsplit(":", 1)[-1]
    if not key or any(c in key for c in " /?#\"\'<>"):
        raise ValueError(f"target {target_id!r} cannot name a forecast entity")
    return key


def current_forecast_id(target: str, quantity: str) -> str:
    """Id of the current forecast of `target` (a device id, an installation id or a URN): what pages read."""
    return f"urn:ngsi-ld:EnergyForecast:{target_key(target)}:{quantity}"


def archived_forecast_id(target: str, quantity: str, issued: datetime) -> str:
    """Id of the forecast issued at `issued`, kept for scoring."""
    return f"{current_forecast_id(target, quantity)}:{issued.astimezone(UTC):%Y%m%dT%H%MZ}"


def _hourly(values) -> list:
    hourly = [None if not np.isfinite(v) else round(float(v), 4) for v in np.asarray(values, float)]
    if len(hourly) != 24:
        raise ValueError(f"a forecast has 24 hourly values, got {len(hourly)}")
    return hourly


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def forecast_entity(target_id: str, quantity: str, issued: datetime, values: np.ndarray, method: str, *,
                    fallback: bool = False, history_source: str = "twin", weather_input: str | None = None,
                    archived: bool = True, ref_target: str | None = None,
                    weather_model_values: np.ndarray | None = None,
                    model_values: np.ndarray | None = None) -> dict:
    """Normalized NGSI-LD entity of a 24-hour forecast starting at `issued` (an aware datetime).

    `archived` picks the per-issue id (kept for scoring) or the stable current one; `ref_target` defaults to
    `target_id` when that is a URN (a meter's measurement entity).
    """
    if quantity not in UNITS:
        raise ValueError(f"quantity must be one of {sorted(UNITS)}, got {quantity!r}")
    if history_source not in HISTORY_SOURCES:
        raise ValueError(f"history_source must be one of {HISTORY_SOURCES}, got {history_source!r}")
    if weather_input is not None and weather_input not in WEATHER_INPUTS:
        raise ValueError(f"weather_input must be one of {WEATHER_INPUTS}, got {weather_input!r}")
    if issued.tzinfo is None:
        raise ValueError("the issue time needs a UTC offset")
    hourly = _hourly(values)
    issued = issued.replace(minute=0, second=0, microsecond=0) if archived else issued
    entity_id = (archived_forecast_id(target_id, quantity, issued) if archived
                 else current_forecast_id(target_id, quantity))

    def prop(value):
        return {"type": "Property", "value": value}

    entity = {
        "id": entity_id,
        "type": "EnergyForecast",
        "forecastedQuantity": prop(quantity),
        "dateIssued": prop({"@type": "DateTime", "@value": _iso(issued)}),
        "validFrom": prop({"@type": "DateTime", "@value": _iso(issued)}),
        "validTo": prop({"@type": "DateTime", "@value": _iso(issued + timedelta(hours=24))}),
        "hourlyValues": prop(hourly),
        "unit": prop(UNITS[quantity]),
        "method": prop(method),
        "fallback": prop(fallback),
        "historySource": prop(history_source),
    }
    if weather_input is not None:
        entity["weatherInput"] = prop(weather_input)
    if weather_model_values is not None:  # the weather path's values, kept so later rounds can judge it
        entity["weatherModelValues"] = prop(_hourly(weather_model_values))
    if model_values is not None:  # a fallback: the model's own values, so it is judged again (live_scores)
        entity["modelValues"] = prop(_hourly(model_values))
    ref = ref_target or (target_id if target_id.startswith("urn:") else None)
    if ref:
        entity["refTarget"] = {"type": "Relationship", "object": ref}
    return entity


def current_and_archived(target_id: str, quantity: str, issued: datetime, values: np.ndarray, method: str,
                         **kw) -> list[dict]:
    """The two entities the service writes for one forecast: the current one and the per-issue archive."""
    return [forecast_entity(target_id, quantity, issued, values, method, archived=a, **kw) for a in (False, True)]
