"""A redelivered reading (MQTT QoS 1 at-least-once, an agent resending a batch) adds no instance to the history.

The broker keys an attribute instance by (entity, attribute, observedAt) and ignores an identical one it already
holds (twin_service/broker/_repeats.py); a different value at the same observedAt is still a new instance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests.broker.conftest import BASE, ENERGY_LINK, MEASUREMENT_ID, measurement

UPSERT = f"{BASE}/entityOperations/upsert"
TEMPORAL = f"{BASE}/temporal/entities/{MEASUREMENT_ID}"


def _at(second: int) -> str:
    return f"2026-11-24T10:00:{second:02d}.000Z"


def _upsert(client: TestClient, *entities: dict[str, Any]) -> None:
    answer = client.post(UPSERT, params={"options": "update"}, headers=ENERGY_LINK, json=list(entities))
    assert answer.status_code in (201, 204), answer.text


def _history(client: TestClient, attr: str = "frequency") -> list[tuple[str, Any]]:
    answer = client.get(TEMPORAL, headers=ENERGY_LINK, params={"attrs": attr, "timerel": "after",
                                                               "timeAt": "2026-11-24T00:00:00Z"})
    assert answer.status_code == 200, answer.text
    instances = answer.json().get(attr, [])
    return [(i.get("observedAt"), i["value"]) for i in ([instances] if isinstance(instances, dict) else instances)]


def test_a_redelivered_reading_adds_no_instance(client: TestClient) -> None:
    for second in range(3):
        _upsert(client, measurement(observed_at=_at(second), voltage_v=230.0 + second))
    _upsert(client, measurement(observed_at=_at(1), voltage_v=231.0))  # redelivered after newer ones
    _upsert(client, measurement(observed_at=_at(2), voltage_v=232.0))  # the newest, again
    assert _history(client) == [(_at(0), 50.0), (_at(1), 50.0), (_at(2), 50.0)]
    assert [v["L1"] for _, v in _history(client, "phaseVoltage")] == [230.0, 231.0, 232.0]


def test_repeats_inside_one_batch_and_after_a_restart_are_dropped(make_client: Callable[[], TestClient]) -> None:
    first = make_client()
    reading = measurement(observed_at=_at(5))
    _upsert(first, reading, reading)  # an agent batch holding the message twice (killed before its PUBACK)
    assert _history(first) == [(_at(5), 50.0)]
    first.__exit__(None, None, None)
    second = make_client()  # a new broker process over the same data: the repeat is found in the tables
    _upsert(second, reading)
    assert _history(second) == [(_at(5), 50.0)]


def test_a_different_value_at_the_same_observed_at_is_kept(client: TestClient) -> None:
    _upsert(client, measurement(observed_at=_at(7)))
    changed = measurement(observed_at=_at(7))
    changed["frequency"] = {**changed["frequency"], "value": 49.9}
    _upsert(client, changed)  # frequency differs (a new instance), phaseVoltage is the same (a repeat)
    assert sorted(_history(client)) == [(_at(7), 49.9), (_at(7), 50.0)]
    assert len(_history(client, "phaseVoltage")) == 1
    other_unit = measurement(observed_at=_at(7))
    other_unit["frequency"] = {**other_unit["frequency"], "unitCode": "A56"}  # same value, other sub-attributes
    _upsert(client, other_unit)
    assert len(_history(client)) == 3


def test_instances_without_observed_at_are_never_repeats(client: TestClient) -> None:
    for _ in range(2):
        _upsert(client, {"id": MEASUREMENT_ID, "type": "ThreePhaseAcMeasurement",
                         "name": {"type": "Property", "value": "meter one"}})
    assert len(_history(client, "name")) == 2
