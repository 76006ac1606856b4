"""The DER table: what the SunSpec bridge puts on the wire, which attribute it becomes, in which unit; commands.

Inverters and home batteries (distributed energy resources, DER) become two Smart Data Models entities:
`PhotovoltaicMeasurement` (dataModel.GreenEnergy: the inverter's production) and `BatteryStatus`
(dataModel.Battery: the battery's state of charge and power), each pointing to the SDM `Device` that is the
physical inverter. This table is the one source for both (as `measures.py` is for the meter): the bridge's
payload keys, the agent provisioning bodies, the command names other parts send and the docs come from it.
The SunSpec register each row is read from is in `bridges/sunspec/registers.py`, keyed by these attributes.

Units follow each model: PhotovoltaicMeasurement gives `activePower` in kilowatts (KWT), BatteryStatus
`statusPercent` as a fraction 0-1 (the schema's range; SunSpec reports percent, the bridge divides by 100).
Unit codes are UN/CEFACT Recommendation 20: KWT kilowatt, WTT watt, KWH kilowatt hour, WHR watt hour,
AMP ampere, CEL degree Celsius, C62 one (dimensionless fraction), P1 percent.
"""

from __future__ import annotations

from dataclasses import dataclass

PV_TYPE = "PhotovoltaicMeasurement"
BATTERY_TYPE = "BatteryStatus"
DEVICE_TYPE = "Device"


@dataclass(frozen=True)
class DerMeasure:
    """One row: wire key -> attribute of an entity type, its unit and NGSI-LD value type."""

    object_id: str
    attribute: str
    entity_type: str
    unit_code: str | None
    in_model: bool  # False: an extra attribute the SDM schema does not define (named in the model's style)
    value_type: str = "Number"  # Number | Text | DateTime (the IoT Agent attribute type)
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None


DER_MEASURES: tuple[DerMeasure, ...] = (
    DerMeasure("do", "dateObserved", PV_TYPE, None, True, "DateTime", "when the bridge read the registers"),
    DerMeasure("pw", "activePower", PV_TYPE, "KWT", True, "Number", "AC active power out of the inverter"),
    DerMeasure("pa", "current", PV_TYPE, "AMP", True, "Number", "AC current", 0),
    DerMeasure("pt", "temperature", PV_TYPE, "CEL", True, "Number", "inverter cabinet temperature"),
    DerMeasure("pe", "totalActiveEnergyExport", PV_TYPE, "KWH", False, "Number",
               "lifetime AC energy out of the inverter (the meter's term)", 0),
    DerMeasure("pdc", "dcPower", PV_TYPE, "KWT", False, "Number", "DC power from the PV strings", 0),
    DerMeasure("pl", "pvPowerLimitActive", PV_TYPE, "P1", False, "Number",
               "production cap in force, % of WMax (100: none)", 0, 100),
    DerMeasure("ps", "inverterOperatingState", PV_TYPE, None, False, "Text",
               "SunSpec operating state (St): OFF, SLEEPING, STARTING, MPPT, THROTTLED, FAULT, ..."),
    DerMeasure("ds", "deviceState", PV_TYPE, None, False, "Text", "ok, or fault:<kind> (docs/inverters.md)"),
    DerMeasure("cs", "controlState", PV_TYPE, None, False, "Text",
               "auto, holding (a command kept alive by the watchdog) or reverted:<what>"),
    DerMeasure("bdo", "dateObserved", BATTERY_TYPE, None, True, "DateTime", "when the bridge read the registers"),
    DerMeasure("soc", "statusPercent", BATTERY_TYPE, "C62", True, "Number", "state of charge, fraction 0-1", 0, 1),
    DerMeasure("bin", "acPowerInput", BATTERY_TYPE, "WTT", True, "Number", "charging power (>= 0)", 0),
    DerMeasure("bout", "acPowerOutput", BATTERY_TYPE, "WTT", True, "Number", "discharging power (>= 0)", 0),
    DerMeasure("bw", "batteryPower", BATTERY_TYPE, "WTT", False, "Number", "battery power, + charge / - discharge"),
    DerMeasure("bcap", "energyCapacity", BATTERY_TYPE, "WHR", False, "Number", "rated energy (802 WHRtg)", 0),
    DerMeasure("bmax", "maxChargePower", BATTERY_TYPE, "WTT", False, "Number", "WChaMax (124)", 0),
    DerMeasure("bst", "chargeState", BATTERY_TYPE, None, False, "Text",
               "SunSpec ChaSt: OFF, EMPTY, DISCHARGING, CHARGING, FULL, HOLDING, TESTING"),
    DerMeasure("bsp", "batteryPowerSetpointActive", BATTERY_TYPE, "WTT", False, "Number",
               "setpoint read back from the device (0 in auto)"),
    DerMeasure("bds", "deviceState", BATTERY_TYPE, None, False, "Text", "ok, or fault:<kind>"),
    DerMeasure("bcs", "controlState", BATTERY_TYPE, None, False, "Text", "auto, holding or reverted:<what>"),
)


@dataclass(frozen=True)
class DerCommand:
    """A command (IoT Agent command attribute) a DER entity accepts; values in `unit_code`."""

    name: str
    entity_type: str
    unit_code: str
    minimum: float | None
    maximum: float | None
    description: str


COMMANDS: tuple[DerCommand, ...] = (
    DerCommand("batteryPowerSetpoint", BATTERY_TYPE, "WTT", None, None,
               "battery power in W, + charge / - discharge, within the battery's WChaMax; null: back to auto"),
    DerCommand("exportLimit", PV_TYPE, "WTT", 0, None,
               "export limit at the point of connection in W, enforced as a production cap; null: lifted"),
    DerCommand("pvPowerLimit", PV_TYPE, "P1", 0, 100, "curtailment: production cap in % of WMax; null: lifted"),
)

BY_KEY: dict[tuple[str, str], DerMeasure] = {(m.entity_type, m.object_id): m for m in DER_MEASURES}
BY_ATTRIBUTE: dict[tuple[str, str], DerMeasure] = {(m.entity_type, m.attribute): m for m in DER_MEASURES}
COMMANDS_BY_NAME: dict[str, DerCommand] = {c.name: c for c in COMMANDS}


def measures_of(entity_type: str) -> tuple[DerMeasure, ...]:
    return tuple(m for m in DER_MEASURES if m.entity_type == entity_type)


def commands_of(entity_type: str) -> tuple[DerCommand, ...]:
    return tuple(c for c in COMMANDS if c.entity_type == entity_type)


def pv_entity_id(site_device: str) -> str:
    """`urn:ngsi-ld:PhotovoltaicMeasurement:<device>` (docs/inverters.md, "Entities")."""
    return f"urn:ngsi-ld:{PV_TYPE}:{site_device}"


def battery_entity_id(site_device: str) -> str:
    """`urn:ngsi-ld:BatteryStatus:<device>`."""
    return f"urn:ngsi-ld:{BATTERY_TYPE}:{site_device}"


def der_device_entity_id(site_device: str) -> str:
    """The SDM Device of the physical inverter: `urn:ngsi-ld:Device:<device>`."""
    return f"urn:ngsi-ld:{DEVICE_TYPE}:{site_device}"


def agent_device_id(site_device: str, entity_type: str) -> str:
    """The IoT Agent device id of one of a physical device's entities: `<device>-pv` / `<device>-battery`.

    The agent maps one device id to one entity, and a hybrid inverter has two (production and storage).
    """
    return f"{site_device}-{'pv' if entity_type == PV_TYPE else 'battery'}"


def table_markdown() -> str:
    """The table as Markdown, for docs/inverters.md (a test keeps the page in step)."""
    rows = ["| entity | wire id | attribute | unitCode | type | in the SDM model | meaning |",
            "|---|---|---|---|---|---|---|"]
    for m in DER_MEASURES:
        rows.append(f"| {m.entity_type} | `{m.object_id}` | `{m.attribute}` | {m.unit_code or '–'} | {m.value_type} "
                    f"| {'yes' if m.in_model else 'extra'} | {m.description} |")
    return "\n".join(rows)
