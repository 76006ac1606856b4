"""The measure table: wire object id <-> ThreePhaseAcMeasurement attribute <-> unitCode <-> value shape.

This is the one source of truth for the meter contract (docs/architecture.md, "The meter contract"). The firmware's object ids, the embedded
agent's mapping, `iot_agent_config/` and the docs are generated from it or checked against it by tests.

Short object ids keep MQTT payloads small on the meter; units on the wire are the model's units (V, A, W, var,
VA, Hz, kWh/kvarh/kVAh, fractions 0-1 for power factor and THD, degrees for angles), so nobody downstream converts.
Unit codes are UN/CEFACT Recommendation 20, as the SDM ThreePhaseAcMeasurement specification uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Shape(str, Enum):
    """How a measure's value is laid out on the wire and in the entity."""

    SCALAR = "scalar"  # one number
    PHASES = "phases"  # {"L1","L2","L3"}
    PHASES_N = "phases_n"  # {"L1","L2","L3","N"} (current with neutral)
    LINE = "line"  # {"L12","L23","L31"} (line-to-line)
    FLAGS = "flags"  # {"<flag>": bool, ...} power-quality status from the chip
    TEXT = "text"  # a short string (the meter's own state)
    BOOL = "bool"  # true / false

    @property
    def keys(self) -> tuple[str, ...]:
        """Keys of an object-shaped value ((), for scalars and flags)."""
        return _SHAPE_KEYS[self]


_SHAPE_KEYS: dict[Shape, tuple[str, ...]] = {
    Shape.SCALAR: (),
    Shape.PHASES: ("L1", "L2", "L3"),
    Shape.PHASES_N: ("L1", "L2", "L3", "N"),
    Shape.LINE: ("L12", "L23", "L31"),
    Shape.FLAGS: (),
    Shape.TEXT: (),
    Shape.BOOL: (),
}

# Flags the firmware may report under the `pq` measure (ADE9000 STATUS1 / EVENT_STATUS, docs/ade9000.md §5).
PQ_FLAGS: tuple[str, ...] = (
    "dipL1",
    "dipL2",
    "dipL3",
    "swellL1",
    "swellL2",
    "swellL3",
    "overcurrent",
    "phaseSequenceError",
)


@dataclass(frozen=True)
class Measure:
    """One row of the table."""

    object_id: str  # key in the MQTT JSON payload
    attribute: str  # NGSI-LD attribute name (Smart Data Models term, or an extra in the model's style)
    unit_code: str | None  # UN/CEFACT Rec 20 code for `unitCode`, None where the value has no unit
    shape: Shape
    in_model: bool  # False: an extra attribute the ThreePhaseAcMeasurement schema does not define
    minimum: float | None = None  # range the official schema (or physics) allows, checked on ingest
    maximum: float | None = None
    description: str = ""
    device_state: bool = False  # True: also kept on the meter's SDM Device entity (by the embedded agent)
    cumulative: bool = False  # True: a counter that only grows; the agent keeps it continuous across resets


# Units: VLT volt, AMP ampere, WTT watt, D44 var, D46 volt-ampere, HTZ hertz, KWH kilowatt hour,
# K3 kilovar hour, C79 kilovolt-ampere hour, C62 "one" (dimensionless), DD degree (angle).
MEASURES: tuple[Measure, ...] = (
    Measure("v", "phaseVoltage", "VLT", Shape.PHASES, True, 0, None, "phase-to-neutral RMS voltage"),
    Measure("vll", "phaseToPhaseVoltage", "VLT", Shape.LINE, True, 0, None, "line-to-line RMS voltage"),
    Measure("i", "current", "AMP", Shape.PHASES_N, True, 0, None, "RMS current per phase and neutral"),
    Measure("p", "activePower", "WTT", Shape.PHASES, True, None, None, "active power, + import / - export"),
    Measure("q", "reactivePower", "D44", Shape.PHASES, True, None, None, "reactive power"),
    Measure("s", "apparentPower", "D46", Shape.PHASES, True, 0, None, "apparent power"),
    Measure("pt", "totalActivePower", "WTT", Shape.SCALAR, True, None, None, "active power, all phases"),
    Measure("qt", "totalReactivePower", "D44", Shape.SCALAR, True, None, None, "reactive power, all phases"),
    Measure("st", "totalApparentPower", "D46", Shape.SCALAR, True, 0, None, "apparent power, all phases"),
    Measure("pf", "powerFactor", "C62", Shape.PHASES, True, -1, 1, "true power factor"),
    Measure("pft", "totalPowerFactor", "C62", Shape.SCALAR, True, -1, 1, "power factor, all phases"),
    Measure("thdv", "thdVoltage", "C62", Shape.PHASES, True, 0, 1, "voltage THD as a fraction"),
    Measure("thdi", "thdCurrent", "C62", Shape.PHASES, True, 0, 1, "current THD as a fraction"),
    Measure("f", "frequency", "HTZ", Shape.SCALAR, True, 0, None, "line frequency"),
    Measure("eai", "activeEnergyImport", "KWH", Shape.PHASES, True, 0, None, "active energy imported",
            cumulative=True),
    Measure("eae", "activeEnergyExport", "KWH", Shape.PHASES, True, 0, None, "active energy exported",
            cumulative=True),
    Measure("eait", "totalActiveEnergyImport", "KWH", Shape.SCALAR, True, 0, None, "active energy imported, all",
            cumulative=True),
    Measure("eaet", "totalActiveEnergyExport", "KWH", Shape.SCALAR, True, 0, None, "active energy exported, all",
            cumulative=True),
    Measure("eri", "reactiveEnergyImport", "K3", Shape.PHASES, True, 0, None, "reactive energy imported",
            cumulative=True),
    Measure("ere", "reactiveEnergyExport", "K3", Shape.PHASES, True, 0, None, "reactive energy exported",
            cumulative=True),
    Measure("esi", "apparentEnergyImport", "C79", Shape.PHASES, True, 0, None, "apparent energy imported",
            cumulative=True),
    Measure("ese", "apparentEnergyExport", "C79", Shape.PHASES, True, 0, None, "apparent energy exported",
            cumulative=True),
    # Extras the model lacks (docs/architecture.md, "The meter contract"): named in the model's style, listed here.
    Measure("avv", "phaseVoltageAngle", "DD", Shape.LINE, False, 0, 360, "angle between phase voltages"),
    Measure("avi", "phaseCurrentAngle", "DD", Shape.PHASES, False, 0, 360, "angle from phase voltage to current"),
    Measure("pq", "powerQualityStatus", None, Shape.FLAGS, False, None, None, "ADE9000 dip/swell/OI/sequence"),
    # The meter's health and clock: "ok" or "fault:<reason>" (no-response, chip-id, spi-crc, chip-reset, config);
    # while a fault lasts the meter sends only this, never values (docs/firmware.md).
    Measure("ds", "deviceState", None, Shape.TEXT, False, None, None, "meter state: ok or fault:<reason>",
            device_state=True),
    Measure("clk", "clockSynced", None, Shape.BOOL, False, None, None,
            "true: TimeInstant is from an NTP-synced clock; false: none sent, observedAt is the arrival time"),
)

MAX_TEXT_CHARS = 64  # a meter state is a word and a reason, never a document

# The observation time key on the wire (IoT Agent JSON convention); becomes `observedAt`.
TIME_INSTANT = "TimeInstant"

BY_OBJECT_ID: dict[str, Measure] = {m.object_id: m for m in MEASURES}
BY_ATTRIBUTE: dict[str, Measure] = {m.attribute: m for m in MEASURES}

MEASUREMENT_TYPE = "ThreePhaseAcMeasurement"
DEVICE_TYPE = "Device"


def measurement_id(device_id: str) -> str:
    """Entity id of a meter's ThreePhaseAcMeasurement (docs/architecture.md, "Identifiers")."""
    return f"urn:ngsi-ld:{MEASUREMENT_TYPE}:{device_id}"


def device_of(entity_id: str) -> str:
    """The meter's device id in a measurement or Device entity id (`meter-001`); other ids come back unchanged."""
    for prefix in (f"urn:ngsi-ld:{MEASUREMENT_TYPE}:", f"urn:ngsi-ld:{DEVICE_TYPE}:"):
        if entity_id.startswith(prefix):
            return entity_id[len(prefix):]
    return entity_id


def device_entity_id(device_id: str) -> str:
    """Entity id of a meter's SDM Device entity (docs/architecture.md, "Identifiers")."""
    return f"urn:ngsi-ld:{DEVICE_TYPE}:{device_id}"


class ShapeError(ValueError):
    """A measure value does not have the shape or range the table gives it."""


def check_value(measure: Measure, value: object) -> None:
    """Raise ShapeError with a reason an operator can read if `value` does not fit `measure`.

    Numbers must be JSON numbers (not bools, not strings); object shapes may carry a subset of their keys
    (a meter without a neutral CT sends no `N`) but no unknown key.
    """
    if measure.shape is Shape.SCALAR:
        _check_number(measure, measure.object_id, value)
        return
    if measure.shape is Shape.TEXT:
        if not isinstance(value, str) or not value:
            raise ShapeError(f"{measure.object_id}: expected a non-empty string, got {type(value).__name__}")
        if len(value) > MAX_TEXT_CHARS:
            raise ShapeError(f"{measure.object_id}: {len(value)} characters, at most {MAX_TEXT_CHARS}")
        return
    if measure.shape is Shape.BOOL:
        if not isinstance(value, bool):
            raise ShapeError(f"{measure.object_id}: expected true or false, got {type(value).__name__}")
        return
    if not isinstance(value, dict):
        raise ShapeError(f"{measure.object_id}: expected a JSON object, got {type(value).__name__}")
    if measure.shape is Shape.FLAGS:
        for key, flag in value.items():
            if key not in PQ_FLAGS:
                raise ShapeError(f"{measure.object_id}: unknown flag {key!r}")
            if not isinstance(flag, bool):
                raise ShapeError(f"{measure.object_id}.{key}: expected true/false")
        return
    allowed = measure.shape.keys
    if not value:
        raise ShapeError(f"{measure.object_id}: empty object, expected keys {', '.join(allowed)}")
    for key, item in value.items():
        if key not in allowed:
            raise ShapeError(f"{measure.object_id}: unknown key {key!r}, expected {', '.join(allowed)}")
        _check_number(measure, f"{measure.object_id}.{key}", item)


def _check_number(measure: Measure, where: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ShapeError(f"{where}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ShapeError(f"{where}: not a finite number")
    if measure.minimum is not None and value < measure.minimum:
        raise ShapeError(f"{where}: {value} is below the minimum {measure.minimum}")
    if measure.maximum is not None and value > measure.maximum:
        raise ShapeError(f"{where}: {value} is above the maximum {measure.maximum}")
