"""The measure table stays honest against the official ThreePhaseAcMeasurement schema and the vendored contexts."""

from __future__ import annotations

import json

import pytest

from datamodels.context import CONTEXT_BY_TYPE, VENDORED, load_vendored
from datamodels.measures import MEASURES, Shape
from datamodels.validation import schema_for

ENERGY_NS = "https://smartdatamodels.org/dataModel.Energy/"


def _schema_properties() -> dict[str, dict]:
    props: dict[str, dict] = {}
    for part in schema_for("ThreePhaseAcMeasurement")["allOf"]:
        props.update(part.get("properties", {}))
    return props


@pytest.mark.parametrize("measure", [m for m in MEASURES if m.in_model], ids=lambda m: m.attribute)
def test_in_model_rows_are_schema_properties_with_their_shape(measure) -> None:
    spec = _schema_properties().get(measure.attribute)
    assert spec is not None, f"{measure.attribute} is not in the official schema"
    if measure.shape is Shape.SCALAR:
        assert spec["type"] == "number"
    else:
        assert spec["type"] == "object"
        assert set(measure.shape.keys) <= set(spec["properties"]), measure.attribute


@pytest.mark.parametrize("measure", [m for m in MEASURES if m.in_model], ids=lambda m: m.attribute)
def test_in_model_ranges_are_within_the_schema(measure) -> None:
    # The table may be stricter than the schema (physics: RMS current is never negative) but never looser,
    # or a reading the ingest check accepts would be refused by the schema downstream.
    spec = _schema_properties()[measure.attribute]
    leaves = [spec] if measure.shape is Shape.SCALAR else [spec["properties"][k] for k in measure.shape.keys]
    for leaf in leaves:
        if "minimum" in leaf:
            assert measure.minimum is not None and measure.minimum >= leaf["minimum"], measure.attribute
        if "maximum" in leaf:
            assert measure.maximum is not None and measure.maximum <= leaf["maximum"], measure.attribute


@pytest.mark.parametrize("measure", [m for m in MEASURES if not m.in_model], ids=lambda m: m.attribute)
def test_extra_rows_are_not_schema_properties(measure) -> None:
    assert measure.attribute not in _schema_properties()


def _energy_terms() -> dict:
    return load_vendored(CONTEXT_BY_TYPE["ThreePhaseAcMeasurement"][0])["@context"]


@pytest.mark.parametrize("measure", [m for m in MEASURES if m.in_model], ids=lambda m: m.attribute)
def test_energy_context_defines_in_model_terms(measure) -> None:
    terms = _energy_terms()
    assert terms.get(measure.attribute) == ENERGY_NS + measure.attribute
    for key in measure.shape.keys:
        assert terms.get(key) == ENERGY_NS + key


def test_energy_context_defines_relationships_and_type() -> None:
    terms = _energy_terms()
    for term in ("ThreePhaseAcMeasurement", "refDevice", "refTargetDevice", "dateEnergyMeteringStarted"):
        assert terms[term] == ENERGY_NS + term


def test_shared_terms_differ_per_subject_as_documented() -> None:
    energy = load_vendored(CONTEXT_BY_TYPE["ThreePhaseAcMeasurement"][0])["@context"]
    device = load_vendored(CONTEXT_BY_TYPE["Device"][0])["@context"]
    assert energy["refDevice"] != device["refDevice"]
    assert device["controlledProperty"] == "https://smartdatamodels.org/dataModel.Device/controlledProperty"


def test_every_vendored_context_loads_and_core_defines_ngsi_ld_terms() -> None:
    for url in VENDORED:
        assert "@context" in load_vendored(url)
    core = load_vendored(CONTEXT_BY_TYPE["Device"][-1])["@context"]
    assert core["Property"] == "ngsi-ld:Property"
    assert core["observedAt"]["@id"] == "ngsi-ld:observedAt"
    assert core["unitCode"] == "ngsi-ld:unitCode"


def test_every_context_used_by_a_type_is_vendored() -> None:
    for urls in CONTEXT_BY_TYPE.values():
        for url in urls:
            assert url in VENDORED
            json.dumps(load_vendored(url))


def test_device_of_inverts_both_entity_ids() -> None:
    from datamodels.measures import device_entity_id, device_of, measurement_id

    assert device_of(measurement_id("meter-001")) == "meter-001"
    assert device_of(device_entity_id("meter:with:colons")) == "meter:with:colons"
    assert device_of("urn:ngsi-ld:Anomaly:x") == "urn:ngsi-ld:Anomaly:x"  # not a meter's id: unchanged
