"""The live controller's state and one cycle of it: twin entities in, `batteryPowerSetpoint` commands out.

Pure logic, no I/O: `FleetState` takes BatteryStatus and PhotovoltaicMeasurement entities as the twin sends them
(normalized NGSI-LD, from a query or a subscription's notification), keeps the latest reading of each battery, and
`FleetState.cycle(now)` runs the mean-SoC rule (fleet/rule.py) over the batteries that are live and turns its
kW setpoints into the W the command takes. The service (fleet/service.py) does the talking.

What an entity must carry for its battery to be steered (units as the bridge publishes them, docs/inverters.md):
`statusPercent` (state of charge, fraction 0-1, with `observedAt`), `energyCapacity` (Wh) and `maxChargePower`
(W; SunSpec model 124 rates both charge and discharge against WChaMax, so it bounds both directions unless a
`maxDischargePower` is reported). A battery missing any of them gets no command, with the reason, because a
setpoint computed without its limits could be outside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fiware_client import attribute_value, parse_time
from fleet.battery import BatteryReading, BatterySpec
from fleet.rule import DEFAULT_DEADBAND, DEFAULT_GAIN_PER_H, FleetDecision, mean_soc_setpoints

BATTERY_TYPE = "BatteryStatus"
PV_TYPE = "PhotovoltaicMeasurement"
COMMAND = "batteryPowerSetpoint"
# What the controller reads from each battery entity (the subscription's watched and notified attributes).
BATTERY_ATTRIBUTES = ("statusPercent", "energyCapacity", "maxChargePower", "maxDischargePower", "batteryPower",
                      "deviceState", "refMeter", f"{COMMAND}_status", f"{COMMAND}_info")
PV_ATTRIBUTES = ("activePower",)
# A battery's `refMeter` names its home's grid meter (ThreePhaseAcMeasurement, set at provisioning from the
# bridge's site.yaml `meter:`); its `totalActivePower` (W, + import / - export at the connection point) is what
# the community-surplus term reads.
METER_TYPE = "ThreePhaseAcMeasurement"
METER_ATTRIBUTES = ("totalActivePower",)


def home_of(entity_id: str) -> str:
    """`urn:ngsi-ld:BatteryStatus:home-001` -> `home-001`: the bridge names a home's PV and battery alike."""
    parts = entity_id.split(":", 3)
    return parts[3] if len(parts) == 4 and parts[:2] == ["urn", "ngsi-ld"] else entity_id


def _number(entity: Mapping[str, Any], name: str) -> float | None:
    value = attribute_value(entity[name]) if name in entity else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _observed_s(entity: Mapping[str, Any], name: str) -> float | None:
    """The reading's time (epoch s): the attribute's observedAt, else the entity's dateObserved."""
    attribute = entity.get(name)
    stamp = attribute.get("observedAt") if isinstance(attribute, Mapping) else None
    if stamp is None and "dateObserved" in entity:
        stamp = attribute_value(entity["dateObserved"])
        if isinstance(stamp, Mapping):  # {"@type": "DateTime", "@value": ...}
            stamp = stamp.get("@value")
    if not isinstance(stamp, str):
        return None
    try:
        return parse_time(stamp).timestamp()
    except ValueError:
        return None


@dataclass
class BatteryState:
    """What the controller last knew of one battery, and what it last told it."""

    entity_id: str
    soc: float | None = None
    observed_at_s: float | None = None
    capacity_wh: float | None = None
    max_charge_w: float | None = None
    max_discharge_w: float | None = None
    power_w: float | None = None
    pv_kw: float | None = None
    device_state: str | None = None
    command_status: str | None = None
    command_info: Any = None
    problem: str | None = None  # why the last entity could not be read, if it could not
    last_sent_w: float | None = None
    meter_id: str | None = None  # refMeter: the home's grid meter entity

    def spec(self, reserve: float) -> BatterySpec | str:
        """The limits as a BatterySpec, or why they are unknown."""
        missing = [name for name, value in (("energyCapacity", self.capacity_wh), ("maxChargePower",
                                                                                   self.max_charge_w))
                   if value is None]
        if missing:
            return f"limits unknown: no {' or '.join(missing)} reported"
        assert self.capacity_wh is not None and self.max_charge_w is not None
        discharge_w = self.max_discharge_w if self.max_discharge_w is not None else self.max_charge_w
        try:
            return BatterySpec(self.entity_id, self.capacity_wh / 1000.0, self.max_charge_w / 1000.0,
                               discharge_w / 1000.0, soc_min=reserve)
        except ValueError as exc:
            return f"limits invalid: {exc}"


@dataclass(frozen=True)
class Command:
    """One `batteryPowerSetpoint` to send: W, + charge / - discharge, inside the battery's limits."""

    entity_id: str
    power_w: int
    reason: str


@dataclass(frozen=True)
class Cycle:
    """One cycle's outcome: the commands, the mean it steered to, who was left out and why."""

    commands: tuple[Command, ...]
    mean_soc: float
    excluded: Mapping[str, str]
    live: int
    fleet_power_w: float = 0.0  # what the fleet as a whole was told to do (+ store): parameter + metered surplus
    metered_homes: int = 0  # live batteries whose home's meter reading entered the surplus term


@dataclass
class FleetState:
    """Every battery seen, keyed by entity id; fed by entities, read by `cycle`."""

    period_s: float = 60.0
    stale_periods: int = 3  # a battery whose last reading is older than this many periods leaves the mean
    reserve: float = 0.05  # SoC fraction the fleet never uses (the battery's own reserve stays the battery's)
    fleet_power_w: float = 0.0  # what the fleet as a whole should do (+ store); 0: balance only
    gain_per_h: float = DEFAULT_GAIN_PER_H
    deadband: float = DEFAULT_DEADBAND
    batteries: dict[str, BatteryState] = field(default_factory=dict)
    pv_kw: dict[str, float] = field(default_factory=dict)  # home -> PV power, from PhotovoltaicMeasurement
    refused_entities: int = 0
    use_meters: bool = True  # add the metered community surplus to fleet_power_w (batteries with refMeter)
    meters: dict[str, tuple[float, float]] = field(default_factory=dict)  # meter entity -> (W, observed epoch s)

    @property
    def meter_ids(self) -> list[str]:
        """The grid meters the batteries refer to (what the service reads each cycle)."""
        return sorted({b.meter_id for b in self.batteries.values() if b.meter_id})

    def take(self, entity: Mapping[str, Any]) -> str | None:
        """Fold one notified or queried entity in; returns the reason when it was not usable, else None."""
        entity_id, entity_type = entity.get("id"), entity.get("type")
        if not isinstance(entity_id, str):
            self.refused_entities += 1
            return "entity without an id"
        if entity_type == PV_TYPE:
            pv = _number(entity, "activePower")
            if pv is not None:
                self.pv_kw[home_of(entity_id)] = pv
            return None
        if entity_type == METER_TYPE:
            net_w, observed = _number(entity, "totalActivePower"), _observed_s(entity, "totalActivePower")
            if net_w is None or observed is None:
                self.refused_entities += 1
                return f"{entity_id}: no totalActivePower with observedAt"
            held = self.meters.get(entity_id)
            if held is None or observed >= held[1]:
                self.meters[entity_id] = (net_w, observed)
            return None
        if entity_type != BATTERY_TYPE:
            self.refused_entities += 1
            return f"{entity_id}: type {entity_type!r} is not {BATTERY_TYPE}"
        state = self.batteries.setdefault(entity_id, BatteryState(entity_id))
        for name, attr in (("capacity_wh", "energyCapacity"), ("max_charge_w", "maxChargePower"),
                           ("max_discharge_w", "maxDischargePower"), ("power_w", "batteryPower")):
            if attr in entity:
                setattr(state, name, _number(entity, attr))
        ref = entity.get("refMeter")
        if isinstance(ref, Mapping) and isinstance(ref.get("object"), str):
            state.meter_id = ref["object"]
        for name, attr in (("device_state", "deviceState"), ("command_status", f"{COMMAND}_status"),
                           ("command_info", f"{COMMAND}_info")):
            if attr in entity:
                setattr(state, name, attribute_value(entity[attr]))
        state.problem = None
        if "statusPercent" in entity:
            soc, observed = _number(entity, "statusPercent"), _observed_s(entity, "statusPercent")
            if soc is None or not 0.0 <= soc <= 1.0:
                raw = attribute_value(entity["statusPercent"])
                state.problem = f"statusPercent {raw!r} is not a fraction 0..1"
            elif observed is None:
                state.problem = "statusPercent has no observedAt (and the entity no dateObserved)"
            elif state.observed_at_s is None or observed >= state.observed_at_s:  # a late replay never rewinds
                state.soc, state.observed_at_s = soc, observed
        if state.problem is not None:
            self.refused_entities += 1
        return state.problem

    def cycle(self, now_s: float) -> Cycle:
        """Run the rule once over the batteries known at `now_s` (epoch seconds)."""
        specs: dict[str, BatterySpec] = {}
        readings: dict[str, BatteryReading] = {}
        excluded: dict[str, str] = {}
        for entity_id, state in self.batteries.items():
            spec = state.spec(self.reserve)
            if isinstance(spec, str):
                excluded[entity_id] = spec
                continue
            if state.problem is not None and state.soc is None:
                excluded[entity_id] = state.problem
                continue
            if isinstance(state.device_state, str) and state.device_state not in ("ok", ""):
                excluded[entity_id] = f"deviceState {state.device_state}"
                continue
            specs[entity_id] = spec
            if state.soc is not None and state.observed_at_s is not None:
                readings[entity_id] = BatteryReading(entity_id, state.soc, state.observed_at_s,
                                                     (state.power_w or 0.0) / 1000.0,
                                                     self.pv_kw.get(home_of(entity_id), 0.0))
        period_h = self.period_s / 3600.0
        surplus_w, metered = self.metered_surplus_w(readings, now_s)
        fleet_power_w = self.fleet_power_w + surplus_w
        decision: FleetDecision = mean_soc_setpoints(
            specs, readings, now_s=now_s, fleet_power_kw=fleet_power_w / 1000.0, period_h=period_h,
            stale_after_s=self.stale_periods * self.period_s, gain_per_h=self.gain_per_h, deadband=self.deadband)
        excluded.update(decision.excluded)
        commands = []
        for setpoint in decision.setpoints:
            low_kw, high_kw = specs[setpoint.battery_id].power_limits_kw(readings[setpoint.battery_id].soc,
                                                                         period_h)
            commands.append(Command(setpoint.battery_id, clamp_w(setpoint.power_kw, low_kw, high_kw),
                                    setpoint.reason))
        return Cycle(tuple(commands), decision.mean_soc, excluded, len(decision.setpoints), fleet_power_w, metered)

    def metered_surplus_w(self, readings: Mapping[str, BatteryReading], now_s: float) -> tuple[float, int]:
        """The community's surplus the fleet should store (+) or deficit it should cover (-), W, and from how
        many homes: P_fleet = -sum(load - PV) over the metered homes, as the simulation does.

        A grid meter at a home's connection point measures G = load - PV + battery (W, + import), so
        load - PV = G - battery and the term is sum(battery - G). Only batteries whose own reading and whose
        meter's are fresh (within `stale_periods`) count: an old meter value would steer on a past surplus.
        """
        if not self.use_meters:
            return 0.0, 0
        fresh_s = self.stale_periods * self.period_s
        total, homes = 0.0, 0
        for entity_id, reading in readings.items():
            state = self.batteries[entity_id]
            meter = self.meters.get(state.meter_id or "")
            if meter is None or now_s - meter[1] > fresh_s or now_s - reading.observed_at_s > fresh_s:
                continue
            total += (state.power_w or 0.0) - meter[0]
            homes += 1
        return total, homes


def clamp_w(power_kw: float, low_kw: float, high_kw: float) -> int:
    """Whole watts inside [low, high]: rounded toward zero, so rounding never crosses a limit."""
    watts = max(low_kw, min(high_kw, power_kw)) * 1000.0
    return int(watts)  # int() truncates toward zero

