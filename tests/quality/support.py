"""Builders for measurement entities and readings as the broker notifies them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from datamodels.measures import measurement_id

T0 = datetime(2026, 1, 5, 0, 0, 0, tzinfo=UTC)  # a Monday (ISO week 2026-W02)


def entity(device_id: str, at: datetime, v=(230.0, 230.0, 230.0), f: float = 50.0, thd=(0.02, 0.02, 0.02),
           avv=(120.0, 120.0, 120.0), i=(10.0, 10.0, 10.0, None), flags: dict[str, bool] | None = None
           ) -> dict[str, Any]:
    """A normalized ThreePhaseAcMeasurement as a notification carries it (observedAt = the meter's time)."""
    observed = at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def prop(value: Any, unit: str | None = None) -> dict[str, Any]:
        out = {"type": "Property", "value": value, "observedAt": observed}
        if unit:
            out["unitCode"] = unit
        return out

    current = {"L1": i[0], "L2": i[1], "L3": i[2]}
    if i[3] is not None:
        current["N"] = i[3]
    out = {
        "id": measurement_id(device_id),
        "type": "ThreePhaseAcMeasurement",
        "phaseVoltage": prop({"L1": v[0], "L2": v[1], "L3": v[2]}, "VLT"),
        "current": prop(current, "AMP"),
        "frequency": prop(f, "HTZ"),
        "thdVoltage": prop({"L1": thd[0], "L2": thd[1], "L3": thd[2]}, "C62"),
        "phaseVoltageAngle": prop({"L12": avv[0], "L23": avv[1], "L31": avv[2]}, "DD"),
        "phaseCurrentAngle": prop({"L1": 0.0, "L2": 0.0, "L3": 0.0}, "DD"),
    }
    if flags is not None:
        out["powerQualityStatus"] = prop(flags)
    return out


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)
