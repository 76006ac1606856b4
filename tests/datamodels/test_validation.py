"""The vendored official schemas accept the official examples and refuse what SDM forbids, without a network."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest

from datamodels.validation import EntityValidationError, schema_registry, to_key_values, validate_entity

EXAMPLES = Path(__file__).parents[2] / "datamodels" / "schemas" / "examples"


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "name",
    [
        "ThreePhaseAcMeasurement.example.json",
        "ThreePhaseAcMeasurement.example-normalized.jsonld",
        "Device.example.json",
    ],
)
def test_official_examples_validate(name: str) -> None:
    validate_entity(_example(name))


def _errors(entity: dict) -> list[str]:
    with pytest.raises(EntityValidationError) as caught:
        validate_entity(entity)
    return caught.value.errors


def test_out_of_range_power_factor_and_thd_are_reported_by_path() -> None:
    entity = _example("ThreePhaseAcMeasurement.example.json")
    entity["powerFactor"]["L1"] = 1.5
    entity["thdVoltage"]["L3"] = 3
    errors = _errors(entity)
    assert any(e.startswith("powerFactor/L1:") and "1.5" in e for e in errors)
    assert any(e.startswith("thdVoltage/L3:") for e in errors)
    assert len(errors) == 2


def test_error_message_names_entity_and_every_path() -> None:
    entity = _example("ThreePhaseAcMeasurement.example.json")
    entity["frequency"] = -1
    entity["dateEnergyMeteringStarted"] = "yesterday"
    with pytest.raises(EntityValidationError) as caught:
        validate_entity(entity)
    text = str(caught.value)
    assert "ThreePhaseAcMeasurement:LV3_Ventilation" in text
    assert "frequency:" in text and "dateEnergyMeteringStarted:" in text


def test_device_voltage_is_not_a_controlled_property() -> None:
    errors = _errors({"id": "urn:ngsi-ld:Device:m1", "type": "Device", "controlledProperty": ["voltage"]})
    assert any(e.startswith("controlledProperty/0:") and "'voltage'" in e for e in errors)


def test_device_without_controlled_property_is_rejected() -> None:
    errors = _errors({"id": "urn:ngsi-ld:Device:m1", "type": "Device", "deviceCategory": ["meter"]})
    assert any("'controlledProperty' is a required property" in e for e in errors)


def test_device_mac_address_and_ip_are_checked() -> None:
    entity = {
        "id": "urn:ngsi-ld:Device:m1",
        "type": "Device",
        "controlledProperty": ["energy"],
        "macAddress": "24:6F:28",
        "ipAddress": ["300.1.1.1"],
    }
    errors = _errors(entity)
    assert any(e.startswith("macAddress:") for e in errors)
    assert any(e.startswith("ipAddress/0:") for e in errors)


def test_unknown_type_is_refused_with_the_known_ones() -> None:
    errors = _errors({"id": "x", "type": "Vehicle"})
    assert "Device" in errors[0] and "ThreePhaseAcMeasurement" in errors[0]


def test_flattening_normalized_entity() -> None:
    normalized = {
        "id": "urn:ngsi-ld:ThreePhaseAcMeasurement:m1",
        "type": "ThreePhaseAcMeasurement",
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:m1"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10.18, 36.80]}},
        "dateEnergyMeteringStarted": {"type": "Property", "value": {"@type": "DateTime", "@value": "2025-01-01T00:00:00Z"}},
        "frequency": {"type": "Property", "value": 50.0, "unitCode": "HTZ", "observedAt": "2025-06-01T12:00:00Z"},
        "@context": ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"],
    }
    assert to_key_values(normalized) == {
        "id": "urn:ngsi-ld:ThreePhaseAcMeasurement:m1",
        "type": "ThreePhaseAcMeasurement",
        "refDevice": ["urn:ngsi-ld:Device:m1"],
        "location": {"type": "Point", "coordinates": [10.18, 36.80]},
        "dateEnergyMeteringStarted": "2025-01-01T00:00:00Z",
        "frequency": 50.0,
    }
    validate_entity(normalized)


def test_single_relationship_is_not_wrapped_where_schema_wants_a_single_id() -> None:
    device = {
        "id": "urn:ngsi-ld:Device:m1",
        "type": "Device",
        "controlledProperty": {"type": "Property", "value": ["energy"]},
        "refDeviceModel": {"type": "Relationship", "object": "urn:ngsi-ld:DeviceModel:ade9000-meter"},
    }
    assert to_key_values(device)["refDeviceModel"] == "urn:ngsi-ld:DeviceModel:ade9000-meter"
    validate_entity(device)


def test_invalid_value_inside_normalized_property_is_caught() -> None:
    entity = {
        "id": "urn:ngsi-ld:ThreePhaseAcMeasurement:m1",
        "type": "ThreePhaseAcMeasurement",
        "powerFactor": {"type": "Property", "value": {"L1": 1.5}, "unitCode": "C62"},
    }
    assert any(e.startswith("powerFactor/L1:") for e in _errors(entity))


def test_validation_makes_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation tried to open a network connection")

    schema_registry.cache_clear()  # rebuild the registry under the guard: loading must not fetch either
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    validate_entity(_example("Device.example.json"))
    bad = copy.deepcopy(_example("ThreePhaseAcMeasurement.example.json"))
    bad["thdCurrent"]["L1"] = 2
    with pytest.raises(EntityValidationError):
        validate_entity(bad)
