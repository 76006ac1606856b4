"""Batteries and PV inverters as the page shows them: state of charge, power, device state, commands and results.

The entities are the SunSpec bridge's `BatteryStatus` and `PhotovoltaicMeasurement` (datamodels/der.py is the table
of their attributes and commands). A command is an IoT Agent command attribute: the agent answers on the entity
with `<command>_status` (UNKNOWN, PENDING, OK, ERROR, EXPIRED) and `<command>_info` (the device's result), which is
what the control centre's screen shows beside each command.
"""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import datetime
from typing import Any

from datamodels.der import BATTERY_TYPE, COMMANDS, PV_TYPE, commands_of
from fiware_client import attribute_value, parse_time

DER_TYPES = (BATTERY_TYPE, PV_TYPE)
FLEET_MEAN_ATTRIBUTE = "fleetMeanStatusPercent"  # what the fleet controller writes on each battery it steers
FLEET_DECISION_ATTRIBUTE = "fleetControlState"
BATTERY_ATTRS = ("statusPercent", "batteryPower", "acPowerInput", "acPowerOutput", "energyCapacity",
                 "maxChargePower", "chargeState", "batteryPowerSetpointActive", "deviceState", "controlState",
                 "dateObserved")
PV_ATTRS = ("activePower", "dcPower", "pvPowerLimitActive", "inverterOperatingState", "deviceState",
            "controlState", "dateObserved", "totalActiveEnergyExport")


def period_s(times: list[str]) -> float | None:
    """A device's reporting period: the median interval between its last observation times."""
    moments = sorted({parse_time(t).timestamp() for t in times})
    gaps = [b - a for a, b in itertools.pairwise(moments) if b > a]
    return round(statistics.median(gaps), 3) if gaps else None


def site_device(entity_id: str) -> str:
    """`urn:ngsi-ld:BatteryStatus:home-001` -> `home-001` (the id a member's token lists)."""
    return entity_id.rsplit(":", 1)[-1]


def observed_at(entity: dict[str, Any]) -> str | None:
    """When the device was last read: `dateObserved`'s value, else the newest `observedAt` of any attribute."""
    stamp = attribute_value(entity.get("dateObserved")) if isinstance(entity.get("dateObserved"), dict) else None
    if isinstance(stamp, dict):
        stamp = stamp.get("@value")
    if isinstance(stamp, str):
        try:
            parse_time(stamp)
            return stamp
        except ValueError:
            pass
    times = [a["observedAt"] for a in entity.values() if isinstance(a, dict) and isinstance(a.get("observedAt"), str)]
    return max(times, key=lambda t: parse_time(t)) if times else None


def _commands(entity: dict[str, Any], entity_type: str) -> dict[str, Any]:
    out = {}
    for command in commands_of(entity_type):
        status = attribute_value(entity.get(f"{command.name}_status"))
        info = attribute_value(entity.get(f"{command.name}_info"))
        out[command.name] = {"status": status if isinstance(status, str) else None,
                             "info": info if info not in ("", " ") else None,
                             "unitCode": command.unit_code, "minimum": command.minimum,
                             "maximum": command.maximum, "description": command.description}
    return out


def der_json(entity: dict[str, Any]) -> dict[str, Any] | None:
    """One battery or inverter entity (normalized) as the page's JSON; None for any other entity."""
    entity_type = entity.get("type")
    entity_id = entity.get("id")
    if entity_type not in DER_TYPES or not isinstance(entity_id, str):
        return None
    names = BATTERY_ATTRS if entity_type == BATTERY_TYPE else PV_ATTRS
    values = {name: attribute_value(entity[name]) for name in names if name in entity and name != "dateObserved"}
    out = {"id": entity_id, "type": entity_type, "device": site_device(entity_id),
           "observedAt": observed_at(entity), "values": values, "commands": _commands(entity, entity_type)}
    if entity_type == BATTERY_TYPE:
        for name in (FLEET_MEAN_ATTRIBUTE, FLEET_DECISION_ATTRIBUTE):
            if name in entity:
                out[name] = attribute_value(entity[name])
    return out


def fleet_mean(batteries: list[dict[str, Any]], live: set[str]) -> float | None:
    """Mean state of charge (fraction 0-1) of the batteries that report now (`live`: their ids); None if none."""
    socs = [b["values"]["statusPercent"] for b in batteries
            if b["id"] in live and isinstance(b["values"].get("statusPercent"), (int, float))]
    return round(sum(socs) / len(socs), 4) if socs else None


def device_state(observed: str | None, period_s: float | None, now: datetime) -> tuple[str, float | None]:
    """live / stale / offline, as the page's JavaScript decides it (common.js meterState), and the age in s."""
    if observed is None:
        return "never", None
    try:
        age = (now - parse_time(observed)).total_seconds()
    except ValueError:
        return "offline", None
    p = period_s if period_s and period_s > 0 else 5.0
    if age <= max(3 * p, p + 5):
        return "live", round(age, 1)
    if age <= max(60.0, 10 * p):
        return "stale", round(age, 1)
    return "offline", round(age, 1)


class CommandError(ValueError):
    """A command the page refuses before it reaches the broker (the reason is the response's detail)."""


def check_command(entity_id: str, name: str, value: Any) -> tuple[str, Any]:
    """The (entity type, value to send) of a valid command; CommandError with the reason otherwise.

    `value` None releases the command (the NGSI-LD null the agent turns into `null` on the device's /cmd)."""
    command = next((c for c in COMMANDS if c.name == name), None)
    if command is None:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(c.name for c in COMMANDS)}")
    prefix = f"urn:ngsi-ld:{command.entity_type}:"
    if not isinstance(entity_id, str) or not entity_id.startswith(prefix) or len(entity_id) == len(prefix):
        raise CommandError(f"{name} goes to a {command.entity_type} entity ({prefix}<device>)")
    if value is None:
        return command.entity_type, "urn:ngsi-ld:null"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError(f"{name} takes a number in {command.unit_code}, or null to release it")
    if command.minimum is not None and value < command.minimum:
        raise CommandError(f"{name} = {value} is below its minimum {command.minimum:g}")
    if command.maximum is not None and value > command.maximum:
        raise CommandError(f"{name} = {value} is above its maximum {command.maximum:g}")
    return command.entity_type, round(value) if command.unit_code == "WTT" else value
