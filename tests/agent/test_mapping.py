"""The payload -> NGSI-LD fragment rules, checked against hand-written expectations (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from datamodels.context import CORE_CONTEXT, ENERGY_CONTEXT
from twin_service.agent.mapping import map_payload, map_single_attribute
from twin_service.agent.models import AttributeSpec, StaticAttribute
from twin_service.agent.registry import ResolvedDevice, entity_id_for
from twin_service.agent.timestamps import BadTimestamp, observed_at, parse_time_instant
from twin_service.agent.topics import MeasureTopic, parse_topic

ARRIVAL = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
METER = ResolvedDevice(
    service="energytwin",
    subservice="/",
    device_id="meter-001",
    entity_id="urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001",
    entity_type="ThreePhaseAcMeasurement",
    timestamp=True,
    attributes=(),
    static_attributes=(),
)


def test_table_measures_get_attribute_name_unit_and_observed_at() -> None:
    payload = {
        "v": {"L1": 230.1, "L2": 229.8, "L3": 231.0},
        "f": 50.01,
        "TimeInstant": "2026-11-24T10:00:00Z",
    }
    mapped = map_payload(METER, payload, ARRIVAL)
    assert mapped.rejections == []
    assert mapped.measures == 2
    assert mapped.fragments == [
        {
            "id": "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-001",
            "type": "ThreePhaseAcMeasurement",
            "phaseVoltage": {
                "type": "Property",
                "value": {"L1": 230.1, "L2": 229.8, "L3": 231.0},
                "unitCode": "VLT",
                "observedAt": "2026-11-24T10:00:00.000Z",
            },
            "frequency": {
                "type": "Property",
                "value": 50.01,
                "unitCode": "HTZ",
                "observedAt": "2026-11-24T10:00:00.000Z",
            },
            "@context": [ENERGY_CONTEXT, CORE_CONTEXT],
        }
    ]


def test_attribute_names_on_the_wire_are_checked_like_object_ids() -> None:
    """The payload the real IoT Agent JSON was observed to get (docs/compatibility.md) uses attribute names as keys; they pass through and still get the table's unitCode."""
    mapped = map_payload(METER, {"frequency": 49.9, "TimeInstant": "2026-11-24T10:00:00.000Z"}, ARRIVAL)
    assert mapped.fragments[0]["frequency"]["unitCode"] == "HTZ"


def test_without_time_instant_the_arrival_time_is_observed_at() -> None:
    mapped = map_payload(METER, {"pt": 1200.5}, ARRIVAL)
    assert mapped.fragments[0]["totalActivePower"]["observedAt"] == "2026-11-24T12:00:00.123Z"


def test_timestamps_off_and_no_time_instant_means_no_observed_at() -> None:
    device = ResolvedDevice(**{**METER.__dict__, "timestamp": False})
    mapped = map_payload(device, {"pt": 1200.5}, ARRIVAL)
    assert "observedAt" not in mapped.fragments[0]["totalActivePower"]


def test_bad_measures_are_dropped_and_counted_good_ones_pass() -> None:
    payload = {
        "f": "fifty",
        "pf": {"L1": 1.5},
        "v": {"L1": 230.0, "L4": 1.0},
        "pt": 10,
        "TimeInstant": "2026-11-24T10:00:00Z",
    }
    mapped = map_payload(METER, payload, ARRIVAL)
    assert [r.reason for r in mapped.rejections] == ["bad_value"] * 3
    assert "f: expected a number" in mapped.rejections[0].detail
    assert "above the maximum 1" in mapped.rejections[1].detail
    assert "unknown key 'L4'" in mapped.rejections[2].detail
    assert mapped.measures == 1
    assert set(mapped.fragments[0]) == {"id", "type", "totalActivePower", "@context"}


def test_unknown_keys_pass_through_and_id_type_are_renamed() -> None:
    mapped = map_payload(METER, {"firmware": "1.2.0", "id": "x", "type": "y"}, ARRIVAL)
    fragment = mapped.fragments[0]
    assert fragment["firmware"]["value"] == "1.2.0" and "unitCode" not in fragment["firmware"]
    assert fragment["measure_id"]["value"] == "x"
    assert fragment["measure_type"]["value"] == "y"
    assert fragment["id"] == METER.entity_id and fragment["type"] == METER.entity_type


def test_provisioned_attribute_wins_over_the_table() -> None:
    device = ResolvedDevice(
        **{
            **METER.__dict__,
            "attributes": (
                AttributeSpec(
                    object_id="f",
                    name="gridFrequency",
                    type="Number",
                    metadata={"unitCode": {"type": "Text", "value": "HTZ"}},
                ),
                AttributeSpec(
                    object_id="t",
                    name="temperature",
                    type="Number",
                    metadata={"unitCode": {"type": "Text", "value": "CEL"}},
                ),
            ),
            "static_attributes": (StaticAttribute(name="site", type="Text", value="plant-A"),),
        }
    )
    mapped = map_payload(device, {"f": 50.0, "t": "21.5", "TimeInstant": "2026-11-24T10:00:00Z"}, ARRIVAL)
    fragment = mapped.fragments[0]
    assert fragment["gridFrequency"] == {
        "type": "Property",
        "value": 50.0,
        "unitCode": "HTZ",
        "observedAt": "2026-11-24T10:00:00.000Z",
    }
    assert fragment["temperature"]["value"] == 21.5  # Number type parses numeric strings, as node-lib does
    assert fragment["temperature"]["unitCode"] == "CEL"
    assert fragment["site"] == {
        "type": "Property",
        "value": "plant-A",
        "observedAt": "2026-11-24T10:00:00.000Z",
    }
    assert "frequency" not in fragment


def test_array_becomes_fragments_sorted_by_time_instant() -> None:
    payload = [
        {"f": 50.03, "TimeInstant": "2026-11-24T10:00:03Z"},
        {"f": 50.01, "TimeInstant": "2026-11-24T10:00:01+00:00"},
        {"f": 50.02, "TimeInstant": "2026-11-24T11:00:02+01:00"},
    ]
    mapped = map_payload(METER, payload, ARRIVAL)
    assert [f["frequency"]["value"] for f in mapped.fragments] == [50.01, 50.02, 50.03]
    assert [f["frequency"]["observedAt"] for f in mapped.fragments] == [
        "2026-11-24T10:00:01.000Z",
        "2026-11-24T10:00:02.000Z",
        "2026-11-24T10:00:03.000Z",
    ]
    assert {f["id"] for f in mapped.fragments} == {METER.entity_id}


def test_array_with_bad_elements_keeps_the_good_ones() -> None:
    payload = [
        {"f": 50.0, "TimeInstant": "yesterday"},
        42,
        {"f": 50.1, "TimeInstant": "2026-11-24T10:00:00Z"},
    ]
    mapped = map_payload(METER, payload, ARRIVAL)
    assert [r.reason for r in mapped.rejections] == ["bad_timestamp", "not_an_object"]
    assert len(mapped.fragments) == 1


@pytest.mark.parametrize("payload", [{}, [], {"TimeInstant": "2026-11-24T10:00:00Z"}])
def test_payload_without_measures_is_rejected(payload: object) -> None:
    mapped = map_payload(METER, payload, ARRIVAL)
    assert mapped.fragments == [] and [r.reason for r in mapped.rejections] == ["no_measures"]


def test_single_attribute_topic_value() -> None:
    mapped = map_single_attribute(METER, "f", 49.98, ARRIVAL)
    assert mapped.fragments[0]["frequency"]["value"] == 49.98


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T10:00:00Z", "2026-11-24T10:00:00.000Z"),
        ("2026-11-24T10:00:00.5Z", "2026-11-24T10:00:00.500Z"),
        ("2026-11-24T10:00:00.123456789Z", "2026-11-24T10:00:00.123Z"),
        ("2026-11-24T12:30:00+02:30", "2026-11-24T10:00:00.000Z"),
        ("2026-11-24T05:00:00-0500", "2026-11-24T10:00:00.000Z"),
    ],
)
def test_time_instant_is_normalized_to_utc_milliseconds(text: str, expected: str) -> None:
    assert observed_at(parse_time_instant(text)) == expected


@pytest.mark.parametrize(
    "text", ["2026-11-24", "2026-11-24T10:00:00", "2026-13-24T10:00:00Z", "24/11/2026 10:00", 1764000000, ""]
)
def test_invalid_time_instant_is_bad_timestamp(text: object) -> None:
    with pytest.raises(BadTimestamp):
        parse_time_instant(text)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("/json/k1/m1/attrs", MeasureTopic("k1", "m1")),
        ("json/k1/m1/attrs", MeasureTopic("k1", "m1")),
        ("/k1/m1/attrs", MeasureTopic("k1", "m1")),
        ("k1/m1/attrs", MeasureTopic("k1", "m1")),
        ("/json/k1/m1/attrs/f", MeasureTopic("k1", "m1", "f")),
        ("/k1/m1/attrs/f", MeasureTopic("k1", "m1", "f")),
        ("/json/k1/m1/cmdexe", None),
        ("/json//m1/attrs", None),
    ],
)
def test_topics(topic: str, expected: MeasureTopic | None) -> None:
    assert parse_topic(topic) == expected


def test_entity_names_that_are_not_urns_are_rewritten() -> None:
    assert (
        entity_id_for("meter-7", "ThreePhaseAcMeasurement") == "urn:ngsi-ld:ThreePhaseAcMeasurement:meter-7"
    )
    assert entity_id_for("urn:ngsi-ld:X:y", "ThreePhaseAcMeasurement") == "urn:ngsi-ld:X:y"
