"""SunSpec model definitions, register encoding and scale factors, on top of pysunspec2's model files.

pysunspec2 ships the SunSpec Alliance's information-model definitions (JSON, one per model number) and a point
codec; this module adds what a Modbus bridge needs around them: where a SunSpec map starts, the fixed length of
each model, and scaling with the SunSpec rules (SunSpec Information Model Specification v1.0, "Scale factors"):
a value is `raw * 10**sf`, and a scale factor register holding 0x8000 (-32768) means "not implemented", so every
point scaled by it has no value, whatever its own register holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import sunspec2.device as ss_device
import sunspec2.mdef as ss_mdef

# 'SunS' in two registers, the SunSpec map marker; searched at these base addresses, in this order (the SunSpec
# Modbus specification lists 40000, 0 and 50000 as the well-known bases; 40000 is by far the most common).
SUNS_MARKER = (0x5375, 0x6E53)
BASE_ADDRESSES = (40000, 0, 50000)
END_MODEL_ID = 0xFFFF  # the end-of-map marker: model id 0xFFFF, length 0
SF_NOT_IMPLEMENTED = -32768  # 0x8000 as int16

# Models this bridge reads (more are listed by `scan`, but not mapped).
INVERTER_MODELS = (101, 102, 103)
DER_AC_MODEL = 701
STORAGE_MODELS = (124, 802, 713)


class UnknownModel(KeyError):
    """pysunspec2 has no definition for a model id (vendor-specific range or a corrupt map)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the SunSpec definition says about one model."""

    model_id: int
    name: str  # the definition's group name, e.g. "inverter_single_phase"
    label: str
    fixed_length: int  # registers after ID and L for the fixed part
    repeat_length: int  # registers of one repeating-group instance (0: none)

    def length_fits(self, length: int) -> bool:
        """Whether a device's declared L is a valid length for this model (fixed part + whole repeats)."""
        if self.repeat_length == 0:
            return length == self.fixed_length
        extra = length - self.fixed_length
        return extra >= 0 and extra % self.repeat_length == 0


@cache
def model_def(model_id: int) -> dict[str, Any]:
    """The parsed SunSpec definition of a model (pysunspec2's JSON)."""
    try:
        return ss_device.get_model_def(model_id)
    except Exception as exc:  # noqa: BLE001 (pysunspec2 raises a bare Exception for a missing file)
        raise UnknownModel(f"no SunSpec definition for model {model_id}: {exc}") from None


def _points_length(points: list[dict[str, Any]]) -> int:
    total = 0
    for point in points:
        info = ss_device.mb.point_type_info[point[ss_mdef.TYPE]]
        total += int(point.get(ss_mdef.SIZE, info.len))
    return total


def _fixed_group(group: dict[str, Any]) -> bool:
    """A sub-group present exactly `count` times (no count: once), as 704's PFWInj; 0 or a point name repeats."""
    count = group.get("count", 1)
    return isinstance(count, int) and count > 0


def _group_length(group: dict[str, Any]) -> int:
    """Registers of a group's fixed part: its points and its fixed sub-groups (count times each)."""
    return _points_length(group.get("points", [])) + sum(
        int(sub.get("count", 1)) * _group_length(sub) for sub in group.get("groups", []) if _fixed_group(sub))


@cache
def model_info(model_id: int) -> ModelInfo:
    """Name, label and lengths of a model, from its definition (SunSpec Information Model Specification:
    a group without `count` appears once and belongs to the fixed block; `count` 0 or a point name repeats)."""
    definition = model_def(model_id)
    group = definition["group"]
    fixed = _group_length(group) - 2  # ID and L are not counted in L
    repeat = sum(_group_length(sub) for sub in group.get("groups", []) if not _fixed_group(sub))
    return ModelInfo(model_id, group["name"], group.get("label", group["name"]), fixed, repeat)


def point_defs(model_id: int) -> dict[str, dict[str, Any]]:
    """The fixed-part point definitions of a model, by point name."""
    return {point["name"]: point for point in model_def(model_id)["group"]["points"]}


def new_model(model_id: int) -> ss_device.Model:
    """An empty pysunspec2 model (every point unimplemented) with ID and L set from the definition."""
    model = ss_device.Model(model_id)
    model.points["ID"].set_value(model_id)
    model.points["L"].set_value(model_info(model_id).fixed_length)
    return model


def parse_model(model_id: int, registers: list[int]) -> ss_device.Model:
    """A pysunspec2 model decoded from its registers (ID and L first); unimplemented points read as None."""
    data = b"".join(int(value & 0xFFFF).to_bytes(2, "big") for value in registers)
    return ss_device.Model(model_id, model_len=len(registers) - 2, data=data)


def model_registers(model: ss_device.Model) -> list[int]:
    """The register image of a model, ID and L included."""
    data = model.get_mb()
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


class ScaleFactorMissing(ValueError):
    """A point's scale factor register holds 0x8000 ("not implemented"): the point has no usable value."""


def scaled(model: ss_device.Model, name: str) -> float | int | None:
    """A point's value in its SunSpec unit (`raw * 10**sf`), None when the point is not implemented.

    Raises ScaleFactorMissing when the point is implemented but its scale factor is 0x8000: the raw number
    alone would be off by an unknown power of ten, so it must not be published.
    """
    point = model.points[name]
    raw = point.value
    if raw is None:
        return None
    if not point.sf_required:
        return raw
    if point.sf is None:  # a fixed scale factor written in the definition
        exponent = point.sf_value or 0
    else:
        sf_point = model.points.get(point.sf)
        exponent = sf_point.value if sf_point is not None else None
        if exponent is None or exponent == SF_NOT_IMPLEMENTED:
            raise ScaleFactorMissing(f"{name}: scale factor {point.sf} is 0x8000 (not implemented)")
    if exponent == 0:
        return raw
    return round(raw * math.pow(10, exponent), max(0, -exponent))


def set_scaled(model: ss_device.Model, name: str, value: float | None) -> None:
    """Store a value in SunSpec units into a point (raw = value / 10**sf); None marks it unimplemented."""
    point = model.points[name]
    if value is None:
        point.set_value(None)
        return
    exponent = 0
    if point.sf_required:
        if point.sf is None:
            exponent = point.sf_value or 0
        else:
            exponent = model.points[point.sf].value or 0
    if exponent == SF_NOT_IMPLEMENTED:  # a device with a broken scale factor still holds some raw number
        exponent = 0
    point.set_value(round(value / math.pow(10, exponent)))


def raw_for(model: ss_device.Model, name: str, value: float) -> int:
    """The raw register integer that encodes `value` for a point (the scale factor as the model holds it)."""
    point = model.points[name]
    exponent = 0
    if point.sf_required:
        exponent = point.sf_value if point.sf is None else (model.points[point.sf].value or 0)
    if exponent == SF_NOT_IMPLEMENTED:
        raise ScaleFactorMissing(f"{name}: scale factor {point.sf} is 0x8000 (not implemented)")
    return round(value / math.pow(10, exponent or 0))


def point_offset(model_id: int, name: str) -> int:
    """Register offset of a fixed-part point from the model's ID register."""
    offset = 0
    for point in model_def(model_id)["group"]["points"]:
        if point["name"] == name:
            return offset
        info = ss_device.mb.point_type_info[point[ss_mdef.TYPE]]
        offset += int(point.get(ss_mdef.SIZE, info.len))
    raise KeyError(f"model {model_id} has no point {name!r}")


def point_length(model_id: int, name: str) -> int:
    """Registers a fixed-part point occupies."""
    point = point_defs(model_id)[name]
    return int(point.get(ss_mdef.SIZE, ss_device.mb.point_type_info[point[ss_mdef.TYPE]].len))


def encode_point(model_id: int, name: str, raw: int) -> list[int]:
    """Registers for a raw point value (int16/uint16/int32/...) as the definition types it."""
    point = point_defs(model_id)[name]
    info = ss_device.mb.point_type_info[point[ss_mdef.TYPE]]
    size = point_length(model_id, name)
    data = info.to_data(raw, size * 2)
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def decode_point(model_id: int, name: str, registers: list[int]) -> Any:
    """The raw value of a point from its registers (None when it holds the 'not implemented' pattern)."""
    point = point_defs(model_id)[name]
    info = ss_device.mb.point_type_info[point[ss_mdef.TYPE]]
    data = b"".join(int(v & 0xFFFF).to_bytes(2, "big") for v in registers)
    value = info.data_to(data)
    return value if info.is_impl(value) else None
