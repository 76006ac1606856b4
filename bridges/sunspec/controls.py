"""Commands on a device: validate, write the SunSpec control registers, read them back, verify; the watchdog.

Command names, units and ranges are `datamodels.der.COMMANDS`. How each is written (SunSpec models 124 and 123):
- `batteryPowerSetpoint` W (+ charge / - discharge): 124 `StorCtl_Mod` bit 0 (CHARGE) with `InWRte` =
  W / WChaMax x 100 %, or bit 1 (DISCHARGE) with `OutWRte`; `null` returns the battery to auto (StorCtl_Mod 0).
  |W| above WChaMax is refused with a reason, never clamped.
- `pvPowerLimit` % of WMax and `exportLimit` W: one production cap, 123 `WMaxLimPct` with `WMaxLim_Ena` = 1, or
  on a device with the IEEE 1547 DER models instead, 704 `WMaxLimPct` with `WMaxLimPctEna` = 1 (WMax from 121,
  or 702 `WMax` / `WMaxRtg`; `registers.CAP_CONTROLS`).
  Without a meter at the point of connection the inverter cannot know the house load, so an export limit is
  enforced as a production cap of the same power (never exports more; may curtail more than needed). When both
  are held, the lower cap wins; `null` lifts one, and the cap is disabled when neither is held.
Every write is read back and compared register by register; a difference is an error result.

The device's own revert timer (124 `InOutWRte_RvrtTms`, 123 `WMaxLimPct_RvrtTms`, 704 `WMaxLimPctRvrtTms`) is left as the device has it:
it is the safety net that returns the inverter to auto if the bridge dies. The watchdog keeps an accepted command
alive by re-writing it every `margin x timeout` seconds, and each poll compares the registers with what is held:
a difference is a revert the watchdog could not prevent (the device's timer fired early, someone else wrote, the
device restarted). It is counted, logged, shown as `controlState = reverted:<command>` in the twin, and the
command is re-asserted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sunspec2.device as ss_device

from datamodels.der import COMMANDS_BY_NAME

from .discovery import DeviceMap, FoundModel
from .models import ScaleFactorMissing, encode_point, parse_model, point_offset, raw_for, scaled
from .reader import storage_setpoint_w
from .registers import CAP_CONTROLS, WMAX_SOURCES
from .transport import ModbusFault, ModbusLink

log = logging.getLogger(__name__)

CHARGE, DISCHARGE = 0x1, 0x2
PV_CAP_COMMANDS = ("pvPowerLimit", "exportLimit")


class CommandRefused(Exception):
    """The command cannot be executed as given; the message is the `error` of the result."""


@dataclass
class Hold:
    """An accepted command the watchdog keeps alive."""

    command: str
    value: float
    asserted_at: float
    revert_s: float  # the device's revert timeout (0: the device does not revert)
    expected: float  # what the poll must read back (W for the battery, % cap for the inverter)


def check_value(command: str, value: Any) -> float | None:
    """The command's value as a number (or None to release it); CommandRefused with the reason otherwise."""
    spec = COMMANDS_BY_NAME[command]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandRefused(f"{command} takes a number in {spec.unit_code} or null, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise CommandRefused(f"{command} {value} is below {spec.minimum} ({spec.unit_code})")
    if spec.maximum is not None and value > spec.maximum:
        raise CommandRefused(f"{command} {value} is above {spec.maximum} ({spec.unit_code})")
    return float(value)


class DeviceControls:
    """Writes, read-backs and holds for one device."""

    def __init__(self, name: str, link: ModbusLink, clock: Callable[[], float], margin: float = 0.5,
                 minimum_s: float = 1.0) -> None:
        self.name = name
        self.link = link
        self.clock = clock
        self.margin = margin
        self.minimum_s = minimum_s
        self.device_map: DeviceMap | None = None
        self.holds: dict[str, Hold] = {}
        self.reasserts = 0
        self.reverts = 0  # reverts the watchdog could not prevent
        self.last_revert: str | None = None
        self.on_change: Callable[[], None] | None = None  # the set of holds changed (the bridge saves them)

    # ---- helpers ------------------------------------------------------------------------------------------
    def _model(self, *model_ids: int) -> FoundModel:
        if self.device_map is None:
            raise CommandRefused("the device has not been discovered yet (is it answering?)")
        found = self.device_map.find(*model_ids)
        if found is None:
            raise CommandRefused(f"the device has no usable SunSpec model {'/'.join(map(str, model_ids))}")
        return found

    async def _read(self, found: FoundModel) -> ss_device.Model:
        assert self.device_map is not None
        registers = await self.link.read(found.address, found.length + 2, self.device_map.unit)
        return parse_model(found.model_id, registers)

    async def _write_points(self, found: FoundModel, points: dict[str, int]) -> None:
        """Write raw point values, one request per run of adjacent points (read-only gaps are never written)."""
        assert self.device_map is not None
        ordered = sorted(points.items(), key=lambda item: point_offset(found.model_id, item[0]))
        run_start, run_values, next_offset = None, [], None
        for name, raw in ordered:
            offset = point_offset(found.model_id, name)
            registers = encode_point(found.model_id, name, raw)
            if run_start is not None and offset == next_offset:
                run_values.extend(registers)
            else:
                if run_start is not None:
                    await self.link.write(found.address + run_start, run_values, self.device_map.unit)
                run_start, run_values = offset, list(registers)
            next_offset = offset + len(registers)
        if run_start is not None:
            await self.link.write(found.address + run_start, run_values, self.device_map.unit)

    @staticmethod
    def _verify(model: ss_device.Model, points: dict[str, int]) -> None:
        for name, raw in points.items():
            got = model.points[name].value
            if got != raw:
                raise CommandRefused(f"read back {name} = {got}, written {raw}: the device did not keep the value")

    # ---- battery ------------------------------------------------------------------------------------------
    async def _battery(self, watts: float | None) -> tuple[float | None, float]:
        found = self._model(124)
        model = await self._read(found)
        try:
            wmax = scaled(model, "WChaMax")
            if wmax is None or wmax <= 0:
                raise CommandRefused("124 WChaMax is not implemented: the battery's power limit is unknown")
            if watts is None:
                points = {"StorCtl_Mod": 0, "InWRte": raw_for(model, "InWRte", 100),
                          "OutWRte": raw_for(model, "OutWRte", 100)}
            elif abs(watts) > wmax:
                raise CommandRefused(f"{watts:g} W is outside the battery's limits (+/-{wmax:g} W, 124 WChaMax)")
            elif watts >= 0:
                points = {"StorCtl_Mod": CHARGE, "InWRte": raw_for(model, "InWRte", watts / wmax * 100.0)}
            else:
                points = {"StorCtl_Mod": DISCHARGE, "OutWRte": raw_for(model, "OutWRte", -watts / wmax * 100.0)}
        except ScaleFactorMissing as exc:
            raise CommandRefused(str(exc)) from None
        # Rates first, then the mode: the battery never runs a new mode at the old rate.
        rates = {k: v for k, v in points.items() if k != "StorCtl_Mod"}
        await self._write_points(found, rates)
        await self._write_points(found, {"StorCtl_Mod": points["StorCtl_Mod"]})
        back = await self._read(found)
        self._verify(back, points)
        read_w = storage_setpoint_w(back)
        return read_w, float(back.points["InOutWRte_RvrtTms"].value or 0)

    # ---- PV cap -------------------------------------------------------------------------------------------
    async def _wmax(self) -> float:
        assert self.device_map is not None
        for model_id, point in WMAX_SOURCES:
            found = self.device_map.find(model_id)
            if found is not None:
                try:
                    value = scaled(await self._read(found), point)
                except ScaleFactorMissing:
                    continue
                if value:
                    return float(value)
        raise CommandRefused("the inverter's WMax is unknown (no usable 121 WMax, 702 WMax/WMaxRtg or 120 WRtg)")

    async def _pv_cap(self, pending: dict[str, float | None]) -> tuple[float | None, float, float]:
        """Write the cap implied by the held PV commands plus `pending`; (cap % or None, timeout, WMax)."""
        found = self._model(*(c.model_id for c in CAP_CONTROLS))
        points_of = next(c for c in CAP_CONTROLS if c.model_id == found.model_id)
        wmax = await self._wmax()
        wanted = {name: hold.value for name, hold in self.holds.items() if name in PV_CAP_COMMANDS}
        wanted.update(pending)
        caps = []
        if wanted.get("pvPowerLimit") is not None:
            caps.append(wanted["pvPowerLimit"])
        if wanted.get("exportLimit") is not None:
            caps.append(min(100.0, wanted["exportLimit"] / wmax * 100.0))
        model = await self._read(found)
        try:
            if caps:
                cap = min(caps)
                points = {points_of.limit: raw_for(model, points_of.limit, cap), points_of.enable: 1}
            else:
                cap = None
                points = {points_of.enable: 0}
        except ScaleFactorMissing as exc:
            raise CommandRefused(str(exc)) from None
        # The limit first, then the enable: the inverter never runs the cap at the old limit.
        await self._write_points(found, {k: v for k, v in points.items() if k != points_of.enable})
        await self._write_points(found, {points_of.enable: points[points_of.enable]})
        back = await self._read(found)
        self._verify(back, points)
        read_pct = scaled(back, points_of.limit) if back.points[points_of.enable].value == 1 else None
        return read_pct, float(back.points[points_of.revert_s].value or 0), wmax

    # ---- entry points -------------------------------------------------------------------------------------
    async def execute(self, command: str, value: Any) -> dict[str, Any]:
        """Run one command; the `/cmdexe` result object (ok + written + readBack + unitCode, or an error)."""
        spec = COMMANDS_BY_NAME.get(command)
        if spec is None:
            return {"ok": False, "error": f"unknown command {command!r}; this device takes "
                                          f"{', '.join(sorted(COMMANDS_BY_NAME))}"}
        try:
            number = check_value(command, value)
            now = self.clock()
            if command == "batteryPowerSetpoint":
                read_back, timeout = await self._battery(number)
                expected = read_back if read_back is not None else 0.0
            else:
                cap, timeout, wmax = await self._pv_cap({command: number})
                expected = cap if cap is not None else 100.0
                read_back = (cap if command == "pvPowerLimit" else
                             (None if cap is None else round(cap * wmax / 100.0, 3)))
            if number is None:
                self.holds.pop(command, None)
            else:
                self.holds[command] = Hold(command, number, now, timeout, expected)
            for other in PV_CAP_COMMANDS:  # one cap register: every PV hold now expects the same read-back
                if command in PV_CAP_COMMANDS and other in self.holds:
                    self.holds[other].expected = expected
                    self.holds[other].asserted_at = now
            if self.on_change is not None:
                self.on_change()
        except CommandRefused as exc:
            log.warning("%s: command %s=%r refused: %s", self.name, command, value, exc)
            return {"ok": False, "error": str(exc)}
        except ModbusFault as fault:
            log.warning("%s: command %s=%r failed: %s", self.name, command, value, fault)
            return {"ok": False, "error": f"modbus {fault.kind}: {fault.detail}"}
        log.info("%s: %s = %s %s written and read back (%s)", self.name, command, value, spec.unit_code, read_back)
        return {"ok": True, "written": number, "readBack": read_back, "unitCode": spec.unit_code}

    async def reassert_due(self) -> int:
        """Re-write every hold whose device timer would fire before the next check; how many were written."""
        now = self.clock()
        done = 0
        due_battery = self._due("batteryPowerSetpoint", now)
        if due_battery:
            await self._battery(self.holds["batteryPowerSetpoint"].value)
            self.holds["batteryPowerSetpoint"].asserted_at = now
            done += 1
        if any(self._due(name, now) for name in PV_CAP_COMMANDS):
            await self._pv_cap({})
            for name in PV_CAP_COMMANDS:
                if name in self.holds:
                    self.holds[name].asserted_at = now
            done += 1
        self.reasserts += done
        return done

    def _due(self, name: str, now: float) -> bool:
        hold = self.holds.get(name)
        if hold is None or hold.revert_s <= 0:
            return False
        return now - hold.asserted_at >= max(self.minimum_s, self.margin * hold.revert_s)

    def next_due_in(self) -> float | None:
        """Seconds until the next re-assertion (None: nothing held with a timer)."""
        now = self.clock()
        waits = [max(self.minimum_s, self.margin * h.revert_s) - (now - h.asserted_at)
                 for h in self.holds.values() if h.revert_s > 0]
        return max(0.0, min(waits)) if waits else None

    def reverted(self, values: dict[str, dict[str, Any]]) -> list[str]:
        """Holds whose registers no longer read as held (from a poll's decoded values)."""
        found = []
        battery = values.get("BatteryStatus", {}).get("batteryPowerSetpointActive")
        hold = self.holds.get("batteryPowerSetpoint")
        if hold is not None and battery is not None and abs(battery - hold.expected) > max(1.0, abs(hold.expected)
                                                                                             * 0.01):
            found.append(hold.command)
        cap = values.get("PhotovoltaicMeasurement", {}).get("pvPowerLimitActive")
        for name in PV_CAP_COMMANDS:
            hold = self.holds.get(name)
            if hold is not None and cap is not None and abs(cap - hold.expected) > 0.5:
                found.append(name)
        return found

    def read_back(self, command: str, values: dict[str, dict[str, Any]]) -> float | None:
        """What the poll read for a command, in the command's unit (W for the battery and the export limit)."""
        if command == "batteryPowerSetpoint":
            return values.get("BatteryStatus", {}).get("batteryPowerSetpointActive")
        cap = values.get("PhotovoltaicMeasurement", {}).get("pvPowerLimitActive")
        if cap is None or command == "pvPowerLimit":
            return cap
        hold = self.holds.get(command)
        return None if hold is None or not hold.expected else round(hold.value * cap / hold.expected, 3)

    async def handle_reverts(self, names: list[str]) -> None:
        """Count and log reverts the watchdog did not prevent, then re-assert the commands."""
        for name in names:
            hold = self.holds[name]
            self.reverts += 1
            self.last_revert = name
            log.warning("%s: %s = %g was reverted by the device (held since %.0f s, device timeout %.0f s); "
                        "re-asserting", self.name, name, hold.value, self.clock() - hold.asserted_at, hold.revert_s)
        if "batteryPowerSetpoint" in names:
            await self._battery(self.holds["batteryPowerSetpoint"].value)
            self.holds["batteryPowerSetpoint"].asserted_at = self.clock()
        if any(name in PV_CAP_COMMANDS for name in names):
            await self._pv_cap({})
            for name in PV_CAP_COMMANDS:
                if name in self.holds:
                    self.holds[name].asserted_at = self.clock()
        self.reasserts += len(names)
