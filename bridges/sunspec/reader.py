"""One poll of a device: read the models the register map needs, decode them, produce attribute values.

Pure decoding sits in `decode()` (parsed models -> values + problems), so the mapping rules are tested without a
socket; `read_models()` does the Modbus part (one read request per model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sunspec2.device as ss_device

from datamodels.der import BATTERY_TYPE, PV_TYPE

from .discovery import DeviceMap
from .models import ScaleFactorMissing, parse_model, point_defs, scaled
from .registers import (
    BATTERY_MODELS,
    BATTERY_W_SIGN,
    CAP_CONTROLS,
    PV_MODELS,
    REGISTER_MAP,
    Derived,
    Source,
    models_needed,
)
from .transport import ModbusLink


@dataclass(frozen=True)
class Problem:
    """Something wrong with the data (the device still answered): counted and shown in `deviceState`."""

    kind: str  # sf-not-implemented | map-mismatch
    detail: str


@dataclass
class Decoded:
    """Attribute values per entity type, and what could not be read."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def roles(device_map: DeviceMap) -> list[str]:
    """The entity types a device maps to: PV if it has an inverter model, battery if a storage model."""
    found = []
    if device_map.find(*PV_MODELS):
        found.append(PV_TYPE)
    if device_map.find(*BATTERY_MODELS):
        found.append(BATTERY_TYPE)
    return found


async def read_models(link: ModbusLink, device_map: DeviceMap, wanted: set[int] | None = None,
                      raw: dict[int, list[int]] | None = None) -> dict[int, ss_device.Model]:
    """Read and parse every usable model of the map that the register table needs (or `wanted`).

    With `raw` (a dict to fill), every model of the map is read, mismatched ones included, and its registers
    are stored by address: the image the bridge re-serves to local readers (reserve.py).
    """
    wanted = models_needed() if wanted is None else wanted
    parsed: dict[int, ss_device.Model] = {}
    for model in device_map.models:
        needed = model.usable and model.model_id in wanted and model.model_id not in parsed
        if needed or raw is not None:
            registers = await link.read(model.address, model.length + 2, device_map.unit)
            if raw is not None:
                raw[model.address] = registers
            if needed:
                parsed[model.model_id] = parse_model(model.model_id, registers)
    return parsed


def _symbol(model_id: int, point: str, raw: Any) -> str | None:
    for symbol in point_defs(model_id)[point].get("symbols", []):
        if symbol["value"] == raw:
            return str(symbol["name"])
    return None if raw is None else str(raw)


def _source_value(source: Source, parsed: dict[int, ss_device.Model]) -> tuple[bool, Any]:
    """(found, value): found is False when none of the source's models is present."""
    for model_id in source.model_ids:
        model = parsed.get(model_id)
        if model is None:
            continue
        if source.enum:
            return True, _symbol(model_id, source.point, model.points[source.point].value)
        value = scaled(model, source.point)  # may raise ScaleFactorMissing
        return True, None if value is None else round(value * source.factor, 6)
    return False, None


def _derived(entity_type: str, attribute: str, parsed: dict[int, ss_device.Model], done: dict[str, Any]) -> Any:
    if attribute == "pvPowerLimitActive":
        cap = next((c for c in CAP_CONTROLS if c.model_id in parsed), None)
        if cap is None:
            return None
        controls = parsed[cap.model_id]
        return scaled(controls, cap.limit) if controls.points[cap.enable].value == 1 else 100
    if attribute == "batteryPower" and 802 in parsed:
        watts = scaled(parsed[802], "W")
        return None if watts is None else BATTERY_W_SIGN * watts
    if attribute in ("acPowerInput", "acPowerOutput") and done.get("batteryPower") is not None:
        power = done["batteryPower"]
        return max(power, 0) if attribute == "acPowerInput" else max(-power, 0)
    if attribute == "batteryPowerSetpointActive" and 124 in parsed:
        return storage_setpoint_w(parsed[124])
    return None


def storage_setpoint_w(storage: ss_device.Model) -> float | None:
    """The battery setpoint a model 124 holds, in W (+ charge): what `batteryPowerSetpoint` reads back as."""
    mode = storage.points["StorCtl_Mod"].value
    wmax = scaled(storage, "WChaMax")
    if mode is None or wmax is None:
        return None
    if mode & 0x1 and not mode & 0x2:
        rate = scaled(storage, "InWRte")
        return None if rate is None else round(wmax * rate / 100.0, 3)
    if mode & 0x2 and not mode & 0x1:
        rate = scaled(storage, "OutWRte")
        return None if rate is None else round(-wmax * rate / 100.0, 3)
    return 0.0


def decode(device_map: DeviceMap, parsed: dict[int, ss_device.Model]) -> Decoded:
    """Attribute values for each of the device's entity types, per the register table."""
    result = Decoded()
    for model in device_map.mismatches():
        result.problems.append(Problem("map-mismatch", f"model {model.model_id} ({model.name}): {model.problem}"))
    for entity_type in roles(device_map):
        values: dict[str, Any] = {}
        for (row_type, attribute), sources in REGISTER_MAP.items():
            if row_type != entity_type:
                continue
            for source in sources:
                try:
                    if isinstance(source, Derived):
                        value = _derived(entity_type, attribute, parsed, values)
                        found = value is not None
                    else:
                        found, value = _source_value(source, parsed)
                except ScaleFactorMissing as exc:
                    result.problems.append(Problem("sf-not-implemented", f"{attribute}: {exc}"))
                    break
                if found:
                    if value is not None:
                        values[attribute] = value
                    break
        result.values[entity_type] = values
    return result
