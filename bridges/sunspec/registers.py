"""Register -> attribute: which SunSpec point each row of the DER table (`datamodels.der`) is read from.

The attribute names, wire keys and unit codes are `datamodels.der`'s; this module adds only the Modbus side:
for every attribute, the SunSpec models and point it comes from (first match wins, so a device with the classic
101-103 inverter models and one with the 701 DER model both map), and the factor from the SunSpec unit to the
model's unit. A few attributes are derived from several points; they are listed here with how.
"""

from __future__ import annotations

from dataclasses import dataclass

from datamodels.der import BATTERY_TYPE, PV_TYPE

INVERTERS = (101, 102, 103)

# SunSpec 802 does not state the sign of W ("total power flowing to/from the battery bank"); the bridge reads it
# with the DER convention of the 7xx models, power delivered by the device positive: + discharging. The DER table's
# `batteryPower` is + charging, so it is -W.
BATTERY_W_SIGN = -1


@dataclass(frozen=True)
class CapControl:
    """Where a device takes its active-power cap (% of WMax): the points of one SunSpec control model.

    123 (immediate controls, the classic map) and 704 (DER AC controls, the IEEE 1547-2018 map) hold the same
    three things under different names; the first model of `CAP_CONTROLS` the device serves is the one written.
    """

    model_id: int
    limit: str  # % of WMax
    enable: str  # 1: ENABLED
    revert_s: str  # the device's own revert timeout, seconds (0: none)


CAP_CONTROLS = (CapControl(123, "WMaxLimPct", "WMaxLim_Ena", "WMaxLimPct_RvrtTms"),
                CapControl(704, "WMaxLimPct", "WMaxLimPctEna", "WMaxLimPctRvrtTms"))

# Where the inverter's WMax (the 100 % of the cap) is read, in order: 121 settings, 702 DER capacity (the setting,
# then the rating), 120 nameplate rating.
WMAX_SOURCES = ((121, "WMax"), (702, "WMax"), (702, "WMaxRtg"), (120, "WRtg"))


@dataclass(frozen=True)
class Source:
    """Where an attribute's value is read: a point of the first present model among `model_ids`."""

    model_ids: tuple[int, ...]
    point: str
    factor: float = 1.0  # SunSpec unit -> the entity's unit (W -> kW: 0.001, % -> fraction: 0.01)
    enum: bool = False  # an enum point published as its symbol name (MPPT, CHARGING, ...)


@dataclass(frozen=True)
class Derived:
    """An attribute computed from several points; `how` is what docs/inverters.md prints."""

    model_ids: tuple[int, ...]
    how: str


REGISTER_MAP: dict[tuple[str, str], tuple[Source | Derived, ...]] = {
    (PV_TYPE, "activePower"): (Source(INVERTERS, "W", 0.001), Source((701,), "W", 0.001)),
    (PV_TYPE, "current"): (Source(INVERTERS, "A"), Source((701,), "A")),
    (PV_TYPE, "temperature"): (Source(INVERTERS, "TmpCab"), Source((701,), "TmpCab")),
    (PV_TYPE, "totalActiveEnergyExport"): (Source(INVERTERS, "WH", 0.001), Source((701,), "TotWhInj", 0.001)),
    (PV_TYPE, "dcPower"): (Source(INVERTERS, "DCW", 0.001), Source((714,), "DCW", 0.001)),
    (PV_TYPE, "inverterOperatingState"): (Source(INVERTERS, "St", enum=True),),
    (PV_TYPE, "pvPowerLimitActive"): (Derived((123, 704), "123 WMaxLimPct when WMaxLim_Ena is 1 (ENABLED), else 100; "
                                                        "without 123, the same from 704 WMaxLimPct / WMaxLimPctEna"),),
    (BATTERY_TYPE, "statusPercent"): (Source((124,), "ChaState", 0.01), Source((802,), "SoC", 0.01),
                                      Source((713,), "SoC", 0.01)),
    (BATTERY_TYPE, "batteryPower"): (Derived((802,), "-802 W (802 W is + discharging)"),),
    (BATTERY_TYPE, "acPowerInput"): (Derived((802,), "max(batteryPower, 0)"),),
    (BATTERY_TYPE, "acPowerOutput"): (Derived((802,), "max(-batteryPower, 0)"),),
    (BATTERY_TYPE, "energyCapacity"): (Source((802,), "WHRtg"), Source((713,), "WHRtg")),
    (BATTERY_TYPE, "maxChargePower"): (Source((124,), "WChaMax"), Source((802,), "WChaRteMax")),
    (BATTERY_TYPE, "chargeState"): (Source((124,), "ChaSt", enum=True), Source((802,), "ChaSt", enum=True)),
    (BATTERY_TYPE, "batteryPowerSetpointActive"): (
        Derived((124,), "124 StorCtl_Mod bit 0 (CHARGE): +InWRte % x WChaMax; bit 1 (DISCHARGE): "
                        "-OutWRte % x WChaMax; neither: 0 (auto)"),),
}

# Models that make a device a PV inverter / a battery for the bridge.
PV_MODELS = (*INVERTERS, 701)
BATTERY_MODELS = (124, 802, 713)


def models_needed() -> set[int]:
    """Every model any row reads."""
    needed: set[int] = set()
    for sources in REGISTER_MAP.values():
        for source in sources:
            needed.update(source.model_ids)
    return needed


def table_markdown() -> str:
    """Register -> attribute rows for docs/inverters.md."""
    rows = ["| entity | attribute | SunSpec source (first present wins) | factor |", "|---|---|---|---|"]
    for (entity_type, attribute), sources in REGISTER_MAP.items():
        where = "; ".join(
            (f"{'/'.join(map(str, s.model_ids))} `{s.point}`" + (" (symbol)" if s.enum else ""))
            if isinstance(s, Source) else s.how for s in sources)
        factors = sorted({s.factor for s in sources if isinstance(s, Source)})
        rows.append(f"| {entity_type} | `{attribute}` | {where} | {', '.join(f'{f:g}' for f in factors) or '–'} |")
    return "\n".join(rows)
