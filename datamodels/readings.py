"""One meter reading as the power-quality analytics and the page see it, parsed from a ThreePhaseAcMeasurement
entity (normalized or key-values, as a notification or a temporal query delivers it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import three_phase
from .attributes import attribute_value, parse_time
from .measures import MEASUREMENT_TYPE, device_entity_id

PHASES: tuple[str, str, str] = ("L1", "L2", "L3")
_PREFIX = f"urn:ngsi-ld:{MEASUREMENT_TYPE}:"

# The attributes the analytics read (the subscription asks for these only).
ATTRIBUTES: tuple[str, ...] = ("phaseVoltage", "phaseToPhaseVoltage", "current", "frequency", "thdVoltage",
                               "phaseVoltageAngle", "phaseCurrentAngle", "powerQualityStatus", "overcurrentLimit")


@dataclass(frozen=True)
class Reading:
    """The power-quality inputs of one meter at one instant (units as in the measure table)."""

    entity_id: str
    observed_at: datetime
    voltage_v: dict[str, float] = field(default_factory=dict)
    line_voltage_v: dict[str, float] = field(default_factory=dict)
    current_a: dict[str, float] = field(default_factory=dict)
    frequency_hz: float | None = None
    thd_voltage: dict[str, float] = field(default_factory=dict)
    voltage_angle_deg: dict[str, float] = field(default_factory=dict)
    current_angle_deg: dict[str, float] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)
    device_entity: str | None = None
    overcurrent_limit_a: float | None = None  # the meter's overcurrent setting (static attribute overcurrentLimit)

    @property
    def device_id(self) -> str:
        return self.entity_id.removeprefix(_PREFIX)

    @property
    def detected_by(self) -> str:
        """The meter's Device entity id (refDevice when the entity carries it)."""
        return self.device_entity or device_entity_id(self.device_id)

    def has_three_voltages(self) -> bool:
        return all(p in self.voltage_v for p in PHASES)

    def voltages(self) -> tuple[float, float, float]:
        return self.voltage_v["L1"], self.voltage_v["L2"], self.voltage_v["L3"]

    def voltage_unbalance(self) -> float | None:
        """u2 from magnitudes and angles (symmetrical components); None without three voltages."""
        if not self.has_three_voltages():
            return None
        angles = self.voltage_angle_deg
        if "L12" in angles and "L23" in angles:
            return three_phase.voltage_unbalance(self.voltages(), angles["L12"], angles["L23"])
        lines = self.line_voltage_v
        if all(k in lines for k in ("L12", "L23", "L31")):
            return three_phase.unbalance_from_line_voltages(lines["L12"], lines["L23"], lines["L31"])
        return three_phase.voltage_unbalance(self.voltages())

    def _voltage_angles(self) -> tuple[float, float, float]:
        angles = self.voltage_angle_deg
        if "L12" in angles and "L23" in angles:
            return three_phase.voltage_angles_deg(angles["L12"], angles["L23"])
        return 0.0, -120.0, 120.0

    def _phase_currents(self) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
        if not all(p in self.current_a for p in PHASES):
            return None
        currents = (self.current_a["L1"], self.current_a["L2"], self.current_a["L3"])
        phis = tuple(self.current_angle_deg.get(p, 0.0) for p in PHASES)
        return currents, phis  # type: ignore[return-value]

    def current_unbalance(self) -> float | None:
        found = self._phase_currents()
        if found is None:
            return None
        return three_phase.current_unbalance(found[0], found[1], self._voltage_angles())

    def neutral_from_phases_a(self) -> float | None:
        found = self._phase_currents()
        if found is None:
            return None
        return three_phase.neutral_current_from_phases_a(found[0], found[1], self._voltage_angles())


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {k: float(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def reading_from_entity(entity: dict[str, Any], fallback_time: datetime | None = None) -> Reading | None:
    """A Reading from a measurement entity, or None when it carries no observation time and no fallback.

    The instant is the phase voltages' `observedAt` (the meter's TimeInstant), else the latest `observedAt` of any
    attribute, else `fallback_time` (a key-values notification's `notifiedAt`).
    """
    times = []
    for key, attr in entity.items():
        if isinstance(attr, dict) and isinstance(attr.get("observedAt"), str):
            times.append((key, attr["observedAt"]))
    voltage_time = next((t for k, t in times if k == "phaseVoltage"), None)
    if voltage_time is not None:
        observed = parse_time(voltage_time)
    elif times:
        observed = max(parse_time(t) for _, t in times)
    elif fallback_time is not None:
        observed = fallback_time
    else:
        return None
    frequency = attribute_value(entity.get("frequency"))
    flags = attribute_value(entity.get("powerQualityStatus"))
    ref_device = attribute_value(entity.get("refDevice"))
    oc_limit = attribute_value(entity.get("overcurrentLimit"))
    return Reading(
        entity_id=str(entity.get("id")),
        observed_at=observed,
        voltage_v=_numbers(attribute_value(entity.get("phaseVoltage"))),
        line_voltage_v=_numbers(attribute_value(entity.get("phaseToPhaseVoltage"))),
        current_a=_numbers(attribute_value(entity.get("current"))),
        frequency_hz=float(frequency) if isinstance(frequency, (int, float)) and not isinstance(frequency, bool)
        else None,
        thd_voltage=_numbers(attribute_value(entity.get("thdVoltage"))),
        voltage_angle_deg=_numbers(attribute_value(entity.get("phaseVoltageAngle"))),
        current_angle_deg=_numbers(attribute_value(entity.get("phaseCurrentAngle"))),
        flags={k: v for k, v in flags.items() if isinstance(v, bool)} if isinstance(flags, dict) else {},
        device_entity=ref_device if isinstance(ref_device, str) else None,
        overcurrent_limit_a=float(oc_limit) if isinstance(oc_limit, (int, float)) and not isinstance(oc_limit, bool)
        and oc_limit > 0 else None,
    )


def counter_samples(history: dict[str, list[tuple[datetime, Any]]],
                    attrs: tuple[str, str]) -> list[tuple[datetime, float]]:
    """An energy counter's samples from an attribute history: the total attribute (e.g. totalActiveEnergyImport)
    when the meter reports one, else the sum of its per-phase attribute (e.g. activeEnergyImport {L1, L2, L3}).

    A per-phase sample with any phase missing or not a number is skipped: its sum would understate the energy.
    """
    total, phases = attrs
    if history.get(total):
        return [(t, float(v)) for t, v in history[total] if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = []
    for t, v in history.get(phases, []):
        if not isinstance(v, dict):
            continue
        present = [v[k] for k in PHASES if k in v]
        if present and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in present):
            out.append((t, float(sum(present))))
    return out
