"""A day of meter readings and power-quality events, written the way QuantumLeap writes NGSI-LD notifications.

Entities come from the project's own models (`ThreePhaseAcMeasurement`, `Anomaly`); each notification becomes
one row: attribute names lowercased into columns, a Property's value (a DateTime's `@value`), a Relationship's
object (QuantumLeap sql_translator.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from datamodels.anomaly import Anomaly
from datamodels.entities import ThreePhaseAcMeasurement
from datamodels.measures import MEASUREMENT_TYPE, device_entity_id
from grafana.quantumleap import ANOMALY_TYPE, TABLES, create_table_sql, qualified, schema_name

MINUTES = 1440
# docs/power-quality.md §1.4 test vector: U12, U23, U31 give VUF = 1.623 %.
UNBALANCED_LINE_V = {"L12": 394.33, "L23": 396.02, "L31": 404.72}
UNBALANCED_VUF_PCT = 1.623
ENERGY_START_KWH = 123456  # integral first reading: QuantumLeap alone would make the column bigint
ENERGY_STEP_KWH = 0.0125  # per minute and meter (750 W)


def ql_row(entity: dict, time_index: datetime, columns: list[str]) -> list[object]:
    """One QuantumLeap row for a normalized entity, in `columns` order (jsonb values as JSON text)."""
    values: dict[str, object] = {
        "entity_id": entity["id"],
        "entity_type": entity["type"],
        "time_index": time_index,
        "fiware_servicepath": "/",
    }
    for name, attr in entity.items():
        if not isinstance(attr, dict):
            continue
        if attr.get("type") == "Relationship":
            value: object = attr["object"]
        else:
            value = attr.get("value")
            if isinstance(value, dict) and value.get("@type") == "DateTime":
                value = value["@value"]
        values[name.lower()] = json.dumps(value) if isinstance(value, (dict, list)) else value
    return [values.get(column) for column in columns]


@dataclass
class Day:
    """What was written, so tests compute expected results from the inputs, not from SQL."""

    start: datetime
    end: datetime
    tenants: dict[str, list[str]]  # tenant -> device ids
    energy: dict[str, list[tuple[datetime, float]]] = field(
        default_factory=dict
    )  # device -> (time, import kWh)
    power_w: dict[str, list[float]] = field(default_factory=dict)


def reading(device: str, index: int, minute: int) -> dict[str, object]:
    """Wire measures for one meter at one minute: a daily voltage swing, meter 3 with the unbalance vector."""
    swing = 4.0 * math.sin(2 * math.pi * minute / MINUTES)
    line = UNBALANCED_LINE_V if index == 2 else {"L12": 398.4, "L23": 398.4, "L31": 398.4}
    power = 750.0 + 100 * index
    return {
        "v": {"L1": 230.0 + swing, "L2": 229.0 + swing, "L3": 231.0 + swing},
        "vll": line,
        "i": {"L1": 3.1, "L2": 3.3, "L3": 3.2, "N": 0.4},
        "p": {"L1": power / 3, "L2": power / 3, "L3": power / 3},
        "pt": power,
        "qt": 120.0,
        "st": 760.0 + 100 * index,
        "pft": 0.987,
        "pf": {"L1": 0.98, "L2": 0.99, "L3": 0.99},
        "thdv": {"L1": 0.021, "L2": 0.025, "L3": 0.031},
        "thdi": {"L1": 0.12, "L2": 0.15, "L3": 0.11},
        "f": 50.0 + 0.02 * math.sin(minute / 7),
        "eait": ENERGY_START_KWH + ENERGY_STEP_KWH * minute,
        "eaet": 10 + 0.001 * minute,
    }


def load(conn, end: datetime) -> Day:
    """Create QuantumLeap's tables for two tenants and write a day of one-minute readings and a few events."""
    start = end - timedelta(minutes=MINUTES - 1)
    day = Day(start, end, {"site1": ["meter-1", "meter-2", "meter-3"], "site2": ["meter-9"]})
    m_cols = [c.name for c in TABLES[MEASUREMENT_TYPE]]
    with conn.cursor() as cur:
        for tenant, devices in day.tenants.items():
            cur.execute(f'CREATE SCHEMA "{schema_name(tenant)}"')
            for entity_type in TABLES:
                cur.execute(create_table_sql(tenant, entity_type, "postgres"))
            with cur.copy(
                f"COPY {qualified(tenant, MEASUREMENT_TYPE)} ({', '.join(m_cols)}) FROM STDIN"
            ) as copy:
                for index, device in enumerate(devices):
                    for minute in range(MINUTES):
                        moment = start + timedelta(minutes=minute)
                        measures = reading(device, index, minute)
                        entity = ThreePhaseAcMeasurement.from_measures(device, measures).to_normalized(moment)
                        copy.write_row(ql_row(entity, moment, m_cols))
                        day.energy.setdefault(device, []).append((moment, float(measures["eait"])))
                        day.power_w.setdefault(device, []).append(float(measures["pt"]))
        _events(cur, start)
    conn.commit()
    return day


def _events(cur, start: datetime) -> None:
    """site1: meter-1 has one open (updated once) and one closed event, meter-2 one open event."""
    a_cols = [c.name for c in TABLES[ANOMALY_TYPE]]
    history = [
        ("ev-1", "meter-1", 10, "open"),
        ("ev-1", "meter-1", 20, "open"),
        ("ev-2", "meter-1", 30, "open"),
        ("ev-2", "meter-1", 40, "closed"),
        ("ev-3", "meter-2", 50, "open"),
    ]
    first_seen = {"ev-1": 10, "ev-2": 30, "ev-3": 50}
    for event, device, minute, status in history:
        detected = start + timedelta(minutes=first_seen[event])
        anomaly = Anomaly(
            id=f"urn:ngsi-ld:Anomaly:{event}",
            anomalousProperty="phaseVoltage",
            dateDetected=detected,
            detectedBy=device_entity_id(device),
            phase="L2",
            severity="medium",
            status=status,
            description="voltage L2 196.1 V below 207 V",
            thresholdBreach=[
                {
                    "dateObserved": detected,
                    "measuredValue": 196.1,
                    "thresholdType": "LOWER",
                    "thresholdValue": 207.0,
                }
            ],
        )
        row = ql_row(anomaly.to_normalized(), start + timedelta(minutes=minute), a_cols)
        cur.execute(
            f"INSERT INTO {qualified('site1', ANOMALY_TYPE)} ({', '.join(a_cols)}) "
            f"VALUES ({', '.join(['%s'] * len(a_cols))})",
            row,
        )
