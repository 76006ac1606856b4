"""The NGSI-LD entity of one forecast: `EnergyForecast`, our model shaped after SDM's WeatherForecast.

One entity per target and issue (id `urn:ngsi-ld:EnergyForecast:<target id>:<quantity>:<issue>`), so past
forecasts stay in the broker and can be scored against what happened; the schema is
datamodels/schemas/EnergyForecast.energytwin.json (validated offline by datamodels.validation).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

UNITS = {"pvGeneration": "kWh", "load": "kWh", "price": "EUR/MWh"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def forecast_entity(target_id: str, quantity: str, issued: datetime, values: np.ndarray, method: str, *,
                    fallback: bool = False) -> dict:
    """Normalized NGSI-LD entity of a 24-hour forecast starting at `issued` (an aware datetime)."""
    if quantity not in UNITS:
        raise ValueError(f"quantity must be one of {sorted(UNITS)}, got {quantity!r}")
    if issued.tzinfo is None:
        raise ValueError("the issue time needs a UTC offset")
    hourly = [None if not np.isfinite(v) else round(float(v), 4) for v in np.asarray(values, float)]
    if len(hourly) != 24:
        raise ValueError(f"a forecast has 24 hourly values, got {len(hourly)}")
    stamp = issued.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    local = target_id.rsplit(":", 1)[-1]

    def prop(value):
        return {"type": "Property", "value": value}

    return {
        "id": f"urn:ngsi-ld:EnergyForecast:{local}:{quantity}:{stamp}",
        "type": "EnergyForecast",
        "forecastedQuantity": prop(quantity),
        "dateIssued": prop({"@type": "DateTime", "@value": _iso(issued)}),
        "validFrom": prop({"@type": "DateTime", "@value": _iso(issued)}),
        "validTo": prop({"@type": "DateTime", "@value": _iso(issued + timedelta(hours=24))}),
        "hourlyValues": prop(hourly),
        "unit": prop(UNITS[quantity]),
        "method": prop(method),
        "fallback": prop(fallback),
        "refTarget": {"type": "Relationship", "object": target_id},
    }
