"""The DER table and the vendored PhotovoltaicMeasurement / BatteryStatus schemas (offline validation)."""

from __future__ import annotations

import pytest

from bridges.sunspec.registers import REGISTER_MAP, Source
from datamodels.context import context_for, load_vendored
from datamodels.der import BATTERY_TYPE, COMMANDS, DER_MEASURES, PV_TYPE, measures_of
from datamodels.validation import EntityValidationError, schema_for, validate_entity


def battery(**overrides) -> dict:
    entity = {"id": "urn:ngsi-ld:BatteryStatus:h1", "type": BATTERY_TYPE, "refBattery": "urn:ngsi-ld:Device:h1",
              "statusPercent": 0.55}
    entity.update(overrides)
    return entity


def test_battery_status_validates_a_fraction_and_refuses_out_of_range() -> None:
    validate_entity(battery())  # needs both errata: a number, and refBattery as anyOf
    with pytest.raises(EntityValidationError, match="statusPercent"):
        validate_entity(battery(statusPercent=55))  # percent instead of the model's fraction
    with pytest.raises(EntityValidationError, match="refBattery"):
        validate_entity({k: v for k, v in battery().items() if k != "refBattery"})


def test_photovoltaic_measurement_requires_what_the_schema_requires() -> None:
    entity = {"id": "urn:ngsi-ld:PhotovoltaicMeasurement:h1", "type": PV_TYPE,
              "location": {"type": "Point", "coordinates": [-3.7, 40.4]}, "dateObserved": "2026-12-06T12:00:00Z",
              "refPhotovoltaicDevice": "urn:ngsi-ld:Device:h1", "dateEnergyMeteringStarted": "2026-01-01T00:00:00Z",
              "temperature": 31.5, "activePower": 2.4}
    validate_entity(entity)
    with pytest.raises(EntityValidationError, match="temperature"):
        validate_entity({k: v for k, v in entity.items() if k != "temperature"})
    assert schema_for(PV_TYPE)["$id"].endswith("/PhotovoltaicMeasurement/schema.json")


def test_every_row_maps_to_a_register_and_model_terms_are_in_the_vendored_context() -> None:
    for entity_type in (PV_TYPE, BATTERY_TYPE):
        terms = load_vendored(context_for(entity_type)[0])["@context"]
        for measure in measures_of(entity_type):
            if measure.in_model:
                assert measure.attribute in terms or measure.attribute == "dateObserved", measure
    state_rows = {"dateObserved", "deviceState", "controlState"}
    for measure in DER_MEASURES:
        if measure.attribute not in state_rows:
            assert (measure.entity_type, measure.attribute) in REGISTER_MAP, measure
    assert all(isinstance(s, Source) or s.how for sources in REGISTER_MAP.values() for s in sources)
    assert {c.name for c in COMMANDS} == {"batteryPowerSetpoint", "exportLimit", "pvPowerLimit"}
    assert len({m.object_id for m in DER_MEASURES}) == len(DER_MEASURES)
