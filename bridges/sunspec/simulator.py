"""A simulated SunSpec home: hybrid PV inverter + battery behind one Modbus server (pymodbus), over real sockets.

The register map is built from pysunspec2's model definitions, so it is what a SunSpec client sees on a real
device: the 'SunS' marker at 40000, then common (1), single- or three-phase inverter (101 / 103), nameplate
(120), settings (121), immediate controls (123), storage (124) and battery (802) models, then the end marker.

Physics, deliberately simple and documented in docs/inverters.md:
- PV: a clear-sky bell over the solar day (06:00-18:00 UTC by default), `rated_w * sin(pi * (h - 6) / 12) ** 1.2`,
  capped by the curtailment limit (123 WMaxLimPct when WMaxLim_Ena is on).
- Battery: power from the storage controls of model 124 (StorCtl_Mod bit 0 charge at InWRte % of WChaMax,
  bit 1 discharge at OutWRte %), else self-consumption (PV surplus over a constant house load, within limits);
  state of charge integrates the power and stops at the 802 SoCMax / SoCMin limits.
- Revert timers: a rate or curtailment written with InOutWRte_RvrtTms / WMaxLimPct_RvrtTms > 0 reverts to
  the default (no control) that many seconds after its last write, as SunSpec specifies; every revert is counted
  (`reverts`), which is how the bench proves the bridge's watchdog left none silent.

Faults for tests: a scale factor reading 0x8000, a model whose declared length differs from its definition,
no SunSpec marker at all, refused writes, and single-client behaviour (a second TCP client is disconnected, as
many inverters do). `clock` can run faster than real time so a day of revert timers fits in seconds.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from .models import (
    BASE_ADDRESSES,
    END_MODEL_ID,
    SF_NOT_IMPLEMENTED,
    SUNS_MARKER,
    model_info,
    model_registers,
    new_model,
    parse_model,
    point_defs,
    point_length,
    point_offset,
    scaled,
    set_scaled,
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS says is free right now (tests and the demo start simulators on these)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


CHARGE_BIT = 0x1  # StorCtl_Mod bit 0: CHARGE
DISCHARGE_BIT = 0x2  # StorCtl_Mod bit 1: DISCHARGE


@dataclass
class HomeConfig:
    """One simulated home; defaults are a typical 4 kWp roof and a 10 kWh, 5 kW battery."""

    unit_id: int = 1
    pv_rated_w: float = 4000.0
    phases: int = 1  # 1 -> model 101, 3 -> model 103
    flavour: str = "classic"  # classic: 1, 101/103, 120, 121, 123, 124, 802; der: 1, 701, 702, 704, 713
    battery: bool = True
    battery_wh: float = 10000.0
    battery_max_w: float = 5000.0
    soc_pct: float = 50.0
    soc_min_pct: float = 10.0
    soc_max_pct: float = 100.0
    house_load_w: float = 500.0
    revert_s: int = 3600  # InOutWRte_RvrtTms, WMaxLimPct_RvrtTms (123) and WMaxLimPctRvrtTms (704) preset
    manufacturer: str = "energytwin"
    model_name: str = "SimHybrid"
    serial: str = "SIM0001"
    solar_noon_utc_h: float = 12.0
    # Faults
    sf_not_implemented: tuple[str, ...] = ()  # scale-factor point names that read 0x8000, e.g. ("W_SF",)
    declared_length: dict[int, int] = field(default_factory=dict)  # model id -> wrong L
    sunspec: bool = True  # False: no marker, the registers hold something else
    refuse_writes: bool = False  # every write answered with exception 04 (server device failure)
    single_client: bool = False


class SimulatedHome:
    """The register image and the physics of one home; `serve()` puts it on a TCP port."""

    def __init__(self, config: HomeConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or HomeConfig()
        self.clock = clock
        self.reverts = 0  # setpoints reverted by the device's own timer
        self.writes = 0
        self.refused_writes = 0
        self.energy_wh = 1_000.0  # lifetime AC energy (model 101 WH); acc32 0 would read as "not implemented"
        self._last_step: float | None = None
        self._last_rate_write: float | None = None
        self._last_limit_write: float | None = None
        self.battery_w = 0.0
        self.pv_w = 0.0
        self._soc_exact: float | None = None  # SoC % unrounded (the register holds it to 0.1 %)
        self.models: dict[int, object] = {}
        self.addresses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._build()

    # ---- register map -------------------------------------------------------------------------------------
    @property
    def inverter_model(self) -> int:
        return 103 if self.config.phases == 3 else 101

    def _build(self) -> None:
        cfg = self.config
        ids = [1, self.inverter_model, 120, 121, 123] + ([124, 802] if cfg.battery else [])
        # The "der" flavour serves the IEEE 1547 DER models (701 AC measurement, 702 capacity, 704 AC controls,
        # 713 storage capacity) instead; the classic models still hold the physics' state, unserved, and 704
        # takes the place of 123 as the production cap (the only control of this flavour: no 124, no battery
        # setpoint).
        der = [1, 701, 702, 704] + ([713] if cfg.battery else [])
        self.served = der if cfg.flavour == "der" else ids
        self.cap_model = 704 if cfg.flavour == "der" else 123
        for model_id in dict.fromkeys(ids + self.served):
            self.models[model_id] = new_model(model_id)
        address = BASE_ADDRESSES[0] + 2
        for model_id in self.served:
            self.addresses[model_id] = address
            address += 2 + self.config.declared_length.get(model_id, model_info(model_id).fixed_length)
        self._end_address = address
        if cfg.flavour == "der":
            for sf, exponent in (("W_SF", 0), ("A_SF", -2), ("V_SF", -1), ("Hz_SF", -2), ("PF_SF", -2),
                                 ("VA_SF", 0), ("Var_SF", 0), ("TotWh_SF", 0), ("TotVarh_SF", 0), ("Tmp_SF", -1)):
                self.models[701].points[sf].set_value(exponent)
            self.models[701].points["ACType"].set_value(1 if cfg.phases == 1 else 3)
            self.models[702].points["W_SF"].set_value(0)
            set_scaled(self.models[702], "WMaxRtg", cfg.pv_rated_w)
            set_scaled(self.models[702], "WMax", cfg.pv_rated_w)
            der_controls = self.models[704]
            der_controls.points["WMaxLimPct_SF"].set_value(0)
            set_scaled(der_controls, "WMaxLimPct", 100)
            set_scaled(der_controls, "WMaxLimPctRvrt", 100)  # on timeout: back to 100 % ...
            der_controls.points["WMaxLimPctEnaRvrt"].set_value(0)  # ... and the cap disabled
            der_controls.points["WMaxLimPctRvrtTms"].set_value(cfg.revert_s)
            der_controls.points["WMaxLimPctRvrtRem"].set_value(0)
            der_controls.points["WMaxLimPctEna"].set_value(0)
            if cfg.battery:
                self.models[713].points["WH_SF"].set_value(0)
                self.models[713].points["Pct_SF"].set_value(-1)
        common = self.models[1]
        common.points["Mn"].set_value(cfg.manufacturer)
        common.points["Md"].set_value(cfg.model_name)
        common.points["Vr"].set_value("1.0.0")
        common.points["SN"].set_value(cfg.serial)
        common.points["DA"].set_value(cfg.unit_id)
        inv = self.models[self.inverter_model]
        for sf, exponent in (("A_SF", -2), ("V_SF", -1), ("W_SF", 0), ("Hz_SF", -2), ("VA_SF", 0), ("VAr_SF", 0),
                             ("PF_SF", -2), ("WH_SF", 0), ("DCA_SF", -2), ("DCV_SF", -1), ("DCW_SF", 0),
                             ("Tmp_SF", -1)):
            inv.points[sf].set_value(exponent)
        nameplate = self.models[120]
        nameplate.points["DERTyp"].set_value(82 if cfg.battery else 4)  # 82: PV_STOR, 4: PV
        nameplate.points["WRtg_SF"].set_value(0)
        set_scaled(nameplate, "WRtg", cfg.pv_rated_w)
        settings = self.models[121]
        settings.points["WMax_SF"].set_value(0)
        set_scaled(settings, "WMax", cfg.pv_rated_w)
        controls = self.models[123]
        controls.points["WMaxLimPct_SF"].set_value(0)
        controls.points["Conn"].set_value(1)
        set_scaled(controls, "WMaxLimPct", 100)
        controls.points["WMaxLimPct_RvrtTms"].set_value(cfg.revert_s)
        controls.points["WMaxLim_Ena"].set_value(0)
        if cfg.battery:
            storage = self.models[124]
            for sf, exponent in (("WChaMax_SF", 0), ("WChaDisChaGra_SF", 0), ("VAChaMax_SF", 0),
                                 ("MinRsvPct_SF", 0), ("ChaState_SF", -1), ("StorAval_SF", -1),
                                 ("InBatV_SF", -1), ("InOutWRte_SF", -1)):
                storage.points[sf].set_value(exponent)
            set_scaled(storage, "WChaMax", cfg.battery_max_w)
            storage.points["StorCtl_Mod"].set_value(0)
            set_scaled(storage, "MinRsvPct", cfg.soc_min_pct)
            set_scaled(storage, "InWRte", 100)
            set_scaled(storage, "OutWRte", 100)
            storage.points["InOutWRte_RvrtTms"].set_value(cfg.revert_s)
            storage.points["ChaGriSet"].set_value(1)  # GRID: charging from the grid allowed
            battery = self.models[802]
            for sf, exponent in (("AHRtg_SF", 0), ("WHRtg_SF", 0), ("WChaDisChaMax_SF", 0), ("SoC_SF", -1),
                                 ("DoD_SF", -1), ("SoH_SF", 0), ("V_SF", -1), ("A_SF", -1), ("W_SF", 0),
                                 ("DisChaRte_SF", 0), ("AMax_SF", 0), ("CellV_SF", -3), ("ModTmp_SF", 0)):
                if sf in battery.points:
                    battery.points[sf].set_value(exponent)
            set_scaled(battery, "WHRtg", cfg.battery_wh)
            set_scaled(battery, "AHRtg", round(cfg.battery_wh / 48))
            set_scaled(battery, "WChaRteMax", cfg.battery_max_w)
            set_scaled(battery, "WDisChaRteMax", cfg.battery_max_w)
            set_scaled(battery, "SoCMax", cfg.soc_max_pct)
            set_scaled(battery, "SoCMin", cfg.soc_min_pct)
            set_scaled(battery, "SoH", 100)
            battery.points["Typ"].set_value(4)  # 4: LITHIUM_ION
            battery.points["State"].set_value(4)  # 4: STANDBY -> 6 CHARGING / 7 DISCHARGING
            battery.points["LocRemCtl"].set_value(0)  # REMOTE
        for name in cfg.sf_not_implemented:
            for model in (self.models[model_id] for model_id in self.served):
                if name in model.points:
                    model.points[name].set_value(SF_NOT_IMPLEMENTED)
        self._step(self.clock())

    def image(self) -> list[int]:
        """The whole register image from the base address (the 'SunS' marker) to the end marker."""
        if not self.config.sunspec:
            return [0x1234] * (self._end_address + 2 - BASE_ADDRESSES[0])
        registers = list(SUNS_MARKER)
        for model_id in self.served:
            block = model_registers(self.models[model_id])
            declared = self.config.declared_length.get(model_id)
            if declared is not None:  # a map that differs from the model: a longer or shorter block, consistently
                block = (block[:2 + declared] + [0] * max(0, declared - len(block) + 2))
                block[1] = declared
            registers.extend(block)
        registers.extend([END_MODEL_ID, 0])
        return registers

    # ---- physics ------------------------------------------------------------------------------------------
    def pv_available_w(self, now: float) -> float:
        hour = (now % 86400) / 3600.0 - (self.config.solar_noon_utc_h - 12.0)
        if not 6.0 < hour < 18.0:
            return 0.0
        return self.config.pv_rated_w * math.sin(math.pi * (hour - 6.0) / 12.0) ** 1.2

    def _step(self, now: float) -> None:
        cfg = self.config
        dt = 0.0 if self._last_step is None else max(0.0, now - self._last_step)
        self._last_step = now
        self._revert_if_due(now)
        limit_pct = self.cap_pct()
        self.pv_w = min(self.pv_available_w(now), cfg.pv_rated_w * (limit_pct or 0) / 100.0)
        if cfg.battery:
            storage, battery = self.models[124], self.models[802]
            soc = scaled(battery, "SoC")
            soc = cfg.soc_pct if soc is None else soc
            if self._soc_exact is not None and abs(soc - round(self._soc_exact, 1)) < 0.01:
                soc = self._soc_exact  # integrate on the exact value: the 0.1 % register would swallow small steps
            soc += self.battery_w * dt / 3600.0 / cfg.battery_wh * 100.0  # integrate the last interval's power
            soc = min(cfg.soc_max_pct, max(cfg.soc_min_pct, soc))
            mode = storage.points["StorCtl_Mod"].value or 0
            if mode & CHARGE_BIT and not mode & DISCHARGE_BIT:
                power = cfg.battery_max_w * (scaled(storage, "InWRte") or 0) / 100.0
            elif mode & DISCHARGE_BIT and not mode & CHARGE_BIT:
                power = -cfg.battery_max_w * (scaled(storage, "OutWRte") or 0) / 100.0
            else:
                power = self.pv_w - cfg.house_load_w
            power = max(-cfg.battery_max_w, min(cfg.battery_max_w, power))
            if (power > 0 and soc >= cfg.soc_max_pct) or (power < 0 and soc <= cfg.soc_min_pct):
                power = 0.0
            self.battery_w = power
            self._soc_exact = soc
            set_scaled(battery, "SoC", round(soc, 1))
            set_scaled(storage, "ChaState", round(soc, 1))
            set_scaled(storage, "StorAval", round(cfg.battery_wh * (soc - cfg.soc_min_pct) / 100.0 / 48.0, 1))
            set_scaled(storage, "InBatV", 48.0 + 6.0 * soc / 100.0)
            charging = 4 if power > 0 else 3 if power < 0 else 6  # ChaSt: 4 CHARGING, 3 DISCHARGING, 6 HOLDING
            storage.points["ChaSt"].set_value(charging)
            battery.points["ChaSt"].set_value(charging)
            battery.points["State"].set_value(6 if power > 0 else 7 if power < 0 else 4)
            if "W" in battery.points:
                set_scaled(battery, "W", -round(power))  # 802 W: + discharging (registers.py, BATTERY_W_SIGN)
        ac_w = self.pv_w - (self.battery_w if cfg.battery else 0.0)  # hybrid: AC output = PV minus charging
        self.energy_wh += max(0.0, ac_w) * dt / 3600.0
        inv = self.models[self.inverter_model]
        volts = 230.0
        set_scaled(inv, "W", round(ac_w))
        set_scaled(inv, "VA", round(abs(ac_w)))
        set_scaled(inv, "VAr", 0)
        set_scaled(inv, "PF", 1.0)
        set_scaled(inv, "Hz", 50.0)
        set_scaled(inv, "A", round(abs(ac_w) / volts / cfg.phases, 2))
        set_scaled(inv, "PhVphA", volts)
        set_scaled(inv, "WH", round(self.energy_wh))
        set_scaled(inv, "DCW", round(self.pv_w))
        set_scaled(inv, "DCV", 380.0)
        set_scaled(inv, "DCA", round(self.pv_w / 380.0, 2))
        set_scaled(inv, "TmpCab", round(25.0 + 15.0 * self.pv_w / cfg.pv_rated_w, 1))
        inv.points["St"].set_value(4 if self.pv_w > 0 else 2)  # 4: MPPT, 2: SLEEPING
        if cfg.flavour == "der":
            der = self.models[701]
            for point, value in (("W", round(ac_w)), ("VA", round(abs(ac_w))), ("A", round(abs(ac_w) / volts, 2)),
                                 ("LNV", volts), ("Hz", 50.0), ("TotWhInj", round(self.energy_wh)),
                                 ("TmpCab", round(25.0 + 15.0 * self.pv_w / cfg.pv_rated_w, 1))):
                set_scaled(der, point, value)
            der.points["St"].set_value(1)  # 1: ON
            if cfg.battery:
                soc = scaled(self.models[802], "SoC") or 0.0
                set_scaled(self.models[713], "WHRtg", cfg.battery_wh)
                set_scaled(self.models[713], "SoC", soc)
                set_scaled(self.models[713], "SoH", 100)
                set_scaled(self.models[713], "WHAvail", round(cfg.battery_wh * soc / 100.0))

    def cap_pct(self) -> float:
        """The production cap in force, % of WMax (100 when disabled)."""
        if self.cap_model == 704:
            controls = self.models[704]
            enabled = controls.points["WMaxLimPctEna"].value == 1
        else:
            controls = self.models[123]
            enabled = controls.points["WMaxLim_Ena"].value == 1
        return (scaled(controls, "WMaxLimPct") or 0.0) if enabled else 100.0

    def _revert_if_due(self, now: float) -> None:
        if self.cap_model == 704:
            self._revert_704_if_due(now)
        else:
            controls = self.models[123]
            timeout = controls.points["WMaxLimPct_RvrtTms"].value or 0
            if (timeout and self._last_limit_write is not None and controls.points["WMaxLim_Ena"].value == 1
                    and now - self._last_limit_write > timeout):
                controls.points["WMaxLim_Ena"].set_value(0)
                set_scaled(controls, "WMaxLimPct", 100)
                self._last_limit_write = None
                self.reverts += 1
        if not self.config.battery:
            return
        storage = self.models[124]
        timeout = storage.points["InOutWRte_RvrtTms"].value or 0
        if (timeout and self._last_rate_write is not None and (storage.points["StorCtl_Mod"].value or 0)
                and now - self._last_rate_write > timeout):
            storage.points["StorCtl_Mod"].set_value(0)
            set_scaled(storage, "InWRte", 100)
            set_scaled(storage, "OutWRte", 100)
            self._last_rate_write = None
            self.reverts += 1

    def _revert_704_if_due(self, now: float) -> None:
        """704's reversion: after WMaxLimPctRvrtTms without a write, the Rvrt limit and enable take over."""
        controls = self.models[704]
        timeout = controls.points["WMaxLimPctRvrtTms"].value or 0
        active = timeout and self._last_limit_write is not None and controls.points["WMaxLimPctEna"].value == 1
        if not active:
            controls.points["WMaxLimPctRvrtRem"].set_value(0)
            return
        remaining = timeout - (now - self._last_limit_write)
        if remaining > 0:
            controls.points["WMaxLimPctRvrtRem"].set_value(math.ceil(remaining))
            return
        controls.points["WMaxLimPct"].set_value(controls.points["WMaxLimPctRvrt"].value)
        controls.points["WMaxLimPctEna"].set_value(controls.points["WMaxLimPctEnaRvrt"].value)
        controls.points["WMaxLimPctRvrtRem"].set_value(0)
        self._last_limit_write = None
        self.reverts += 1

    # ---- Modbus access --------------------------------------------------------------------------------------
    def _locate(self, address: int) -> tuple[int, str] | None:
        """The (model id, point name) a register address falls in, None outside every model."""
        for model_id, start in self.addresses.items():
            offset = address - start
            if 0 <= offset < 2 + model_info(model_id).fixed_length:
                for name in point_defs(model_id):
                    begin = point_offset(model_id, name)
                    if begin <= offset < begin + point_length(model_id, name):
                        return model_id, name
        return None

    def write(self, address: int, values: list[int]) -> ExcCodes | None:
        """Apply a Modbus write (FC 6 / 16): only RW points of the map, values in range, else an exception."""
        with self._lock:
            if self.config.refuse_writes or not self.config.sunspec:
                self.refused_writes += 1
                return ExcCodes.DEVICE_FAILURE
            touched: dict[int, set[str]] = {}
            for index in range(len(values)):
                where = self._locate(address + index)
                if where is None or point_defs(where[0])[where[1]].get("access", "R") != "RW":
                    self.refused_writes += 1
                    return ExcCodes.ILLEGAL_ADDRESS
                touched.setdefault(where[0], set()).add(where[1])
            candidates = {model_id: self._with_write(model_id, address, values) for model_id in touched}
            for model_id, names in touched.items():
                for name in names:
                    value = scaled(candidates[model_id], name)
                    if name in ("InWRte", "OutWRte", "WMaxLimPct") and value is not None and not 0 <= value <= 100:
                        self.refused_writes += 1
                        return ExcCodes.ILLEGAL_VALUE
            now = self.clock()
            for model_id, names in touched.items():
                for name in names:
                    self.models[model_id].points[name].set_value(candidates[model_id].points[name].value)
                if names & {"StorCtl_Mod", "InWRte", "OutWRte"}:
                    self._last_rate_write = now
                if names & {"WMaxLimPct", "WMaxLim_Ena", "WMaxLimPctEna"}:
                    self._last_limit_write = now
            self.writes += 1
            return None

    def _with_write(self, model_id: int, address: int, values: list[int]):
        """The model as it would read after writing `values` at `address` (the device's state unchanged)."""
        start = self.addresses[model_id]
        block = model_registers(self.models[model_id])
        for index, value in enumerate(values):
            offset = address + index - start
            if 0 <= offset < len(block):
                block[offset] = value
        return parse_model(model_id, block)

    def refresh(self) -> list[int]:
        """Advance the physics to now and return the register image."""
        with self._lock:
            self._step(self.clock())
            return self.image()

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if set_values is not None and function_code in (6, 16):
            result = self.write(address, [int(v) for v in set_values])
            if result is not None:
                return result
            return None
        image = self.refresh()
        base = BASE_ADDRESSES[0]
        registers[base - start_address:base - start_address + len(image)] = image
        return None

    def sim_device(self) -> SimDevice:
        base = BASE_ADDRESSES[0]
        return SimDevice(self.config.unit_id, simdata=[SimData(base, count=len(self.image()) + 2, values=0,
                                                               datatype=DataType.REGISTERS)],
                         action=self._action)


class _SingleClientServer(ModbusTcpServer):
    """A TCP server that drops every connection beyond the first, as single-client inverters do."""

    def handle_new_connection(self):  # type: ignore[override]
        protocol = super().handle_new_connection()
        if len(self.active_connections) > 1:
            # Nothing the second client sends is answered, even before the close runs: a fast client could
            # otherwise finish a whole scan in those 10 ms (seen once in CI).
            protocol.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
            self.loop.call_later(0.01, protocol.close)  # after connection_made, which call_soon would precede
        return protocol


@dataclass
class RunningServer:
    """A simulator serving on a port, in its own thread and event loop (usable from sync code)."""

    host: str
    port: int
    homes: list[SimulatedHome]
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _server: ModbusTcpServer

    def stop(self) -> None:
        async def _shutdown() -> None:
            await self._server.shutdown()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(_shutdown(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


async def serve(homes: list[SimulatedHome], host: str = "127.0.0.1", port: int = 502,
                framer: FramerType = FramerType.SOCKET) -> ModbusTcpServer:
    """Serve one or more homes (one unit id each, as on an RS-485 line) on a TCP port; returns once listening."""
    cls = _SingleClientServer if any(home.config.single_client for home in homes) else ModbusTcpServer
    server = cls([home.sim_device() for home in homes], address=(host, port), framer=framer,
                 ignore_missing_devices=True)  # a unit id nobody has stays silent, as on an RS-485 line
    server.context = _KnownUnitsOnly(server.context)  # type: ignore[assignment]
    await server.serve_forever(background=True)
    return server


class _KnownUnitsOnly:
    """Makes a request to a unit id the server does not have go unanswered (as on an RS-485 line).

    pymodbus 3.16's SimDevice core raises KeyError there instead of NoSuchIdException, so the server would log a
    traceback and answer exception 4; with this wrapper `ignore_missing_devices` does what it says.
    """

    def __init__(self, core) -> None:
        self._core = core
        self._ids = set(core.device_ids())

    def device_ids(self) -> list[int]:
        return list(self._ids)

    def _check(self, device_id: int) -> None:
        if device_id not in self._ids:
            raise NoSuchIdException(f"unit {device_id} is not on this line")

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1):
        self._check(device_id)
        return await self._core.async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values):
        self._check(device_id)
        return await self._core.async_setValues(device_id, func_code, address, values)

    def __getattr__(self, name: str):
        return getattr(self._core, name)


def start_in_thread(homes: list[SimulatedHome] | SimulatedHome, host: str = "127.0.0.1", port: int = 0,
                    framer: FramerType = FramerType.SOCKET) -> RunningServer:
    """Start a simulator server in a background thread; port 0 picks a free port (read it from the result)."""
    if isinstance(homes, SimulatedHome):
        homes = [homes]
    if port == 0:
        port = free_port(host)
    loop = asyncio.new_event_loop()
    ready: dict[str, object] = {}
    started = threading.Event()

    def _run() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready["server"] = loop.run_until_complete(serve(list(homes), host, port, framer))
        except Exception as exc:  # noqa: BLE001 (reported to the caller below)
            ready["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=_run, name=f"sunspec-sim-{port}", daemon=True)
    thread.start()
    started.wait(timeout=10)
    if "error" in ready:
        raise RuntimeError(f"simulator could not listen on {host}:{port}: {ready['error']}")
    return RunningServer(host, port, list(homes), loop, thread, ready["server"])  # type: ignore[arg-type]
