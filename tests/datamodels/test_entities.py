"""Our rendered entities validate against the official schemas, and the models follow the measure table."""

from __future__ import annotations

import typing
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from datamodels.context import DEVICE_CONTEXT, ENERGY_CONTEXT, context_for
from datamodels.entities import Device, LineValues, PhaseValues, PhaseValuesN, ThreePhaseAcMeasurement
from datamodels.measures import BY_ATTRIBUTE, MEASURES, Shape, ShapeError
from datamodels.validation import EntityValidationError, validate_entity

READING = {
    "v": {"L1": 230.4, "L2": 231.0, "L3": 229.8},
    "vll": {"L12": 399.5, "L23": 399.2, "L31": 398.9},
    "i": {"L1": 12.1, "L2": 11.8, "L3": 12.5, "N": 0.6},
    "p": {"L1": 2650.0, "L2": -2580.0, "L3": 2760.0},
    "q": {"L1": -310.0, "L2": -295.0, "L3": -330.0},
    "s": {"L1": 2668.0, "L2": 2597.0, "L3": 2780.0},
    "pt": 2830.0,
    "qt": -935.0,
    "st": 8045.0,
    "pf": {"L1": 0.993, "L2": -0.994, "L3": 0.993},
    "pft": 0.35,
    "thdv": {"L1": 0.021, "L2": 0.019, "L3": 0.023},
    "thdi": {"L1": 0.11, "L2": 0.09, "L3": 0.12},
    "f": 50.01,
    "eai": {"L1": 410.5, "L2": 400.1, "L3": 423.9},
    "eae": {"L1": 0.0, "L2": 12.5, "L3": 0.0},
    "eait": 1234.5,
    "eaet": 12.5,
    "eri": {"L1": 40.0, "L2": 41.0, "L3": 42.0},
    "ere": {"L1": 1.0, "L2": 2.0, "L3": 3.0},
    "esi": {"L1": 415.0, "L2": 405.0, "L3": 430.0},
    "ese": {"L1": 0.0, "L2": 13.0, "L3": 0.0},
    "avv": {"L12": 120.1, "L23": 119.8, "L31": 120.1},
    "avi": {"L1": 6.7, "L2": 186.2, "L3": 6.9},
    "pq": {"dipL1": False, "swellL2": True},
    "ds": "ok",
    "clk": True,
}
OBSERVED = datetime(2025, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))


def _measurement() -> ThreePhaseAcMeasurement:
    return ThreePhaseAcMeasurement.from_measures("meter-001", READING)


def test_every_table_row_is_covered_by_the_reading() -> None:
    assert set(READING) == {m.object_id for m in MEASURES}


def test_rendered_measurement_validates_normalized_and_key_values() -> None:
    measurement = _measurement().model_copy(
        update={"dateEnergyMeteringStarted": "2025-01-01T00:00:00Z",
                "location": {"type": "Point", "coordinates": [10.1815, 36.8065]}}
    )
    validate_entity(measurement.to_normalized(observed_at=OBSERVED))
    validate_entity(measurement.to_key_values())


def test_normalized_measurement_carries_table_units_time_and_context() -> None:
    entity = _measurement().to_normalized(observed_at=OBSERVED)
    assert entity["id"] == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001"
    assert entity["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:meter-001"}
    assert entity["@context"] == context_for("ThreePhaseAcMeasurement")
    assert entity["@context"][0] == ENERGY_CONTEXT
    assert entity["frequency"] == {"type": "Property", "value": 50.01, "unitCode": "HTZ",
                                   "observedAt": "2025-06-01T12:00:00Z"}
    assert entity["current"]["value"] == {"L1": 12.1, "L2": 11.8, "L3": 12.5, "N": 0.6}
    assert "unitCode" not in entity["powerQualityStatus"]
    for measure in MEASURES:
        assert entity[measure.attribute].get("unitCode") == measure.unit_code


def test_key_values_wraps_ref_device_and_leaves_out_absent_phases() -> None:
    measurement = ThreePhaseAcMeasurement.from_measures("m2", {"i": {"L1": 1.0, "L2": 2.0, "L3": 3.0}})
    kv = measurement.to_key_values()
    assert kv == {"id": "urn:ngsi-ld:ThreePhaseAcMeasurement:m2", "type": "ThreePhaseAcMeasurement",
                  "refDevice": ["urn:ngsi-ld:Device:m2"], "current": {"L1": 1.0, "L2": 2.0, "L3": 3.0}}


def test_from_measures_refuses_what_the_table_refuses() -> None:
    with pytest.raises(ShapeError, match="pf.L1"):
        ThreePhaseAcMeasurement.from_measures("m", {"pf": {"L1": 1.5}})
    with pytest.raises(ShapeError, match="nope"):
        ThreePhaseAcMeasurement.from_measures("m", {"nope": 1})
    with pytest.raises(ShapeError, match="unknown key 'N'"):
        ThreePhaseAcMeasurement.from_measures("m", {"v": {"N": 1.0}})


def test_model_rejected_by_schema_when_built_around_the_table() -> None:
    # The schema is a second, independent gate: a model filled directly (not via the table) is still checked.
    measurement = ThreePhaseAcMeasurement(id="urn:ngsi-ld:ThreePhaseAcMeasurement:m", thdVoltage=PhaseValues(L1=3))
    with pytest.raises(EntityValidationError, match="thdVoltage/L1"):
        validate_entity(measurement.to_normalized())


def test_naive_observed_at_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        _measurement().to_normalized(observed_at=datetime(2025, 6, 1, 12, 0))


_SHAPE_TYPE = {Shape.PHASES: PhaseValues, Shape.PHASES_N: PhaseValuesN, Shape.LINE: LineValues,
               Shape.SCALAR: float, Shape.FLAGS: dict, Shape.TEXT: str, Shape.BOOL: bool}


def test_model_measure_fields_match_the_table() -> None:
    fields = ThreePhaseAcMeasurement.model_fields
    fixed = {"id", "type", "refDevice", "refTargetDevice", "dateEnergyMeteringStarted", "location", "name",
             "description"}
    assert set(fields) - fixed == set(BY_ATTRIBUTE)
    for measure in MEASURES:
        args = typing.get_args(fields[measure.attribute].annotation)
        wanted = _SHAPE_TYPE[measure.shape]
        assert any(arg is wanted or typing.get_origin(arg) is wanted for arg in args), measure.attribute


def _meter_device() -> Device:
    return Device.for_meter(
        "meter-001",
        serialNumber="ADE9000-0001",
        macAddress="24:6F:28:AA:BB:CC",
        ipAddress=["192.168.1.20"],
        firmwareVersion="0.3.1",
        deviceState="ok",
        rssi=-61,
        dateInstalled="2025-01-01T00:00:00Z",
        dateLastValueReported=OBSERVED,
        refDeviceModel="urn:ngsi-ld:DeviceModel:energytwin-ade9000",
        location={"type": "Point", "coordinates": [10.1815, 36.8065]},
    )


def test_rendered_device_validates_normalized_and_key_values() -> None:
    device = _meter_device()
    validate_entity(device.to_normalized(observed_at=OBSERVED))
    validate_entity(device.to_key_values())


def test_device_defaults_and_rendering() -> None:
    entity = _meter_device().to_normalized(observed_at=OBSERVED)
    assert entity["id"] == "urn:ngsi-ld:Device:meter-001"
    assert entity["controlledProperty"]["value"] == ["energy", "power"]
    assert entity["deviceCategory"]["value"] == ["meter"]
    assert entity["supportedProtocol"]["value"] == ["mqtt"]
    assert entity["deviceState"]["observedAt"] == "2025-06-01T12:00:00Z"
    assert entity["dateLastValueReported"]["value"] == {"@type": "DateTime", "@value": "2025-06-01T12:00:00Z"}
    assert entity["refDeviceModel"] == {"type": "Relationship", "object": "urn:ngsi-ld:DeviceModel:energytwin-ade9000"}
    assert entity["@context"][0] == DEVICE_CONTEXT


def test_device_with_voltage_property_fails_schema() -> None:
    device = Device.for_meter("m", controlledProperty=["energy", "voltage"])
    with pytest.raises(EntityValidationError, match="controlledProperty/1"):
        validate_entity(device.to_key_values())


def test_device_requires_controlled_property() -> None:
    with pytest.raises(ValidationError):
        Device(id="urn:ngsi-ld:Device:m")
