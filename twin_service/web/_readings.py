"""What the page receives: a meter reading (values + derived quantities) and a power-quality event, as JSON.

Derived quantities use the analytics' formulas (datamodels.three_phase, datamodels.readings), so the page and the EN 50160
evaluation never disagree on what "unbalance" means.
"""

from __future__ import annotations

import logging
from typing import Any

from datamodels import three_phase
from datamodels.anomaly import Anomaly
from datamodels.measures import BY_ATTRIBUTE, MEASUREMENT_TYPE, device_of
from datamodels.readings import PHASES, reading_from_entity
from fiware_client import attribute_value

log = logging.getLogger(__name__)

MEASUREMENT_PREFIX = f"urn:ngsi-ld:{MEASUREMENT_TYPE}:"


def reading_json(entity: dict[str, Any]) -> dict[str, Any] | None:
    """A measurement entity (normalized, as the broker returns or notifies it) as the page's reading.

    `values` holds only attributes of the measure table; `observedAt` is the meter's time of the reading.
    Returns None for an entity that is not a measurement.
    """
    entity_id = entity.get("id")
    if not isinstance(entity_id, str) or not entity_id.startswith(MEASUREMENT_PREFIX):
        return None
    values: dict[str, Any] = {}
    observed: list[str] = []
    for name, attr in entity.items():
        if name in BY_ATTRIBUTE:
            values[name] = attribute_value(attr)
            if isinstance(attr, dict) and isinstance(attr.get("observedAt"), str):
                observed.append(attr["observedAt"])
    voltage_time = (entity.get("phaseVoltage") or {}).get("observedAt") if isinstance(
        entity.get("phaseVoltage"), dict) else None
    return {
        "device": device_of(entity_id),
        "id": entity_id,
        "observedAt": voltage_time or (max(observed) if observed else None),
        "values": values,
        "derived": derived_json(entity),
    }


def derived_json(entity: dict[str, Any]) -> dict[str, Any]:
    """Phasor angles (L1 voltage as reference, degrees counter-clockwise) and unbalance, where computable."""
    reading = reading_from_entity(entity)
    out: dict[str, Any] = {}
    if reading is None:
        return out
    try:
        angles = reading.voltage_angle_deg
        if "L12" in angles and "L23" in angles:
            v_angles = three_phase.voltage_angles_deg(angles["L12"], angles["L23"])
        else:
            v_angles = (0.0, -120.0, 120.0)
        out["voltagePhasorDeg"] = dict(zip(PHASES, (_wrap(a) for a in v_angles), strict=True))
        if reading.current_angle_deg:
            out["currentPhasorDeg"] = {
                p: _wrap(v - reading.current_angle_deg[p])
                for p, v in zip(PHASES, v_angles, strict=True) if p in reading.current_angle_deg
            }
        u2 = reading.voltage_unbalance()
        if u2 is not None:
            out["voltageUnbalance"] = round(u2, 6)
        i2 = reading.current_unbalance()
        if i2 is not None and any(reading.current_a.get(p, 0.0) > 0.0 for p in PHASES):
            out["currentUnbalance"] = round(i2, 6)
    except (ValueError, ZeroDivisionError, KeyError) as exc:  # a half-filled entity: show what we have
        log.debug("cannot derive phasors/unbalance for %s: %s", entity.get("id"), exc)
    return out


def _wrap(angle_deg: float) -> float:
    """An angle in (-180, 180]."""
    wrapped = (angle_deg + 180.0) % 360.0 - 180.0
    return round(180.0 if wrapped == -180.0 else wrapped, 3)


def event_json(entity: dict[str, Any]) -> dict[str, Any] | None:
    """An Anomaly entity as the page's power-quality event, or None when it cannot be read (logged)."""
    try:
        anomaly = Anomaly.from_entity(entity)
    except ValueError as exc:
        log.warning("ignoring Anomaly %s the page cannot read: %s", entity.get("id"), exc)
        return None
    out = anomaly.to_key_values()
    out["device"] = device_of(anomaly.detectedBy)
    breach = anomaly.thresholdBreach[-1] if anomaly.thresholdBreach else None
    if breach is not None:
        out["measuredValue"] = breach.measuredValue
        out["thresholdValue"] = breach.thresholdValue
        out["thresholdType"] = breach.thresholdType
    return out
